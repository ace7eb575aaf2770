//! How fast a server takes new sessions. A relay that restarts, or a
//! region's boxes that lose their relay together, come back at once; each
//! new session costs the relay a handshake already made and a session set
//! up, and a box that is refused and retries at once costs it another
//! handshake. So CONNECTs beyond a token bucket (`new_sessions_per_s`, as
//! many at once) are REFUSED `Busy` with a wait, and the waits handed out
//! are spaced one slot of the rate apart: the k-th box refused in a burst
//! is told to come back k slots later, so the refused come back at the
//! rate the relay takes them instead of as a second storm. Resumptions of
//! existing sessions (SWITCH_STEP2, SWITCH_UNEXPECTED, STANDBY) are never
//! limited: they keep sessions alive and cost no new state.

use std::time::{Duration, Instant};

/// The longest wait handed out: beyond it a box's own back-off is as good.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The bucket and the next free slot for a refused box.
#[derive(Debug, Clone)]
pub(crate) struct NewSessions {
    per_s: f64,
    tokens: f64,
    last: Option<Instant>,
    /// The slot the next refused box is given (a virtual queue).
    next_slot: Option<Instant>,
    refused: u64,
}

impl NewSessions {
    /// Takes `per_s` new sessions a second, as many at once (at least 1).
    pub(crate) fn new(per_s: u32) -> Self {
        let per_s = f64::from(per_s.max(1));
        Self {
            per_s,
            tokens: per_s,
            last: None,
            next_slot: None,
            refused: 0,
        }
    }

    /// One new session at `now`: taken (`Ok`), or refused with the wait
    /// before the box's next attempt.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_s).min(self.per_s);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        self.refused += 1;
        let slot = Duration::from_secs_f64(1.0 / self.per_s);
        // The first refused box waits until the bucket has a token again;
        // each further one a slot after the one before.
        let until_token = Duration::from_secs_f64((1.0 - self.tokens) / self.per_s);
        let base = now + until_token;
        let at = match self.next_slot {
            Some(s) if s > now => s.max(base),
            _ => base,
        };
        let wait = at.saturating_duration_since(now).min(MAX_WAIT);
        self.next_slot = Some(now + wait + slot);
        Err(wait.max(Duration::from_millis(1)))
    }

    /// CONNECTs refused `Busy` so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_bucket_is_told_to_come_back_a_slot_apart() {
        let t0 = Instant::now();
        let mut r = NewSessions::new(10);
        for _ in 0..10 {
            assert_eq!(r.take(t0), Ok(()));
        }
        let waits: Vec<Duration> = (0..5).map(|_| r.take(t0).unwrap_err()).collect();
        let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 300, 400, 500]);
        assert_eq!(r.refused(), 5);
        // Each comes back at its time and is taken: no second storm.
        for w in waits {
            assert_eq!(r.take(t0 + w), Ok(()), "the box told {w:?} is taken then");
        }
    }

    #[test]
    fn a_quiet_relay_refills_and_waits_are_capped() {
        let t0 = Instant::now();
        let mut r = NewSessions::new(1);
        assert_eq!(r.take(t0), Ok(()));
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            last = r.take(t0).unwrap_err();
        }
        assert_eq!(last, MAX_WAIT);
        // Long after, the queue of slots is forgotten and the bucket full.
        let later = t0 + Duration::from_secs(600);
        assert_eq!(r.take(later), Ok(()));
        assert_eq!(r.take(later).unwrap_err(), Duration::from_secs(1));
    }
}
