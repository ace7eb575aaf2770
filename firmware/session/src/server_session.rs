//! The server (SNAPT) side of one box's session: its handover phases.
//!
//! * `Established`: data flows on one tunnel.
//! * `Planned` (after SWITCH_STEP1): SWITCH_ACK and our drain marker went out on
//!   the old tunnel; our stream data waits. The box's stream data still
//!   arrives on the old tunnel until its own marker. Once both the box's marker
//!   and SWITCH_STEP2 (on the new tunnel) are in, ALL_REDIRECTED goes out on the
//!   new tunnel and data flows there.
//! * `Orphaned`: no usable tunnel (lost, or a planned switch stuck past Z);
//!   waiting for SWITCH_UNEXPECTED until the switch timeout, then the session
//!   is released with every stream reset.
//!
//! SWITCH_UNEXPECTED is accepted in every phase, on a new tunnel or one
//! already bound: it drops the other tunnels and resynchronises offsets.

use std::time::Instant;

use wire::{BoxId, DisconnectCode, Frame, RefuseCode, ResetCode, Role, SyncState, VERSION};

use crate::config::SessionConfig;
use crate::core::{Core, SessionStats};
use crate::event::{CloseReason, Event, SwitchKind, Timer, Transmit, TunnelId};
use crate::image::{ImageError, SessionImage};
use crate::keepalive::PathStats;
use crate::streams::Streams;
use crate::violation::Violation;

const TRANSMIT_BATCH: usize = 64 * 1024;

/// Where a box's session stands on the server, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Data flows on one tunnel.
    Established,
    /// A planned switch is running.
    Switching,
    /// No usable tunnel; waiting for the box to resume.
    Orphaned,
    /// Released; about to be forgotten.
    Released,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Established {
        tunnel: TunnelId,
    },
    Planned {
        switch: u32,
        old: TunnelId,
        new: Option<TunnelId>,
        box_drained: bool,
        /// The old tunnel finished its closing handshake.
        old_done: bool,
        deadline: Instant,
    },
    Orphaned {
        deadline: Instant,
    },
    Released,
}

/// One box's session on the server.
#[derive(Debug)]
pub struct ServerSession {
    core: Core,
    owner: BoxId,
    session_id: u64,
    incarnation: u64,
    phase: Phase,
    draining_old: Option<(TunnelId, u32)>,
    /// The newest switch number accepted (SWITCH_STEP1 / SWITCH_UNEXPECTED).
    last_switch: u32,
    /// The box's warm standby tunnel, if one is bound.
    standby: Option<TunnelId>,
}

impl ServerSession {
    pub(crate) fn new(
        cfg: SessionConfig,
        owner: BoxId,
        session_id: u64,
        incarnation: u64,
        peer_window: u32,
        t: TunnelId,
        now: Instant,
    ) -> Self {
        let mut core = Core::new(Role::Server, cfg);
        core.peer_window = u64::from(peer_window);
        core.attach(t, now);
        let ack = Frame::ConnectAck {
            version: VERSION,
            session_id,
            window: core.cfg.window,
            keepalive_ms: u32::try_from(core.cfg.keepalive.as_millis()).unwrap_or(u32::MAX),
        };
        core.queue(t, ack);
        core.data_tunnel = Some(t);
        core.set_primary(t, now);
        core.events.push_back(Event::Connected { session_id });
        Self {
            core,
            owner,
            session_id,
            incarnation,
            phase: Phase::Established { tunnel: t },
            draining_old: None,
            last_switch: 0,
            standby: None,
        }
    }

    /// The session written down for a relay upgrade (`crate::image`).
    pub fn image(&self) -> SessionImage {
        let (next_index, peer_opened_seen) = self.core.counters();
        SessionImage {
            owner: self.owner.clone(),
            session_id: self.session_id,
            incarnation: self.incarnation,
            last_switch: self.last_switch,
            peer_window: self.core.peer_window,
            next_index,
            peer_opened_seen,
            streams: self.core.stream_images(),
        }
    }

