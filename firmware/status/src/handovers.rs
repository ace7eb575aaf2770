//! The ring of the last handovers: what each one was (planned or sudden,
//! from → to, why), what it cost at the box (stall, bytes buffered and
//! replayed) and how it ended. Numbered, so a reader that saw up to `seq`
//! (MQTT after an outage, the page's live updates) asks for what followed.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How the switch came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandoverKind {
    /// Make-before-break: the new tunnel was up before the old one left.
    Planned,
    /// The old path was gone: resumed over a new tunnel from the received
    /// offsets.
    Sudden,
    /// Away from a degraded path: the session moved as soon as the new
    /// tunnel was up, without waiting for the old path to drain (what was in
    /// flight there was sent again, each byte taken once).
    Prompt,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "why")]
pub enum Outcome {
    /// Every stream carried on; nothing lost.
    Completed,
    /// The switch did not happen (the target failed); the box stayed.
    Failed(String),
}

/// One handover, as the box measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverRecord {
    /// Number, counting from 1 since the box started.
    pub seq: u64,
    /// When it ended, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Which SNAPT's session (several switch together).
    pub site: usize,
    /// Planned or sudden.
    pub kind: HandoverKind,
    /// Uplink left (`None` when the box had none, e.g. after both were
    /// down).
    pub from_uplink: Option<String>,
    /// Uplink moved to.
    pub to_uplink: String,
    /// The decision task's reason, the user's request, or the loss the
    /// session noticed itself.
    pub reason: String,
    /// From the start of the switch (or the moment the loss was noticed)
    /// until the session runs on the new tunnel, at the box, milliseconds.
    pub stall_ms: f64,
    /// Payload bytes held at the box when the switch started.
    pub bytes_buffered: u64,
    /// Payload bytes resent because of this handover.
    pub bytes_replayed: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// The last handovers, oldest first, at most `capacity`.
#[derive(Debug, Clone)]
pub struct HandoverLog {
    ring: VecDeque<HandoverRecord>,
    capacity: usize,
    next_seq: u64,
}

impl HandoverLog {
    /// Keeps the last `capacity` (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
        }
    }

    /// Records `r` under the next number (its `seq` is overwritten) and
    /// returns that number; the oldest record goes when the ring is full.
    pub fn push(&mut self, mut r: HandoverRecord) -> u64 {
        r.seq = self.next_seq;
        self.next_seq += 1;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(r);
        self.next_seq - 1
    }

    /// Everything kept, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &HandoverRecord> {
        self.ring.iter()
    }

    /// Records after number `seq`, oldest first, and how many of those
    /// the ring no longer holds.
    pub fn since(&self, seq: u64) -> (Vec<&HandoverRecord>, u64) {
        let first_kept = self.ring.front().map_or(self.next_seq, |r| r.seq);
        let missed = first_kept.saturating_sub(seq.saturating_add(1));
        (self.ring.iter().filter(|r| r.seq > seq).collect(), missed)
    }

    /// Handovers recorded since start (also those no longer kept).
    pub fn total(&self) -> u64 {
        self.next_seq - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(to: &str) -> HandoverRecord {
        HandoverRecord {
            seq: 0,
            at_unix_ms: 1,
            site: 0,
            kind: HandoverKind::Sudden,
            from_uplink: Some("wifi".into()),
            to_uplink: to.into(),
            reason: "wifi: link down".into(),
            stall_ms: 38.1,
            bytes_buffered: 4096,
            bytes_replayed: 1024,
            outcome: Outcome::Completed,
        }
    }

    #[test]
    fn numbers_grow_and_the_oldest_goes_when_full() {
        let mut log = HandoverLog::new(3);
        for i in 0..5 {
            assert_eq!(log.push(rec(&format!("u{i}"))), i + 1);
        }
        let kept: Vec<u64> = log.records().map(|r| r.seq).collect();
        assert_eq!(kept, vec![3, 4, 5]);
        assert_eq!(log.total(), 5);
    }

    #[test]
    fn since_gives_what_followed_and_counts_what_was_lost() {
        let mut log = HandoverLog::new(3);
        for i in 0..5 {
            log.push(rec(&format!("u{i}")));
        }
        let (after, missed) = log.since(4);
        assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5]);
        assert_eq!(missed, 0);
        let (after, missed) = log.since(0);
        assert_eq!(after.len(), 3);
        assert_eq!(missed, 2, "1 and 2 fell out of the ring");
        let (after, missed) = log.since(5);
        assert!(after.is_empty());
        assert_eq!(missed, 0);
        let empty = HandoverLog::new(4);
        let (after, missed) = empty.since(0);
        assert!(after.is_empty());
        assert_eq!(missed, 0);
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let mut r = rec("lte");
        r.outcome = Outcome::Failed("lte: tcp timed out".into());
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert!(text.contains(r#""kind":"sudden""#), "{text}");
        assert!(
            text.contains(r#""outcome":{"result":"failed","why":"lte: tcp timed out"}"#),
            "{text}"
        );
        let back: HandoverRecord = serde_json::from_str(&text).unwrap_or_else(|_| rec("x"));
        assert_eq!(back, r);
    }
}
