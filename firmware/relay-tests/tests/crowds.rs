//! snaptd protecting itself from a crowd, with the real binaries: new
//! sessions beyond `new_sessions_per_s` are refused `Busy` with waits a
//! slot apart, which a real cnaptd honours (one refusal, then in); TLS
//! handshakes beyond `max_handshakes` wait their turn, and beyond 64 times
//! that they are closed at once — while an established box keeps
//! relaying.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, ctl, free_port, snapt_ctl, wait_established, wait_until};
use relay_tests::raw::Raw;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::{BoxId, Frame, RefuseCode, VERSION};

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 2000\n";

fn box_body(snapt: SocketAddr, lport: u16) -> String {
    format!(
        "[[snapt]]\nname = \"main\"\naddress = \"{snapt}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n{SESSION}"
    )
}

fn connect_frame(id: &str) -> Frame {
    Frame::Connect {
        version: VERSION,
        window: 65536,
        keepalive_ms: 1000,
        incarnation: 1,
        box_id: BoxId::new(id).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_new_sessions_is_spread_out_and_a_real_box_honours_its_wait() {
    let echo = echo_server().await;
    let mut bed = Bed::new("crowd-rate");
    let port = free_port();
    let snapt_ctl_path = bed.snaptd(
        "snaptd",
        port,
        "new_sessions_per_s = 1",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n{SESSION}"),
    );
    let snapt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let lport = free_port();
    let box1 = bed.cnaptd("box-1", &box_body(snapt, lport));
    wait_established(&box1);
    let pki = bed.path("pki");
    for id in ["box-2", "box-3", "box-4"] {
        bed.pki(&["box", id]);
    }
    // Three hand-driven boxes ask for sessions back to back: at most one
    // is taken in this second, the others are told to come back a second
    // apart.
    let mut waits = Vec::new();
    let mut held = Vec::new();
    for id in ["box-2", "box-3", "box-4"] {
        let mut raw = Raw::connect(&pki, id, snapt).await.unwrap();
        raw.send(&connect_frame(id)).await.unwrap();
        match raw.recv(Duration::from_secs(5)).await {
            Some(Frame::ConnectAck { .. }) => held.push(raw),
            Some(Frame::Refused {
                code: RefuseCode::Busy,
                reason,
                retry_after_ms,
            }) => {
                assert!(reason.contains("new_sessions_per_s = 1"), "{reason}");
                assert!(raw.closed_within(Duration::from_secs(2)).await);
                waits.push(retry_after_ms);
            }
            other => panic!("{id}: expected CONNECT_ACK or REFUSED Busy, got {other:?}"),
        }
    }
    println!("waits handed out: {waits:?} ms");
    assert!(waits.len() >= 2, "{waits:?}");
    assert!(
        waits
            .windows(2)
            .all(|w| w[1] >= w[0] + 900 && w[1] <= w[0] + 1100),
        "a second apart: {waits:?}"
    );
    assert!(waits.iter().all(|w| *w > 0 && *w <= 3000), "{waits:?}");
    // A real box arriving now is refused once and comes back when told.
    let started = Instant::now();
    let box5 = bed.cnaptd("box-5", &box_body(snapt, free_port()));
    wait_until(Duration::from_secs(10), "box-5 to be told to wait", || {
        ctl(&box5, &["status"]).is_ok_and(|v| {
            v["sites"][0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("Busy") && e.contains("next attempt in"))
        })
    });
    wait_established(&box5);
    let took = started.elapsed();
    let st = snapt_ctl(&snapt_ctl_path, &["status"]).unwrap();
    let refused = st["sessions_refused_busy"].as_u64().unwrap();
    println!("box-5 established after {took:?}; relay refused {refused} CONNECTs Busy");
    assert_eq!(
        refused as usize,
        waits.len() + 1,
        "box-5 was refused once, then waited (not hammering)"
    );
    // The established box never noticed.
    echo_transfer(
        format!("127.0.0.1:{lport}").parse().unwrap(),
        7,
        256 * 1024,
        8192,
        Duration::ZERO,
    )
    .await
    .unwrap_or_else(|e| panic!("box-1 disturbed: {e}"));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_beyond_the_bound_wait_and_beyond_the_queue_are_closed() {
    let echo = echo_server().await;
    let mut bed = Bed::new("crowd-handshakes");
    let port = free_port();
    let snapt_ctl_path = bed.snaptd(
        "snaptd",
        port,
        "max_handshakes = 2",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n{SESSION}"),
    );
    let snapt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let lport = free_port();
    let box1 = bed.cnaptd("box-1", &box_body(snapt, lport));
    wait_established(&box1);
    // 140 connections that begin a TLS record and stall: 2 take the
    // handshake places, 128 wait for one (64 per place), 10 are closed at
    // once.
    let mut stalled = Vec::new();
    for _ in 0..140 {
        let mut tcp = TcpStream::connect(snapt).await.unwrap();
        tcp.write_all(&[0x16]).await.unwrap();
        stalled.push(tcp);
    }
    // All watched at once for 1.5 s (well inside the 10 s handshake
    // deadline): which did the relay close?
    let mut watch = tokio::task::JoinSet::new();
    for mut tcp in stalled.drain(..) {
        watch.spawn(async move {
            let mut b = [0u8; 16];
            let closed = matches!(
                tokio::time::timeout(Duration::from_millis(1500), tcp.read(&mut b)).await,
                Ok(Ok(0) | Err(_))
            );
            (tcp, closed)
        });
    }
    let mut closed = 0;
    while let Some(r) = watch.join_next().await {
        let (tcp, c) = r.unwrap();
        closed += usize::from(c);
        stalled.push(tcp);
    }
    let st = snapt_ctl(&snapt_ctl_path, &["status"]).unwrap();
    println!(
        "closed at once: {closed}; status: running {} waiting {} shed {}",
        st["handshakes_running"], st["handshakes_waiting"], st["handshakes_shed"]
    );
    assert_eq!(closed, 10, "the ones beyond the queue are closed at once");
    assert_eq!(st["handshakes_running"], 2);
    assert_eq!(st["handshakes_waiting"], 128);
    assert_eq!(st["handshakes_shed"], 10);
    // The established box relays on, its tunnel long past its handshake.
    echo_transfer(
        format!("127.0.0.1:{lport}").parse().unwrap(),
        8,
        256 * 1024,
        8192,
        Duration::ZERO,
    )
    .await
    .unwrap_or_else(|e| panic!("box-1 disturbed: {e}"));
    // The stalled ones go when they leave (or at the handshake deadline).
    drop(stalled);
    wait_until(Duration::from_secs(5), "the places to come back", || {
        snapt_ctl(&snapt_ctl_path, &["status"])
            .is_ok_and(|v| v["handshakes_running"] == 0 && v["handshakes_waiting"] == 0)
    });
}
