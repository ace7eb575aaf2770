//! The Wi-Fi uplink through wpa_supplicant's control socket (`wpactrl`,
//! blocking): one thread per connection — requests on one, the attached
//! event monitor on another — and every request bounded by a timeout (a
//! wedged connection is abandoned and reopened). Configures the box's
//! networks (ADD/SET/ENABLE_NETWORK), then reports association, signal
//! (SIGNAL_POLL), scan candidates (SCAN/SCAN_RESULTS) and events. While
//! the access point fades below the roaming threshold it scans every
//! [`ROAM_SCAN_INTERVAL`] and roams (`ROAM`) to a clearly stronger access
//! point of the same network.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wpa_ctrl::{Bss, Event, NetworkConfig, Request};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Scan period while the access point is under the roaming threshold.
pub const ROAM_SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Least time between two roams (a reassociation costs a gap).
const ROAM_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A directory of its own for each client socket: wpactrl names its socket
/// `wpa_ctrl_<pid>-1` and removes a file of that name when it opens, so two
/// clients of one process in one directory would steal each other's
/// replies; an abandoned client's cleanup must not hit its successor's.
fn client_dir(cfg: &WifiConfig, kind: &str) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = cfg
        .cli_dir
        .join(format!("{kind}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// What to reach and configure.
#[derive(Debug, Clone)]
pub struct WifiConfig {
    /// wpa_supplicant's control socket (`/run/wpa_supplicant/wlan0`).
    pub ctrl_path: PathBuf,
    /// Where our end of the socket lives.
    pub cli_dir: PathBuf,
    /// Networks to join, most preferred first; empty: wpa_supplicant's own
    /// configuration is used and left alone.
    pub networks: Vec<NetworkConfig>,
    /// STATUS / SIGNAL_POLL period.
    pub poll_interval: Duration,
    /// When to roam between access points of one network.
    pub roam: wpa_ctrl::RoamPolicy,
}

/// What the driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WifiEvent {
    /// Networks configured (their ids).
    Configured(Vec<u32>),
    /// Associated to `ssid` at `bssid` (`None`: not associated).
    Association {
        /// SSID.
        ssid: Option<String>,
        /// Access point.
        bssid: Option<String>,
        /// MHz.
        freq: Option<u32>,
    },
    /// Signal, dBm (`None` when the driver has none, e.g. wired).
    Signal(Option<i32>),
    /// The hotspots of the last scan.
    Candidates(Vec<Bss>),
    /// Roaming from one access point to another of the same network.
    Roaming {
        /// Access point left.
        from: String,
        /// Access point joined.
        to: String,
        /// The signal of the one left, dBm.
        signal_dbm: i32,
    },
    /// An event of wpa_supplicant's.
    Event(Event),
    /// wpa_supplicant cannot be reached or refused something: why.
    Problem(String),
}

/// Commands to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WifiCommand {
    /// Start a scan (the decision task's Search activity).
    Scan,
}

type Job = (String, oneshot::Sender<Result<String, String>>);

/// A request connection on its own thread.
struct Requester {
    jobs: std_mpsc::Sender<Job>,
}

impl Requester {
    fn open(cfg: &WifiConfig) -> Result<Self, String> {
        let dir = client_dir(cfg, "request")?;
        let client = wpactrl::Client::builder()
            .ctrl_path(&cfg.ctrl_path)
            .cli_path(&dir)
            .open()
            .map_err(|e| format!("{}: {e}", cfg.ctrl_path.display()))?;
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("wpa-request".into())
            .spawn(move || {
                let mut client = client;
                while let Ok((cmd, reply)) = rx.recv() {
                    let r = client.request(&cmd).map_err(|e| e.to_string());
                    let _ = reply.send(r);
                }
                drop(client);
                let _ = std::fs::remove_dir(&dir);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { jobs: tx })
    }

    async fn ask(&self, req: &Request) -> Result<String, String> {
        let cmd = req.render().map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((cmd.clone(), tx))
            .map_err(|_| "the request thread is gone".to_string())?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the request thread is gone".into()),
            Err(_) => Err(format!("{cmd}: no answer within {REQUEST_TIMEOUT:?}")),
        }
    }
}

