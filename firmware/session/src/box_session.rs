//! The box (CNAPT) side of one session with one SNAPT: connection, planned
//! and sudden handover, and the fall-backs between them.
//!
//! Planned switch, as seen from the box (make-before-break: the new tunnel is
//! already up when [`BoxSession::switch_to`] is called):
//!
//! 1. `AwaitAck`: SWITCH_STEP1 sent on the old tunnel; data still flows there.
//! 2. `AwaitPeerDrain`: SWITCH_ACK received; waiting for the server's
//!    LAST_MESSAGE_BEFORE_REDIRECTION (nothing of the server's follows it on
//!    the old tunnel).
//! 3. `HeldAtSync` (multi-site only): waiting for the coordinator.
//! 4. `AwaitRedirected`: our own drain marker sent on the old tunnel and
//!    SWITCH_STEP2 on the new one; stream data waits for ALL_REDIRECTED, after
//!    which it flows on the new tunnel while the old one finishes its closing
//!    handshake (OK_TO_REDIRECTION … SERVER_SERVICES_READY_FOR_REDIRECTION).
//!
//! Any failure (a tunnel lost, a step over the switch timeout) turns into a
//! sudden switch: SWITCH_UNEXPECTED with our received offsets on whichever
//! tunnel still works, answered by ALL_REDIRECTED with the server's.

use std::time::Instant;

use wire::{BoxId, DisconnectCode, Frame, RefuseCode, ResetCode, Role, VERSION};

use crate::config::{ConfigError, SessionConfig};
use crate::core::{Core, SessionStats};
use crate::event::{CloseReason, Event, SwitchKind, Timer, Transmit, TunnelId};
use crate::keepalive::PathStats;
use crate::streams::Streams;
use crate::violation::Violation;

/// Largest batch of bytes one `poll_transmit` returns.
const TRANSMIT_BATCH: usize = 64 * 1024;

/// Why a switch command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// A connection attempt or a handover is already in progress.
    #[error("a connection or handover is already in progress")]
    Busy,
    /// The tunnel is already used by this session.
    #[error("tunnel {0:?} is already in use by this session")]
    SameTunnel(TunnelId),
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}

/// Where the box session stands, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxState {
    /// No tunnel yet.
    Idle,
    /// CONNECT sent.
    Connecting,
    /// Data flows on one tunnel.
    Established,
    /// A planned switch is running.
    Switching,
    /// The tunnel was lost; waiting for a new one.
    Recovering,
    /// SWITCH_UNEXPECTED sent; waiting for ALL_REDIRECTED.
    Resyncing,
    /// The session is over.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    AwaitAck,
    AwaitPeerDrain,
    HeldAtSync,
    AwaitRedirected,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    Connecting {
        tunnel: TunnelId,
        deadline: Instant,
    },
    Established {
        tunnel: TunnelId,
    },
    Planned {
        switch: u32,
        old: TunnelId,
        new: TunnelId,
        step: Step,
        /// SERVER_SERVICES_READY_FOR_REDIRECTION arrived: the old tunnel may
        /// close once the new one is confirmed by ALL_REDIRECTED.
        old_done: bool,
        deadline: Instant,
    },
    Recovering {
        deadline: Instant,
    },
    Resyncing {
        switch: u32,
        tunnel: TunnelId,
        deadline: Instant,
    },
    Closed,
}

/// One session of a box with one SNAPT. See the crate documentation for the
/// calling contract.
#[derive(Debug)]
pub struct BoxSession {
    core: Core,
    box_id: BoxId,
    phase: Phase,
    session_id: u64,
    next_switch: u32,
    hold_at_sync: bool,
    /// Carried by the next CONNECT, then incremented.
    incarnation: u64,
    /// Old tunnel of a completed planned switch, finishing its handshake.
    draining_old: Option<(TunnelId, u32)>,
    /// The warm standby tunnel, if one is bound.
    standby: Option<Standby>,
    /// The lost path's last sign of life, for the next sudden switch's
    /// `SwitchStarted`.
    lost_heard: Option<Instant>,
}

