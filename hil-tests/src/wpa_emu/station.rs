//! The station behind the wpa_supplicant emulator, without the socket:
//! the networks a client configured, the hotspots in range (signal set by
//! the scenario), scans, and association — picked as wpa_supplicant picks
//! (enabled network, highest priority, then strongest signal), lost when
//! the hotspot fades out of range, moved by `ROAM`. Requests in, replies
//! and [`Effect`]s (control events, link changes) out; time passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Authentication, association and the 4-way handshake.
pub const ASSOC_TIME: Duration = Duration::from_millis(150);
/// A roam's reassociation gap (fast transition between access points of
/// one network: frames are lost meanwhile, the carrier stays).
pub const ROAM_TIME: Duration = Duration::from_millis(60);
/// A scan of the channels the site uses.
pub const SCAN_TIME: Duration = Duration::from_millis(400);
/// Beacons are no longer heard below this.
pub const IN_RANGE_DBM: i32 = -90;
/// A network refusing the key is not tried again for this long.
const WRONG_KEY_PAUSE: Duration = Duration::from_secs(10);

/// An access point of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hotspot {
    /// SSID.
    pub ssid: String,
    /// Access point address.
    pub bssid: String,
    /// MHz.
    pub freq: u32,
    /// What the box hears; `None`: out of range.
    pub signal_dbm: Option<i32>,
    /// WPA2 passphrase; `None`: open.
    pub psk: Option<String>,
}

impl Hotspot {
    fn in_range(&self) -> bool {
        self.signal_dbm.is_some_and(|s| s >= IN_RANGE_DBM)
    }

    fn flags(&self) -> &'static str {
        if self.psk.is_some() {
            "[WPA2-PSK-CCMP][ESS]"
        } else {
            "[ESS]"
        }
    }
}

/// What the world must do to the Wi-Fi link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// Associated to this access point: carrier on, its radio conditions.
    Associated(String),
    /// Reassociating to this one: frames lost until [`LinkChange::Roamed`].
    Roaming(String),
    /// Reassociated.
    Roamed(String),
    /// Not associated any more: carrier off.
    Lost,
}

/// Something the station did besides replying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// An event for attached monitors (`<3>CTRL-EVENT-…`).
    Event(String),
    /// A change for the world's Wi-Fi link.
    Link(LinkChange),
}

