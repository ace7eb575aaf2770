//! Whether the send gate's in-flight cap may hold: BBR's minimum round trip
//! is stale for up to 10 s after a path got longer, and a cap computed from
//! it would hold a tunnel at a fraction of the new path's rate (and its
//! keepalives behind that). The gate tells a longer path from a queue of
//! its own the way BBR's PROBE_RTT does: with the cap holding, its own
//! queue cannot exceed a quarter of BBR's round trip (plus the unsent
//! allowance), so a smoothed round trip that stays above twice BBR's
//! minimum for a whole window is the path's, not the tunnel's. The cap is
//! then lifted until BBR's minimum moves (its own PROBE_RTT took the new
//! path's) or [`LIFT_MAX`] has passed, and probes again.

use std::time::{Duration, Instant};

/// How long the smoothed round trip must stay high, with the cap holding,
/// before the cap is lifted: at least this, at least [`WINDOW_RTTS`] of the
/// round trip seen when the window began (a queue of our own drains within
/// about one, and the smoothed value follows within another).
pub const WINDOW_MIN: Duration = Duration::from_millis(200);

/// See [`WINDOW_MIN`].
pub const WINDOW_RTTS: u32 = 3;

/// Above BBR's minimum times two plus this, a round trip is not the queue
/// the cap allows (a quarter of a round trip and 2 ms): room for jitter.
pub const STALE_MARGIN: Duration = Duration::from_millis(5);

/// The longest the cap stays lifted before it probes again: BBR's minimum
/// expires after 10 s, so by then it has measured the path anew.
pub const LIFT_MAX: Duration = Duration::from_secs(10);

/// Readings further apart than this do not make one window (the tunnel was
/// idle in between, and its smoothed round trip says little).
const READING_GAP: Duration = Duration::from_millis(200);

/// The cap's state for one tunnel.
#[derive(Debug, Clone, Default)]
pub struct CapState {
    phase: Phase,
    /// Times the cap was lifted (for figures).
    pub lifts: u64,
}

#[derive(Debug, Clone, Copy, Default)]
enum Phase {
    /// The cap holds; since `start`, the smallest smoothed round trip seen
    /// was `min`; the window lasts `len`; the last reading was at `last`.
    Capped(Option<Window>),
    /// The cap is lifted since `since`; BBR's minimum then was `bbr_min`.
    Lifted { since: Instant, bbr_min: Duration },
    /// Nothing read yet.
    #[default]
    Fresh,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    len: Duration,
    min: Duration,
    last: Instant,
}

impl Window {
    fn new(now: Instant, srtt: Duration) -> Self {
        Self {
            start: now,
            len: (srtt * WINDOW_RTTS).max(WINDOW_MIN),
            min: srtt,
            last: now,
        }
    }
}

/// Whether `srtt` is more than the cap's own queue on a path whose round
/// trip is `bbr_min`.
fn beyond_own_queue(srtt: Duration, bbr_min: Duration) -> bool {
    srtt > bbr_min * 2 + STALE_MARGIN
}

