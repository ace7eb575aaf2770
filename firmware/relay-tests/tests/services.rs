//! Client services (pushed from the server side to the phone) and
//! multi-site (services spread over two SNAPTs, switched together), with the
//! real binaries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::Duration;

use relay_tests::apps::{echo_server, echo_transfer, udp_echo_server};
use relay_tests::bed::{Bed, ctl, free_port, wait_established};

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_service_is_pushed_from_the_server_side_to_the_phone() {
    push("push", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_client_service_is_pushed_from_the_server_side_to_the_phone() {
    push("push-zstd", "compress = \"zstd\"\n").await;
}

/// The "phone" runs a service (an echo on 127.0.0.1); the server side
/// reaches it at the box's client-service address 127.0.0.10:<port>, with
/// `compress` in both client-service entries.
async fn push(name: &str, compress: &str) {
    let phone = echo_server().await;
    let mut bed = Bed::new(name);
    let port = free_port();
    let push_port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "client_service_addresses = [\"127.0.0.10\", \"127.0.0.11\"]",
        &format!("[[client_service]]\nname = \"push\"\nport = {push_port}\nboxes = [\"box-1\"]\n{compress}{SESSION}"),
    );
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[client_service]]\nname = \"push\"\nconnect = \"{phone}\"\n{compress}{SESSION}"
        ),
    );
    wait_established(&control);
    let virt: SocketAddr = format!("127.0.0.10:{push_port}").parse().unwrap();
    // A push through a planned switch, SHA-256 checked both ways.
    let push = tokio::spawn(echo_transfer(
        virt,
        7,
        8 << 20,
        16 * 1024,
        Duration::from_millis(1),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = control.clone();
    tokio::task::spawn_blocking(move || ctl(&c, &["switch", "b"]).unwrap())
        .await
        .unwrap();
    push.await
        .unwrap()
        .unwrap_or_else(|e| panic!("push: {e}\n{}", bed.log("snaptd")));
    let site = &ctl(&control, &["status"]).unwrap()["sites"][0];
    assert_eq!(site["switches"], 1);
    assert!(bed.log("snaptd").contains("client service listening"));
}

/// One server of the UDP push test: sends `n` numbered datagrams to `to`
/// (every 5 ms) and collects the echoes; returns (sent, echoes, strangers):
/// echoes are its own datagrams back from `to`, strangers anything else.
async fn udp_pusher(tag: u8, to: SocketAddr, n: u32) -> (u32, u32, u32) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut echoes, mut strangers) = (0u32, 0u32);
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let mut msg = vec![tag; 200];
        msg[1..5].copy_from_slice(&i.to_be_bytes());
        sock.send_to(&msg, to).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
        while let Ok(Ok((len, from))) =
            tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
        {
            let own =
                from == to && len == 200 && buf[0] == tag && buf[5..200].iter().all(|b| *b == tag);
            let idx = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            if own && idx < n && seen.insert(idx) {
                echoes += 1;
            } else {
                strangers += 1;
            }
        }
    }
    // The last answers.
    while let Ok(Ok((len, from))) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
    {
        let idx = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if from == to && len == 200 && buf[0] == tag && idx < n && seen.insert(idx) {
            echoes += 1;
        } else {
            strangers += 1;
        }
    }
    (n, echoes, strangers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_client_service_is_pushed_from_the_server_side_to_the_phone() {
    // The phone's UDP service (an echo on 127.0.0.1); two servers send to
    // the box's client-service address 127.0.0.10:<port>, each on its own
    // flow, across a planned switch; each gets its own answers, from that
    // address, and nobody else's.
    let phone = udp_echo_server().await;
    let mut bed = Bed::new("push-udp");
    let port = free_port();
    let push_port = free_port();
    let snapt = bed.snaptd(
        "snaptd",
        port,
        "client_service_addresses = [\"127.0.0.10\"]",
        &format!(
            "[[client_service]]\nname = \"alerts\"\nport = {push_port}\nprotocol = \"udp\"\nboxes = [\"box-1\"]\n{SESSION}"
        ),
    );
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[client_service]]\nname = \"alerts\"\nconnect = \"{phone}\"\nprotocol = \"udp\"\n{SESSION}"
        ),
    );
    wait_established(&control);
    let virt: SocketAddr = format!("127.0.0.10:{push_port}").parse().unwrap();
    let one = tokio::spawn(udp_pusher(1, virt, 400));
    let two = tokio::spawn(udp_pusher(2, virt, 400));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flows = relay_tests::bed::snapt_ctl(&snapt, &["status"]).unwrap()["pushed_flows"].clone();
    let c = control.clone();
    tokio::task::spawn_blocking(move || ctl(&c, &["switch", "b"]).unwrap())
        .await
        .unwrap();
    for (name, task) in [("one", one), ("two", two)] {
        let (sent, echoes, strangers) = task.await.unwrap();
        println!("server {name}: {sent} sent, {echoes} answered, {strangers} strangers");
        assert_eq!(
            strangers,
            0,
            "server {name} got datagrams not its own\n{}",
            bed.log("snaptd")
        );
        // UDP may lose a datagram in a switch; nearly all come back.
        assert!(
            echoes * 100 >= sent * 95,
            "server {name}: {echoes}/{sent}\n{}",
            bed.log("snaptd")
        );
    }
    assert_eq!(flows, 2, "one flow per server address");
    let site = &ctl(&control, &["status"]).unwrap()["sites"][0];
    assert_eq!(site["switches"], 1);
    assert!(bed.log("snaptd").contains("UDP client service listening"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_snapts_switch_together_and_keep_every_byte() {
    let (echo1, echo2) = (echo_server().await, echo_server().await);
    let mut bed = Bed::new("multisite");
    let (p1, p2) = (free_port(), free_port());
    bed.snaptd(
        "site1",
        p1,
        "",
        &format!("[[service]]\nname = \"one\"\ntarget = \"{echo1}\"\n{SESSION}"),
    );
    bed.snaptd(
        "site2",
        p2,
        "",
        &format!("[[service]]\nname = \"two\"\ntarget = \"{echo2}\"\n{SESSION}"),
    );
    let (l1, l2) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"site1\"\naddress = \"127.0.0.1:{p1}\"\nserver_name = \"127.0.0.1\"\n\
             [[snapt]]\nname = \"site2\"\naddress = \"127.0.0.1:{p2}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[service]]\nname = \"one\"\nlisten = \"127.0.0.1:{l1}\"\nsnapt = \"site1\"\n\
             [[service]]\nname = \"two\"\nlisten = \"127.0.0.1:{l2}\"\nsnapt = \"site2\"\n{SESSION}"
        ),
    );
    wait_established(&control);
    let s1: SocketAddr = format!("127.0.0.1:{l1}").parse().unwrap();
    let s2: SocketAddr = format!("127.0.0.1:{l2}").parse().unwrap();
    let t1 = tokio::spawn(echo_transfer(
        s1,
        11,
        16 << 20,
        16 * 1024,
        Duration::from_millis(2),
    ));
    let t2 = tokio::spawn(echo_transfer(
        s2,
        12,
        16 << 20,
        16 * 1024,
        Duration::from_millis(2),
    ));
    let c = control.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..10 {
            let up = if i % 2 == 0 { "b" } else { "a" };
            ctl(&c, &["switch", up]).unwrap_or_else(|e| panic!("switch {i}: {e}"));
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(
        !t1.is_finished() && !t2.is_finished(),
        "the transfers must span the switches"
    );
    t1.await.unwrap().unwrap_or_else(|e| panic!("site 1: {e}"));
    t2.await.unwrap().unwrap_or_else(|e| panic!("site 2: {e}"));
    let st = ctl(&control, &["status"]).unwrap();
    for site in st["sites"].as_array().unwrap() {
        assert_eq!(site["switches"], 10, "{st}");
        assert_eq!(site["uplink"], "a", "both sites end on the same uplink");
        assert_eq!(site["bytes_replayed"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_service_relays_datagrams_across_planned_switches() {
    let echo = relay_tests::apps::udp_echo_server().await;
    let mut bed = Bed::new("udp");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!("[[service]]\nname = \"dns\"\nprotocol = \"udp\"\ntarget = \"{echo}\"\n{SESSION}"),
    );
    let lport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:{lport}\"\n{SESSION}"
        ),
    );
    wait_established(&control);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(format!("127.0.0.1:{lport}")).await.unwrap();
    let c = control.clone();
    let switcher = tokio::task::spawn_blocking(move || {
        for i in 0..6 {
            std::thread::sleep(Duration::from_millis(150));
            ctl(&c, &["switch", if i % 2 == 0 { "b" } else { "a" }]).unwrap();
        }
    });
    let sent = 400u32;
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    for seq in 0..sent {
        // 4-byte sequence number, then a body that depends on it.
        let mut d = seq.to_be_bytes().to_vec();
        d.extend(relay_tests::apps::pattern(u64::from(seq), 200));
        sock.send(&d).await.unwrap();
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(3), sock.recv(&mut buf)).await
        {
            let s = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            assert_eq!(
                &buf[4..n],
                &relay_tests::apps::pattern(u64::from(s), 200)[..],
                "corrupt datagram {s}"
            );
            assert!(seen.insert(s), "datagram {s} delivered twice");
        }
    }
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let s = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        assert_eq!(
            &buf[4..n],
            &relay_tests::apps::pattern(u64::from(s), 200)[..],
            "corrupt datagram {s}"
        );
        assert!(seen.insert(s), "datagram {s} delivered twice");
    }
    switcher.await.unwrap();
    let st = ctl(&control, &["status"]).unwrap();
    println!(
        "UDP: {} of {sent} datagrams echoed across {} switches, {} dropped in queues",
        seen.len(),
        st["sites"][0]["switches"],
        st["sites"][0]["datagrams_dropped"]
    );
    assert_eq!(st["sites"][0]["switches"], 6);
    // Never replayed, but a planned switch drains the old tunnel: nothing is
    // lost on loopback.
    let missing: Vec<u32> = (0..sent).filter(|s| !seen.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "datagrams lost across planned switches: {missing:?}"
    );
}
