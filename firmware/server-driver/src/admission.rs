//! How hard one box may make the relay connect to services. Every OPEN of
//! a TCP stream is a TCP connect toward a service on the operator's
//! network; a box that opened and reset streams in a loop turned 20,000
//! frames into 17,157 connects in a second and overflowed the service's
//! accept queue for everyone. Here each box has at most [`MAX_PENDING`]
//! connects in flight and a token bucket of [`RATE`] connects a second
//! ([`BURST`] at once). An OPEN beyond that waits its turn (no reset: a
//! phone opening a thousand connections at once gets every one, within
//! half a second), and one whose stream is reset while it waits costs the service
//! nothing. Only beyond [`MAX_WAITING`] waiting OPENs of one box is an OPEN
//! refused. Pure: time comes in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use wire::{BoxId, StreamId};

/// Connects in flight per box. A box's open streams bound them already
/// (a reset stream's connect is aborted); this holds where `max_streams`
/// is configured far above the default.
pub const MAX_PENDING: usize = 256;

/// Connects a second per box, sustained: what one box's phones open
/// one at a time through cbox (about 1,900 a second measured) fits.
pub const RATE: f64 = 2000.0;

/// Connects a box may make at once: below the accept queue of a typical
/// service (nginx 511, many 128), which 1,000 at once overflowed.
pub const BURST: f64 = 100.0;

/// OPENs of one box waiting for their connect; beyond, refused.
pub const MAX_WAITING: usize = 65_536;

/// A connect to start: which stream, toward what.
pub type Job = (StreamId, String);

#[derive(Debug)]
struct Budget {
    tokens: f64,
    last: Instant,
    pending: usize,
    waiting: VecDeque<Job>,
}

impl Budget {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.last = now;
    }

    fn may_start(&self) -> bool {
        self.pending < MAX_PENDING && self.tokens >= 1.0
    }

    fn start(&mut self) {
        self.tokens -= 1.0;
        self.pending += 1;
    }
}

/// The boxes' connect budgets and waiting OPENs.
#[derive(Debug, Default)]
pub struct ConnectAdmission {
    boxes: HashMap<BoxId, Budget>,
    delayed: u64,
    refused: u64,
}

impl ConnectAdmission {
    /// Box `b` asks to connect `stream` to `target`: `Ok(Some(job))` to
    /// start now, `Ok(None)` queued (see [`Self::ready`]), `Err` refused.
    pub fn request(
        &mut self,
        b: &BoxId,
        stream: StreamId,
        target: String,
        now: Instant,
    ) -> Result<Option<Job>, String> {
        let budget = self.boxes.entry(b.clone()).or_insert(Budget {
            tokens: BURST,
            last: now,
            pending: 0,
            waiting: VecDeque::new(),
        });
        budget.refill(now);
        if budget.waiting.is_empty() && budget.may_start() {
            budget.start();
            return Ok(Some((stream, target)));
        }
        if budget.waiting.len() >= MAX_WAITING {
            self.refused += 1;
            return Err(format!(
                "{MAX_WAITING} connects of this box already waiting"
            ));
        }
        budget.waiting.push_back((stream, target));
        self.delayed += 1;
        Ok(None)
    }

    /// Forgets a waiting OPEN of box `b` whose stream ended; whether it
    /// was waiting.
    pub fn cancel(&mut self, b: &BoxId, stream: StreamId) -> bool {
        let Some(budget) = self.boxes.get_mut(b) else {
            return false;
        };
        let before = budget.waiting.len();
        budget.waiting.retain(|(s, _)| *s != stream);
        budget.waiting.len() != before
    }

    /// A connect of box `b` ended (connected, failed or abandoned).
    pub fn done(&mut self, b: &BoxId) {
        if let Some(budget) = self.boxes.get_mut(b) {
            budget.pending = budget.pending.saturating_sub(1);
        }
    }

    /// The waiting connects that may start now, in order per box.
    pub fn ready(&mut self, now: Instant) -> Vec<(BoxId, Job)> {
        let mut out = Vec::new();
        for (b, budget) in &mut self.boxes {
            budget.refill(now);
            while !budget.waiting.is_empty() && budget.may_start() {
                if let Some(job) = budget.waiting.pop_front() {
                    budget.start();
                    out.push((b.clone(), job));
                }
            }
        }
        out
    }

