//! Test helpers: a box and a server wired back to back with instant delivery,
//! and frame builders, for unit tests of single rules.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use wire::{BoxId, Frame};

use crate::{BoxSession, Event, Server, ServerConfig, ServerEvent, SessionConfig, TunnelId};

pub fn cfg() -> SessionConfig {
    SessionConfig {
        keepalive: Duration::from_millis(100),
        inactivity_timeout: Duration::from_millis(500),
        switch_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    }
}

pub fn id(s: &str) -> BoxId {
    BoxId::new(s).unwrap()
}

pub fn bytes(frames: &[Frame]) -> Vec<u8> {
    let mut b = Vec::new();
    for f in frames {
        wire::encode(f, &mut b);
    }
    b
}

/// Decodes every frame in `b`.
pub fn frames(mut b: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (f, n) = wire::decode(b, 1 << 24).unwrap();
        out.push(f);
        b = &b[n..];
    }
    out
}

/// One box, one server, tunnels that deliver instantly while open.
pub struct Pair {
    pub now: Instant,
    pub bx: BoxSession,
    pub server: Server,
    pub open: BTreeSet<TunnelId>,
    pub box_events: Vec<Event>,
    pub server_events: Vec<ServerEvent>,
    /// Open tunnels that carry nothing (a silent blackhole).
    pub silent: BTreeSet<TunnelId>,
    next: u64,
}

impl Pair {
    pub fn new(cfg: SessionConfig, max_sessions: usize) -> Self {
        let server = Server::new(
            ServerConfig {
                session: cfg.clone(),
                max_sessions,
                ..ServerConfig::default()
            },
            7,
        )
        .unwrap();
        Self {
            now: Instant::now(),
            bx: BoxSession::new(cfg, id("box-a"), 1).unwrap(),
            server,
            open: BTreeSet::new(),
            box_events: Vec::new(),
            server_events: Vec::new(),
            silent: BTreeSet::new(),
            next: 1,
        }
    }

    /// A connected, established pair.
    pub fn connected() -> Self {
        let mut p = Self::new(cfg(), 10);
        let t = p.tunnel("box-a");
        p.bx.switch_to(t, p.now).unwrap();
        p.pump();
        p
    }

    /// A new tunnel authenticated as `identity`.
    pub fn tunnel(&mut self, identity: &str) -> TunnelId {
        let t = TunnelId(self.next);
        self.next += 1;
        self.open.insert(t);
        self.server.handle_tunnel_up(t, id(identity), self.now);
        t
    }

    /// Moves bytes and events until quiet.
    pub fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(tx) = self.bx.poll_transmit() {
                moved = true;
                if self.open.contains(&tx.tunnel) && !self.silent.contains(&tx.tunnel) {
                    self.server.handle_input(tx.tunnel, &tx.bytes, self.now);
                }
            }
            while let Some(tx) = self.server.poll_transmit() {
                moved = true;
                if self.open.contains(&tx.tunnel) && !self.silent.contains(&tx.tunnel) {
                    self.bx.handle_input(tx.tunnel, &tx.bytes, self.now);
                }
            }
            while let Some(e) = self.bx.poll_event() {
                moved = true;
                if let Event::CloseTunnel { tunnel, .. } = e {
                    self.close(tunnel);
                }
                self.box_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                moved = true;
                if let Event::CloseTunnel { tunnel, .. } = e.event {
                    self.close(tunnel);
                }
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("pair did not settle");
    }

    /// The driver closes a tunnel: both ends learn it.
    pub fn close(&mut self, t: TunnelId) {
        if self.open.remove(&t) {
            self.bx.handle_tunnel_lost(t, self.now);
            self.server.handle_tunnel_lost(t, self.now);
        }
    }

    /// Advances virtual time, firing timers on the way.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..100_000 {
            let next = [self.bx.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .map(|(at, _)| at)
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    self.bx.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
        self.pump();
    }

    /// Every stream byte the server delivered, in order of events.
    pub fn server_data(&self) -> Vec<u8> {
        self.server_events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Data { bytes, .. } => Some(bytes.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    /// Every datagram the server delivered.
    pub fn server_datagrams(&self) -> Vec<Vec<u8>> {
        self.server_events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Datagram { bytes, .. } => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }

    /// Raw bytes on a tunnel to the server, returning what it answers there.
    pub fn raw_to_server(&mut self, t: TunnelId, b: &[u8]) -> Vec<Frame> {
        self.server.handle_input(t, b, self.now);
        let mut out = Vec::new();
        while let Some(tx) = self.server.poll_transmit() {
            if tx.tunnel == t {
                out.extend(frames(&tx.bytes));
            } else if self.open.contains(&tx.tunnel) {
                self.bx.handle_input(tx.tunnel, &tx.bytes, self.now);
            }
        }
        while let Some(e) = self.server.poll_event() {
            if let Event::CloseTunnel { tunnel, .. } = e.event {
                self.open.remove(&tunnel);
                self.server.handle_tunnel_lost(tunnel, self.now);
            }
            self.server_events.push(e);
        }
        out
    }
}
