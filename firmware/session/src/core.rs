//! The part of a session both roles share: the stream table, credit and
//! replay, frame scheduling onto the data tunnel, keepalive, and the offset
//! resynchronisation used after a sudden switch.
//!
//! The role-specific handover phases (box: `box_session`, server:
//! `server_session`) decide *which* tunnel carries data and when; this module
//! does the rest.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use wire::{Frame, FrameType, ResetCode, Role, ServiceName, StreamId, StreamKind};

use crate::config::SessionConfig;
use crate::event::{CloseReason, Event, Timer, TunnelId};
use crate::keepalive::{Keepalive, PathStats};
use crate::liveness::{Inputs, Liveness, TransportSample, Verdict};
use crate::reader::FrameReader;
use crate::stream::{Stream, StreamViolation};

/// The most datagram payload queued for the tunnel (besides the count,
/// `max_queued_datagrams`): 256 full-size datagrams would be 16 MiB.
pub const MAX_QUEUED_DATAGRAM_BYTES: usize = 256 * 1024;
use crate::violation::Violation;

/// Why an application-side stream operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// No such stream (never opened, or already closed or reset).
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The session already has `max_streams` streams.
    #[error("too many streams (limit {0})")]
    TooManyStreams(u32),
    /// The stream's direction was already finished.
    #[error("stream {0} is already finished")]
    AlreadyFinished(StreamId),
    /// A byte-stream operation on a datagram flow or the reverse.
    #[error("stream {0} is of the wrong kind for this operation")]
    WrongKind(StreamId),
    /// The session is closed.
    #[error("the session is closed")]
    SessionClosed,
    /// Stream ids are exhausted (2^31 streams opened in one session).
    #[error("stream ids exhausted")]
    IdsExhausted,
    /// The phone already holds its share of the box's stream table (the
    /// box's driver refuses before the session is asked).
    #[error("this phone already holds {share} streams, its share of the box's table")]
    PhoneShare {
        /// Streams one phone may hold.
        share: usize,
    },
}

/// Counters of one session, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Stream payload bytes transmitted, replays included.
    pub bytes_sent: u64,
    /// Stream payload bytes delivered to the driver (new bytes only).
    pub bytes_received: u64,
    /// Payload bytes transmitted again after a resynchronisation.
    pub bytes_replayed: u64,
    /// Bytes currently held in replay buffers.
    pub bytes_buffered: u64,
    /// Streams and flows open now.
    pub streams_open: u64,
    /// Datagrams dropped because the transition queue was full.
    pub datagrams_dropped: u64,
    /// Handovers completed.
    pub switches: u64,
}

#[derive(Debug)]
struct TunnelIn {
    reader: FrameReader,
    last_heard: Instant,
    /// Traffic is expected: silence past the inactivity timeout kills it.
    /// Silence beyond this kills the tunnel. A make-before-break tunnel
    /// waits unwatched until it is used; a standby has a longer limit.
    silence_limit: Option<std::time::Duration>,
    /// SYNC_PART entries received, for the SWITCH_UNEXPECTED or
    /// ALL_REDIRECTED that follows on this tunnel.
    sync_parts: Vec<wire::StreamSync>,
}

/// Most stream entries SYNC_PART frames of one tunnel may bring.
pub(crate) const MAX_SYNC_ENTRIES: usize = 65_535;