    /// When a waiting connect may start next (a token comes back); `None`
    /// when nothing waits for a token (or only for a connect to end).
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        self.boxes
            .values()
            .filter(|b| !b.waiting.is_empty() && b.pending < MAX_PENDING)
            .map(|b| {
                let missing = (1.0 - b.tokens).max(0.0);
                now + Duration::from_secs_f64(missing / RATE)
            })
            .min()
    }

    /// Forgets box `b`'s waiting OPENs, and the box once nothing of it is
    /// in flight (its session ended).
    pub fn forget(&mut self, b: &BoxId) {
        if let Some(budget) = self.boxes.get_mut(b) {
            budget.waiting.clear();
            if budget.pending == 0 {
                self.boxes.remove(b);
            }
        }
    }

    /// OPENs that had to wait for their connect so far.
    pub fn delayed(&self) -> u64 {
        self.delayed
    }

    /// Connects in flight and OPENs waiting for theirs, over all boxes.
    pub fn load(&self) -> (usize, usize) {
        self.boxes
            .values()
            .fold((0, 0), |(p, w), b| (p + b.pending, w + b.waiting.len()))
    }

    /// OPENs refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Boxes with a budget (a bound check for tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.boxes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Role;

    fn sid(i: u32) -> StreamId {
        StreamId::new(Role::Box, i).unwrap_or_else(|| panic!("id {i}"))
    }

    fn b(name: &str) -> BoxId {
        BoxId::new(name).unwrap_or_else(|_| panic!("{name}"))
    }

    #[test]
    fn an_honest_burst_waits_its_turn_and_every_connect_starts() {
        let mut a = ConnectAdmission::default();
        let box1 = b("box-1");
        let t0 = Instant::now();
        let mut started = 0;
        for i in 0..3000 {
            if let Ok(Some(_)) = a.request(&box1, sid(i), "svc:1".into(), t0) {
                started += 1;
                a.done(&box1);
            }
        }
        assert_eq!(started, BURST as usize);
        assert_eq!(a.refused(), 0);
        // The rest start as tokens come back, in order.
        let mut t = t0;
        let mut order = Vec::new();
        while let Some(wake) = a.next_wake(t) {
            t = wake.max(t + Duration::from_millis(1));
            for (_, (s, _)) in a.ready(t) {
                order.push(s.index());
                a.done(&box1);
            }
            assert!(t < t0 + Duration::from_secs(10), "stuck");
        }
        assert_eq!(order.len(), 3000 - BURST as usize);
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        let took = t.duration_since(t0).as_secs_f64();
        let expected = (3000.0 - BURST) / RATE;
        assert!(
            (expected - 0.1..expected + 0.2).contains(&took),
            "{took} s for the rest at {RATE}/s"
        );
    }

    #[test]
    fn open_and_reset_churn_costs_no_connect_once_the_burst_is_spent() {
        let mut a = ConnectAdmission::default();
        let box1 = b("box-1");
        let t0 = Instant::now();
        let mut connects = 0;
        for i in 0..20_000 {
            match a.request(&box1, sid(i), "svc:1".into(), t0) {
                Ok(Some(_)) => {
                    connects += 1;
                    a.done(&box1); // aborted by the RESET that follows
                }
                Ok(None) => assert!(a.cancel(&box1, sid(i))),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(connects, BURST as usize);
        assert_eq!(a.ready(t0 + Duration::from_secs(60)).len(), 0);
    }

    #[test]
    fn connects_in_flight_are_bounded_per_box_and_other_boxes_are_not_touched() {
        let mut a = ConnectAdmission::default();
        let (b1, b2) = (b("box-1"), b("box-2"));
        let t0 = Instant::now();
        // Connects that never end, each when a token is there.
        let step = Duration::from_secs_f64(1.0 / RATE);
        let mut t = t0;
        for i in 0..MAX_PENDING as u32 {
            t += step;
            let r = a.request(&b1, sid(i), "s:1".into(), t);
            assert!(matches!(r, Ok(Some(_))), "{i}: {r:?}");
        }
        let t = t + Duration::from_secs(1);
        let r = a.request(&b1, sid(9999), "s:1".into(), t);
        assert!(matches!(r, Ok(None)), "{r:?}");
        assert!(a.next_wake(t).is_none(), "it waits for a connect to end");
        let r = a.request(&b2, sid(0), "s:1".into(), t);
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
        a.done(&b1);
        let ready = a.ready(t);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].1.0, sid(9999));
        // A box with connects in flight is not forgotten.
        a.forget(&b1);
        assert_eq!(a.tracked(), 2);
        for _ in 0..MAX_PENDING {
            a.done(&b1);
        }
        a.forget(&b1);
        assert_eq!(a.tracked(), 1);
    }
}
