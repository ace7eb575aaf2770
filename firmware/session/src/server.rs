//! The SNAPT side as a whole: tunnels arriving from many boxes, each bound to
//! its box's [`ServerSession`] by its first frame and its authenticated
//! identity; capacity limits; session ids.
//!
//! A tunnel's first frame must be CONNECT (new session), SWITCH_STEP2 or
//! SWITCH_UNEXPECTED (move an existing one). The box id in the frame must be
//! the identity the TLS layer authenticated, and a session can only be moved
//! by its owner: anything else is answered with REFUSED and the tunnel is
//! closed, leaving every session as it was.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use wire::{BoxId, DisconnectCode, Frame, RefuseCode, VERSION};

use crate::config::{ConfigError, SessionConfig};
use crate::event::{CloseReason, Event, Timer, Transmit, TunnelId};
use crate::reader::FrameReader;
use crate::rng::SplitMix64;
use crate::server_session::ServerSession;

/// Limits of a server, on top of each session's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Limits and timers of every session.
    pub session: SessionConfig,
    /// Most boxes with a session at once; CONNECT beyond is REFUSED
    /// `OverCapacity`. Default 1000.
    pub max_sessions: usize,
    /// New sessions taken a second, as many at once; a CONNECT beyond is
    /// REFUSED `Busy` with a wait, the waits of a burst a slot of the
    /// rate apart (`server/rate.rs`). Default 1000.
    pub new_sessions_per_s: u32,
}

/// The wait an `OverCapacity` refusal asks for: a full relay does not empty
/// in seconds.
pub const OVER_CAPACITY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            max_sessions: 1000,
            new_sessions_per_s: 1000,
        }
    }
}

