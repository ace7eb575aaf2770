//! Dead paths, the warm standby and prompt moves, box and server together.

use std::time::Duration;

use wire::{Frame, ServiceName, StreamKind};

use crate::testkit::{Pair, bytes};
use crate::{BoxState, CloseReason, Event, ServerState, TransportSample};
use wire::StreamId;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A stream with bytes in flight (busy), established.
fn busy_pair() -> (Pair, StreamId) {
    let mut p = Pair::connected();
    p.advance(ms(300)); // a few keepalives: an RTT sample
    let s =
        p.bx.streams()
            .open(StreamKind::Stream, ServiceName::new("svc").unwrap(), None)
            .unwrap();
    p.bx.streams().send(s, b"first").unwrap();
    p.pump();
    (p, s)
}

fn closed_as(p: &Pair, t: crate::TunnelId) -> Option<CloseReason> {
    p.box_events.iter().find_map(|e| match e {
        Event::CloseTunnel { tunnel, reason } if *tunnel == t => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn a_busy_path_that_falls_silent_is_dead_within_the_floor_not_the_inactivity_timeout() {
    let (mut p, s) = busy_pair();
    let t = p.bx.active_tunnel().unwrap();
    p.silent.insert(t);
    p.bx.streams().send(s, b"into the blackhole").unwrap();
    p.pump();
    let before = p.now;
    p.advance(ms(150));
    assert_eq!(closed_as(&p, t), Some(CloseReason::DeadPath));
    // Fast probes went out before the verdict.
    assert!(p.bx.path_stats().pings_sent >= 2);
    assert!(p.now - before < cfg_inactivity());
    assert!(p.box_events.contains(&Event::NeedTunnel));
}

fn cfg_inactivity() -> Duration {
    crate::testkit::cfg().inactivity_timeout
}

#[test]
fn an_idle_silent_path_is_left_to_the_inactivity_timeout() {
    let mut p = Pair::connected();
    p.advance(ms(300));
    let t = p.bx.active_tunnel().unwrap();
    p.silent.insert(t);
    p.advance(ms(400));
    assert_eq!(closed_as(&p, t), None, "idle: no verdict before inactivity");
    p.advance(ms(200));
    assert_eq!(closed_as(&p, t), Some(CloseReason::Inactive));
}

#[test]
fn a_path_whose_kernel_still_gets_acknowledgements_is_not_declared_dead() {
    let (mut p, s) = busy_pair();
    let t = p.bx.active_tunnel().unwrap();
    p.silent.insert(t);
    p.bx.streams().send(s, b"slow peer").unwrap();
    p.pump();
    // The driver samples TCP_INFO every 10 ms: everything acknowledged.
    for _ in 0..30 {
        let sample = TransportSample {
            rtt: ms(5),
            since_last_ack: ms(1),
            unacked: 0,
        };
        p.bx.handle_transport(t, sample, p.now);
        p.advance(ms(10));
    }
    assert_eq!(closed_as(&p, t), None);
}

#[test]
fn a_confirmed_standby_takes_over_a_lost_path_without_a_new_tunnel() {
    let (mut p, s) = busy_pair();
    let old = p.bx.active_tunnel().unwrap();
    let sb = p.tunnel("box-a");
    p.bx.add_standby(sb, p.now).unwrap();
    p.pump();
    assert_eq!(p.bx.standby(), Some(sb), "confirmed by its first PONG");
    // The active path goes silent: the session moves to the standby.
    p.silent.insert(old);
    p.bx.streams().send(s, b" second").unwrap();
    p.pump();
    p.advance(ms(200));
    assert_eq!(p.bx.state(), BoxState::Established);
    assert_eq!(p.bx.active_tunnel(), Some(sb));
    assert!(!p.box_events.contains(&Event::NeedTunnel));
    assert_eq!(p.server_data(), b"first second");
    assert_eq!(
        p.server.sessions().next().map(|x| x.state()),
        Some(ServerState::Established)
    );
}

#[test]
fn a_standby_is_kept_alive_and_replaced_when_its_pings_go_unanswered() {
    let mut p = Pair::connected();
    let sb = p.tunnel("box-a");
    p.bx.add_standby(sb, p.now).unwrap();
    p.pump();
    let keepalive = crate::SessionConfig::default().standby_keepalive;
    // Several keepalive periods: still there (and the server keeps it).
    p.advance(keepalive * 3);
    assert_eq!(p.bx.standby(), Some(sb));
    assert!(p.open.contains(&sb));
    // Its path dies: the box closes it after its PING goes unanswered.
    p.silent.insert(sb);
    p.advance(keepalive + ms(5_100));
    assert_eq!(p.bx.standby(), None);
    assert_eq!(closed_as(&p, sb), Some(CloseReason::StandbyLost));
    assert_eq!(
        p.bx.state(),
        BoxState::Established,
        "the session is untouched"
    );
}

#[test]
fn a_standby_for_another_boxs_session_is_refused() {
    let mut p = Pair::connected();
    let session_id = p.bx.session_id();
    let intruder = p.tunnel("box-b");
    let answer = p.raw_to_server(
        intruder,
        &bytes(&[Frame::Standby {
            version: wire::VERSION,
            session_id,
            box_id: crate::testkit::id("box-b"),
            keepalive_ms: 25_000,
        }]),
    );
    assert!(
        matches!(
            answer[..],
            [Frame::Refused {
                code: wire::RefuseCode::NotOwner,
                ..
            }]
        ),
        "{answer:?}"
    );
}

#[test]
fn a_prompt_move_sends_new_data_on_the_new_path_at_once_and_each_byte_once() {
    let (mut p, s) = busy_pair();
    let old = p.bx.active_tunnel().unwrap();
    // The old path is degraded: what is sent on it now is stuck there.
    p.silent.insert(old);
    p.bx.streams().send(s, b" stuck").unwrap();
    p.pump();
    let new = p.tunnel("box-a");
    p.bx.move_to(new, p.now).unwrap();
    p.bx.streams().send(s, b" after").unwrap();
    p.pump();
    assert_eq!(p.bx.active_tunnel(), Some(new));
    assert_eq!(p.server_data(), b"first stuck after");
    assert_eq!(closed_as(&p, old), Some(CloseReason::Replaced));
    let first = p.box_events.iter().find_map(|e| match e {
        Event::SwitchStarted { since, .. } => Some(*since),
        _ => None,
    });
    assert!(first.is_some());
}

#[test]
fn a_planned_switch_whose_old_path_does_not_answer_falls_back_within_its_round_trips() {
    let (mut p, _s) = busy_pair();
    let old = p.bx.active_tunnel().unwrap();
    p.silent.insert(old);
    let new = p.tunnel("box-a");
    let start = p.now;
    p.bx.switch_to(new, p.now).unwrap();
    p.pump();
    // SWITCH_STEP1 went into the blackhole. The fall-back comes after a
    // few round trips (at least twice the dead-path floor), not after Z.
    for _ in 0..100 {
        if p.bx.active_tunnel() == Some(new) {
            break;
        }
        p.advance(ms(10));
    }
    assert_eq!(p.bx.active_tunnel(), Some(new));
    assert!(p.now - start < ms(400), "took {:?}", p.now - start);
    let kinds: Vec<_> = p
        .box_events
        .iter()
        .filter_map(|e| match e {
            Event::SwitchCompleted { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [crate::SwitchKind::Sudden]);
}

#[test]
fn a_prompt_move_onto_a_fresh_tunnel_keeps_the_standby_bound_on_both_ends() {
    let (mut p, s) = busy_pair();
    let sb = p.tunnel("box-a");
    p.bx.add_standby(sb, p.now).unwrap();
    p.pump();
    assert_eq!(p.bx.standby(), Some(sb));
    // A move decided before the standby was there opened its own tunnel.
    let new = p.tunnel("box-a");
    p.bx.move_to(new, p.now).unwrap();
    p.bx.streams().send(s, b" moved").unwrap();
    p.pump();
    p.advance(ms(100));
    assert_eq!(p.bx.active_tunnel(), Some(new));
    assert_eq!(p.server_data(), b"first moved");
    assert_eq!(closed_as(&p, sb), None, "the server left the standby alone");
    assert_eq!(p.bx.standby(), Some(sb));
    assert!(p.open.contains(&sb));
}
