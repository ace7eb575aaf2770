//! The box's adapters started together for one configuration, outside the
//! box driver: the link monitor and policy routing, a modem driver per LTE
//! uplink with an AT port, a Wi-Fi driver per uplink with wpa_supplicant,
//! the PAN side, transparent mode's rules, listener and datagram socket.
//! Each reports through one sink as an [`OsEvent`]; what the driver may ask
//! of them is in [`Commands`]. Problems are logged and leave the rest
//! running (a box without Bluetooth still relays).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::CnaptConfig;
use daemon::accept::{AcceptStats, spawn_accept_loop};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, info, warn};

use crate::linkmon::LinkEvent;
use crate::pan::PanHandle;
use crate::routing::{Change, Planner};
use crate::wifi::{WifiCommand, WifiEvent};
use crate::{guard, linkmon, modem_port, routing, transparent, transparent_udp, wifi};

/// Largest datagram diverted (the largest UDP payload).
const MAX_DATAGRAM: usize = 65_507;

/// What the adapters report.
#[derive(Debug)]
pub enum OsEvent {
    /// A link, address or default gateway changed (the current state first).
    Link(LinkEvent),
    /// No link monitor could be started: every uplink counts as up, and
    /// losses are noticed by the keepalives only.
    NoLinkMonitor,
    /// A modem driver's report.
    Modem {
        /// The uplink it drives.
        uplink: usize,
        /// What happened.
        event: modem_at::ModemEvent,
    },
    /// A Wi-Fi driver's report.
    Wifi {
        /// The uplink it drives.
        uplink: usize,
        /// What happened.
        event: WifiEvent,
    },
    /// A PAN client's connection redirected by transparent mode.
    Transparent {
        /// The connection.
        stream: TcpStream,
        /// The client.
        peer: SocketAddr,
        /// Where it was going.
        dest: SocketAddr,
    },
    /// A PAN client's datagram diverted by transparent mode.
    TransparentUdp {
        /// The client's socket.
        peer: SocketAddr,
        /// Where it was going.
        dest: SocketAddr,
        /// The payload.
        bytes: Vec<u8>,
    },
}

/// Where the adapters report; false once the driver is gone.
pub type Sink = Arc<dyn Fn(OsEvent) -> bool + Send + Sync>;

/// What the driver may ask of the adapters.
#[derive(Debug, Default)]
pub struct Commands {
    /// Policy routing's changes, applied in order (none: routing is off).
    pub routes: Option<mpsc::UnboundedSender<Change>>,
    /// Each uplink's Wi-Fi driver, if it has one.
    pub wifi: Vec<Option<mpsc::UnboundedSender<WifiCommand>>>,
    /// The PAN side, when configured.
    pub pan: Option<PanHandle>,
}

/// The running adapters.
#[derive(Debug, Default)]
pub struct Adapters {
    commands: Option<Commands>,
    /// Listeners that must run as long as the daemon (watched, stopped at
    /// the drain).
    listeners: Vec<(&'static str, AbortHandle)>,
    tasks: Vec<AbortHandle>,
    routing: Option<JoinHandle<()>>,
    /// Transparent mode is installed (with UDP or not).
    transparent: Option<bool>,
    /// The guard of the PAN-side listeners is installed.
    guard: bool,
}

impl Adapters {
    /// Starts every adapter `cfg` asks for; they report to `sink` and count
    /// their listeners' accept errors in `accept`.
    pub async fn start(cfg: &CnaptConfig, sink: Sink, accept: AcceptStats) -> Self {
        let mut a = Adapters {
            commands: Some(Commands {
                wifi: vec![None; cfg.uplinks.len()],
                ..Commands::default()
            }),
            ..Adapters::default()
        };
        a.start_guard(cfg);
        a.start_transparent(cfg, &sink, accept).await;
        if let Some(p) = &cfg.pan
            && let Some(c) = a.commands.as_mut()
        {
            let cli_dir = cfg
                .control_socket
                .parent()
                .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
            c.pan = Some(PanHandle::start(p, &cli_dir));
        }
        a.start_link_monitor(cfg, &sink).await;
        a.start_modems(cfg, &sink);
        a.start_wifis(cfg, &sink);
        a
    }

    /// The command side, for the driver (once).
    pub fn take_commands(&mut self) -> Commands {
        self.commands.take().unwrap_or_default()
    }

