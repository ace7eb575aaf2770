//! Scripted inputs: decay curves, flapping, both down, recovery, manual
//! mode, user-forced switches, probes and searches.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::{Decision, DecisionTask, Health, Kind, Mode, Observation, Policy, Refusal, UplinkSpec};

const WIFI: usize = 0;
const LTE: usize = 1;

fn spec(name: &str, kind: Kind, priority: u8) -> UplinkSpec {
    UplinkSpec {
        name: name.into(),
        kind,
        priority,
        cost: 0,
        min_signal_dbm: None,
        auto_connect: true,
    }
}

fn addr(i: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(198, 18, i, 2)))
}

/// A task with Wi-Fi (preferred) and LTE both up, sessions on Wi-Fi.
struct World {
    task: DecisionTask,
    t0: Instant,
    now: Instant,
    log: Vec<(f64, Decision)>,
}

impl World {
    fn new(mode: Mode) -> Self {
        let t0 = Instant::now();
        let policy = Policy {
            mode,
            ..Policy::default()
        };
        let mut task = DecisionTask::new(
            policy,
            vec![spec("wifi", Kind::Wifi, 0), spec("lte", Kind::Lte, 1)],
            t0,
        );
        bring_up(&mut task, &[(WIFI, 10), (LTE, 20)], t0);
        task.observe(Observation::Active { uplink: Some(WIFI) }, t0);
        let mut w = Self {
            task,
            t0,
            now: t0,
            log: Vec::new(),
        };
        w.drain();
        w.log.clear();
        w
    }

    fn t(&self) -> f64 {
        self.now.duration_since(self.t0).as_secs_f64()
    }

    /// Takes the task's decisions, carrying out switches at once.
    fn drain(&mut self) {
        while let Some(d) = self.task.poll_decision() {
            let t = self.t();
            if let Decision::Planned { to, .. }
            | Decision::Prompt { to, .. }
            | Decision::Sudden { to, .. } = &d
            {
                self.task
                    .observe(Observation::Active { uplink: Some(*to) }, self.now);
            }
            self.log.push((t, d));
        }
    }

    fn observe(&mut self, o: Observation) {
        self.task.observe(o, self.now);
        self.drain();
    }

    /// Runs the clock to `secs` in 100 ms steps, feeding `path(t)` for
    /// each uplink at every Check (as the runtime does), and carrying out
    /// switches at once.
    fn run_until(
        &mut self,
        secs: f64,
        path: impl Fn(usize, f64) -> Option<(Option<u64>, u32, u32)>,
    ) {
        while self.t() < secs {
            self.now += Duration::from_millis(100);
            if self.now >= self.task.poll_timeout() {
                let t = self.t();
                for u in [WIFI, LTE] {
                    if let Some((rtt, sent, lost)) = path(u, t) {
                        self.task.observe(
                            Observation::Path {
                                uplink: u,
                                rtt: rtt.map(Duration::from_millis),
                                sent,
                                lost,
                            },
                            self.now,
                        );
                    }
                }
                self.task.handle_timeout(self.now);
            }
            self.drain();
        }
    }

    fn switches(&self) -> Vec<(f64, &'static str, usize)> {
        self.log
            .iter()
            .filter_map(|(t, d)| match d {
                Decision::Planned { to, .. } => Some((*t, "planned", *to)),
                Decision::Prompt { to, .. } => Some((*t, "prompt", *to)),
                Decision::Sudden { to, .. } => Some((*t, "sudden", *to)),
                Decision::Suggest { to, .. } => Some((*t, "suggest", *to)),
                _ => None,
            })
            .collect()
    }
}

/// `uplink` at `rtt_ms` with `lost` of 4 keepalives lost, the other healthy.
fn degraded(
    uplink: usize,
    rtt_ms: u64,
    lost: u32,
) -> impl Fn(usize, f64) -> Option<(Option<u64>, u32, u32)> {
    move |u, t| {
        if u == uplink {
            Some((Some(rtt_ms), 4, lost))
        } else {
            healthy(u, t)
        }
    }
}

/// Link and address up for each (uplink, third octet of its address).
fn bring_up(task: &mut DecisionTask, uplinks: &[(usize, u8)], t: Instant) {
    for &(uplink, octet) in uplinks {
        task.observe(Observation::Link { uplink, up: true }, t);
        task.observe(
            Observation::Address {
                uplink,
                address: addr(octet),
            },
            t,
        );
    }
}

