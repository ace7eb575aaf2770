//! The data path's figures (issue 21), one run on loopback, printed as
//! ratios against baselines measured in the same run (nothing asserted):
//!
//! * throughput and MB moved per relay CPU-second, up (phone → server) and
//!   down, with one and four streams: direct TCP, a pair of stunnel
//!   processes (box + server, cbox's shape, if `stunnel4` is installed),
//!   cnaptd + snaptd, and (`DATAPATH_FLEET=1`) cnaptd + HAProxy + a relay
//!   of a fleet of three (the CPU of the box, the relays and the router);
//! * a download beside 0, 1,000 and 5,000 idle streams (and how long each
//!   thousand took to open);
//! * the daemons' memory idle, with 1,000 and 5,000 open streams, and after
//!   they closed.
//!
//! The daemons run with their shipped session defaults, except
//! `max_streams` (raised for the idle-stream figures).
//!
//! ```text
//! apt-get install stunnel4          # the TLS-pair baseline (optional)
//! cargo build --release --workspace
//! cargo run --release -p relay-tests --example datapath
//! DATAPATH_ONLY=idle …   # only the idle-stream and memory figures
//! DATAPATH_ONLY=throughput …  # only the throughput table
//! DATAPATH_FLEET=1 …     # also through three snaptd behind HAProxy
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use relay_tests::apps::{download_server, echo_server};
use relay_tests::bed::{Bed, ctl, free_port, wait_established};
use relay_tests::procinfo::{cpu_seconds, rss_mib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes moved per throughput figure.
const BYTES: u64 = 1 << 30;

/// A sink: reads everything of every connection.
async fn sink() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                }
                // Tell the sender everything arrived.
                let _ = s.write_all(b"k").await;
            });
        }
    });
    addr
}

/// Sends `bytes` to a sink at `addr` and waits for its confirmation.
async fn upload(addr: SocketAddr, bytes: u64) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let buf = vec![0x5a_u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    s.shutdown().await.unwrap();
    let mut k = [0u8; 1];
    s.read_exact(&mut k).await.unwrap();
}

/// Reads a whole download from `addr`; returns the byte count.
async fn download(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k as u64,
        }
    }
}

/// One figure: seconds for [`BYTES`] over `streams` parallel connections,
/// and CPU seconds of `pids` meanwhile.
async fn transfer(up: bool, target: SocketAddr, streams: u64, pids: &[u32]) -> (f64, f64) {
    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let start = Instant::now();
    let each = BYTES / streams;
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            tokio::spawn(async move {
                if up {
                    upload(target, each).await;
                    each
                } else {
                    download(target).await
                }
            })
        })
        .collect();
    let mut got = 0;
    for t in tasks {
        got += t.await.unwrap();
    }
    assert!(got >= each * streams, "moved {got} of {}", each * streams);
    let secs = start.elapsed().as_secs_f64();
    let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    (secs, cpu1 - cpu0)
}

/// Where each carrier takes the phone's connections.
struct Carrier {
    name: &'static str,
    up: SocketAddr,
    down_one: SocketAddr,
    down_four: SocketAddr,
    pids: Vec<u32>,
}

/// The stunnel pair: a client-side stunnel (the box's place) and a
/// server-side one, TLS between them, to `targets` (sink, downloads).
fn stunnel_pair(bed: &mut Bed, targets: &[SocketAddr]) -> Option<Vec<SocketAddr>> {
    let exe = ["stunnel4", "stunnel"]
        .into_iter()
        .find(|e| Command::new(e).arg("-version").output().is_ok())?;
    let pki = bed.path("pki");
    let mut server = format!(
        "foreground = yes\npid =\n[relay]\ncert = {p}/servers/snapt.pem\nkey = {p}/servers/snapt.key\n",
        p = pki.display()
    );
    let mut client = String::from("foreground = yes\npid =\n");
    let mut fronts = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let (tls, front) = (free_port(), free_port());
        if i > 0 {
            server += &format!(
                "[relay{i}]\ncert = {p}/servers/snapt.pem\nkey = {p}/servers/snapt.key\n",
                p = pki.display()
            );
        }
        server += &format!("accept = 127.0.0.1:{tls}\nconnect = {t}\n");
        client += &format!(
            "[front{i}]\nclient = yes\naccept = 127.0.0.1:{front}\nconnect = 127.0.0.1:{tls}\n"
        );
        fronts.push(format!("127.0.0.1:{front}").parse().unwrap());
    }
    let (sconf, cconf) = (
        bed.path("stunnel-server.conf"),
        bed.path("stunnel-client.conf"),
    );
    std::fs::write(&sconf, server).unwrap();
    std::fs::write(&cconf, client).unwrap();
    bed.spawn("stunnel-server", Command::new(exe).arg(&sconf));
    bed.spawn("stunnel-client", Command::new(exe).arg(&cconf));
    std::thread::sleep(Duration::from_millis(500));
    Some(fronts)
}

