//! The only job of the box driver is to take input from the uplinks, the
//! phone-side sockets and `cboxctl`, and pass it to the sessions (one per
//! SNAPT, switched together by a `Coordinator`) — then carry out what they
//! ask: write tunnel bytes, deliver stream bytes, connect tunnels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{CnaptConfig, Protocol};
use session::{BoxSession, BoxState, Coordinator, SwitchKind, TunnelId};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wire::StreamId;

use control::{Call, Reply};
use daemon::accept::{AcceptStats, spawn_accept_loop};
use daemon::watchdog::{Heartbeat, TURN_EVERY};
use daemon::{Drain, Lifecycle};
use relay_io::connect::{Egress, connect_tunnel};
use relay_io::io::{WriteCmd, spawn_reader, spawn_writer};
use relay_io::locals::{LocalEvent, Locals, Sink};
use relay_io::udp::{BoxFlows, spawn_receiver};

mod apps;
mod commands;
mod events;
mod radios;
mod transparent;
mod uplinks;

type Key = (usize, StreamId);
type TlsTunnel = tokio_rustls::client::TlsStream<TcpStream>;

/// Why a tunnel is being connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The site has no tunnel (first connection or after a loss).
    Recover,
    /// A planned switch to this uplink.
    Planned,
}

enum Input {
    Accepted {
        service: usize,
        stream: TcpStream,
        peer: SocketAddr,
    },
    /// A PAN client's redirected connection (transparent mode).
    Transparent {
        stream: TcpStream,
        peer: SocketAddr,
    },
    /// A PAN client's datagram to the outside (transparent mode).
    TransparentUdp {
        peer: SocketAddr,
        dest: SocketAddr,
        bytes: Vec<u8>,
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
    TunnelConnected {
        site: usize,
        uplink: usize,
        purpose: Purpose,
        result: Result<Box<TlsTunnel>, String>,
    },
    TunnelBytes {
        tunnel: TunnelId,
        bytes: Vec<u8>,
    },
    TunnelLost {
        tunnel: TunnelId,
    },
    Control(Call),
    Retry {
        site: usize,
    },
    Link(box_os::linkmon::LinkEvent),
    Probed {
        uplink: usize,
        rtt: Option<Duration>,
    },
    Modem {
        uplink: usize,
        event: modem_at::ModemEvent,
    },
    Wifi {
        uplink: usize,
        event: box_os::wifi::WifiEvent,
    },
}

struct Tunnel {
    site: usize,
    uplink: usize,
    tx: mpsc::UnboundedSender<WriteCmd>,
}

/// Where a switch started: for its handover record.
#[derive(Debug, Clone, Copy)]
struct SwitchStart {
    at: Instant,
    kind: SwitchKind,
    from: Option<usize>,
    buffered: u64,
    replayed: u64,
}

struct PendingSwitch {
    uplink: usize,
    tunnels: Vec<Option<TunnelId>>,
    reply: Option<oneshot::Sender<Reply>>,
    started: Instant,
}

/// The box daemon's core loop.
pub struct BoxDriver {
    cfg: CnaptConfig,
    tls: Arc<rustls::ClientConfig>,
    coord: Coordinator,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    tunnels: HashMap<TunnelId, Tunnel>,
    next_tunnel: u64,
    /// Uplink each site's current tunnel uses.
    site_uplink: Vec<Option<usize>>,
    connecting: Vec<bool>,
    backoff: Vec<Duration>,
    locals: Locals<Key>,
    flows: BoxFlows,
    udp: HashMap<usize, Arc<UdpSocket>>,
    pending_switch: Option<PendingSwitch>,
    switch_started: HashMap<usize, SwitchStart>,
    history: status::HandoverLog,
    incarnation: u64,
    /// Why each site is not connected, if it is not (for `cboxctl status`).
    last_error: Vec<Option<String>>,
    /// Accept loops of the service listeners (stopped when draining).
    listeners: Vec<tokio::task::AbortHandle>,
    /// Accept errors of every listener of the box.
    accept_stats: AcceptStats,
    /// Beaten as the loop turns; watches the listeners.
    heartbeat: Heartbeat,
    /// What the box's bounds refused, dropped or ended.
    counters: status::Counters,
    /// The site's newest tunnel has carried a successful exchange (session
    /// established or resumed). Until it has, a lost tunnel is retried with
    /// back-off: with TLS 1.3 a server refuses a client certificate only
    /// after the client thinks the handshake is done.
    proven: Vec<bool>,
    /// The site's last connection attempt found no uplink with link and
    /// address: one coming up retries at once.
    awaiting_link: Vec<bool>,
    /// The decision task and what it needs.
    up: uplinks::Uplinks,
    /// The PAN side (bridge, Bluetooth NAP), when configured.
    pan: Option<box_os::pan::PanHandle>,
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

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl BoxDriver {
    /// A driver for `cfg`; `incarnation` seeds the CONNECT incarnation (it
    /// must grow across restarts: milliseconds since the epoch will do).
    pub fn new(
        cfg: CnaptConfig,
        tls: Arc<rustls::ClientConfig>,
        incarnation: u64,
    ) -> Result<Self, session::ConfigError> {
        let sites = cfg.snapts.len();
        let sessions = (0..sites)
            .map(|_| BoxSession::new(cfg.session.clone(), cfg.box_id.clone(), incarnation))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink_tx = tx.clone();
        let sink: Sink<Key> = Arc::new(move |ev| sink_tx.send(Input::Local(ev)).is_ok());
        Ok(Self {
            coord: Coordinator::new(sessions),
            tls,
            tx,
            rx,
            tunnels: HashMap::new(),
            next_tunnel: 1,
            site_uplink: vec![None; sites],
            connecting: vec![false; sites],
            backoff: vec![Duration::from_millis(200); sites],
            locals: Locals::new(sink),
            flows: BoxFlows::default(),
            udp: HashMap::new(),
            pending_switch: None,
            switch_started: HashMap::new(),
            history: status::HandoverLog::new(32),
            incarnation: incarnation.saturating_add(1_000_000),
            last_error: vec![None; sites],
            proven: vec![false; sites],
            awaiting_link: vec![false; sites],
            listeners: Vec::new(),
            accept_stats: AcceptStats::default(),
            heartbeat: Heartbeat::new(),
            counters: status::Counters::default(),
            up: uplinks::Uplinks::new(&cfg),
            pan: None,
            cfg,
        })
    }

    /// The accept counters of the box's listeners, for a listener started
    /// beside the driver (the status page) to count into.
    pub fn accept_stats(&self) -> AcceptStats {
        self.accept_stats.clone()
    }

    /// A handle for control requests (the control socket feeds it).
    pub fn control_handle(&self) -> mpsc::UnboundedSender<Call> {
        control::forward_calls(self.tx.clone(), Input::Control)
    }

    /// Binds the service listeners, connects every site and runs until
    /// `life.stop` fires; then sends DISCONNECT and returns.
    pub async fn run(mut self, life: Lifecycle) -> std::io::Result<()> {
        let Lifecycle {
            stop: mut shutdown,
            ready,
            heartbeat,
        } = life;
        self.heartbeat = heartbeat;
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
            self.keep_listener("service", accept.abort_handle());
        }
        self.start_transparent().await;
        self.pan = self.cfg.pan.as_ref().map(box_os::pan::PanHandle::start);
        let _ = ready.send(());
        self.start_link_monitor().await;
        self.start_modems();
        self.start_wifis();
        for site in 0..self.cfg.snapts.len() {
            self.connect_site(site, None);
        }
        let mut drain = Drain::default();
        let mut turn = tokio::time::interval(TURN_EVERY);
        turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush();
            self.sync_active();
            self.heartbeat.beat();
            if drain.finished(self.locals.len()) {
                break;
            }
            let decide = self.up.task.poll_timeout();
            let deadline = drain.deadline(Some(tokio::time::Instant::from_std(
                self.coord
                    .poll_timeout()
                    .map_or(decide, |(d, _)| d.min(decide)),
            )));
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    self.coord.handle_timeout(now());
                    self.decision_timeout();
                }
                _ = turn.tick() => self.sweep_flows(),
                _ = &mut shutdown, if !drain.started() => {
                    self.heartbeat.stopping();
                    // Graceful: no new connections; open ones may finish.
                    for l in self.listeners.drain(..) {
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
        self.up.stop_routing().await;
        self.stop_transparent().await;
        Ok(())
    }

    /// A listener's task: stopped when draining, and watched by the
    /// watchdog until then.
    fn keep_listener(&mut self, name: &'static str, task: tokio::task::AbortHandle) {
        self.heartbeat.watch_task(name, task.clone());
        self.listeners.push(task);
    }

    // ---- inputs ----------------------------------------------------------

    fn handle(&mut self, input: Input) {
        match input {
            Input::Accepted {
                service,
                stream,
                peer,
            } => self.accepted(service, stream, peer),
            Input::Transparent { stream, peer } => self.accepted_transparent(stream, peer),
            Input::TransparentUdp { peer, dest, bytes } => {
                self.transparent_datagram(peer, dest, bytes)
            }
            Input::Local(LocalEvent::Data { key, bytes, ack }) => {
                self.locals.queue(&key, bytes, ack);
                self.push_pending(key);
            }
            Input::Local(LocalEvent::End { key, error }) => match error {
                Some(e) => self.reset_local(key, &e),
                None => {
                    self.locals.mark_eof(&key);
                    self.push_pending(key);
                }
            },
            Input::Local(LocalEvent::Delivered { key, n }) => {
                if let Some(s) = self.coord.site(key.0) {
                    let _ = s.streams().delivered(key.1, n);
                }
            }
            Input::ClientConnected { key, result } => self.client_connected(key, result),
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
            Input::TunnelLost { tunnel } => {
                if let Some(t) = self.tunnels.remove(&tunnel) {
                    info!(site = t.site, uplink = %self.cfg.uplinks[t.uplink].name, ?tunnel, "tunnel lost");
                    // A handover record measures from the loss, not from
                    // when the replacement tunnel came up.
                    let active = self.coord.site(t.site).and_then(|s| s.active_tunnel());
                    if active == Some(tunnel) {
                        self.note_switch_start(t.site, SwitchKind::Sudden);
                    }
                    self.coord.handle_tunnel_lost(t.site, tunnel, now());
                }
            }
            Input::Control((req, reply)) => self.control(req, reply),
            Input::Link(ev) => self.link_event(ev),
            Input::Probed { uplink, rtt } => self.probed(uplink, rtt),
            Input::Modem { uplink, event } => self.modem_event(uplink, event),
            Input::Wifi { uplink, event } => self.wifi_event(uplink, event),
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

    // ---- tunnels -----------------------------------------------------------

    /// Connects a tunnel for `site`, trying uplinks in the decision task's
    /// order of preference (the one that just failed, if any, last).
    fn connect_site(&mut self, site: usize, failed: Option<usize>) {
        if self.connecting[site] {
            return;
        }
        // Only uplinks with link and address: an attempt over a link
        // without carrier hangs until its timeout while a better one may
        // come up meanwhile. With none, wait for one (the link monitor's
        // "gained" retries at once) or the back-off.
        let table = self.up.task.table();
        let usable = |u: &usize| table[*u].link_up && table[*u].address.is_some();
        let mut order: Vec<usize> = self
            .up
            .task
            .preference()
            .into_iter()
            .filter(|u| Some(*u) != failed && usable(u))
            .collect();
        order.extend(failed.filter(usable));
        if order.is_empty() {
            debug!(site, "no uplink has link and address; waiting for one");
            self.awaiting_link[site] = true;
            self.schedule_retry(site);
            return;
        }
        self.awaiting_link[site] = false;
        self.connecting[site] = true;
        self.spawn_connect(site, order, Purpose::Recover);
    }

    fn spawn_connect(&self, site: usize, order: Vec<usize>, purpose: Purpose) {
        let snapt = self.cfg.snapts[site].clone();
        let egresses: Vec<(usize, Egress)> = order
            .into_iter()
            .map(|u| {
                (
                    u,
                    Egress {
                        interface: self.cfg.uplinks[u].interface.clone(),
                        source: self.cfg.uplinks[u].source,
                    },
                )
            })
            .collect();
        let tls = self.tls.clone();
        let tx = self.tx.clone();
        let timeout = self
            .cfg
            .session
            .inactivity_timeout
            .max(Duration::from_secs(2));
        tokio::spawn(async move {
            let mut last = String::from("no uplink configured");
            for (uplink, egress) in egresses {
                match connect_tunnel(
                    &snapt.address,
                    &snapt.server_name,
                    &egress,
                    tls.clone(),
                    timeout,
                )
                .await
                {
                    Ok(t) => {
                        let _ = tx.send(Input::TunnelConnected {
                            site,
                            uplink,
                            purpose,
                            result: Ok(Box::new(t)),
                        });
                        return;
                    }
                    Err(e) => {
                        warn!(site, snapt = %snapt.name, via = %egress, error = %e, "tunnel connect failed");
                        last = e.to_string();
                    }
                }
            }
            let _ = tx.send(Input::TunnelConnected {
                site,
                uplink: 0,
                purpose,
                result: Err(last),
            });
        });
    }

    fn register_tunnel(&mut self, site: usize, uplink: usize, tls: TlsTunnel) -> TunnelId {
        let id = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        let (rd, wr) = tokio::io::split(tls);
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (t1, t2) = (self.tx.clone(), self.tx.clone());
        spawn_writer(wr, wrx, |_| {}, |_| {});
        spawn_reader(
            rd,
            move |bytes| t1.send(Input::TunnelBytes { tunnel: id, bytes }).is_ok(),
            move |_| {
                let _ = t2.send(Input::TunnelLost { tunnel: id });
            },
        );
        self.tunnels.insert(
            id,
            Tunnel {
                site,
                uplink,
                tx: wtx,
            },
        );
        id
    }

    fn tunnel_connected(
        &mut self,
        site: usize,
        uplink: usize,
        purpose: Purpose,
        result: Result<Box<TlsTunnel>, String>,
    ) {
        if purpose == Purpose::Recover {
            self.connecting[site] = false;
        }
        let tls = match result {
            Ok(t) => *t,
            Err(e) => {
                if purpose == Purpose::Planned {
                    self.fail_pending_switch(&format!("site {site}: {e}"));
                } else {
                    self.last_error[site] = Some(e);
                    self.schedule_retry(site);
                }
                return;
            }
        };
        let id = self.register_tunnel(site, uplink, tls);
        info!(site, uplink = %self.cfg.uplinks[uplink].name, tunnel = ?id, ?purpose, "tunnel up");
        match purpose {
            Purpose::Recover => {
                let Some(s) = self.coord.site(site) else {
                    return;
                };
                match s.switch_to(id, now()) {
                    Ok(()) => {
                        self.site_uplink[site] = Some(uplink);
                        self.proven[site] = false;
                    }
                    Err(e) => {
                        debug!(site, error = %e, "tunnel not needed");
                        self.tunnels.remove(&id);
                    }
                }
            }
            Purpose::Planned => {
                let Some(p) = &mut self.pending_switch else {
                    self.tunnels.remove(&id);
                    return;
                };
                p.tunnels[site] = Some(id);
                if p.tunnels.iter().all(Option::is_some) {
                    let ts: Vec<TunnelId> = p.tunnels.iter().flatten().copied().collect();
                    // The sites move to `to` when each completes its switch
                    // (SwitchCompleted), not now.
                    if let Err(e) = self.coord.switch_all(&ts, now()) {
                        for t in ts {
                            self.tunnels.remove(&t);
                        }
                        self.fail_pending_switch(&e.to_string());
                    }
                }
            }
        }
    }

    fn schedule_retry(&mut self, site: usize) {
        let delay = self.backoff[site];
        self.backoff[site] = (delay * 2).min(Duration::from_secs(5));
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Input::Retry { site });
        });
    }

    // ---- outputs -------------------------------------------------------------

    fn flush(&mut self) {
        loop {
            let mut moved = false;
            while let Some((_, tx)) = self.coord.poll_transmit() {
                moved = true;
                if let Some(t) = self.tunnels.get(&tx.tunnel) {
                    let _ = t.tx.send(WriteCmd::Data(tx.bytes));
                }
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