/// Healthy paths: Wi-Fi 10 ms, LTE 60 ms, nothing lost.
fn healthy(u: usize, _t: f64) -> Option<(Option<u64>, u32, u32)> {
    Some((Some(if u == WIFI { 10 } else { 60 }), 3, 0))
}

#[test]
fn healthy_uplinks_cause_no_switch_but_probes_and_searches() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(30.0, healthy);
    assert!(w.switches().is_empty(), "{:?}", w.switches());
    let probes: Vec<usize> = w
        .log
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::Probe { uplink } => Some(*uplink),
            _ => None,
        })
        .collect();
    // Only the standby uplink, every probe_interval (2 s) over 30 s.
    assert!(probes.iter().all(|&u| u == LTE), "{probes:?}");
    assert!((14..=16).contains(&probes.len()), "{} probes", probes.len());
    let searches = w.log.iter().filter(|(_, d)| *d == Decision::Search).count();
    assert!((3..=4).contains(&searches), "{searches} searches");
}

#[test]
fn a_decaying_wifi_is_left_by_a_planned_switch_before_it_is_critical() {
    let mut w = World::new(Mode::Automatic);
    // RTT grows 10 → 500 ms over 10 s, loss 0 → 10 %.
    w.run_until(20.0, |u, t| {
        if u == LTE {
            return healthy(u, t);
        }
        let f = (t / 10.0).min(1.0);
        Some((
            Some(10 + (490.0 * f) as u64),
            10,
            (10.0 * f * 0.1).round() as u32,
        ))
    });
    let s = w.switches();
    assert_eq!(s.len(), 1, "{s:?}");
    let (t, kind, to) = s[0];
    // Away from a degraded path: promptly, without waiting for it to drain.
    assert_eq!((kind, to), ("prompt", LTE));
    // Warning from RTT 250 ms (t ≈ 4.9 s) plus LTE's dwell already served.
    assert!((4.5..=6.5).contains(&t), "switched at {t}");
    assert_eq!(w.task.active(), Some(LTE));
}

#[test]
fn a_critical_path_is_left_at_once_even_in_manual_mode() {
    let mut w = World::new(Mode::Manual);
    w.run_until(2.0, healthy);
    w.run_until(4.0, degraded(WIFI, 900, 2));
    let s = w.switches();
    assert_eq!(s.len(), 1, "{s:?}");
    // Critical: as good as gone; the switch does not wait for the old path.
    assert_eq!((s[0].1, s[0].2), ("sudden", LTE));
    assert!(s[0].0 < 2.7, "{s:?}");
}

#[test]
fn link_loss_is_a_sudden_switch_without_waiting_for_a_check() {
    let mut w = World::new(Mode::Manual);
    w.run_until(1.0, healthy);
    w.observe(Observation::Link {
        uplink: WIFI,
        up: false,
    });
    assert_eq!(w.switches(), vec![(1.0, "sudden", LTE)]);
    let mut w = World::new(Mode::Automatic);
    w.observe(Observation::Address {
        uplink: WIFI,
        address: None,
    });
    assert_eq!(w.switches(), vec![(0.0, "sudden", LTE)]);
}

#[test]
fn flapping_wifi_does_not_ping_pong() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(2.0, healthy);
    // Down and up every second for 10 s.
    for k in 0..10 {
        w.observe(Observation::Link {
            uplink: WIFI,
            up: k % 2 == 1,
        });
        let next = w.t() + 1.0;
        w.run_until(next, healthy);
    }
    // One sudden switch to LTE; Wi-Fi never stayed good for the dwell time.
    assert_eq!(w.switches().len(), 1, "{:?}", w.switches());
    assert_eq!(w.task.active(), Some(LTE));
    // Once it is stable: back to the preferred Wi-Fi, once, after dwell and
    // min_interval.
    w.observe(Observation::Link {
        uplink: WIFI,
        up: true,
    });
    w.run_until(40.0, healthy);
    let s = w.switches();
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!((s[1].1, s[1].2), ("planned", WIFI));
    assert!(s[1].0 >= s[0].0 + 10.0, "{s:?}");
}

