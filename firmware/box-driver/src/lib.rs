//! The only job of the box driver is to take input from the phone-side
//! sockets, the tunnels, the box's OS adapters and `cboxctl`, and pass it
//! to the sessions (one per SNAPT, switched together by a `Coordinator`)
//! and to the decision task — then carry out what they ask: write tunnel
//! bytes, deliver stream bytes, connect tunnels, switch uplinks.
//!
//! It starts no OS adapter itself: cnaptd starts them (`box_os::adapters`)
//! and they report through [`BoxDriver::os_sink`]; the driver's commands
//! to them go through the [`OsCommands`] it is given, and tunnels and
//! probes through a [`Net`]. A test drives it with in-memory tunnels and
//! made-up link, Wi-Fi and modem events under paused time.
//!
//! Layout: `tunnels` (connecting, back-off), `events` (what the sessions
//! report), `apps` (phones' connections and flows), `transparent`,
//! `uplinks` (the decision task), `radios` (modem and Wi-Fi reports),
//! `commands` (`cboxctl` and the status), [`net`] (the way out).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{CnaptConfig, Protocol};
use session::{BoxSession, BoxState, Coordinator, SwitchKind, TunnelId};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, info};
use wire::StreamId;

use control::{Call, Reply};
use daemon::accept::{AcceptStats, spawn_accept_loop};
use daemon::backoff::Backoff;
use daemon::watchdog::{Heartbeat, TURN_EVERY};
use daemon::{Drain, Lifecycle};
use relay_io::locals::{LocalEvent, Locals, Sink};
use relay_io::out::{Sent, TunnelOut};
use relay_io::udp::{BoxFlows, spawn_receiver};

pub use box_os::adapters::{Commands as OsCommands, OsEvent};
pub use net::{Connected, Net, TlsNet, Tunnel, TunnelIo};

mod apps;
mod commands;
mod events;
pub mod net;
mod qos;
mod radios;
pub mod relays;
mod shares;
mod switching;
mod transparent;
mod tunnels;
mod uplinks;

#[cfg(test)]
mod tests;

type Key = (usize, StreamId);

/// Why a tunnel is being connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The site has no tunnel (first connection or after a loss).
    Recover,
    /// A planned switch to this uplink.
    Planned,
    /// A prompt switch away from a degraded path.
    Prompt,
    /// A warm standby tunnel.
    Standby,
}

enum Input {
    Accepted {
        service: usize,
        stream: TcpStream,
        peer: SocketAddr,
    },
    Local(LocalEvent<Key>),
    UdpIn {
        service: usize,
        peer: SocketAddr,
        bytes: Vec<u8>,
    },
    ClientConnected {
        key: Key,
        result: Result<TcpStream, String>,
    },
    /// A datagram from a phone's UDP client service, on a pushed flow.
    PushedReply {
        key: Key,
        bytes: Vec<u8>,
    },
    TunnelConnected {
        site: usize,
        uplink: usize,
        purpose: Purpose,
        result: Result<Connected, String>,
    },
    TunnelBytes {
        tunnel: TunnelId,
        bytes: Vec<u8>,
    },
    TunnelLost {
        tunnel: TunnelId,
        /// The relay ended it cleanly (TLS close_notify, then FIN) without a
        /// DISCONNECT: it restarts or hands over to a new process. The path
        /// carried that, so the uplink is not to blame.
        closed_by_relay: bool,
    },
    /// The tunnel's writer wrote `n` bytes.
    TunnelWritten {
        tunnel: TunnelId,
        n: usize,
    },
    Control(Call),
    Retry {
        site: usize,
    },
    Os(OsEvent),
    Probed {
        uplink: usize,
        rtt: Option<Duration>,
    },
}

/// A tunnel the driver holds: which site and uplink, its writer (held to
/// a budget), and its TCP socket for `TCP_INFO`.
struct LiveTunnel {
    site: usize,
    uplink: usize,
    out: TunnelOut,
    tcp: Option<relay_io::transport::TcpWatch>,
}

