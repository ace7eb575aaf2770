//! QoS notices with the real binaries: a server subscribed to the relay's
//! feed and a phone app reading the box page's event stream both learn of a
//! planned and a sudden handover (kind, uplinks, stall) and of the path's
//! rates; bad subscriptions get clear refusals.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qos_notify::Notice;
use qos_notify::feed::{Client, ClientError};
use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, ctl, free_port, snapt_ctl, wait_established};
use relay_tests::cutter::Cutter;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\n";

/// Reads the page's `/qos/events` stream into a channel of notices.
async fn page_events(page: SocketAddr, query: &str) -> Result<mpsc::Receiver<Notice>, String> {
    let mut s = TcpStream::connect(page).await.map_err(|e| e.to_string())?;
    s.write_all(format!("GET /qos/events{query} HTTP/1.1\r\nHost: cbox\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(s).lines();
    let status = lines.next_line().await.map_err(|e| e.to_string())?;
    let status = status.unwrap_or_default();
    if !status.contains(" 200 ") {
        let mut rest = status;
        while let Ok(Some(l)) = lines.next_line().await {
            rest.push('\n');
            rest.push_str(&l);
            if l.contains("error") {
                break;
            }
        }
        return Err(rest);
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(data) = l.strip_prefix("data:")
                && let Ok(n) = serde_json::from_str::<Notice>(data.trim())
                && tx.send(n).await.is_err()
            {
                return;
            }
        }
    });
    Ok(rx)
}

/// The relay feed's notices for `box_id`/`service` as a channel.
async fn feed_events(
    feed: SocketAddr,
    box_id: &str,
    service: &str,
) -> Result<mpsc::Receiver<Notice>, ClientError> {
    let mut c = Client::tcp(feed, box_id, service).await?;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Ok(Some(n)) = c.next().await {
            if tx.send(n).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The first notice from `rx` within `limit` for which `want` holds.
async fn first(
    limit: Duration,
    rx: &mut mpsc::Receiver<Notice>,
    want: impl Fn(&Notice) -> bool,
) -> Notice {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(n)) if want(&n) => return n,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the notices ended"),
            Err(_) => panic!("no such notice within {limit:?}"),
        }
    }
}

