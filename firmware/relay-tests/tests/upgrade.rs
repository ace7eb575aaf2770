//! A relay upgrade (`cboxctl snapt upgrade`) in the middle of traffic: the
//! running snaptd hands its listeners, sessions and server connections to
//! a new process and exits; the box resumes on the new one. Against the
//! real binaries (cnaptd, two generations of snaptd, cboxctl) on loopback:
//! keystrokes, a bulk echo both ways, a rate-limited download and UDP
//! pings run across two upgrades in a row; every byte arrives exactly once
//! and in order, no stream is reset, and the stalls are printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_tests::apps::{download_server, echo_server, echo_transfer, pattern, udp_echo_server};
use relay_tests::bed::{Bed, ctl, free_port, snapt_ctl, wait_established, wait_until};
use tokio::io::AsyncReadExt;

/// Reads a download of `len` bytes from `addr` at about `rate` bytes a
/// second, checking every byte against the server's pattern; returns the
/// longest time between two reads.
async fn verified_download(
    addr: SocketAddr,
    seed: u64,
    len: usize,
    rate: u64,
) -> Result<Duration, String> {
    let block = pattern(seed, 64 * 1024);
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 32 * 1024];
    let (mut at, mut max_gap, mut last) = (0usize, Duration::ZERO, Instant::now());
    let start = Instant::now();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .map_err(|_| format!("download stalled at {at} bytes"))?
            .map_err(|e| format!("download failed at {at} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            if *b != block[(at + k) % block.len()] {
                return Err(format!("download byte {} differs", at + k));
            }
        }
        at += n;
        max_gap = max_gap.max(last.elapsed());
        last = Instant::now();
        let due = start + Duration::from_secs_f64(at as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    if at != len {
        return Err(format!("download ended after {at} of {len} bytes"));
    }
    Ok(max_gap)
}

/// Sends `count` numbered datagrams `pace` apart to `addr`; returns how many
/// came back and the longest time without an answer.
async fn udp_pings(addr: SocketAddr, count: u32, pace: Duration) -> (u32, Duration) {
    let s = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    s.connect(addr).await.unwrap();
    let r = s.clone();
    let rx = tokio::spawn(async move {
        let (mut got, mut max_gap, mut last) = (0u32, Duration::ZERO, Instant::now());
        let mut buf = [0u8; 64];
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), r.recv(&mut buf)).await {
            got += 1;
            max_gap = max_gap.max(last.elapsed());
            last = Instant::now();
        }
        (got, max_gap)
    });
    for i in 0..count {
        let _ = s.send(&i.to_be_bytes()).await;
        tokio::time::sleep(pace).await;
    }
    rx.await.unwrap()
}

