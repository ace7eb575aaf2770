//! Timers and fall-backs of the box side.

use std::time::Duration;

use wire::{Frame, ServiceName, StreamKind};

use crate::testkit::{Pair, cfg, frames};
use crate::{BoxSession, BoxState, Event, SwitchError, SwitchKind, TunnelId};

#[test]
fn connect_without_an_answer_times_out_and_asks_for_another_tunnel() {
    let mut bx = BoxSession::new(cfg(), crate::testkit::id("box-a"), 1).unwrap();
    let now = std::time::Instant::now();
    bx.switch_to(TunnelId(1), now).unwrap();
    let hello = bx.poll_transmit().unwrap();
    assert!(matches!(frames(&hello.bytes)[..], [Frame::Connect { .. }]));
    // The inactivity timeout (0.5 s) fires before Z (3 s).
    let (at, _) = bx.poll_timeout().unwrap();
    assert_eq!(at, now + Duration::from_millis(500));
    bx.handle_timeout(at);
    assert_eq!(bx.state(), BoxState::Idle);
    let events: Vec<Event> = std::iter::from_fn(|| bx.poll_event()).collect();
    assert!(events.contains(&Event::NeedTunnel));
}

#[test]
fn planned_switch_runs_the_full_sequence_and_closes_the_old_tunnel() {
    let mut p = Pair::connected();
    let old = p.bx.active_tunnel().unwrap();
    let new = p.tunnel("box-a");
    p.bx.switch_to(new, p.now).unwrap();
    assert_eq!(p.bx.switch_to(TunnelId(77), p.now), Err(SwitchError::Busy));
    p.pump();
    assert_eq!(p.bx.active_tunnel(), Some(new));
    assert!(!p.open.contains(&old), "old tunnel drained and closed");
    assert!(p.box_events.iter().any(
        |e| matches!(e, Event::SwitchCompleted { kind: SwitchKind::Planned, to, .. } if *to == new)
    ));
    assert_eq!(p.bx.stats().switches, 1);
}

#[test]
fn planned_switch_whose_new_tunnel_dies_resynchronises_on_the_old_one() {
    let mut p = Pair::connected();
    let old = p.bx.active_tunnel().unwrap();
    let sid =
        p.bx.streams()
            .open(StreamKind::Stream, ServiceName::new("s").unwrap(), None)
            .unwrap();
    p.bx.streams().send(sid, b"before").unwrap();
    p.pump();
    let new = p.tunnel("box-a");
    p.bx.switch_to(new, p.now).unwrap();
    // The new uplink fails before the box could use it.
    p.open.remove(&new);
    p.pump();
    p.bx.handle_tunnel_lost(new, p.now);
    p.server.handle_tunnel_lost(new, p.now);
    p.pump();
    assert_eq!(p.bx.active_tunnel(), Some(old));
    assert!(p.box_events.iter().any(|e| matches!(
        e,
        Event::SwitchCompleted {
            kind: SwitchKind::Sudden,
            ..
        }
    )));
    p.bx.streams().send(sid, b" after").unwrap();
    p.pump();
    let got = p.server_data();
    assert_eq!(got, b"before after");
}

#[test]
fn planned_switch_stuck_past_z_falls_back_to_a_sudden_switch() {
    let mut p = Pair::connected();
    let old = p.bx.active_tunnel().unwrap();
    let new = p.tunnel("box-a");
    // The old path swallows SWITCH_STEP1 (blackhole) while keepalives on the
    // new tunnel are not involved yet.
    p.open.remove(&old);
    p.bx.switch_to(new, p.now).unwrap();
    p.pump();
    assert_eq!(p.bx.state(), BoxState::Switching);
    p.advance(Duration::from_millis(600));
    assert_eq!(
        p.bx.state(),
        BoxState::Established,
        "inactivity on the old tunnel triggers the fall-back"
    );
    assert_eq!(p.bx.active_tunnel(), Some(new));
}

#[test]
fn no_tunnel_for_the_switch_timeout_ends_the_session_with_reset_streams() {
    let mut p = Pair::connected();
    let sid =
        p.bx.streams()
            .open(StreamKind::Stream, ServiceName::new("s").unwrap(), None)
            .unwrap();
    p.bx.streams().send(sid, b"pending").unwrap();
    let t = p.bx.active_tunnel().unwrap();
    p.close(t);
    p.pump();
    assert_eq!(p.bx.state(), BoxState::Recovering);
    p.advance(Duration::from_millis(2999));
    assert_eq!(
        p.bx.state(),
        BoxState::Recovering,
        "still holding the streams"
    );
    p.advance(Duration::from_millis(2));
    assert_eq!(p.bx.state(), BoxState::Closed);
    assert!(p.box_events.iter().any(|e| matches!(e, Event::StreamReset { stream, reason, .. } if *stream == sid && reason.contains("switch timeout"))));
    assert!(
        p.bx.streams()
            .open(StreamKind::Stream, ServiceName::new("s").unwrap(), None)
            .is_err()
    );
}

#[test]
fn switching_to_a_tunnel_already_in_use_is_refused() {
    let mut p = Pair::connected();
    let t = p.bx.active_tunnel().unwrap();
    assert_eq!(p.bx.switch_to(t, p.now), Err(SwitchError::SameTunnel(t)));
}

#[test]
fn path_reports_cross_both_ways_and_wait_out_a_switch() {
    let mut p = Pair::connected();
    let report = wire::PathReport {
        switches: 0,
        uplink: "wifi".into(),
        kind: wire::UplinkKind::Wifi,
        rtt_ms: 12,
        send_kbps: 40_000,
        ..Default::default()
    };
    assert!(p.bx.report_path(report.clone()));
    p.pump();
    assert!(
        p.server_events
            .iter()
            .any(|e| e.event == Event::PathReport(report.clone())),
        "the server hears the box's report"
    );
    let owner = crate::testkit::id("box-a");
    let back = wire::PathReport {
        rtt_ms: 13,
        send_kbps: 45_000,
        ..Default::default()
    };
    let s = p.server.session_mut(&owner).unwrap();
    assert!(s.report_path(back.clone()));
    p.pump();
    assert!(p.box_events.contains(&Event::PathReport(back)));
    // During a planned switch neither side has an active tunnel to report on.
    let new = p.tunnel("box-a");
    p.bx.switch_to(new, p.now).unwrap();
    assert!(!p.bx.report_path(report));
}
