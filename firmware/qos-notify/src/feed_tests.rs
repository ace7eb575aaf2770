//! The feed over real loopback sockets.

use std::time::Duration;

use daemon::accept::AcceptStats;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::feed::{Client, ClientError, Feed, Listener};
use crate::hub::Hub;
use crate::notice::{Cause, Figures, NOTICE_VERSION, Notice};

fn notice(box_id: &str, seq: u64) -> Notice {
    Notice {
        v: NOTICE_VERSION,
        seq,
        box_id: box_id.into(),
        at_unix_ms: seq,
        cause: Cause::Handover,
        services: vec!["live".into()],
        figures: Figures {
            rtt_ms: Some(80),
            ..Figures::default()
        },
        dropped: 0,
    }
}

async fn start(max: usize) -> (Hub, std::net::SocketAddr) {
    let hub = Hub::new();
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let feed = Feed::new(hub.clone(), vec!["live".into(), "video".into()], max);
    tokio::spawn(feed.serve(Listener::Tcp(l), AcceptStats::default()));
    (hub, addr)
}

async fn refusal(addr: std::net::SocketAddr, line: &str) -> String {
    let mut s = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(line.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answer = String::new();
    let mut r = BufReader::new(s);
    let _ = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut answer)).await;
    answer
}

#[tokio::test]
async fn a_server_follows_one_box_and_bad_requests_get_a_clear_answer() {
    let (hub, addr) = start(8).await;
    hub.publish(notice("box-1", 1));
    let mut c = Client::tcp(addr, "box-1", "live")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = c.next().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.map(|n| (n.seq, n.cause)), Some((1, Cause::Current)));
    hub.publish(notice("box-2", 2));
    hub.publish(notice("box-1", 3));
    let next = c.next().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.map(|n| (n.box_id, n.seq)), Some(("box-1".into(), 3)));

    match Client::tcp(addr, "box-1", "ssh").await {
        Err(ClientError::Refused(why)) => {
            assert!(
                why.contains("\"ssh\" has no qos_notify") && why.contains("live, video"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    let bad = refusal(addr, "{\"box\":\"bad id!\",\"service\":\"live\"}\n").await;
    assert!(bad.contains("bad box id"), "{bad}");
    let junk = refusal(addr, "hello\n").await;
    assert!(junk.contains("bad request"), "{junk}");
    let long = refusal(addr, &"x".repeat(2000)).await;
    assert!(long.contains("at most 1024 bytes"), "{long}");
}

#[tokio::test]
async fn subscribers_over_the_limit_are_refused_and_places_come_back() {
    let (_hub, addr) = start(2).await;
    let a = Client::tcp(addr, "*", "live")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _b = Client::tcp(addr, "*", "live")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match Client::tcp(addr, "*", "live").await {
        Err(ClientError::Refused(why)) => assert!(why.contains("at most 2"), "{why}"),
        other => panic!("{other:?}"),
    }
    drop(a);
    // The closed subscriber's place is given back (bounded wait).
    let mut ok = false;
    for _ in 0..50 {
        if Client::tcp(addr, "*", "live").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a place came back");
}