/// `cboxctl snapt upgrade`, off the test's runtime.
async fn upgrade(control: &std::path::Path) -> serde_json::Value {
    let c = control.to_path_buf();
    tokio::task::spawn_blocking(move || snapt_ctl(&c, &["upgrade"]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("upgrade refused: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_upgrades_during_traffic_reset_nothing_and_lose_nothing() {
    const DOWNLOAD: usize = 96 << 20;
    let echo = echo_server().await;
    let dl = download_server(51, DOWNLOAD, None).await;
    let udp = udp_echo_server().await;
    let mut bed = Bed::new("upgrade");
    let port = free_port();
    let snapt = bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n[[service]]\nname = \"dl\"\ntarget = \"{dl}\"\n[[service]]\nname = \"ping\"\ntarget = \"{udp}\"\nprotocol = \"udp\"\n"
        ),
    );
    let (eport, dport, uport) = (free_port(), free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{eport}\"\n[[service]]\nname = \"dl\"\nlisten = \"127.0.0.1:{dport}\"\n[[service]]\nname = \"ping\"\nlisten = \"127.0.0.1:{uport}\"\nprotocol = \"udp\"\n"
        ),
    );
    wait_established(&control);
    let session = ctl(&control, &["status"]).unwrap()["sites"][0]["session_id"].clone();
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let first_pid = snapt_ctl(&snapt, &["status"]).unwrap()["pid"]
        .as_u64()
        .unwrap();

    // Keystrokes: 100 bytes every 10 ms for 8 s, echoed.
    let keys = tokio::spawn(echo_transfer(
        addr(eport),
        61,
        800 * 100,
        100,
        Duration::from_millis(10),
    ));
    // A bulk echo both ways: 64 KiB every 5 ms (about 13 MB/s) for 3 s.
    let bulk = tokio::spawn(echo_transfer(
        addr(eport),
        62,
        600 * 65536,
        65536,
        Duration::from_millis(5),
    ));
    // A download read at 16 MB/s for 6 s: the relay holds what the
    // phone has not read yet.
    let down = tokio::spawn(verified_download(addr(dport), 51, DOWNLOAD, 16 << 20));
    // UDP: a datagram every 20 ms for 8 s.
    let pings = tokio::spawn(udp_pings(addr(uport), 400, Duration::from_millis(20)));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    let first = upgrade(&snapt).await;
    let first_took = t.elapsed();
    let second_pid = first["successor_pid"].as_u64().expect("successor pid") as u32;
    bed.descendants.push(second_pid);
    println!("first upgrade: {first}");
    assert!(first["connections"].as_u64().unwrap() >= 3, "{first}");
    assert_eq!(first["flows"].as_u64(), Some(1), "{first}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The second as systemd's ExecReload does it: `snaptd --upgrade`.
    let conf = bed.path("snaptd.toml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(relay_tests::bed::bin("snaptd"))
            .arg("--upgrade")
            .arg("-c")
            .arg(conf)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "snaptd --upgrade: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let second: serde_json::Value = serde_json::from_str(
        text.trim()
            .strip_prefix("upgraded: ")
            .unwrap_or_else(|| panic!("{text}")),
    )
    .unwrap();
    let third_pid = second["successor_pid"].as_u64().expect("successor pid") as u32;
    bed.descendants.push(third_pid);
    println!("second upgrade: {second}");

    let keys = keys
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("keystrokes: {e}"));
    let bulk = bulk
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("bulk echo: {e}"));
    let down_gap = down
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("download: {e}"));
    let (answered, udp_gap) = pings.await.unwrap();

    // The same session all along, served by the third process now; the
    // first two exited.
    let now = snapt_ctl(&snapt, &["status"]).unwrap();
    assert_eq!(now["pid"].as_u64(), Some(u64::from(third_pid)), "{now}");
    assert_ne!(u64::from(third_pid), first_pid);
    wait_until(Duration::from_secs(5), "the first snaptd to exit", || {
        bed.daemons
            .iter_mut()
            .find(|d| d.name == "snaptd")
            .is_some_and(|d| d.exited())
    });
    let status = ctl(&control, &["status"]).unwrap();
    assert_eq!(
        status["sites"][0]["session_id"], session,
        "the box started a new session"
    );
    let log = bed.log("box-1");
    assert!(!log.contains("stream reset"), "a stream was reset:\n{log}");
    // The box saw each upgrade as its tunnel ending, and resumed.
    let resumed = log.matches("handover complete").count();
    for l in log.lines().chain(bed.log("snaptd").lines()) {
        if ["handover", "upgrade", "took over", "taken over", "tunnel"]
            .iter()
            .any(|w| l.contains(w))
        {
            println!("  {l}");
        }
    }
    assert!(resumed >= 2, "{resumed} handovers for two upgrades:\n{log}");
    assert!(answered >= 390, "only {answered} of 400 UDP pings answered");
    println!(
        "two upgrades: first answered after {first_took:?}; keystroke gap {:?}, bulk echo gap {:?} ({} bytes), download gap {down_gap:?} ({DOWNLOAD} bytes, verified), UDP {answered}/400 answered, gap {udp_gap:?}",
        keys.max_gap, bulk.max_gap, bulk.bytes
    );
}

