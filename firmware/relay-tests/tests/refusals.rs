//! What snaptd refuses, with real binaries and real TLS: capacity, foreign,
//! absent and revoked certificates, hijack attempts, garbage and oversized
//! frames, and silent boxes — each without disturbing a well-behaved box.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, ctl, free_port, snapt_ctl, wait_established, wait_until};
use relay_tests::raw::Raw;
use wire::{BoxId, Frame, RefuseCode, SyncState, VERSION};

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 2000\n";

struct World {
    bed: Bed,
    snapt: SocketAddr,
    snapt_ctl: PathBuf,
    box1: PathBuf,
    svc: SocketAddr,
}

fn box_body(snapt: SocketAddr, lport: u16) -> String {
    format!(
        "[[snapt]]\nname = \"main\"\naddress = \"{snapt}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n{SESSION}"
    )
}

async fn world(tag: &str, max_boxes: usize) -> World {
    let echo = echo_server().await;
    let mut bed = Bed::new(tag);
    let port = free_port();
    let snapt_ctl = bed.snaptd(
        "snaptd",
        port,
        &format!("max_boxes = {max_boxes}"),
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n{SESSION}"),
    );
    let snapt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let lport = free_port();
    let box1 = bed.cnaptd("box-1", &box_body(snapt, lport));
    wait_established(&box1);
    World {
        bed,
        snapt,
        snapt_ctl,
        box1,
        svc: format!("127.0.0.1:{lport}").parse().unwrap(),
    }
}

