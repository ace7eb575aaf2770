//! Real binaries, real TLS, loopback: application bytes through
//! app client → cnaptd → snaptd → app server survive planned switches and
//! abrupt tunnel kills, checked with SHA-256 in both directions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::Duration;

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, ctl, free_port, wait_established};
use relay_tests::cutter::Cutter;

/// A bed with snaptd (echo service) reachable through a cutter, and cnaptd
/// with two uplinks (source 127.0.0.2 and 127.0.0.3) and the echo service
/// on a local port. Returns (bed, cutter, box control socket, service addr).
async fn relay(tag: &str) -> (Bed, Cutter, std::path::PathBuf, SocketAddr) {
    let echo = echo_server().await;
    let mut bed = Bed::new(tag);
    let sport = free_port();
    bed.snaptd(
        "snaptd",
        sport,
        "",
        &format!(
            "[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\n"
        ),
    );
    let cutter = Cutter::start(format!("127.0.0.1:{sport}").parse().unwrap()).await;
    let lport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"{}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\ninterface = \"lo\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n\
             [session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\n",
            cutter.addr
        ),
    );
    wait_established(&control);
    (
        bed,
        cutter,
        control,
        format!("127.0.0.1:{lport}").parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_planned_switches_during_bulk_echo_lose_nothing() {
    let (bed, _cutter, control, svc) = relay("planned").await;
    // 24 MiB echoed while the box switches 50 times between its uplinks.
    // Paced so that both transfers outlast the 50 switches.
    let bulk = tokio::spawn(echo_transfer(
        svc,
        1,
        40 << 20,
        32 * 1024,
        Duration::from_millis(4),
    ));
    let interactive = tokio::spawn(echo_transfer(svc, 2, 60_000, 100, Duration::from_millis(5)));
    let ctl_path = control.clone();
    let switches = tokio::task::spawn_blocking(move || {
        let mut durations = Vec::new();
        for i in 0..50 {
            let up = if i % 2 == 0 { "b" } else { "a" };
            let v = ctl(&ctl_path, &["switch", up])
                .unwrap_or_else(|e| panic!("switch {i} to {up}: {e}"));
            durations.push(v["ms"].as_f64().unwrap_or(0.0));
            std::thread::sleep(Duration::from_millis(30));
        }
        durations
    });
    let durations = switches.await.unwrap();
    assert!(
        !bulk.is_finished() && !interactive.is_finished(),
        "the transfers must span every switch"
    );
    let b = bulk
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("bulk: {e}\n{}", bed.log("box-1")));
    let t = interactive
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("interactive: {e}"));
    let status = ctl(&control, &["status"]).unwrap();
    let site = &status["sites"][0];
    assert_eq!(site["switches"], 50, "{status}");
    assert_eq!(site["bytes_replayed"], 0, "planned switches resend nothing");
    // The history (`cboxctl handovers`): the last 32 of 50, numbered,
    // alternating between the uplinks, planned, completed, nothing resent.
    assert_eq!(status["handovers_total"], 50, "{status}");
    let hs = ctl(&control, &["handovers"]).unwrap();
    let hs = hs.as_array().unwrap();
    assert_eq!(hs.len(), 32);
    for (k, h) in hs.iter().enumerate() {
        assert_eq!(h["seq"], 19 + k as u64, "{h}");
        assert_eq!(h["kind"], "planned", "{h}");
        assert_eq!(h["outcome"]["result"], "completed", "{h}");
        assert_eq!(h["bytes_replayed"], 0, "{h}");
        assert_ne!(h["from_uplink"], h["to_uplink"], "{h}");
        assert!(h["stall_ms"].as_f64().unwrap() > 0.0, "{h}");
    }
    assert_eq!(hs[31]["to_uplink"], "a", "the 50th switch went to a");
    let max_ms = durations.iter().cloned().fold(0.0, f64::max);
    println!(
        "50 planned switches: slowest {max_ms:.1} ms; bulk {} B in {:?}, interactive max gap {:?}",
        b.bytes, b.elapsed, t.max_gap
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_abrupt_tunnel_kills_mid_transfer_lose_nothing() {
    let (bed, cutter, control, svc) = relay("kills").await;
    let bulk = tokio::spawn(echo_transfer(
        svc,
        3,
        48 << 20,
        32 * 1024,
        Duration::from_millis(4),
    ));
    let interactive = tokio::spawn(echo_transfer(svc, 4, 80_000, 100, Duration::from_millis(5)));
    let ctl_path = control.clone();
    let c = cutter.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..50 {
            c.reset_all();
            // Let the box reconnect and resynchronise before the next kill.
            wait_established(&ctl_path);
            std::thread::sleep(Duration::from_millis(40));
        }
    })
    .await
    .unwrap();
    assert!(
        !bulk.is_finished() && !interactive.is_finished(),
        "the transfers must span every kill"
    );
    let b = bulk
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("bulk: {e}\n{}", bed.log("box-1")));
    let t = interactive
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("interactive: {e}"));
    let status = ctl(&control, &["status"]).unwrap();
    let site = &status["sites"][0];
    assert!(site["switches"].as_u64().unwrap() >= 50, "{status}");
    // Every kill is a sudden handover in the history, completed (the
    // box's own returns to its preferred uplink are planned ones, which
    // resend nothing); what the records say was resent adds up to no more than
    // the session's counter.
    let hs = ctl(&control, &["handovers"]).unwrap();
    let hs = hs.as_array().unwrap();
    let mut resent = 0;
    let mut sudden = 0;
    for h in hs {
        match h["kind"].as_str() {
            Some("sudden") => {
                assert_eq!(h["outcome"]["result"], "completed", "{h}");
                sudden += 1;
            }
            // A return that met a kill may fail (the box stays and tries
            // again later); it is recorded with its reason.
            Some("planned") => {
                assert_eq!(h["bytes_replayed"], 0, "{h}");
                if h["outcome"]["result"] == "failed" {
                    assert!(
                        h["outcome"]["why"].as_str().is_some_and(|w| !w.is_empty()),
                        "{h}"
                    );
                }
            }
            _ => panic!("{h}"),
        }
        resent += h["bytes_replayed"].as_u64().unwrap();
    }
    assert!(sudden >= hs.len() / 2, "{sudden} sudden of {}", hs.len());
    assert!(
        resent <= site["bytes_replayed"].as_u64().unwrap(),
        "{resent} > {site}"
    );
    println!(
        "50 kills: {} switches, {} bytes replayed; bulk {} B in {:?}, interactive max gap {:?}",
        site["switches"], site["bytes_replayed"], b.bytes, b.elapsed, t.max_gap
    );
}
