//! What hostile peers and a day of careless use cost the daemons (issue 14),
//! one run on loopback with the release binaries, printing figures (nothing
//! asserted; the tests in `tests/hardening.rs` and `tests/hostile_boxes.rs`
//! assert the behaviour). For each attack: the daemon's resident memory
//! before, at its peak and 35 s after (the allocator's freed memory goes
//! back every 30 s), its descriptors at the peak, and what it counted.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p relay-tests --example abuse [tls pings churn refused udp phones]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relay_tests::apps::{echo_server, echo_transfer, udp_echo_server};
use relay_tests::bed::{Bed, ctl, free_port, snapt_ctl, wait_established};
use relay_tests::cutter::Cutter;
use relay_tests::procinfo::{fds, peak_rss_mib, rss_mib};
use relay_tests::raw::Raw;
use tokio::io::AsyncWriteExt;
use wire::{BoxId, Frame, ResetCode, Role, ServiceName, StreamId, StreamKind, VERSION};

/// Samples a daemon's memory and descriptors while an attack runs.
struct Watch {
    stop: Arc<AtomicBool>,
    peak_fds: Arc<AtomicUsize>,
    pid: u32,
    before: f64,
}

impl Watch {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_fds = Arc::new(AtomicUsize::new(fds(pid)));
        let (s, p) = (stop.clone(), peak_fds.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(fds(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            peak_fds,
            pid,
            before: rss_mib(pid),
        }
    }

    /// Ends the watch: prints a row after waiting for the memory to settle.
    async fn report(self, attack: &str, daemon: &str, counted: String) {
        self.stop.store(true, Ordering::Relaxed);
        let peak = peak_rss_mib(self.pid);
        tokio::time::sleep(Duration::from_secs(35)).await;
        println!(
            "{attack:<44} {daemon:<7} {:>8.1} {:>8.1} {:>8.1} {:>6}  {counted}",
            self.before,
            peak,
            rss_mib(self.pid),
            self.peak_fds.load(Ordering::Relaxed)
        );
    }
}

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut b = Vec::new();
    for f in frames {
        wire::encode(f, &mut b);
    }
    b
}

