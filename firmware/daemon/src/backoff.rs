//! Reconnection back-off, the one every reconnecting part of cbox uses (the
//! box's tunnels, the MQTT link, the Bluetooth NAP): exponential from
//! `base` to `cap`, with full jitter — a uniformly random wait up to the
//! current step, at least a tenth of it — reset once a connection works.
//! The jitter spreads a fleet that lost its relay at the same moment, so
//! it does not come back in lockstep.

use std::time::Duration;

/// Back-off state.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    step: u32,
}

impl Backoff {
    /// From `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            step: 0,
        }
    }

    /// The next wait, given a random number (any u64).
    pub fn next(&mut self, random: u64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.step.min(20))
            .min(self.cap);
        self.step = self.step.saturating_add(1);
        let ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // At least a tenth of the step: never a tight loop.
        Duration::from_millis((random % ms).max(ms / 10))
    }

    /// A connection was accepted: start again from `base`.
    pub fn reset(&mut self) {
        self.step = 0;
    }
}

/// A wait someone asked for, as a floor, with up to a quarter of it added
/// at random (those told the same wait do not return together).
pub fn at_least(wait: Duration, random: u64) -> Duration {
    let quarter = u64::try_from(wait.as_millis() / 4).unwrap_or(u64::MAX);
    wait + Duration::from_millis(random % quarter.saturating_add(1))
}

/// A random number from the standard library's per-process random hash
/// keys (no extra dependency; enough for jitter).
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asked_wait_is_a_floor_with_at_most_a_quarter_added() {
        let wait = Duration::from_millis(1000);
        let got: Vec<Duration> = (0..200).map(|_| at_least(wait, random())).collect();
        assert!(got.iter().all(|d| *d >= wait && *d <= wait + wait / 4));
        assert!(got.iter().any(|d| *d != got[0]), "jittered");
        assert_eq!(at_least(Duration::ZERO, random()), Duration::ZERO);
    }

    #[test]
    fn waits_grow_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for i in 0..10u32 {
            let ceiling_ms = (1000u64 << i).min(60_000);
            // The largest random value below the step gives the step.
            assert_eq!(
                b.next(ceiling_ms - 1),
                Duration::from_millis(ceiling_ms - 1),
                "step {i}"
            );
        }
        // Any random number stays within the cap.
        assert!(b.next(u64::MAX) <= Duration::from_secs(60));
        b.reset();
        assert!(b.next(u64::MAX) <= Duration::from_secs(1));
        // Jitter: a small random number gives a short wait, but not zero.
        b.reset();
        assert_eq!(b.next(0), Duration::from_millis(100));
    }

    #[test]
    fn random_numbers_differ() {
        let a: Vec<u64> = (0..8).map(|_| random()).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
