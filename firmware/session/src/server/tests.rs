//! Refusals, session binding and timers of the server side.

use std::time::Duration;

use wire::{DisconnectCode, Frame, RefuseCode, StreamKind, SyncState, VERSION};

use crate::testkit::{Pair, bytes, cfg, id};
use crate::{BoxState, CloseReason, Event, ServerState, Violation};

fn connect(box_id: &str, version: u16) -> Vec<u8> {
    connect_attempt(box_id, version, 1)
}

fn connect_attempt(box_id: &str, version: u16, incarnation: u64) -> Vec<u8> {
    bytes(&[Frame::Connect {
        version,
        window: 65536,
        keepalive_ms: 100,
        incarnation,
        box_id: id(box_id),
    }])
}

fn refused(frames: &[Frame]) -> RefuseCode {
    match frames {
        [Frame::Refused { code, reason, .. }] => {
            assert!(!reason.is_empty(), "a refusal states its reason");
            *code
        }
        other => panic!("expected one REFUSED, got {other:?}"),
    }
}

#[test]
fn connect_with_an_unknown_version_is_refused() {
    let mut p = Pair::new(cfg(), 10);
    let t = p.tunnel("box-a");
    let answer = p.raw_to_server(t, &connect("box-a", VERSION + 1));
    assert_eq!(refused(&answer), RefuseCode::UnsupportedVersion);
    assert!(!p.open.contains(&t), "the tunnel is closed");
    assert_eq!(p.server.sessions().count(), 0);
}

#[test]
fn connect_naming_another_box_than_the_certificate_is_refused() {
    let mut p = Pair::new(cfg(), 10);
    let t = p.tunnel("box-a");
    let answer = p.raw_to_server(t, &connect("box-b", VERSION));
    assert_eq!(refused(&answer), RefuseCode::WrongIdentity);
}

#[test]
fn connect_beyond_max_sessions_is_refused_over_capacity() {
    let mut p = Pair::new(cfg(), 1);
    let t1 = p.tunnel("box-a");
    let first = p.raw_to_server(t1, &connect("box-a", VERSION));
    assert!(matches!(first[..], [Frame::ConnectAck { .. }]));
    let t2 = p.tunnel("box-b");
    let answer = p.raw_to_server(t2, &connect("box-b", VERSION));
    assert_eq!(refused(&answer), RefuseCode::OverCapacity);
    assert_eq!(
        p.server.sessions().count(),
        1,
        "the first box keeps its session"
    );
}

#[test]
fn box_learns_of_capacity_refusal_with_a_clear_event() {
    let mut p = Pair::new(cfg(), 1);
    let other = p.tunnel("box-z");
    p.raw_to_server(other, &connect("box-z", VERSION));
    let t = p.tunnel("box-a");
    p.bx.switch_to(t, p.now).unwrap();
    p.pump();
    assert!(p.box_events.iter().any(|e| matches!(e,
        Event::Refused { code: RefuseCode::OverCapacity, reason, retry_after_ms: 30_000 }
            if reason.contains("limit of 1 boxes"))));
    assert!(p.box_events.contains(&Event::CloseTunnel {
        tunnel: t,
        reason: CloseReason::Refused(RefuseCode::OverCapacity)
    }));
    assert_eq!(p.bx.state(), BoxState::Idle, "the box may try again later");
}

