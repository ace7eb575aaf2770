//! A deterministic in-memory world for the session core: one box (one session
//! per site) and one server per site, joined by simulated tunnels with
//! latency that can be cut mid-frame, blackholed, or made unavailable, under
//! a virtual clock. Applications on both sides write pattern bytes whose
//! value depends on (stream, direction, offset), so any loss, duplication,
//! reordering or corruption is detected at the byte where it happens.
#![allow(dead_code)]

mod apps;

use apps::check_bytes;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use session::{
    BoxSession, Coordinator, Event, Server, ServerConfig, SessionConfig, SiteEvent, TunnelId,
};
use wire::{BoxId, DisconnectCode, ResetCode, StreamId};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Byte `offset` of a direction of a stream.
pub fn pattern(stream: StreamId, up: bool, offset: u64) -> u8 {
    let x = (u64::from(stream.0) << 1 | u64::from(up)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ offset;
    let x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 56) as u8
}

/// A configuration with short timers so that virtual runs stay short.
pub fn test_config() -> SessionConfig {
    SessionConfig {
        window: 16 * 1024,
        max_streams: 64,
        max_buffered_bytes: 256 * 1024,
        max_data_payload: 4 * 1024,
        max_queued_datagrams: 16,
        keepalive: ms(100),
        inactivity_timeout: ms(450),
        switch_timeout: ms(3000),
        ..SessionConfig::default()
    }
}

/// One direction of a tunnel.
#[derive(Debug, Default)]
struct Pipe {
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    /// Time the last chunk will arrive (keeps delivery in order).
    tail: Option<Instant>,
    /// Sent bytes vanish (silent blackhole).
    blackhole: bool,
    /// The sender closed: the receiver learns it after the in-flight bytes
    /// (unless the pipe is a blackhole).
    closing: bool,
    notified: bool,
    /// Nothing is delivered before this (a stall: late, not lost).
    hold_until: Option<Instant>,
}

#[derive(Debug)]
struct Tunnel {
    site: usize,
    latency: Duration,
    /// Box → server, server → box.
    up: Pipe,
    down: Pipe,
    box_open: bool,
    server_open: bool,
}

/// Per-direction application record.
#[derive(Debug, Default, Clone)]
pub struct Direction {
    /// Total bytes the writer will write.
    pub total: u64,
    /// Bytes accepted by the session so far.
    pub written: u64,
    pub finished: bool,
    /// Bytes received in order with the right values.
    pub received: u64,
    /// Received but not yet "written to the local socket".
    pub undelivered: u64,
    pub fin_received: bool,
    pub corrupt_at: Option<u64>,
    /// Paced writer: `RECORD` bytes every `pace` from the stream's start.
    pub pace: Option<Duration>,
    pub start: Option<Instant>,
    pub measure_from: Option<Instant>,
    /// Largest delay from a record's write time to its complete arrival.
    pub max_record_delay: Duration,
    /// The bytes to write, when not [`pattern`] (e.g. a compressed stream).
    pub content: Option<std::sync::Arc<Vec<u8>>>,
}

impl Direction {
    /// Byte `offset` the writer writes and the reader must get.
    pub fn byte(&self, stream: StreamId, up: bool, offset: u64) -> u8 {
        match &self.content {
            Some(c) => c.get(offset as usize).copied().unwrap_or(0),
            None => pattern(stream, up, offset),
        }
    }
}

/// Size of a paced writer's record.
pub const RECORD: u64 = 100;

#[derive(Debug, Clone)]
pub struct AppStream {
    pub site: usize,
    pub opened_by_box: bool,
    pub start: Instant,
    /// Box → server.
    pub up: Direction,
    /// Server → box.
    pub down: Direction,
    pub reset: Vec<(bool, ResetCode, String)>,
    /// Arrival time and size of every `Data` event, box → server.
    pub up_arrivals: Vec<(Instant, usize)>,
    /// The same, server → box.
    pub down_arrivals: Vec<(Instant, usize)>,
    pub closed_box: bool,
    pub closed_server: bool,
    pub id: Option<StreamId>,
}

/// A planned stream, created by the script.
#[derive(Debug, Clone, Copy)]
pub struct StreamPlan {
    pub site: usize,
    pub opened_by_box: bool,
    pub up: u64,
    pub down: u64,
    pub start_ms: u64,
}

