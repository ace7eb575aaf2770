//! A relay fleet behind a real TLS router (issue 17, item 1): three
//! snaptd, each with its own certificate name, behind Debian's HAProxy in
//! TCP mode routing on the TLS SNI (no TLS termination at the router);
//! real cnaptd boxes with the fleet in `[[snapt]] relays`. Every tunnel of
//! a session — primary, standby, after a switch — reaches the session's
//! relay; a relay killed costs only its own boxes, which start new sessions
//! on a sibling ("continuity lost", in the handover records), while a box
//! on another relay keeps its session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, ctl, free_port, snapt_ctl, wait_established, wait_until};
use relay_tests::router::{RELAYS, start_fleet};
use serde_json::Value;

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\n";

fn status(control: &Path) -> Value {
    ctl(control, &["status"]).unwrap()
}

/// Which relays hold a session of `box_id`.
fn holders(relays: &[PathBuf], box_id: &str) -> Vec<usize> {
    (0..relays.len())
        .filter(|i| {
            snapt_ctl(&relays[*i], &["status"]).is_ok_and(|v| {
                v["boxes"]
                    .as_array()
                    .is_some_and(|b| b.iter().any(|x| x["box_id"] == box_id))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_on_its_relay_and_a_dead_relay_costs_only_its_boxes() {
    let echo = echo_server().await;
    let mut bed = Bed::new("fleet");
    let fleet = start_fleet(
        &mut bed,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n{SESSION}"),
    );
    let (relay_ctl, relay_daemon, router) = (fleet.controls, fleet.daemons, fleet.router);
    let relays_toml = RELAYS
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut boxes = HashMap::new();
    for b in ["box-1", "box-2", "box-3", "box-4"] {
        let lport = free_port();
        let control = bed.cnaptd(
            b,
            &format!(
                "[[snapt]]\nname = \"fleet\"\naddress = \"{router}\"\nrelays = [{relays_toml}]\n\
                 [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
                 [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n{SESSION}"
            ),
        );
        boxes.insert(b, (control, lport));
    }
    let mut on = HashMap::new();
    for (b, (control, _)) in &boxes {
        wait_established(control);
        let relay = status(control)["sites"][0]["relay"]
            .as_str()
            .unwrap()
            .to_owned();
        let i = RELAYS.iter().position(|r| *r == relay).unwrap();
        assert_eq!(
            holders(&relay_ctl, b),
            vec![i],
            "{b}'s session is on {relay} only"
        );
        on.insert(*b, i);
    }
    println!("boxes on relays: {on:?}");
    // Every tunnel of box-1's session reaches its relay: after a planned
    // switch to the other uplink the session is the same, on the same relay.
    let (c1, l1) = boxes["box-1"].clone();
    let before = status(&c1);
    let up = if before["sites"][0]["uplink"] == "a" {
        "b"
    } else {
        "a"
    };
    ctl(&c1, &["switch", up]).unwrap();
    echo_transfer(
        format!("127.0.0.1:{l1}").parse().unwrap(),
        3,
        128 * 1024,
        4096,
        Duration::ZERO,
    )
    .await
    .unwrap();
    let after = status(&c1);
    assert_eq!(after["sites"][0]["uplink"], up);
    assert_eq!(
        after["sites"][0]["session_id"],
        before["sites"][0]["session_id"]
    );
    assert_eq!(holders(&relay_ctl, "box-1"), vec![on["box-1"]]);
    // box-1's relay dies.
    let dead = on["box-1"];
    let others: Vec<&str> = on
        .iter()
        .filter(|(b, r)| **r != dead && **b != "box-1")
        .map(|(b, _)| *b)
        .collect();
    assert!(
        !others.is_empty(),
        "the boxes all hashed to one relay: {on:?}"
    );
    let sessions_before: HashMap<&str, Value> = others
        .iter()
        .map(|b| (*b, status(&boxes[b].0)["sites"][0]["session_id"].clone()))
        .collect();
    // A phone's connection is open through box-1 when its relay dies.
    let open = tokio::spawn(echo_transfer(
        format!("127.0.0.1:{l1}").parse().unwrap(),
        5,
        2000 * 100,
        100,
        Duration::from_millis(5),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = bed.daemons[relay_daemon[dead]].pid();
    let killed = Instant::now();
    Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .unwrap();
    wait_until(Duration::from_secs(20), "box-1 on another relay", || {
        ctl(&c1, &["status"]).is_ok_and(|v| {
            v["sites"][0]["state"] == "Established"
                && v["sites"][0]["relay"]
                    .as_str()
                    .is_some_and(|r| r != RELAYS[dead])
        })
    });
    let took = killed.elapsed();
    let moved_to = status(&c1)["sites"][0]["relay"]
        .as_str()
        .unwrap()
        .to_owned();
    println!(
        "box-1: {} died, new session on {moved_to} after {took:?}",
        RELAYS[dead]
    );
    assert!(
        open.await.unwrap().is_err(),
        "the connection open across the relay's death is reset, not left hanging"
    );
    let text = ctl(&c1, &["handovers"]).unwrap().to_string();
    assert!(
        text.contains("continuity lost") && text.contains("unreachable"),
        "the record says why: {text}"
    );
    echo_transfer(
        format!("127.0.0.1:{l1}").parse().unwrap(),
        4,
        128 * 1024,
        4096,
        Duration::ZERO,
    )
    .await
    .unwrap();
    // Boxes on the other relays saw nothing.
    for b in &others {
        let s = status(&boxes[b].0);
        assert_eq!(s["sites"][0]["state"], "Established", "{b}");
        assert_eq!(
            s["sites"][0]["session_id"], sessions_before[b],
            "{b} kept its session"
        );
    }

    // box-1's new relay is drained for maintenance while a phone's
    // connection runs through box-1: idle boxes there move at once, box-1
    // keeps its session until the connection is done, then moves; nobody
    // loses a byte and no failure is recorded.
    let drained = RELAYS.iter().position(|r| *r == moved_to).unwrap();
    let records = |c: &Path| {
        ctl(c, &["handovers"])
            .unwrap()
            .as_array()
            .map_or(0, Vec::len)
    };
    let records_before = records(&c1);
    let busy = tokio::spawn(echo_transfer(
        format!("127.0.0.1:{l1}").parse().unwrap(),
        6,
        600 * 100,
        100,
        Duration::from_millis(5),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = snapt_ctl(&relay_ctl[drained], &["drain", "--deadline", "30"]).unwrap();
    println!("drain of {}: {d}", RELAYS[drained]);
    let started = Instant::now();
    let idle_there: Vec<&str> = on
        .iter()
        .filter(|(b, r)| **r == drained && **b != "box-1")
        .map(|(b, _)| *b)
        .collect();
    for b in &idle_there {
        let before = records(&boxes[b].0);
        wait_until(Duration::from_secs(10), "an idle box to leave", || {
            ctl(&boxes[b].0, &["status"]).is_ok_and(|v| {
                v["sites"][0]["state"] == "Established"
                    && v["sites"][0]["relay"]
                        .as_str()
                        .is_some_and(|r| r != RELAYS[drained])
            })
        });
        println!(
            "{b} (idle) left the drained relay after {:?}",
            started.elapsed()
        );
        assert_eq!(
            records(&boxes[b].0),
            before,
            "{b}: an idle move is no failure"
        );
    }
    assert_eq!(
        status(&c1)["sites"][0]["relay"].as_str(),
        Some(RELAYS[drained]),
        "box-1 stays while its connection runs"
    );
    busy.await
        .unwrap()
        .unwrap_or_else(|e| panic!("the connection was cut by the drain: {e}"));
    wait_until(Duration::from_secs(10), "box-1 to leave once idle", || {
        ctl(&c1, &["status"]).is_ok_and(|v| {
            v["sites"][0]["state"] == "Established"
                && v["sites"][0]["relay"]
                    .as_str()
                    .is_some_and(|r| r != RELAYS[drained] && r != RELAYS[dead])
        })
    });
    println!(
        "box-1 left the drained relay {:?} after the drain began",
        started.elapsed()
    );
    assert_eq!(
        records(&c1),
        records_before,
        "box-1: an idle move is no failure"
    );
    wait_until(
        Duration::from_secs(5),
        "the drained relay to be empty",
        || {
            snapt_ctl(&relay_ctl[drained], &["status"])
                .is_ok_and(|v| v["draining"]["sessions_left"] == 0)
        },
    );
    echo_transfer(
        format!("127.0.0.1:{l1}").parse().unwrap(),
        7,
        128 * 1024,
        4096,
        Duration::ZERO,
    )
    .await
    .unwrap();
}
