//! Replies of wpa_supplicant to the requests the box sends.

use std::net::IpAddr;

/// A reply that does not say what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// `FAIL` (or `FAIL-BUSY`, `UNKNOWN COMMAND`, …).
    #[error("wpa_supplicant: {0}")]
    Refused(String),
    /// Not in the expected form.
    #[error("unexpected reply {0:?}")]
    Malformed(String),
}

/// `OK` → `Ok(())`; anything else is the refusal.
pub fn ack(reply: &str) -> Result<(), ReplyError> {
    match reply.trim() {
        "OK" | "PONG" => Ok(()),
        other => Err(ReplyError::Refused(other.to_string())),
    }
}

/// What `STATUS` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `wpa_state` (`COMPLETED`, `SCANNING`, `DISCONNECTED`, …).
    pub wpa_state: String,
    /// Associated access point.
    pub bssid: Option<String>,
    /// SSID of the current network.
    pub ssid: Option<String>,
    /// Frequency, MHz.
    pub freq: Option<u32>,
    /// Network id.
    pub id: Option<u32>,
    /// `key_mgmt` (`WPA2-PSK`, `NONE`, …).
    pub key_mgmt: Option<String>,
    /// The interface's IP address, if wpa_supplicant knows it.
    pub ip_address: Option<IpAddr>,
}

impl Status {
    /// Associated and authenticated.
    pub fn connected(&self) -> bool {
        self.wpa_state == "COMPLETED"
    }
}

fn key_values(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| l.split_once('='))
}

/// `STATUS` (key=value lines).
pub fn parse_status(text: &str) -> Result<Status, ReplyError> {
    let mut s = Status::default();
    for (k, v) in key_values(text) {
        match k {
            "wpa_state" => s.wpa_state = v.to_string(),
            "bssid" => s.bssid = Some(v.to_string()),
            "ssid" => s.ssid = Some(v.to_string()),
            "freq" => s.freq = v.parse().ok(),
            "id" => s.id = v.parse().ok(),
            "key_mgmt" => s.key_mgmt = Some(v.to_string()),
            "ip_address" => s.ip_address = v.parse().ok(),
            _ => {}
        }
    }
    if s.wpa_state.is_empty() {
        return Err(ReplyError::Malformed(text.chars().take(80).collect()));
    }
    Ok(s)
}

/// What a BSS's flags say about its security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No encryption.
    Open,
    /// WEP (not joined by the box).
    Wep,
    /// WPA/WPA2/WPA3 personal.
    Psk,
    /// SAE only (WPA3 personal).
    Sae,
    /// 802.1X enterprise.
    Enterprise,
}

/// One line of `SCAN_RESULTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bss {
    /// Access point address.
    pub bssid: String,
    /// MHz.
    pub freq: u32,
    /// Signal, dBm.
    pub signal_dbm: i32,
    /// Raw flags (`[WPA2-PSK-CCMP][ESS]`).
    pub flags: String,
    /// Security from the flags.
    pub security: Security,
    /// SSID as wpa_supplicant prints it (escaped).
    pub ssid: String,
}

fn security(flags: &str) -> Security {
    if flags.contains("EAP") {
        Security::Enterprise
    } else if flags.contains("PSK") {
        Security::Psk
    } else if flags.contains("SAE") {
        Security::Sae
    } else if flags.contains("WEP") {
        Security::Wep
    } else {
        Security::Open
    }
}

/// `SCAN_RESULTS`: a header line, then tab-separated
/// `bssid freq signal flags ssid`; malformed lines are skipped.
pub fn parse_scan_results(text: &str) -> Vec<Bss> {
    text.lines()
        .filter(|l| !l.starts_with("bssid /"))
        .filter_map(|l| {
            let mut f = l.splitn(5, '\t');
            let bssid = f.next()?.to_string();
            if !crate::is_bssid(&bssid) {
                return None;
            }
            let freq = f.next()?.parse().ok()?;
            let signal_dbm = f.next()?.parse().ok()?;
            let flags = f.next()?.to_string();
            let ssid = f.next().unwrap_or("").to_string();
            Some(Bss {
                security: security(&flags),
                bssid,
                freq,
                signal_dbm,
                flags,
                ssid,
            })
        })
        .collect()
}

/// What `SIGNAL_POLL` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignalPoll {
    /// dBm.
    pub rssi_dbm: Option<i32>,
    /// Mbit/s.
    pub link_speed_mbit: Option<u32>,
    /// MHz.
    pub freq: Option<u32>,
}

/// `SIGNAL_POLL` (key=value lines; `FAIL` when not associated).
pub fn parse_signal_poll(text: &str) -> Result<SignalPoll, ReplyError> {
    if text.trim().starts_with("FAIL") {
        return Err(ReplyError::Refused(text.trim().to_string()));
    }
    let mut s = SignalPoll::default();
    for (k, v) in key_values(text) {
        match k {
            "RSSI" => s.rssi_dbm = v.parse().ok(),
            "LINKSPEED" => s.link_speed_mbit = v.parse().ok(),
            "FREQUENCY" => s.freq = v.parse().ok(),
            _ => {}
        }
    }
    if s.rssi_dbm.is_none() {
        return Err(ReplyError::Malformed(text.chars().take(80).collect()));
    }
    Ok(s)
}

/// One line of `LIST_NETWORKS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEntry {
    /// Network id.
    pub id: u32,
    /// SSID as printed.
    pub ssid: String,
    /// `[CURRENT]`, `[DISABLED]`, …
    pub flags: String,
}

/// `LIST_NETWORKS`: a header, then `id ssid bssid flags` tab-separated.
pub fn parse_list_networks(text: &str) -> Vec<NetworkEntry> {
    text.lines()
        .filter(|l| !l.starts_with("network id"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some(NetworkEntry {
                id: f.first()?.parse().ok()?,
                ssid: f.get(1)?.to_string(),
                flags: f.get(3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// `ADD_NETWORK` → the id.
pub fn parse_add_network(text: &str) -> Result<u32, ReplyError> {
    let t = text.trim();
    t.parse().map_err(|_| ReplyError::Refused(t.to_string()))
}
