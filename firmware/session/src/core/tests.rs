//! Stream-level rules: limits, flow control, datagrams, keepalive.

use std::time::Duration;

use wire::{Frame, FrameType, ResetCode, Role, ServiceName, StreamId, StreamKind};

use crate::testkit::{Pair, bytes, cfg};
use crate::{BoxState, CloseReason, Event, SessionConfig, StreamError, StreamViolation, Violation};

fn svc() -> ServiceName {
    ServiceName::new("svc").unwrap()
}

#[test]
fn opening_beyond_max_streams_is_refused_locally() {
    let mut p = Pair::new(
        SessionConfig {
            max_streams: 2,
            ..cfg()
        },
        10,
    );
    p.bx.streams()
        .open(StreamKind::Stream, svc(), None)
        .unwrap();
    p.bx.streams()
        .open(StreamKind::Stream, svc(), None)
        .unwrap();
    assert_eq!(
        p.bx.streams().open(StreamKind::Stream, svc(), None),
        Err(StreamError::TooManyStreams(2))
    );
}

#[test]
fn a_peer_open_beyond_max_streams_is_reset_with_a_reason() {
    let mut p = Pair::connected();
    let t = p.bx.active_tunnel().unwrap();
    let max = p.bx.stream_limit();
    let opens: Vec<Frame> = (0..=max)
        .map(|i| Frame::Open {
            stream: StreamId::new(Role::Box, i).unwrap(),
            kind: StreamKind::Stream,
            service: svc(),
            dest: None,
            codec: wire::Codec::None,
        })
        .collect();
    let answer = p.raw_to_server(t, &bytes(&opens));
    let resets: Vec<&Frame> = answer
        .iter()
        .filter(|f| matches!(f, Frame::Reset { .. }))
        .collect();
    assert!(
        matches!(resets[..], [Frame::Reset { code: ResetCode::TooManyStreams, reason, .. }] if reason.contains("limit"))
    );
}

#[test]
fn data_beyond_the_window_is_a_protocol_violation() {
    let mut p = Pair::connected();
    let t = p.bx.active_tunnel().unwrap();
    let stream = StreamId::new(Role::Box, 0).unwrap();
    let mut frames = vec![Frame::Open {
        stream,
        kind: StreamKind::Stream,
        service: svc(),
        dest: None,
        codec: wire::Codec::None,
    }];
    // One chunk more than the window, in frames the size limit allows.
    let chunk = 16 * 1024;
    let n = cfg().window as usize / chunk + 1;
    frames.extend((0..n).map(|i| Frame::Data {
        stream,
        offset: (i * chunk) as u64,
        payload: vec![0; chunk],
    }));
    p.raw_to_server(t, &bytes(&frames));
    assert!(!p.open.contains(&t), "window overrun closes the tunnel");
    assert_eq!(
        violation(&p),
        Some(Violation::Stream {
            stream,
            violation: StreamViolation::OverWindow {
                end: (n * chunk) as u64,
                limit: u64::from(cfg().window),
            }
        })
    );
}

/// The violation the server closed a tunnel for, if it did.
fn violation(p: &Pair) -> Option<Violation> {
    p.server_events.iter().find_map(|e| match &e.event {
        Event::CloseTunnel {
            reason: CloseReason::ProtocolViolation(v),
            ..
        } => Some(v.clone()),
        _ => None,
    })
}

#[test]
fn each_broken_stream_rule_is_its_own_violation() {
    let stream = StreamId::new(Role::Box, 0).unwrap();
    let open = |kind| Frame::Open {
        stream,
        kind,
        service: svc(),
        dest: None,
        codec: wire::Codec::None,
    };
    let cases: Vec<(Vec<Frame>, Violation)> = vec![
        (
            vec![Frame::Data {
                stream,
                offset: 0,
                payload: vec![1],
            }],
            Violation::NeverOpened {
                frame: FrameType::Data,
                stream,
            },
        ),
        (
            vec![
                open(StreamKind::Datagram),
                Frame::Data {
                    stream,
                    offset: 0,
                    payload: vec![1],
                },
            ],
            Violation::WrongKind {
                frame: FrameType::Data,
                stream,
            },
        ),
        (
            vec![open(StreamKind::Stream), open(StreamKind::Stream)],
            Violation::SecondOpen(stream),
        ),
        (
            vec![Frame::Open {
                stream: StreamId::new(Role::Server, 0).unwrap(),
                kind: StreamKind::Stream,
                service: svc(),
                dest: None,
                codec: wire::Codec::None,
            }],
            Violation::OpenOfOwnId(StreamId::new(Role::Server, 0).unwrap()),
        ),
    ];
    for (frames, want) in cases {
        let mut p = Pair::connected();
        let t = p.bx.active_tunnel().unwrap();
        p.raw_to_server(t, &bytes(&frames));
        assert_eq!(violation(&p), Some(want.clone()), "{frames:?}");
        assert!(!p.open.contains(&t), "{want}: the tunnel is closed");
    }
}

#[test]
fn send_is_bounded_by_the_peers_window_and_resumes_after_acks() {
    let mut p = Pair::connected();
    let sid =
        p.bx.streams()
            .open(StreamKind::Stream, svc(), None)
            .unwrap();
    let big = vec![7u8; 1 << 20];
    let took = p.bx.streams().send(sid, &big).unwrap();
    assert_eq!(
        took,
        cfg().window as usize,
        "the replay buffer holds one window"
    );
    assert_eq!(p.bx.streams().send(sid, &big).unwrap(), 0);
    p.pump();
    // Nothing delivered by the server's application yet: still full.
    assert_eq!(p.bx.streams().capacity(sid), 0);
    let server_sid = sid;
    let mut srv = p
        .server
        .session_mut(&crate::testkit::id("box-a"))
        .unwrap()
        .streams();
    srv.delivered(server_sid, 100_000).unwrap();
    p.pump();
    assert!(p.box_events.contains(&Event::Writable { stream: sid }));
    assert_eq!(p.bx.streams().capacity(sid), 100_000);
}