#[test]
fn an_uplink_left_during_a_roam_is_forgiven_its_hold_down() {
    for forgiven in [false, true] {
        let mut w = World::new(Mode::Automatic);
        w.run_until(1.0, healthy);
        let roam_started = w.now;
        // The roam's reassociation gap: the sessions' path on Wi-Fi fails.
        w.observe(Observation::Lost { uplink: WIFI });
        w.observe(Observation::Active { uplink: Some(LTE) });
        w.run_until(1.5, healthy);
        if forgiven {
            // Joined the new access point: the loss is explained.
            w.task.forgive(WIFI, roam_started);
        }
        w.run_until(45.0, healthy);
        let s = w.switches();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!((s[0].1, s[0].2), ("sudden", LTE));
        assert_eq!((s[1].1, s[1].2), ("planned", WIFI));
        let hold_down = Policy::default().hold_down.as_secs_f64();
        if forgiven {
            // Back after min_interval, well within the hold-down.
            assert!(s[1].0 >= 11.0 && s[1].0 < 1.0 + hold_down, "{s:?}");
        } else {
            assert!(s[1].0 >= 1.0 + hold_down, "{s:?}");
        }
    }
    // A loss before the roam began is not forgiven.
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    w.observe(Observation::Lost { uplink: WIFI });
    w.observe(Observation::Active { uplink: Some(LTE) });
    w.run_until(2.0, healthy);
    w.task.forgive(WIFI, w.now);
    w.run_until(45.0, healthy);
    let s = w.switches();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(
        s[1].0 >= 1.0 + Policy::default().hold_down.as_secs_f64(),
        "{s:?}"
    );
}

#[test]
fn both_down_then_recovery() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    w.observe(Observation::Link {
        uplink: LTE,
        up: false,
    });
    w.observe(Observation::Link {
        uplink: WIFI,
        up: false,
    });
    // Nowhere to go: no decision, the sessions wait (Z).
    assert!(w.switches().is_empty(), "{:?}", w.switches());
    assert_eq!(w.task.table()[WIFI].health, Health::Down);
    w.observe(Observation::Lost { uplink: WIFI });
    w.observe(Observation::Active { uplink: None });
    w.run_until(5.0, |_, _| None);
    w.observe(Observation::Link {
        uplink: LTE,
        up: true,
    });
    // The runtime reconnects in preference order: LTE first now.
    assert_eq!(w.task.preference(w.now), vec![LTE, WIFI]);
    w.observe(Observation::Active { uplink: Some(LTE) });
    w.observe(Observation::Link {
        uplink: WIFI,
        up: true,
    });
    // Wi-Fi was lost with the sessions on it: held down from that moment
    // (t = 1 s), then good for the dwell time, then preferred again.
    w.run_until(45.0, healthy);
    let s = w.switches();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].1, s[0].2), ("planned", WIFI));
    let hold_down = Policy::default().hold_down.as_secs_f64();
    assert!(s[0].0 >= 1.0 + hold_down, "{s:?}");
}

#[test]
fn manual_mode_suggests_and_switches_only_when_approved() {
    let mut w = World::new(Mode::Manual);
    w.run_until(10.0, degraded(WIFI, 300, 0));
    let s = w.switches();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].1, s[0].2), ("suggest", LTE));
    assert_eq!(w.task.suggestion(), Some(LTE));
    assert_eq!(w.task.active(), Some(WIFI));
    let d = w.task.approve(w.now).unwrap();
    assert!(matches!(d, Decision::Planned { to: LTE, .. }), "{d:?}");
    assert_eq!(w.task.suggestion(), None);
    w.observe(Observation::Active { uplink: Some(LTE) });
    assert_eq!(w.task.suggestion(), None);
    assert_eq!(w.task.approve(w.now), Err(Refusal::NoSuggestion));
}

#[test]
fn a_declined_suggestion_is_not_repeated() {
    let mut w = World::new(Mode::Manual);
    let warn = |u: usize, t: f64| {
        if u == WIFI {
            Some((Some(300), 4, 0))
        } else {
            healthy(u, t)
        }
    };
    w.run_until(10.0, warn);
    w.task.decline().unwrap();
    w.run_until(30.0, warn);
    assert_eq!(w.switches().len(), 1, "{:?}", w.switches());
}