#[derive(Debug, Clone, Default)]
struct Network {
    ssid: Option<String>,
    psk: Option<String>,
    open: bool,
    priority: i32,
    disabled: bool,
    paused_until: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Assoc {
    Idle,
    Joining {
        bssid: String,
        id: u32,
        done: Instant,
    },
    Roaming {
        bssid: String,
        id: u32,
        done: Instant,
    },
    Completed {
        bssid: String,
        id: u32,
    },
}

/// The emulated station.
#[derive(Debug)]
pub struct Station {
    hotspots: Vec<Hotspot>,
    networks: BTreeMap<u32, Network>,
    next_id: u32,
    assoc: Assoc,
    /// `DISCONNECT` holds the station until `RECONNECT`.
    held: bool,
    /// Not before this (a lost hotspot is followed by a scan).
    retry_at: Option<Instant>,
    scan_done: Option<Instant>,
    results: Vec<Hotspot>,
    roams: u32,
    effects: Vec<Effect>,
}

/// wpa_supplicant's value syntax: `"text"` or bare hex.
fn unquote(v: &str) -> Option<String> {
    if let Some(t) = v.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(t.to_string());
    }
    if !v.len().is_multiple_of(2) || v.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..v.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(v.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Station {
    /// A station hearing `hotspots`, with no network configured.
    pub fn new(hotspots: Vec<Hotspot>) -> Self {
        Self {
            hotspots,
            networks: BTreeMap::new(),
            next_id: 0,
            assoc: Assoc::Idle,
            held: false,
            retry_at: None,
            scan_done: None,
            results: Vec::new(),
            roams: 0,
            effects: Vec::new(),
        }
    }

    /// What happened since the last call.
    pub fn drain(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Roams completed so far.
    pub fn roams(&self) -> u32 {
        self.roams
    }

    /// The access point associated with (also during a roam, the target).
    pub fn associated(&self) -> Option<&str> {
        match &self.assoc {
            Assoc::Completed { bssid, .. } | Assoc::Roaming { bssid, .. } => Some(bssid),
            _ => None,
        }
    }

    fn event(&mut self, e: String) {
        self.effects.push(Effect::Event(format!("<3>{e}")));
    }

    fn hotspot(&self, bssid: &str) -> Option<&Hotspot> {
        self.hotspots
            .iter()
            .find(|h| h.bssid.eq_ignore_ascii_case(bssid))
    }

    /// The scenario changes what the box hears of `bssid`; `false` if no
    /// such hotspot exists.
    pub fn set_signal(&mut self, bssid: &str, signal_dbm: Option<i32>, now: Instant) -> bool {
        let Some(h) = self
            .hotspots
            .iter_mut()
            .find(|h| h.bssid.eq_ignore_ascii_case(bssid))
        else {
            return false;
        };
        h.signal_dbm = signal_dbm;
        let gone = !h.in_range();
        if gone
            && self
                .associated()
                .is_some_and(|b| b.eq_ignore_ascii_case(bssid))
        {
            // Beacon loss: mac80211 disconnects by itself.
            self.lose(bssid.to_string(), 4, true, now);
        }
        true
    }

    fn lose(&mut self, bssid: String, reason: u16, local: bool, now: Instant) {
        self.assoc = Assoc::Idle;
        self.event(format!(
            "CTRL-EVENT-DISCONNECTED bssid={bssid} reason={reason}{}",
            if local { " locally_generated=1" } else { "" }
        ));
        self.effects.push(Effect::Link(LinkChange::Lost));
        self.retry_at = Some(now + SCAN_TIME);
    }

    fn disconnect(&mut self, now: Instant) {
        if let Some(b) = self.associated().map(str::to_string) {
            self.lose(b, 3, true, now);
        } else {
            self.assoc = Assoc::Idle;
        }
    }

    /// The best hotspot to join: an enabled network's, highest priority,
    /// then strongest.
    fn candidate(&self, now: Instant) -> Option<(String, u32)> {
        let mut best: Option<(i32, i32, String, u32)> = None;
        for (id, n) in &self.networks {
            if n.disabled || n.paused_until.is_some_and(|t| now < t) {
                continue;
            }
            for h in &self.hotspots {
                if !h.in_range() || n.ssid.as_deref() != Some(h.ssid.as_str()) {
                    continue;
                }
                if n.open != h.psk.is_none() {
                    continue;
                }
                let key = (n.priority, h.signal_dbm.unwrap_or(i32::MIN));
                if best.as_ref().is_none_or(|b| key > (b.0, b.1)) {
                    best = Some((key.0, key.1, h.bssid.clone(), *id));
                }
            }
        }
        best.map(|(_, _, b, id)| (b, id))
    }

    /// Time passes: scans finish, associations complete or start.
    pub fn tick(&mut self, now: Instant) {
        if self.scan_done.is_some_and(|t| now >= t) {
            self.scan_done = None;
            self.results = self
                .hotspots
                .iter()
                .filter(|h| h.in_range())
                .cloned()
                .collect();
            self.event("CTRL-EVENT-SCAN-RESULTS ".into());
        }
        match self.assoc.clone() {
            Assoc::Joining { bssid, id, done } if now >= done => {
                let Some(h) = self.hotspot(&bssid).cloned() else {
                    self.assoc = Assoc::Idle;
                    return;
                };
                let net = self.networks.get(&id).cloned().unwrap_or_default();
                if h.psk.is_some() && net.psk != h.psk {
                    self.assoc = Assoc::Idle;
                    if let Some(n) = self.networks.get_mut(&id) {
                        n.paused_until = Some(now + WRONG_KEY_PAUSE);
                    }
                    self.event(format!(
                        "CTRL-EVENT-SSID-TEMP-DISABLED id={id} ssid=\"{}\" auth_failures=1 duration=10 reason=WRONG_KEY",
                        h.ssid
                    ));
                    return;
                }
                self.assoc = Assoc::Completed {
                    bssid: bssid.clone(),
                    id,
                };
                self.event(format!("Associated with {bssid}"));
                self.event(format!(
                    "CTRL-EVENT-CONNECTED - Connection to {bssid} completed [id={id} id_str=]"
                ));
                self.effects
                    .push(Effect::Link(LinkChange::Associated(bssid)));
            }
            Assoc::Roaming { bssid, id, done } if now >= done => {
                self.assoc = Assoc::Completed {
                    bssid: bssid.clone(),
                    id,
                };
                self.roams += 1;
                self.event(format!(
                    "CTRL-EVENT-CONNECTED - Connection to {bssid} completed [id={id} id_str=]"
                ));
                self.effects.push(Effect::Link(LinkChange::Roamed(bssid)));
            }
            Assoc::Idle if !self.held && self.retry_at.is_none_or(|t| now >= t) => {
                if let Some((bssid, id)) = self.candidate(now) {
                    self.event(format!("Trying to associate with {bssid}"));
                    self.assoc = Assoc::Joining {
                        bssid,
                        id,
                        done: now + ASSOC_TIME,
                    };
                }
            }
            _ => {}
        }
    }

    /// One request; the reply text.
    pub fn handle(&mut self, request: &str, now: Instant) -> String {
        let req = request.trim();
        let (cmd, args) = req.split_once(' ').unwrap_or((req, ""));
        let ok = |b: bool| if b { "OK\n" } else { "FAIL\n" }.to_string();
        match cmd {
            "PING" => "PONG\n".into(),
            "LEVEL" => "OK\n".into(),
            "STATUS" => self.status(),
            "SCAN" => {
                if self.scan_done.is_some() {
                    return "FAIL-BUSY\n".into();
                }
                self.scan_done = Some(now + SCAN_TIME);
                self.event("CTRL-EVENT-SCAN-STARTED ".into());
                "OK\n".into()
            }
            "SCAN_RESULTS" => {
                let mut s = String::from("bssid / frequency / signal level / flags / ssid\n");
                for h in &self.results {
                    s += &format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        h.bssid,
                        h.freq,
                        h.signal_dbm.unwrap_or(IN_RANGE_DBM),
                        h.flags(),
                        h.ssid
                    );
                }
                s
            }
            "SIGNAL_POLL" => match self.associated().and_then(|b| self.hotspot(b)) {
                Some(h) => {
                    let rssi = h.signal_dbm.unwrap_or(IN_RANGE_DBM);
                    let speed = match rssi {
                        s if s >= -60 => 144,
                        s if s >= -70 => 65,
                        _ => 13,
                    };
                    format!(
                        "RSSI={rssi}\nLINKSPEED={speed}\nNOISE=9999\nFREQUENCY={}\n",
                        h.freq
                    )
                }
                None => "FAIL\n".into(),
            },
            "LIST_NETWORKS" => {
                let mut s = String::from("network id / ssid / bssid / flags\n");
                let current = match &self.assoc {
                    Assoc::Completed { id, .. } | Assoc::Roaming { id, .. } => Some(*id),
                    _ => None,
                };
                for (id, n) in &self.networks {
                    let flags = if current == Some(*id) {
                        "[CURRENT]"
                    } else if n.disabled {
                        "[DISABLED]"
                    } else if n.paused_until.is_some_and(|t| now < t) {
                        "[TEMP-DISABLED]"
                    } else {
                        ""
                    };
                    s += &format!("{id}\t{}\tany\t{flags}\n", n.ssid.as_deref().unwrap_or(""));
                }
                s
            }
            "ADD_NETWORK" => {
                let id = self.next_id;
                self.next_id += 1;
                // A new network starts disabled, as wpa_supplicant's.
                self.networks.insert(
                    id,
                    Network {
                        disabled: true,
                        ..Network::default()
                    },
                );
                self.event(format!("CTRL-EVENT-NETWORK-ADDED {id}"));
                format!("{id}\n")
            }
            "SET_NETWORK" => ok(self.set_network(args)),
            "SELECT_NETWORK" | "ENABLE_NETWORK" | "DISABLE_NETWORK" | "REMOVE_NETWORK" => {
                ok(self.network_op(cmd, args, now))
            }
            "DISCONNECT" => {
                self.held = true;
                self.disconnect(now);
                "OK\n".into()
            }
            "RECONNECT" | "REASSOCIATE" => {
                self.held = false;
                self.retry_at = None;
                "OK\n".into()
            }
            "ROAM" => ok(self.roam(args, now)),
            _ => "UNKNOWN COMMAND\n".into(),
        }
    }

    fn status(&self) -> String {
        let mac = "address=02:cb:00:00:00:10\n";
        match &self.assoc {
            Assoc::Completed { bssid, id } | Assoc::Roaming { bssid, id, .. } => {
                let (ssid, freq, secured) =
                    self.hotspot(bssid).map_or((String::new(), 0, false), |h| {
                        (h.ssid.clone(), h.freq, h.psk.is_some())
                    });
                let (cipher, key_mgmt) = if secured {
                    ("CCMP", "WPA2-PSK")
                } else {
                    ("NONE", "NONE")
                };
                let state = if matches!(self.assoc, Assoc::Roaming { .. }) {
                    "ASSOCIATING"
                } else {
                    "COMPLETED"
                };
                format!(
                    "bssid={bssid}\nfreq={freq}\nssid={ssid}\nid={id}\nmode=station\n\
                     pairwise_cipher={cipher}\ngroup_cipher={cipher}\nkey_mgmt={key_mgmt}\n\
                     wpa_state={state}\n{mac}"
                )
            }
            Assoc::Joining { .. } => format!("wpa_state=ASSOCIATING\n{mac}"),
            Assoc::Idle if self.scan_done.is_some() => format!("wpa_state=SCANNING\n{mac}"),
            Assoc::Idle => format!("wpa_state=DISCONNECTED\n{mac}"),
        }
    }

    fn set_network(&mut self, args: &str) -> bool {
        let mut it = args.splitn(3, ' ');
        let (Some(id), Some(var), Some(value)) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        let Some(n) = id
            .parse()
            .ok()
            .and_then(|id: u32| self.networks.get_mut(&id))
        else {
            return false;
        };
        match var {
            "ssid" => match unquote(value) {
                Some(s) if (1..=32).contains(&s.len()) => n.ssid = Some(s),
                _ => return false,
            },
            "psk" => match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(p) if (8..=63).contains(&p.len()) => n.psk = Some(p.to_string()),
                _ => return false,
            },
            "key_mgmt" => n.open = value == "NONE",
            "priority" => match value.parse() {
                Ok(p) => n.priority = p,
                Err(_) => return false,
            },
            "scan_ssid" => return matches!(value, "0" | "1"),
            _ => return false,
        }
        true
    }

    fn network_op(&mut self, cmd: &str, args: &str, now: Instant) -> bool {
        let ids: Vec<u32> = if args == "all" || (cmd == "SELECT_NETWORK" && args == "any") {
            self.networks.keys().copied().collect()
        } else {
            match args.parse() {
                Ok(id) if self.networks.contains_key(&id) => vec![id],
                _ => return false,
            }
        };
        let current = match &self.assoc {
            Assoc::Completed { id, .. } | Assoc::Roaming { id, .. } | Assoc::Joining { id, .. } => {
                Some(*id)
            }
            Assoc::Idle => None,
        };
        let mut drop_current = false;
        match cmd {
            "SELECT_NETWORK" => {
                for (id, n) in &mut self.networks {
                    n.disabled = !ids.contains(id);
                }
                drop_current = current.is_some_and(|c| !ids.contains(&c));
                self.held = false;
            }
            "ENABLE_NETWORK" => {
                for id in &ids {
                    if let Some(n) = self.networks.get_mut(id) {
                        n.disabled = false;
                    }
                }
            }
            "DISABLE_NETWORK" | "REMOVE_NETWORK" => {
                for id in &ids {
                    if cmd == "REMOVE_NETWORK" {
                        self.networks.remove(id);
                        self.event(format!("CTRL-EVENT-NETWORK-REMOVED {id}"));
                    } else if let Some(n) = self.networks.get_mut(id) {
                        n.disabled = true;
                    }
                }
                drop_current = current.is_some_and(|c| ids.contains(&c));
            }
            _ => return false,
        }
        if drop_current {
            self.disconnect(now);
            self.retry_at = None;
        }
        true
    }

    fn roam(&mut self, bssid: &str, now: Instant) -> bool {
        let Assoc::Completed { bssid: cur, id } = self.assoc.clone() else {
            return false;
        };
        let (Some(from), Some(to)) = (self.hotspot(&cur), self.hotspot(bssid)) else {
            return false;
        };
        if from.ssid != to.ssid || !to.in_range() || cur.eq_ignore_ascii_case(bssid) {
            return false;
        }
        let to = to.bssid.clone();
        self.assoc = Assoc::Roaming {
            bssid: to.clone(),
            id,
            done: now + ROAM_TIME,
        };
        self.effects.push(Effect::Link(LinkChange::Roaming(to)));
        true
    }
}

#[cfg(test)]
#[path = "station_tests.rs"]
mod tests;