/// A raw tunnel of `id` with a session.
async fn session(bed: &Bed, id: &str, addr: SocketAddr) -> Raw {
    bed.pki(&["box", id]);
    let mut raw = Raw::connect(&bed.path("pki"), id, addr).await.unwrap();
    raw.send(&Frame::Connect {
        version: VERSION,
        window: 256 * 1024,
        keepalive_ms: 1000,
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

/// A relay with an echo service; its bed, tunnel address, control socket.
async fn relay(tag: &str) -> (Bed, SocketAddr, std::path::PathBuf) {
    let echo = echo_server().await;
    let mut bed = Bed::new(tag);
    let port = free_port();
    let ctl = bed.snaptd(
        "snaptd",
        port,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"),
    );
    (bed, format!("127.0.0.1:{port}").parse().unwrap(), ctl)
}

async fn unauthenticated_flood() {
    let (bed, addr, _) = relay("abuse-tls").await;
    let w = Watch::start(bed.daemons[0].pid());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    let _ = s.write_all(b"\x16\x03\x01\x00\x05hello").await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let lines = bed.log("snaptd").matches("TLS handshake").count();
    w.report(
        "4,000 TCP connections with no TLS",
        "snaptd",
        format!("{lines} log lines"),
    )
    .await;
}

async fn never_reads() {
    let (bed, addr, _) = relay("abuse-pings").await;
    let w = Watch::start(bed.daemons[0].pid());
    let mut raw = session(&bed, "box-3", addr).await;
    let batch = encode(
        &(0..10_000)
            .map(|n| Frame::Ping { nonce: n })
            .collect::<Vec<_>>(),
    );
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(18) {
        match tokio::time::timeout(Duration::from_secs(2), raw.send_bytes(&batch)).await {
            Ok(Ok(())) => sent += 10_000,
            _ => break,
        }
    }
    let cut = bed.log("snaptd").contains("stopped reading its tunnel");
    w.report(
        "a box PINGs for 18 s and never reads",
        "snaptd",
        format!("{sent} PINGs; tunnel cut: {cut}"),
    )
    .await;
}

async fn churn() {
    let (bed, addr, ctl_path) = relay("abuse-churn").await;
    let w = Watch::start(bed.daemons[0].pid());
    let mut raw = session(&bed, "box-4", addr).await;
    let service = ServiceName::new("echo").unwrap();
    for chunk in (0..20_000u32).collect::<Vec<_>>().chunks(1000) {
        let frames: Vec<Frame> = chunk
            .iter()
            .flat_map(|&i| {
                let stream = StreamId::new(Role::Box, i).unwrap();
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
        if raw.send_bytes(&encode(&frames)).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = snapt_ctl(&ctl_path, &["status"]).unwrap();
    w.report(
        "20,000 OPEN/RESET pairs",
        "snaptd",
        format!(
            "{} OPENs held back, {} refused, the service's connects: see the tests",
            st["connects_delayed"], st["connects_refused"]
        ),
    )
    .await;
}

async fn refused_tunnels() {
    let (bed, addr, _) = relay("abuse-refused").await;
    bed.pki(&["box", "box-2"]);
    let w = Watch::start(bed.daemons[0].pid());
    let mut held = Vec::new();
    for i in 0..300u64 {
        let mut raw = Raw::connect(&bed.path("pki"), "box-2", addr).await.unwrap();
        let _ = raw
            .send(&Frame::SwitchStep2 {
                version: VERSION,
                session_id: 1_000_000 + i,
                switch: 1,
                box_id: BoxId::new("box-2").unwrap(),
            })
            .await;
        let _ = raw.recv(Duration::from_secs(2)).await;
        held.push(raw);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = fds(bed.daemons[0].pid());
    w.report(
        "300 refused tunnels held open by the box",
        "snaptd",
        format!("{now} fds 1 s later"),
    )
    .await;
    drop(held);
}

/// A box behind a 2 Mbit/s cutter with UDP and TCP services.
async fn box_bed(tag: &str) -> (Bed, std::path::PathBuf, SocketAddr, SocketAddr, Cutter) {
    let udp = udp_echo_server().await;
    let echo = echo_server().await;
    let mut bed = Bed::new(tag);
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"udp\"\ntarget = \"{udp}\"\nprotocol = \"udp\"\n[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"
        ),
    );
    let cutter = Cutter::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let (uport, eport) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"{}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n[[service]]\nname = \"udp\"\nlisten = \"127.0.0.1:{uport}\"\nprotocol = \"udp\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{eport}\"\n",
            cutter.addr
        ),
    );
    wait_established(&control);
    (
        bed,
        control,
        format!("127.0.0.1:{uport}").parse().unwrap(),
        format!("127.0.0.1:{eport}").parse().unwrap(),
        cutter,
    )
}

async fn udp_flood() {
    let (bed, control, udp, _, cutter) = box_bed("abuse-udp").await;
    cutter.set_rate(250_000);
    let w = Watch::start(bed.daemons[1].pid());
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let payload = vec![7u8; 1200];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(40) {
        for _ in 0..200 {
            if phone.send_to(&payload, udp).await.is_ok() {
                sent += 1;
            }
        }
        tokio::task::yield_now().await;
    }
    let st = ctl(&control, &["status"]).unwrap();
    w.report(
        "UDP at full speed over 2 Mbit/s for 40 s",
        "cnaptd",
        format!(
            "{} MB sent, {} datagrams dropped, session {}",
            sent * 1200 / 1_000_000,
            st["sites"][0]["datagrams_dropped"],
            st["sites"][0]["state"]
        ),
    )
    .await;
}

async fn dns_and_idle_phone() {
    let (bed, control, udp, echo, _cutter) = box_bed("abuse-phones").await;
    let w = Watch::start(bed.daemons[1].pid());
    let mut answered = 0;
    for i in 0..300 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = format!("query {i}");
        s.send_to(q.as_bytes(), udp).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await
        {
            answered += 1;
        }
    }
    let mut idle = Vec::new();
    for _ in 0..300 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(c) = s.connect(echo).await {
            idle.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = echo_transfer(echo, 3, 64 * 1024, 4096, Duration::ZERO)
        .await
        .is_ok();
    let c = ctl(&control, &["status"]).unwrap()["counters"].clone();
    drop(idle);
    w.report(
        "300 DNS queries, then one phone's 300 idle",
        "cnaptd",
        format!(
            "{answered}/300 answered, {} flows evicted, {} connections refused, another phone served: {other}",
            c["flows_evicted"], c["connections_refused"]
        ),
    )
    .await;
}

const ATTACKS: [&str; 6] = ["tls", "pings", "churn", "refused", "udp", "phones"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `abuse [NAME …]` runs the attacks named (all by default), each in a
    // process of its own so that one attack's leftovers (its senders, its
    // servers) cannot weigh on the next one's figures.
    let mut only: Vec<String> = std::env::args().skip(1).collect();
    let child = std::env::var_os("CBOX_ABUSE_CHILD").is_some();
    if !child {
        println!(
            "{:<44} {:<7} {:>8} {:>8} {:>8} {:>6}  counted",
            "attack", "daemon", "MiB pre", "MiB max", "MiB +35s", "fds"
        );
        if only.is_empty() {
            only = ATTACKS.iter().map(|a| a.to_string()).collect();
        }
        let me = std::env::current_exe().unwrap();
        for name in &only {
            if !ATTACKS.contains(&name.as_str()) {
                eprintln!("no attack {name:?}; one of {ATTACKS:?}");
                std::process::exit(2);
            }
            let status = std::process::Command::new(&me)
                .arg(name)
                .env("CBOX_ABUSE_CHILD", "1")
                .status()
                .unwrap();
            if !status.success() {
                eprintln!("attack {name} failed ({status})");
            }
        }
        return;
    }
    match only.first().map(String::as_str) {
        Some("tls") => unauthenticated_flood().await,
        Some("pings") => never_reads().await,
        Some("churn") => churn().await,
        Some("refused") => refused_tunnels().await,
        Some("udp") => udp_flood().await,
        Some("phones") => dns_and_idle_phone().await,
        other => panic!("no attack {other:?}"),
    }
}
