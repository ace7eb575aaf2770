//! Which relay of a fleet a box's session goes to (`[[snapt]] relays`).
//! Rendezvous hashing: each relay scores `hash(box id, relay name)` and the
//! box takes the highest-scoring relay not known to be down. Every box
//! agrees with itself across restarts and uplinks (a stable hash, not the
//! process's random one), boxes spread evenly, and a relay that goes away
//! moves only its own boxes — each to its next-best relay, so they too
//! spread over the rest. Pure: time comes in.

use std::time::{Duration, Instant};

/// How long a relay that failed a box is passed over for new sessions.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// FNV-1a, 64 bits: stable across processes, releases and machines.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // A final mix: FNV's low bits alone spread short, similar keys poorly.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The relays of one site and which are down.
#[derive(Debug, Clone)]
pub struct RelaySet {
    names: Vec<String>,
    down_until: Vec<Option<Instant>>,
    /// The relay of the current session, once picked.
    current: Option<usize>,
}

impl RelaySet {
    /// The set; empty names mean a single relay (nothing to pick).
    pub fn new(names: Vec<String>) -> Self {
        let n = names.len();
        Self {
            names,
            down_until: vec![None; n],
            current: None,
        }
    }

    /// Whether there is a set at all.
    pub fn is_fleet(&self) -> bool {
        !self.names.is_empty()
    }

    /// The relay the session's tunnels go to: the current one, or a new
    /// pick for `box_id` among those not down at `now` (all of them if
    /// every one is down).
    pub fn relay(&mut self, box_id: &str, now: Instant) -> Option<&str> {
        if self.names.is_empty() {
            return None;
        }
        let i = match self.current {
            Some(i) => i,
            None => {
                let up = |i: &usize| self.down_until[*i].is_none_or(|t| now >= t);
                let all: Vec<usize> = (0..self.names.len()).collect();
                let candidates: Vec<usize> = all.iter().copied().filter(up).collect();
                let pool = if candidates.is_empty() {
                    all
                } else {
                    candidates
                };
                let i = pool
                    .into_iter()
                    .max_by_key(|i| fnv1a(&[box_id.as_bytes(), self.names[*i].as_bytes()]))?;
                self.current = Some(i);
                i
            }
        };
        self.names.get(i).map(String::as_str)
    }

    /// The current session's relay, if one was picked.
    pub fn current(&self) -> Option<&str> {
        self.current
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
    }

    /// Whether a relay is not down at `now`.
    pub fn any_up(&self, now: Instant) -> bool {
        self.down_until.iter().any(|d| d.is_none_or(|t| now >= t))
    }

    /// The session is over (continuity lost, refused, unreachable): its
    /// relay is passed over for `for_` and the next session picks again.
    pub fn failed(&mut self, now: Instant, for_: Duration) {
        if let Some(i) = self.current.take() {
            self.down_until[i] = Some(now + for_);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> RelaySet {
        RelaySet::new(vec![
            "relay-1.example".into(),
            "relay-2.example".into(),
            "relay-3.example".into(),
        ])
    }

    #[test]
    fn a_box_keeps_its_relay_and_boxes_spread_evenly() {
        let now = Instant::now();
        let mut counts = [0usize; 3];
        for b in 0..3000 {
            let id = format!("box-{b}");
            let mut s = fleet();
            let r = s.relay(&id, now).unwrap_or_default().to_owned();
            // Stable: the same answer again, and from a fresh set.
            assert_eq!(s.relay(&id, now), Some(r.as_str()));
            assert_eq!(fleet().relay(&id, now), Some(r.as_str()));
            counts[r.as_bytes()[6] as usize - b'1' as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (900..=1100).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_failed_relay_moves_only_its_boxes_and_comes_back_after_its_time() {
        let now = Instant::now();
        let mut moved_from_others = 0;
        let mut moved_to = [0usize; 3];
        for b in 0..3000 {
            let id = format!("box-{b}");
            let mut s = fleet();
            let first = s.relay(&id, now).unwrap_or_default().to_owned();
            if first == "relay-2.example" {
                s.failed(now, DOWN_FOR);
                let next = s.relay(&id, now).unwrap_or_default().to_owned();
                assert_ne!(next, first);
                moved_to[next.as_bytes()[6] as usize - b'1' as usize] += 1;
                // After its time, the next session returns to it.
                s.failed(now + DOWN_FOR, Duration::ZERO);
                assert_eq!(s.relay(&id, now + DOWN_FOR), Some(first.as_str()));
            } else {
                // Another relay failing does not move this box.
                let mut t = fleet();
                let _ = t.relay("someone-on-relay-2", now);
                moved_from_others += usize::from(s.relay(&id, now) != Some(first.as_str()));
            }
        }
        assert_eq!(moved_from_others, 0);
        // relay-2's boxes spread over both others.
        assert!(moved_to[0] > 400 && moved_to[2] > 400, "{moved_to:?}");
    }

    #[test]
    fn with_every_relay_down_the_box_still_tries_one() {
        let now = Instant::now();
        let mut s = fleet();
        for _ in 0..3 {
            let _ = s.relay("box-1", now);
            s.failed(now, DOWN_FOR);
        }
        assert!(s.relay("box-1", now).is_some());
        assert_eq!(RelaySet::new(Vec::new()).relay("box-1", now), None);
    }
}