/// The well-behaved box still relays correctly.
async fn box1_still_works(w: &World) {
    echo_transfer(w.svc, 99, 256 * 1024, 8192, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("box-1 disturbed: {e}"));
    assert_eq!(
        ctl(&w.box1, &["status"]).unwrap()["sites"][0]["state"],
        "Established"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_beyond_capacity_is_refused_with_a_clear_error() {
    let mut w = world("capacity", 1).await;
    let box2 = w.bed.cnaptd("box-2", &box_body(w.snapt, free_port()));
    wait_until(
        Duration::from_secs(10),
        "box-2 to report the refusal",
        || {
            ctl(&box2, &["status"]).is_ok_and(|v| {
                v["sites"][0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("OverCapacity") && e.contains("limit of 1 boxes"))
            })
        },
    );
    assert_ne!(
        ctl(&box2, &["status"]).unwrap()["sites"][0]["state"],
        "Established"
    );
    let boxes = snapt_ctl(&w.snapt_ctl, &["status"]).unwrap()["boxes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(boxes, 1);
    box1_still_works(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_or_none_at_all_are_refused_before_any_frame() {
    let w = world("foreign", 10).await;
    // A box certificate from another CA.
    let other = Bed::new("foreign-ca");
    other.pki(&["box", "box-9"]);
    let r = Raw::connect(&other.path("pki"), "box-9", w.snapt).await;
    let refused = match r {
        Err(_) => true,
        Ok(mut raw) => raw.closed_within(Duration::from_secs(5)).await,
    };
    assert!(refused, "a foreign certificate must not get a tunnel");
    // No TLS at all: plain bytes on the tunnel port.
    let mut plain = tokio::net::TcpStream::connect(w.snapt).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"\x00\x00\x00\x11\x01 hello, no TLS here")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "plain TCP must get a TLS alert or a close, got {n} bytes"
    );
    wait_until(Duration::from_secs(5), "snaptd to log the refusals", || {
        w.bed.log("snaptd").matches("TLS handshake refused").count() >= 2
    });
    box1_still_works(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_box_is_disconnected_and_cannot_come_back() {
    let mut w = world("revoked", 10).await;
    let box2 = w.bed.cnaptd("box-2", &box_body(w.snapt, free_port()));
    wait_established(&box2);
    // Keep the key material: the box still holds it after revocation.
    let pem = std::fs::read(w.bed.path("pki/boxes/box-2.pem")).unwrap();
    let key = std::fs::read(w.bed.path("pki/boxes/box-2.key")).unwrap();
    w.bed.pki(&["revoke", "box-2"]);
    std::fs::write(w.bed.path("pki/boxes/box-2.pem"), pem).unwrap();
    std::fs::write(w.bed.path("pki/boxes/box-2.key"), key).unwrap();
    wait_until(
        Duration::from_secs(10),
        "snaptd to end box-2's session",
        || {
            snapt_ctl(&w.snapt_ctl, &["status"]).is_ok_and(|v| {
                v["boxes"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|x| x["box_id"] != "box-2"))
            })
        },
    );
    assert!(w.bed.log("snaptd").contains("revocation list reloaded"));
    // Its reconnection attempts fail in the handshake.
    wait_until(
        Duration::from_secs(10),
        "box-2 to report the TLS failure",
        || {
            ctl(&box2, &["status"]).is_ok_and(|v| {
                v["sites"][0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("tls"))
            })
        },
    );
    // It retries with back-off, not in a storm.
    let before = w.bed.log("snaptd").matches("Revoked").count();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = w.bed.log("snaptd").matches("Revoked").count() - before;
    assert!(
        during <= 6,
        "{during} handshakes in one second: the box is hammering the SNAPT"
    );
    assert_ne!(
        ctl(&box2, &["status"]).unwrap()["sites"][0]["state"],
        "Established"
    );
    box1_still_works(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_valid_box_cannot_take_over_a_session() {
    let w = world("hijack", 10).await;
    w.bed.pki(&["box", "box-2"]);
    let victim = ctl(&w.box1, &["status"]).unwrap()["sites"][0]["session_id"]
        .as_u64()
        .unwrap();
    let bulk = tokio::spawn(echo_transfer(
        w.svc,
        5,
        4 << 20,
        16 * 1024,
        Duration::from_millis(1),
    ));
    let pki = w.bed.path("pki");
    // SWITCH_UNEXPECTED naming box-2 (its own certificate) for box-1's session.
    let mut raw = Raw::connect(&pki, "box-2", w.snapt).await.unwrap();
    let sync = SyncState::default();
    raw.send(&Frame::SwitchUnexpected {
        version: VERSION,
        session_id: victim,
        switch: 1,
        box_id: BoxId::new("box-2").unwrap(),
        sync,
    })
    .await
    .unwrap();
    match raw.recv(Duration::from_secs(5)).await {
        Some(Frame::Refused {
            code: RefuseCode::NotOwner,
            ..
        }) => {}
        other => panic!("expected REFUSED NotOwner, got {other:?}"),
    }
    // Claiming to be box-1 over box-2's certificate.
    let mut raw = Raw::connect(&pki, "box-2", w.snapt).await.unwrap();
    raw.send(&Frame::SwitchStep2 {
        version: VERSION,
        session_id: victim,
        switch: 1,
        box_id: BoxId::new("box-1").unwrap(),
    })
    .await
    .unwrap();
    match raw.recv(Duration::from_secs(5)).await {
        Some(Frame::Refused {
            code: RefuseCode::WrongIdentity,
            ..
        }) => {}
        other => panic!("expected REFUSED WrongIdentity, got {other:?}"),
    }
    bulk.await
        .unwrap()
        .unwrap_or_else(|e| panic!("box-1's transfer was disturbed: {e}"));
    let st = ctl(&w.box1, &["status"]).unwrap();
    assert_eq!(st["sites"][0]["session_id"].as_u64(), Some(victim));
    assert_eq!(st["sites"][0]["switches"], 0, "box-1 never switched");
    box1_still_works(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_oversized_frames_close_only_that_tunnel() {
    let w = world("garbage", 10).await;
    w.bed.pki(&["box", "box-2"]);
    let pki = w.bed.path("pki");
    let bulk = tokio::spawn(echo_transfer(
        w.svc,
        6,
        4 << 20,
        16 * 1024,
        Duration::from_millis(1),
    ));
    let cases: [&[u8]; 3] = [
        b"\xde\xad\xbe\xef garbage that is no frame at all",
        // A length far beyond the frame limit.
        b"\x7f\xff\xff\xff\x11",
        // A CONNECT truncated inside its body, then the tunnel is half-closed.
        b"\x00\x00\x00\x40\x01\x00\x01",
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut raw = Raw::connect(&pki, "box-2", w.snapt).await.unwrap();
        raw.send_bytes(bytes).await.unwrap();
        if i == 2 {
            // Truncated: nothing more comes; the server gives up after its
            // first-frame deadline (the switch timeout) and closes.
            assert!(
                raw.closed_within(Duration::from_secs(5)).await,
                "truncated frame: tunnel left open"
            );
        } else {
            assert!(
                raw.closed_within(Duration::from_secs(5)).await,
                "case {i}: tunnel left open"
            );
        }
    }
    bulk.await
        .unwrap()
        .unwrap_or_else(|e| panic!("box-1 disturbed: {e}"));
    box1_still_works(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_box_is_released_after_inactivity_and_the_switch_timeout() {
    let w = world("silent", 10).await;
    w.bed.pki(&["box", "box-3"]);
    // A box that connects, then goes silent (no keepalives, no close).
    let mut raw = Raw::connect(&w.bed.path("pki"), "box-3", w.snapt)
        .await
        .unwrap();
    let connect = Frame::Connect {
        version: VERSION,
        window: 65536,
        keepalive_ms: 200,
        incarnation: 1,
        box_id: BoxId::new("box-3").unwrap(),
    };
    raw.send(&connect).await.unwrap();
    assert!(matches!(
        raw.recv(Duration::from_secs(5)).await,
        Some(Frame::ConnectAck { .. })
    ));
    let has_box3 = |w: &World| {
        snapt_ctl(&w.snapt_ctl, &["status"]).is_ok_and(|v| {
            v["boxes"]
                .as_array()
                .is_some_and(|b| b.iter().any(|x| x["box_id"] == "box-3"))
        })
    };
    assert!(has_box3(&w));
    // Inactivity 1.5 s, then Z = 2 s: released within ~3.5 s.
    wait_until(
        Duration::from_secs(8),
        "snaptd to release the silent box",
        || !has_box3(&w),
    );
    assert!(w.bed.log("snaptd").contains("session released"));
    box1_still_works(&w).await;
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_given_destinations_follow_the_per_box_policy_never_an_open_relay() {
    use wire::{ResetCode, ServiceName, StreamId, StreamKind};
    let echo = echo_server().await;
    let (bed, snapt) = policy_bed("policy", echo);
    let svc = ServiceName::new("transparent").unwrap();
    let stream = StreamId::new(wire::Role::Box, 0).unwrap();
    for (id, allowed) in [("box-7", true), ("box-8", false)] {
        let mut raw = connected_raw(&bed, id, snapt).await;
        raw.send(&Frame::Open {
            stream,
            kind: StreamKind::Stream,
            service: svc.clone(),
            dest: Some(echo),
            codec: wire::Codec::None,
        })
        .await
        .unwrap();
        raw.send(&Frame::Data {
            stream,
            offset: 0,
            payload: b"via policy".to_vec(),
        })
        .await
        .unwrap();
        let outcome = loop {
            match raw.recv(Duration::from_secs(5)).await {
                Some(Frame::Data { payload, .. }) => break Ok(payload),
                Some(Frame::Reset { code, reason, .. }) => break Err((code, reason)),
                Some(Frame::Ping { nonce }) => raw.send(&Frame::Pong { nonce }).await.unwrap(),
                Some(_) => {}
                None => panic!("{id}: tunnel closed"),
            }
        };
        if allowed {
            assert_eq!(outcome, Ok(b"via policy".to_vec()));
        } else {
            let (code, reason) = outcome.unwrap_err();
            assert_eq!(code, ResetCode::PolicyDenied);
            assert!(reason.contains("not allowed for box box-8"), "{reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_given_datagram_destinations_follow_the_policy_too() {
    use wire::{ResetCode, ServiceName, StreamId, StreamKind};
    let echo = relay_tests::apps::udp_echo_server().await;
    let (bed, snapt) = policy_bed("policy-udp", echo);
    let flow = StreamId::new(wire::Role::Box, 1).unwrap();
    for (id, allowed) in [("box-7", true), ("box-8", false)] {
        let mut raw = connected_raw(&bed, id, snapt).await;
        raw.send(&Frame::Open {
            stream: flow,
            kind: StreamKind::Datagram,
            service: ServiceName::new("transparent").unwrap(),
            dest: Some(echo),
            codec: wire::Codec::None,
        })
        .await
        .unwrap();
        let outcome = loop {
            // Datagrams may be lost: ask again until something comes back.
            raw.send(&Frame::Datagram {
                flow,
                payload: b"datagram via policy".to_vec(),
            })
            .await
            .unwrap();
            match raw.recv(Duration::from_secs(5)).await {
                Some(Frame::Datagram { payload, .. }) => break Ok(payload),
                Some(Frame::Reset { code, reason, .. }) => break Err((code, reason)),
                Some(Frame::Ping { nonce }) => raw.send(&Frame::Pong { nonce }).await.unwrap(),
                Some(_) => {}
                None => panic!("{id}: tunnel closed"),
            }
        };
        if allowed {
            assert_eq!(outcome, Ok(b"datagram via policy".to_vec()));
        } else {
            let (code, reason) = outcome.unwrap_err();
            assert_eq!(code, ResetCode::PolicyDenied);
            assert!(reason.contains("not allowed for box box-8"), "{reason}");
        }
    }
}

/// A snaptd whose policy lets box-7 (not box-8) reach `allowed`; its
/// address and the bed.
fn policy_bed(tag: &str, allowed: SocketAddr) -> (Bed, SocketAddr) {
    let mut bed = Bed::new(tag);
    let port = free_port();
    // The destinations are on this host's loopback (a test bench).
    bed.snaptd(
        "snaptd",
        port,
        "policy_loopback = true",
        &format!(
            "[[policy]]\nbox = \"box-7\"\nallow = [\"{}:{}\"]\n{SESSION}",
            allowed.ip(),
            allowed.port()
        ),
    );
    bed.pki(&["box", "box-7"]);
    bed.pki(&["box", "box-8"]);
    let snapt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (bed, snapt)
}

/// A raw tunnel of box `id` with its session connected.
async fn connected_raw(bed: &Bed, id: &str, snapt: SocketAddr) -> Raw {
    let mut raw = Raw::connect(&bed.path("pki"), id, snapt).await.unwrap();
    raw.send(&Frame::Connect {
        version: VERSION,
        window: 65536,
        keepalive_ms: 200,
        incarnation: 1,
        box_id: BoxId::new(id).unwrap(),
    })
    .await
    .unwrap();
    assert!(matches!(
        raw.recv(Duration::from_secs(5)).await,
        Some(Frame::ConnectAck { .. })
    ));
    raw
}

// ---- issue 14, D5: revocation fails closed ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_tunnel_authenticated_before_the_revocation_opens_no_session() {
    let w = world("revoked-spare", 10).await;
    w.bed.pki(&["box", "box-5"]);
    let pki = w.bed.path("pki");
    // A tunnel authenticated now, used only after the revocation.
    let mut spare = Raw::connect(&pki, "box-5", w.snapt).await.unwrap();
    w.bed.pki(&["revoke", "box-5"]);
    wait_until(
        Duration::from_secs(10),
        "snaptd to reload the revocation list",
        || w.bed.log("snaptd").contains("revocation list reloaded"),
    );
    let connect = Frame::Connect {
        version: VERSION,
        window: 65536,
        keepalive_ms: 200,
        incarnation: 1,
        box_id: BoxId::new("box-5").unwrap(),
    };
    // The write may already fail: the tunnel is gone.
    let _ = spare.send(&connect).await;
    let answer = spare.recv(Duration::from_secs(3)).await;
    assert!(
        !matches!(answer, Some(Frame::ConnectAck { .. })),
        "a revoked certificate's spare tunnel got a session: {answer:?}"
    );
    let boxes = snapt_ctl(&w.snapt_ctl, &["status"]).unwrap()["boxes"].clone();
    assert!(
        boxes
            .as_array()
            .is_some_and(|b| b.iter().all(|x| x["box_id"] != "box-5")),
        "{boxes}"
    );
    box1_still_works(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_revocation_list_is_an_error_not_an_empty_one() {
    let mut bed = Bed::new("crl-missing");
    std::fs::remove_file(bed.path("pki/crl.pem")).unwrap();
    let port = free_port();
    let conf = format!(
        "listen = \"127.0.0.1:{port}\"\ncontrol_socket = \"{}\"\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/snapt.pem\"\nkey = \"{p}/servers/snapt.key\"\ncrl = \"{p}/crl.pem\"\n",
        bed.path("s.sock").display(),
        p = bed.path("pki").display()
    );
    let i = bed.start("snaptd", "snaptd", &conf);
    wait_until(Duration::from_secs(10), "snaptd to refuse to start", || {
        bed.daemons[i].exited()
    });
    let log = bed.log("snaptd");
    assert!(log.contains("crl.pem"), "the error names no file:\n{log}");
}
