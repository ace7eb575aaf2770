//! Everyday use and hostile peers, with the real binaries on loopback: what
//! must keep working after a day of phones, and what no peer may exhaust,
//! bypass or silently truncate (issue 14's defects, one test each).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use relay_tests::apps::{download, download_server};
use relay_tests::bed::{Bed, ctl, free_port, wait_established, wait_until};

/// A box with one SNAPT on `port` and `body` appended.
fn box_conf(port: u16, body: &str) -> String {
    format!(
        "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n{body}"
    )
}

// ---- D10: a reset stays a reset -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_resets_its_connection_reaches_the_phone_as_a_reset() {
    let aborting = download_server(3, 4 << 20, Some(300_000)).await;
    let complete = download_server(4, 1 << 20, None).await;
    let mut bed = Bed::new("d10-reset");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"abort\"\ntarget = \"{aborting}\"\n[[service]]\nname = \"whole\"\ntarget = \"{complete}\"\n"
        ),
    );
    let (l1, l2) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!(
                "[[service]]\nname = \"abort\"\nlisten = \"127.0.0.1:{l1}\"\n[[service]]\nname = \"whole\"\nlisten = \"127.0.0.1:{l2}\"\n"
            ),
        ),
    );
    wait_established(&control);
    let cut: SocketAddr = format!("127.0.0.1:{l1}").parse().unwrap();
    let whole: SocketAddr = format!("127.0.0.1:{l2}").parse().unwrap();

    // The server resets after 300,000 bytes: the phone must see an error,
    // never an end of stream that makes the truncated download look done.
    let d = download(cut, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        d.error,
        Some(ErrorKind::ConnectionReset),
        "the phone saw {d:?} for a download the server reset"
    );
    assert!(d.bytes <= 300_000, "more bytes than were sent: {d:?}");
    // A download that ends normally still ends with FIN and every byte.
    let d = download(whole, Duration::from_secs(20)).await.unwrap();
    assert_eq!((d.bytes, d.error), (1 << 20, None), "normal end: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cut_by_a_lost_session_reach_the_phone_as_resets() {
    // A download far longer than the test: it can only end by the cut.
    let endless = download_server(5, usize::MAX, None).await;
    let mut bed = Bed::new("d10-session");
    let port = free_port();
    let services = format!("[[service]]\nname = \"dl\"\ntarget = \"{endless}\"\n");
    bed.snaptd("snaptd", port, "", &services);
    let lport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!("[[service]]\nname = \"dl\"\nlisten = \"127.0.0.1:{lport}\"\n"),
        ),
    );
    wait_established(&control);
    let svc: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    let phone = tokio::spawn(download(svc, Duration::from_secs(40)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // snaptd crashes (SIGKILL: no DISCONNECT) and comes back without the
    // session: the box's resumption is refused and the stream is lost.
    let i = bed.daemons.iter().position(|d| d.name == "snaptd").unwrap();
    drop(bed.daemons.remove(i));
    let _ = std::fs::remove_file(bed.path("snaptd.sock"));
    bed.snaptd("snaptd", port, "", &services);
    let d = phone.await.unwrap().unwrap();
    assert!(d.bytes > 0, "nothing arrived before the crash: {d:?}");
    assert_eq!(
        d.error,
        Some(ErrorKind::ConnectionReset),
        "a stream lost with its session reached the phone as {d:?}"
    );
}

// ---- D2: every accept loop survives its errors -----------------------------

/// Opens up to `n` TCP connections to `addr` and holds them (stops at the
/// first refusal).
async fn hold_connections(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snaptd_out_of_file_descriptors_takes_boxes_again_once_they_are_back() {
    let mut bed = Bed::new("d2-snapt");
    let port = free_port();
    // A small fd table: idle connections that never start TLS exhaust it.
    bed.wrapper = vec!["prlimit".into(), "--nofile=64:64".into(), "--".into()];
    let snapt_ctl = bed.snaptd("snaptd", port, "", "");
    bed.wrapper.clear();
    let tunnel: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Accepts fail with EMFILE meanwhile (the kernel queues what snaptd
    // cannot take).
    let held = hold_connections(tunnel, 150).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(held);
    // The descriptors come back (the handshakes see EOF): a box connects.
    let control = bed.cnaptd("box-1", &box_conf(port, ""));
    wait_established(&control);
    let status = relay_tests::bed::snapt_ctl(&snapt_ctl, &["status"]).unwrap();
    assert!(
        status["accept_errors"].as_u64().unwrap_or(0) > 0,
        "the fd table was never exhausted: {status}"
    );
    let log = bed.log("snaptd");
    assert!(
        log.contains("accept failed; going on"),
        "no log line for the accept errors:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnaptd_out_of_file_descriptors_keeps_its_listeners_and_control_socket() {
    let echo = relay_tests::apps::echo_server().await;
    let mut bed = Bed::new("d2-cnapt");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"),
    );
    let (lport, wport) = (free_port(), free_port());
    bed.wrapper = vec!["prlimit".into(), "--nofile=96:96".into(), "--".into()];
    let control = bed.cnaptd_with(
        "box-1",
        "",
        &box_conf(
            port,
            &format!(
                "[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n[web]\nlisten = \"127.0.0.1:{wport}\"\npin = \"482913\"\n"
            ),
        ),
    );
    bed.wrapper.clear();
    wait_established(&control);
    let svc: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    let page: SocketAddr = format!("127.0.0.1:{wport}").parse().unwrap();

    // Idle connections to the page: it holds only its per-client share.
    let idle_page = hold_connections(page, 200).await;
    // Phone connections beyond the fd table: accepts fail with EMFILE.
    let phones = hold_connections(svc, 150).await;
    drop(phones);
    drop(idle_page);
    // Everything still answers: the control socket, the service listener
    // (a full echo through the tunnel), the page.
    relay_tests::bed::wait_until(Duration::from_secs(10), "the control socket", || {
        ctl(&control, &["status"]).is_ok()
    });
    let t = relay_tests::apps::echo_transfer(svc, 9, 256 * 1024, 4096, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("echo after the fd exhaustion: {e}\n{}", bed.log("box-1")));
    assert_eq!(t.bytes, 256 * 1024);
    let mut s = tokio::net::TcpStream::connect(page).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let c = ctl(&control, &["status"]).unwrap()["counters"].clone();
    println!("cnaptd counters after the flood: {c}");
    assert!(c["accept_errors"].as_u64().unwrap_or(0) > 0, "{c}");
    assert!(c["page_refused"].as_u64().unwrap_or(0) > 0, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_holds_few_idle_connections_per_client_and_closes_them() {
    let mut bed = Bed::new("d2-page");
    let port = free_port();
    bed.snaptd("snaptd", port, "", "");
    let wport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!("[web]\nlisten = \"127.0.0.1:{wport}\"\npin = \"482913\"\n"),
        ),
    );
    wait_established(&control);
    let page: SocketAddr = format!("127.0.0.1:{wport}").parse().unwrap();
    let mut held = hold_connections(page, 100).await;
    // Over its share, the page closes a connection at once: reads see EOF.
    use tokio::io::AsyncReadExt;
    let mut open = 0;
    for s in &mut held {
        let mut b = [0u8; 1];
        // A timeout: still held by the page; anything else: closed.
        if tokio::time::timeout(Duration::from_millis(300), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    // web::Limits::default(): 16 per client, a 10 s header deadline.
    assert!(
        (1..=16).contains(&open),
        "{open} idle connections held from one client"
    );
    // The held ones are closed once the header deadline passes.
    let deadline = Duration::from_secs(10 + 3);
    for s in &mut held {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(deadline, s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection outlived the header deadline"
        );
    }
}

// ---- D1: datagram flows end like a NAT's ------------------------------------

/// `n` one-shot queries, each from a socket of its own (a stub resolver's
/// random source port), each waiting up to 2 s for its answer; returns how
/// many were answered.
async fn one_shot_queries(to: SocketAddr, n: usize) -> usize {
    let mut answered = 0;
    for i in 0..n {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = format!("query {i}");
        s.send_to(q.as_bytes(), to).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok((k, _))) =
            tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await
            && &buf[..k] == q.as_bytes()
        {
            answered += 1;
        }
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_dns_queries_from_random_ports_leave_the_box_usable() {
    let resolver = relay_tests::apps::udp_echo_server().await;
    let echo = relay_tests::apps::echo_server().await;
    let mut bed = Bed::new("d1-dns");
    let port = free_port();
    // Short timeouts for the test (defaults: 30 s and 120 s). A reused
    // source port makes a conversation of two queries: the stream timeout.
    let udp = "[udp]\nidle_timeout_ms = 2000\nstream_timeout_ms = 3000\n";
    let snapt_ctl = bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"dns\"\ntarget = \"{resolver}\"\nprotocol = \"udp\"\n[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n{udp}"
        ),
    );
    let (dport, eport) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!(
                "[[service]]\nname = \"dns\"\nlisten = \"127.0.0.1:{dport}\"\nprotocol = \"udp\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{eport}\"\n{udp}"
            ),
        ),
    );
    wait_established(&control);
    let dns: SocketAddr = format!("127.0.0.1:{dport}").parse().unwrap();
    let svc: SocketAddr = format!("127.0.0.1:{eport}").parse().unwrap();

    // 300 one-off queries: more than the session's 256 stream slots.
    let answered = one_shot_queries(dns, 300).await;
    assert_eq!(answered, 300, "queries left unanswered");
    let c = ctl(&control, &["status"]).unwrap()["counters"].clone();
    assert!(c["datagram_flows"].as_u64().unwrap() <= 256, "{c}");
    // 44 beyond the table, less any query whose freed source port the
    // kernel handed out again (its flow was still there).
    assert!(c["flows_evicted"].as_u64().unwrap() >= 30, "{c}");
    // A phone's new TCP connection is still taken.
    let t = relay_tests::apps::echo_transfer(svc, 1, 64 * 1024, 4096, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("TCP after the queries: {e}\n{}", bed.log("box-1")));
    assert_eq!(t.bytes, 64 * 1024);
    // Quiet flows end on both sides (idle_timeout_ms = 2000 here; 30 s by
    // default): the box ends them, snaptd follows (its own sweep, 10 s
    // later, is the backstop).
    let quiet = || {
        let b = ctl(&control, &["status"]).unwrap();
        let s = relay_tests::bed::snapt_ctl(&snapt_ctl, &["status"]).unwrap();
        (
            b["counters"]["datagram_flows"].clone(),
            b["sites"][0]["streams"].clone(),
            s["datagram_flows"].clone(),
            s["boxes"][0]["streams"].clone(),
        )
    };
    let until = std::time::Instant::now() + Duration::from_secs(25);
    while quiet() != (0.into(), 0.into(), 0.into(), 0.into()) {
        assert!(
            std::time::Instant::now() < until,
            "flows left (box flows, box streams, SNAPT flows, SNAPT streams): {:?}",
            quiet()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = ctl(&control, &["status"]).unwrap()["counters"].clone();
    assert!(c["flows_expired"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["connections_refused"], 0, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_daemons_feed_the_systemd_watchdog_from_their_work_loops() {
    let mut bed = Bed::new("d2-watchdog");
    let notify = bed.path("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&notify).unwrap();
    bed.env = vec![
        ("NOTIFY_SOCKET".into(), notify.display().to_string()),
        ("WATCHDOG_USEC".into(), "400000".into()),
    ];
    let port = free_port();
    bed.snaptd("snaptd", port, "", "");
    let control = bed.cnaptd("box-1", &box_conf(port, ""));
    wait_established(&control);
    // Both daemons report READY=1, then WATCHDOG=1 every 200 ms.
    let mut ready = 0;
    let mut pings = 0;
    let mut buf = [0u8; 512];
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
        let msg = String::from_utf8_lossy(&buf[..n]);
        ready += usize::from(msg.contains("READY=1"));
        pings += usize::from(msg.contains("WATCHDOG=1"));
    }
    assert_eq!(ready, 2, "READY=1 from both daemons");
    assert!(
        pings >= 10,
        "{pings} watchdog pings in 2 s from two daemons"
    );
}

// ---- D3: datagrams faster than the uplink ----------------------------------

fn rss_kib(pid: u32) -> u64 {
    (relay_tests::procinfo::rss_mib(pid) * 1024.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_faster_than_the_uplink_is_dropped_counted_and_bounded() {
    let sink = relay_tests::apps::udp_echo_server().await;
    let echo = relay_tests::apps::echo_server().await;
    let mut bed = Bed::new("d3-flood");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"call\"\ntarget = \"{sink}\"\nprotocol = \"udp\"\n[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"
        ),
    );
    // A 2 Mbit/s uplink.
    let cutter =
        relay_tests::cutter::Cutter::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    cutter.set_rate(250_000);
    let (cport, eport) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"{}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n[[service]]\nname = \"call\"\nlisten = \"127.0.0.1:{cport}\"\nprotocol = \"udp\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{eport}\"\n",
            cutter.addr
        ),
    );
    wait_established(&control);
    let pid = bed.daemons[1].pid();
    let before = rss_kib(pid);
    // A "video call" at far more than 2 Mbit/s for 4 s.
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to: SocketAddr = format!("127.0.0.1:{cport}").parse().unwrap();
    let payload = vec![7u8; 1200];
    let started = std::time::Instant::now();
    let (mut sent, mut peak) = (0u64, before);
    while started.elapsed() < Duration::from_secs(4) {
        for _ in 0..200 {
            if phone.send_to(&payload, to).await.is_ok() {
                sent += 1;
            }
        }
        peak = peak.max(rss_kib(pid));
        tokio::task::yield_now().await;
    }
    let st = ctl(&control, &["status"]).unwrap();
    let dropped = st["sites"][0]["datagrams_dropped"].as_u64().unwrap_or(0);
    println!(
        "{sent} datagrams ({} MB) in 4 s over a 2 Mbit/s uplink: {dropped} dropped and counted; cnaptd RSS {before} KiB before, peak {peak} KiB",
        sent * 1200 / 1_000_000
    );
    assert!(dropped > 0, "no drop counted: {st}");
    assert!(
        peak < before + 32 * 1024,
        "cnaptd grew from {before} KiB to {peak} KiB"
    );
    // The session lived through it, and TCP still goes.
    cutter.set_rate(0);
    assert_eq!(
        ctl(&control, &["status"]).unwrap()["sites"][0]["state"],
        "Established"
    );
    let svc: SocketAddr = format!("127.0.0.1:{eport}").parse().unwrap();
    let t = relay_tests::apps::echo_transfer(svc, 5, 64 * 1024, 4096, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("TCP after the flood: {e}"));
    assert_eq!(t.bytes, 64 * 1024);
}

// ---- D13: fair shares per phone; a relay restart costs about a second ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_phone_with_hundreds_of_idle_connections_leaves_room_for_the_others() {
    let echo = relay_tests::apps::echo_server().await;
    let mut bed = Bed::new("d13-share");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"),
    );
    let eport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!("[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{eport}\"\n"),
        ),
    );
    wait_established(&control);
    let svc: SocketAddr = format!("127.0.0.1:{eport}").parse().unwrap();
    // Phone A (127.0.0.2) opens 300 connections and keeps them idle.
    let mut idle = Vec::new();
    for _ in 0..300 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(s.connect(svc).await.unwrap());
    }
    let share = 256 * 3 / 4;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = ctl(&control, &["status"]).unwrap();
        let refused = st["counters"]["connections_refused"].as_u64().unwrap_or(0);
        if refused >= (300 - share) as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "phone A's connections beyond its share were not refused: {}, streams {}",
            st["counters"],
            st["sites"][0]["streams"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let streams = ctl(&control, &["status"]).unwrap()["sites"][0]["streams"].clone();
    assert_eq!(
        streams, share,
        "phone A holds its share, no more: {streams} streams"
    );
    // Phone B (127.0.0.1) still gets through.
    let t = relay_tests::apps::echo_transfer(svc, 9, 64 * 1024, 4096, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("phone B refused while A holds 300 connections: {e}"));
    assert_eq!(t.bytes, 64 * 1024);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_relay_restart_the_new_session_follows_the_refused_resumption_at_once() {
    let mut bed = Bed::new("d13-restart");
    let port = free_port();
    bed.snaptd("snaptd", port, "", "");
    let control = bed.cnaptd("box-1", &box_conf(port, ""));
    wait_established(&control);
    // The relay dies (no DISCONNECT) and stays away long enough for the
    // box's reconnection back-off to grow to seconds.
    bed.daemons.remove(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    bed.snaptd("snaptd-2", port, "", "");
    wait_until(Duration::from_secs(15), "the box to try to resume", || {
        bed.log("box-1").contains("UnknownSession")
    });
    let refused = std::time::Instant::now();
    wait_established(&control);
    let gap = refused.elapsed();
    println!("refused resumption -> new session: {gap:?}");
    assert!(
        gap < Duration::from_secs(2),
        "the new session waited {gap:?} after the refused resumption"
    );
}