/// The attached monitor on its own thread; events go to `out` until it
/// closes or the socket fails.
fn spawn_monitor(cfg: &WifiConfig, out: mpsc::UnboundedSender<String>) -> Result<(), String> {
    let dir = client_dir(cfg, "events")?;
    let client = wpactrl::Client::builder()
        .ctrl_path(&cfg.ctrl_path)
        .cli_path(&dir)
        .open()
        .and_then(wpactrl::Client::attach)
        .map_err(|e| format!("attach: {e}"))?;
    std::thread::Builder::new()
        .name("wpa-events".into())
        .spawn(move || {
            let mut client = client;
            loop {
                match client.recv() {
                    Ok(Some(msg)) => {
                        if out.send(msg).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        if out.is_closed() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => break,
                }
            }
            drop(client);
            let _ = std::fs::remove_dir(&dir);
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs the Wi-Fi driver until `out` closes: (re)connects to
/// wpa_supplicant every 2 s until it answers, configures the networks,
/// then polls and relays events and scans.
pub async fn run(
    cfg: WifiConfig,
    out: mpsc::UnboundedSender<WifiEvent>,
    mut cmds: mpsc::UnboundedReceiver<WifiCommand>,
) {
    let mut announced = false;
    while !out.is_closed() {
        match session(&cfg, &out, &mut cmds).await {
            Ok(()) => return,
            Err(why) => {
                if !announced {
                    warn!(ctrl = %cfg.ctrl_path.display(), %why, "wpa_supplicant unreachable; retrying every 2 s");
                    let _ = out.send(WifiEvent::Problem(why));
                    announced = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One connected period; `Err` when wpa_supplicant went away.
async fn session(
    cfg: &WifiConfig,
    out: &mpsc::UnboundedSender<WifiEvent>,
    cmds: &mut mpsc::UnboundedReceiver<WifiCommand>,
) -> Result<(), String> {
    let rq = Requester::open(cfg)?;
    wpa_ctrl::ack(&rq.ask(&Request::Ping).await?).map_err(|e| e.to_string())?;
    let (etx, mut erx) = mpsc::unbounded_channel();
    spawn_monitor(cfg, etx)?;
    info!(ctrl = %cfg.ctrl_path.display(), "wpa_supplicant connected");
    // Our networks, if any are configured, replace wpa_supplicant's own;
    // with none, its configuration file is left in charge.
    if !cfg.networks.is_empty() {
        for n in wpa_ctrl::parse_list_networks(&rq.ask(&Request::ListNetworks).await?) {
            let _ = rq.ask(&Request::RemoveNetwork(n.id)).await?;
        }
    }
    let mut ids = Vec::new();
    for net in &cfg.networks {
        let id = wpa_ctrl::parse_add_network(&rq.ask(&Request::AddNetwork).await?)
            .map_err(|e| e.to_string())?;
        for r in net.requests(id) {
            if let Err(e) = wpa_ctrl::ack(&rq.ask(&r).await?) {
                let _ = out.send(WifiEvent::Problem(format!("network {id}: {e}")));
            }
        }
        ids.push(id);
    }
    let _ = out.send(WifiEvent::Configured(ids));
    let mut tick = tokio::time::interval(cfg.poll_interval);
    let mut last: Option<(Option<String>, Option<String>)> = None;
    let mut roam = Roaming::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let st = wpa_ctrl::parse_status(&rq.ask(&Request::Status).await?)
                    .map_err(|e| e.to_string())?;
                let now = (st.connected().then(|| st.ssid.clone()).flatten(), st.connected().then(|| st.bssid.clone()).flatten());
                roam.current = now.0.clone().zip(now.1.clone());
                if last.as_ref() != Some(&now) {
                    let _ = out.send(WifiEvent::Association { ssid: now.0.clone(), bssid: now.1.clone(), freq: st.freq });
                    last = Some(now);
                }
                roam.signal = None;
                if st.connected() {
                    let sig = wpa_ctrl::parse_signal_poll(&rq.ask(&Request::SignalPoll).await?).ok().and_then(|s| s.rssi_dbm);
                    let _ = out.send(WifiEvent::Signal(sig));
                    roam.signal = sig;
                    if roam.wants_scan(&cfg.roam, Instant::now()) {
                        debug!(signal_dbm = ?sig, "weak access point: scanning for another");
                        if let Err(e) = wpa_ctrl::ack(&rq.ask(&Request::Scan).await?) {
                            debug!(error = %e, "scan refused");
                        }
                    }
                }
            }
            msg = erx.recv() => {
                let Some(msg) = msg else { return Err("the event monitor stopped".into()) };
                let Some(ev) = wpa_ctrl::parse_event(&msg) else { continue };
                debug!(?ev, "wpa event");
                if ev == Event::ScanResults {
                    let bss = wpa_ctrl::parse_scan_results(&rq.ask(&Request::ScanResults).await?);
                    if let Some(r) = roam.target(&cfg.roam, &bss, Instant::now()) {
                        match wpa_ctrl::ack(&rq.ask(&Request::Roam(r.to.clone())).await?) {
                            Ok(()) => {
                                info!(from = %r.from, to = %r.to, signal_dbm = r.signal_dbm, "roaming to a stronger access point");
                                let _ = out.send(WifiEvent::Roaming { from: r.from, to: r.to, signal_dbm: r.signal_dbm });
                            }
                            Err(e) => warn!(to = %r.to, error = %e, "roam refused"),
                        }
                    }
                    let _ = out.send(WifiEvent::Candidates(bss));
                }
                if ev == Event::Terminating {
                    return Err("wpa_supplicant is terminating".into());
                }
                if matches!(ev, Event::Connected { .. } | Event::Disconnected { .. }) {
                    // Re-read STATUS at once.
                    tick.reset_immediately();
                }
                if out.send(WifiEvent::Event(ev)).is_err() {
                    return Ok(());
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(WifiCommand::Scan) => {
                    if let Err(e) = wpa_ctrl::ack(&rq.ask(&Request::Scan).await?) {
                        debug!(error = %e, "scan refused");
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

/// The roaming state of one connected period.
#[derive(Debug, Default)]
struct Roaming {
    /// SSID and BSSID associated with.
    current: Option<(String, String)>,
    /// Its last signal.
    signal: Option<i32>,
    last_scan: Option<Instant>,
    last_roam: Option<Instant>,
}

/// A roam decided.
struct RoamTo {
    from: String,
    to: String,
    signal_dbm: i32,
}

impl Roaming {
    /// Weak, and no scan of ours for [`ROAM_SCAN_INTERVAL`].
    fn wants_scan(&mut self, p: &wpa_ctrl::RoamPolicy, now: Instant) -> bool {
        let weak = self.signal.is_some_and(|s| p.wants_candidates(s));
        let due = self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= ROAM_SCAN_INTERVAL);
        if weak && due {
            self.last_scan = Some(now);
        }
        weak && due
    }

    /// The access point to roam to after a scan, if any.
    fn target(&mut self, p: &wpa_ctrl::RoamPolicy, bss: &[Bss], now: Instant) -> Option<RoamTo> {
        let (ssid, bssid) = self.current.as_ref()?;
        let signal = self.signal?;
        if self
            .last_roam
            .is_some_and(|t| now.duration_since(t) < ROAM_MIN_INTERVAL)
        {
            return None;
        }
        let to = p.target(ssid, bssid, signal, bss)?;
        self.last_roam = Some(now);
        Some(RoamTo {
            from: bssid.clone(),
            to: to.bssid.clone(),
            signal_dbm: signal,
        })
    }
}
