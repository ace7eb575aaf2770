//! The Wi-Fi access point on the PAN side: hostapd (its own unit on the
//! image, bridged into the PAN bridge by its base configuration) driven
//! through its control socket. The task reads the box's passphrase, sets
//! name, passphrase and security (`SET` … then `DISABLE`/`ENABLE`), shows
//! or hides the name with the pairing window (`UPDATE_BEACON` keeps the
//! phones on), sends strangers away when the policy is `closed`, lists the
//! phones joined, and does it all again when hostapd restarts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use config::{OutsideWindow, WifiAp};
use pairing::{BdAddr, Trusted, TrustedDevice};
use status::AccessPointView;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};
use wpa_ctrl::hostapd::{self, AccessPoint, ApEvent};

use super::shared::Shared;
use crate::ctrl_socket::{self, CtrlClient};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const HEALTH_EVERY: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// A station list longer than this is not walked (hostapd's own limit is
/// far lower; a reply loop must end).
const MAX_STATIONS: usize = 256;
/// Strangers on hostapd's deny list at most: a peer cycling random
/// addresses would grow it for ever; at this size it is cleared (whoever
/// comes back is refused again on arrival).
const MAX_DENIED: u32 = 256;

/// What the task needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub ap: WifiAp,
    pub bridge: String,
    pub cli_dir: PathBuf,
}

/// What the rest of the box sees: the view, and the network phones join
/// (for the QR code; `None` until the passphrase has been read).
pub(crate) struct Outputs {
    pub view: watch::Receiver<AccessPointView>,
    pub join: watch::Receiver<Option<AccessPoint>>,
}

/// Starts the task.
pub(crate) fn spawn(s: Settings, shared: Arc<Shared>) -> Outputs {
    let view = AccessPointView {
        interface: s.ap.interface.clone(),
        ssid: s.ap.ssid.clone(),
        security: s.ap.security.as_str().into(),
        outside_window: s.ap.outside_window.as_str().into(),
        bridge: s.bridge.clone(),
        problem: Some("starting".into()),
        ..Default::default()
    };
    let (view_tx, view_rx) = watch::channel(view);
    let (join_tx, join_rx) = watch::channel(None);
    let known = load_known(&s.ap.stations_file);
    let task = Task {
        s,
        shared,
        view: view_tx,
        join: join_tx,
        known,
        refused_total: 0,
    };
    tokio::spawn(task.run());
    Outputs {
        view: view_rx,
        join: join_rx,
    }
}

fn load_known(file: &std::path::Path) -> Trusted {
    match std::fs::read_to_string(file) {
        Ok(text) => Trusted::from_json(&text).unwrap_or_else(|e| {
            warn!(file = %file.display(), "access point's known phones not read, starting with none: {e}");
            Trusted::default()
        }),
        Err(_) => Trusted::default(),
    }
}

/// Reads the passphrase file (its first line).
fn read_passphrase(file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "passphrase file {}: {e} (written at provisioning: docs/image.md)",
            file.display()
        )
    })?;
    let p = text.lines().next().unwrap_or("").trim().to_string();
    if !hostapd::valid_passphrase(&p) {
        return Err(format!(
            "passphrase file {}: not a WPA passphrase (8 to 63 printable ASCII characters)",
            file.display()
        ));
    }
    Ok(p)
}

struct Task {
    s: Settings,
    shared: Arc<Shared>,
    view: watch::Sender<AccessPointView>,
    join: watch::Sender<Option<AccessPoint>>,
    known: Trusted,
    /// Strangers refused since start.
    refused_total: u64,
}

/// One connected period's state.
struct Up {
    rq: CtrlClient,
    events: mpsc::UnboundedReceiver<String>,
    hidden: bool,
    stations: BTreeSet<String>,
    state: String,
    /// Strangers on hostapd's deny list since the last window.
    refused: u32,
}