#[test]
fn datagrams_queued_without_a_tunnel_are_bounded_and_dropped_oldest_first() {
    let mut p = Pair::new(
        SessionConfig {
            max_queued_datagrams: 3,
            ..cfg()
        },
        10,
    );
    let flow =
        p.bx.streams()
            .open(StreamKind::Datagram, svc(), None)
            .unwrap();
    for i in 0..5u8 {
        p.bx.streams().send_datagram(flow, vec![i]).unwrap();
    }
    assert_eq!(p.bx.stats().datagrams_dropped, 2);
    let t = p.tunnel("box-a");
    p.bx.switch_to(t, p.now).unwrap();
    p.pump();
    let got = p.server_datagrams();
    assert_eq!(got, vec![vec![2], vec![3], vec![4]]);
}

#[test]
fn datagrams_faster_than_the_uplink_are_bounded_in_bytes_and_counted() {
    let mut p = Pair::new(cfg(), 10);
    let flow =
        p.bx.streams()
            .open(StreamKind::Datagram, svc(), None)
            .unwrap();
    // Nothing drains (no tunnel): 100 near-full-size datagrams, 6 MB, of
    // which 256 KiB stay queued — fewer than the count bound would allow.
    for i in 0..100u8 {
        p.bx.streams().send_datagram(flow, vec![i; 60_000]).unwrap();
    }
    let kept = crate::core::MAX_QUEUED_DATAGRAM_BYTES / 60_000;
    assert_eq!(p.bx.stats().datagrams_dropped, 100 - kept as u64);
    let t = p.tunnel("box-a");
    p.bx.switch_to(t, p.now).unwrap();
    p.pump();
    let got = p.server_datagrams();
    assert_eq!(got.len(), kept);
    // The newest ones, in order.
    assert_eq!(got.last().map(|d| d[0]), Some(99));
}

#[test]
fn datagrams_are_never_replayed_after_a_sudden_switch() {
    let mut p = Pair::connected();
    let flow =
        p.bx.streams()
            .open(StreamKind::Datagram, svc(), None)
            .unwrap();
    p.bx.streams().send_datagram(flow, b"one".to_vec()).unwrap();
    p.pump();
    let old = p.bx.active_tunnel().unwrap();
    p.close(old);
    p.bx.streams().send_datagram(flow, b"two".to_vec()).unwrap();
    let t = p.tunnel("box-a");
    p.bx.switch_to(t, p.now).unwrap();
    p.pump();
    let got = p.server_datagrams();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn byte_stream_operations_on_a_datagram_flow_are_refused() {
    let mut p = Pair::connected();
    let flow =
        p.bx.streams()
            .open(StreamKind::Datagram, svc(), None)
            .unwrap();
    assert_eq!(
        p.bx.streams().send(flow, b"x"),
        Err(StreamError::WrongKind(flow))
    );
    let sid =
        p.bx.streams()
            .open(StreamKind::Stream, svc(), None)
            .unwrap();
    assert_eq!(
        p.bx.streams().send_datagram(sid, vec![1]),
        Err(StreamError::WrongKind(sid))
    );
    p.bx.streams().finish(sid).unwrap();
    assert_eq!(
        p.bx.streams().finish(sid),
        Err(StreamError::AlreadyFinished(sid))
    );
}

#[test]
fn keepalive_measures_rtt_and_counts_lost_probes() {
    let mut p = Pair::connected();
    p.advance(Duration::from_millis(350));
    let stats = p.bx.path_stats();
    assert!(stats.pings_sent >= 3, "{stats:?}");
    assert_eq!(stats.pings_lost, 0);
    assert_eq!(
        stats.srtt,
        Some(Duration::ZERO),
        "instant delivery in this harness"
    );
    // Probes into a dead path (unanswered for three intervals) are counted
    // lost before the tunnel is declared dead.
    let t = p.bx.active_tunnel().unwrap();
    p.open.remove(&t);
    p.advance(Duration::from_millis(350));
    assert!(p.bx.path_stats().pings_lost >= 1, "{:?}", p.bx.path_stats());
    assert_eq!(
        p.bx.state(),
        BoxState::Established,
        "not yet over the inactivity timeout"
    );
    p.advance(Duration::from_millis(200));
    assert_eq!(p.bx.state(), BoxState::Recovering);
    assert!(p.box_events.contains(&Event::NeedTunnel));
}

#[test]
fn reset_stream_is_reported_to_the_peer_with_its_reason() {
    let mut p = Pair::connected();
    let sid =
        p.bx.streams()
            .open(StreamKind::Stream, svc(), None)
            .unwrap();
    p.bx.streams().send(sid, b"abc").unwrap();
    p.pump();
    p.bx.streams()
        .reset(sid, ResetCode::ApplicationError, "phone app crashed")
        .unwrap();
    p.pump();
    assert!(p.server_events.iter().any(|e| matches!(&e.event,
        Event::StreamReset { code: ResetCode::ApplicationError, reason, .. } if reason == "phone app crashed")));
    assert_eq!(
        p.bx.streams().send(sid, b"x"),
        Err(StreamError::UnknownStream(sid))
    );
}
