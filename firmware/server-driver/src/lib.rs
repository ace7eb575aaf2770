//! The only job of the server driver is to take input from the tunnel
//! acceptor, the connections to the real servers, the client-service
//! listeners and the control socket, and pass it to the `Server` core — then
//! carry out what it asks.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use config::{Protocol, SnaptConfig};
use session::{Event, Server, ServerEvent, TunnelId};
use tls::{CipherPreference, revoked_serials, server_config};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};
use wire::{BoxId, Codec, DisconnectCode, ResetCode, ServiceName, StreamId, StreamKind};

use control::Call;
use daemon::accept::{AcceptStats, spawn_accept_loop};
use daemon::watchdog::TURN_EVERY;
use daemon::{Drain, Lifecycle};
use relay_io::connect::tune_tunnel;
use relay_io::io::{WriteCmd, spawn_reader, spawn_writer};
use relay_io::locals::{LocalEvent, Locals, Sink};
use relay_io::out::{Sent, TunnelOut};
use relay_io::udp::spawn_receiver;

use flows::ServerFlows;

type Key = (BoxId, StreamId);

enum Input {
    TunnelUp {
        tunnel: TunnelId,
        identity: BoxId,
        serial: String,
        tx: mpsc::UnboundedSender<WriteCmd>,
        watch: Option<relay_io::transport::TcpWatch>,
    },
    TunnelBytes {
        tunnel: TunnelId,
        bytes: Vec<u8>,
    },
    TunnelLost {
        tunnel: TunnelId,
    },
    /// The tunnel's reader, ended with the tunnel (its read half holds the
    /// socket open until then).
    TunnelReader {
        tunnel: TunnelId,
        reader: AbortHandle,
    },
    /// The tunnel's writer wrote `n` bytes.
    TunnelWritten {
        tunnel: TunnelId,
        n: usize,
    },
    TargetConnected {
        key: Key,
        result: Result<TcpStream, String>,
    },
    ClientAccepted {
        box_id: BoxId,
        service: ServiceName,
        stream: TcpStream,
        peer: SocketAddr,
    },
    Local(LocalEvent<Key>),
    UdpOut {
        key: Key,
        bytes: Vec<u8>,
    },
    /// A datagram from a server to a box's UDP client service.
    Pushed {
        box_id: BoxId,
        service: ServiceName,
        sock: Arc<UdpSocket>,
        peer: SocketAddr,
        bytes: Vec<u8>,
    },
    Control(Call),
    Revoked(HashSet<String>),
    /// A new snaptd said HELLO: hand everything over.
    SuccessorReady(upgrade::Successor),
    /// The new snaptd did not start; nothing had moved.
    UpgradeAbandoned,
}

/// How much longer than the box the SNAPT lets a quiet flow live.
const FLOW_GRACE: Duration = Duration::from_secs(10);

struct STunnel {
    out: TunnelOut,
    identity: BoxId,
    serial: String,
    /// Its TCP socket, for `TCP_INFO` (path notices).
    watch: Option<relay_io::transport::TcpWatch>,
    /// Aborted when the tunnel is dropped, so a closed or refused tunnel
    /// gives its socket back at once, not when the peer closes.
    reader: Option<AbortHandle>,
}

