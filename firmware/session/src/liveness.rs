//! Dead-path detection on the box's active tunnel, without waiting for the
//! inactivity timeout.
//!
//! A silent blackhole — the link stays up, packets vanish upstream — gives
//! no link event and no error; only silence. Silence alone proves little
//! (an application may simply pause), so the rule looks at what was
//! expected:
//!
//! * The path is *busy* while our application data waits for its
//!   acknowledgement or the peer's data arrived within the last keepalive
//!   interval. An idle session is left to the keepalive and the inactivity
//!   timeout: a lost PING there costs nobody anything.
//! * Busy and quiet for `quiet = max(2 × RTT, floor / 2)`: a fast probe —
//!   a PING at once and a second one half a quiet period later (two
//!   segments: one lost packet cannot silence both).
//! * Dead when, busy, nothing has arrived for `dead = max(3 × RTT, floor)`,
//!   the first probe has been out for a quiet period too (time enough for
//!   a live path to answer it), and the transport shows no progress either:
//!   the kernel has received no acknowledgement since that probe went out. A TCP whose segments are still acknowledged is
//!   alive, however slow its peer's application (the inactivity timeout
//!   deals with that).
//!
//! RTT is the larger of the keepalive's smoothed round trip and the
//! kernel's (`TCP_INFO`), so a path that queues under load gets a longer
//! bound. The driver feeds the kernel's view with
//! [`TransportSample`]s; without any (tests, other transports) the rule
//! decides on silence and probes alone. Pure: time comes in.

use std::time::{Duration, Instant};

/// What the kernel knows of a tunnel's TCP connection (`TCP_INFO`), sampled
/// by the driver at a moment it passes along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransportSample {
    /// The kernel's smoothed round trip.
    pub rtt: Duration,
    /// Time since the kernel last received an acknowledgement.
    pub since_last_ack: Duration,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
}

/// The rule's state for the active tunnel.
#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    /// Fast probes of the current silence: when the first went out, and
    /// whether the second has.
    probing: Option<(Instant, bool)>,
    /// When the kernel last received an acknowledgement, and its RTT (from
    /// the latest sample).
    transport: Option<(Instant, Duration)>,
}

/// What the rule wants now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do before the deadline (if any).
    Wait(Option<Instant>),
    /// Send a fast probe (a PING) now.
    Probe,
    /// The path is dead.
    Dead,
}

/// The figures the rule works on, gathered by the core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs {
    /// When the last byte arrived on the tunnel.
    pub last_heard: Instant,
    /// Our application data waits for acknowledgement, or the peer's data
    /// arrived within the last keepalive interval.
    pub busy: bool,
    /// The keepalive's smoothed round trip, if measured.
    pub srtt: Option<Duration>,
    /// The floor of the dead bound (`dead_path_floor`).
    pub floor: Duration,
}

impl Liveness {
    /// A new path (or no path): forget the last one's probes and samples.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Bytes arrived: the silence is over.
    pub fn heard(&mut self) {
        self.probing = None;
    }

    /// The kernel's view of the tunnel at `at`.
    pub fn transport(&mut self, s: TransportSample, at: Instant) {
        let last_ack = at.checked_sub(s.since_last_ack).unwrap_or(at);
        // Nothing unacknowledged: whatever we sent got through.
        let last_ack = if s.unacked == 0 { at } else { last_ack };
        self.transport = Some((last_ack, s.rtt));
    }

    /// The round trip the bounds scale with.
    fn rtt(&self, srtt: Option<Duration>) -> Duration {
        let kernel = self.transport.map(|(_, r)| r).unwrap_or_default();
        srtt.unwrap_or_default().max(kernel)
    }

    /// Silence before the first fast probe.
    pub fn quiet(&self, i: &Inputs) -> Duration {
        (self.rtt(i.srtt) * 2).max(i.floor / 2)
    }

    /// Silence (and probing) before the path is dead.
    pub fn dead(&self, i: &Inputs) -> Duration {
        (self.rtt(i.srtt) * 3).max(i.floor)
    }

    /// What to do at `now`; call [`Self::probed`] after sending a probe.
    pub fn poll(&self, i: &Inputs, now: Instant) -> Verdict {
        if !i.busy {
            return Verdict::Wait(None);
        }
        let quiet = self.quiet(i);
        let dead = self.dead(i);
        let silence = now.saturating_duration_since(i.last_heard);
        match self.probing {
            None if silence < quiet => Verdict::Wait(Some(i.last_heard + quiet)),
            None => Verdict::Probe,
            Some((first, second)) => {
                if !second && now >= first + quiet / 2 {
                    return Verdict::Probe;
                }
                let due = (i.last_heard + dead).max(first + quiet);
                if now < due {
                    let next = if second {
                        due
                    } else {
                        due.min(first + quiet / 2)
                    };
                    return Verdict::Wait(Some(next));
                }
                // The kernel heard an acknowledgement after our probe:
                // the path carries packets; its peer is merely slow.
                if self.transport.is_some_and(|(ack, _)| ack >= first) {
                    return Verdict::Wait(None);
                }
                Verdict::Dead
            }
        }
    }