#[test]
fn connects_beyond_the_new_session_rate_are_told_when_to_come_back() {
    let mut p = Pair::new(cfg(), 100);
    p.server = crate::Server::new(
        crate::ServerConfig {
            session: cfg(),
            max_sessions: 100,
            new_sessions_per_s: 2,
        },
        7,
    )
    .unwrap();
    let mut waits = Vec::new();
    let mut first_session = 0;
    for i in 0..5 {
        let name = format!("box-{i}");
        let t = p.tunnel(&name);
        match &p.raw_to_server(t, &connect(&name, VERSION))[..] {
            [Frame::ConnectAck { session_id, .. }] => {
                first_session = first_session.max(u64::from(i == 0) * *session_id);
                waits.push(0)
            }
            [
                Frame::Refused {
                    code: RefuseCode::Busy,
                    reason,
                    retry_after_ms,
                },
            ] => {
                assert!(reason.contains("new_sessions_per_s = 2"), "{reason}");
                assert!(!p.open.contains(&t), "the refused tunnel is closed");
                waits.push(*retry_after_ms)
            }
            other => panic!("expected CONNECT_ACK or REFUSED Busy, got {other:?}"),
        }
    }
    // Two at once (the bucket), the rest a slot (0.5 s) apart.
    assert_eq!(waits, vec![0, 0, 500, 1000, 1500]);
    assert_eq!(p.server.refused_busy(), 3);
    // A session's resumption is never limited, even with the bucket empty.
    let t = p.tunnel("box-0");
    let resume = Frame::SwitchUnexpected {
        version: VERSION,
        session_id: first_session,
        switch: 1,
        box_id: id("box-0"),
        sync: SyncState::default(),
    };
    let answer = p.raw_to_server(t, &bytes(&[resume]));
    assert!(
        matches!(answer[..], [Frame::AllRedirected { .. }]),
        "{answer:?}"
    );
    // Each refused box that comes back when told (0.5 s apart) is taken.
    for (i, wait) in [(2, 500), (3, 1000), (4, 1500)] {
        let name = format!("box-{i}");
        p.advance(Duration::from_millis(500));
        let t = p.tunnel(&name);
        let answer = p.raw_to_server(t, &connect_attempt(&name, VERSION, 2));
        assert!(
            matches!(answer[..], [Frame::ConnectAck { .. }]),
            "box-{i} back after {wait} ms: {answer:?}"
        );
    }
    assert_eq!(p.server.refused_busy(), 3, "no second refusal");
}

#[test]
fn a_draining_server_refuses_new_sessions_and_keeps_resuming_the_old() {
    let mut p = Pair::new(cfg(), 10);
    let t = p.tunnel("box-a");
    let Some(Frame::ConnectAck { session_id, .. }) = p
        .raw_to_server(t, &connect("box-a", VERSION))
        .first()
        .cloned()
    else {
        panic!("box-a is taken before the drain")
    };
    p.server.set_draining(true);
    assert!(p.server.draining());
    let t2 = p.tunnel("box-b");
    match &p.raw_to_server(t2, &connect("box-b", VERSION))[..] {
        [
            Frame::Refused {
                code: RefuseCode::Draining,
                reason,
                retry_after_ms,
            },
        ] => {
            assert!(reason.contains("draining"), "{reason}");
            assert_eq!(*retry_after_ms, 60_000);
        }
        other => panic!("expected REFUSED Draining, got {other:?}"),
    }
    // box-a, on a new uplink, resumes its session.
    let t3 = p.tunnel("box-a");
    let resume = Frame::SwitchUnexpected {
        version: VERSION,
        session_id,
        switch: 1,
        box_id: id("box-a"),
        sync: SyncState::default(),
    };
    let answer = p.raw_to_server(t3, &bytes(&[resume]));
    assert!(
        matches!(answer[..], [Frame::AllRedirected { .. }]),
        "{answer:?}"
    );
    assert_eq!(p.server.sessions().count(), 1);
}

#[test]
fn a_first_frame_other_than_connect_or_switch_is_refused() {
    let mut p = Pair::new(cfg(), 10);
    let t = p.tunnel("box-a");
    let answer = p.raw_to_server(t, &bytes(&[Frame::Ping { nonce: 1 }]));
    assert_eq!(refused(&answer), RefuseCode::UnexpectedFrame);
}

#[test]
fn resuming_an_unknown_session_is_refused() {
    let mut p = Pair::new(cfg(), 10);
    let t = p.tunnel("box-a");
    let f = Frame::SwitchUnexpected {
        version: VERSION,
        session_id: 99,
        switch: 1,
        box_id: id("box-a"),
        sync: SyncState::default(),
    };
    assert_eq!(
        refused(&p.raw_to_server(t, &bytes(&[f]))),
        RefuseCode::UnknownSession
    );
}