impl Drop for STunnel {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

/// The server daemon's core loop.
pub struct ServerDriver {
    cfg: SnaptConfig,
    server: Server,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    tls: watch::Sender<Arc<rustls::ServerConfig>>,
    tunnels: HashMap<TunnelId, STunnel>,
    locals: Locals<Key>,
    /// Connects toward services in flight (aborted when their stream is
    /// reset first), and each box's budget of them.
    connecting: HashMap<Key, AbortHandle>,
    admission: admission::ConnectAdmission,
    /// Serials of revoked box certificates (the CRL as last loaded): a
    /// tunnel that carries one is closed, whenever it was authenticated.
    revoked: HashSet<String>,
    /// Datagram flows: toward the real services, and from servers to the
    /// boxes' UDP client services.
    flows: ServerFlows,
    started: Instant,
    /// Accept errors of the tunnel and client-service listeners.
    accept_stats: AcceptStats,
    /// The bound on TLS handshakes at once, and its counters.
    handshakes: handshakes::Handshakes,
    /// Tunnel ids handed out.
    next_tunnel: Arc<AtomicU64>,
    /// Path notices for servers (`[qos]` and services with `qos_notify`).
    qos: Option<qos::RelayQos>,
    /// Drained for maintenance: when the sessions left are ended.
    drain_deadline: Option<Instant>,
    /// Copies of the listening sockets, for an upgrade.
    listen_fds: Vec<(upgrade::Label, std::os::fd::OwnedFd)>,
    /// The accept loops and receive loops of the listening sockets.
    listen_tasks: Vec<AbortHandle>,
    /// What a predecessor handed over, until `run` takes it.
    inherited: Option<upgrade::Inheritance>,
    /// The predecessor, waiting for TAKEN.
    predecessor: Option<daemon::handoff::Channel>,
    /// How to start a successor.
    upgrade_cmd: Option<(PathBuf, Vec<std::ffi::OsString>)>,
    /// An upgrade is under way.
    upgrading: bool,
    heartbeat: Option<daemon::Heartbeat>,
}

impl std::fmt::Debug for ServerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerDriver")
            .field("listen", &self.cfg.listen)
            .field("tunnels", &self.tunnels.len())
            .finish_non_exhaustive()
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn pref(cfg: &SnaptConfig) -> CipherPreference {
    match cfg.tls.prefer {
        config::CipherChoice::Auto => CipherPreference::Auto,
        config::CipherChoice::Chacha20 => CipherPreference::Chacha20,
        config::CipherChoice::Aes => CipherPreference::Aes,
    }
}

/// Builds the TLS server configuration from the files in `cfg`.
pub fn build_tls(cfg: &SnaptConfig) -> Result<Arc<rustls::ServerConfig>, tls::TlsError> {
    server_config(
        &cfg.tls.ca,
        &cfg.tls.cert,
        &cfg.tls.key,
        cfg.tls.crl.as_deref(),
        pref(cfg),
    )
}

impl ServerDriver {
    /// A driver for `cfg`; `seed` feeds session ids (pass real entropy).
    pub fn new(
        cfg: SnaptConfig,
        seed: u64,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let tls_cfg = build_tls(&cfg)?;
        let revoked = match &cfg.tls.crl {
            Some(crl) => revoked_serials(crl)?,
            None => HashSet::new(),
        };
        let server = Server::new(cfg.server.clone(), seed)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink_tx = tx.clone();
        let sink: Sink<Key> = Arc::new(move |ev| sink_tx.send(Input::Local(ev)).is_ok());
        let (tls, _) = watch::channel(tls_cfg);
        Ok(Self {
            server,
            tx,
            rx,
            tls,
            tunnels: HashMap::new(),
            locals: Locals::new(sink),
            connecting: HashMap::new(),
            admission: admission::ConnectAdmission::default(),
            revoked,
            flows: ServerFlows::default(),
            started: Instant::now(),
            accept_stats: AcceptStats::default(),
            handshakes: handshakes::Handshakes::new(cfg.max_handshakes),
            drain_deadline: None,
            listen_fds: Vec::new(),
            listen_tasks: Vec::new(),
            inherited: None,
            predecessor: None,
            upgrade_cmd: None,
            upgrading: false,
            heartbeat: None,
            next_tunnel: Arc::new(AtomicU64::new(1)),
            qos: cfg.qos.listen.is_some().then(|| {
                let services = cfg
                    .qos_services()
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect();
                qos::RelayQos::new(qos_notify::Hub::new(), services, cfg.qos.heartbeat)
            }),
            cfg,
        })
    }

    /// The hub of the boxes' path notices (with `[qos] listen` only).
    pub fn qos_hub(&self) -> Option<qos_notify::Hub> {
        self.qos.as_ref().map(|q| q.hub().clone())
    }

    /// A handle for control requests.
    pub fn control_handle(&self) -> mpsc::UnboundedSender<Call> {
        control::forward_calls(self.tx.clone(), Input::Control)
    }