#[test]
fn a_forced_uplink_is_kept_until_it_degrades() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    let d = w.task.force(LTE, w.now).unwrap();
    assert!(matches!(d, Decision::Planned { to: LTE, .. }));
    w.observe(Observation::Active { uplink: Some(LTE) });
    w.log.clear();
    // Wi-Fi is preferred and good, but the user chose LTE.
    w.run_until(30.0, healthy);
    assert!(w.switches().is_empty(), "{:?}", w.switches());
    // LTE merely Warning: still kept.
    w.run_until(40.0, degraded(LTE, 400, 0));
    assert!(w.switches().is_empty(), "{:?}", w.switches());
    // Critical: the pin is gone, back to Wi-Fi.
    w.run_until(45.0, degraded(LTE, 900, 0));
    let s = w.switches();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].2, WIFI);
}

#[test]
fn forcing_a_down_uplink_is_refused_with_the_reason() {
    let mut w = World::new(Mode::Automatic);
    w.observe(Observation::Link {
        uplink: LTE,
        up: false,
    });
    let e = w.task.force(LTE, w.now).unwrap_err();
    assert_eq!(e.to_string(), "uplink lte is down (link down)");
    assert_eq!(w.task.force(7, w.now), Err(Refusal::Unknown(7)));
}

#[test]
fn weak_signal_and_user_criteria_shape_the_choice() {
    let t0 = Instant::now();
    let mut lte = spec("lte", Kind::Lte, 1);
    lte.min_signal_dbm = Some(-100);
    let mut metered = spec("lte2", Kind::Lte, 1);
    metered.auto_connect = false;
    let mut task = DecisionTask::new(
        Policy::default(),
        vec![spec("wifi", Kind::Wifi, 0), lte, metered],
        t0,
    );
    bring_up(&mut task, &[(0, 0), (1, 1), (2, 2)], t0);
    // Wi-Fi is fine by its path but its signal is critical.
    task.observe(
        Observation::Signal {
            uplink: 0,
            dbm: Some(-90),
        },
        t0,
    );
    assert_eq!(task.table()[0].health, Health::Critical);
    // LTE's own floor (-100) is below the policy's critical (-85): the
    // policy wins.
    task.observe(
        Observation::Signal {
            uplink: 1,
            dbm: Some(-80),
        },
        t0,
    );
    assert_eq!(task.table()[1].health, Health::Warning);
    // The healthier metered uplink still ranks after… no: health first.
    assert_eq!(task.preference(t0), vec![2, 1, 0]);
    task.observe(
        Observation::Signal {
            uplink: 1,
            dbm: Some(-60),
        },
        t0,
    );
    // Equal health: the auto-connect one first.
    assert_eq!(task.preference(t0), vec![1, 2, 0]);
}

#[test]
fn policy_validation_names_the_field() {
    assert_eq!(Policy::default().validate(), Ok(()));
    let p = Policy {
        rtt_warning: Duration::from_secs(1),
        ..Policy::default()
    };
    assert_eq!(p.validate().unwrap_err().0, "rtt_warning_ms");
    let p = Policy {
        loss_critical: 1.5,
        ..Policy::default()
    };
    assert_eq!(p.validate().unwrap_err().0, "loss_critical");
}

#[test]
fn a_failed_switch_is_not_retried_at_once() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    // Wi-Fi critical (two slow samples in a row): a sudden switch to LTE,
    // which fails.
    for _ in 0..2 {
        w.task.observe(
            Observation::Path {
                uplink: WIFI,
                rtt: Some(Duration::from_millis(900)),
                sent: 4,
                lost: 0,
            },
            w.now,
        );
    }
    let d = w.task.poll_decision();
    assert!(matches!(d, Some(Decision::Sudden { to: LTE, .. })), "{d:?}");
    w.task
        .observe(Observation::SwitchFailed { uplink: LTE }, w.now);
    assert_eq!(w.task.poll_decision(), None);
    // After the patience (5 s), LTE is tried again.
    w.run_until(7.0, degraded(WIFI, 900, 0));
    assert_eq!(w.switches().len(), 1, "{:?}", w.switches());
}

