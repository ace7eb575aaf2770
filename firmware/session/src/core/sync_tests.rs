//! Stream lists longer than one frame carries: SYNC_PART frames ahead of
//! SWITCH_UNEXPECTED and ALL_REDIRECTED, both ways, and their bounds.

use wire::{Frame, Role, ServiceName, StreamId, StreamKind, StreamSync};

use crate::testkit::{Pair, bytes, cfg, frames};
use crate::{BoxState, Event, SessionConfig};

fn many() -> Pair {
    Pair::new(
        SessionConfig {
            max_streams: 12_000,
            ..cfg()
        },
        10,
    )
}

#[test]
fn a_sudden_switch_with_ten_thousand_streams_resumes_every_one() {
    let mut p = many();
    let t = p.tunnel("box-a");
    p.bx.switch_to(t, p.now).unwrap();
    p.pump();
    let svc = ServiceName::new("svc").unwrap();
    let ids: Vec<StreamId> = (0..10_000)
        .map(|_| {
            p.bx.streams()
                .open(StreamKind::Stream, svc.clone(), None)
                .unwrap()
        })
        .collect();
    p.pump();
    p.bx.streams().send(ids[9_999], b"before").unwrap();
    p.pump();
    // The path goes; the next tunnel carries two SYNC_PARTs each way.
    p.close(t);
    p.bx.streams().send(ids[9_999], b" after").unwrap();
    p.bx.streams().send(ids[0], b"first").unwrap();
    let t2 = p.tunnel("box-a");
    p.bx.switch_to(t2, p.now).unwrap();
    let mut sent = Vec::new();
    while let Some(tx) = p.bx.poll_transmit() {
        sent.extend(frames(&tx.bytes));
        p.server.handle_input(tx.tunnel, &tx.bytes, p.now);
    }
    let parts = sent
        .iter()
        .filter(|f| matches!(f, Frame::SyncPart { .. }))
        .count();
    assert_eq!(parts, 2, "10,000 entries: two parts of 4,096 and the rest");
    p.pump();
    assert_eq!(p.bx.state(), BoxState::Established);
    assert_eq!(p.bx.active_tunnel(), Some(t2));
    let data = p.server_data();
    assert!(
        data.starts_with(b"before"),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(data.len(), b"before after".len() + b"first".len());
    let open = p.server.sessions().next().map(|s| s.stats().streams_open);
    assert_eq!(open, Some(10_000));
}

fn entries(n: usize) -> Vec<StreamSync> {
    (0..n)
        .map(|i| StreamSync {
            stream: StreamId::new(Role::Box, i as u32).unwrap(),
            received: 0,
            fin_received: false,
        })
        .collect()
}

#[test]
fn parts_beyond_the_bound_or_before_another_frame_are_refused() {
    // More than 65,535 entries in parts on a fresh tunnel: refused.
    let mut p = Pair::connected();
    let t = p.tunnel("box-a");
    let mut b = Vec::new();
    for _ in 0..17 {
        b.extend(bytes(&[Frame::SyncPart {
            streams: entries(4096),
        }]));
    }
    let answer = p.raw_to_server(t, &b);
    assert!(
        matches!(answer.last(), Some(Frame::Refused { reason, .. }) if reason.contains("65535")),
        "{answer:?}"
    );
    // Parts and then something that is not SWITCH_UNEXPECTED: refused.
    let t = p.tunnel("box-a");
    let session_id = p.bx.session_id();
    let b = bytes(&[
        Frame::SyncPart {
            streams: entries(2),
        },
        Frame::Standby {
            version: wire::VERSION,
            session_id,
            box_id: crate::testkit::id("box-a"),
            keepalive_ms: 25_000,
        },
    ]);
    let answer = p.raw_to_server(t, &b);
    assert!(
        matches!(answer.last(), Some(Frame::Refused { reason, .. }) if reason.contains("after SYNC_PART")),
        "{answer:?}"
    );
    // On an established tunnel: parts then DATA is a violation.
    let t = p.bx.active_tunnel().unwrap();
    let b = bytes(&[
        Frame::SyncPart {
            streams: entries(1),
        },
        Frame::Ping { nonce: 1 },
    ]);
    p.raw_to_server(t, &b);
    p.pump();
    assert!(!p.open.contains(&t), "the tunnel is closed as a violation");
    assert!(p.server_events.iter().any(|e| matches!(
        &e.event,
        Event::CloseTunnel { tunnel, reason: crate::CloseReason::ProtocolViolation(v) }
            if *tunnel == t && v.to_string().contains("after SYNC_PART")
    )));
}