    /// Listens for tunnels and client services and runs until `life.stop`.
    pub async fn run(mut self, life: Lifecycle) -> std::io::Result<()> {
        let Lifecycle {
            stop: mut shutdown,
            ready,
            heartbeat,
        } = life;
        self.heartbeat = Some(heartbeat.clone());
        self.start_listeners(&heartbeat).await?;
        if let Some(crl) = self.cfg.tls.crl.clone() {
            self.spawn_crl_watch(crl);
        }
        if self.inherited.is_some() {
            self.adopt();
            self.tell_predecessor().await;
        }
        let _ = ready.send(());
        let mut drain = Drain::default();
        let mut turn = tokio::time::interval(TURN_EVERY);
        turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut qos_turn = tokio::time::interval(qos::SAMPLE_EVERY);
        qos_turn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush();
            heartbeat.beat();
            let qos_on = self.qos.as_ref().is_some_and(|q| q.active());
            if drain.finished(self.locals.len()) {
                break;
            }
            let deadline = drain.deadline(
                self.server
                    .poll_timeout()
                    .map(|(d, _)| tokio::time::Instant::from_std(d)),
            );
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(Input::SuccessorReady(s)) => {
                        if self.hand_over(s).await {
                            // The control reply and the tunnels' closes go
                            // out; the successor owns everything else.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            std::process::exit(0);
                        }
                    }
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    self.server.handle_timeout(now());
                }
                _ = turn.tick() => {
                    self.sweep_flows();
                    self.drain_tick();
                }
                _ = qos_turn.tick(), if qos_on => self.qos_tick(),
                _ = async {
                    match self.admission.next_wake(now()) {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => self.start_ready_connects(),
                _ = &mut shutdown, if !drain.started() => {
                    heartbeat.stopping();
                    info!(open = self.locals.len(), grace = ?self.cfg.shutdown_grace, "draining before shutdown");
                    drain.start(self.cfg.shutdown_grace);
                }
            }
        }
        let boxes: Vec<BoxId> = self.server.sessions().map(|s| s.owner().clone()).collect();
        for b in boxes {
            self.server
                .disconnect(&b, DisconnectCode::Shutdown, "snaptd shutting down");
        }
        self.flush();
        // Connections still open after the grace are cut (RST).
        self.locals.abort_where(|_| true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }

    /// Listens for tunnels, client services and the qos feed (on sockets
    /// a predecessor handed over, or bound now).
    async fn start_listeners(&mut self, heartbeat: &daemon::Heartbeat) -> std::io::Result<()> {
        let listener = self
            .listen_tcp(upgrade::Label::Tunnel(self.cfg.listen))
            .await?;
        info!(listen = %self.cfg.listen, "accepting tunnels");
        let task = self.spawn_acceptor(listener);
        heartbeat.watch_task("tunnel", task.clone());
        self.listen_tasks.push(task);
        for task in self.spawn_client_service_listeners().await? {
            heartbeat.watch_task("client service", task.clone());
            self.listen_tasks.push(task);
        }
        if let Some(task) = self.spawn_qos_feed().await? {
            heartbeat.watch_task("qos feed", task.clone());
            self.listen_tasks.push(task);
        }
        Ok(())
    }

    fn spawn_acceptor(&self, listener: TcpListener) -> AbortHandle {
        let tls = self.tls.subscribe();
        let door = self.door();
        let handshakes = self.handshakes.clone();
        spawn_accept_loop(
            listener,
            "tunnel",
            self.accept_stats.clone(),
            move |(tcp, peer)| {
                if door.tx.is_closed() {
                    return false;
                }
                tune_tunnel(&tcp);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.borrow().clone());
                tokio::spawn(
                    handshakes
                        .clone()
                        .authenticate(tcp, peer, acceptor, door.clone()),
                );
                true
            },
        )
        .abort_handle()
    }

    /// Where authenticated tunnels enter this driver.
    pub fn door(&self) -> TunnelDoor {
        TunnelDoor {
            tx: self.tx.clone(),
            next: self.next_tunnel.clone(),
        }
    }