fn raise_fd_limit() {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    let want = hard.max(65_536);
    if nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, want)
        .is_err()
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    raise_fd_limit();
    let sink = sink().await;
    let big = download_server(3, BYTES as usize, None).await;
    let quarter = download_server(4, (BYTES / 4) as usize, None).await;
    let echo = echo_server().await;
    let mut bed = Bed::new("datapath");
    let sport = free_port();
    // Shipped defaults but for the stream limit.
    // One client opens them all: its share (3/4 of the table) must hold 5,000.
    let session = "[session]\nmax_streams = 7000\n";
    let services = [
        ("sink", sink),
        ("big", big),
        ("quarter", quarter),
        ("echo", echo),
    ];
    let server_services: String = services
        .iter()
        .map(|(n, a)| format!("[[service]]\nname = \"{n}\"\ntarget = \"{a}\"\n"))
        .collect();
    bed.snaptd("snaptd", sport, "", &format!("{server_services}{session}"));
    let ports: Vec<u16> = services.iter().map(|_| free_port()).collect();
    let box_services: String = services
        .iter()
        .zip(&ports)
        .map(|((n, _), p)| format!("[[service]]\nname = \"{n}\"\nlisten = \"127.0.0.1:{p}\"\n"))
        .collect();
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{sport}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n{box_services}{session}"
        ),
    );
    wait_established(&control);
    let (snaptd, cnaptd) = (bed.daemons[0].pid(), bed.daemons[1].pid());
    let at = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cnapt_idle, snapt_idle) = (rss_mib(cnaptd), rss_mib(snaptd));

    let mut carriers = vec![
        Carrier {
            name: "direct TCP",
            up: sink,
            down_one: big,
            down_four: quarter,
            pids: vec![],
        },
        Carrier {
            name: "cnaptd + snaptd",
            up: at(ports[0]),
            down_one: at(ports[1]),
            down_four: at(ports[2]),
            pids: vec![cnaptd, snaptd],
        },
    ];
    // The same box behind a fleet: three snaptd behind HAProxy (routing on
    // the SNI), a second cnaptd naming its relay; the hosted side's CPU
    // counts the relays and the router.
    if std::env::var("DATAPATH_FLEET").is_ok_and(|v| v == "1") {
        let fleet =
            relay_tests::router::start_fleet(&mut bed, "", &format!("{server_services}{session}"));
        let fports: Vec<u16> = services.iter().map(|_| free_port()).collect();
        let fservices: String = services
            .iter()
            .zip(&fports)
            .map(|((n, _), p)| format!("[[service]]\nname = \"{n}\"\nlisten = \"127.0.0.1:{p}\"\n"))
            .collect();
        let relays: Vec<String> = relay_tests::router::RELAYS
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect();
        let c2 = bed.cnaptd(
            "box-2",
            &format!(
                "[[snapt]]\nname = \"fleet\"\naddress = \"{}\"\nrelays = [{}]\n\
                 [[uplink]]\nname = \"a\"\nsource = \"127.0.0.3\"\n{fservices}{session}",
                fleet.router,
                relays.join(", ")
            ),
        );
        wait_established(&c2);
        let mut pids = vec![bed.daemons.last().map(|d| d.pid()).unwrap_or(0)];
        pids.extend(fleet.daemons.iter().map(|i| bed.daemons[*i].pid()));
        pids.push(bed.daemons[fleet.router_daemon].pid());
        carriers.push(Carrier {
            name: "fleet (HAProxy)",
            up: at(fports[0]),
            down_one: at(fports[1]),
            down_four: at(fports[2]),
            pids,
        });
    }
    let first_stunnel = bed.daemons.len();
    match stunnel_pair(&mut bed, &[sink, big, quarter]) {
        Some(f) => carriers.insert(
            1,
            Carrier {
                name: "stunnel pair",
                up: f[0],
                down_one: f[1],
                down_four: f[2],
                pids: vec![
                    bed.daemons[first_stunnel].pid(),
                    bed.daemons[first_stunnel + 1].pid(),
                ],
            },
        ),
        None => println!("(stunnel4 not installed: no TLS-pair baseline)"),
    }

    println!("\n== throughput, 1 GiB each way (loopback, 2 cores) ==");
    println!(
        "{:<18} {:>8} {:>8} {:>11} {:>11} {:>14} {:>11}",
        "", "dir", "streams", "Gbit/s", "x direct", "MB/relay-CPU-s", "x stunnel"
    );
    let mut direct = std::collections::HashMap::new();
    let mut stunnel = std::collections::HashMap::new();
    // DATAPATH_ONLY=idle skips the throughput table (for profiling),
    // DATAPATH_ONLY=throughput everything after it.
    let only = std::env::var("DATAPATH_ONLY").unwrap_or_default();
    let only_idle = only == "idle";
    for c in carriers.iter().filter(|_| !only_idle) {
        for (up, streams) in [(true, 1), (false, 1), (true, 4), (false, 4)] {
            let target = match (up, streams) {
                (true, _) => c.up,
                (false, 1) => c.down_one,
                (false, _) => c.down_four,
            };
            let (secs, cpu) = transfer(up, target, streams, &c.pids).await;
            let gbit = BYTES as f64 * 8.0 / secs / 1e9;
            let per_cpu = (!c.pids.is_empty()).then(|| BYTES as f64 / 1e6 / cpu.max(1e-9));
            let key = (up, streams);
            if c.name == "direct TCP" {
                direct.insert(key, gbit);
            }
            if c.name == "stunnel pair" {
                stunnel.insert(key, (gbit, per_cpu.unwrap_or(0.0)));
            }
            let vs_stunnel = match (stunnel.get(&key), per_cpu) {
                (Some((g, m)), Some(p)) if c.name != "stunnel pair" => {
                    format!("{:.2} / {:.2}", gbit / g, p / m)
                }
                _ => "-".into(),
            };
            println!(
                "{:<18} {:>8} {:>8} {:>11.2} {:>11.2} {:>14} {:>11}",
                c.name,
                if up { "up" } else { "down" },
                streams,
                gbit,
                gbit / direct.get(&key).copied().unwrap_or(gbit),
                per_cpu.map_or("-".into(), |p| format!("{p:.0}")),
                vs_stunnel
            );
        }
    }
    println!("  (x stunnel: throughput ratio / MB-per-CPU-second ratio)");
    if only == "throughput" {
        return;
    }

    // --- idle streams --------------------------------------------------------
    println!("\n== a 256 MiB download beside idle streams (cnaptd + snaptd) ==");
    let echo_svc = at(ports[3]);
    let mut idle: Vec<TcpStream> = Vec::new();
    let mut base = None;
    let mut mem = Vec::new();
    for target in [0usize, 1000, 5000] {
        let open_start = Instant::now();
        let before = idle.len();
        while idle.len() < target {
            let mut s = TcpStream::connect(echo_svc).await.unwrap();
            s.write_all(b"i").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            idle.push(s);
        }
        let opened = idle.len() - before;
        let open_secs = open_start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        mem.push((target, rss_mib(cnaptd), rss_mib(snaptd)));
        let start = Instant::now();
        let got = download(at(ports[1])).await;
        let gbit = got as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
        let b = *base.get_or_insert(gbit);
        println!(
            "{:>6} idle streams: {:>6.2} Gbit/s ({:.2}x of none){}",
            target,
            gbit,
            gbit / b,
            if opened > 0 {
                format!(
                    "; opening {opened} took {open_secs:.2} s ({:.0}/s)",
                    opened as f64 / open_secs
                )
            } else {
                String::new()
            }
        );
    }
    let open = ctl(&control, &["status"]).unwrap()["sites"][0]["streams"].clone();
    println!("  streams open at the box at the end: {open}");
    drop(idle);
    // The streams close (FIN both ways, acknowledgements); then memory.
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let v = ctl(&control, &["status"]).unwrap();
        if v["sites"][0]["streams"].as_u64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("\n== memory (RSS, MiB) ==");
    println!("{:<26} {:>8} {:>8}", "", "cnaptd", "snaptd");
    println!("{:<26} {:>8.1} {:>8.1}", "idle", cnapt_idle, snapt_idle);
    for (n, c, s) in &mem {
        println!(
            "{:<26} {:>8.1} {:>8.1}",
            format!("{n} open streams (after the throughput runs)"),
            c,
            s
        );
    }
    let (c_after, s_after) = (rss_mib(cnaptd), rss_mib(snaptd));
    println!(
        "{:<26} {:>8.1} {:>8.1}   ({:+.1} / {:+.1} MiB against idle)",
        "all closed, 2 s later",
        c_after,
        s_after,
        c_after - cnapt_idle,
        s_after - snapt_idle
    );
    // The daemons hand freed heap memory back every 30 s (malloc_trim):
    // what is still held after that is in use, not cached.
    tokio::time::sleep(Duration::from_secs(33)).await;
    let (c_trim, s_trim) = (rss_mib(cnaptd), rss_mib(snaptd));
    println!(
        "{:<26} {:>8.1} {:>8.1}   ({:+.1} / {:+.1} MiB against idle)",
        "all closed, 35 s later",
        c_trim,
        s_trim,
        c_trim - cnapt_idle,
        s_trim - snapt_idle
    );
}