impl ServerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.session.validate()?;
        if self.max_sessions == 0 {
            return Err(ConfigError {
                field: "max_sessions",
                problem: "must be at least 1".into(),
            });
        }
        if self.new_sessions_per_s == 0 {
            return Err(ConfigError {
                field: "new_sessions_per_s",
                problem: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// An event of one box's session (`box_id` set) or of a tunnel that never
/// got bound to one (`box_id` `None`: only `CloseTunnel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// The session's box, if the tunnel was bound.
    pub box_id: Option<BoxId>,
    /// What happened.
    pub event: Event,
}

#[derive(Debug)]
struct Unbound {
    identity: BoxId,
    reader: FrameReader,
    deadline: Instant,
    /// SYNC_PART entries ahead of a SWITCH_UNEXPECTED.
    parts: Vec<wire::StreamSync>,
}

/// All sessions of one SNAPT.
#[derive(Debug)]
pub struct Server {
    cfg: ServerConfig,
    rng: SplitMix64,
    sessions: HashMap<BoxId, ServerSession>,
    by_id: HashMap<u64, BoxId>,
    unbound: HashMap<TunnelId, Unbound>,
    bound: HashMap<TunnelId, BoxId>,
    out: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    dirty: BTreeSet<BoxId>,
    new_sessions: rate::NewSessions,
    draining: bool,
}

/// The wait a `Draining` refusal asks for (a box of a fleet goes to another
/// relay at once; a box without one tries this relay again after it).
pub const DRAINING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Server {
    /// A server; `seed` feeds the session-id generator (pass real entropy).
    pub fn new(cfg: ServerConfig, seed: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let cfg_rate = cfg.new_sessions_per_s;
        Ok(Self {
            cfg,
            rng: SplitMix64::new(seed),
            sessions: HashMap::new(),
            by_id: HashMap::new(),
            unbound: HashMap::new(),
            bound: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            dirty: BTreeSet::new(),
            new_sessions: rate::NewSessions::new(cfg_rate),
            draining: false,
        })
    }

    /// A tunnel was accepted and its peer authenticated as `identity`.
    pub fn handle_tunnel_up(&mut self, t: TunnelId, identity: BoxId, now: Instant) {
        // A make-before-break tunnel legitimately waits for SWITCH_STEP2 while
        // the old path drains: allow it the switch timeout.
        let deadline = now + self.cfg.session.switch_timeout;
        self.unbound.insert(
            t,
            Unbound {
                identity,
                reader: FrameReader::default(),
                deadline,
                parts: Vec::new(),
            },
        );
    }

    /// Bytes read from tunnel `t`.
    pub fn handle_input(&mut self, t: TunnelId, bytes: &[u8], now: Instant) {
        if let Some(box_id) = self.bound.get(&t).cloned() {
            if let Some(s) = self.sessions.get_mut(&box_id) {
                s.handle_input(t, bytes, now);
            }
            self.after_session_call(&box_id);
            return;
        }
        let Some(u) = self.unbound.get_mut(&t) else {
            return;
        };
        u.reader.push(bytes);
        // SYNC_PART frames may come ahead of a long SWITCH_UNEXPECTED.
        let mut next = u.reader.next_frame(self.cfg.session.max_frame_len);
        while let Ok(Some(Frame::SyncPart { streams })) = next {
            if u.parts.len() + streams.len() > crate::core::MAX_SYNC_ENTRIES {
                self.unbound.remove(&t);
                let reason = format!(
                    "SYNC_PART frames list more than {} streams",
                    crate::core::MAX_SYNC_ENTRIES
                );
                return self.refuse(t, RefuseCode::UnexpectedFrame, reason);
            }
            u.parts.extend(streams);
            next = u.reader.next_frame(self.cfg.session.max_frame_len);
        }
        match next {
            Ok(None) => {}
            Ok(Some(mut frame)) => {
                let rest = u.reader.take_rest();
                let identity = u.identity.clone();
                let parts = std::mem::take(&mut u.parts);
                self.unbound.remove(&t);
                match &mut frame {
                    Frame::SwitchUnexpected { sync, .. } => {
                        let mut all = parts;
                        all.append(&mut sync.streams);
                        sync.streams = all;
                    }
                    other if !parts.is_empty() => {
                        let reason = format!("{} after SYNC_PART", other.frame_type().name());
                        return self.refuse(t, RefuseCode::UnexpectedFrame, reason);
                    }
                    _ => {}
                }
                self.handle_first_frame(t, identity, frame, &rest, now);
            }
            Err(e) => {
                self.unbound.remove(&t);
                let reason = CloseReason::ProtocolViolation(e.into());
                self.events.push_back(ServerEvent {
                    box_id: None,
                    event: Event::CloseTunnel { tunnel: t, reason },
                });
            }
        }
    }

    /// How many more bytes tunnel `t`'s writer may take (the driver's
    /// budget less what the writer holds): stream data beyond it stays in
    /// the streams' buffers — where a fresh stream can still go first —
    /// instead of queueing behind the socket. Control frames still go.
    pub fn set_tunnel_room(&mut self, t: TunnelId, room: usize) {
        if let Some(box_id) = self.bound.get(&t).cloned() {
            if let Some(s) = self.sessions.get_mut(&box_id) {
                s.set_tunnel_room(t, room);
            }
            if room > 0 {
                self.dirty.insert(box_id);
            }
        }
    }

    /// Tunnel `t` is gone (I/O error, closed by either side).
    pub fn handle_tunnel_lost(&mut self, t: TunnelId, now: Instant) {
        self.unbound.remove(&t);
        if let Some(box_id) = self.bound.remove(&t) {
            if let Some(s) = self.sessions.get_mut(&box_id) {
                s.handle_tunnel_lost(t, now);
            }
            self.after_session_call(&box_id);
        }
    }

    /// Timers: call when [`Self::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<TunnelId> = self
            .unbound
            .iter()
            .filter(|(_, u)| now >= u.deadline)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            self.unbound.remove(&t);
            self.events.push_back(ServerEvent {
                box_id: None,
                event: Event::CloseTunnel {
                    tunnel: t,
                    reason: CloseReason::Inactive,
                },
            });
        }
        let due: Vec<BoxId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.poll_timeout().is_some_and(|(d, _)| now >= d))
            .map(|(b, _)| b.clone())
            .collect();
        for box_id in due {
            if let Some(s) = self.sessions.get_mut(&box_id) {
                s.handle_timeout(now);
            }
            self.after_session_call(&box_id);
        }
    }

    /// Ends a box's session (operator "kick"): DISCONNECT, streams reset.
    pub fn disconnect(&mut self, box_id: &BoxId, code: DisconnectCode, reason: &str) -> bool {
        let Some(s) = self.sessions.get_mut(box_id) else {
            return false;
        };
        s.disconnect(code, reason);
        self.after_session_call(box_id);
        true
    }

    /// A box's session, for its streams and status. Marks it for output.
    pub fn session_mut(&mut self, box_id: &BoxId) -> Option<&mut ServerSession> {
        let s = self.sessions.get_mut(box_id)?;
        self.dirty.insert(box_id.clone());
        Some(s)
    }

    /// Every live session.
    pub fn sessions(&self) -> impl Iterator<Item = &ServerSession> {
        self.sessions.values()
    }

    /// Every live session written down for a relay upgrade.
    pub fn images(&self) -> Vec<crate::image::SessionImage> {
        self.sessions
            .values()
            .filter(|s| !s.is_released())
            .map(ServerSession::image)
            .collect()
    }

    /// Takes over a session another process wrote down: it waits, without
    /// a tunnel, for its box to resume it (SWITCH_UNEXPECTED).
    pub fn import(
        &mut self,
        img: crate::image::SessionImage,
        now: Instant,
    ) -> Result<(), crate::image::ImageError> {
        let owner = img.owner.clone();
        if self.sessions.contains_key(&owner) || self.by_id.contains_key(&img.session_id) {
            return Err(crate::image::ImageError::Duplicate(owner));
        }
        let id = img.session_id;
        let s = ServerSession::restore(self.cfg.session.clone(), img, now)?;
        self.by_id.insert(id, owner.clone());
        self.sessions.insert(owner, s);
        Ok(())
    }

    /// Bytes to write to a tunnel.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(tx) = self.out.pop_front() {
            return Some(tx);
        }
        while let Some(box_id) = self.dirty.pop_first() {
            let Some(s) = self.sessions.get_mut(&box_id) else {
                continue;
            };
            if let Some(tx) = s.poll_transmit() {
                self.dirty.insert(box_id);
                return Some(tx);
            }
            // Streams that completed while their frames were written
            // (StreamClosed): the driver hears of them now, not at the
            // session's next input.
            while let Some(event) = s.poll_event() {
                self.events.push_back(ServerEvent {
                    box_id: Some(box_id.clone()),
                    event,
                });
            }
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next deadline and why.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let unbound = self
            .unbound
            .values()
            .map(|u| (u.deadline, Timer::Inactivity));
        self.sessions
            .values()
            .filter_map(ServerSession::poll_timeout)
            .chain(unbound)
            .min_by_key(|(d, _)| *d)
    }

    fn handle_first_frame(
        &mut self,
        t: TunnelId,
        identity: BoxId,
        frame: Frame,
        rest: &[u8],
        now: Instant,
    ) {
        let (version, claimed) = match &frame {
            Frame::Connect {
                version, box_id, ..
            }
            | Frame::SwitchStep2 {
                version, box_id, ..
            }
            | Frame::SwitchUnexpected {
                version, box_id, ..
            }
            | Frame::Standby {
                version, box_id, ..
            } => (*version, box_id.clone()),
            other => {
                let reason = format!("{} cannot open a tunnel", other.frame_type().name());
                return self.refuse(t, RefuseCode::UnexpectedFrame, reason);
            }
        };
        if version != VERSION {
            return self.refuse(
                t,
                RefuseCode::UnsupportedVersion,
                format!("this server speaks version {VERSION}"),
            );
        }
        if claimed != identity {
            let reason = format!("frame names box {claimed} but the certificate is {identity}");
            return self.refuse(t, RefuseCode::WrongIdentity, reason);
        }
        match frame {
            Frame::Connect {
                window,
                incarnation,
                ..
            } => self.connect(t, identity, window, incarnation, rest, now),
            Frame::SwitchStep2 { session_id, .. }
            | Frame::SwitchUnexpected { session_id, .. }
            | Frame::Standby { session_id, .. } => {
                let Some(owner) = self.by_id.get(&session_id).cloned() else {
                    return self.refuse(
                        t,
                        RefuseCode::UnknownSession,
                        "no such session (expired?)".into(),
                    );
                };
                if owner != identity {
                    return self.refuse(
                        t,
                        RefuseCode::NotOwner,
                        "the session belongs to another box".into(),
                    );
                }
                let Some(s) = self.sessions.get_mut(&owner) else {
                    return;
                };
                match s.bind(t, frame, rest, now) {
                    Ok(()) => {
                        self.bound.insert(t, owner.clone());
                        self.after_session_call(&owner);
                    }
                    Err((code, reason)) => self.refuse(t, code, reason),
                }
            }
            _ => {}
        }
    }

    fn connect(
        &mut self,
        t: TunnelId,
        identity: BoxId,
        window: u32,
        incarnation: u64,
        rest: &[u8],
        now: Instant,
    ) {
        if self.draining {
            let reason = "relay draining for maintenance: no new sessions here".to_owned();
            return self.refuse_for(t, RefuseCode::Draining, reason, DRAINING_WAIT);
        }
        if let Some(live) = self.sessions.get(&identity)
            && incarnation <= live.incarnation()
        {
            let reason = format!(
                "connection attempt {incarnation} is not newer than the live session's {}",
                live.incarnation()
            );
            return self.refuse(t, RefuseCode::Stale, reason);
        }
        if self.sessions.contains_key(&identity) {
            // The box restarted: its old session cannot be resumed any more.
            if let Some(old) = self.sessions.get_mut(&identity) {
                old.disconnect(
                    DisconnectCode::Replaced,
                    "a new session of this box replaced it",
                );
            }
            self.after_session_call(&identity);
        }
        if self.sessions.len() >= self.cfg.max_sessions {
            let reason = format!("server is at its limit of {} boxes", self.cfg.max_sessions);
            return self.refuse_for(t, RefuseCode::OverCapacity, reason, OVER_CAPACITY_WAIT);
        }
        if let Err(wait) = self.new_sessions.take(now) {
            let reason = format!(
                "relay busy (new_sessions_per_s = {}); retry in {} ms",
                self.cfg.new_sessions_per_s,
                wait.as_millis()
            );
            return self.refuse_for(t, RefuseCode::Busy, reason, wait);
        }
        let mut session_id = self.rng.next_u64();
        while session_id == 0 || self.by_id.contains_key(&session_id) {
            session_id = self.rng.next_u64();
        }
        let mut s = ServerSession::new(
            self.cfg.session.clone(),
            identity.clone(),
            session_id,
            incarnation,
            window,
            t,
            now,
        );
        s.handle_input(t, rest, now);
        self.sessions.insert(identity.clone(), s);
        self.by_id.insert(session_id, identity.clone());
        self.bound.insert(t, identity.clone());
        self.after_session_call(&identity);
    }

    /// Drained for maintenance: new sessions (CONNECT) are refused
    /// `Draining`; the sessions there are keep running and resuming.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Whether new sessions are refused for maintenance.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// CONNECTs refused `Busy` so far (the new-session rate).
    pub fn refused_busy(&self) -> u64 {
        self.new_sessions.refused()
    }

    fn refuse(&mut self, t: TunnelId, code: RefuseCode, reason: String) {
        self.refuse_for(t, code, reason, std::time::Duration::ZERO);
    }

    /// REFUSED asking the box to wait `wait` before its next attempt.
    fn refuse_for(
        &mut self,
        t: TunnelId,
        code: RefuseCode,
        reason: String,
        wait: std::time::Duration,
    ) {
        let retry_after_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let mut bytes = Vec::new();
        wire::encode(
            &Frame::Refused {
                code,
                reason,
                retry_after_ms,
            },
            &mut bytes,
        );
        self.out.push_back(Transmit { tunnel: t, bytes });
        let event = Event::CloseTunnel {
            tunnel: t,
            reason: CloseReason::Refused(code),
        };
        self.events.push_back(ServerEvent {
            box_id: None,
            event,
        });
    }

    /// Moves a session's events out, schedules its output, forgets it once
    /// released.
    fn after_session_call(&mut self, box_id: &BoxId) {
        let Some(s) = self.sessions.get_mut(box_id) else {
            return;
        };
        while let Some(event) = s.poll_event() {
            self.events.push_back(ServerEvent {
                box_id: Some(box_id.clone()),
                event,
            });
        }
        // Output first: a released session may still have DISCONNECT queued.
        while let Some(tx) = if s.is_released() {
            s.poll_transmit()
        } else {
            None
        } {
            self.out.push_back(tx);
        }
        if s.is_released() {
            let id = s.session_id();
            self.sessions.remove(box_id);
            self.by_id.remove(&id);
            self.bound.retain(|_, b| b != box_id);
            self.dirty.remove(box_id);
        } else {
            self.dirty.insert(box_id.clone());
        }
    }
}

mod rate;

#[cfg(test)]
mod tests;
