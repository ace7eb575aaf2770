//! Relay benchmark on loopback, one run, printing figures (nothing asserted):
//!
//! * throughput and CPU-seconds per GB: a direct TCP transfer vs the same
//!   through cnaptd + snaptd (baseline = direct, same run);
//! * largest application-visible stall of an interactive stream (a 100-byte
//!   record every 5 ms, echoed) during a planned switch and a sudden tunnel
//!   kill, against the same stream with no switch;
//! * RSS of each daemon idle and with 1,000 open streams.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p relay-tests --example bench
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, ctl, free_port, wait_established};
use relay_tests::cutter::Cutter;
use relay_tests::procinfo::{cpu_seconds, peak_rss_mib, rss_mib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GB: f64 = 1e9;

/// A sink: reads everything, reports the byte count when the sender is done.
async fn sink() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = tx.send(n);
            });
        }
    });
    (addr, rx)
}

/// Sends `bytes` to `addr`; returns (seconds until the sink has them all,
/// CPU seconds of the listed processes meanwhile).
async fn transfer(
    addr: SocketAddr,
    bytes: u64,
    done: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    pids: &[String],
) -> (f64, f64) {
    let cpu0: f64 = pids
        .iter()
        .map(|p| cpu_seconds(p.parse().unwrap_or(0)))
        .sum();
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let buf = relay_tests::apps::pattern(9, 256 * 1024);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    s.shutdown().await.unwrap();
    let got = done.recv().await.unwrap();
    assert_eq!(got, bytes, "sink got {got} of {bytes}");
    let secs = start.elapsed().as_secs_f64();
    let cpu1: f64 = pids
        .iter()
        .map(|p| cpu_seconds(p.parse().unwrap_or(0)))
        .sum();
    (secs, cpu1 - cpu0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fds = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(l) = fds.lines().find(|l| l.starts_with("Max open files")) {
        let soft: u64 = l
            .split_whitespace()
            .nth(3)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        assert!(
            soft >= 5000,
            "the 1,000-stream test needs ~4,000 file descriptors; raise `ulimit -n` (now {soft})"
        );
    }
    let echo = echo_server().await;
    let (sink_addr, mut sink_done) = sink().await;
    let mut bed = Bed::new("bench");
    let sport = free_port();
    let session = "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\nmax_streams = 1100\n";
    bed.snaptd(
        "snaptd",
        sport,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n[[service]]\nname = \"sink\"\ntarget = \"{sink_addr}\"\n{session}"),
    );
    let cutter = Cutter::start(format!("127.0.0.1:{sport}").parse().unwrap()).await;
    let (le, ls) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"{}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{le}\"\n[[service]]\nname = \"sink\"\nlisten = \"127.0.0.1:{ls}\"\n{session}",
            cutter.addr
        ),
    );
    wait_established(&control);
    let snaptd_pid = bed.daemons[0].pid();
    let cnaptd_pid = bed.daemons[1].pid();
    let echo_svc: SocketAddr = format!("127.0.0.1:{le}").parse().unwrap();
    let sink_svc: SocketAddr = format!("127.0.0.1:{ls}").parse().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapt_idle = rss_mib(snaptd_pid);
    let cnapt_idle = rss_mib(cnaptd_pid);

    // --- throughput and CPU per GB -------------------------------------------
    let bytes: u64 = 1 << 30;
    let me = std::process::id().to_string();
    let (d_secs, d_cpu) =
        transfer(sink_addr, bytes, &mut sink_done, std::slice::from_ref(&me)).await;
    let pids = [me.clone(), cnaptd_pid.to_string(), snaptd_pid.to_string()];
    // The relay's cutter runs in this process too; it is counted with it.
    let (r_secs, r_cpu) = transfer(sink_svc, bytes, &mut sink_done, &pids).await;
    let gb = bytes as f64 / GB;
    println!("\n== throughput, 1 GiB one way (loopback, 2 cores) ==");
    println!(
        "{:<28} {:>10} {:>14} {:>10}",
        "", "MB/s", "CPU-s per GB", "vs direct"
    );
    println!(
        "{:<28} {:>10.0} {:>14.2} {:>10}",
        "direct TCP",
        bytes as f64 / d_secs / 1e6,
        d_cpu / gb,
        "1.00"
    );
    println!(
        "{:<28} {:>10.0} {:>14.2} {:>10}",
        "app -> cnaptd -> snaptd -> app",
        bytes as f64 / r_secs / 1e6,
        r_cpu / gb,
        format!("{:.2}x / {:.2}x", d_secs / r_secs, r_cpu / d_cpu.max(1e-9))
    );
    println!(
        "  (\"vs direct\": throughput ratio / CPU ratio; relay CPU includes both daemons, the endpoints and the cutter)"
    );

    // --- stalls ------------------------------------------------------------------
    let pace = Duration::from_millis(5);
    let records = 600; // 3 s of 100-byte records
    let base = echo_transfer(echo_svc, 21, records * 100, 100, pace)
        .await
        .unwrap();
    let planned = {
        let t = tokio::spawn(echo_transfer(echo_svc, 22, records * 100, 100, pace));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let c = control.clone();
        tokio::task::spawn_blocking(move || ctl(&c, &["switch", "b"]).unwrap())
            .await
            .unwrap();
        t.await.unwrap().unwrap()
    };
    let sudden = {
        let t = tokio::spawn(echo_transfer(echo_svc, 23, records * 100, 100, pace));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        cutter.reset_all();
        t.await.unwrap().unwrap()
    };
    let st = ctl(&control, &["status"]).unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\n== application-visible stall, interactive echo (100 B every 5 ms) ==");
    println!("{:<30} {:>16} {:>16}", "", "max gap (ms)", "stall (ms)");
    println!(
        "{:<30} {:>16.1} {:>16}",
        "no switch (baseline)",
        ms(base.max_gap),
        "-"
    );
    println!(
        "{:<30} {:>16.1} {:>16.1}",
        "planned switch a -> b",
        ms(planned.max_gap),
        ms(planned.max_gap.saturating_sub(base.max_gap))
    );
    println!(
        "{:<30} {:>16.1} {:>16.1}",
        "sudden tunnel kill (RST)",
        ms(sudden.max_gap),
        ms(sudden.max_gap.saturating_sub(base.max_gap))
    );
    println!("  handovers at the box: {}", st["handovers"]);

    // --- memory with 1,000 streams -------------------------------------------------
    let mut conns = Vec::new();
    for i in 0..1000u32 {
        let mut s = TcpStream::connect(echo_svc).await.unwrap();
        s.write_all(&i.to_be_bytes()).await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        conns.push(s);
    }
    let open = ctl(&control, &["status"]).unwrap()["sites"][0]["streams"].clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (snapt_1k, snapt_peak) = (rss_mib(snaptd_pid), peak_rss_mib(snaptd_pid));
    let (cnapt_1k, cnapt_peak) = (rss_mib(cnaptd_pid), peak_rss_mib(cnaptd_pid));
    println!("\n== memory (RSS, MiB) ==");
    println!(
        "{:<10} {:>8} {:>18} {:>10}",
        "", "idle", "1,000 streams", "peak"
    );
    println!(
        "{:<10} {:>8.1} {:>18.1} {:>10.1}",
        "cnaptd", cnapt_idle, cnapt_1k, cnapt_peak
    );
    println!(
        "{:<10} {:>8.1} {:>18.1} {:>10.1}",
        "snaptd", snapt_idle, snapt_1k, snapt_peak
    );
    println!("  open streams at the box during the measurement: {open}");
    drop(conns);
}