impl StreamPlan {
    /// A paced stream: `RECORD`-byte records every `pace_ms` in both directions.
    pub fn paced(site: usize, records: u64, pace_ms: u64) -> (Self, Duration) {
        let p = Self {
            site,
            opened_by_box: true,
            up: records * RECORD,
            down: records * RECORD,
            start_ms: 0,
        };
        (p, ms(pace_ms))
    }
}

pub enum BoxSide {
    One(BoxSession),
    Many(Coordinator),
}

pub struct World {
    pub base: Instant,
    pub now: Instant,
    pub cfg: SessionConfig,
    pub box_side: BoxSide,
    pub servers: Vec<Server>,
    tunnels: BTreeMap<TunnelId, Tunnel>,
    next_tunnel: u64,
    /// Latency of the next tunnels.
    pub latency: Duration,
    /// Tunnels cannot be brought up before this time (both uplinks down).
    pub outage_until: Instant,
    /// Periods without any uplink, overlapping outages merged.
    pub outage_spans: Vec<(Instant, Instant)>,
    /// Pending connection attempts (site, when).
    connects: Vec<(usize, Instant)>,
    /// A planned switch waiting for its new tunnels to connect.
    planned_at: Option<Instant>,
    pub streams: Vec<AppStream>,
    by_box: HashMap<(usize, StreamId), usize>,
    by_server: HashMap<(usize, StreamId), usize>,
    pub switches_completed: usize,
    pub all_switched: usize,
    pub sessions_closed: Vec<String>,
    /// Server sessions replaced by a new CONNECT of the box.
    pub replaced: usize,
    pub refused: Vec<String>,
    pub max_buffered_seen: u64,
    /// Bytes the consumer may deliver per stream per pump (slow sockets).
    pub consume_per_pump: u64,
    pub log: Vec<String>,
}

impl World {
    pub fn new(sites: usize, cfg: SessionConfig, latency: Duration) -> Self {
        let base = Instant::now();
        let box_id = BoxId::new("box-1").unwrap();
        let mk = || BoxSession::new(cfg.clone(), box_id.clone(), 1).unwrap();
        let box_side = if sites == 1 {
            BoxSide::One(mk())
        } else {
            BoxSide::Many(Coordinator::new((0..sites).map(|_| mk()).collect()))
        };
        let servers = (0..sites)
            .map(|i| {
                let sc = ServerConfig {
                    session: cfg.clone(),
                    max_sessions: 4,
                    ..ServerConfig::default()
                };
                Server::new(sc, 42 + i as u64).unwrap()
            })
            .collect();
        let mut w = Self {
            base,
            now: base,
            cfg,
            box_side,
            servers,
            tunnels: BTreeMap::new(),
            next_tunnel: 1,
            latency,
            outage_until: base,
            outage_spans: Vec::new(),
            connects: Vec::new(),
            planned_at: None,
            streams: Vec::new(),
            by_box: HashMap::new(),
            by_server: HashMap::new(),
            switches_completed: 0,
            all_switched: 0,
            sessions_closed: Vec::new(),
            replaced: 0,
            refused: Vec::new(),
            max_buffered_seen: 0,
            consume_per_pump: u64::MAX,
            log: Vec::new(),
        };
        for site in 0..sites {
            w.connects.push((site, base));
        }
        w
    }

    pub fn sites(&self) -> usize {
        self.servers.len()
    }

    /// A stream whose writers produce a record every `pace`.
    pub fn plan_paced_stream(&mut self, p: StreamPlan, pace: Duration) {
        self.plan_stream(p);
        if let Some(s) = self.streams.last_mut() {
            for d in [&mut s.up, &mut s.down] {
                d.pace = Some(pace);
                d.start = Some(s.start);
                // Records written while the first tunnel connects are late
                // for that reason only: measure from 0.5 s on.
                d.measure_from = Some(s.start + ms(500));
            }
        }
    }

    pub fn plan_stream(&mut self, p: StreamPlan) {
        let site = p.site % self.sites();
        let (up, down) = (
            Direction {
                total: p.up,
                ..Default::default()
            },
            Direction {
                total: p.down,
                ..Default::default()
            },
        );
        self.streams.push(AppStream {
            site,
            opened_by_box: p.opened_by_box,
            start: self.base + ms(p.start_ms),
            up,
            down,
            reset: Vec::new(),
            up_arrivals: Vec::new(),
            down_arrivals: Vec::new(),
            closed_box: false,
            closed_server: false,
            id: None,
        });
    }

