//! The box's status model: one [`Snapshot`] of everything a technician or
//! the fleet operator looks at — the uplinks' lookup table, the active
//! uplink, manual/automatic mode and a pending suggestion, the session per
//! SNAPT with its streams and bytes, the PAN clients, and the last
//! handovers ([`HandoverLog`]). cnaptd fills it; `cboxctl`, MQTT and the
//! status page read the same type (serde), so the three never disagree.
//! Pure: no clock, no I/O.

mod handovers;

pub use handovers::{HandoverKind, HandoverLog, HandoverRecord, Outcome};
use serde::{Deserialize, Serialize};

/// What the Wi-Fi driver last said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WifiView {
    /// Network joined.
    pub ssid: Option<String>,
    /// Access point.
    pub bssid: Option<String>,
    /// MHz.
    pub freq: Option<u32>,
    /// dBm.
    pub signal_dbm: Option<i32>,
    /// SSID, BSSID, signal of the last scan's hotspots.
    pub candidates: Vec<(String, String, i32)>,
    /// Roams between access points since start.
    pub roams: u64,
    /// Something the user must fix (wrong passphrase, no wpa_supplicant).
    pub problem: Option<String>,
}

/// What the modem driver last said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModemView {
    /// Bring-up phase (`probing`, `registering`, `online`, …).
    pub phase: String,
    /// `ATI`'s answer.
    pub model: Option<String>,
    /// Vendor profile in use.
    pub profile: Option<String>,
    /// `home`, `roaming`, `searching`, …
    pub registration: Option<String>,
    /// Network operator.
    pub operator: Option<String>,
    /// dBm.
    pub rssi_dbm: Option<i32>,
    /// dBm.
    pub rsrp_dbm: Option<i32>,
    /// dB.
    pub rsrq_db: Option<f32>,
    /// The data call's address.
    pub address: Option<std::net::IpAddr>,
    /// Something the user must fix (SIM locked, no SIM, PIN refused).
    pub problem: Option<String>,
}

/// One row of the uplinks' lookup table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkRow {
    /// Name (`cboxctl switch NAME`).
    pub name: String,
    /// `wifi`, `lte`, `wired`.
    pub kind: String,
    /// Network interface.
    pub interface: Option<String>,
    /// The sessions run over it.
    pub active: bool,
    /// `good`, `warning`, `critical`, `down`.
    pub health: String,
    /// The threshold that decided the health.
    pub why: String,
    /// Link (carrier) up.
    pub link: bool,
    /// Its address.
    pub address: Option<std::net::IpAddr>,
    /// Radio signal, dBm.
    pub signal_dbm: Option<i32>,
    /// Round trip to the SNAPT over it, ms.
    pub rtt_ms: Option<f64>,
    /// Smoothed share of keepalives/probes lost, 0..1.
    pub loss: f64,
    /// Preference (lower first).
    pub priority: u8,
    /// Cost of use (lower first).
    pub cost: u32,
    /// May be used without the user.
    pub auto_connect: bool,
    /// Seconds since its health last changed.
    pub changed_s_ago: f64,
    /// The LTE modem behind it, if any.
    pub modem: Option<ModemView>,
    /// The Wi-Fi behind it, if any.
    pub wifi: Option<WifiView>,
}

/// The session with one SNAPT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRow {
    /// SNAPT name.
    pub snapt: String,
    /// Session state (`Established`, `Recovering`, `Idle`, …).
    pub state: String,
    /// Session id (0 before the first).
    pub session_id: u64,
    /// Uplink its tunnel runs over.
    pub uplink: Option<String>,
    /// Open streams.
    pub streams: u64,
    /// Payload bytes sent and received.
    pub bytes_sent: u64,
    /// See `bytes_sent`.
    pub bytes_received: u64,
    /// Payload bytes resent after resynchronisations, since start.
    pub bytes_replayed: u64,
    /// Payload bytes held for a possible resend now.
    pub bytes_buffered: u64,
    /// Datagrams dropped (queues full, no path).
    pub datagrams_dropped: u64,
    /// Switches completed.
    pub switches: u64,
    /// Smoothed round trip of the keepalives, ms.
    pub rtt_ms: Option<f64>,
    /// Keepalives sent.
    pub pings_sent: u64,
    /// Keepalives unanswered.
    pub pings_lost: u64,
    /// Why it is not connected, if it is not.
    pub last_error: Option<String>,
    /// The uplink its warm standby tunnel runs over, once bound.
    #[serde(default)]
    pub standby: Option<String>,
    /// Of a relay fleet (`[[snapt]] relays`): the relay of the session.
    #[serde(default)]
    pub relay: Option<String>,
}

/// A switch the box suggests in manual mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Uplink suggested.
    pub uplink: String,
    /// Why.
    pub reason: Option<String>,
}

/// A phone or PDA on the PAN side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanClient {
    /// Bluetooth or Ethernet address.
    pub address: String,
    /// Interface it came in on (`bnep0`, `eth0`).
    pub interface: String,
    /// Its IP address, once it has one.
    pub ip: Option<std::net::IpAddr>,
}

/// The pairing window as the page and the LED show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingView {
    /// Phones can pair now.
    pub open: bool,
    /// `just-works` or `passkey`.
    pub policy: String,
    /// Until it closes by itself.
    pub seconds_left: Option<u32>,
    /// Six digits to compare or type on the phone.
    pub passkey: Option<String>,
    /// The device the passkey is for.
    pub device: Option<String>,
}

