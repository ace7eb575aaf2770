//! The pairing state the Bluetooth task and its pairing agent share: the
//! pairing window and the trusted devices behind one lock, the time since
//! the task started, and a counter that wakes whoever waits for a change.

use std::sync::{Mutex, MutexGuard};

use pairing::{Trusted, Window};
use tokio::sync::watch;
use tokio::time::Instant;

/// The pairing state the agent and the task share.
pub(super) struct Shared {
    inner: Mutex<(Window, Trusted)>,
    changes: watch::Sender<u64>,
    origin: Instant,
}

impl Shared {
    /// The state with `window` and `trusted`, its clock starting now.
    pub(super) fn new(window: Window, trusted: Trusted) -> Self {
        Self {
            inner: Mutex::new((window, trusted)),
            changes: watch::channel(0).0,
            origin: Instant::now(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, (Window, Trusted)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `f` on the window, with the time.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Window, u64) -> R) -> R {
        let now = self.now_ms();
        f(&mut self.lock().0, now)
    }

    /// Runs `f` on the window and the trusted devices.
    pub(super) fn with_trusted<R>(&self, f: impl FnOnce(&Window, &Trusted) -> R) -> R {
        let g = self.lock();
        f(&g.0, &g.1)
    }

    /// Something changed: wake whoever waits.
    pub(super) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Told of every change from now on.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