    fn session(&mut self, site: usize) -> &mut BoxSession {
        match &mut self.box_side {
            BoxSide::One(s) => s,
            BoxSide::Many(c) => c.site(site).unwrap(),
        }
    }

    pub fn box_session(&mut self, site: usize) -> &mut BoxSession {
        self.session(site)
    }

    fn new_tunnel(&mut self, site: usize) -> TunnelId {
        let t = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        self.tunnels.insert(
            t,
            Tunnel {
                site,
                latency: self.latency,
                up: Pipe::default(),
                down: Pipe::default(),
                box_open: true,
                server_open: true,
            },
        );
        self.servers[site].handle_tunnel_up(t, BoxId::new("box-1").unwrap(), self.now);
        t
    }

    /// The tunnels currently open at the box, per site.
    pub fn live_tunnels(&self, site: usize) -> Vec<TunnelId> {
        self.tunnels
            .iter()
            .filter(|(_, t)| t.site == site && t.box_open)
            .map(|(id, _)| *id)
            .collect()
    }

    // ---- world actions ---------------------------------------------------

    /// Starts a planned switch: new tunnels connect (one connect time), then
    /// every site moves to them.
    pub fn planned_switch(&mut self) {
        if self.now >= self.outage_until {
            self.planned_at = Some(self.now + self.latency * 2);
        }
    }

    /// Abruptly cuts every open tunnel: in-flight bytes beyond `keep` (a
    /// fraction in 0..=1000) of each direction are lost, mid-frame; both ends
    /// learn of it (RST) after the kept bytes arrive, unless `silent`.
    pub fn cut(&mut self, keep_permille: u32, silent: bool) {
        for t in self.tunnels.values_mut() {
            for pipe in [&mut t.up, &mut t.down] {
                let total: usize = pipe.in_flight.iter().map(|(_, b)| b.len()).sum();
                let mut keep = total * keep_permille.min(1000) as usize / 1000;
                let mut kept = VecDeque::new();
                for (at, mut b) in pipe.in_flight.drain(..) {
                    if keep == 0 {
                        break;
                    }
                    b.truncate(keep);
                    keep -= b.len();
                    kept.push_back((at, b));
                }
                pipe.in_flight = kept;
                if silent {
                    pipe.blackhole = true;
                } else {
                    pipe.closing = true;
                }
            }
        }
        self.log.push(format!(
            "{:?} cut silent={silent} keep={keep_permille}",
            self.now - self.base
        ));
    }

    /// Every open tunnel stops delivering for `d`, then delivers everything
    /// late (nothing lost): like a radio fade under TCP retransmission.
    pub fn stall(&mut self, d: Duration) {
        let until = self.now + d;
        for t in self.tunnels.values_mut() {
            for pipe in [&mut t.up, &mut t.down] {
                pipe.hold_until = Some(until);
                for (at, _) in pipe.in_flight.iter_mut() {
                    *at = (*at).max(until);
                }
                pipe.tail = pipe.tail.map(|t| t.max(until));
            }
        }
        self.log
            .push(format!("{:?} stall {d:?}", self.now - self.base));
    }

    /// The relay process of `site` is replaced (a snaptd upgrade): the new
    /// one takes the sessions' images; whatever the old one received but had
    /// not delivered to its servers dies with it (the box sends it again);
    /// its tunnels close — the box learns it after the bytes already on
    /// their way to it, and nothing more reaches a server through them.
    pub fn relay_upgrade(&mut self, site: usize) {
        let sc = ServerConfig {
            session: self.cfg.clone(),
            max_sessions: 4,
            ..ServerConfig::default()
        };
        let mut fresh = Server::new(sc, 1000 + site as u64).unwrap();
        // The old process handles what its sessions said before it writes
        // them down (its driver drains them after every input).
        while self.drain_server(site) {}
        for img in self.servers[site].images() {
            // Through the encoding, as between the two processes.
            let bytes = session::image::encode(&[img]);
            for img in session::image::decode(&bytes).unwrap() {
                fresh.import(img, self.now).unwrap();
            }
        }
        self.servers[site] = fresh;
        for s in self.streams.iter_mut().filter(|s| s.site == site) {
            let d = &mut s.up;
            if d.undelivered > 0 {
                d.received -= d.undelivered;
                d.undelivered = 0;
                d.fin_received = false;
            }
        }
        for t in self.tunnels.values_mut().filter(|t| t.site == site) {
            t.server_open = false;
            t.up.in_flight.clear();
            t.up.blackhole = true;
            t.down.closing = true;
        }
        self.log
            .push(format!("{:?} relay {site} upgraded", self.now - self.base));
    }

