//! wpa_supplicant's control interface, sans-IO: the requests the Wi-Fi
//! driver sends ([`Request`], rendered with wpa_supplicant's quoting), the
//! replies it reads (`STATUS`, `SCAN_RESULTS`, `SIGNAL_POLL`,
//! `LIST_NETWORKS`, `ADD_NETWORK`, `OK`/`FAIL`) and the unsolicited events
//! of an attached monitor (`<3>CTRL-EVENT-…`). The socket (through
//! `wpactrl`) belongs to the runtime. hostapd speaks the same protocol: its
//! side (the box's access point on the PAN side) is [`hostapd`].

mod event;
pub mod hostapd;
mod reply;
mod roam;

pub use event::{Event, parse_event};
pub use reply::{
    Bss, NetworkEntry, ReplyError, Security, SignalPoll, Status, ack, parse_add_network,
    parse_list_networks, parse_scan_results, parse_signal_poll, parse_status,
};
pub use roam::RoamPolicy;

/// A request to wpa_supplicant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `PING` → `PONG`.
    Ping,
    /// `STATUS`.
    Status,
    /// `SCAN` (→ `OK`, or `FAIL-BUSY`).
    Scan,
    /// `SCAN freq=<MHz>,…`: only these channels (a roaming scan over the
    /// network's known channels takes a fraction of a full one); empty
    /// is a full scan.
    ScanFreqs(Vec<u32>),
    /// `SCAN_RESULTS`.
    ScanResults,
    /// `SIGNAL_POLL`.
    SignalPoll,
    /// `LIST_NETWORKS`.
    ListNetworks,
    /// `ADD_NETWORK` → the new id.
    AddNetwork,
    /// `SET_NETWORK <id> <var> <value>`.
    SetNetwork {
        /// Network id.
        id: u32,
        /// What is set.
        var: NetworkVar,
    },
    /// `SELECT_NETWORK <id>` (disables the others).
    SelectNetwork(u32),
    /// `ENABLE_NETWORK <id>`.
    EnableNetwork(u32),
    /// `REMOVE_NETWORK <id>`.
    RemoveNetwork(u32),
    /// `DISCONNECT`.
    Disconnect,
    /// `RECONNECT`.
    Reconnect,
    /// `ROAM <bssid>`: to another access point of the same network.
    Roam(String),
}

/// The network variables the box sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkVar {
    /// The SSID (any bytes).
    Ssid(Vec<u8>),
    /// WPA passphrase (8–63 printable ASCII).
    Psk(String),
    /// An open network (`key_mgmt NONE`).
    Open,
    /// `priority` (higher is preferred by wpa_supplicant itself).
    Priority(i32),
    /// `scan_ssid 1`: probe hidden networks.
    ScanSsid,
}

/// Why a request cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A passphrase must be 8..=63 printable ASCII characters.
    #[error("a WPA passphrase has 8 to 63 printable ASCII characters")]
    BadPsk,
    /// SSIDs are 1..=32 bytes.
    #[error("an SSID has 1 to 32 bytes")]
    BadSsid,
    /// A BSSID is six hex octets separated by colons.
    #[error("{0:?} is not a BSSID")]
    BadBssid(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Request {
    /// The command text, with wpa_supplicant's quoting: a printable SSID
    /// in double quotes, any other as bare hex; a passphrase in quotes.
    pub fn render(&self) -> Result<String, RequestError> {
        Ok(match self {
            Request::Ping => "PING".into(),
            Request::Status => "STATUS".into(),
            Request::Scan => "SCAN".into(),
            Request::ScanFreqs(f) if f.is_empty() => "SCAN".into(),
            Request::ScanFreqs(f) => format!(
                "SCAN freq={}",
                f.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
            Request::ScanResults => "SCAN_RESULTS".into(),
            Request::SignalPoll => "SIGNAL_POLL".into(),
            Request::ListNetworks => "LIST_NETWORKS".into(),
            Request::AddNetwork => "ADD_NETWORK".into(),
            Request::SelectNetwork(id) => format!("SELECT_NETWORK {id}"),
            Request::EnableNetwork(id) => format!("ENABLE_NETWORK {id}"),
            Request::RemoveNetwork(id) => format!("REMOVE_NETWORK {id}"),
            Request::Disconnect => "DISCONNECT".into(),
            Request::Reconnect => "RECONNECT".into(),
            Request::Roam(bssid) => {
                if !is_bssid(bssid) {
                    return Err(RequestError::BadBssid(bssid.clone()));
                }
                format!("ROAM {bssid}")
            }
            Request::SetNetwork { id, var } => {
                let (name, value) = match var {
                    NetworkVar::Ssid(s) => {
                        if s.is_empty() || s.len() > 32 {
                            return Err(RequestError::BadSsid);
                        }
                        let printable = s.iter().all(|b| (0x20..0x7f).contains(b) && *b != b'"');
                        let v = match std::str::from_utf8(s) {
                            Ok(t) if printable => format!("\"{t}\""),
                            _ => hex(s),
                        };
                        ("ssid", v)
                    }
                    NetworkVar::Psk(p) => {
                        let ok = (8..=63).contains(&p.len())
                            && p.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"');
                        if !ok {
                            return Err(RequestError::BadPsk);
                        }
                        ("psk", format!("\"{p}\""))
                    }
                    NetworkVar::Open => ("key_mgmt", "NONE".to_string()),
                    NetworkVar::Priority(n) => ("priority", n.to_string()),
                    NetworkVar::ScanSsid => ("scan_ssid", "1".to_string()),
                };
                format!("SET_NETWORK {id} {name} {value}")
            }
        })
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn is_bssid(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A network the box is configured to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// SSID.
    pub ssid: Vec<u8>,
    /// Passphrase; `None` = open network.
    pub psk: Option<String>,
    /// wpa_supplicant priority (higher first).
    pub priority: i32,
    /// Hidden network (probe for it).
    pub hidden: bool,
}

impl NetworkConfig {
    /// The `SET_NETWORK` requests that configure network `id` as this one
    /// (after `ADD_NETWORK` gave `id`).
    pub fn requests(&self, id: u32) -> Vec<Request> {
        let set = |var| Request::SetNetwork { id, var };
        let mut r = vec![set(NetworkVar::Ssid(self.ssid.clone()))];
        r.push(match &self.psk {
            Some(p) => set(NetworkVar::Psk(p.clone())),
            None => set(NetworkVar::Open),
        });
        r.push(set(NetworkVar::Priority(self.priority)));
        if self.hidden {
            r.push(set(NetworkVar::ScanSsid));
        }
        r.push(Request::EnableNetwork(id));
        r
    }
}

#[cfg(test)]
mod tests;
