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
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use wpa_ctrl::{Bss, Event, NetworkConfig, Request};

use crate::ctrl_socket::{self, CtrlClient};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Scan period while the access point is under the roaming threshold.
pub const ROAM_SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Least time between two roams (a reassociation costs a gap).
const ROAM_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// While associated with a strong access point, the decision task's
/// Search scans run at most this often: a full scan takes the radio off
/// its channel for 2–4 s (the traffic on it waits), and nothing needs it —
/// a weak access point makes the driver scan the network's channels by
/// itself. (wpa_supplicant's own `bgscan="simple:30:-70:300"` has the same
/// long period; unassociated, every Search scans.)
pub const BACKGROUND_SCAN_INTERVAL: Duration = Duration::from_secs(300);

/// How long the last scan's access points are trusted for a roam without
/// scanning again (wpa_supplicant keeps a BSS for 180 s by default). A
/// scan takes the radio off its channel for 2–4 s on a board; roaming at
/// once from a recent scan keeps the box from leaving the Wi-Fi uplink for
/// a signal only the current access point has.
pub const ROAM_CACHE_AGE: Duration = Duration::from_secs(60);

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
    /// The access point in use is weak and no recent scan names a better
    /// one of its network: a roaming scan started (its results follow as
    /// [`WifiEvent::Candidates`], a roam as [`WifiEvent::Roaming`]).
    RoamScan {
        /// The signal of the access point in use, dBm.
        signal_dbm: i32,
    },
    /// Roaming from one access point to another of the same network.
    Roaming {
        /// Access point left.
        from: String,
        /// Access point joined.
        to: String,
        /// The signal of the one left, dBm.
        signal_dbm: i32,
        /// The signal of the one joined in the scan that chose it, dBm.
        to_signal_dbm: i32,
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

/// The request connection, speaking [`Request`]s.
struct Requester(CtrlClient);

impl Requester {
    fn open(cfg: &WifiConfig) -> Result<Self, String> {
        CtrlClient::open(&cfg.ctrl_path, &cfg.cli_dir, "wpa", REQUEST_TIMEOUT).map(Self)
    }

    async fn ask(&self, req: &Request) -> Result<String, String> {
        let cmd = req.render().map_err(|e| e.to_string())?;
        self.0.ask(&cmd).await
    }
}

fn spawn_monitor(cfg: &WifiConfig, out: mpsc::UnboundedSender<String>) -> Result<(), String> {
    ctrl_socket::spawn_monitor(&cfg.ctrl_path, &cfg.cli_dir, "wpa", out)
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
                roam.current_freq = st.freq;
                if last.as_ref() != Some(&now) {
                    let _ = out.send(WifiEvent::Association { ssid: now.0.clone(), bssid: now.1.clone(), freq: st.freq });
                    last = Some(now);
                }
                roam.signal = None;
                if st.connected() {
                    let sig = wpa_ctrl::parse_signal_poll(&rq.ask(&Request::SignalPoll).await?).ok().and_then(|s| s.rssi_dbm);
                    roam.signal = sig;
                    // Weak, with a clearly stronger access point of the
                    // network in a recent scan: roam at once (reported
                    // before the weak signal, so that the box knows the
                    // uplink is about to be strong again); otherwise scan.
                    let now = Instant::now();
                    if let Some(r) = roam.target_from_last_scan(&cfg.roam, now) {
                        try_roam(&rq, out, r).await?;
                    } else if roam.wants_scan(&cfg.roam, now) {
                        // Only the network's known channels: a fraction of
                        // a full scan's time off the channel in use.
                        let freqs = roam.network_freqs();
                        debug!(signal_dbm = ?sig, ?freqs, "weak access point: scanning for another");
                        match wpa_ctrl::ack(&rq.ask(&Request::ScanFreqs(freqs)).await?) {
                            Ok(()) => {
                                if let Some(dbm) = sig {
                                    let _ = out.send(WifiEvent::RoamScan { signal_dbm: dbm });
                                }
                            }
                            Err(e) => debug!(error = %e, "scan refused"),
                        }
                    }
                    let _ = out.send(WifiEvent::Signal(sig));
                }
            }
            msg = erx.recv() => {
                let Some(msg) = msg else { return Err("the event monitor stopped".into()) };
                let Some(ev) = wpa_ctrl::parse_event(&msg) else { continue };
                debug!(?ev, "wpa event");
                if ev == Event::ScanResults {
                    let bss = wpa_ctrl::parse_scan_results(&rq.ask(&Request::ScanResults).await?);
                    let now = Instant::now();
                    roam.learn_freqs(&bss);
                    roam.last_scan_results = Some((now, bss.clone()));
                    if let Some(r) = roam.target(&cfg.roam, &bss, now) {
                        try_roam(&rq, out, r).await?;
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
                    if !roam.search_scan_due(&cfg.roam, Instant::now()) {
                        debug!("search scan skipped: associated with a strong access point");
                        continue;
                    }
                    if let Err(e) = wpa_ctrl::ack(&rq.ask(&Request::Scan).await?) {
                        debug!(error = %e, "scan refused");
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

/// Asks wpa_supplicant to roam; reported when it accepts. `Err` only when
/// wpa_supplicant went away.
async fn try_roam(
    rq: &Requester,
    out: &mpsc::UnboundedSender<WifiEvent>,
    r: RoamTo,
) -> Result<(), String> {
    match wpa_ctrl::ack(&rq.ask(&Request::Roam(r.to.clone())).await?) {
        Ok(()) => {
            info!(from = %r.from, to = %r.to, signal_dbm = r.signal_dbm, to_signal_dbm = r.to_signal_dbm, "roaming to a stronger access point");
            let _ = out.send(WifiEvent::Roaming {
                from: r.from,
                to: r.to,
                signal_dbm: r.signal_dbm,
                to_signal_dbm: r.to_signal_dbm,
            });
        }
        Err(e) => warn!(to = %r.to, error = %e, "roam refused"),
    }
    Ok(())
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
    /// The access points of the last scan (ours or wpa_supplicant's own),
    /// and when they came.
    last_scan_results: Option<(Instant, Vec<Bss>)>,
    /// The channel in use, MHz.
    current_freq: Option<u32>,
    /// The last Search scan while associated.
    last_search_scan: Option<Instant>,
    /// Channels where each network's access points were seen, MHz (by
    /// SSID; scans before the association count too).
    known_freqs: std::collections::BTreeMap<String, std::collections::BTreeSet<u32>>,
}

/// A roam decided.
#[derive(Debug, PartialEq)]
struct RoamTo {
    from: String,
    to: String,
    signal_dbm: i32,
    to_signal_dbm: i32,
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
        // What the scan said of the access point being left (and of the
        // others) is stale once it faded: the next roam scans again.
        self.last_scan_results = None;
        Some(RoamTo {
            from: bssid.clone(),
            to: to.bssid.clone(),
            signal_dbm: signal,
            to_signal_dbm: to.signal_dbm,
        })
    }

    /// Whether a Search scan asked for now should run: always when not
    /// associated or weak, else once per [`BACKGROUND_SCAN_INTERVAL`].
    fn search_scan_due(&mut self, p: &wpa_ctrl::RoamPolicy, now: Instant) -> bool {
        let strong = self.current.is_some() && self.signal.is_some_and(|s| !p.wants_candidates(s));
        if strong
            && self
                .last_search_scan
                .is_some_and(|t| now.duration_since(t) < BACKGROUND_SCAN_INTERVAL)
        {
            return false;
        }
        if strong {
            self.last_search_scan = Some(now);
        }
        true
    }

    /// Remembers the networks' channels from a scan (a bounded table: the
    /// scans of a day in the field name many networks).
    fn learn_freqs(&mut self, bss: &[Bss]) {
        const MAX_NETWORKS: usize = 256;
        for b in bss {
            if self.known_freqs.len() >= MAX_NETWORKS && !self.known_freqs.contains_key(&b.ssid) {
                continue;
            }
            self.known_freqs
                .entry(b.ssid.clone())
                .or_default()
                .insert(b.freq);
        }
    }

    /// The channels a roaming scan covers: where the network in use was
    /// seen and the one in use; empty (a full scan) when none is known.
    fn network_freqs(&self) -> Vec<u32> {
        let mut f = self
            .current
            .as_ref()
            .and_then(|(ssid, _)| self.known_freqs.get(ssid))
            .cloned()
            .unwrap_or_default();
        f.extend(self.current_freq);
        f.into_iter().collect()
    }

    /// The access point to roam to from the last scan, while it is younger
    /// than [`ROAM_CACHE_AGE`] and newer than the fade: a scan that heard
    /// the access point in use well above its signal now was taken before
    /// it faded, and what it says of the others is as old.
    fn target_from_last_scan(&mut self, p: &wpa_ctrl::RoamPolicy, now: Instant) -> Option<RoamTo> {
        let (at, bss) = self.last_scan_results.take()?;
        if now.duration_since(at) > ROAM_CACHE_AGE {
            return None;
        }
        let (_, bssid) = self.current.as_ref()?;
        let signal = self.signal?;
        if bss
            .iter()
            .any(|b| &b.bssid == bssid && b.signal_dbm >= signal + p.margin_db)
        {
            return None;
        }
        let r = self.target(p, &bss, now);
        if r.is_none() {
            self.last_scan_results = Some((at, bss));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bss(bssid: &str, ssid: &str, signal_dbm: i32) -> Bss {
        let line = format!("{bssid}\t2412\t{signal_dbm}\t[WPA2-PSK-CCMP][ESS]\t{ssid}\n");
        let mut v = wpa_ctrl::parse_scan_results(&format!(
            "bssid / frequency / signal level / flags / ssid\n{line}"
        ));
        v.remove(0)
    }

    fn weak_on_a(now: Instant) -> Roaming {
        Roaming {
            current: Some(("field".into(), "02:00:00:00:00:0a".into())),
            signal: Some(-80),
            last_scan_results: Some((
                now,
                vec![
                    bss("02:00:00:00:00:0a", "field", -78),
                    bss("02:00:00:00:00:0b", "field", -45),
                    bss("02:00:00:00:00:0c", "cafe", -30),
                ],
            )),
            ..Roaming::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_recent_scan_gives_the_roam_at_once_an_old_one_does_not() {
        let p = wpa_ctrl::RoamPolicy::default();
        let t0 = Instant::now();
        let mut r = weak_on_a(t0);
        let to = r
            .target_from_last_scan(&p, t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            to.to, "02:00:00:00:00:0b",
            "the same network, not the stronger cafe"
        );
        assert_eq!((to.signal_dbm, to.to_signal_dbm), (-80, -45));
        // Not again from the same scan: it is stale once a roam was made
        // from it (the access point left had faded since).
        assert_eq!(
            r.target_from_last_scan(&p, t0 + Duration::from_secs(30)),
            None
        );
        assert!(r.last_scan_results.is_none());
        // A scan older than the cache age is not trusted: scan first.
        let mut r = weak_on_a(t0);
        assert_eq!(
            r.target_from_last_scan(&p, t0 + ROAM_CACHE_AGE + Duration::from_secs(1)),
            None
        );
        assert!(r.wants_scan(&p, t0 + ROAM_CACHE_AGE + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_from_before_the_fade_is_not_trusted_and_a_roaming_scan_covers_the_network() {
        let p = wpa_ctrl::RoamPolicy::default();
        let t0 = Instant::now();
        let mut r = weak_on_a(t0);
        let (_, bss) = r.last_scan_results.take().unwrap();
        let mut stale = bss.clone();
        // The scan heard A strong: it predates A's fade to -80.
        stale[0].signal_dbm = -40;
        r.last_scan_results = Some((t0, stale));
        assert_eq!(r.target_from_last_scan(&p, t0), None);
        assert!(r.last_scan_results.is_none(), "a stale scan is dropped");
        r.current_freq = Some(2412);
        assert_eq!(
            r.network_freqs(),
            vec![2412],
            "what is known: the channel in use"
        );
        let mut other = bss.clone();
        other[1].freq = 2437;
        other[2].freq = 2462;
        r.learn_freqs(&other);
        assert_eq!(
            r.network_freqs(),
            vec![2412, 2437],
            "not the cafe's channel"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn search_scans_are_rare_on_a_strong_access_point_and_free_otherwise() {
        let p = wpa_ctrl::RoamPolicy::default();
        let t0 = Instant::now();
        let mut r = weak_on_a(t0);
        r.signal = Some(-55);
        assert!(r.search_scan_due(&p, t0), "the first one runs");
        for s in [10, 100, 290] {
            assert!(
                !r.search_scan_due(&p, t0 + Duration::from_secs(s)),
                "at {s} s"
            );
        }
        assert!(r.search_scan_due(&p, t0 + BACKGROUND_SCAN_INTERVAL));
        // Weak or not associated: every one runs.
        r.signal = Some(-80);
        assert!(r.search_scan_due(&p, t0 + BACKGROUND_SCAN_INTERVAL + Duration::from_secs(10)));
        r.signal = Some(-55);
        r.current = None;
        assert!(r.search_scan_due(&p, t0 + BACKGROUND_SCAN_INTERVAL + Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_strong_access_point_is_not_left() {
        let p = wpa_ctrl::RoamPolicy::default();
        let t0 = Instant::now();
        let mut r = weak_on_a(t0);
        r.signal = Some(-60);
        assert_eq!(r.target_from_last_scan(&p, t0), None);
        assert!(!r.wants_scan(&p, t0));
    }
}