    /// One listener per (client service, box that offers it), on the address
    /// allocated to that box (boxes get addresses in order of first mention).
    async fn spawn_client_service_listeners(&mut self) -> std::io::Result<Vec<AbortHandle>> {
        let mut tasks = Vec::new();
        let mut order: Vec<String> = Vec::new();
        for c in &self.cfg.client_services {
            for b in &c.boxes {
                if !order.contains(b) {
                    order.push(b.clone());
                }
            }
        }
        let addrs: HashMap<String, IpAddr> = order
            .iter()
            .cloned()
            .zip(self.cfg.client_service_addresses.iter().copied())
            .collect();
        for c in self.cfg.client_services.clone() {
            for b in &c.boxes {
                let (Some(ip), Ok(box_id)) = (addrs.get(b), BoxId::new(b)) else {
                    warn!(service = %c.name, box_id = %b, "no client-service address left for this box; skipped");
                    continue;
                };
                let addr = SocketAddr::new(*ip, c.port);
                if c.protocol == Protocol::Udp {
                    let sock = Arc::new(self.listen_udp(upgrade::Label::ClientUdp(addr)).await?);
                    info!(service = %c.name, %box_id, %addr, "UDP client service listening");
                    let (tx, service, s2) = (self.tx.clone(), c.name.clone(), sock.clone());
                    let task = spawn_receiver(sock, move |peer, bytes| {
                        tx.send(Input::Pushed {
                            box_id: box_id.clone(),
                            service: service.clone(),
                            sock: s2.clone(),
                            peer,
                            bytes,
                        })
                        .is_ok()
                    });
                    tasks.push(task);
                    continue;
                }
                let listener = self.listen_tcp(upgrade::Label::ClientTcp(addr)).await?;
                info!(service = %c.name, %box_id, %addr, "client service listening");
                let (tx, service) = (self.tx.clone(), c.name.clone());
                let task = spawn_accept_loop(
                    listener,
                    "client service",
                    self.accept_stats.clone(),
                    move |(stream, peer)| {
                        tx.send(Input::ClientAccepted {
                            box_id: box_id.clone(),
                            service: service.clone(),
                            stream,
                            peer,
                        })
                        .is_ok()
                    },
                );
                tasks.push(task.abort_handle());
            }
        }
        Ok(tasks)
    }

