//! Boxes with valid certificates that misbehave on purpose, against the
//! real snaptd on loopback (issue 14: D4 a box that never reads, D8
//! refused tunnels that keep their sockets, D9 OPEN/RESET churn and an
//! honest burst of connections). Each
//! checks what the relay holds (descriptors, memory, connects toward the
//! service), not only that it answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relay_tests::bed::{Bed, free_port, snapt_ctl, wait_until};
use relay_tests::procinfo;
use relay_tests::raw::Raw;
use wire::{BoxId, Frame, ResetCode, ServiceName, StreamId, StreamKind, VERSION};

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 3000\nswitch_timeout_ms = 3000\n";

/// A TCP service that counts the connections it accepted and holds each
/// until its peer closes.
async fn counting_service() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                // A passing accept error (a connection aborted before it
                // was taken): go on.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut s, &mut sink).await;
            });
        }
    });
    (addr, n)
}

struct Relay {
    bed: Bed,
    addr: SocketAddr,
    ctl: std::path::PathBuf,
    service: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(tag: &str) -> Self {
        Self::start_with(tag, SESSION).await
    }

    /// A relay with `session` as its `[session]` table.
    async fn start_with(tag: &str, session: &str) -> Self {
        let (svc, service) = counting_service().await;
        let mut bed = Bed::new(tag);
        let port = free_port();
        let ctl = bed.snaptd(
            "snaptd",
            port,
            "",
            &format!("[[service]]\nname = \"count\"\ntarget = \"{svc}\"\n{session}"),
        );
        Self {
            bed,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            ctl,
            service,
        }
    }

    fn pid(&self) -> u32 {
        self.bed.daemons[0].pid()
    }

    fn fds(&self) -> usize {
        procinfo::fds(self.pid())
    }

    fn rss_kib(&self) -> u64 {
        (procinfo::rss_mib(self.pid()) * 1024.0) as u64
    }

    /// A raw tunnel of `id` with a session (CONNECT answered).
    async fn session(&self, id: &str) -> Raw {
        if !self.bed.path(&format!("pki/boxes/{id}.pem")).exists() {
            self.bed.pki(&["box", id]);
        }
        let mut raw = Raw::connect(&self.bed.path("pki"), id, self.addr)
            .await
            .unwrap();
        raw.send(&Frame::Connect {
            version: VERSION,
            window: 256 * 1024,
            keepalive_ms: 200,
            incarnation: 1,
            box_id: BoxId::new(id).unwrap(),
        })
        .await
        .unwrap();
        match raw.recv(Duration::from_secs(5)).await {
            Some(Frame::ConnectAck { .. }) => raw,
            other => panic!("{id}: expected CONNECT_ACK, got {other:?}"),
        }
    }
}

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut b = Vec::new();
    for f in frames {
        wire::encode(f, &mut b);
    }
    b
}

// ---- D8: a refused tunnel gives its socket back ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tunnels_give_their_descriptors_back_while_the_peer_holds_on() {
    let relay = Relay::start("d8-refused").await;
    relay.bed.pki(&["box", "box-2"]);
    let before = relay.fds();
    let mut held = Vec::new();
    for i in 0..100u64 {
        let mut raw = Raw::connect(&relay.bed.path("pki"), "box-2", relay.addr)
            .await
            .unwrap();
        // A handover step for a session that does not exist: refused.
        raw.send(&Frame::SwitchStep2 {
            version: VERSION,
            session_id: 1_000_000 + i,
            switch: 1,
            box_id: BoxId::new("box-2").unwrap(),
        })
        .await
        .unwrap();
        assert!(
            matches!(
                raw.recv(Duration::from_secs(5)).await,
                Some(Frame::Refused { .. })
            ),
            "tunnel {i} was not refused"
        );
        // The peer keeps its end open and says nothing more.
        held.push(raw);
    }
    wait_until(
        Duration::from_secs(10),
        "snaptd to close 100 refused tunnels",
        || relay.fds() <= before + 10,
    );
    println!(
        "snaptd fds: {before} before, {} with 100 refused tunnels held open by their peers",
        relay.fds()
    );
    drop(held);
}