#[test]
fn another_box_cannot_take_over_a_session_by_switch_unexpected_or_step2() {
    let mut p = Pair::connected();
    let session_id = p.bx.session_id();
    let sid =
        p.bx.streams()
            .open(
                StreamKind::Stream,
                wire::ServiceName::new("echo").unwrap(),
                None,
            )
            .unwrap();
    p.bx.streams().send(sid, b"hello").unwrap();
    p.pump();
    let intruder = p.tunnel("box-b");
    let grab = Frame::SwitchUnexpected {
        version: VERSION,
        session_id,
        switch: 1,
        box_id: id("box-b"),
        sync: SyncState::default(),
    };
    assert_eq!(
        refused(&p.raw_to_server(intruder, &bytes(&[grab]))),
        RefuseCode::NotOwner
    );
    // Claiming the owner's id over its own certificate fails too.
    let intruder = p.tunnel("box-b");
    let grab = Frame::SwitchStep2 {
        version: VERSION,
        session_id,
        switch: 1,
        box_id: id("box-a"),
    };
    assert_eq!(
        refused(&p.raw_to_server(intruder, &bytes(&[grab]))),
        RefuseCode::WrongIdentity
    );
    // The owner's session is untouched and still carries data.
    assert_eq!(p.bx.state(), BoxState::Established);
    p.bx.streams().send(sid, b" world").unwrap();
    p.pump();
    let got = p.server_data();
    assert_eq!(got, b"hello world");
}

#[test]
fn switch_step2_without_a_planned_switch_is_refused() {
    let mut p = Pair::connected();
    let session_id = p.bx.session_id();
    let t = p.tunnel("box-a");
    let f = Frame::SwitchStep2 {
        version: VERSION,
        session_id,
        switch: 5,
        box_id: id("box-a"),
    };
    assert_eq!(
        refused(&p.raw_to_server(t, &bytes(&[f]))),
        RefuseCode::BadSwitch
    );
    assert_eq!(p.bx.state(), BoxState::Established);
}

#[test]
fn garbage_on_one_tunnel_closes_only_that_tunnel() {
    let mut p = Pair::connected();
    let stranger = p.tunnel("box-c");
    let answer = p.raw_to_server(stranger, &[0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22]);
    assert!(answer.is_empty());
    assert!(!p.open.contains(&stranger));
    assert!(p.server_events.iter().any(|e| e.box_id.is_none()
        && matches!(
            &e.event,
            Event::CloseTunnel {
                reason: CloseReason::ProtocolViolation(Violation::InvalidFrame(_)),
                ..
            }
        )));
    assert_eq!(p.server.sessions().count(), 1);
    assert_eq!(p.bx.state(), BoxState::Established);
}

#[test]
fn oversized_frame_on_a_bound_tunnel_closes_it_and_the_box_resumes() {
    let mut p = Pair::connected();
    let t = p.bx.active_tunnel().unwrap();
    // A length field far beyond max_frame_len, as if from a broken peer.
    p.server
        .handle_input(t, &[0x7f, 0xff, 0xff, 0xff, 0x11], p.now);
    p.pump();
    assert!(!p.open.contains(&t));
    assert_eq!(
        p.server.sessions().next().unwrap().state(),
        ServerState::Orphaned
    );
    assert_eq!(p.bx.state(), BoxState::Recovering);
    let t2 = p.tunnel("box-a");
    p.bx.switch_to(t2, p.now).unwrap();
    p.pump();
    assert_eq!(p.bx.state(), BoxState::Established);
}

#[test]
fn out_of_state_frame_closes_the_tunnel_with_a_reason() {
    let mut p = Pair::connected();
    let t = p.bx.active_tunnel().unwrap();
    p.raw_to_server(t, &bytes(&[Frame::OkToRedirection { switch: 3 }]));
    assert!(p.server_events.iter().any(|e| matches!(
        &e.event,
        Event::CloseTunnel {
            reason: CloseReason::ProtocolViolation(Violation::OutOfState {
                frame: wire::FrameType::OkToRedirection,
                ..
            }),
            ..
        }
    )));
}

#[test]
fn silent_box_is_released_after_inactivity_then_switch_timeout() {
    let mut p = Pair::connected();
    let t = p.bx.active_tunnel().unwrap();
    // The box vanishes without a word: its tunnel delivers nothing more.
    p.open.remove(&t);
    p.advance(Duration::from_millis(499));
    assert_eq!(
        p.server.sessions().next().unwrap().state(),
        ServerState::Established
    );
    p.advance(Duration::from_millis(2));
    assert_eq!(
        p.server.sessions().next().unwrap().state(),
        ServerState::Orphaned
    );
    p.advance(Duration::from_millis(3000));
    assert_eq!(p.server.sessions().count(), 0, "released after Z");
    assert!(p.server_events.iter().any(|e| matches!(
        &e.event,
        Event::SessionClosed {
            code: DisconnectCode::SwitchTimeout,
            ..
        }
    )));
}