    fn spawn_crl_watch(&self, crl: PathBuf) {
        let tx = self.tx.clone();
        let tls = self.tls.clone();
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            let stamp = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let mut seen: Option<SystemTime> = stamp(&crl);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = stamp(&crl);
                if now == seen {
                    continue;
                }
                seen = now;
                match (build_tls(&cfg), revoked_serials(&crl)) {
                    (Ok(new), Ok(revoked)) => {
                        info!(path = %crl.display(), revoked = revoked.len(), "revocation list reloaded");
                        tls.send_replace(new);
                        if tx.send(Input::Revoked(revoked)).is_err() {
                            return;
                        }
                    }
                    (Err(e), _) => {
                        warn!(error = %e, "revocation list not reloaded; keeping the previous one")
                    }
                    (_, Err(e)) => {
                        warn!(error = %e, "revocation list not reloaded; keeping the previous one")
                    }
                }
            }
        });
    }

    // ---- inputs ------------------------------------------------------------

    fn handle(&mut self, input: Input) {
        match input {
            Input::TunnelUp {
                tunnel,
                identity,
                serial,
                tx,
                watch,
            } => {
                if self.revoked.contains(&serial) {
                    // Authenticated under a CRL older than the one loaded
                    // since: dropped unheard (its reader ends with it).
                    daemon::warn_throttled!(box_id = %identity, tunnel = tunnel.0, "tunnel of a revoked certificate closed");
                    return;
                }
                self.server
                    .handle_tunnel_up(tunnel, identity.clone(), now());
                self.tunnels.insert(
                    tunnel,
                    STunnel {
                        out: TunnelOut::new(tx),
                        identity,
                        serial,
                        watch,
                        reader: None,
                    },
                );
            }
            Input::TunnelReader { tunnel, reader } => match self.tunnels.get_mut(&tunnel) {
                Some(t) => t.reader = Some(reader),
                None => reader.abort(),
            },
            Input::TunnelBytes { tunnel, bytes } => self.server.handle_input(tunnel, &bytes, now()),
            Input::TunnelLost { tunnel } => {
                self.tunnels.remove(&tunnel);
                self.server.handle_tunnel_lost(tunnel, now());
            }
            Input::TunnelWritten { tunnel, n } => {
                if let Some(t) = self.tunnels.get_mut(&tunnel) {
                    t.out.written(n);
                    self.server.set_tunnel_room(tunnel, t.out.room());
                }
            }
            // A connect whose stream was reset meanwhile was aborted and
            // its budget given back; a late result of it is dropped.
            Input::TargetConnected { key, .. } if !self.connecting.contains_key(&key) => {}
            Input::TargetConnected { key, result } => {
                self.connecting.remove(&key);
                self.admission.done(&key.0);
                self.start_ready_connects();
                self.target_connected(key, result);
            }
            Input::ClientAccepted {
                box_id,
                service,
                stream,
                peer,
            } => {
                let codec = self
                    .cfg
                    .client_services
                    .iter()
                    .find(|c| c.name == service && c.protocol == Protocol::Tcp)
                    .map_or(Codec::None, |c| c.compress.codec());
                let opened = self.server.session_mut(&box_id).map(|s| {
                    s.streams()
                        .open_with_codec(StreamKind::Stream, service.clone(), None, codec)
                });
                match opened {
                    Some(Ok(sid)) => {
                        debug!(%box_id, %service, %peer, stream = %sid, "client service connection");
                        let key = (box_id, sid);
                        if let Err(e) = self.locals.set_codec(key.clone(), codec) {
                            self.codec_failed(&key, &e);
                        } else {
                            self.locals.attach(key, stream);
                        }
                    }
                    Some(Err(e)) => {
                        daemon::warn_throttled!(%box_id, %service, %peer, error = %e, "client service refused")
                    }
                    None => {
                        daemon::warn_throttled!(%box_id, %service, %peer, "client service refused: the box is not connected")
                    }
                }
            }
            Input::Local(LocalEvent::Data { key, bytes, ack }) => {
                match self.locals.queue(&key, bytes, ack) {
                    Ok(()) => self.push_pending(&key),
                    Err(e) => self.codec_failed(&key, &e),
                }
            }
            Input::Local(LocalEvent::End { key, error }) => match error {
                Some(e) => {
                    self.locals.abort(&key);
                    if let Some(s) = self.server.session_mut(&key.0) {
                        let _ = s.streams().reset(key.1, ResetCode::ApplicationError, &e);
                    }
                }
                None => {
                    self.locals.mark_eof(&key);
                    self.push_pending(&key);
                }
            },
            Input::Local(LocalEvent::Delivered { key, n, plain }) => {
                if let Err(e) = self.locals.drained(&key, plain) {
                    self.codec_failed(&key, &e);
                }
                if let Some(s) = self.server.session_mut(&key.0) {
                    let _ = s.streams().delivered(key.1, n);
                }
            }
            Input::UdpOut { key, bytes } => {
                if let Some(f) = self.flows.get_mut(&key) {
                    f.heard_from_server(now());
                }
                if let Some(s) = self.server.session_mut(&key.0) {
                    let _ = s.streams().send_datagram(key.1, bytes);
                }
            }
            Input::Pushed {
                box_id,
                service,
                sock,
                peer,
                bytes,
            } => self.pushed_datagram(box_id, service, sock, peer, bytes),
            Input::Control((control::Request::Upgrade, reply)) => self.start_upgrade(reply),
            Input::Control((req, reply)) => {
                let _ = reply.send(self.control(req));
            }
            Input::UpgradeAbandoned => self.upgrading = false,
            // Handled by the loop itself.
            Input::SuccessorReady(_) => {}
            Input::Revoked(serials) => {
                let victims: HashSet<BoxId> = self
                    .tunnels
                    .values()
                    .filter(|t| serials.contains(&t.serial))
                    .map(|t| t.identity.clone())
                    .collect();
                for b in victims {
                    warn!(box_id = %b, "certificate revoked: ending its session");
                    self.server
                        .disconnect(&b, DisconnectCode::Requested, "certificate revoked");
                }
                self.flush();
                // Every tunnel of a revoked certificate, in a session or
                // spare (a standby, one between sessions): closed, so none
                // can open a session later.
                let spare: Vec<TunnelId> = self
                    .tunnels
                    .iter()
                    .filter(|(_, t)| serials.contains(&t.serial))
                    .map(|(id, _)| *id)
                    .collect();
                for t in spare {
                    self.tunnels.remove(&t);
                    self.server.handle_tunnel_lost(t, now());
                }
                self.revoked = serials;
            }
        }
    }

    fn push_pending(&mut self, key: &Key) {
        if let Some(session) = self.server.session_mut(&key.0) {
            self.locals.push(key, key.1, &mut session.streams());
        }
    }

    // ---- outputs -------------------------------------------------------------

    fn flush(&mut self) {
        loop {
            let mut moved = false;
            while let Some(tx) = self.server.poll_transmit() {
                moved = true;
                let Some(t) = self.tunnels.get_mut(&tx.tunnel) else {
                    continue;
                };
                match t.out.send(tx.bytes) {
                    Sent::Room | Sent::Full => {
                        self.server.set_tunnel_room(tx.tunnel, t.out.room());
                    }
                    Sent::Overflow => {
                        // The box does not read what it asked for (PINGs,
                        // say): give the tunnel up before it grows us.
                        warn!(box_id = %t.identity, tunnel = tx.tunnel.0, "the box stopped reading its tunnel: closed");
                        self.tunnels.remove(&tx.tunnel);
                        self.server.handle_tunnel_lost(tx.tunnel, now());
                    }
                }
            }
            while let Some(ev) = self.server.poll_event() {
                moved = true;
                self.event(ev);
            }
            if !moved {
                return;
            }
        }
    }

    fn event(&mut self, ev: ServerEvent) {
        let ServerEvent { box_id, event } = ev;
        if let Event::CloseTunnel { tunnel, reason } = &event {
            debug!(box_id = ?box_id, ?tunnel, ?reason, "closing tunnel");
            self.tunnels.remove(tunnel);
            return;
        }
        let Some(b) = box_id else { return };
        match event {
            Event::StreamOpened {
                stream,
                kind,
                service,
                dest,
                codec,
            } => self.open_target(b, stream, kind, service, dest, codec),
            Event::Data { stream, bytes } => {
                let key = (b, stream);
                if let Err(e) = self.locals.deliver(key.clone(), WriteCmd::Data(bytes)) {
                    self.codec_failed(&key, &e);
                }
            }
            Event::Finished { stream } => {
                let key = (b, stream);
                if let Err(e) = self.locals.deliver(key.clone(), WriteCmd::Finish) {
                    self.codec_failed(&key, &e);
                }
            }
            Event::StreamReset {
                stream,
                code,
                reason,
            } => {
                debug!(box_id = %b, %stream, ?code, %reason, "stream reset");
                let key = (b, stream);
                self.locals.abort(&key);
                self.flows.remove(&key);
                if let Some(c) = self.connecting.remove(&key) {
                    c.abort();
                    self.admission.done(&key.0);
                    self.start_ready_connects();
                } else {
                    self.admission.cancel(&key.0, key.1);
                }
            }
            Event::StreamClosed { stream } => {
                self.flows.remove(&(b.clone(), stream));
                self.locals.remove(&(b, stream))
            }
            Event::Writable { stream } => self.push_pending(&(b, stream)),
            Event::Connected { session_id } => info!(box_id = %b, session_id, "box connected"),
            Event::SwitchStarted { kind, .. } => info!(box_id = %b, ?kind, "handover started"),
            Event::SwitchCompleted { kind, to, .. } => {
                info!(box_id = %b, ?kind, tunnel = ?to, "handover complete")
            }
            Event::PathReport(r) => self.qos_report(b, r),
            Event::SessionClosed { code, reason } => {
                info!(box_id = %b, ?code, %reason, "session released");
                self.qos_forget(&b);
                self.locals.abort_where(|(x, _)| *x == b);
                self.flows.remove_box(&b);
                let admission = &mut self.admission;
                self.connecting.retain(|(x, _), c| {
                    let keep = *x != b;
                    if !keep {
                        c.abort();
                        admission.done(x);
                    }
                    keep
                });
                self.admission.forget(&b);
            }
            Event::Datagram { flow, bytes } => {
                if let Some(f) = self.flows.get_mut(&(b, flow)) {
                    f.heard_from_box(now());
                    relay_io::udp::send(&f.sock, bytes, f.destination());
                }
            }
            Event::Refused { .. } | Event::NeedTunnel | Event::CloseTunnel { .. } => {}
        }
    }

    fn open_target(
        &mut self,
        b: BoxId,
        stream: StreamId,
        kind: StreamKind,
        service: ServiceName,
        dest: Option<SocketAddr>,
        codec: Codec,
    ) {
        let refuse = |this: &mut Self, code: ResetCode, reason: String| {
            daemon::warn_throttled!(box_id = %b, %stream, %service, %reason, "stream refused");
            if let Some(s) = this.server.session_mut(&b) {
                let _ = s.streams().reset(stream, code, &reason);
            }
        };
        // Only named TCP services are compressed, and only as configured.
        let expected = match (dest, kind) {
            (None, StreamKind::Stream) => self
                .cfg
                .services
                .iter()
                .find(|s| s.name == service && s.protocol == Protocol::Tcp)
                .map_or(Codec::None, |s| s.compress.codec()),
            _ => Codec::None,
        };
        if codec != expected {
            return refuse(
                self,
                ResetCode::CodecMismatch,
                format!(
                    "the box compresses service {service} with {codec}, this relay expects {expected} (compress = in both configurations)"
                ),
            );
        }
        if let Some(dest) = dest {
            if !self.cfg.allows(b.as_str(), &dest) {
                return refuse(
                    self,
                    ResetCode::PolicyDenied,
                    format!("destination {dest} is not allowed for box {b}"),
                );
            }
            if kind == StreamKind::Datagram {
                return self.open_datagram_target(b, stream, service, Ok(dest));
            }
            return self.connect_target(b, stream, dest.to_string());
        }
        if kind == StreamKind::Datagram {
            let target = self
                .cfg
                .services
                .iter()
                .find(|s| s.name == service && s.protocol == Protocol::Udp)
                .ok_or_else(|| format!("no datagram service {service} on this SNAPT"))
                .and_then(|svc| {
                    std::net::ToSocketAddrs::to_socket_addrs(&svc.target)
                        .ok()
                        .and_then(|mut a| a.next())
                        .ok_or_else(|| format!("cannot resolve {}", svc.target))
                });
            return self.open_datagram_target(b, stream, service, target);
        }
        let Some(svc) = self
            .cfg
            .services
            .iter()
            .find(|s| s.name == service && s.protocol == Protocol::Tcp)
        else {
            return refuse(
                self,
                ResetCode::ConnectFailed,
                format!("no service {service} on this SNAPT"),
            );
        };

        let target = svc.target.clone();
        let key = (b.clone(), stream);
        self.connect_target(b, stream, target);
        if codec != Codec::None
            && self.locals.contains(&key)
            && let Err(e) = self.locals.set_codec(key.clone(), codec)
        {
            self.codec_failed(&key, &e);
        }
    }

    /// A compressed stream that cannot be compressed or decompressed (a
    /// corrupt record from the box): the stream is reset, nothing else.
    fn codec_failed(&mut self, key: &Key, e: &stream_codec::CodecError) {
        daemon::warn_throttled!(box_id = %key.0, stream = %key.1, error = %e, "compressed stream failed");
        self.locals.abort(key);
        if let Some(s) = self.server.session_mut(&key.0) {
            let _ = s.streams().reset(
                key.1,
                ResetCode::ProtocolViolation,
                &format!("compressed stream: {e}"),
            );
        }
    }

    /// A connect toward a service ended: the stream gets its connection,
    /// or is reset.
    fn target_connected(&mut self, key: Key, result: Result<TcpStream, String>) {
        match result {
            Ok(stream) if self.locals.contains(&key) => self.locals.attach(key, stream),
            Ok(_) => {}
            Err(e) => {
                daemon::warn_throttled!(box_id = %key.0, stream = %key.1, error = %e, "service unreachable");
                self.locals.remove(&key);
                if let Some(s) = self.server.session_mut(&key.0) {
                    let _ = s.streams().reset(key.1, ResetCode::ConnectFailed, &e);
                }
            }
        }
    }

    /// Connects stream `stream` of box `b` to `target` (`host:port`),
    /// now or when the box's connect budget allows (its data waits in the
    /// meantime).
    fn connect_target(&mut self, b: BoxId, stream: StreamId, target: String) {
        match self.admission.request(&b, stream, target, now()) {
            Ok(Some((stream, target))) => self.start_connect(b, stream, target),
            Ok(None) => self.locals.reserve((b, stream)),
            Err(why) => {
                daemon::warn_throttled!(box_id = %b, %stream, %why, "stream refused");
                if let Some(s) = self.server.session_mut(&b) {
                    let _ = s.streams().reset(stream, ResetCode::TooManyStreams, &why);
                }
            }
        }
    }

    /// Starts the waiting connects the budgets allow now.
    fn start_ready_connects(&mut self) {
        for (b, (stream, target)) in self.admission.ready(now()) {
            self.start_connect(b, stream, target);
        }
    }

    fn start_connect(&mut self, b: BoxId, stream: StreamId, target: String) {
        let key = (b, stream);
        self.locals.reserve(key.clone());
        let tx = self.tx.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let key = task_key;
            let result =
                match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&target))
                    .await
                {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(format!("{target}: {e}")),
                    Err(_) => Err(format!("{target}: connect timed out")),
                };
            let _ = tx.send(Input::TargetConnected { key, result });
        });
        self.connecting.insert(key, task.abort_handle());
    }
}