/// A device the box trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedView {
    /// Bluetooth address.
    pub address: String,
    /// Its name when it paired.
    pub name: String,
    /// Connected to the box now (BlueZ's view).
    pub connected: bool,
}

/// The Wi-Fi access point on the PAN side (hostapd). Never carries the
/// passphrase (this view goes to MQTT): the join code is asked for on its
/// own (`cboxctl pan wifi`, the page's QR code behind its PIN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPointView {
    /// The AP interface (`wlan1`).
    pub interface: String,
    /// The network's name.
    pub ssid: String,
    /// `wpa2-wpa3`, `wpa3` or `wpa2`.
    pub security: String,
    /// Outside a pairing window: `hidden`, `visible` or `closed`.
    pub outside_window: String,
    /// The bridge phones land on.
    pub bridge: String,
    /// hostapd's state (`enabled`, …), `down` when unreachable.
    pub state: String,
    /// The name is broadcast now.
    pub visible: bool,
    /// The pairing window is open.
    pub pairing_open: bool,
    /// Phones joined now (their Wi-Fi addresses).
    pub stations: Vec<String>,
    /// Phones that joined during a pairing window (for `closed`).
    pub known_phones: usize,
    /// Phones refused outside a window since start (`closed`).
    #[serde(default)]
    pub strangers_refused: u64,
    /// Why it is not up, when it is not.
    pub problem: Option<String>,
}

/// The Bluetooth network access point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BluetoothView {
    /// The adapter (`hci0`).
    pub adapter: String,
    /// bluetoothd has it and it is powered.
    pub powered: bool,
    /// The name phones see.
    pub alias: String,
    /// The NAP is registered on the bridge.
    pub nap_registered: bool,
    /// Bridge the NAP puts phones on.
    pub bridge: String,
    /// Why it is not up, when it is not.
    pub problem: Option<String>,
    /// The pairing window.
    pub pairing: PairingView,
    /// Trusted devices.
    pub trusted: Vec<TrustedView>,
}

/// What the box's bounds did since start: every table and queue has a
/// limit, and what it refused, dropped or ended is counted here (the
/// session's own datagram drops are per site, in [`SiteRow`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Accept errors of the box's listeners (out of file descriptors, …);
    /// every listener goes on after one.
    pub accept_errors: u64,
    /// Status-page connections closed at once for being over a limit.
    pub page_refused: u64,
    /// Phone connections and datagram flows refused (no session, or the
    /// stream table full of streams that may not be cut).
    pub connections_refused: u64,
    /// Datagram flows open now.
    pub datagram_flows: u64,
    /// Datagram flows ended after being quiet for their timeout.
    pub flows_expired: u64,
    /// Datagram flows ended to make room for a new stream.
    pub flows_evicted: u64,
}

/// Everything about the box at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The box's id.
    pub box_id: String,
    /// `automatic` or `manual`.
    pub mode: String,
    /// The pending suggestion (manual mode).
    pub suggestion: Option<Suggestion>,
    /// The lookup table.
    pub uplinks: Vec<UplinkRow>,
    /// One session per SNAPT.
    pub sites: Vec<SiteRow>,
    /// Phones and PDAs connected.
    #[serde(default)]
    pub pan_clients: Vec<PanClient>,
    /// The Bluetooth NAP, when configured.
    #[serde(default)]
    pub bluetooth: Option<BluetoothView>,
    /// The Wi-Fi access point on the PAN side, when configured.
    #[serde(default)]
    pub wifi_ap: Option<AccessPointView>,
    /// The last handovers, oldest first.
    pub handovers: Vec<HandoverRecord>,
    /// Handovers since start (also those no longer kept).
    #[serde(default)]
    pub handovers_total: u64,
    /// What the box's bounds refused, dropped or ended.
    #[serde(default)]
    pub counters: Counters,
}

impl Snapshot {
    /// The uplink the sessions run over.
    pub fn active_uplink(&self) -> Option<&UplinkRow> {
        self.uplinks.iter().find(|u| u.active)
    }

    /// Every session established.
    pub fn connected(&self) -> bool {
        !self.sites.is_empty() && self.sites.iter().all(|s| s.state == "Established")
    }

    /// Whether `self` differs from `before` in what a reader acts on —
    /// active uplink, mode, suggestion, an uplink's health or link, a
    /// session's state, a new handover, a PAN client — rather than in the
    /// figures that move all the time (round trips, bytes, ages).
    pub fn differs_materially(&self, before: &Snapshot) -> bool {
        let uplinks = |s: &Snapshot| -> Vec<(String, bool, String, bool)> {
            s.uplinks
                .iter()
                .map(|u| (u.name.clone(), u.active, u.health.clone(), u.link))
                .collect()
        };
        let sites = |s: &Snapshot| -> Vec<(String, Option<String>)> {
            s.sites
                .iter()
                .map(|x| (x.state.clone(), x.uplink.clone()))
                .collect()
        };
        let bluetooth = |s: &Snapshot| {
            s.bluetooth.as_ref().map(|b| {
                let mut b = b.clone();
                b.pairing.seconds_left = None;
                b
            })
        };
        self.mode != before.mode
            || self.suggestion != before.suggestion
            || uplinks(self) != uplinks(before)
            || sites(self) != sites(before)
            || self.handovers_total != before.handovers_total
            || self.pan_clients != before.pan_clients
            || bluetooth(self) != bluetooth(before)
    }
}

#[cfg(test)]
mod tests;
