//! How hard one box may make the relay connect to services. Every OPEN of
//! a TCP stream is a TCP connect toward a service on the operator's
//! network; a box that opens and resets streams in a loop turned 20,000
//! frames into 17,157 connects in a second and overflowed the service's
//! accept queue for everyone. Here each box has at most [`MAX_PENDING`]
//! connects in flight and a token bucket of [`RATE`] connects a second
//! ([`BURST`] at once, what a browser opening a page needs); beyond that
//! an OPEN is reset as "too many streams", counted, and costs the service
//! nothing. Pure: time comes in.

use std::collections::HashMap;
use std::time::Instant;

use wire::BoxId;

/// Connects in flight per box. A box's open streams bound them already
/// (a reset stream's connect is aborted); this holds where `max_streams`
/// is configured far above the default, and leaves an honest burst — a
/// phone opening a page's hundreds of connections at once — alone.
pub const MAX_PENDING: usize = 256;

/// Connects a second per box, sustained.
pub const RATE: f64 = 200.0;

/// Connects a box may make at once.
pub const BURST: f64 = 400.0;

#[derive(Debug)]
struct Budget {
    tokens: f64,
    last: Instant,
    pending: usize,
}

/// The boxes' connect budgets.
#[derive(Debug, Default)]
pub struct ConnectAdmission {
    boxes: HashMap<BoxId, Budget>,
    refused: u64,
}

impl ConnectAdmission {
    /// Whether box `b` may start a connect now; `Err` says why not (and
    /// the refusal is counted).
    pub fn admit(&mut self, b: &BoxId, now: Instant) -> Result<(), String> {
        let budget = self.boxes.entry(b.clone()).or_insert(Budget {
            tokens: BURST,
            last: now,
            pending: 0,
        });
        let elapsed = now.saturating_duration_since(budget.last).as_secs_f64();
        budget.tokens = (budget.tokens + elapsed * RATE).min(BURST);
        budget.last = now;
        let why = if budget.pending >= MAX_PENDING {
            format!("{MAX_PENDING} connects of this box already in progress")
        } else if budget.tokens < 1.0 {
            format!("more than {RATE} connects a second from this box")
        } else {
            budget.tokens -= 1.0;
            budget.pending += 1;
            return Ok(());
        };
        self.refused += 1;
        Err(why)
    }

    /// A connect of box `b` ended (connected, failed or abandoned).
    pub fn done(&mut self, b: &BoxId) {
        if let Some(budget) = self.boxes.get_mut(b) {
            budget.pending = budget.pending.saturating_sub(1);
        }
    }

    /// Forgets box `b` once nothing of it is in flight (its session ended).
    pub fn forget(&mut self, b: &BoxId) {
        if self.boxes.get(b).is_some_and(|x| x.pending == 0) {
            self.boxes.remove(b);
        }
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
    use std::time::Duration;

    #[test]
    fn churn_is_held_to_the_rate_and_the_pending_bound() {
        let mut a = ConnectAdmission::default();
        let b = BoxId::new("box-1").expect("id");
        let t0 = Instant::now();
        // Connects that finish at once: the burst, then nothing more in
        // the same instant.
        let mut ok = 0;
        for _ in 0..1000 {
            if a.admit(&b, t0).is_ok() {
                ok += 1;
                a.done(&b);
            }
        }
        assert_eq!(ok, BURST as usize);
        // A second later: RATE more.
        let mut later = 0;
        for _ in 0..1000 {
            if a.admit(&b, t0 + Duration::from_secs(1)).is_ok() {
                later += 1;
                a.done(&b);
            }
        }
        assert_eq!(later, RATE as usize);
        assert_eq!(a.refused(), (2000 - ok - later) as u64);
    }

    #[test]
    fn connects_in_flight_are_bounded_per_box_and_other_boxes_are_not_touched() {
        let mut a = ConnectAdmission::default();
        let (b1, b2) = (
            BoxId::new("box-1").expect("id"),
            BoxId::new("box-2").expect("id"),
        );
        let t0 = Instant::now();
        for _ in 0..MAX_PENDING {
            assert!(a.admit(&b1, t0).is_ok());
        }
        let why = a.admit(&b1, t0).expect_err("over the pending bound");
        assert!(why.contains("in progress"), "{why}");
        assert!(a.admit(&b2, t0).is_ok(), "another box has its own budget");
        a.done(&b1);
        assert!(a.admit(&b1, t0).is_ok());
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