/// Where an authenticated tunnel enters the driver (the TLS acceptor's
/// way in; a test's, with an in-memory stream).
#[derive(Debug, Clone)]
pub struct TunnelDoor {
    tx: mpsc::UnboundedSender<Input>,
    next: Arc<AtomicU64>,
}

impl TunnelDoor {
    /// Hands the driver `stream`, authenticated as `identity` by the
    /// certificate with `serial`; false once the driver is gone.
    ///
    /// `gate` holds the writer back while the tunnel's TCP socket has more
    /// than a little unsent (see [`relay_io::gate::SendGate`]).
    pub fn enter<S>(
        &self,
        stream: S,
        identity: BoxId,
        serial: String,
        gate: Option<relay_io::gate::SendGate>,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let tunnel = TunnelId(self.next.fetch_add(1, Ordering::Relaxed));
        let span = tracing::info_span!("tunnel", box_id = %identity, tunnel = tunnel.0);
        let (rd, wr) = tokio::io::split(stream);
        let (wtx, wrx) = mpsc::unbounded_channel();
        let watch = gate.as_ref().and_then(|g| g.watch().ok());
        let written = self.tx.clone();
        spawn_writer(
            wr,
            wrx,
            gate,
            move |n| {
                let _ = written.send(Input::TunnelWritten { tunnel, n });
            },
            |_| {},
            span.clone(),
        );
        if self
            .tx
            .send(Input::TunnelUp {
                tunnel,
                identity,
                serial,
                tx: wtx,
                watch,
            })
            .is_err()
        {
            return false;
        }
        let (t1, t2) = (self.tx.clone(), self.tx.clone());
        let reader = spawn_reader(
            rd,
            move |bytes| t1.send(Input::TunnelBytes { tunnel, bytes }).is_ok(),
            move |_| {
                let _ = t2.send(Input::TunnelLost { tunnel });
            },
            span,
        )
        .abort_handle();
        self.tx.send(Input::TunnelReader { tunnel, reader }).is_ok()
    }
}

mod admission;
mod datagrams;
mod drain;
mod flows;
mod handshakes;
mod qos;
mod requests;
pub mod upgrade;

#[cfg(test)]
mod tests;
