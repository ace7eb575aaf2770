//! Warnings a peer can trigger at will (a failed TLS handshake, a refused
//! stream or phone connection) pass at most [`BURST`] per [`WINDOW`] per
//! kind; the rest are counted, and the next line that passes says how many
//! were held back. 4,000 unauthenticated connections used to write 4,005
//! lines to the journal, which is both a disk and an attention attack.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window a burst of lines is counted over.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Lines that pass per window.
pub const BURST: u32 = 5;

/// One kind of warning's budget; keep it in a `static`.
#[derive(Debug)]
pub struct LogThrottle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    window_start: Option<Instant>,
    passed: u32,
    held: u64,
}

impl LogThrottle {
    /// A budget with nothing spent.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                window_start: None,
                passed: 0,
                held: 0,
            }),
        }
    }

    /// Whether a line may be written now: `Some(n)` with the number of
    /// lines held back since the last one that passed, `None` to stay
    /// quiet (the line is counted).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`allow`](Self::allow) at a given time.
    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let fresh = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if fresh {
            s.window_start = Some(now);
            s.passed = 0;
        }
        if s.passed < BURST {
            s.passed += 1;
            Some(std::mem::take(&mut s.held))
        } else {
            s.held += 1;
            None
        }
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a `warn!` line through a per-call-site [`LogThrottle`], adding
/// `held_back` (lines not written since the last one) to its fields.
#[macro_export]
macro_rules! warn_throttled {
    ($($arg:tt)+) => {{
        static THROTTLE: $crate::log_throttle::LogThrottle = $crate::log_throttle::LogThrottle::new();
        if let Some(held_back) = THROTTLE.allow() {
            ::tracing::warn!(held_back, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_few_lines_and_then_says_how_many_it_held() {
        let t = LogThrottle::new();
        let t0 = Instant::now();
        let passed: Vec<_> = (0..4000)
            .filter_map(|i| t.allow_at(t0 + Duration::from_micros(i)))
            .collect();
        assert_eq!(passed, vec![0; BURST as usize]);
        // The next window's first line reports what the last one held.
        assert_eq!(t.allow_at(t0 + WINDOW), Some(4000 - u64::from(BURST)));
        assert_eq!(t.allow_at(t0 + WINDOW), Some(0));
    }
}