/// A warm standby tunnel: bound to the session by STANDBY, PINGed every
/// `standby_keepalive`, used by the next switch without a handshake.
#[derive(Debug, Clone, Copy)]
struct Standby {
    tunnel: TunnelId,
    /// Its first PONG arrived: the server bound it.
    confirmed: bool,
    /// The PING waiting for its PONG, and when it went out.
    ping: Option<(u64, Instant)>,
    next_ping: Instant,
    next_nonce: u64,
}

/// Standby PINGs carry nonces of their own (high bit set), never confused
/// with the primary's.
const STANDBY_NONCE: u64 = 1 << 63;

impl BoxSession {
    /// A session not yet connected. Streams may be opened and written at
    /// once; their bytes wait for the first tunnel.
    ///
    /// `incarnation` must exceed every value a previous session of this box
    /// used, also across restarts (a persisted counter, or milliseconds of
    /// wall-clock time at start): each CONNECT carries it (then it is
    /// incremented), and the server refuses a CONNECT no newer than the live
    /// session's, so a late, abandoned attempt cannot replace it.
    pub fn new(cfg: SessionConfig, box_id: BoxId, incarnation: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            core: Core::new(Role::Box, cfg),
            box_id,
            phase: Phase::Idle,
            session_id: 0,
            next_switch: 1,
            hold_at_sync: false,
            incarnation,
            draining_old: None,
            standby: None,
            lost_heard: None,
        })
    }

    // ---- commands --------------------------------------------------------

    /// Uses the freshly connected tunnel `t`: the first one sends CONNECT; with
    /// a working tunnel it starts a planned switch; after a loss it resumes the
    /// session with SWITCH_UNEXPECTED.
    pub fn switch_to(&mut self, t: TunnelId, now: Instant) -> Result<(), SwitchError> {
        let from_standby = self.standby.is_some_and(|s| s.tunnel == t);
        if self.core.is_attached(t) && !from_standby {
            return Err(SwitchError::SameTunnel(t));
        }
        if from_standby {
            if !matches!(
                self.phase,
                Phase::Established { .. } | Phase::Recovering { .. }
            ) {
                return Err(SwitchError::Busy);
            }
            self.standby = None;
        }
        let z = self.core.cfg.switch_timeout;
        match self.phase {
            Phase::Idle => {
                self.core.attach(t, now);
                let cfg = &self.core.cfg;
                let connect = Frame::Connect {
                    version: VERSION,
                    window: cfg.window,
                    keepalive_ms: u32::try_from(cfg.keepalive.as_millis()).unwrap_or(u32::MAX),
                    incarnation: self.incarnation,
                    box_id: self.box_id.clone(),
                };
                self.incarnation = self.incarnation.saturating_add(1);
                self.core.queue(t, connect);
                self.core.watch(t, now);
                self.phase = Phase::Connecting {
                    tunnel: t,
                    deadline: now + z,
                };
                Ok(())
            }
            Phase::Established { tunnel } => {
                if let Some((old, _)) = self.draining_old.take() {
                    self.core.close_tunnel(old, CloseReason::Drained);
                }
                self.core.attach(t, now);
                let switch = self.take_switch_number();
                self.core.queue(tunnel, Frame::SwitchStep1 { switch });
                // The old path must answer within a few of its round trips,
                // or the switch goes on without it (sudden, on `t`).
                let patience = self.old_path_patience(4);
                self.phase = Phase::Planned {
                    switch,
                    old: tunnel,
                    new: t,
                    step: Step::AwaitAck,
                    old_done: false,
                    deadline: now + patience,
                };
                self.core.events.push_back(Event::SwitchStarted {
                    switch,
                    kind: SwitchKind::Planned,
                    to: Some(t),
                    since: now,
                });
                Ok(())
            }
            Phase::Recovering { deadline } => {
                self.core.attach(t, now);
                self.start_resync(t, deadline, now);
                Ok(())
            }
            Phase::Connecting { .. } | Phase::Planned { .. } | Phase::Resyncing { .. } => {
                Err(SwitchError::Busy)
            }
            Phase::Closed => Err(SwitchError::Closed),
        }
    }

    /// Moves the session to `t` at once, while its tunnel still works
    /// (a switch away from a degraded path): the old tunnel is closed and
    /// SWITCH_UNEXPECTED goes out on `t` — fresh, or the standby — with our
    /// received offsets; what was in flight on the old path is sent again,
    /// each byte taken once. No waiting for the old path to drain.
    pub fn move_to(&mut self, t: TunnelId, now: Instant) -> Result<(), SwitchError> {
        let Phase::Established { tunnel } = self.phase else {
            return Err(SwitchError::Busy);
        };
        if t == tunnel {
            return Err(SwitchError::SameTunnel(t));
        }
        if self.standby.is_some_and(|s| s.tunnel == t) {
            self.standby = None;
        } else if self.core.is_attached(t) {
            return Err(SwitchError::SameTunnel(t));
        } else {
            self.core.attach(t, now);
        }
        if let Some((old, _)) = self.draining_old.take() {
            self.core.close_tunnel(old, CloseReason::Drained);
        }
        self.core.close_tunnel(tunnel, CloseReason::Replaced);
        self.lost_heard = Some(now);
        self.start_resync(t, now + self.core.cfg.switch_timeout, now);
        Ok(())
    }

    /// Binds the freshly connected tunnel `t` as the session's warm standby
    /// (STANDBY, then a PING every `standby_keepalive`). Only while
    /// established; replaces a standby already there.
    pub fn add_standby(&mut self, t: TunnelId, now: Instant) -> Result<(), SwitchError> {
        if !matches!(self.phase, Phase::Established { .. }) {
            return Err(SwitchError::Busy);
        }
        if self.core.is_attached(t) {
            return Err(SwitchError::SameTunnel(t));
        }
        if let Some(old) = self.standby.take() {
            self.core.close_tunnel(old.tunnel, CloseReason::Replaced);
        }
        self.core.attach(t, now);
        let cfg = &self.core.cfg;
        self.core.queue(
            t,
            Frame::Standby {
                version: VERSION,
                session_id: self.session_id,
                box_id: self.box_id.clone(),
                keepalive_ms: u32::try_from(cfg.standby_keepalive.as_millis()).unwrap_or(u32::MAX),
            },
        );
        let mut sb = Standby {
            tunnel: t,
            confirmed: false,
            ping: None,
            next_ping: now,
            next_nonce: STANDBY_NONCE,
        };
        self.standby_ping(&mut sb, now);
        self.standby = Some(sb);
        Ok(())
    }

    /// The warm standby tunnel, once the server has confirmed it.
    pub fn standby(&self) -> Option<TunnelId> {
        self.standby.filter(|s| s.confirmed).map(|s| s.tunnel)
    }

    /// The standby tunnel, confirmed or not.
    pub fn standby_pending(&self) -> Option<TunnelId> {
        self.standby.map(|s| s.tunnel)
    }

    /// Data is moving on the active path (ours unacknowledged, or the
    /// server's arriving): its round trips include the session's own queue.
    pub fn busy(&self) -> bool {
        self.core.busy()
    }

    /// Bytes `t`'s writer may still take (see
    /// [`crate::Server::set_tunnel_room`]).
    pub fn set_tunnel_room(&mut self, t: TunnelId, room: usize) {
        self.core.set_tunnel_room(t, room);
    }

    /// The kernel's view of tunnel `t` (`TCP_INFO`), for the dead-path rule.
    pub fn handle_transport(&mut self, t: TunnelId, sample: crate::TransportSample, now: Instant) {
        self.core.handle_transport(t, sample, now);
    }

    /// Ends the session: DISCONNECT to the server, every stream reset.
    pub fn close(&mut self, reason: &str) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.core.closed = true;
        self.core.fail_all_streams(ResetCode::SessionEnded, reason);
        if let Some(t) = self.core.primary.or(self.core.data_tunnel) {
            let f = Frame::Disconnect {
                code: DisconnectCode::Requested,
                reason: reason.to_owned(),
            };
            self.core.queue(t, f);
        }
        let tunnels: Vec<TunnelId> = self.core.attached().collect();
        for t in tunnels {
            self.core.close_tunnel(t, CloseReason::SessionEnded);
        }
        self.draining_old = None;
        self.core.keepalive.stop();
        self.core.data_tunnel = None;
        self.phase = Phase::Closed;
        self.core.events.push_back(Event::SessionClosed {
            code: DisconnectCode::Requested,
            reason: reason.to_owned(),
        });
    }

    /// Multi-site: stop a planned switch at the synchronisation point (after
    /// the server's drain marker) until [`Self::release_sync`].
    pub fn set_hold_at_sync(&mut self, hold: bool) {
        self.hold_at_sync = hold;
    }

    /// Whether a planned switch waits at the synchronisation point.
    pub fn is_held_at_sync(&self) -> bool {
        matches!(
            self.phase,
            Phase::Planned {
                step: Step::HeldAtSync,
                ..
            }
        )
    }

    /// A planned switch has not yet reached the synchronisation point.
    pub fn before_sync_point(&self) -> bool {
        matches!(
            self.phase,
            Phase::Planned {
                step: Step::AwaitAck | Step::AwaitPeerDrain,
                ..
            }
        )
    }

    /// Multi-site: continue a switch held at the synchronisation point.
    pub fn release_sync(&mut self, now: Instant) {
        if self.is_held_at_sync() {
            self.proceed(now);
        }
    }

    /// The application side: open, write, finish, reset streams.
    pub fn streams(&mut self) -> Streams<'_> {
        Streams(&mut self.core)
    }

    // ---- inputs ----------------------------------------------------------

    /// Bytes read from tunnel `t`.
    pub fn handle_input(&mut self, t: TunnelId, bytes: &[u8], now: Instant) {
        self.core.feed(t, bytes, now);
        while self.core.is_attached(t) {
            match self.core.next_frame(t) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    if let Err(reason) = self.handle_frame(t, frame, now) {
                        self.tunnel_failed(t, CloseReason::ProtocolViolation(reason), now);
                    }
                }
                Err(reason) => self.tunnel_failed(t, reason, now),
            }
        }
    }

    /// Tunnel `t` failed (I/O error, reset, closed by the peer).
    pub fn handle_tunnel_lost(&mut self, t: TunnelId, now: Instant) {
        if self.core.is_attached(t) {
            self.lost_heard = self.core.last_heard(t);
            self.core.detach(t);
            self.after_loss(t, now);
        }
    }

    /// Timers: call when [`Self::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for t in self.core.silent_tunnels(now) {
            self.tunnel_failed(t, CloseReason::Inactive, now);
        }
        if let Some(t) = self.core.poll_liveness(now) {
            self.tunnel_failed(t, CloseReason::DeadPath, now);
        }
        self.standby_timeout(now);
        match self.phase {
            Phase::Connecting { tunnel, deadline } if now >= deadline => {
                self.core.close_tunnel(tunnel, CloseReason::Inactive);
                self.phase = Phase::Idle;
                self.core.events.push_back(Event::NeedTunnel);
            }
            Phase::Planned {
                old, new, deadline, ..
            } if now >= deadline => {
                let z = self.core.cfg.switch_timeout;
                let target = if self.core.is_attached(new) {
                    Some(new)
                } else if self.core.is_attached(old) {
                    Some(old)
                } else {
                    None
                };
                match target {
                    Some(t) => {
                        let other = if t == new { old } else { new };
                        self.core.close_tunnel(other, CloseReason::Inactive);
                        self.start_resync(t, now + z, now);
                    }
                    None => self.enter_recovering(now + z),
                }
            }
            Phase::Recovering { deadline } | Phase::Resyncing { deadline, .. }
                if now >= deadline =>
            {
                self.fail_session(
                    DisconnectCode::SwitchTimeout,
                    "no working tunnel within the switch timeout",
                );
            }
            _ => {}
        }
        self.core.poll_keepalive(now);
    }

    // ---- outputs ---------------------------------------------------------

    /// Bytes to write to a tunnel, or `None` when there is nothing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.poll_transmit(TRANSMIT_BATCH)
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    /// The next deadline and why; call [`Self::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let phase = match self.phase {
            Phase::Connecting { deadline, .. }
            | Phase::Planned { deadline, .. }
            | Phase::Recovering { deadline }
            | Phase::Resyncing { deadline, .. } => Some((deadline, Timer::SwitchTimeout)),
            _ => None,
        };
        let standby = self.standby.map(|s| {
            let d = match s.ping {
                Some((_, sent)) => sent + self.standby_patience(),
                None => s.next_ping,
            };
            (d, Timer::Standby)
        });
        [self.core.poll_timeout(phase), standby]
            .into_iter()
            .flatten()
            .min_by_key(|(d, _)| *d)
    }

    // ---- status ----------------------------------------------------------

    /// The session's state.
    pub fn state(&self) -> BoxState {
        match self.phase {
            Phase::Idle => BoxState::Idle,
            Phase::Connecting { .. } => BoxState::Connecting,
            Phase::Established { .. } => BoxState::Established,
            Phase::Planned { .. } => BoxState::Switching,
            Phase::Recovering { .. } => BoxState::Recovering,
            Phase::Resyncing { .. } => BoxState::Resyncing,
            Phase::Closed => BoxState::Closed,
        }
    }

    /// The tunnel carrying stream data, if any.
    pub fn active_tunnel(&self) -> Option<TunnelId> {
        match self.phase {
            Phase::Established { tunnel } => Some(tunnel),
            _ => None,
        }
    }

    /// Sends the box's view of the path (PATH_REPORT) on the active tunnel;
    /// false (nothing sent) while the session has none.
    pub fn report_path(&mut self, report: wire::PathReport) -> bool {
        let Some(t) = self.active_tunnel() else {
            return false;
        };
        self.core.queue(t, Frame::PathReport(report));
        true
    }

    /// The server-assigned session id (0 before CONNECT_ACK).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Most streams this session may hold (its `max_streams`).
    pub fn stream_limit(&self) -> u32 {
        self.core.cfg.max_streams
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.core.stats
    }

    /// RTT and loss of the active path.
    pub fn path_stats(&self) -> PathStats {
        self.core.path_stats()
    }

    // ---- internals -------------------------------------------------------

    fn take_switch_number(&mut self) -> u32 {
        let n = self.next_switch;
        self.next_switch = self.next_switch.wrapping_add(1);
        n
    }

    fn handle_frame(&mut self, t: TunnelId, frame: Frame, now: Instant) -> Result<(), Violation> {
        let frame = match frame {
            Frame::SyncPart { streams } => return self.core.add_sync_part(t, streams),
            Frame::AllRedirected { switch, sync } => Frame::AllRedirected {
                switch,
                sync: self.core.with_sync_parts(t, sync),
            },
            f if self.core.sync_parts_pending(t) => {
                return Err(Violation::out_of_state(&f, "after SYNC_PART"));
            }
            f => f,
        };
        if let Frame::Disconnect { code, reason } = frame {
            self.fail_session(code, &format!("server disconnected: {reason}"));
            return Ok(());
        }
        if self.standby.is_some_and(|s| s.tunnel == t) {
            return self.standby_frame(t, frame, now);
        }
        if let Frame::Refused {
            code,
            reason,
            retry_after_ms,
        } = frame
        {
            return self.handle_refused(t, code, reason, retry_after_ms, now);
        }
        if matches!(
            frame,
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::PathReport(_)
        ) {
            return self.core.handle_stream_frame(t, frame, now);
        }
        if let Some((old, switch)) = self.draining_old
            && old == t
        {
            return self.handle_old_closing(t, switch, frame);
        }
        match self.phase {
            Phase::Connecting { tunnel, .. } if tunnel == t => match frame {
                Frame::ConnectAck {
                    version,
                    session_id,
                    window,
                    ..
                } => {
                    if version != VERSION {
                        return Err(Violation::Version(version));
                    }
                    self.session_id = session_id;
                    self.core.peer_window = u64::from(window);
                    self.core.data_tunnel = Some(t);
                    self.core.set_primary(t, now);
                    self.phase = Phase::Established { tunnel: t };
                    self.core.events.push_back(Event::Connected { session_id });
                    Ok(())
                }
                other => Err(Violation::out_of_state(&other, "while connecting")),
            },
            Phase::Established { tunnel } if tunnel == t => {
                self.core.handle_stream_frame(t, frame, now)
            }
            Phase::Planned {
                switch,
                old,
                new,
                step,
                old_done,
                ..
            } => {
                let z = self.core.cfg.switch_timeout;
                match (t == old, step, frame) {
                    (true, Step::AwaitAck, Frame::SwitchAck { switch: s }) if s == switch => {
                        // The old path's queue drains behind the marker.
                        let patience = self
                            .old_path_patience(8)
                            .max(std::time::Duration::from_secs(1));
                        self.set_step(Step::AwaitPeerDrain, now + patience.min(z));
                        Ok(())
                    }
                    (
                        true,
                        Step::AwaitPeerDrain,
                        Frame::LastMessageBeforeRedirection { switch: s },
                    ) if s == switch => {
                        if self.hold_at_sync {
                            self.set_step(Step::HeldAtSync, now + z);
                        } else {
                            self.proceed(now);
                        }
                        Ok(())
                    }
                    (true, Step::AwaitRedirected, Frame::OkToRedirection { switch: s })
                        if s == switch =>
                    {
                        self.core
                            .queue(old, Frame::ClientServicesReadyForRedirection { switch });
                        Ok(())
                    }
                    (
                        true,
                        Step::AwaitRedirected,
                        Frame::ServerServicesReadyForRedirection { switch: s },
                    ) if s == switch => {
                        // Make before break: the old tunnel stays until the
                        // new one is confirmed.
                        if let Phase::Planned { old_done, .. } = &mut self.phase {
                            *old_done = true;
                        }
                        Ok(())
                    }
                    // Before the server's drain marker its stream data still
                    // arrives on the old tunnel.
                    (true, Step::AwaitAck | Step::AwaitPeerDrain, f) => {
                        self.core.handle_stream_frame(t, f, now)
                    }
                    (false, Step::AwaitRedirected, Frame::AllRedirected { switch: s, sync })
                        if s == switch && t == new =>
                    {
                        self.core.apply_sync(&sync)?;
                        self.complete(switch, SwitchKind::Planned, new, now);
                        if old_done {
                            self.core.close_tunnel(old, CloseReason::Drained);
                        } else if self.core.is_attached(old) {
                            self.draining_old = Some((old, switch));
                        }
                        Ok(())
                    }
                    (_, _, f) => Err(Violation::out_of_state(&f, "during a planned switch")),
                }
            }
            Phase::Resyncing { switch, tunnel, .. } if tunnel == t => match frame {
                Frame::AllRedirected { switch: s, sync } if s == switch => {
                    self.core.apply_sync(&sync)?;
                    self.complete(switch, SwitchKind::Sudden, t, now);
                    Ok(())
                }
                // Leftovers of a planned switch abandoned on this tunnel.
                Frame::SwitchAck { .. }
                | Frame::LastMessageBeforeRedirection { .. }
                | Frame::OkToRedirection { .. }
                | Frame::ServerServicesReadyForRedirection { .. }
                | Frame::AllRedirected { .. } => Ok(()),
                // Same ordered tunnel: anything the server sent before it
                // resynchronised is contiguous, and resent bytes are trimmed.
                f => self.core.handle_stream_frame(t, f, now),
            },
            _ => Err(Violation::out_of_state(
                &frame,
                "on a tunnel this session no longer uses",
            )),
        }
    }

    fn handle_old_closing(
        &mut self,
        t: TunnelId,
        switch: u32,
        frame: Frame,
    ) -> Result<(), Violation> {
        match frame {
            Frame::OkToRedirection { switch: s } if s == switch => {
                self.core
                    .queue(t, Frame::ClientServicesReadyForRedirection { switch });
            }
            Frame::ServerServicesReadyForRedirection { switch: s } if s == switch => {
                self.draining_old = None;
                self.core.close_tunnel(t, CloseReason::Drained);
            }
            f => return Err(Violation::out_of_state(&f, "on a drained tunnel")),
        }
        Ok(())
    }

    fn handle_refused(
        &mut self,
        t: TunnelId,
        code: RefuseCode,
        reason: String,
        retry_after_ms: u32,
        now: Instant,
    ) -> Result<(), Violation> {
        self.core.events.push_back(Event::Refused {
            code,
            reason: reason.clone(),
            retry_after_ms,
        });
        match self.phase {
            Phase::Connecting { tunnel, .. } if tunnel == t => {
                self.core.close_tunnel(t, CloseReason::Refused(code));
                self.phase = Phase::Idle;
                Ok(())
            }
            Phase::Resyncing { tunnel, .. } if tunnel == t => {
                self.fail_session(
                    DisconnectCode::Other(0),
                    &format!("resumption refused: {reason}"),
                );
                Ok(())
            }
            Phase::Planned { new, .. } if new == t => {
                self.core.close_tunnel(t, CloseReason::Refused(code));
                self.after_loss(t, now);
                Ok(())
            }
            _ => Err(Violation::OutOfState {
                frame: wire::FrameType::Refused,
                when: "outside a connection attempt",
            }),
        }
    }

    /// The synchronisation point is passed: drain marker on the old tunnel,
    /// SWITCH_STEP2 on the new one; stream data waits for ALL_REDIRECTED.
    fn proceed(&mut self, now: Instant) {
        if let Phase::Planned {
            switch, old, new, ..
        } = self.phase
        {
            self.core
                .queue(old, Frame::LastMessageBeforeRedirection { switch });
            self.core.data_tunnel = None;
            let step2 = Frame::SwitchStep2 {
                version: VERSION,
                session_id: self.session_id,
                switch,
                box_id: self.box_id.clone(),
            };
            self.core.queue(new, step2);
            self.core.watch(new, now);
            self.set_step(Step::AwaitRedirected, now + self.core.cfg.switch_timeout);
        }
    }

    fn set_step(&mut self, next: Step, next_deadline: Instant) {
        if let Phase::Planned { step, deadline, .. } = &mut self.phase {
            *step = next;
            *deadline = next_deadline;
        }
    }

    fn complete(&mut self, switch: u32, kind: SwitchKind, t: TunnelId, now: Instant) {
        self.core.data_tunnel = Some(t);
        self.core.set_primary(t, now);
        self.core.stats.switches += 1;
        self.phase = Phase::Established { tunnel: t };
        self.core.events.push_back(Event::SwitchCompleted {
            switch,
            kind,
            to: t,
        });
    }

    fn start_resync(&mut self, t: TunnelId, deadline: Instant, now: Instant) {
        let switch = self.take_switch_number();
        let (session_id, box_id) = (self.session_id, self.box_id.clone());
        self.core.data_tunnel = None;
        self.core
            .queue_with_sync(t, |sync| Frame::SwitchUnexpected {
                version: VERSION,
                session_id,
                switch,
                box_id,
                sync,
            });
        self.core.watch(t, now);
        self.core.keepalive.stop();
        self.core.primary = None;
        // A resynchronisation waits at most Z, but never past the overall deadline.
        let deadline = deadline.min(now + self.core.cfg.switch_timeout);
        self.phase = Phase::Resyncing {
            switch,
            tunnel: t,
            deadline,
        };
        let since = self.lost_heard.take().unwrap_or(now).min(now);
        self.core.events.push_back(Event::SwitchStarted {
            switch,
            kind: SwitchKind::Sudden,
            to: Some(t),
            since,
        });
    }

    /// How long the old path of a planned switch may take to answer: `n`
    /// of its round trips, at least twice the dead-path floor.
    fn old_path_patience(&self, n: u32) -> std::time::Duration {
        let rtt = self.core.path_stats().srtt.unwrap_or_default();
        (rtt * n).max(self.core.cfg.dead_path_floor * 2)
    }

    /// How long a standby PING may wait for its PONG.
    fn standby_patience(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5).min(self.core.cfg.standby_keepalive)
    }

    fn standby_ping(&mut self, sb: &mut Standby, now: Instant) {
        let nonce = sb.next_nonce;
        sb.next_nonce = sb.next_nonce.wrapping_add(1) | STANDBY_NONCE;
        self.core.queue(sb.tunnel, Frame::Ping { nonce });
        sb.ping = Some((nonce, now));
        sb.next_ping = now + self.core.cfg.standby_keepalive;
    }

    /// A frame on the standby tunnel: PING and PONG keep it; REFUSED or
    /// anything else ends it.
    fn standby_frame(&mut self, t: TunnelId, frame: Frame, now: Instant) -> Result<(), Violation> {
        match frame {
            Frame::Pong { nonce } => {
                if let Some(sb) = self.standby.as_mut()
                    && sb.ping.is_some_and(|(n, _)| n == nonce)
                {
                    sb.ping = None;
                    sb.confirmed = true;
                }
                Ok(())
            }
            Frame::Ping { nonce } => {
                self.core.queue(t, Frame::Pong { nonce });
                Ok(())
            }
            Frame::Refused { code, .. } => {
                self.standby = None;
                self.core.close_tunnel(t, CloseReason::Refused(code));
                let _ = now;
                Ok(())
            }
            f => Err(Violation::out_of_state(&f, "on a standby tunnel")),
        }
    }

    /// The standby's PING is due, or its PONG overdue (then it is closed).
    fn standby_timeout(&mut self, now: Instant) {
        let Some(mut sb) = self.standby else { return };
        if let Some((_, sent)) = sb.ping {
            if now >= sent + self.standby_patience() {
                self.standby = None;
                self.core.close_tunnel(sb.tunnel, CloseReason::StandbyLost);
            }
            return;
        }
        if now >= sb.next_ping {
            self.standby_ping(&mut sb, now);
            self.standby = Some(sb);
        }
    }

    fn enter_recovering(&mut self, deadline: Instant) {
        self.core.data_tunnel = None;
        self.phase = Phase::Recovering { deadline };
        self.core.events.push_back(Event::NeedTunnel);
    }

    fn tunnel_failed(&mut self, t: TunnelId, reason: CloseReason, now: Instant) {
        if self.core.is_attached(t) {
            self.lost_heard = self.core.last_heard(t);
            self.core.close_tunnel(t, reason);
            self.after_loss(t, now);
        }
    }

    /// `t` is gone (already detached): decide what the session does next.
    fn after_loss(&mut self, t: TunnelId, now: Instant) {
        let z = self.core.cfg.switch_timeout;
        if self.draining_old.is_some_and(|(old, _)| old == t) {
            self.draining_old = None;
            return;
        }
        if self.standby.is_some_and(|s| s.tunnel == t) {
            self.standby = None;
            return;
        }
        match self.phase {
            Phase::Connecting { tunnel, .. } if tunnel == t => {
                self.phase = Phase::Idle;
                self.core.events.push_back(Event::NeedTunnel);
            }
            Phase::Established { tunnel } if tunnel == t => {
                // A confirmed standby takes over at once: no handshake.
                match self.standby.take().filter(|s| s.confirmed) {
                    Some(sb) => self.start_resync(sb.tunnel, now + z, now),
                    None => {
                        if let Some(sb) = self.standby.take() {
                            self.core.close_tunnel(sb.tunnel, CloseReason::Replaced);
                        }
                        self.enter_recovering(now + z);
                    }
                }
            }
            Phase::Planned { old, new, .. } if t == old || t == new => {
                let survivor = if t == old { new } else { old };
                if self.core.is_attached(survivor) {
                    self.start_resync(survivor, now + z, now);
                } else {
                    self.enter_recovering(now + z);
                }
            }
            Phase::Resyncing {
                tunnel, deadline, ..
            } if tunnel == t => {
                self.phase = Phase::Recovering { deadline };
                self.core.events.push_back(Event::NeedTunnel);
            }
            _ => {}
        }
    }

    fn fail_session(&mut self, code: DisconnectCode, reason: &str) {
        self.core.closed = true;
        self.core.fail_all_streams(ResetCode::SessionEnded, reason);
        let tunnels: Vec<TunnelId> = self.core.attached().collect();
        for t in tunnels {
            self.core.close_tunnel(t, CloseReason::SessionEnded);
        }
        self.draining_old = None;
        self.phase = Phase::Closed;
        self.core.events.push_back(Event::SessionClosed {
            code,
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod path_tests;
#[cfg(test)]
mod tests;