/// The services of the failure tests: an echo.
async fn bed_with_echo(
    tag: &str,
    env: &[(&str, &str)],
) -> (Bed, std::path::PathBuf, std::path::PathBuf, SocketAddr) {
    let echo = echo_server().await;
    let mut bed = Bed::new(tag);
    for (k, v) in env {
        bed.env.push(((*k).into(), (*v).into()));
    }
    let port = free_port();
    let snapt = bed.snaptd(
        "snaptd",
        port,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"),
    );
    let eport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{eport}\"\n"
        ),
    );
    wait_established(&control);
    (
        bed,
        snapt,
        control,
        format!("127.0.0.1:{eport}").parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_start_changes_nothing() {
    let (mut bed, snapt, control, svc) = bed_with_echo("upgrade-bad-config", &[]).await;
    let pid = snapt_ctl(&snapt, &["status"]).unwrap()["pid"]
        .as_u64()
        .unwrap();
    let keys = tokio::spawn(echo_transfer(
        svc,
        71,
        300 * 100,
        100,
        Duration::from_millis(10),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The configuration now installed is broken: the new process refuses
    // to start, and the running one carries on untouched.
    let conf = bed.path("snaptd.toml");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{good}\nlisten_backlog_typo = 1\n")).unwrap();
    let c = snapt.clone();
    let refused = tokio::task::spawn_blocking(move || snapt_ctl(&c, &["upgrade"]))
        .await
        .unwrap();
    let why = refused.expect_err("an upgrade to a broken configuration succeeded");
    assert!(why.contains("did not start"), "{why}");
    assert_eq!(
        snapt_ctl(&snapt, &["status"]).unwrap()["pid"].as_u64(),
        Some(pid)
    );
    // Fixed, the next upgrade works, and the stream never noticed either.
    std::fs::write(&conf, good).unwrap();
    let v = upgrade(&snapt).await;
    bed.descendants
        .push(v["successor_pid"].as_u64().unwrap() as u32);
    let keys = keys
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("keystrokes: {e}"));
    assert!(!bed.log("box-1").contains("stream reset"));
    let status = ctl(&control, &["status"]).unwrap();
    assert_eq!(status["sites"][0]["state"], "Established", "{status}");
    println!(
        "refused upgrade, then an upgrade: keystroke gap {:?} (why: {why})",
        keys.max_gap
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_dies_half_way_leaves_everything_with_the_old_relay() {
    let (bed, snapt, _control, svc) = bed_with_echo(
        "upgrade-dies",
        &[("SNAPTD_FAILPOINT", "upgrade-exit-after-receive")],
    )
    .await;
    let pid = snapt_ctl(&snapt, &["status"]).unwrap()["pid"]
        .as_u64()
        .unwrap();
    let keys = tokio::spawn(echo_transfer(
        svc,
        81,
        300 * 100,
        100,
        Duration::from_millis(10),
    ));
    let bulk = tokio::spawn(echo_transfer(
        svc,
        82,
        200 * 65536,
        65536,
        Duration::from_millis(5),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let c = snapt.clone();
    let failed = tokio::task::spawn_blocking(move || snapt_ctl(&c, &["upgrade"]))
        .await
        .unwrap();
    let why = failed.expect_err("the upgrade cannot succeed with a successor that dies");
    assert!(why.contains("took its sessions back"), "{why}");
    // The old process took its own sessions and connections back; the box
    // resumed on it and both streams finish intact.
    let keys = keys
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("keystrokes: {e}"));
    let bulk = bulk.await.unwrap().unwrap_or_else(|e| panic!("bulk: {e}"));
    assert_eq!(
        snapt_ctl(&snapt, &["status"]).unwrap()["pid"].as_u64(),
        Some(pid)
    );
    let log = bed.log("box-1");
    assert!(!log.contains("stream reset"), "{log}");
    assert!(log.contains("the relay closed the tunnel"), "{log}");
    // And the relay still takes new streams.
    echo_transfer(svc, 83, 4096, 4096, Duration::ZERO)
        .await
        .unwrap();
    println!(
        "failed upgrade taken back: keystroke gap {:?}, bulk gap {:?} (why: {why})",
        keys.max_gap, bulk.max_gap
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_way_carries_on_in_the_new_process() {
    let (mut bed, snapt, _control, _svc) = bed_with_echo("upgrade-drain", &[]).await;
    let c = snapt.clone();
    tokio::task::spawn_blocking(move || snapt_ctl(&c, &["drain", "--deadline", "600"]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("drain: {e}"));
    let v = upgrade(&snapt).await;
    bed.descendants
        .push(v["successor_pid"].as_u64().unwrap() as u32);
    let st = snapt_ctl(&snapt, &["status"]).unwrap();
    assert_eq!(st["pid"], v["successor_pid"], "{st}");
    let left = st["draining"]["deadline_in_s"]
        .as_u64()
        .unwrap_or_else(|| panic!("not draining: {st}"));
    assert!((590..=600).contains(&left), "{st}");
}