#[test]
fn a_degraded_uplink_left_behind_is_held_down() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    // Wi-Fi degrades to warning: a planned switch to LTE.
    w.run_until(5.0, degraded(WIFI, 300, 0));
    assert_eq!(w.switches().len(), 1, "{:?}", w.switches());
    // Its probes look fine again at once, but the box stays on LTE for the
    // hold-down (30 s), then returns.
    w.run_until(30.0, healthy);
    assert_eq!(w.switches().len(), 1, "{:?}", w.switches());
    w.run_until(45.0, healthy);
    let s = w.switches();
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[1].2, WIFI);
    assert!(s[1].0 >= s[0].0 + 30.0, "{s:?}");
}

#[test]
fn one_lost_probe_is_a_warning_two_are_critical() {
    // A standby uplink probed once per window: one probe lost (a slow
    // start, a busy moment) must not make it critical and move the box.
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    let probe = |lost: u32| Observation::Path {
        uplink: WIFI,
        rtt: if lost == 0 {
            Some(Duration::from_millis(10))
        } else {
            None
        },
        sent: 1,
        lost,
    };
    w.observe(probe(1));
    let wifi = &w.task.table()[WIFI];
    assert_eq!(wifi.health, Health::Warning, "{}", wifi.why);
    // Good answers bring it back, though not the first alone.
    let mut n = 0;
    while w.task.table()[WIFI].health != Health::Good {
        w.observe(probe(0));
        n += 1;
        assert!(
            n <= 10,
            "still {:?} after {n} good probes",
            w.task.table()[WIFI].health
        );
    }
    assert!(n >= 2, "one good probe must not erase a loss: {n}");
    w.observe(probe(1));
    w.observe(probe(1));
    let wifi = &w.task.table()[WIFI];
    assert_eq!(wifi.health, Health::Critical, "{}", wifi.why);
    // A keepalive window of four with two lost counts half at once.
    let mut w = World::new(Mode::Automatic);
    w.observe(Observation::Path {
        uplink: WIFI,
        rtt: Some(Duration::from_millis(10)),
        sent: 4,
        lost: 2,
    });
    assert_eq!(w.task.table()[WIFI].health, Health::Critical);
}

#[test]
fn one_slow_sample_is_not_a_slow_path() {
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    // A probe whose SYN was retransmitted: one sample of almost a second.
    let slow = Observation::Path {
        uplink: WIFI,
        rtt: Some(Duration::from_millis(916)),
        sent: 1,
        lost: 0,
    };
    w.task.observe(slow.clone(), w.now);
    w.task.handle_timeout(w.now);
    assert_eq!(w.task.poll_decision(), None);
    assert_eq!(w.task.table()[WIFI].health, Health::Good);
    // A second one in a row is a slow path.
    w.task.observe(slow, w.now);
    w.task.handle_timeout(w.now);
    let d = w.task.poll_decision();
    assert!(matches!(d, Some(Decision::Sudden { to: LTE, .. })), "{d:?}");
}

#[test]
fn a_box_does_not_flee_the_queue_of_its_own_download() {
    // The box's own download loads Wi-Fi: its round trips swing between
    // the path's and the queue's (120..300 ms): no switch.
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    w.observe(Observation::Loaded {
        uplink: WIFI,
        loaded: true,
    });
    let swinging = |u: usize, t: f64| {
        if u == WIFI {
            let rtt = if ((t * 10.0) as u64).is_multiple_of(3) {
                120
            } else {
                300
            };
            Some((Some(rtt), 4, 0))
        } else {
            healthy(u, t)
        }
    };
    w.run_until(20.0, swinging);
    assert!(w.switches().is_empty(), "{:?}", w.switches());
    // A path that got slower is slow in every sample: a switch, once the
    // window has seen no faster one.
    w.run_until(40.0, degraded(WIFI, 300, 0));
    let first = w.switches().first().copied();
    assert!(
        matches!(first, Some((t, _, LTE)) if (21.0..26.0).contains(&t)),
        "{first:?}"
    );
    // Without the load the same round trips are a reason at once.
    let mut w = World::new(Mode::Automatic);
    w.run_until(1.0, healthy);
    w.run_until(10.0, degraded(WIFI, 300, 0));
    let first = w.switches().first().copied();
    assert!(matches!(first, Some((t, _, LTE)) if t < 4.0), "{first:?}");
}
