//! Property: no sequence of observations makes the task move the sessions
//! to an uplink within its hold-down. A small driver carries out the
//! task's switches (some of them failing), loses tunnels at random and
//! reconnects in the task's order of preference, as the box driver does;
//! a reference model of "left, and how" is kept beside the task.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::{Decision, DecisionTask, Health, Kind, Observation, Policy, UplinkSpec};

const N: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Link(usize, bool),
    Signal(usize, Option<i32>),
    Path(usize, Option<u16>, u8, u8),
    /// The active tunnel is lost (blackhole, inactivity).
    Loss,
    /// The active tunnel dropped with its path fine (a relay restart).
    RelayLoss,
    /// The pending switch fails.
    Fail,
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..N, any::<bool>()).prop_map(|(u, up)| Step::Link(u, up)),
        (0..N, proptest::option::of(-95i32..-40)).prop_map(|(u, s)| Step::Signal(u, s)),
        (0..N, proptest::option::of(1u16..1200), 1u8..5, 0u8..5)
            .prop_map(|(u, r, s, l)| Step::Path(u, r, s, l.min(s))),
        Just(Step::Loss),
        Just(Step::RelayLoss),
        Just(Step::Fail),
        (1u16..8000).prop_map(Step::Wait),
    ]
}

struct Model {
    /// When each uplink was last left, and whether degraded or lost then
    /// (a later healthy stint on it ends an earlier hold-down).
    left: [Option<(Instant, bool)>; N],
}

fn specs() -> Vec<UplinkSpec> {
    [
        ("wifi", Kind::Wifi),
        ("lte", Kind::Lte),
        ("cable", Kind::Wired),
    ]
    .iter()
    .enumerate()
    .map(|(i, (n, k))| UplinkSpec {
        name: (*n).into(),
        kind: *k,
        priority: i as u8,
        cost: 0,
        min_signal_dbm: None,
        auto_connect: true,
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn no_switch_to_an_uplink_within_its_hold_down(
        steps in proptest::collection::vec(step(), 1..120),
        fail_every in 2usize..6,
    ) {
        let policy = Policy::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut task = DecisionTask::new(policy.clone(), specs(), t0);
        for u in 0..N {
            task.observe(Observation::Link { uplink: u, up: true }, now);
            let a = IpAddr::V4(Ipv4Addr::new(198, 18, u as u8, 2));
            task.observe(Observation::Address { uplink: u, address: Some(a) }, now);
        }
        task.observe(Observation::Active { uplink: Some(0) }, now);
        let mut model = Model { left: [None; N] };
        let mut active = Some(0usize);
        let mut decisions = 0usize;
        let mut pending: Option<usize> = None;
        // Moves the sessions as a driver would, keeping the model.
        let move_to = |task: &mut DecisionTask,
                           model: &mut Model,
                           active: &mut Option<usize>,
                           to: Option<usize>,
                           now: Instant| {
            if let Some(old) = *active {
                let degraded = task.table()[old].health < Health::Good;
                model.left[old] = Some((now, degraded));
            }
            *active = to;
            task.observe(Observation::Active { uplink: to }, now);
        };
        for st in steps {
            match st {
                Step::Link(u, up) => {
                    task.observe(Observation::Link { uplink: u, up }, now);
                    if !up && active == Some(u) {
                        move_to(&mut task, &mut model, &mut active, None, now);
                    }
                }
                Step::RelayLoss => {
                    // The tunnel dropped, the path is fine (a relay restart).
                    if active.is_some() {
                        move_to(&mut task, &mut model, &mut active, None, now);
                    }
                }
                Step::Signal(u, dbm) => task.observe(Observation::Signal { uplink: u, dbm }, now),
                Step::Path(u, rtt, sent, lost) => task.observe(
                    Observation::Path {
                        uplink: u,
                        rtt: rtt.map(|r| Duration::from_millis(u64::from(r))),
                        sent: u32::from(sent),
                        lost: u32::from(lost),
                    },
                    now,
                ),
                Step::Loss => {
                    if let Some(a) = active {
                        // The driver reports the failed path, then the
                        // sessions are without a tunnel.
                        task.observe(Observation::Lost { uplink: a }, now);
                        move_to(&mut task, &mut model, &mut active, None, now);
                    }
                }
                Step::Fail => {
                    if let Some(to) = pending.take() {
                        task.observe(Observation::SwitchFailed { uplink: to }, now);
                    }
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if now >= task.poll_timeout() {
                        task.handle_timeout(now);
                    }
                }
            }
            // Without a tunnel the driver reconnects in preference order,
            // over the first uplink with link and address (not a decision
            // of the task's: a held-down one only as a last resort).
            if active.is_none() {
                let table = task.table();
                let usable = |i: &usize| table[*i].link_up && table[*i].address.is_some();
                if let Some(u) = task.preference(now).into_iter().find(usable) {
                    let others = (0..N).any(|i| i != u && usable(&i));
                    prop_assert!(
                        !task.held_down(u, now) || !others
                            || (0..N).filter(|i| usable(i)).all(|i| task.held_down(i, now)),
                        "reconnected over held-down {u} while another was usable"
                    );
                    move_to(&mut task, &mut model, &mut active, Some(u), now);
                }
            }
            while let Some(d) = task.poll_decision() {
                let to = match d {
                    Decision::Planned { to, .. }
                    | Decision::Prompt { to, .. }
                    | Decision::Sudden { to, .. } => to,
                    _ => continue,
                };
                let held = model.left[to].is_some_and(|(t, degraded)| {
                    degraded && now.saturating_duration_since(t) < policy.hold_down
                });
                prop_assert!(!held, "switch to {to} within its hold-down: {d:?}");
                decisions += 1;
                if decisions.is_multiple_of(fail_every) {
                    pending = Some(to);
                } else {
                    move_to(&mut task, &mut model, &mut active, Some(to), now);
                }
            }
        }
    }
}