    /// The listeners that must run as long as the daemon.
    pub fn listeners(&self) -> Vec<(&'static str, AbortHandle)> {
        self.listeners.clone()
    }

    /// Stops everything: transparent mode's rules and routes removed,
    /// policy routing removed (at most 2 s), the tasks ended.
    pub async fn stop(mut self) {
        if self.guard
            && let Err(e) = transparent::apply(&guard::teardown())
        {
            warn!(error = %e, "guard of the PAN-side listeners not removed");
        }
        if let Some(udp) = self.transparent.take() {
            if let Err(e) = transparent::apply(&transparent::teardown()) {
                warn!(error = %e, "transparent mode: redirect not removed");
            }
            if udp && let Err(e) = transparent_udp::local_delivery(false).await {
                warn!(error = %e, "transparent mode: local delivery not removed");
            }
        }
        // The routing task removes every table and rule once its channel
        // closes (the driver's sender is gone by now).
        self.commands = None;
        if let Some(t) = self.routing.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        for (_, l) in self.listeners.drain(..) {
            l.abort();
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// The link monitor for the uplinks with an interface (those without
    /// one count as up: the driver knows), and policy routing beside it.
    async fn start_link_monitor(&mut self, cfg: &CnaptConfig, sink: &Sink) {
        let watched: Vec<String> = cfg
            .uplinks
            .iter()
            .filter_map(|u| u.interface.clone())
            .collect();
        if watched.is_empty() {
            return;
        }
        if cfg.routing.enabled {
            let planner = Planner::new(cfg.routing, &cfg.uplinks);
            let (tx, rx) = mpsc::unbounded_channel();
            for c in planner.clear_all() {
                let _ = tx.send(c);
            }
            match routing::spawn(rx, planner.clear_all()) {
                Ok(task) => {
                    self.routing = Some(task);
                    if let Some(c) = self.commands.as_mut() {
                        c.routes = Some(tx);
                    }
                }
                Err(e) => warn!(error = %e, "no policy routing: tunnels rely on SO_BINDTODEVICE"),
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        match linkmon::spawn(watched, tx).await {
            Ok(h) => self.tasks.push(h),
            Err(e) => {
                warn!(error = %e, "no link monitor: uplinks count as up, losses are noticed by the keepalives only");
                sink(OsEvent::NoLinkMonitor);
                return;
            }
        }
        let sink = sink.clone();
        self.tasks.push(
            tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if !sink(OsEvent::Link(ev)) {
                        break;
                    }
                }
            })
            .abort_handle(),
        );
    }

    /// The modem drivers of the uplinks that have one.
    fn start_modems(&mut self, cfg: &CnaptConfig, sink: &Sink) {
        for (i, u) in cfg.uplinks.iter().enumerate() {
            let Some(m) = &u.modem else { continue };
            let modem_cfg = match m.modem_config() {
                Ok(c) => c,
                Err((key, problem)) => {
                    // The configuration was validated at start.
                    warn!(uplink = %u.name, %key, %problem, "modem not started");
                    continue;
                }
            };
            let port = modem_port::ModemPort {
                path: m.port.clone(),
                baud: m.baud,
                cfg: modem_cfg,
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            self.tasks
                .push(tokio::spawn(modem_port::run(port, tx)).abort_handle());
            let sink = sink.clone();
            self.tasks.push(
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        if !sink(OsEvent::Modem { uplink: i, event }) {
                            break;
                        }
                    }
                })
                .abort_handle(),
            );
        }
    }