    /// No uplink can carry a new tunnel for `d` (open tunnels are cut too).
    pub fn outage(&mut self, d: Duration) {
        let end = self.now + d;
        match self.outage_spans.last_mut() {
            Some((_, until)) if *until >= self.now => *until = (*until).max(end),
            _ => self.outage_spans.push((self.now, end)),
        }
        self.outage_until = self.outage_until.max(end);
        self.cut(0, false);
    }

    // ---- running -----------------------------------------------------------

    /// Runs the world until `until`.
    pub fn run_until(&mut self, until: Instant) {
        let mut guard = 0u32;
        loop {
            guard += 1;
            assert!(
                guard < 2_000_000,
                "world did not settle: {:?}",
                self.log.last()
            );
            self.drain_all();
            let next = self.next_wakeup();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    self.fire();
                }
                _ => {
                    self.now = self.now.max(until);
                    self.drain_all();
                    return;
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut c: Vec<Instant> = Vec::new();
        for t in self.tunnels.values() {
            for p in [&t.up, &t.down] {
                if let Some((at, _)) = p.in_flight.front() {
                    c.push(*at);
                } else if p.closing && !p.notified {
                    c.push(self.now);
                }
            }
        }
        match &self.box_side {
            BoxSide::One(s) => c.extend(s.poll_timeout().map(|(d, _)| d)),
            BoxSide::Many(m) => c.extend(m.poll_timeout().map(|(d, _)| d)),
        }
        for s in &self.servers {
            c.extend(s.poll_timeout().map(|(d, _)| d));
        }
        c.extend(
            self.connects
                .iter()
                .map(|(_, at)| (*at).max(self.outage_until)),
        );
        c.extend(self.planned_at.map(|at| at.max(self.outage_until)));
        // Paced writers.
        for s in &self.streams {
            if s.id.is_some() {
                c.extend(s.up.next_write(self.now));
                c.extend(s.down.next_write(self.now));
            }
        }
        // Streams waiting for their start time.
        c.extend(
            self.streams
                .iter()
                .filter(|s| s.id.is_none() && s.start > self.now)
                .map(|s| s.start),
        );
        c.into_iter().min()
    }

    fn fire(&mut self) {
        let now = self.now;
        // Deliveries.
        let ids: Vec<TunnelId> = self.tunnels.keys().copied().collect();
        for id in ids {
            self.deliver(id, true);
            self.deliver(id, false);
        }
        // Connection attempts.
        if now >= self.outage_until {
            let due: Vec<usize> = self
                .connects
                .iter()
                .filter(|(_, at)| *at <= now)
                .map(|(s, _)| *s)
                .collect();
            self.connects.retain(|(_, at)| *at > now);
            for site in due {
                let t = self.new_tunnel(site);
                if self.session(site).switch_to(t, now).is_err() {
                    self.close_tunnel(t);
                }
            }
            if self.planned_at.is_some_and(|at| at <= now) {
                self.planned_at = None;
                let ts: Vec<TunnelId> = (0..self.sites()).map(|s| self.new_tunnel(s)).collect();
                let ok = match &mut self.box_side {
                    BoxSide::One(s) => s.switch_to(ts[0], now).is_ok(),
                    BoxSide::Many(m) => m.switch_all(&ts, now).is_ok(),
                };
                if !ok {
                    for t in ts {
                        self.close_tunnel(t);
                    }
                }
            }
        }
        // Timers.
        match &mut self.box_side {
            BoxSide::One(s) => {
                if s.poll_timeout().is_some_and(|(d, _)| d <= now) {
                    s.handle_timeout(now);
                }
            }
            BoxSide::Many(m) => m.handle_timeout(now),
        }
        for s in &mut self.servers {
            if s.poll_timeout().is_some_and(|(d, _)| d <= now) {
                s.handle_timeout(now);
            }
        }
    }

    fn deliver(&mut self, id: TunnelId, up: bool) {
        let now = self.now;
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        let site = t.site;
        let pipe = if up { &mut t.up } else { &mut t.down };
        let mut chunks = Vec::new();
        while pipe.in_flight.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, b)) = pipe.in_flight.pop_front() {
                chunks.push(b);
            }
        }
        let ends = pipe.closing && pipe.in_flight.is_empty() && !pipe.notified;
        if ends {
            pipe.notified = true;
        }
        let tell = ends && !pipe.blackhole;
        for b in chunks {
            if up {
                self.servers[site].handle_input(id, &b, now);
            } else {
                match &mut self.box_side {
                    BoxSide::One(s) => s.handle_input(id, &b, now),
                    BoxSide::Many(m) => m.handle_input(site, id, &b, now),
                }
            }
        }
        if tell {
            // The receiver of this pipe learns the connection is gone.
            if let Some(t) = self.tunnels.get_mut(&id) {
                if up {
                    t.server_open = false;
                    self.servers[site].handle_tunnel_lost(id, now);
                } else {
                    t.box_open = false;
                    match &mut self.box_side {
                        BoxSide::One(s) => s.handle_tunnel_lost(id, now),
                        BoxSide::Many(m) => m.handle_tunnel_lost(site, id, now),
                    }
                }
            }
        }
        if self
            .tunnels
            .get(&id)
            .is_some_and(|t| !t.box_open && !t.server_open)
        {
            self.tunnels.remove(&id);
        }
    }

    /// Both ends learn the tunnel is gone.
    fn close_tunnel(&mut self, id: TunnelId) {
        let Some(t) = self.tunnels.remove(&id) else {
            return;
        };
        let now = self.now;
        if t.server_open {
            self.servers[t.site].handle_tunnel_lost(id, now);
        }
        if t.box_open {
            match &mut self.box_side {
                BoxSide::One(s) => s.handle_tunnel_lost(id, now),
                BoxSide::Many(m) => m.handle_tunnel_lost(t.site, id, now),
            }
        }
    }

    fn send(&mut self, id: TunnelId, from_box: bool, bytes: Vec<u8>) {
        let now = self.now;
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        let latency = t.latency;
        let pipe = if from_box { &mut t.up } else { &mut t.down };
        if pipe.blackhole || pipe.closing {
            return;
        }
        let at = (now + latency)
            .max(pipe.tail.unwrap_or(now))
            .max(pipe.hold_until.unwrap_or(now));
        pipe.tail = Some(at);
        pipe.in_flight.push_back((at, bytes));
    }

    /// Drains outputs and events of every endpoint, and lets apps write,
    /// until nothing moves.
    fn drain_all(&mut self) {
        for _ in 0..10_000 {
            let mut moved = self.pump_apps();
            moved |= self.drain_box();
            for site in 0..self.sites() {
                moved |= self.drain_server(site);
            }
            let buffered: u64 = (0..self.sites())
                .map(|s| self.session(s).stats().bytes_buffered)
                .sum();
            self.max_buffered_seen = self.max_buffered_seen.max(buffered);
            for site in 0..self.sites() {
                let st = self.session(site).stats();
                let b = st.bytes_buffered;
                assert!(
                    b <= self.cfg.max_buffered_bytes as u64,
                    "box replay buffers over the bound: {b}"
                );
                assert!(
                    b <= st.streams_open * u64::from(self.cfg.window),
                    "box replay buffers exceed one window per stream: {b}"
                );
                for s in self.servers[site].sessions() {
                    let b = s.stats().bytes_buffered;
                    assert!(
                        b <= self.cfg.max_buffered_bytes as u64,
                        "server replay buffers over the bound: {b}"
                    );
                }
            }
            if !moved {
                return;
            }
        }
        panic!("endpoints kept producing output without time passing");
    }

    fn drain_box(&mut self) -> bool {
        let mut moved = false;
        loop {
            let tx = match &mut self.box_side {
                BoxSide::One(s) => s.poll_transmit(),
                BoxSide::Many(m) => m.poll_transmit().map(|(_, tx)| tx),
            };
            let Some(tx) = tx else { break };
            moved = true;
            self.send(tx.tunnel, true, tx.bytes);
        }
        loop {
            let ev = match &mut self.box_side {
                BoxSide::One(s) => s.poll_event().map(|e| (0, e)),
                BoxSide::Many(m) => match m.poll_event() {
                    Some(SiteEvent::Site { site, event }) => Some((site, event)),
                    Some(SiteEvent::AllSwitched) => {
                        self.all_switched += 1;
                        continue;
                    }
                    None => None,
                },
            };
            let Some((site, ev)) = ev else { break };
            moved = true;
            self.box_event(site, ev);
        }
        moved
    }

    fn drain_server(&mut self, site: usize) -> bool {
        let mut moved = false;
        while let Some(tx) = self.servers[site].poll_transmit() {
            moved = true;
            self.send(tx.tunnel, false, tx.bytes);
        }
        while let Some(ev) = self.servers[site].poll_event() {
            moved = true;
            self.server_event(site, ev.event);
        }
        moved
    }

    fn box_event(&mut self, site: usize, ev: Event) {
        let now = self.now;
        if matches!(
            ev,
            Event::StreamOpened { .. }
                | Event::StreamReset { .. }
                | Event::SwitchStarted { .. }
                | Event::SwitchCompleted { .. }
        ) {
            self.log.push(format!("{:?} box {ev:?}", now - self.base));
        }
        match ev {
            Event::Data { stream, bytes } => {
                let i = self.by_box[&(site, stream)];
                self.streams[i].down_arrivals.push((now, bytes.len()));
                check_bytes(&mut self.streams[i].down, stream, false, &bytes, now);
            }
            Event::Finished { stream } => {
                let i = self.by_box[&(site, stream)];
                let d = &mut self.streams[i].down;
                assert!(!d.fin_received, "FIN delivered twice on {stream:?}");
                d.fin_received = true;
            }
            Event::StreamOpened { stream, .. } => {
                let i = self
                    .streams
                    .iter()
                    .position(|s| s.site == site && !s.opened_by_box && s.id == Some(stream))
                    .expect("OPEN for a stream the server never opened");
                self.by_box.insert((site, stream), i);
            }
            Event::StreamReset {
                stream,
                code,
                reason,
            } => {
                if let Some(&i) = self.by_box.get(&(site, stream)) {
                    self.streams[i].reset.push((true, code, reason));
                }
            }
            Event::StreamClosed { stream } => {
                if let Some(&i) = self.by_box.get(&(site, stream)) {
                    self.streams[i].closed_box = true;
                }
            }
            Event::NeedTunnel => {
                let at = now + self.latency * 2;
                self.connects.push((site, at));
            }
            Event::CloseTunnel { tunnel, reason } => {
                self.log.push(format!(
                    "{:?} box closes {tunnel:?}: {reason:?}",
                    now - self.base
                ));
                if let Some(t) = self.tunnels.get_mut(&tunnel) {
                    // The box stops reading at once; the server sees the close
                    // after the bytes in flight.
                    t.box_open = false;
                    t.up.closing = true;
                }
            }
            Event::SwitchCompleted { .. } => self.switches_completed += 1,
            Event::SessionClosed { reason, .. } => self.sessions_closed.push(reason),
            Event::Refused { reason, .. } => self.refused.push(reason),
            Event::Connected { .. }
            | Event::Writable { .. }
            | Event::Datagram { .. }
            | Event::PathReport(_)
            | Event::SwitchStarted { .. } => {}
        }
    }

    fn server_event(&mut self, site: usize, ev: Event) {
        if matches!(
            ev,
            Event::StreamOpened { .. }
                | Event::StreamReset { .. }
                | Event::SwitchCompleted { .. }
                | Event::CloseTunnel { .. }
        ) {
            self.log
                .push(format!("{:?} server {ev:?}", self.now - self.base));
        }
        match ev {
            Event::Data { stream, bytes } => {
                let i = self.by_server[&(site, stream)];
                self.streams[i].up_arrivals.push((self.now, bytes.len()));
                check_bytes(&mut self.streams[i].up, stream, true, &bytes, self.now);
            }
            Event::Finished { stream } => {
                let i = self.by_server[&(site, stream)];
                let d = &mut self.streams[i].up;
                assert!(!d.fin_received, "FIN delivered twice on {stream:?}");
                d.fin_received = true;
            }
            Event::StreamOpened { stream, .. } => {
                let i = self
                    .streams
                    .iter()
                    .position(|s| s.site == site && s.opened_by_box && s.id == Some(stream))
                    .expect("OPEN for a stream the box never opened");
                self.by_server.insert((site, stream), i);
            }
            Event::StreamReset {
                stream,
                code,
                reason,
            } => {
                if let Some(&i) = self.by_server.get(&(site, stream)) {
                    self.streams[i].reset.push((false, code, reason));
                }
            }
            Event::StreamClosed { stream } => {
                if let Some(&i) = self.by_server.get(&(site, stream)) {
                    self.streams[i].closed_server = true;
                }
            }
            Event::CloseTunnel { tunnel, .. } => {
                if let Some(t) = self.tunnels.get_mut(&tunnel) {
                    t.server_open = false;
                    t.down.closing = true;
                }
            }
            // A session whose CONNECT_ACK was lost is replaced by the box's
            // next CONNECT: expected, and nothing is lost with it.
            Event::SessionClosed {
                code: DisconnectCode::Replaced,
                ..
            } => self.replaced += 1,
            Event::SessionClosed { reason, .. } => {
                self.sessions_closed.push(format!("server: {reason}"))
            }
            _ => {}
        }
    }

    // ---- verdicts ---------------------------------------------------------

    /// Every stream finished in both directions with every byte exactly once.
    pub fn assert_all_complete(&self) {
        for (i, s) in self.streams.iter().enumerate() {
            assert!(
                s.reset.is_empty(),
                "stream #{i} was reset: {:?}\n{:#?}",
                s.reset,
                self.log
            );
            for (name, d) in [("up", &s.up), ("down", &s.down)] {
                assert_eq!(d.corrupt_at, None, "stream #{i} {name}: wrong byte");
                assert_eq!(
                    d.received, d.total,
                    "stream #{i} {name}: {} of {} bytes",
                    d.received, d.total
                );
                assert!(
                    d.fin_received,
                    "stream #{i} {name}: no FIN\n{:#?}",
                    self.log
                );
            }
            assert!(
                s.closed_box && s.closed_server,
                "stream #{i} not closed on both sides: {s:?}"
            );
        }
    }

    /// Every stream either completed exactly once, or was reset with a
    /// stated reason after the session ended; no byte arrived wrong.
    pub fn assert_exactly_once_or_reset(&self) {
        for (i, s) in self.streams.iter().enumerate() {
            for d in [&s.up, &s.down] {
                assert_eq!(d.corrupt_at, None, "stream #{i}: wrong byte");
                assert!(d.received <= d.total);
            }
            if !s.reset.is_empty() {
                for (_, code, reason) in &s.reset {
                    assert_eq!(*code, ResetCode::SessionEnded, "stream #{i} reset {reason}");
                    assert!(!reason.is_empty());
                }
                assert!(
                    !self.sessions_closed.is_empty(),
                    "a stream was reset but no session ended"
                );
            }
        }
    }

    /// The box ends its sessions (DISCONNECT); afterwards neither side may
    /// hold any session or stream state.
    pub fn close_and_assert_nothing_left(&mut self) {
        for site in 0..self.sites() {
            self.session(site).close("test over");
        }
        self.run_for(ms(2_000));
        for (site, server) in self.servers.iter().enumerate() {
            assert_eq!(
                server.sessions().count(),
                0,
                "site {site}: session left on the server"
            );
        }
        for site in 0..self.sites() {
            assert_eq!(self.session(site).streams().count(), 0);
            assert_eq!(self.session(site).stats().bytes_buffered, 0);
        }
    }

    /// The longest period without any uplink.
    pub fn longest_outage(&self) -> Duration {
        self.longest_outage_bridging(Duration::ZERO)
    }

    /// The longest period without any uplink, counting outages separated by
    /// less than `gap` (too short to reconnect in) as one.
    pub fn longest_outage_bridging(&self, gap: Duration) -> Duration {
        let mut longest = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for &(a, b) in &self.outage_spans {
            current = match current {
                Some((start, end)) if a < end + gap => Some((start, end.max(b))),
                _ => Some((a, b)),
            };
            if let Some((start, end)) = current {
                longest = longest.max(end - start);
            }
        }
        longest
    }

    /// Largest gap between consecutive arrivals of a direction's data.
    pub fn max_gap(arrivals: &[(Instant, usize)]) -> Duration {
        arrivals
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }

    pub fn stream_count_everywhere(&mut self) -> (usize, usize) {
        let b: usize = (0..self.sites())
            .map(|s| self.session(s).streams().count())
            .sum();
        let mut sv = 0;
        for server in &mut self.servers {
            let ids: Vec<BoxId> = server.sessions().map(|s| s.owner().clone()).collect();
            for id in ids {
                sv += server.session_mut(&id).map_or(0, |s| s.streams().count());
            }
        }
        (b, sv)
    }
}
