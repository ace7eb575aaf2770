//! The systemd watchdog, fed from the work itself: the driver loop beats a
//! [`Heartbeat`] each time it turns (and it turns at least every
//! [`TURN_EVERY`], work or not), and only if none of its listeners has
//! stopped. The watchdog task pings systemd (`WATCHDOG=1`) only while the
//! newest beat is recent; a wedged loop, or one whose acceptor died,
//! stops the pings and systemd restarts the daemon. Once the daemon is
//! stopping, the pings go on regardless (the drain is bounded by its own
//! grace and `TimeoutStopSec`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{error, info};

/// The driver loop turns at least this often, even with nothing to do.
pub const TURN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Shared {
    /// Milliseconds since `base` of the newest beat.
    last_beat_ms: AtomicU64,
    base: Instant,
    stopping: AtomicBool,
    /// Tasks that must run as long as the daemon (its accept loops).
    tasks: Mutex<Vec<(&'static str, AbortHandle)>>,
}

/// What the driver loop beats; cheap to clone.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<Shared>);

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new() -> Self {
        Self(Arc::new(Shared {
            last_beat_ms: AtomicU64::new(0),
            base: Instant::now(),
            stopping: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// `task` must run as long as the daemon: once it has ended, the
    /// watchdog stops pinging.
    pub fn watch_task(&self, name: &'static str, task: AbortHandle) {
        if let Ok(mut t) = self.0.tasks.lock() {
            t.push((name, task));
        }
    }

    /// Stops watching every task (they were stopped on purpose, and the
    /// ones that replace them will be watched anew).
    pub fn forget_tasks(&self) {
        if let Ok(mut t) = self.0.tasks.lock() {
            t.clear();
        }
    }

    /// The first watched task that has ended, if any.
    pub fn ended_task(&self) -> Option<&'static str> {
        let t = self.0.tasks.lock().ok()?;
        t.iter().find(|(_, h)| h.is_finished()).map(|(n, _)| *n)
    }

    /// The loop turned and everything it watches is alive.
    pub fn beat(&self) {
        let ms = self.0.base.elapsed().as_millis() as u64;
        self.0.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// The daemon is stopping: the watchdog no longer judges.
    pub fn stopping(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }

    /// Time since the newest beat.
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.0.last_beat_ms.load(Ordering::Relaxed));
        self.0.base.elapsed().saturating_sub(last)
    }

    fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Relaxed)
    }
}

/// Whether to ping: the loop beat within `max_silence` and no watched task
/// has ended — or the daemon is stopping.
fn healthy(hb: &Heartbeat, max_silence: Duration) -> bool {
    hb.is_stopping() || (hb.silence() <= max_silence && hb.ended_task().is_none())
}

/// Pings with `ping` every `period` while `hb` is healthy (silence at most
/// `max_silence`); logs when the pings stop and start again. Runs for ever.
pub async fn run(hb: Heartbeat, period: Duration, max_silence: Duration, mut ping: impl FnMut()) {
    let mut withheld = false;
    loop {
        if healthy(&hb, max_silence) {
            if withheld {
                info!("watchdog: the work loop turns again; pings resume");
                withheld = false;
            }
            ping();
        } else if !withheld {
            error!(
                silent_ms = hb.silence().as_millis() as u64,
                ended = hb.ended_task().unwrap_or("none"),
                "watchdog: the work loop has not turned or a listener has stopped; pings withheld, systemd will restart the daemon"
            );
            withheld = true;
        }
        tokio::time::sleep(period).await;
    }
}

/// Starts the systemd watchdog for `hb` if the unit asks for one
/// (`WatchdogSec=`): pings every half period while the loop beats within
/// half the period plus [`TURN_EVERY`].
pub fn start_systemd(hb: Heartbeat) {
    if let Some(limit) = systemd_watchdog() {
        let period = limit / 2;
        let max_silence = (limit / 2).max(TURN_EVERY * 3);
        info!(
            watchdog_ms = limit.as_millis() as u64,
            "systemd watchdog fed by the work loop"
        );
        tokio::spawn(run(hb, period, max_silence, || {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }));
    }
}

/// The watchdog period systemd asks for, as `sd_watchdog_enabled(3)` reads
/// it: `WATCHDOG_USEC`, and `WATCHDOG_PID` — if set — naming this process.
fn systemd_watchdog() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_turning_stops_the_pings() {
        let hb = Heartbeat::new();
        let pings = Arc::new(AtomicUsize::new(0));
        let p = pings.clone();
        tokio::spawn(run(
            hb.clone(),
            Duration::from_secs(5),
            Duration::from_secs(10),
            move || {
                p.fetch_add(1, Ordering::Relaxed);
            },
        ));
        // The loop turns every second for a minute: pinged throughout.
        for _ in 0..60 {
            hb.beat();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let while_turning = pings.load(Ordering::Relaxed);
        assert!(while_turning >= 11, "{while_turning} pings in 60 s");
        // Then it wedges: at most the pings within the allowed silence.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let after = pings.load(Ordering::Relaxed) - while_turning;
        assert!(after <= 2, "{after} pings while the loop was wedged");
        // Stopping: the watchdog no longer judges.
        hb.stopping();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(pings.load(Ordering::Relaxed) > while_turning + after);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listener_that_ended_stops_the_pings_though_the_loop_turns() {
        let hb = Heartbeat::new();
        let listener = tokio::spawn(std::future::pending::<()>());
        hb.watch_task("tunnel", listener.abort_handle());
        let pings = Arc::new(AtomicUsize::new(0));
        let p = pings.clone();
        tokio::spawn(run(
            hb.clone(),
            Duration::from_secs(1),
            Duration::from_secs(10),
            move || {
                p.fetch_add(1, Ordering::Relaxed);
            },
        ));
        for _ in 0..5 {
            hb.beat();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(pings.load(Ordering::Relaxed) >= 4);
        listener.abort();
        tokio::task::yield_now().await;
        assert_eq!(hb.ended_task(), Some("tunnel"));
        let before = pings.load(Ordering::Relaxed);
        for _ in 0..5 {
            hb.beat();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(pings.load(Ordering::Relaxed) <= before + 1);
    }
}