/// Shared engine of both roles.
#[derive(Debug)]
pub(crate) struct Core {
    pub role: Role,
    pub cfg: SessionConfig,
    pub peer_window: u64,
    streams: BTreeMap<StreamId, Stream>,
    next_index: u32,
    peer_opened_seen: u32,
    /// Where stream frames go; `None` pauses them (they stay buffered).
    pub data_tunnel: Option<TunnelId>,
    /// The tunnel probed by keepalives and watched for inactivity.
    pub primary: Option<TunnelId>,
    control: VecDeque<(TunnelId, Frame)>,
    resets: VecDeque<(StreamId, ResetCode, String)>,
    datagrams: datagrams::DatagramQueue,
    blocked: BTreeSet<StreamId>,
    tunnels: BTreeMap<TunnelId, TunnelIn>,
    pub events: VecDeque<Event>,
    pub keepalive: Keepalive,
    /// Dead-path detection on the primary tunnel (box only).
    liveness: Liveness,
    /// When the peer's stream data last arrived.
    last_data_in: Option<Instant>,
    pub stats: SessionStats,
    /// Streams whose output may have changed since the last poll.
    touched: BTreeSet<StreamId>,
    /// Data scheduler: streams that just got data to send, served first …
    fresh: VecDeque<StreamId>,
    /// … then those that have been sending, round robin.
    busy: VecDeque<StreamId>,
    /// Bytes each tunnel's writer may still take (its budget less what it
    /// holds); a tunnel not listed takes any amount. Stream frames never
    /// go beyond it (by more than one small frame).
    room: BTreeMap<TunnelId, usize>,
    /// The session ended: no new streams.
    pub closed: bool,
}

impl Core {
    pub fn new(role: Role, cfg: SessionConfig) -> Self {
        Self {
            role,
            peer_window: u64::from(cfg.window),
            keepalive: Keepalive::new(cfg.keepalive),
            liveness: Liveness::default(),
            last_data_in: None,
            cfg,
            streams: BTreeMap::new(),
            next_index: 0,
            peer_opened_seen: 0,
            data_tunnel: None,
            primary: None,
            control: VecDeque::new(),
            resets: VecDeque::new(),
            datagrams: datagrams::DatagramQueue::default(),
            blocked: BTreeSet::new(),
            tunnels: BTreeMap::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
            touched: BTreeSet::new(),
            fresh: VecDeque::new(),
            busy: VecDeque::new(),
            room: BTreeMap::new(),
            closed: false,
        }
    }

    // ---- tunnels -------------------------------------------------------

    /// Starts accepting input from `t`.
    pub fn attach(&mut self, t: TunnelId, now: Instant) {
        self.tunnels.entry(t).or_insert(TunnelIn {
            reader: FrameReader::default(),
            last_heard: now,
            silence_limit: None,
            sync_parts: Vec::new(),
        });
    }

    /// From now on `t` must not stay silent for the inactivity timeout.
    pub fn watch(&mut self, t: TunnelId, now: Instant) {
        self.watch_with(t, self.cfg.inactivity_timeout, now);
    }

    /// From now on `t` must not stay silent for `limit`.
    pub fn watch_with(&mut self, t: TunnelId, limit: std::time::Duration, now: Instant) {
        if let Some(tin) = self.tunnels.get_mut(&t)
            && tin.silence_limit != Some(limit)
        {
            tin.silence_limit = Some(limit);
            tin.last_heard = now;
        }
    }

    /// Stops accepting input from `t`. Frames already queued for it stay
    /// queued: the driver flushes them before acting on `CloseTunnel` (a
    /// REFUSED or DISCONNECT must reach the peer), and drops them if the
    /// tunnel is already gone.
    pub fn detach(&mut self, t: TunnelId) {
        self.tunnels.remove(&t);
        self.room.remove(&t);
        if self.data_tunnel == Some(t) {
            self.data_tunnel = None;
        }
        if self.primary == Some(t) {
            self.primary = None;
            self.keepalive.stop();
            self.liveness.reset();
        }
    }

    /// Detaches `t` and asks the driver to close it.
    pub fn close_tunnel(&mut self, t: TunnelId, reason: CloseReason) {
        if self.tunnels.contains_key(&t) {
            self.detach(t);
            self.events
                .push_back(Event::CloseTunnel { tunnel: t, reason });
        }
    }