impl CapState {
    /// A reading: the tunnel's smoothed round trip (`TCP_INFO`) and BBR's
    /// minimum, at `now`. True if the in-flight cap applies.
    pub fn update(&mut self, now: Instant, srtt: Duration, bbr_min: Duration) -> bool {
        match self.phase {
            Phase::Fresh => {
                self.phase = Phase::Capped(None);
                self.update(now, srtt, bbr_min)
            }
            Phase::Lifted {
                since,
                bbr_min: then,
            } => {
                if bbr_min != then || now.saturating_duration_since(since) >= LIFT_MAX {
                    self.phase = Phase::Capped(Some(Window::new(now, srtt)));
                    return true;
                }
                false
            }
            Phase::Capped(window) => {
                let w = match window {
                    Some(mut w) if now.saturating_duration_since(w.last) <= READING_GAP => {
                        w.min = w.min.min(srtt);
                        w.last = now;
                        w
                    }
                    _ => Window::new(now, srtt),
                };
                if now.saturating_duration_since(w.start) < w.len {
                    self.phase = Phase::Capped(Some(w));
                    return true;
                }
                if beyond_own_queue(w.min, bbr_min) {
                    self.lifts += 1;
                    self.phase = Phase::Lifted {
                        since: now,
                        bbr_min,
                    };
                    return false;
                }
                self.phase = Phase::Capped(Some(Window::new(now, srtt)));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Feeds readings every `every` from `t` for `len`, the smoothed round
    /// trip given by `srtt(elapsed)`; returns whether the cap applied at
    /// each.
    fn run(
        s: &mut CapState,
        t: Instant,
        every: Duration,
        len: Duration,
        bbr_min: Duration,
        srtt: impl Fn(Duration) -> Duration,
    ) -> Vec<bool> {
        let mut out = Vec::new();
        let mut e = Duration::ZERO;
        while e < len {
            out.push(s.update(t + e, srtt(e), bbr_min));
            e += every;
        }
        out
    }

    #[test]
    fn a_queue_of_the_tunnels_own_that_drains_keeps_the_cap() {
        let mut s = CapState::default();
        let t = Instant::now();
        // 10 ms path, BBR start-up left 40 ms of queue, which the cap
        // drains within 60 ms; then 14 ms (the cap's own queue).
        let caps = run(&mut s, t, MS(2), MS(3000), MS(10), |e| {
            if e < MS(60) {
                MS(50) - e * 36 / 60
            } else {
                MS(14)
            }
        });
        assert!(caps.iter().all(|c| *c), "lifted for a queue of its own");
        assert_eq!(s.lifts, 0);
    }

    #[test]
    fn a_path_that_got_longer_lifts_the_cap_until_bbr_measures_it() {
        let mut s = CapState::default();
        let t = Instant::now();
        // A 10 ms path becomes a 90 ms one: the cap holds for one window
        // (three round trips of 90 ms), then lifts.
        let caps = run(&mut s, t, MS(5), MS(2000), MS(10), |_| MS(90));
        let held = caps.iter().take_while(|c| **c).count();
        assert!((50..=60).contains(&held), "held for {held} readings");
        assert!(caps[held..].iter().all(|c| !*c));
        assert_eq!(s.lifts, 1);
        // BBR's minimum moves to the new path: capped again, and it stays
        // (90 ms is not beyond twice 88 ms).
        let t2 = t + MS(2000);
        let caps = run(&mut s, t2, MS(5), MS(2000), MS(88), |_| MS(95));
        assert!(caps.iter().all(|c| *c));
        assert_eq!(s.lifts, 1);
    }

    #[test]
    fn a_lifted_cap_probes_again_after_bbrs_minimum_would_have_expired() {
        let mut s = CapState::default();
        let t = Instant::now();
        run(&mut s, t, MS(10), MS(1000), MS(10), |_| MS(90));
        assert_eq!(s.lifts, 1);
        // BBR's minimum has not moved (it would have, but say it did not):
        // after LIFT_MAX the cap holds again for a window, then lifts again.
        let caps = run(
            &mut s,
            t + MS(1000),
            MS(10),
            LIFT_MAX + MS(1000),
            MS(10),
            |_| MS(90),
        );
        assert!(caps.iter().any(|c| *c), "never probed again");
        assert_eq!(s.lifts, 2);
    }

    #[test]
    fn readings_far_apart_do_not_make_a_window() {
        let mut s = CapState::default();
        let t = Instant::now();
        // A busy moment with a high round trip every second (a keystroke
        // on an idle tunnel whose delayed acknowledgements inflate it):
        // never a whole window of readings, never lifted.
        let caps = run(&mut s, t, MS(1000), MS(20_000), MS(10), |_| MS(60));
        assert!(caps.iter().all(|c| *c));
        assert_eq!(s.lifts, 0);
    }
}
