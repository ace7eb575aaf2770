//! Unsolicited events of an attached control connection
//! (`<level>CTRL-EVENT-…`).

/// An event the Wi-Fi driver acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Associated and authenticated to `bssid`, network `id`.
    Connected {
        /// Access point.
        bssid: String,
        /// Network id, if printed.
        id: Option<u32>,
    },
    /// Association lost.
    Disconnected {
        /// Access point it was associated with.
        bssid: Option<String>,
        /// IEEE 802.11 reason code.
        reason: Option<u16>,
        /// The station itself ended it.
        locally_generated: bool,
    },
    /// A scan finished: `SCAN_RESULTS` has news.
    ScanResults,
    /// A scan started.
    ScanStarted,
    /// The signal crossed the configured threshold.
    SignalChange {
        /// dBm.
        signal_dbm: Option<i32>,
        /// Above the threshold (`above=1`).
        above: bool,
    },
    /// The network refused the key (wrong passphrase).
    WrongKey {
        /// Network id.
        id: Option<u32>,
    },
    /// wpa_supplicant is shutting down.
    Terminating,
    /// Anything else (kept for the log).
    Other(String),
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Parses one event message (`<3>CTRL-EVENT-CONNECTED - Connection to
/// 02:00:00:00:01:00 completed [id=0 id_str=]`); `None` for an empty one.
pub fn parse_event(msg: &str) -> Option<Event> {
    let msg = msg.trim();
    // The priority prefix `<N>`.
    let body = match msg.strip_prefix('<') {
        Some(rest) => rest.split_once('>').map_or(msg, |(_, b)| b),
        None => msg,
    };
    if body.is_empty() {
        return None;
    }
    let (name, rest) = body.split_once(' ').unwrap_or((body, ""));
    Some(match name {
        "CTRL-EVENT-CONNECTED" => {
            let bssid = rest
                .split_whitespace()
                .find(|w| crate::is_bssid(w))
                .unwrap_or_default()
                .to_string();
            let id = rest
                .split(['[', ']', ' '])
                .find_map(|w| w.strip_prefix("id="))
                .and_then(|v| v.parse().ok());
            Event::Connected { bssid, id }
        }
        "CTRL-EVENT-DISCONNECTED" => Event::Disconnected {
            bssid: field(rest, "bssid").map(String::from),
            reason: field(rest, "reason").and_then(|v| v.parse().ok()),
            locally_generated: field(rest, "locally_generated") == Some("1"),
        },
        "CTRL-EVENT-SCAN-RESULTS" => Event::ScanResults,
        "CTRL-EVENT-SCAN-STARTED" => Event::ScanStarted,
        "CTRL-EVENT-SIGNAL-CHANGE" => Event::SignalChange {
            signal_dbm: field(rest, "signal").and_then(|v| v.parse().ok()),
            above: field(rest, "above") == Some("1"),
        },
        "CTRL-EVENT-SSID-TEMP-DISABLED" if rest.contains("reason=WRONG_KEY") => Event::WrongKey {
            id: field(rest, "id").and_then(|v| v.parse().ok()),
        },
        "CTRL-EVENT-TERMINATING" => Event::Terminating,
        _ => Event::Other(body.to_string()),
    })
}