impl Task {
    async fn run(mut self) {
        let mut problem_logged: Option<String> = None;
        let mut changes = self.shared.subscribe();
        loop {
            if self.view.is_closed() && self.join.is_closed() {
                return;
            }
            match self.bring_up().await {
                Ok(mut up) => {
                    info!(interface = %self.s.ap.interface, ssid = %self.s.ap.ssid, security = self.s.ap.security.as_str(), hidden = up.hidden, "Wi-Fi access point up");
                    problem_logged = None;
                    let why = self.serve(&mut up, &mut changes).await;
                    warn!(interface = %self.s.ap.interface, "Wi-Fi access point lost: {why}; setting it up again");
                    self.publish(None, Some(why));
                }
                Err(e) => {
                    if problem_logged.as_deref() != Some(e.as_str()) {
                        warn!(interface = %self.s.ap.interface, "Wi-Fi access point not up: {e}; retrying every {RETRY_EVERY:?}");
                        problem_logged = Some(e.clone());
                    }
                    self.publish(None, Some(e));
                }
            }
            self.tick_window();
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Hidden now: outside a window, unless the policy keeps it visible.
    fn hidden_now(&self) -> bool {
        let open = self.shared.with(|w, now| w.is_open(now));
        !open && self.s.ap.outside_window != OutsideWindow::Visible
    }

    async fn bring_up(&mut self) -> Result<Up, String> {
        let passphrase = read_passphrase(&self.s.ap.passphrase_file)?;
        let ap = AccessPoint {
            ssid: self.s.ap.ssid.clone(),
            passphrase,
            security: self.s.ap.security,
        };
        self.join.send_replace(Some(ap.clone()));
        if !self.s.ap.ctrl.exists() {
            return Err(format!(
                "hostapd's control socket {} is missing: no access point radio ({}) or hostapd not running (cbox-hostapd.service starts when the radio is there)",
                self.s.ap.ctrl.display(),
                self.s.ap.interface
            ));
        }
        let rq = CtrlClient::open(&self.s.ap.ctrl, &self.s.cli_dir, "hostapd", REQUEST_TIMEOUT)?;
        let pong = rq.ask("PING").await?;
        if pong.trim() != "PONG" {
            return Err(format!("hostapd answered PING with {:?}", pong.trim()));
        }
        let hidden = self.hidden_now();
        let commands = ap.commands(hidden).map_err(|e| e.to_string())?;
        for c in commands
            .iter()
            .chain(["DISABLE".to_string(), "ENABLE".to_string()].iter())
        {
            let r = rq.ask(c).await?;
            // DISABLE of a BSS that is already down answers FAIL.
            if r.trim() != "OK" && c != "DISABLE" {
                let shown = if c.contains("pass") || c.contains("password") {
                    c.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
                } else {
                    c.clone()
                };
                return Err(format!("hostapd refused {shown}: {}", r.trim()));
            }
        }
        let (etx, events) = mpsc::unbounded_channel();
        ctrl_socket::spawn_monitor(&self.s.ap.ctrl, &self.s.cli_dir, "hostapd", etx)?;
        let mut up = Up {
            rq,
            events,
            hidden,
            stations: BTreeSet::new(),
            state: String::new(),
            refused: 0,
        };
        up.state = hostapd::parse_ap_state(&up.rq.ask("STATUS").await?)
            .unwrap_or("?")
            .to_string();
        let mut next = up.rq.ask("STA-FIRST").await?;
        while let Some(sta) = hostapd::parse_station(&next) {
            if up.stations.len() >= MAX_STATIONS || !up.stations.insert(sta.clone()) {
                break;
            }
            next = up.rq.ask(&format!("STA-NEXT {sta}")).await?;
        }
        self.publish(Some(&up), None);
        Ok(up)
    }

    /// Serves one connected period; returns why it ended.
    async fn serve(&mut self, up: &mut Up, changes: &mut watch::Receiver<u64>) -> String {
        let mut health_at = Instant::now() + HEALTH_EVERY;
        loop {
            let window_end = self.shared.with(|w, now| {
                w.deadline_ms()
                    .map(|d| Instant::now() + Duration::from_millis(d.saturating_sub(now)))
            });
            let wake = window_end.map_or(health_at, |t| t.min(health_at));
            tokio::select! {
                ev = up.events.recv() => match ev {
                    Some(msg) => {
                        if let Some(why) = self.event(up, &msg).await {
                            return why;
                        }
                    }
                    None => return "hostapd's event connection closed".into(),
                },
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake) => {
                    self.tick_window();
                    if Instant::now() >= health_at {
                        health_at = Instant::now() + HEALTH_EVERY;
                        match up.rq.ask("STATUS").await {
                            Ok(st) => up.state = hostapd::parse_ap_state(&st).unwrap_or("?").to_string(),
                            Err(e) => return e,
                        }
                    }
                }
            }
            let open = self.shared.with(|w, now| w.is_open(now));
            if open && up.refused > 0 {
                // Whoever was refused may join within the window.
                if let Err(e) = up.rq.ask(hostapd::DENY_CLEAR).await {
                    return e;
                }
                up.refused = 0;
            }
            let hidden = self.hidden_now();
            if hidden != up.hidden {
                let r = async {
                    for c in [hostapd::visibility(hidden), "UPDATE_BEACON".to_string()] {
                        let a = up.rq.ask(&c).await?;
                        if a.trim() != "OK" {
                            return Err(format!("hostapd refused {c}: {}", a.trim()));
                        }
                    }
                    Ok::<(), String>(())
                }
                .await;
                match r {
                    Ok(()) => {
                        info!(interface = %self.s.ap.interface, hidden, "pairing window applied to the access point");
                        up.hidden = hidden;
                    }
                    Err(e) => return e,
                }
            }
            self.publish(Some(up), None);
        }
    }

    /// The pairing window's own deadline (the Bluetooth task ticks it too;
    /// whoever comes first tells the other).
    fn tick_window(&self) {
        if self.shared.with(|w, now| w.tick(now)) {
            info!("pairing window closed (time up)");
            self.shared.changed();
        }
    }

    /// One monitor message; `Some(why)` when hostapd is going away.
    async fn event(&mut self, up: &mut Up, msg: &str) -> Option<String> {
        match hostapd::parse_ap_event(msg)? {
            ApEvent::StationJoined(sta) => {
                let open = self.shared.with(|w, now| w.is_open(now));
                let addr: Option<BdAddr> = sta.parse().ok();
                let known = addr.is_some_and(|a| self.known.contains(a));
                if open {
                    if let Some(a) = addr
                        && self.known.add(TrustedDevice {
                            address: a,
                            name: "Wi-Fi".into(),
                            paired_unix_ms: unix_ms(),
                        })
                    {
                        self.save_known();
                    }
                } else if self.s.ap.outside_window == OutsideWindow::Closed && !known {
                    info!(station = %sta, "a phone that never joined during a pairing window: refused");
                    if up.refused >= MAX_DENIED {
                        warn!(denied = up.refused, "hostapd's deny list full: cleared");
                        if let Err(e) = up.rq.ask(hostapd::DENY_CLEAR).await {
                            return Some(e);
                        }
                        up.refused = 0;
                    }
                    match hostapd::refuse(&sta) {
                        Ok(cmds) => {
                            for c in cmds {
                                if let Err(e) = up.rq.ask(&c).await {
                                    warn!(station = %sta, "could not refuse the phone: {e}");
                                }
                            }
                            up.refused += 1;
                            self.refused_total += 1;
                        }
                        Err(e) => warn!("{e}"),
                    }
                    return None;
                }
                info!(station = %sta, interface = %self.s.ap.interface, "phone joined the access point");
                if up.stations.len() < MAX_STATIONS {
                    up.stations.insert(sta);
                }
            }
            ApEvent::StationLeft(sta) => {
                if up.stations.remove(&sta) {
                    info!(station = %sta, "phone left the access point");
                }
            }
            ApEvent::Enabled => up.state = "ENABLED".into(),
            ApEvent::Disabled => up.state = "DISABLED".into(),
            ApEvent::Terminating => return Some("hostapd is terminating".into()),
            ApEvent::Other(_) => {}
        }
        None
    }

    fn save_known(&self) {
        let f = &self.s.ap.stations_file;
        let tmp = f.with_extension("tmp");
        let text = self.known.to_json();
        let r = (|| {
            if let Some(dir) = f.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, f)
        })();
        if let Err(e) = r {
            warn!(file = %f.display(), "access point's known phones not saved: {e}");
        }
    }

    fn publish(&self, up: Option<&Up>, problem: Option<String>) {
        let pairing_open = self.shared.with(|w, now| w.is_open(now));
        self.view.send_if_modified(|v| {
            let new = AccessPointView {
                state: up.map_or_else(|| "down".into(), |u| u.state.to_lowercase()),
                visible: up.is_some_and(|u| !u.hidden),
                stations: up.map_or_else(Vec::new, |u| u.stations.iter().cloned().collect()),
                known_phones: self.known.len(),
                strangers_refused: self.refused_total,
                pairing_open,
                problem,
                ..v.clone()
            };
            let changed = *v != new;
            *v = new;
            changed
        });
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
