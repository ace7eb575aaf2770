//! Keepalive PING/PONG bookkeeping and the path statistics the decision task
//! reads: smoothed RTT and variance (RFC 6298 weights) and lost probes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Health of the tunnel currently carrying the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathStats {
    /// Smoothed round-trip time, once a PONG has arrived.
    pub srtt: Option<Duration>,
    /// Round-trip time variance estimate.
    pub rttvar: Duration,
    /// Most recent sample.
    pub latest_rtt: Option<Duration>,
    /// Smallest sample on this path.
    pub min_rtt: Option<Duration>,
    /// PINGs sent on this path.
    pub pings_sent: u64,
    /// PINGs that got no PONG within three keepalive intervals (a late
    /// PONG is a long round trip, not a loss), or whose PONG never came
    /// while a later one did.
    pub pings_lost: u64,
}

impl PathStats {
    /// Fraction of probes lost on this path, 0.0 when none were sent.
    pub fn loss_ratio(&self) -> f64 {
        if self.pings_sent == 0 {
            0.0
        } else {
            self.pings_lost as f64 / self.pings_sent as f64
        }
    }

    fn sample(&mut self, rtt: Duration) {
        self.latest_rtt = Some(rtt);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }
}

/// Most PINGs waiting for their PONG; older ones count as lost.
const MAX_OUTSTANDING: usize = 16;

/// When to probe, and what is outstanding.
#[derive(Debug)]
pub(crate) struct Keepalive {
    interval: Duration,
    next_ping: Option<Instant>,
    /// PINGs without PONG yet, oldest first.
    outstanding: VecDeque<(u64, Instant)>,
    next_nonce: u64,
    pub stats: PathStats,
}

impl Keepalive {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_ping: None,
            outstanding: VecDeque::new(),
            next_nonce: 1,
            stats: PathStats::default(),
        }
    }

    /// A new path starts: forget the old one's figures and probe at once.
    pub fn start_path(&mut self, now: Instant) {
        self.stats = PathStats::default();
        self.outstanding.clear();
        self.next_ping = Some(now);
    }

    /// No path: stop probing.
    pub fn stop(&mut self) {
        self.next_ping = None;
        self.outstanding.clear();
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.next_ping
    }

    /// If a PING is due, returns its nonce (and counts those unanswered for
    /// three intervals lost).
    pub fn poll_ping(&mut self, now: Instant) -> Option<u64> {
        let due = self.next_ping?;
        if now < due {
            return None;
        }
        let patience = self.interval * 3;
        while let Some(&(_, sent)) = self.outstanding.front() {
            if now.saturating_duration_since(sent) < patience
                && self.outstanding.len() < MAX_OUTSTANDING
            {
                break;
            }
            self.outstanding.pop_front();
            self.stats.pings_lost += 1;
        }
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        self.outstanding.push_back((nonce, now));
        self.stats.pings_sent += 1;
        self.next_ping = Some(now + self.interval);
        Some(nonce)
    }

    /// A PING outside the schedule (a fast probe of a silent path); its
    /// nonce. The regular schedule is unchanged.
    pub fn probe_now(&mut self, now: Instant) -> u64 {
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        if self.outstanding.len() >= MAX_OUTSTANDING {
            self.outstanding.pop_front();
            self.stats.pings_lost += 1;
        }
        self.outstanding.push_back((nonce, now));
        self.stats.pings_sent += 1;
        nonce
    }

    pub fn handle_pong(&mut self, nonce: u64, now: Instant) {
        let Some(i) = self.outstanding.iter().position(|(n, _)| *n == nonce) else {
            return;
        };
        // PONGs come back in order: older PINGs still waiting were lost
        // (on a tunnel given up since).
        for _ in 0..i {
            self.outstanding.pop_front();
            self.stats.pings_lost += 1;
        }
        if let Some((_, sent)) = self.outstanding.pop_front() {
            self.stats.sample(now.saturating_duration_since(sent));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_smoothed_and_losses_are_counted() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = Keepalive::new(ms(100));
        k.start_path(t0);
        let n = k.poll_ping(t0).unwrap();
        assert_eq!(k.poll_ping(t0 + ms(50)), None);
        k.handle_pong(n, t0 + ms(40));
        assert_eq!(k.stats.srtt, Some(ms(40)));
        assert_eq!(k.stats.rttvar, ms(20));
        let n = k.poll_ping(t0 + ms(100)).unwrap();
        k.handle_pong(n + 7, t0 + ms(110)); // stale nonce: ignored
        k.handle_pong(n, t0 + ms(180));
        assert_eq!(k.stats.srtt, Some(ms(45)));
        assert_eq!(k.stats.min_rtt, Some(ms(40)));
        // A PONG later than the next PING is a long round trip, not a loss.
        let slow = k.poll_ping(t0 + ms(200)).unwrap();
        k.poll_ping(t0 + ms(300)).unwrap();
        k.handle_pong(slow, t0 + ms(450));
        assert_eq!(k.stats.latest_rtt, Some(ms(250)));
        assert_eq!(k.stats.pings_lost, 0);
        // Unanswered for three intervals: lost.
        k.poll_ping(t0 + ms(400)).unwrap();
        k.poll_ping(t0 + ms(500)).unwrap();
        k.poll_ping(t0 + ms(600)).unwrap();
        assert_eq!(k.stats.pings_lost, 1, "the PING of 300 ms");
        assert_eq!(k.stats.pings_sent, 7);
        // A later PONG makes the older outstanding ones lost.
        let n = k.poll_ping(t0 + ms(700)).unwrap();
        k.handle_pong(n, t0 + ms(710));
        assert_eq!(k.stats.pings_lost, 4);
    }
}