    /// A session rebuilt from `img` in a new process: without a tunnel,
    /// waiting (the switch timeout) for the box to resume it.
    pub(crate) fn restore(
        cfg: SessionConfig,
        img: SessionImage,
        now: Instant,
    ) -> Result<Self, ImageError> {
        let deadline = now + cfg.switch_timeout;
        let mut core = Core::new(Role::Server, cfg);
        core.peer_window = img.peer_window;
        core.restore_streams(img.next_index, img.peer_opened_seen, img.streams)?;
        Ok(Self {
            core,
            owner: img.owner,
            session_id: img.session_id,
            incarnation: img.incarnation,
            phase: Phase::Orphaned { deadline },
            draining_old: None,
            last_switch: img.last_switch,
            standby: None,
        })
    }

    /// The box owning this session.
    pub fn owner(&self) -> &BoxId {
        &self.owner
    }

    /// The tunnel the session's data flows on, outside a switch.
    pub fn active_tunnel(&self) -> Option<TunnelId> {
        match self.phase {
            Phase::Established { tunnel } => Some(tunnel),
            _ => None,
        }
    }

    /// Sends the server's view of the path (PATH_REPORT) on the active
    /// tunnel; false (nothing sent) during a switch or without a tunnel.
    pub fn report_path(&mut self, report: wire::PathReport) -> bool {
        let Some(t) = self.active_tunnel() else {
            return false;
        };
        self.core.queue(t, Frame::PathReport(report));
        true
    }