    /// When [`Self::poll`] may next want something (for the session's
    /// timer): the end of the quiet period, the second probe, the bound.
    pub fn deadline(&self, i: &Inputs) -> Option<Instant> {
        if !i.busy {
            return None;
        }
        let quiet = self.quiet(i);
        match self.probing {
            None => Some(i.last_heard + quiet),
            Some((first, second)) => {
                let due = (i.last_heard + self.dead(i)).max(first + quiet);
                Some(if second {
                    due
                } else {
                    due.min(first + quiet / 2)
                })
            }
        }
    }

    /// A fast probe went out at `now`.
    pub fn probed(&mut self, now: Instant) {
        self.probing = match self.probing {
            None => Some((now, false)),
            Some((first, _)) => Some((first, true)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn inputs(t0: Instant, busy: bool) -> Inputs {
        Inputs {
            last_heard: t0,
            busy,
            srtt: Some(ms(10)),
            floor: ms(100),
        }
    }

    /// Runs the rule every millisecond from `t0` for `limit`, probing when
    /// asked; returns when it declared the path dead, if it did.
    fn run(l: &mut Liveness, i: &Inputs, t0: Instant, limit: Duration) -> Option<Duration> {
        let mut t = t0;
        while t < t0 + limit {
            match l.poll(i, t) {
                Verdict::Probe => l.probed(t),
                Verdict::Dead => return Some(t - t0),
                Verdict::Wait(_) => {}
            }
            t += ms(1);
        }
        None
    }

    #[test]
    fn a_busy_path_that_falls_silent_is_probed_twice_then_dead_after_the_bound() {
        let t0 = Instant::now();
        let i = inputs(t0, true);
        let mut l = Liveness::default();
        assert_eq!(l.poll(&i, t0 + ms(49)), Verdict::Wait(Some(t0 + ms(50))));
        assert_eq!(l.poll(&i, t0 + ms(50)), Verdict::Probe);
        l.probed(t0 + ms(50));
        assert_eq!(l.poll(&i, t0 + ms(74)), Verdict::Wait(Some(t0 + ms(75))));
        assert_eq!(l.poll(&i, t0 + ms(75)), Verdict::Probe);
        l.probed(t0 + ms(75));
        // Dead once the silence is 100 ms old (the first probe has been out
        // 50 ms, five round trips).
        assert_eq!(l.poll(&i, t0 + ms(99)), Verdict::Wait(Some(t0 + ms(100))));
        assert_eq!(l.poll(&i, t0 + ms(100)), Verdict::Dead);
    }

    #[test]
    fn the_deadline_is_when_the_rule_next_wants_something() {
        let t0 = Instant::now();
        let i = inputs(t0, true);
        let mut l = Liveness::default();
        assert_eq!(l.deadline(&i), Some(t0 + ms(50)));
        l.probed(t0 + ms(50));
        assert_eq!(l.deadline(&i), Some(t0 + ms(75)));
        l.probed(t0 + ms(75));
        assert_eq!(l.deadline(&i), Some(t0 + ms(100)));
        assert_eq!(l.deadline(&inputs(t0, false)), None);
    }

    #[test]
    fn an_idle_session_is_left_to_the_keepalive() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        assert_eq!(run(&mut l, &inputs(t0, false), t0, ms(5000)), None);
    }

    #[test]
    fn a_kernel_acknowledgement_after_the_probe_keeps_a_slow_path_alive() {
        let t0 = Instant::now();
        let i = inputs(t0, true);
        let mut l = Liveness::default();
        l.probed(t0 + ms(50));
        l.probed(t0 + ms(75));
        // The probe's segment was acknowledged 20 ms after it left.
        l.transport(
            TransportSample {
                rtt: ms(12),
                since_last_ack: ms(80),
                unacked: 3,
            },
            t0 + ms(150),
        );
        assert_eq!(l.poll(&i, t0 + ms(150)), Verdict::Wait(None));
        // No acknowledgement since before the probe: dead.
        l.transport(
            TransportSample {
                rtt: ms(12),
                since_last_ack: ms(120),
                unacked: 3,
            },
            t0 + ms(150),
        );
        assert_eq!(l.poll(&i, t0 + ms(150)), Verdict::Dead);
    }

    #[test]
    fn the_bounds_grow_with_the_round_trip() {
        let t0 = Instant::now();
        let mut i = inputs(t0, true);
        i.srtt = Some(ms(80));
        let mut l = Liveness::default();
        // quiet 160 ms; the first probe at 160 ms, out for a quiet period.
        assert_eq!(run(&mut l, &i, t0, ms(1000)), Some(ms(320)));
    }

    #[test]
    fn hearing_anything_ends_the_probing() {
        let t0 = Instant::now();
        let mut i = inputs(t0, true);
        let mut l = Liveness::default();
        l.probed(t0 + ms(50));
        l.heard();
        i.last_heard = t0 + ms(60);
        assert_eq!(l.poll(&i, t0 + ms(100)), Verdict::Wait(Some(t0 + ms(110))));
    }
}
