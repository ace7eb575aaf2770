//! Draining a relay for maintenance (`cboxctl snapt drain`): it takes no
//! new sessions (CONNECT is REFUSED `Draining`, so a box of a fleet starts
//! its session on another relay at once), ends each session as soon as it
//! has no open stream (nothing is lost: its box starts anew elsewhere and
//! its phones notice nothing), and ends the sessions still busy at the
//! deadline. Resumptions keep working meanwhile, so a box that changes
//! uplink while its download finishes keeps it. Once no session is left
//! the relay can be stopped or upgraded without cutting anyone.

use std::time::{Duration, Instant};

use control::Reply;
use serde_json::json;
use tracing::info;
use wire::{BoxId, DisconnectCode};

use crate::ServerDriver;

/// The longest drain an operator may ask for.
pub const MAX_DRAIN: Duration = Duration::from_secs(24 * 3600);

impl ServerDriver {
    /// Starts (or re-times) draining: every session ended within
    /// `deadline_s`.
    pub(crate) fn start_drain(&mut self, deadline_s: u64) -> Reply {
        let within = Duration::from_secs(deadline_s);
        if within > MAX_DRAIN {
            return Reply::err(format!(
                "deadline_s {deadline_s} is beyond {} s",
                MAX_DRAIN.as_secs()
            ));
        }
        self.server.set_draining(true);
        self.drain_deadline = Some(Instant::now() + within);
        info!(
            deadline_s,
            sessions = self.server.sessions().count(),
            "draining: no new sessions"
        );
        self.drain_tick();
        Reply::ok(json!({
            "draining": true,
            "deadline_s": deadline_s,
            "sessions_left": self.server.sessions().count(),
        }))
    }

    /// Ends the sessions that may go now: idle ones, and all at the
    /// deadline.
    pub(crate) fn drain_tick(&mut self) {
        let Some(deadline) = self.drain_deadline else {
            return;
        };
        let late = Instant::now() >= deadline;
        let go: Vec<(BoxId, bool)> = self
            .server
            .sessions()
            .filter(|s| late || s.stats().streams_open == 0)
            .map(|s| (s.owner().clone(), s.stats().streams_open == 0))
            .collect();
        for (box_id, idle) in go {
            let reason = if idle {
                "relay draining for maintenance: start a session on another relay"
            } else {
                "relay drained for maintenance: the deadline passed"
            };
            info!(box_id = %box_id, idle, "draining: session ended");
            self.server
                .disconnect(&box_id, DisconnectCode::Shutdown, reason);
        }
        self.flush();
    }
}