    /// The session's id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The incarnation of the CONNECT that created it.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The application side: open (client-service) streams, write, finish.
    pub fn streams(&mut self) -> Streams<'_> {
        Streams(&mut self.core)
    }

    /// The session's state.
    pub fn state(&self) -> ServerState {
        match self.phase {
            Phase::Established { .. } => ServerState::Established,
            Phase::Planned { .. } => ServerState::Switching,
            Phase::Orphaned { .. } => ServerState::Orphaned,
            Phase::Released => ServerState::Released,
        }
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.core.stats
    }

    /// RTT and loss of the active path.
    pub fn path_stats(&self) -> PathStats {
        self.core.path_stats()
    }

    pub(crate) fn is_released(&self) -> bool {
        matches!(self.phase, Phase::Released)
    }

    /// Bytes `t`'s writer may still take (see
    /// [`crate::Server::set_tunnel_room`]).
    pub(crate) fn set_tunnel_room(&mut self, t: TunnelId, room: usize) {
        self.core.set_tunnel_room(t, room);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.poll_transmit(TRANSMIT_BATCH)
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let phase = match self.phase {
            Phase::Planned { deadline, .. } | Phase::Orphaned { deadline } => {
                Some((deadline, Timer::SwitchTimeout))
            }
            _ => None,
        };
        self.core.poll_timeout(phase)
    }

    /// A tunnel not yet bound opened with SWITCH_STEP2 or SWITCH_UNEXPECTED
    /// for this session; identity and ownership were checked by the server.
    /// `rest` is whatever arrived after that first frame.
    pub(crate) fn bind(
        &mut self,
        t: TunnelId,
        frame: Frame,
        rest: &[u8],
        now: Instant,
    ) -> Result<(), (RefuseCode, String)> {
        match (frame, self.phase) {
            (Frame::SwitchStep2 { switch, .. }, _) => {
                self.core.attach(t, now);
                if let Err(e) = self.step2(t, switch, now) {
                    self.core.detach(t);
                    return Err(e);
                }
            }
            (Frame::Standby { .. }, Phase::Released) => {
                return Err((RefuseCode::UnknownSession, "the session has ended".into()));
            }
            (Frame::Standby { keepalive_ms, .. }, _) => {
                if let Some(old) = self.standby.take() {
                    self.core.close_tunnel(old, CloseReason::Replaced);
                }
                self.core.attach(t, now);
                // Three of the box's standby PINGs may go missing.
                let limit = std::time::Duration::from_millis(u64::from(keepalive_ms))
                    .saturating_mul(3)
                    .max(self.core.cfg.inactivity_timeout);
                self.core.watch_with(t, limit, now);
                self.standby = Some(t);
            }
            (Frame::SwitchUnexpected { switch, .. }, _) if !self.is_newer(switch) => {
                return Err((RefuseCode::Stale, self.stale_reason(switch)));
            }
            (Frame::SwitchUnexpected { switch, sync, .. }, _) => {
                self.core.attach(t, now);
                self.core.watch(t, now);
                self.resync(t, switch, &sync, now);
            }
            (f, _) => {
                return Err((
                    RefuseCode::UnexpectedFrame,
                    format!("{} cannot bind a tunnel", f.frame_type().name()),
                ));
            }
        }
        self.handle_input(t, rest, now);
        Ok(())
    }

    /// SWITCH_STEP2 on `t` (attached): the new tunnel of the planned switch
    /// in progress.
    fn step2(
        &mut self,
        t: TunnelId,
        switch: u32,
        now: Instant,
    ) -> Result<(), (RefuseCode, String)> {
        match self.phase {
            Phase::Planned {
                switch: s,
                new: None,
                ..
            } if s == switch => {
                if self.standby == Some(t) {
                    self.standby = None;
                }
                if let Phase::Planned { new, .. } = &mut self.phase {
                    *new = Some(t);
                }
                self.maybe_complete_planned(now);
                Ok(())
            }
            // The planned switch was abandoned here (its old tunnel went)
            // while this STEP2 was on its way: keep the tunnel; the box
            // resumes on it with SWITCH_UNEXPECTED.
            Phase::Orphaned { .. } if switch == self.last_switch => {
                if self.standby == Some(t) {
                    self.standby = None;
                }
                self.core.watch(t, now);
                Ok(())
            }
            _ => Err((
                RefuseCode::BadSwitch,
                format!("no planned switch {switch} is waiting"),
            )),
        }
    }

    pub(crate) fn handle_input(&mut self, t: TunnelId, bytes: &[u8], now: Instant) {
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

    pub(crate) fn handle_tunnel_lost(&mut self, t: TunnelId, now: Instant) {
        if self.core.is_attached(t) {
            self.core.detach(t);
            self.after_loss(t, now);
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for t in self.core.silent_tunnels(now) {
            self.tunnel_failed(t, CloseReason::Inactive, now);
        }
        match self.phase {
            Phase::Planned { deadline, .. } if now >= deadline => {
                // The planned switch is stuck: the box may still resume with
                // SWITCH_UNEXPECTED on either tunnel.
                self.core.data_tunnel = None;
                self.phase = Phase::Orphaned {
                    deadline: now + self.core.cfg.switch_timeout,
                };
            }
            Phase::Orphaned { deadline } if now >= deadline => {
                self.release(
                    DisconnectCode::SwitchTimeout,
                    "the box did not resume within the switch timeout",
                );
            }
            _ => {}
        }
        self.core.poll_keepalive(now);
    }

    /// Ends the session from the server side (operator kick, shutdown).
    pub(crate) fn disconnect(&mut self, code: DisconnectCode, reason: &str) {
        if let Some(t) = self.core.primary.or(self.core.data_tunnel) {
            self.core.queue(
                t,
                Frame::Disconnect {
                    code,
                    reason: reason.to_owned(),
                },
            );
        }
        self.release(code, reason);
    }

    fn handle_frame(&mut self, t: TunnelId, frame: Frame, now: Instant) -> Result<(), Violation> {
        let frame = match frame {
            Frame::SyncPart { streams } => return self.core.add_sync_part(t, streams),
            Frame::SwitchUnexpected {
                version,
                session_id,
                switch,
                box_id,
                sync,
            } => Frame::SwitchUnexpected {
                version,
                session_id,
                switch,
                box_id,
                sync: self.core.with_sync_parts(t, sync),
            },
            f if self.core.sync_parts_pending(t) => {
                return Err(Violation::out_of_state(&f, "after SYNC_PART"));
            }
            f => f,
        };
        match frame {
            Frame::Disconnect { reason, .. } => {
                self.release(
                    DisconnectCode::Requested,
                    &format!("box disconnected: {reason}"),
                );
                return Ok(());
            }
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::PathReport(_) => {
                return self.core.handle_stream_frame(t, frame, now);
            }
            Frame::SwitchStep2 { switch, .. } if self.standby == Some(t) => {
                return self
                    .step2(t, switch, now)
                    .map_err(|_| Violation::OutOfState {
                        frame: wire::FrameType::SwitchStep2,
                        when: "without a planned switch waiting for it",
                    });
            }
            ref f if self.standby == Some(t) && !matches!(f, Frame::SwitchUnexpected { .. }) => {
                return Err(Violation::out_of_state(f, "on a standby tunnel"));
            }
            Frame::SwitchUnexpected {
                version,
                session_id,
                switch,
                box_id,
                sync,
            } => {
                if version != VERSION || session_id != self.session_id || box_id != self.owner {
                    return Err(Violation::OtherSession);
                }
                if !self.is_newer(switch) {
                    return Err(self.stale(switch));
                }
                self.resync(t, switch, &sync, now);
                return Ok(());
            }
            _ => {}
        }
        if let Some((old, switch)) = self.draining_old
            && old == t
        {
            return self.handle_old_closing(t, switch, frame);
        }
        match self.phase {
            Phase::Established { tunnel } if tunnel == t => match frame {
                Frame::SwitchStep1 { switch } if !self.is_newer(switch) => Err(self.stale(switch)),
                Frame::SwitchStep1 { switch } => {
                    self.last_switch = switch;
                    self.core.queue(t, Frame::SwitchAck { switch });
                    self.core
                        .queue(t, Frame::LastMessageBeforeRedirection { switch });
                    self.core.data_tunnel = None;
                    let deadline = now + self.core.cfg.switch_timeout;
                    self.phase = Phase::Planned {
                        switch,
                        old: t,
                        new: None,
                        box_drained: false,
                        old_done: false,
                        deadline,
                    };
                    self.core.events.push_back(Event::SwitchStarted {
                        switch,
                        kind: SwitchKind::Planned,
                        to: None,
                        since: now,
                    });
                    Ok(())
                }
                f => self.core.handle_stream_frame(t, f, now),
            },
            Phase::Planned {
                switch,
                old,
                box_drained,
                ..
            } if t == old => match frame {
                Frame::LastMessageBeforeRedirection { switch: s }
                    if s == switch && !box_drained =>
                {
                    self.core.queue(old, Frame::OkToRedirection { switch });
                    if let Phase::Planned { box_drained, .. } = &mut self.phase {
                        *box_drained = true;
                    }
                    self.maybe_complete_planned(now);
                    Ok(())
                }
                Frame::ClientServicesReadyForRedirection { switch: s }
                    if s == switch && box_drained =>
                {
                    self.core
                        .queue(old, Frame::ServerServicesReadyForRedirection { switch });
                    if let Phase::Planned { old_done, .. } = &mut self.phase {
                        *old_done = true;
                    }
                    // The box closes the old tunnel once the new one is
                    // confirmed; until then it may still resynchronise on it.
                    Ok(())
                }
                f if !box_drained => self.core.handle_stream_frame(t, f, now),
                f => Err(Violation::out_of_state(&f, "after the box's drain marker")),
            },
            _ => Err(Violation::out_of_state(&frame, "in this state")),
        }
    }

    fn handle_old_closing(
        &mut self,
        t: TunnelId,
        switch: u32,
        frame: Frame,
    ) -> Result<(), Violation> {
        match frame {
            Frame::ClientServicesReadyForRedirection { switch: s } if s == switch => {
                self.core
                    .queue(t, Frame::ServerServicesReadyForRedirection { switch });
                // The box closes it; if it does not, the inactivity timeout will.
                self.draining_old = None;
                Ok(())
            }
            f => Err(Violation::out_of_state(&f, "on a drained tunnel")),
        }
    }

    fn maybe_complete_planned(&mut self, now: Instant) {
        if let Phase::Planned {
            switch,
            old,
            new: Some(new),
            box_drained: true,
            ..
        } = self.phase
        {
            self.core
                .queue_with_sync(new, |sync| Frame::AllRedirected { switch, sync });
            if self.core.is_attached(old) {
                self.draining_old = Some((old, switch));
            }
            self.complete(switch, SwitchKind::Planned, new, now);
        }
    }

    /// Switch numbers only grow (the box takes a new one for every attempt):
    /// an older one comes from a tunnel the box has abandoned — a request
    /// held up in a stalled path — and must not undo a newer switch.
    fn is_newer(&self, switch: u32) -> bool {
        switch > self.last_switch
    }

    fn stale(&self, switch: u32) -> Violation {
        Violation::StaleSwitch {
            got: switch,
            last: self.last_switch,
        }
    }

    fn stale_reason(&self, switch: u32) -> String {
        format!(
            "switch {switch} is older than switch {} already carried out",
            self.last_switch
        )
    }

    fn resync(&mut self, t: TunnelId, switch: u32, peer: &SyncState, now: Instant) {
        self.last_switch = switch;
        if self.standby == Some(t) {
            self.standby = None;
        }
        // The old paths go; the box's standby stays bound (it is the box's
        // to replace).
        let others: Vec<TunnelId> = self
            .core
            .attached()
            .filter(|o| *o != t && self.standby != Some(*o))
            .collect();
        for o in others {
            self.core.close_tunnel(o, CloseReason::Replaced);
        }
        self.draining_old = None;
        if let Err(reason) = self.core.apply_sync(peer) {
            self.tunnel_failed(t, CloseReason::ProtocolViolation(reason), now);
            return;
        }
        self.core
            .queue_with_sync(t, |sync| Frame::AllRedirected { switch, sync });
        self.complete(switch, SwitchKind::Sudden, t, now);
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

    fn tunnel_failed(&mut self, t: TunnelId, reason: CloseReason, now: Instant) {
        if self.core.is_attached(t) {
            self.core.close_tunnel(t, reason);
            self.after_loss(t, now);
        }
    }

    fn after_loss(&mut self, t: TunnelId, now: Instant) {
        if self.draining_old.is_some_and(|(old, _)| old == t) {
            self.draining_old = None;
            return;
        }
        if self.standby == Some(t) {
            self.standby = None;
            return;
        }
        let orphan_deadline = now + self.core.cfg.switch_timeout;
        match self.phase {
            Phase::Established { tunnel } if tunnel == t => {
                self.core.data_tunnel = None;
                self.phase = Phase::Orphaned {
                    deadline: orphan_deadline,
                };
            }
            Phase::Planned {
                old,
                old_done: true,
                ..
            } if old == t => {}
            Phase::Planned { old, .. } if old == t => {
                // The box will resume with SWITCH_UNEXPECTED (possibly on the
                // new tunnel, which stays bound).
                self.phase = Phase::Orphaned {
                    deadline: orphan_deadline,
                };
            }
            Phase::Planned { new: Some(new), .. } if new == t => {
                if let Phase::Planned { new, .. } = &mut self.phase {
                    *new = None;
                }
            }
            _ => {}
        }
    }

    fn release(&mut self, code: DisconnectCode, reason: &str) {
        if self.is_released() {
            return;
        }
        self.core.closed = true;
        self.core.fail_all_streams(ResetCode::SessionEnded, reason);
        let tunnels: Vec<TunnelId> = self.core.attached().collect();
        for t in tunnels {
            self.core.close_tunnel(t, CloseReason::SessionEnded);
        }
        self.core.keepalive.stop();
        self.draining_old = None;
        self.phase = Phase::Released;
        self.core.events.push_back(Event::SessionClosed {
            code,
            reason: reason.to_owned(),
        });
    }
}