    /// The Wi-Fi drivers of the uplinks that have one.
    fn start_wifis(&mut self, cfg: &CnaptConfig, sink: &Sink) {
        for (i, u) in cfg.uplinks.iter().enumerate() {
            let Some(w) = &u.wifi else { continue };
            let Ok(networks) = w.networks() else {
                // Validated at start.
                continue;
            };
            let wcfg = wifi::WifiConfig {
                ctrl_path: w.ctrl.clone(),
                cli_dir: cfg
                    .control_socket
                    .parent()
                    .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf),
                networks,
                poll_interval: Duration::from_millis(w.poll_interval_ms),
                roam: w.roam_policy().unwrap_or_default(),
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let (ctx, crx) = mpsc::unbounded_channel();
            if let Some(slot) = self.commands.as_mut().and_then(|c| c.wifi.get_mut(i)) {
                *slot = Some(ctx);
            }
            self.tasks
                .push(tokio::spawn(wifi::run(wcfg, tx, crx)).abort_handle());
            let sink = sink.clone();
            self.tasks.push(
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        if !sink(OsEvent::Wifi { uplink: i, event }) {
                            break;
                        }
                    }
                })
                .abort_handle(),
            );
        }
    }

    /// The rule that keeps strangers on the uplinks' networks away from
    /// the PAN-side listeners (see [`guard`]).
    fn start_guard(&mut self, cfg: &CnaptConfig) {
        let uplinks: Vec<String> = cfg
            .uplinks
            .iter()
            .filter_map(|u| u.interface.clone())
            .collect();
        let mut listeners: Vec<SocketAddr> = cfg.services.iter().map(|s| s.listen).collect();
        listeners.extend(cfg.web.as_ref().map(|w| w.listen));
        listeners.extend(cfg.transparent.as_ref().map(|t| t.listen));
        let Some(rules) = guard::ruleset(&uplinks, &listeners) else {
            info!(
                "no uplink interface named: the PAN-side listeners are guarded by their addresses only"
            );
            return;
        };
        match transparent::apply(&rules) {
            Ok(()) => {
                self.guard = true;
                info!(uplinks = ?uplinks, "PAN-side listeners closed to the uplinks' networks");
            }
            Err(e) => {
                warn!(error = %e, "PAN-side listeners NOT closed to the uplinks' networks (nftables)")
            }
        }
    }

    /// Transparent mode: the redirect (and with UDP the diversion) of the
    /// PAN clients' traffic, its listener and datagram socket.
    async fn start_transparent(&mut self, cfg: &CnaptConfig, sink: &Sink, accept: AcceptStats) {
        let Some(t) = cfg.transparent.clone() else {
            return;
        };
        let listener = match TcpListener::bind(t.listen).await {
            Ok(l) => l,
            Err(e) => {
                warn!(listen = %t.listen, error = %e, "transparent mode off: cannot listen");
                return;
            }
        };
        let udp = t.udp && self.start_transparent_udp(t.listen, sink).await;
        if let Err(e) = transparent::apply(&transparent::ruleset(&t.interface, t.listen, udp)) {
            warn!(interface = %t.interface, error = %e, "transparent mode off: redirect not installed");
            return;
        }
        self.transparent = Some(udp);
        info!(interface = %t.interface, listen = %t.listen, udp, "transparent mode: PAN clients' traffic is relayed to its destination");
        let sink = sink.clone();
        let listen = t.listen;
        let task = spawn_accept_loop(listener, "transparent", accept, move |(stream, peer)| {
            match transparent::original_destination(&stream) {
                Ok(dest) if dest != listen => sink(OsEvent::Transparent { stream, peer, dest }),
                Ok(_) => {
                    debug!(%peer, "direct connection to the transparent port refused");
                    true
                }
                Err(e) => {
                    warn!(%peer, error = %e, "no original destination");
                    true
                }
            }
        });
        self.listeners.push(("transparent", task.abort_handle()));
    }

    /// The diverted datagrams' socket and the local delivery of marked
    /// packets; whether it all works.
    async fn start_transparent_udp(&mut self, listen: SocketAddr, sink: &Sink) -> bool {
        match transparent_udp::bridge_hooks_off() {
            Ok(true) => info!(
                "transparent UDP: bridged traffic no longer runs the IP hooks at bridge level (net.bridge.bridge-nf-call-iptables = 0)"
            ),
            Ok(false) => {}
            Err(e) => {
                warn!("transparent UDP off: {e}");
                return false;
            }
        }
        let sock = match transparent_udp::listener(listen) {
            Ok(s) => s,
            Err(e) => {
                warn!(%listen, error = %e, "transparent UDP off: no transparent socket");
                return false;
            }
        };
        if let Err(e) = transparent_udp::local_delivery(true).await {
            warn!(error = %e, "transparent UDP off: no local delivery of diverted datagrams");
            return false;
        }
        let sink = sink.clone();
        let recv = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                match transparent_udp::recv(&sock, &mut buf).await {
                    Ok((_, _, dest)) if dest == listen => {}
                    Ok((n, peer, dest)) => {
                        let bytes = buf[..n].to_vec();
                        if !sink(OsEvent::TransparentUdp { peer, dest, bytes }) {
                            break;
                        }
                    }
                    Err(e) => {
                        debug!(error = %e, "transparent datagram not read");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        self.listeners
            .push(("transparent datagrams", recv.abort_handle()));
        true
    }
}