// ---- D4: a box that never reads --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_that_pings_and_never_reads_is_cut_off_before_it_grows_the_relay() {
    let relay = Relay::start("d4-pings").await;
    let rss_before = relay.rss_kib();
    let mut raw = relay.session("box-3").await;
    let batch = encode(
        &(0..10_000)
            .map(|n| Frame::Ping { nonce: n })
            .collect::<Vec<_>>(),
    );
    let started = Instant::now();
    let mut sent = 0usize;
    let mut peak = rss_before;
    // PINGs until the relay gives the tunnel up (the writes fail or stall),
    // 20 s at most.
    while started.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(Duration::from_secs(2), raw.send_bytes(&batch)).await {
            Ok(Ok(())) => sent += 10_000,
            _ => break,
        }
        peak = peak.max(relay.rss_kib());
        if relay
            .bed
            .log("snaptd")
            .contains("stopped reading its tunnel")
        {
            break;
        }
    }
    wait_until(
        Duration::from_secs(10),
        "snaptd to give up the tunnel of a box that never reads",
        || {
            relay
                .bed
                .log("snaptd")
                .contains("stopped reading its tunnel")
        },
    );
    peak = peak.max(relay.rss_kib());
    println!(
        "snaptd RSS {} KiB before, peak {} KiB after {sent} PINGs never read",
        rss_before, peak
    );
    assert!(
        peak < rss_before + 64 * 1024,
        "snaptd grew from {rss_before} KiB to {peak} KiB"
    );
    // The relay goes on: its control socket answers.
    assert!(snapt_ctl(&relay.ctl, &["status"]).is_ok());
}

// ---- D9: OPEN/RESET churn ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_reset_churn_does_not_turn_into_a_connect_per_frame() {
    let relay = Relay::start("d9-churn").await;
    let mut raw = relay.session("box-4").await;
    let service = ServiceName::new("count").unwrap();
    let started = Instant::now();
    let pairs = 5_000u32;
    for chunk in (0..pairs).collect::<Vec<_>>().chunks(500) {
        let frames: Vec<Frame> = chunk
            .iter()
            .flat_map(|&i| {
                let stream = StreamId::new(wire::Role::Box, i).unwrap();
                [
                    Frame::Open {
                        stream,
                        kind: StreamKind::Stream,
                        service: service.clone(),
                        dest: None,
                        codec: wire::Codec::None,
                    },
                    Frame::Reset {
                        stream,
                        code: ResetCode::ApplicationError,
                        reason: String::new(),
                    },
                ]
            })
            .collect();
        raw.send_bytes(&encode(&frames)).await.unwrap();
    }
    let elapsed = started.elapsed();
    // Let the relay work through what it read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delayed = snapt_ctl(&relay.ctl, &["status"]).unwrap()["connects_delayed"]
        .as_u64()
        .unwrap_or(0);
    let connects = relay.service.load(Ordering::Relaxed);
    // The budget: 100 at once, 2,000 a second.
    let allowed = 100.0 + 2000.0 * (elapsed.as_secs_f64() + 2.0);
    println!(
        "{pairs} OPEN/RESET pairs in {elapsed:?}: {connects} connects toward the service, {delayed} OPENs held back, {} fds at snaptd",
        relay.fds()
    );
    assert!(
        (connects as f64) <= allowed,
        "{connects} connects for {pairs} OPENs (budget {allowed:.0})"
    );
    assert!(
        relay.fds() < 200,
        "snaptd holds {} descriptors",
        relay.fds()
    );
    assert!(
        delayed > 0,
        "no OPEN held back: the status does not count them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_burst_of_opens_beyond_the_connect_budget_waits_and_gets_through() {
    // A table large enough for the burst (a relay for a box with many
    // phones), and time to take it.
    let relay = Relay::start_with(
        "d9-burst",
        "[session]\nmax_streams = 4096\nkeepalive_ms = 1000\ninactivity_timeout_ms = 20000\nswitch_timeout_ms = 20000\n",
    )
    .await;
    let mut raw = relay.session("box-5").await;
    let service = ServiceName::new("count").unwrap();
    // 1,500 OPENs at once: 100 connect at once, the rest within a second.
    let frames: Vec<Frame> = (0..1500u32)
        .map(|i| Frame::Open {
            stream: StreamId::new(wire::Role::Box, i).unwrap(),
            kind: StreamKind::Stream,
            service: service.clone(),
            dest: None,
            codec: wire::Codec::None,
        })
        .collect();
    raw.send_bytes(&encode(&frames)).await.unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while relay.service.load(Ordering::Relaxed) < 1500 {
        assert!(
            Instant::now() < until,
            "{} of 1,500 OPENs reached the service; relay: {}",
            relay.service.load(Ordering::Relaxed),
            snapt_ctl(&relay.ctl, &["status"]).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // None was reset.
    let mut resets = 0;
    while let Some(f) = raw.recv(Duration::from_millis(300)).await {
        if matches!(f, Frame::Reset { .. }) {
            resets += 1;
        }
    }
    assert_eq!(resets, 0, "{resets} streams of an honest burst were reset");
}