/// What the driver keeps beside one SNAPT's session (the session itself
/// lives in the coordinator).
#[derive(Debug)]
struct Site {
    /// Uplink its current tunnel uses.
    uplink: Option<usize>,
    /// Uplink of the tunnel it lost, until the next switch completes.
    last_uplink: Option<usize>,
    /// A recovery connection is under way.
    connecting: bool,
    /// Wait before the next attempt.
    backoff: Backoff,
    /// Why it is not connected, if it is not (for `cboxctl status`).
    last_error: Option<String>,
    /// Its newest tunnel has carried a successful exchange (session
    /// established or resumed). Until it has, a lost tunnel is retried with
    /// back-off: with TLS 1.3 a server refuses a client certificate only
    /// after the client thinks the handshake is done.
    proven: bool,
    /// Its last connection attempt found no uplink with link and address:
    /// one coming up retries at once.
    awaiting_link: bool,
    /// `site{box_id, snapt}`: its log lines and its tunnels' tasks.
    span: tracing::Span,
    /// What set off the next switch, for its handover record.
    cause: Option<String>,
    /// The relay closed the active tunnel itself: resume over the same
    /// uplink first.
    relay_closed: bool,
    /// The uplink the next recovery tries first (the one whose tunnel the
    /// relay closed).
    resume_on: Option<usize>,
    /// How the driver means the next switch (the session only knows planned
    /// or sudden; a prompt switch is sudden to it).
    intent: Option<status::HandoverKind>,
    /// Its warm standby tunnel and the uplink it runs over.
    standby: Option<(TunnelId, usize)>,
    /// A standby is being connected.
    standby_connecting: bool,
    /// No new standby attempt before this.
    standby_retry: tokio::time::Instant,
    /// The SNAPT asked for no new session attempt before this (REFUSED
    /// with a wait).
    not_before: Option<tokio::time::Instant>,
    /// The relay fleet behind the SNAPT's router, if it has one, and the
    /// relay of the current session.
    relays: relays::RelaySet,
    /// Resumption attempts in a row that reached the router but not the
    /// session's relay (TLS failed): at [`RELAY_GONE_AFTER`] the relay is
    /// taken for gone and a new session starts on another.
    relay_misses: u32,
    /// The session's relay was just given up: the new session starts at
    /// once on a sibling (no back-off: another host).
    relay_gone: bool,
    /// Phone connections reset because the session was ending.
    reset_by_end: usize,
    /// Wait between standby attempts that failed.
    standby_backoff: Backoff,
}

/// Where a switch started: for its handover record.
#[derive(Debug, Clone)]
struct SwitchStart {
    /// Since when the applications wait (the lost path's last sign of
    /// life, for a switch after a loss).
    at: Instant,
    kind: SwitchKind,
    /// How the driver meant it, if it started it.
    intent: Option<status::HandoverKind>,
    from: Option<usize>,
    buffered: u64,
    replayed: u64,
    /// What set it off.
    reason: String,
}

/// A switch of every site to one uplink, waiting for its tunnels.
struct PendingSwitch {
    uplink: usize,
    tunnels: Vec<Option<TunnelId>>,
    reply: Option<oneshot::Sender<Reply>>,
    started: Instant,
    /// Why (for a failed attempt's record).
    reason: String,
    /// Away from a degraded path: each site moves as soon as its tunnel is
    /// up, without the drain.
    prompt: bool,
}

/// The box daemon's core loop.
pub struct BoxDriver {
    cfg: CnaptConfig,
    net: Arc<dyn Net>,
    coord: Coordinator,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    tunnels: HashMap<TunnelId, LiveTunnel>,
    next_tunnel: u64,
    sites: Vec<Site>,
    locals: Locals<Key>,
    flows: BoxFlows,
    /// Which phone holds which stream (a phone's share of the table).
    shares: shares::PhoneShares,
    udp: HashMap<usize, Arc<UdpSocket>>,
    pending_switch: Option<PendingSwitch>,
    switch_started: HashMap<usize, SwitchStart>,
    history: status::HandoverLog,
    incarnation: u64,
    /// Listeners (stopped when draining, watched until then).
    listeners: Vec<(&'static str, AbortHandle)>,
    /// Accept errors of every listener of the box.
    accept_stats: AcceptStats,
    /// Beaten as the loop turns; watches the listeners.
    heartbeat: Heartbeat,
    /// What the box's bounds refused, dropped or ended.
    counters: status::Counters,
    /// The decision task and what it needs.
    up: uplinks::Uplinks,
    /// The OS adapters' command side (routing, Wi-Fi, PAN).
    os: OsCommands,
    /// Path notices for the `qos_notify` services' applications.
    qos: Option<qos::BoxQos>,
}

impl std::fmt::Debug for BoxDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxDriver")
            .field("box_id", &self.cfg.box_id)
            .field("tunnels", &self.tunnels.len())
            .field("locals", &self.locals.len())
            .finish_non_exhaustive()
    }
}

