//! What to publish, from the box's successive snapshots: the retained
//! status when something material changed or the period passed, and
//! events — each new handover record, a suggestion appearing, the active
//! uplink or the mode changing. Events wait in a bounded queue while the
//! broker is away (the oldest dropped first, counted) and go out in order
//! when it is back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use status::Snapshot;

/// Turns snapshots into publications.
#[derive(Debug)]
pub struct Outbox {
    period: Duration,
    last: Option<Snapshot>,
    published_at: Option<Instant>,
    status_due: bool,
    last_seq: u64,
    events: VecDeque<Value>,
    limit: usize,
    dropped: u64,
}

impl Outbox {
    /// Status at least every `period`; at most `limit` events held.
    pub fn new(period: Duration, limit: usize) -> Self {
        Self {
            period,
            last: None,
            published_at: None,
            status_due: true,
            last_seq: 0,
            events: VecDeque::new(),
            limit: limit.max(1),
            dropped: 0,
        }
    }

    fn event(&mut self, e: Value) {
        if self.events.len() == self.limit {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Takes in the box's snapshot at `now`.
    pub fn observe(&mut self, s: Snapshot, now: Instant) {
        if let Some(before) = &self.last {
            let before = before.clone();
            let seen = self.last_seq;
            for h in s.handovers.iter().filter(|h| h.seq > seen) {
                self.event(json!({ "type": "handover", "handover": h }));
            }
            if s.suggestion != before.suggestion
                && let Some(sg) = &s.suggestion
            {
                self.event(
                    json!({ "type": "suggestion", "uplink": sg.uplink, "reason": sg.reason }),
                );
            }
            let active = |x: &Snapshot| x.active_uplink().map(|u| u.name.clone());
            if active(&s) != active(&before) {
                self.event(json!({ "type": "uplink", "from": active(&before), "to": active(&s) }));
            }
            if s.mode != before.mode {
                self.event(json!({ "type": "mode", "mode": s.mode }));
            }
            if s.differs_materially(&before) {
                self.status_due = true;
            }
        }
        self.last_seq = s
            .handovers
            .last()
            .map_or(self.last_seq, |h| h.seq.max(self.last_seq));
        if self
            .published_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period)
        {
            self.status_due = true;
        }
        self.last = Some(s);
    }

    /// The status to publish now (retained), if due.
    pub fn status(&mut self, now: Instant) -> Option<Value> {
        if !self.status_due {
            return None;
        }
        let s = self.last.as_ref()?;
        let mut v = serde_json::to_value(s).ok()?;
        if let Some(o) = v.as_object_mut() {
            o.insert("events_dropped".into(), json!(self.dropped));
        }
        self.status_due = false;
        self.published_at = Some(now);
        Some(v)
    }

    /// Publish the status again at the next chance (after a reconnection).
    pub fn status_again(&mut self) {
        self.status_due = true;
    }

    /// The oldest waiting event, taken out.
    pub fn next_event(&mut self) -> Option<Value> {
        self.events.pop_front()
    }

    /// An event that could not be handed over goes back to the front.
    pub fn put_back(&mut self, e: Value) {
        self.events.push_front(e);
        while self.events.len() > self.limit {
            self.events.pop_back();
            self.dropped += 1;
        }
    }

    /// Events waiting.
    pub fn waiting(&self) -> usize {
        self.events.len()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