#[test]
fn unbound_tunnel_that_says_nothing_is_closed_after_the_switch_timeout() {
    let mut p = Pair::new(cfg(), 10);
    let t = p.tunnel("box-a");
    p.advance(Duration::from_millis(2900));
    assert!(p.open.contains(&t));
    p.advance(Duration::from_millis(200));
    assert!(!p.open.contains(&t));
}

#[test]
fn disconnect_from_the_box_releases_everything() {
    let mut p = Pair::connected();
    let sid =
        p.bx.streams()
            .open(
                StreamKind::Stream,
                wire::ServiceName::new("s").unwrap(),
                None,
            )
            .unwrap();
    p.bx.streams().send(sid, b"x").unwrap();
    p.pump();
    p.bx.close("technician pressed stop");
    p.pump();
    assert_eq!(p.server.sessions().count(), 0);
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(&e.event, Event::StreamReset { .. }))
    );
    assert_eq!(p.bx.state(), BoxState::Closed);
    assert!(p.open.is_empty(), "every tunnel closed");
}

#[test]
fn kick_by_the_operator_ends_the_box_session_with_its_reason() {
    let mut p = Pair::connected();
    assert!(
        p.server
            .disconnect(&id("box-a"), DisconnectCode::Requested, "revoked")
    );
    p.pump();
    assert_eq!(p.bx.state(), BoxState::Closed);
    assert!(
        p.box_events.iter().any(
            |e| matches!(e, Event::SessionClosed { reason, .. } if reason.contains("revoked"))
        )
    );
}

#[test]
fn a_reconnecting_box_replaces_its_old_session() {
    let mut p = Pair::connected();
    let old = p.bx.session_id();
    let mut fresh = crate::BoxSession::new(cfg(), id("box-a"), 100).unwrap();
    let t = p.tunnel("box-a");
    fresh.switch_to(t, p.now).unwrap();
    let hello = fresh.poll_transmit().unwrap();
    let answer = p.raw_to_server(t, &hello.bytes);
    assert!(matches!(answer[..], [Frame::ConnectAck { session_id, .. }] if session_id != old));
    assert_eq!(p.server.sessions().count(), 1);
}

#[test]
fn a_late_connect_of_an_abandoned_attempt_cannot_replace_the_live_session() {
    // The box's first attempt (incarnation 1) stalled; it gave up and is now
    // connected with attempt 2. The first CONNECT then arrives after all.
    let mut p = Pair::new(cfg(), 10);
    let live = p.tunnel("box-a");
    let first = p.raw_to_server(live, &connect_attempt("box-a", VERSION, 2));
    assert!(matches!(first[..], [Frame::ConnectAck { .. }]));
    let late = p.tunnel("box-a");
    let answer = p.raw_to_server(late, &connect_attempt("box-a", VERSION, 1));
    assert_eq!(refused(&answer), RefuseCode::Stale);
    assert!(p.open.contains(&live), "the live session keeps its tunnel");
    assert_eq!(p.server.sessions().next().map(|s| s.incarnation()), Some(2));
    // A newer attempt (the box restarted) does replace it.
    let restart = p.tunnel("box-a");
    let answer = p.raw_to_server(restart, &connect_attempt("box-a", VERSION, 3));
    assert!(matches!(answer[..], [Frame::ConnectAck { .. }]));
    assert_eq!(p.server.sessions().next().map(|s| s.incarnation()), Some(3));
}

#[test]
fn a_stale_switch_unexpected_from_an_abandoned_tunnel_is_refused() {
    // The box resumed with switch 5; switch 4's request, held up in a stalled
    // path, arrives afterwards and must not undo it.
    let mut p = Pair::connected();
    let session_id = p.bx.session_id();
    let resume = |switch| {
        bytes(&[Frame::SwitchUnexpected {
            version: VERSION,
            session_id,
            switch,
            box_id: id("box-a"),
            sync: SyncState::default(),
        }])
    };
    let t5 = p.tunnel("box-a");
    let answer = p.raw_to_server(t5, &resume(5));
    assert!(
        matches!(answer[..], [Frame::AllRedirected { switch: 5, .. }]),
        "{answer:?}"
    );
    let t4 = p.tunnel("box-a");
    assert_eq!(refused(&p.raw_to_server(t4, &resume(4))), RefuseCode::Stale);
    assert!(p.open.contains(&t5), "the newer tunnel stays");
}