fn handover_to(n: &Notice, kind: &str, to: &str) -> bool {
    n.figures
        .handover
        .as_ref()
        .is_some_and(|h| h.kind == kind && h.to == to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_phone_apps_are_told_of_each_handover_and_the_path_rates() {
    let echo = echo_server().await;
    let mut bed = Bed::new("qos");
    let (sport, qport, lport, wport) = (free_port(), free_port(), free_port(), free_port());
    let feed: SocketAddr = format!("127.0.0.1:{qport}").parse().unwrap();
    let page: SocketAddr = format!("127.0.0.1:{wport}").parse().unwrap();
    let snapt_control = bed.snaptd(
        "snaptd",
        sport,
        "",
        &format!(
            "[[service]]\nname = \"live\"\ntarget = \"{echo}\"\nqos_notify = true\n\
             [[service]]\nname = \"plain\"\ntarget = \"{echo}\"\n\
             [qos]\nlisten = \"{feed}\"\nmax_subscribers = 4\n{SESSION}"
        ),
    );
    let cutter = Cutter::start(format!("127.0.0.1:{sport}").parse().unwrap()).await;
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"{}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nkind = \"wifi\"\nsource = \"127.0.0.2\"\n\
             [[uplink]]\nname = \"b\"\nkind = \"lte\"\nsource = \"127.0.0.3\"\n\
             [[service]]\nname = \"live\"\nlisten = \"127.0.0.1:{lport}\"\nqos_notify = true\n\
             [web]\nlisten = \"{page}\"\npin = \"482913\"\n{SESSION}",
            cutter.addr
        ),
    );
    wait_established(&control);
    let live: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();

    // The subscriptions: a server at the relay, an app on the box's page.
    let mut server = feed_events(feed, "box-1", "live").await.unwrap();
    let mut phone = page_events(page, "?service=live").await.unwrap();
    let n = first(Duration::from_secs(10), &mut server, |n| {
        n.figures.uplink.is_some()
    })
    .await;
    let up = n.figures.uplink.clone().unwrap();
    assert_eq!((up.name.as_str(), up.kind.as_str()), ("a", "wifi"), "{n:?}");
    assert_eq!(n.services, ["live"]);

    // Traffic gives both directions a rate.
    let transfer = tokio::spawn(echo_transfer(live, 1, 24 << 20, 64 * 1024, Duration::ZERO));
    let n = first(Duration::from_secs(20), &mut server, |n| {
        n.figures.down.is_some() && n.figures.up.is_some()
    })
    .await;
    println!(
        "relay: down {:?}, up {:?}, rtt {:?} ms",
        n.figures.down, n.figures.up, n.figures.rtt_ms
    );
    let p = first(Duration::from_secs(20), &mut phone, |n| {
        n.figures.down.is_some()
    })
    .await;
    println!(
        "box:   down {:?}, up {:?}, rtt {:?} ms",
        p.figures.down, p.figures.up, p.figures.rtt_ms
    );
    transfer
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.log("box-1")));

    // A planned switch: both are told, with the uplinks and the stall.
    let c = control.clone();
    let asked = Instant::now();
    tokio::task::spawn_blocking(move || ctl(&c, &["switch", "b"]).unwrap())
        .await
        .unwrap();
    let done = asked.elapsed();
    let n = first(Duration::from_secs(10), &mut server, |n| {
        handover_to(n, "planned", "b")
    })
    .await;
    let relay_after = asked.elapsed();
    let h = n.figures.handover.clone().unwrap();
    assert_eq!(h.from.as_deref(), Some("a"), "{n:?}");
    assert_eq!(n.figures.uplink.as_ref().unwrap().kind, "lte");
    let p = first(Duration::from_secs(10), &mut phone, |n| {
        handover_to(n, "planned", "b")
    })
    .await;
    let box_after = asked.elapsed();
    assert_eq!(p.cause, qos_notify::Cause::Handover, "{p:?}");
    assert!(p.figures.handover.as_ref().unwrap().reason.is_some());
    println!(
        "planned: switch done in {done:?}; the server told after {relay_after:?}, the phone app after {box_after:?}"
    );

    // A sudden loss: every tunnel reset, resumed by offsets.
    let before = Instant::now();
    cutter.reset_all();
    let n = first(Duration::from_secs(15), &mut server, |n| {
        n.figures
            .handover
            .as_ref()
            .is_some_and(|h| h.kind == "sudden")
    })
    .await;
    println!(
        "sudden: the server told after {:?} ({:?})",
        before.elapsed(),
        n.figures.handover
    );
    first(Duration::from_secs(15), &mut phone, |n| {
        n.figures
            .handover
            .as_ref()
            .is_some_and(|h| h.kind == "sudden")
    })
    .await;

    // Refusals: a service without qos_notify, a full feed, a bad page query.
    match Client::tcp(feed, "box-1", "plain").await {
        Err(ClientError::Refused(why)) => assert!(why.contains("no qos_notify"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut extra = Vec::new();
    for _ in 0..3 {
        extra.push(Client::tcp(feed, "*", "live").await.unwrap());
    }
    match Client::tcp(feed, "*", "live").await {
        Err(ClientError::Refused(why)) => assert!(why.contains("at most 4"), "{why}"),
        other => panic!("{other:?}"),
    }
    let bad = page_events(page, "?service=plain").await.unwrap_err();
    assert!(
        bad.contains("404") && bad.contains("no qos_notify"),
        "{bad}"
    );
    assert_eq!(
        ctl(&control, &["status"]).unwrap()["sites"][0]["state"],
        "Established"
    );
    // The relay's status counts the feed: its subscribers and notices.
    let q = &snapt_ctl(&snapt_control, &["status"]).unwrap()["qos"];
    assert!(q["subscribers"].as_u64().unwrap() >= 4, "{q}");
    assert!(q["notices"].as_u64().unwrap() > 0, "{q}");
    assert!(q["dropped"].is_u64(), "{q}");
}
