//! The hub a daemon publishes its path notices to, and the subscriptions
//! its channels (the relay's feed, the box's page and announcement) read
//! from. Bounded: a subscriber that reads too slowly loses the oldest
//! notices, and the next one it gets says how many (`dropped`); nothing
//! waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::notice::{Cause, Notice};

/// Notices a subscriber may fall behind by before it loses the oldest.
pub const BACKLOG: usize = 64;

/// Counters of a hub.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Notices published.
    pub published: AtomicU64,
    /// Notices subscribers lost by reading too slowly (all subscribers).
    pub dropped: AtomicU64,
}

/// One daemon's notices, the latest of each box kept for new subscribers.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Notice>>,
    latest: Arc<Mutex<HashMap<String, Arc<Notice>>>>,
    stats: Arc<HubStats>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Self {
            tx,
            latest: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Sends `n` to every subscriber whose filter it matches.
    pub fn publish(&self, n: Notice) {
        let n = Arc::new(n);
        if let Ok(mut l) = self.latest.lock() {
            l.insert(n.box_id.clone(), n.clone());
        }
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        // No subscriber is not an error.
        let _ = self.tx.send(n);
    }

    /// The box's session is gone: new subscribers find nothing of it.
    pub fn forget(&self, box_id: &str) {
        if let Ok(mut l) = self.latest.lock() {
            l.remove(box_id);
        }
    }

    /// The latest notice of `box_id`, if any.
    pub fn latest(&self, box_id: &str) -> Option<Notice> {
        let l = self.latest.lock().ok()?;
        l.get(box_id).map(|n| n.as_ref().clone())
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The counters.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// A subscription to the notices `filter` matches; it first gets the
    /// latest notice of each matching box (cause `current`).
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        let rx = self.tx.subscribe();
        let mut first: VecDeque<Arc<Notice>> = self
            .latest
            .lock()
            .map(|l| l.values().filter(|n| filter.matches(n)).cloned().collect())
            .unwrap_or_default();
        first.make_contiguous().sort_by_key(|n| n.at_unix_ms);
        Subscription {
            rx,
            filter,
            first,
            dropped: 0,
            stats: self.stats.clone(),
        }
    }
}

/// Which notices a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One box (none: every box).
    pub box_id: Option<String>,
    /// Notices for this service (none: any).
    pub service: Option<String>,
}

impl Filter {
    /// Whether `n` is for this subscriber.
    pub fn matches(&self, n: &Notice) -> bool {
        self.box_id.as_ref().is_none_or(|b| *b == n.box_id)
            && self
                .service
                .as_ref()
                .is_none_or(|s| n.services.iter().any(|x| x == s))
    }
}

/// One subscriber's view of a hub.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Notice>>,
    filter: Filter,
    first: VecDeque<Arc<Notice>>,
    dropped: u64,
    stats: Arc<HubStats>,
}

impl Subscription {
    /// The next notice for this subscriber (its `dropped` says how many it
    /// lost before it); none once the hub is gone.
    pub async fn next(&mut self) -> Option<Notice> {
        if let Some(n) = self.first.pop_front() {
            let mut n = n.as_ref().clone();
            n.cause = Cause::Current;
            return Some(n);
        }
        loop {
            match self.rx.recv().await {
                Ok(n) if self.filter.matches(&n) => {
                    let mut n = n.as_ref().clone();
                    n.dropped = std::mem::take(&mut self.dropped);
                    return Some(n);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    self.dropped += k;
                    self.stats.dropped.fetch_add(k, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Figures, NOTICE_VERSION};

    fn notice(box_id: &str, seq: u64, services: &[&str]) -> Notice {
        Notice {
            v: NOTICE_VERSION,
            seq,
            box_id: box_id.into(),
            at_unix_ms: seq,
            cause: Cause::Change,
            services: services.iter().map(|s| s.to_string()).collect(),
            figures: Figures::default(),
            dropped: 0,
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_current_state_then_only_its_box_and_service() {
        let hub = Hub::new();
        hub.publish(notice("box-1", 1, &["live"]));
        hub.publish(notice("box-2", 1, &["live"]));
        let mut sub = hub.subscribe(Filter {
            box_id: Some("box-1".into()),
            service: Some("live".into()),
        });
        let first = sub.next().await.unwrap_or_else(|| panic!("current"));
        assert_eq!(
            (first.box_id.as_str(), first.cause),
            ("box-1", Cause::Current)
        );
        hub.publish(notice("box-2", 2, &["live"]));
        hub.publish(notice("box-1", 2, &["other"]));
        hub.publish(notice("box-1", 3, &["live", "other"]));
        let n = sub.next().await.unwrap_or_else(|| panic!("next"));
        assert_eq!((n.box_id.as_str(), n.seq), ("box-1", 3));
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_and_is_told_how_many() {
        let hub = Hub::new();
        let mut sub = hub.subscribe(Filter::default());
        let total = BACKLOG as u64 + 10;
        for seq in 1..=total {
            hub.publish(notice("box-1", seq, &["live"]));
        }
        let n = sub.next().await.unwrap_or_else(|| panic!("next"));
        assert_eq!(n.dropped, 10);
        assert_eq!(n.seq, 11);
        assert_eq!(hub.stats().dropped.load(Ordering::Relaxed), 10);
        let n = sub.next().await.unwrap_or_else(|| panic!("next"));
        assert_eq!((n.seq, n.dropped), (12, 0));
        hub.forget("box-1");
        assert!(hub.latest("box-1").is_none());
    }
}