/// Resumptions in a row that reach the router but not the session's relay
/// before the relay is taken for gone (`[[snapt]] relays`).
const RELAY_GONE_AFTER: u32 = 2;

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl BoxDriver {
    /// A driver for `cfg` leaving the box through `net`; `incarnation`
    /// seeds the CONNECT incarnation (it must grow across restarts:
    /// milliseconds since the epoch will do).
    pub fn new(
        cfg: CnaptConfig,
        net: Arc<dyn Net>,
        incarnation: u64,
    ) -> Result<Self, session::ConfigError> {
        let sessions = (0..cfg.snapts.len())
            .map(|_| BoxSession::new(cfg.session.clone(), cfg.box_id.clone(), incarnation))
            .collect::<Result<Vec<_>, _>>()?;
        let sites = cfg
            .snapts
            .iter()
            .map(|s| Site {
                uplink: None,
                last_uplink: None,
                connecting: false,
                backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
                last_error: None,
                proven: false,
                awaiting_link: false,
                span: tracing::info_span!("site", box_id = %cfg.box_id, snapt = %s.name),
                cause: None,
                relay_closed: false,
                resume_on: None,
                intent: None,
                standby: None,
                standby_connecting: false,
                standby_retry: tokio::time::Instant::now(),
                not_before: None,
                relays: relays::RelaySet::new(s.relays.clone()),
                relay_misses: 0,
                relay_gone: false,
                reset_by_end: 0,
                standby_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let sink_tx = tx.clone();
        let sink: Sink<Key> = Arc::new(move |ev| sink_tx.send(Input::Local(ev)).is_ok());
        let mut up = uplinks::Uplinks::new(&cfg);
        up.observe_fixed_uplinks(&cfg, now());
        Ok(Self {
            coord: Coordinator::new(sessions),
            net,
            tx,
            rx,
            tunnels: HashMap::new(),
            next_tunnel: 1,
            sites,
            locals: Locals::new(sink),
            flows: BoxFlows::default(),
            shares: shares::PhoneShares::default(),
            udp: HashMap::new(),
            pending_switch: None,
            switch_started: HashMap::new(),
            history: status::HandoverLog::new(32),
            incarnation: incarnation.saturating_add(1_000_000),
            listeners: Vec::new(),
            accept_stats: AcceptStats::default(),
            heartbeat: Heartbeat::new(),
            counters: status::Counters::default(),
            up,
            os: OsCommands::default(),
            qos: qos::BoxQos::new(&cfg),
            cfg,
        })
    }

    /// Where the OS adapters report (`box_os::adapters::Adapters::start`).
    pub fn os_sink(&self) -> box_os::adapters::Sink {
        let tx = self.tx.clone();
        Arc::new(move |ev| tx.send(Input::Os(ev)).is_ok())
    }

    /// The adapters' command side, and their listeners — watched by the
    /// watchdog and stopped at the drain like the driver's own.
    pub fn attach_os(&mut self, commands: OsCommands, listeners: Vec<(&'static str, AbortHandle)>) {
        self.os = commands;
        self.listeners.extend(listeners);
    }

    /// The accept counters of the box's listeners, for a listener started
    /// beside the driver (the status page, transparent mode) to count into.
    pub fn accept_stats(&self) -> AcceptStats {
        self.accept_stats.clone()
    }

    /// A handle for control requests (the control socket feeds it).
    pub fn control_handle(&self) -> mpsc::UnboundedSender<Call> {
        control::forward_calls(self.tx.clone(), Input::Control)
    }

    /// Binds the service listeners, connects every site and runs until
    /// `life.stop` fires; then sends DISCONNECT and returns (the routes
    /// sender is dropped with the driver: the adapters remove the routes).
    pub async fn run(mut self, life: Lifecycle) -> std::io::Result<()> {
        let Lifecycle {
            stop: mut shutdown,
            ready,
            heartbeat,
        } = life;
        self.heartbeat = heartbeat;
        self.bind_services().await?;
        if let Some(task) = self.spawn_qos_announcer() {
            self.listeners.push(("qos announcement", task));
        }
        for (name, task) in &self.listeners {
            self.heartbeat.watch_task(name, task.clone());
        }
        let _ = ready.send(());
        // What the adapters reported while the daemon started (the link
        // monitor's first dump): the first tunnel goes over the preferred
        // uplink, not over whichever was known first.
        while let Ok(input) = self.rx.try_recv() {
            self.handle(input);
        }
        // Give the routes of uplinks that just came up a moment (policy
        // routing is applied beside the driver), as after a link event.
        let settle = self.cfg.uplinks.iter().any(|u| u.interface.is_some());
        for site in 0..self.cfg.snapts.len() {
            if settle {
                self.retry_after(site, uplinks::LINK_SETTLE);
            } else {
                self.connect_site(site, None);
            }
        }
        let mut drain = Drain::default();
        let mut turn = tokio::time::interval(TURN_EVERY);
        turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut qos_turn = tokio::time::interval(qos::SAMPLE_EVERY);
        qos_turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush();
            self.sync_active();
            self.maintain_standbys();
            self.flush();
            self.heartbeat.beat();
            if drain.finished(self.locals.len()) {
                break;
            }
            let session_timer = self.coord.poll_timeout();
            let decide = self.up.task.poll_timeout();
            let deadline = drain.deadline(Some(tokio::time::Instant::from_std(
                session_timer.map_or(decide, |(d, _)| d.min(decide)),
            )));
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    let t = now();
                    if let Some((at, timer)) = session_timer && at <= t {
                        debug!(?timer, "session timer");
                    }
                    self.sample_transports();
                    self.coord.handle_timeout(t);
                    self.decision_timeout();
                }
                _ = turn.tick() => self.sweep_flows(),
                _ = qos_turn.tick(), if self.qos.is_some() => self.qos_tick(),
                _ = &mut shutdown, if !drain.started() => {
                    self.heartbeat.stopping();
                    // Graceful: no new connections; open ones may finish.
                    for (_, l) in self.listeners.drain(..) {
                        l.abort();
                    }
                    info!(open = self.locals.len(), grace = ?self.cfg.shutdown_grace, "draining before shutdown");
                    drain.start(self.cfg.shutdown_grace);
                }
            }
        }
        for site in 0..self.cfg.snapts.len() {
            if let Some(s) = self.coord.site(site) {
                s.close("cnaptd shutting down");
            }
        }
        self.flush();
        // Connections still open after the grace are cut: a reset, never
        // an end of stream that looks complete.
        self.locals.abort_where(|_| true);
        // Give the writers a moment to put DISCONNECT on the wire.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }

    /// The configured services' listeners (TCP) and sockets (UDP).
    async fn bind_services(&mut self) -> std::io::Result<()> {
        let services = self.cfg.services.clone();
        for (i, svc) in services.iter().enumerate() {
            if svc.protocol == Protocol::Udp {
                let sock = Arc::new(UdpSocket::bind(svc.listen).await?);
                info!(service = %svc.name, listen = %svc.listen, "datagram service listening");
                let tx = self.tx.clone();
                spawn_receiver(sock.clone(), move |peer, bytes| {
                    tx.send(Input::UdpIn {
                        service: i,
                        peer,
                        bytes,
                    })
                    .is_ok()
                });
                self.udp.insert(i, sock);
                continue;
            }
            let listener = TcpListener::bind(svc.listen).await?;
            info!(service = %svc.name, listen = %svc.listen, "service listening");
            let tx = self.tx.clone();
            let accept = spawn_accept_loop(
                listener,
                "service",
                self.accept_stats.clone(),
                move |(stream, peer)| {
                    tx.send(Input::Accepted {
                        service: i,
                        stream,
                        peer,
                    })
                    .is_ok()
                },
            );
            self.listeners.push(("service", accept.abort_handle()));
        }
        Ok(())
    }

    // ---- inputs ----------------------------------------------------------

    fn handle(&mut self, input: Input) {
        match input {
            Input::Accepted {
                service,
                stream,
                peer,
            } => self.accepted(service, stream, peer),
            Input::Local(LocalEvent::Data { key, bytes, ack }) => {
                match self.locals.queue(&key, bytes, ack) {
                    Ok(()) => self.push_pending(key),
                    Err(e) => self.codec_failed(key, &e),
                }
            }
            Input::Local(LocalEvent::End { key, error }) => match error {
                Some(e) => self.reset_local(key, &e),
                None => {
                    self.locals.mark_eof(&key);
                    self.push_pending(key);
                }
            },
            Input::Local(LocalEvent::Delivered { key, n, plain }) => {
                if let Err(e) = self.locals.drained(&key, plain) {
                    self.codec_failed(key, &e);
                }
                if let Some(s) = self.coord.site(key.0) {
                    let _ = s.streams().delivered(key.1, n);
                }
            }
            Input::ClientConnected { key, result } => self.client_connected(key, result),
            Input::PushedReply { key, bytes } => self.pushed_reply(key, bytes),
            Input::UdpIn {
                service,
                peer,
                bytes,
            } => self.udp_in(service, peer, bytes),
            Input::TunnelConnected {
                site,
                uplink,
                purpose,
                result,
            } => self.tunnel_connected(site, uplink, purpose, result),
            Input::TunnelBytes { tunnel, bytes } => {
                if let Some(t) = self.tunnels.get(&tunnel) {
                    self.coord.handle_input(t.site, tunnel, &bytes, now());
                }
            }
            Input::TunnelLost {
                tunnel,
                closed_by_relay: true,
            } => {
                if let Some(t) = self.tunnels.get(&tunnel)
                    && self.coord.site(t.site).and_then(|s| s.active_tunnel()) == Some(tunnel)
                {
                    self.sites[t.site].relay_closed = true;
                }
                self.tunnel_lost(
                    tunnel,
                    "the relay closed the tunnel (restarting or upgrading)",
                );
            }
            Input::TunnelLost { tunnel, .. } => {
                self.tunnel_lost(tunnel, "the tunnel failed (connection closed or reset)");
            }
            Input::TunnelWritten { tunnel, n } => {
                if let Some(t) = self.tunnels.get_mut(&tunnel) {
                    t.out.written(n);
                    self.coord.set_tunnel_room(t.site, tunnel, t.out.room());
                }
            }
            Input::Control((req, reply)) => self.control(req, reply),
            Input::Os(ev) => self.os_event(ev),
            Input::Probed { uplink, rtt } => self.probed(uplink, rtt),
            Input::Retry { site } => {
                let idle = self
                    .coord
                    .site(site)
                    .is_some_and(|s| matches!(s.state(), BoxState::Idle | BoxState::Recovering));
                if idle {
                    self.connect_site(site, None);
                }
            }
        }
    }

    fn os_event(&mut self, ev: OsEvent) {
        match ev {
            OsEvent::Link(ev) => self.link_event(ev),
            OsEvent::NoLinkMonitor => self.no_link_monitor(),
            OsEvent::Modem { uplink, event } => self.modem_event(uplink, event),
            OsEvent::Wifi { uplink, event } => self.wifi_event(uplink, event),
            OsEvent::Transparent { stream, peer, dest } => {
                self.accepted_transparent(stream, peer, dest)
            }
            OsEvent::TransparentUdp { peer, dest, bytes } => {
                self.transparent_datagram(peer, dest, bytes)
            }
        }
    }

    /// Tunnel `tunnel` failed (`why` becomes the record's cause if it
    /// carried the session).
    fn tunnel_lost(&mut self, tunnel: TunnelId, why: &str) {
        let Some(t) = self.tunnels.remove(&tunnel) else {
            return;
        };
        let _site = self.sites[t.site].span.clone().entered();
        info!(uplink = %self.cfg.uplinks[t.uplink].name, tunnel = tunnel.0, %why, "tunnel lost");
        // The record's cause; it measures from the path's last sign of life
        // (the session's SwitchStarted says when).
        let active = self.coord.site(t.site).and_then(|s| s.active_tunnel());
        if active == Some(tunnel) {
            // Closed or reset by the peer, or not read by it: the path
            // carried that, so it is not held against the uplink.
            let name = &self.cfg.uplinks[t.uplink].name;
            self.sites[t.site]
                .cause
                .get_or_insert_with(|| format!("{name}: {why}"));
        }
        self.standby_gone(t.site, tunnel, "connection lost");
        self.coord.handle_tunnel_lost(t.site, tunnel, now());
    }

    // ---- outputs -------------------------------------------------------------

    fn flush(&mut self) {
        loop {
            let mut moved = false;
            let mut overflowed = Vec::new();
            while let Some((_, tx)) = self.coord.poll_transmit() {
                moved = true;
                if let Some(t) = self.tunnels.get_mut(&tx.tunnel) {
                    match t.out.send(tx.bytes) {
                        Sent::Room | Sent::Full => {
                            self.coord.set_tunnel_room(t.site, tx.tunnel, t.out.room());
                        }
                        Sent::Overflow => overflowed.push(tx.tunnel),
                    }
                }
            }
            for t in overflowed {
                self.tunnel_lost(t, "the SNAPT stopped reading the tunnel");
            }
            while let Some(ev) = self.coord.poll_event() {
                moved = true;
                self.event(ev);
            }
            if !moved {
                return;
            }
        }
    }
}