    /// How many bytes `t`'s writer may still take: stream frames beyond it
    /// wait in the streams' buffers, where the scheduler can still put a
    /// fresh stream first; at 0 only control frames go.
    pub fn set_tunnel_room(&mut self, t: TunnelId, room: usize) {
        self.room.insert(t, room);
    }

    /// When bytes last arrived on `t`.
    pub fn last_heard(&self, t: TunnelId) -> Option<Instant> {
        self.tunnels.get(&t).map(|tin| tin.last_heard)
    }

    pub fn is_attached(&self, t: TunnelId) -> bool {
        self.tunnels.contains_key(&t)
    }

    pub fn attached(&self) -> impl Iterator<Item = TunnelId> + '_ {
        self.tunnels.keys().copied()
    }

    pub fn feed(&mut self, t: TunnelId, bytes: &[u8], now: Instant) {
        if let Some(tin) = self.tunnels.get_mut(&t) {
            tin.reader.push(bytes);
            if !bytes.is_empty() {
                tin.last_heard = now;
                if self.primary == Some(t) {
                    self.liveness.heard();
                }
            }
        }
    }

    /// The next frame received on `t`; a malformed one is returned as a
    /// protocol violation (the caller closes the tunnel).
    pub fn next_frame(&mut self, t: TunnelId) -> Result<Option<Frame>, CloseReason> {
        let max = self.cfg.max_frame_len;
        match self.tunnels.get_mut(&t) {
            None => Ok(None),
            Some(tin) => tin
                .reader
                .next_frame(max)
                .map_err(|e| CloseReason::ProtocolViolation(e.into())),
        }
    }

    /// The earliest of the role's phase deadline, the next PING and the
    /// inactivity deadline, with the reason.
    pub fn poll_timeout(&self, phase: Option<(Instant, Timer)>) -> Option<(Instant, Timer)> {
        [
            phase,
            self.keepalive.deadline().map(|d| (d, Timer::Keepalive)),
            self.inactivity_deadline().map(|d| (d, Timer::Inactivity)),
            self.liveness_deadline().map(|d| (d, Timer::PathProbe)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(d, _)| *d)
    }

    /// Earliest moment an attached tunnel reaches the inactivity timeout.
    pub fn inactivity_deadline(&self) -> Option<Instant> {
        self.tunnels
            .values()
            .filter_map(|t| t.silence_limit.map(|l| t.last_heard + l))
            .min()
    }

    /// Tunnels silent for the inactivity timeout at `now`.
    pub fn silent_tunnels(&self, now: Instant) -> Vec<TunnelId> {
        self.tunnels
            .iter()
            .filter(|(_, tin)| tin.silence_limit.is_some_and(|l| now >= tin.last_heard + l))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn queue(&mut self, t: TunnelId, frame: Frame) {
        self.control.push_back((t, frame));
    }

    /// Queues the frame `build` makes of this side's [`wire::SyncState`]
    /// (SWITCH_UNEXPECTED, ALL_REDIRECTED); a list longer than one frame
    /// carries goes first as SYNC_PART frames.
    pub fn queue_with_sync(&mut self, t: TunnelId, build: impl FnOnce(wire::SyncState) -> Frame) {
        let mut sync = self.sync_state();
        while sync.streams.len() > wire::SYNC_ENTRIES_PER_FRAME {
            let rest = sync.streams.split_off(wire::SYNC_ENTRIES_PER_FRAME);
            let part = std::mem::replace(&mut sync.streams, rest);
            self.queue(t, Frame::SyncPart { streams: part });
        }
        self.queue(t, build(sync));
    }

    /// Takes a SYNC_PART received on `t`.
    pub fn add_sync_part(
        &mut self,
        t: TunnelId,
        streams: Vec<wire::StreamSync>,
    ) -> Result<(), Violation> {
        if let Some(tin) = self.tunnels.get_mut(&t) {
            if tin.sync_parts.len() + streams.len() > MAX_SYNC_ENTRIES {
                return Err(Violation::TooManySyncEntries(MAX_SYNC_ENTRIES));
            }
            tin.sync_parts.extend(streams);
        }
        Ok(())
    }

    /// Whether SYNC_PART entries wait on `t` (only SWITCH_UNEXPECTED or
    /// ALL_REDIRECTED may follow them).
    pub fn sync_parts_pending(&self, t: TunnelId) -> bool {
        self.tunnels
            .get(&t)
            .is_some_and(|tin| !tin.sync_parts.is_empty())
    }

    /// `sync` with the SYNC_PART entries received on `t` in front.
    pub fn with_sync_parts(&mut self, t: TunnelId, mut sync: wire::SyncState) -> wire::SyncState {
        if let Some(tin) = self.tunnels.get_mut(&t)
            && !tin.sync_parts.is_empty()
        {
            let mut all = std::mem::take(&mut tin.sync_parts);
            all.append(&mut sync.streams);
            sync.streams = all;
        }
        sync
    }

    /// Makes `t` the probed tunnel of a new path.
    pub fn set_primary(&mut self, t: TunnelId, now: Instant) {
        self.watch(t, now);
        self.primary = Some(t);
        self.keepalive.start_path(now);
        self.liveness.reset();
    }

    /// The kernel's view of tunnel `t` (only the primary's counts).
    pub fn handle_transport(&mut self, t: TunnelId, sample: TransportSample, now: Instant) {
        if self.primary == Some(t) {
            self.liveness.transport(sample, now);
        }
    }

    /// The dead-path rule's figures for the primary tunnel (box only).
    /// Busy: our data waits for its acknowledgement, or the peer was
    /// sending data when the tunnel fell quiet.
    fn liveness_inputs(&self) -> Option<Inputs> {
        if self.role != Role::Box {
            return None;
        }
        let t = self.primary?;
        let tin = self.tunnels.get(&t)?;
        Some(Inputs {
            last_heard: tin.last_heard,
            busy: self.busy(),
            srtt: self.keepalive.stats.srtt,
            floor: self.cfg.dead_path_floor,
        })
    }

    /// Data is moving on the primary path: ours waits for its
    /// acknowledgement, or the peer's was arriving when the tunnel was
    /// last heard.
    pub fn busy(&self) -> bool {
        let sending = self
            .primary
            .and_then(|t| self.tunnels.get(&t))
            .is_some_and(|tin| {
                self.last_data_in
                    .is_some_and(|d| d + self.cfg.keepalive >= tin.last_heard)
            });
        self.stats.bytes_buffered > 0 || sending
    }

    /// Runs the dead-path rule at `now`: sends a fast probe if one is due;
    /// returns the primary tunnel if it is dead.
    pub fn poll_liveness(&mut self, now: Instant) -> Option<TunnelId> {
        let i = self.liveness_inputs()?;
        let t = self.primary?;
        // A verdict may ask for a probe and, right after, for nothing more.
        for _ in 0..2 {
            match self.liveness.poll(&i, now) {
                Verdict::Wait(_) => return None,
                Verdict::Dead => return Some(t),
                Verdict::Probe => {
                    let nonce = self.keepalive.probe_now(now);
                    self.queue(t, Frame::Ping { nonce });
                    self.liveness.probed(now);
                }
            }
        }
        None
    }

    /// When the dead-path rule next wants something.
    fn liveness_deadline(&self) -> Option<Instant> {
        self.liveness.deadline(&self.liveness_inputs()?)
    }

    pub fn path_stats(&self) -> PathStats {
        self.keepalive.stats
    }

    /// Queues a PING on the primary tunnel if one is due.
    pub fn poll_keepalive(&mut self, now: Instant) {
        if let Some(t) = self.primary
            && let Some(nonce) = self.keepalive.poll_ping(now)
        {
            self.queue(t, Frame::Ping { nonce });
        }
    }

    // ---- application side --------------------------------------------

    pub fn open_stream(
        &mut self,
        kind: StreamKind,
        service: ServiceName,
        dest: Option<SocketAddr>,
        codec: wire::Codec,
    ) -> Result<StreamId, StreamError> {
        if self.closed {
            return Err(StreamError::SessionClosed);
        }
        if self.streams.len() >= self.cfg.max_streams as usize {
            return Err(StreamError::TooManyStreams(self.cfg.max_streams));
        }
        let id = StreamId::new(self.role, self.next_index).ok_or(StreamError::IdsExhausted)?;
        self.next_index += 1;
        let mut s = Stream::new(
            kind,
            service,
            dest,
            true,
            u64::from(self.cfg.window),
            self.peer_window,
        );
        s.codec = codec;
        self.streams.insert(id, s);
        self.stats.streams_open = self.streams.len() as u64;
        self.touch(id);
        Ok(id)
    }

    /// Bytes `send` would accept on `id` now.
    pub fn send_capacity(&self, id: StreamId) -> usize {
        match self.streams.get(&id) {
            Some(s) if s.send.fin.is_none() => {
                let per_stream = (self.peer_window as usize).saturating_sub(s.send.buffered());
                let session = self
                    .cfg
                    .max_buffered_bytes
                    .saturating_sub(self.stats.bytes_buffered as usize);
                per_stream.min(session)
            }
            _ => 0,
        }
    }

    /// A byte stream whose sending direction is still open.
    fn writable_stream(&mut self, id: StreamId) -> Result<&mut Stream, StreamError> {
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream(id))?;
        if s.kind != StreamKind::Stream {
            return Err(StreamError::WrongKind(id));
        }
        if s.send.fin.is_some() {
            return Err(StreamError::AlreadyFinished(id));
        }
        Ok(s)
    }

    pub fn send(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let room = self.send_capacity(id);
        let s = self.writable_stream(id)?;
        let n = s.send.write(data, room);
        if s.send.blocked {
            self.blocked.insert(id);
        }
        self.stats.bytes_buffered += n as u64;
        if n > 0 {
            self.touch(id);
        }
        Ok(n)
    }

    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let s = self.writable_stream(id)?;
        s.send.fin = Some(s.send.written());
        self.touch(id);
        Ok(())
    }

    pub fn reset(
        &mut self,
        id: StreamId,
        code: ResetCode,
        reason: &str,
    ) -> Result<(), StreamError> {
        let s = self
            .remove_stream(id)
            .ok_or(StreamError::UnknownStream(id))?;
        // A stream whose OPEN never left needs no RESET either.
        if !s.open_pending {
            self.resets.push_back((id, code, reason.to_owned()));
        }
        Ok(())
    }

    pub fn handle_delivered(&mut self, id: StreamId, n: usize) -> Result<(), StreamError> {
        let window = u64::from(self.cfg.window);
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::UnknownStream(id))?;
        s.recv.handle_delivered(n as u64, window);
        self.touch(id);
        Ok(())
    }

    pub fn send_datagram(&mut self, flow: StreamId, bytes: Vec<u8>) -> Result<(), StreamError> {
        match self.streams.get(&flow) {
            None => return Err(StreamError::UnknownStream(flow)),
            Some(s) if s.kind != StreamKind::Datagram => return Err(StreamError::WrongKind(flow)),
            Some(_) => {}
        }
        // Bounded in count and in bytes, whatever the tunnel's state: a
        // flow sending faster than the uplink loses its own oldest
        // datagrams (counted), the others keep theirs, nothing else waits.
        self.stats.datagrams_dropped += self.datagrams.push(
            flow,
            bytes,
            self.cfg.max_queued_datagrams,
            MAX_QUEUED_DATAGRAM_BYTES,
        );
        Ok(())
    }

    /// Whether `id` is in the stream table.
    pub fn has_stream(&self, id: StreamId) -> bool {
        self.streams.contains_key(&id)
    }

    /// Resets every stream (the session ended), telling the driver.
    pub fn fail_all_streams(&mut self, code: ResetCode, reason: &str) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.remove_stream(id);
            self.events.push_back(Event::StreamReset {
                stream: id,
                code,
                reason: reason.to_owned(),
            });
        }
        self.resets.clear();
        self.datagrams.clear();
        self.touched.clear();
        self.fresh.clear();
        self.busy.clear();
    }

    fn remove_stream(&mut self, id: StreamId) -> Option<Stream> {
        let s = self.streams.remove(&id)?;
        self.stats.bytes_buffered -= s.send.buffered() as u64;
        self.stats.streams_open = self.streams.len() as u64;
        self.blocked.remove(&id);
        Some(s)
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    // ---- frames from the peer -----------------------------------------

    /// Is `id` a stream this side knew and has since forgotten (closed or
    /// reset)? `Err` if it cannot have existed yet.
    fn forgotten(&self, id: StreamId, frame: FrameType) -> Result<bool, Violation> {
        if self.streams.contains_key(&id) {
            return Ok(false);
        }
        let seen = if id.opener() == self.role {
            self.next_index
        } else {
            self.peer_opened_seen
        };
        if id.index() < seen {
            Ok(true)
        } else {
            Err(Violation::NeverOpened { frame, stream: id })
        }
    }

    /// Handles a stream-level frame (OPEN … DATAGRAM, PING, PONG). Returns
    /// `Err` with a reason when the peer broke the protocol.
    pub fn handle_stream_frame(
        &mut self,
        t: TunnelId,
        frame: Frame,
        now: Instant,
    ) -> Result<(), Violation> {
        let kind = frame.frame_type();
        match frame {
            Frame::Ping { nonce } => self.queue(t, Frame::Pong { nonce }),
            Frame::Pong { nonce } => self.keepalive.handle_pong(nonce, now),
            Frame::Open {
                stream,
                kind,
                service,
                dest,
                codec,
            } => self.handle_open(stream, kind, service, dest, codec)?,
            Frame::Data {
                stream,
                offset,
                payload,
            } => {
                if self.forgotten(stream, kind)? {
                    return Ok(());
                }
                let Some(s) = self.streams.get_mut(&stream) else {
                    return Ok(());
                };
                if s.kind != StreamKind::Stream {
                    return Err(Violation::WrongKind {
                        frame: kind,
                        stream,
                    });
                }
                let bytes = s
                    .recv
                    .handle_data(offset, payload)
                    .map_err(|e| violation(stream, e))?;
                self.last_data_in = Some(now);
                if !bytes.is_empty() {
                    self.stats.bytes_received += bytes.len() as u64;
                    self.events.push_back(Event::Data { stream, bytes });
                }
                self.maybe_finished(stream);
            }
            Frame::Fin { stream, offset } => {
                if self.forgotten(stream, kind)? {
                    return Ok(());
                }
                let Some(s) = self.streams.get_mut(&stream) else {
                    return Ok(());
                };
                s.recv
                    .handle_fin(offset)
                    .map_err(|e| violation(stream, e))?;
                self.maybe_finished(stream);
            }
            Frame::Ack {
                stream,
                offset,
                fin,
            } => {
                if self.forgotten(stream, kind)? {
                    return Ok(());
                }
                let Some(s) = self.streams.get_mut(&stream) else {
                    return Ok(());
                };
                let before = s.send.buffered();
                let writable = s
                    .send
                    .handle_ack(offset, fin)
                    .map_err(|e| violation(stream, e))?;
                let freed = before - s.send.buffered();
                self.stats.bytes_buffered -= freed as u64;
                if writable {
                    self.blocked.remove(&stream);
                    self.events.push_back(Event::Writable { stream });
                }
                if freed > 0 {
                    // Session-wide room freed: streams blocked on it may retry.
                    for id in std::mem::take(&mut self.blocked) {
                        if let Some(s) = self.streams.get_mut(&id) {
                            s.send.blocked = false;
                        }
                        self.events.push_back(Event::Writable { stream: id });
                    }
                }
                self.reap(stream);
            }
            Frame::Window { stream, limit } => {
                if self.forgotten(stream, kind)? {
                    return Ok(());
                }
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.send.peer_limit = s.send.peer_limit.max(limit);
                    self.touch(stream);
                }
            }
            Frame::Reset {
                stream,
                code,
                reason,
            } => {
                if self.forgotten(stream, kind)? {
                    return Ok(());
                }
                let Some(s) = self.remove_stream(stream) else {
                    return Ok(());
                };
                let graceful = code == ResetCode::Gone
                    && s.send.fin.is_some()
                    && s.recv.fin == Some(s.recv.received);
                if graceful {
                    self.events.push_back(Event::StreamClosed { stream });
                } else {
                    self.events.push_back(Event::StreamReset {
                        stream,
                        code,
                        reason,
                    });
                }
            }
            Frame::Datagram { flow, payload } => {
                if self.forgotten(flow, kind)? {
                    return Ok(());
                }
                match self.streams.get(&flow) {
                    Some(s) if s.kind == StreamKind::Datagram => {
                        self.events.push_back(Event::Datagram {
                            flow,
                            bytes: payload,
                        });
                    }
                    Some(_) => {
                        return Err(Violation::WrongKind {
                            frame: kind,
                            stream: flow,
                        });
                    }
                    None => {}
                }
            }
            Frame::PathReport(r) => self.events.push_back(Event::PathReport(r)),
            other => return Err(Violation::out_of_state(&other, "as a stream frame")),
        }
        Ok(())
    }

    fn handle_open(
        &mut self,
        stream: StreamId,
        kind: StreamKind,
        service: ServiceName,
        dest: Option<SocketAddr>,
        codec: wire::Codec,
    ) -> Result<(), Violation> {
        if stream.opener() != self.role.peer() {
            return Err(Violation::OpenOfOwnId(stream));
        }
        if self.streams.contains_key(&stream) {
            return Err(Violation::SecondOpen(stream));
        }
        if stream.index() < self.peer_opened_seen {
            // Opened, then forgotten here: the peer missed our RESET.
            self.resets
                .push_back((stream, ResetCode::Gone, "stream already ended".into()));
            return Ok(());
        }
        self.peer_opened_seen = stream.index() + 1;
        if self.streams.len() >= self.cfg.max_streams as usize {
            let reason = format!("session limit of {} streams reached", self.cfg.max_streams);
            self.resets
                .push_back((stream, ResetCode::TooManyStreams, reason));
            return Ok(());
        }
        let mut s = Stream::new(
            kind,
            service.clone(),
            dest,
            false,
            u64::from(self.cfg.window),
            self.peer_window,
        );
        s.codec = codec;
        self.streams.insert(stream, s);
        self.stats.streams_open = self.streams.len() as u64;
        self.events.push_back(Event::StreamOpened {
            stream,
            kind,
            service,
            dest,
            codec,
        });
        Ok(())
    }

    fn maybe_finished(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id)
            && s.recv.finish_due()
        {
            s.recv.fin_emitted = true;
            // An empty final delivery still needs its FIN acknowledged.
            if s.recv.delivered == s.recv.received {
                s.recv.ack_pending = true;
                self.touched.insert(id);
            }
            self.events.push_back(Event::Finished { stream: id });
        }
    }

    fn reap(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(Stream::done) {
            self.remove_stream(id);
            self.events.push_back(Event::StreamClosed { stream: id });
        }
    }
}

fn violation(stream: StreamId, v: StreamViolation) -> Violation {
    Violation::Stream {
        stream,
        violation: v,
    }
}

mod datagrams;
mod image;
mod output;
mod resync;
#[cfg(test)]
mod sched_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
