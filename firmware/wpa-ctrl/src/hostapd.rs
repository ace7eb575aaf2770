//! hostapd's control interface (the same socket protocol as
//! wpa_supplicant's), sans-IO: the box's access point on the PAN side as
//! settings ([`AccessPoint`]) rendered into `SET` commands applied by
//! `DISABLE`/`ENABLE`/`UPDATE_BEACON` (the image's base configuration
//! starts the BSS disabled: nothing beacons with its placeholder name and
//! passphrase), the window's visibility (`ignore_broadcast_ssid` +
//! `UPDATE_BEACON`, which keeps the stations), strangers refused
//! (`DENY_ACL`), the station events of an
//! attached monitor and the `STATUS`/`STA` replies. The Wi-Fi QR code
//! phones scan (`WIFI:` URI) is built here too.

use crate::is_bssid;

/// How phones authenticate to the box's access point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApSecurity {
    /// WPA2-personal only (older phones and laptops).
    Wpa2,
    /// WPA3-personal (SAE) with WPA2 beside it for phones without SAE —
    /// the transition mode; management frames protected where possible.
    Wpa2Wpa3,
    /// WPA3-personal only (SAE, protected management frames required).
    Wpa3,
}

impl ApSecurity {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ApSecurity::Wpa2 => "wpa2",
            ApSecurity::Wpa2Wpa3 => "wpa2-wpa3",
            ApSecurity::Wpa3 => "wpa3",
        }
    }
}

impl std::str::FromStr for ApSecurity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wpa2" => Ok(Self::Wpa2),
            "wpa2-wpa3" => Ok(Self::Wpa2Wpa3),
            "wpa3" => Ok(Self::Wpa3),
            other => Err(format!(
                "{other:?}: one of \"wpa2\", \"wpa2-wpa3\", \"wpa3\""
            )),
        }
    }
}

/// Why an access point's settings cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApError {
    /// SSIDs are 1..=32 bytes; hostapd's `SET` takes one line of text.
    #[error("an SSID has 1 to 32 bytes and no control characters")]
    BadSsid,
    /// WPA passphrases are 8..=63 printable ASCII characters.
    #[error("a WPA passphrase has 8 to 63 printable ASCII characters")]
    BadPassphrase,
    /// Not a MAC address.
    #[error("{0:?} is not a MAC address")]
    BadAddress(String),
}

/// The box's access point as cnaptd sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPoint {
    /// The network's name.
    pub ssid: String,
    /// Its passphrase (also the SAE password).
    pub passphrase: String,
    /// How phones authenticate.
    pub security: ApSecurity,
}

/// Whether `s` is an SSID hostapd's `SET ssid` takes as it is.
pub fn valid_ssid(s: &str) -> bool {
    (1..=32).contains(&s.len()) && !s.chars().any(char::is_control)
}

/// Whether `p` is a WPA passphrase.
pub fn valid_passphrase(p: &str) -> bool {
    (8..=63).contains(&p.len()) && p.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl AccessPoint {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), ApError> {
        if !valid_ssid(&self.ssid) {
            return Err(ApError::BadSsid);
        }
        if !valid_passphrase(&self.passphrase) {
            return Err(ApError::BadPassphrase);
        }
        Ok(())
    }

    /// The commands that configure hostapd's BSS as this access point,
    /// visible or hidden, and start it: the `SET`s, then `DISABLE` (which
    /// may answer FAIL when the BSS is down), `ENABLE` and `UPDATE_BEACON`
    /// (a BSS the configuration started disabled beacons only after it).
    pub fn commands(&self, hidden: bool) -> Result<Vec<String>, ApError> {
        self.check()?;
        let (key_mgmt, pmf) = match self.security {
            ApSecurity::Wpa2 => ("WPA-PSK", "0"),
            ApSecurity::Wpa2Wpa3 => ("WPA-PSK SAE", "1"),
            ApSecurity::Wpa3 => ("SAE", "2"),
        };
        let mut c = vec![
            format!("SET ssid {}", self.ssid),
            "SET wpa 2".to_string(),
            format!("SET wpa_key_mgmt {key_mgmt}"),
            "SET rsn_pairwise CCMP".to_string(),
            format!("SET ieee80211w {pmf}"),
        ];
        if self.security != ApSecurity::Wpa3 {
            c.push(format!("SET wpa_passphrase {}", self.passphrase));
        }
        if self.security != ApSecurity::Wpa2 {
            c.push(format!("SET sae_password {}", self.passphrase));
        }
        c.push(visibility(hidden));
        c.push("SET start_disabled 0".to_string());
        c.extend(["DISABLE", "ENABLE", "UPDATE_BEACON"].map(String::from));
        Ok(c)
    }

    /// The `WIFI:` URI of the Wi-Fi QR code Android's and iOS's cameras
    /// join from (`T:WPA` covers WPA2 and WPA3; `H:true` makes the phone
    /// probe for a hidden network).
    pub fn join_uri(&self, hidden: bool) -> String {
        let esc = |s: &str| {
            let mut o = String::with_capacity(s.len());
            for c in s.chars() {
                if matches!(c, '\\' | ';' | ',' | ':' | '"') {
                    o.push('\\');
                }
                o.push(c);
            }
            o
        };
        format!(
            "WIFI:T:WPA;S:{};P:{};{}",
            esc(&self.ssid),
            esc(&self.passphrase),
            if hidden { "H:true;;" } else { ";" }
        )
    }
}

/// The `SET` that shows or hides the SSID in beacons (followed by
/// `UPDATE_BEACON`, which keeps the joined stations).
pub fn visibility(hidden: bool) -> String {
    format!("SET ignore_broadcast_ssid {}", u8::from(hidden))
}

/// A station refused from now on and sent away: `DENY_ACL ADD_MAC <addr>`
/// then `DEAUTHENTICATE <addr>` (sent away only, it would come straight
/// back).
pub fn refuse(addr: &str) -> Result<[String; 2], ApError> {
    if !is_bssid(addr) {
        return Err(ApError::BadAddress(addr.into()));
    }
    Ok([
        format!("DENY_ACL ADD_MAC {addr}"),
        format!("DEAUTHENTICATE {addr}"),
    ])
}

/// Everyone may try again (a pairing window opened).
pub const DENY_CLEAR: &str = "DENY_ACL CLEAR";

/// A station event of hostapd's monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApEvent {
    /// A station joined (authorized).
    StationJoined(String),
    /// A station left.
    StationLeft(String),
    /// The BSS started beaconing.
    Enabled,
    /// The BSS stopped.
    Disabled,
    /// hostapd is going away.
    Terminating,
    /// Anything else (for the log).
    Other(String),
}

/// Parses one monitor message (`<3>AP-STA-CONNECTED 02:00:00:00:01:00`).
pub fn parse_ap_event(msg: &str) -> Option<ApEvent> {
    let msg = msg.trim();
    let body = match msg.strip_prefix('<') {
        Some(rest) => rest.split_once('>').map_or(msg, |(_, b)| b),
        None => msg,
    };
    if body.is_empty() {
        return None;
    }
    let mut words = body.split_whitespace();
    let kind = words.next().unwrap_or("");
    let addr = words.next().filter(|a| is_bssid(a)).map(str::to_lowercase);
    Some(match (kind, addr) {
        ("AP-STA-CONNECTED", Some(a)) => ApEvent::StationJoined(a),
        ("AP-STA-DISCONNECTED", Some(a)) => ApEvent::StationLeft(a),
        ("AP-ENABLED", _) => ApEvent::Enabled,
        ("AP-DISABLED", _) => ApEvent::Disabled,
        ("CTRL-EVENT-TERMINATING", _) => ApEvent::Terminating,
        _ => ApEvent::Other(body.to_string()),
    })
}

/// `state=` of a `STATUS` reply (`ENABLED`, `DISABLED`, `COUNTRY_UPDATE`, …).
pub fn parse_ap_state(status: &str) -> Option<&str> {
    status.lines().find_map(|l| l.strip_prefix("state="))
}

/// The station of a `STA-FIRST`/`STA-NEXT` reply (its first line), `None`
/// at the end of the list.
pub fn parse_station(reply: &str) -> Option<String> {
    let first = reply.lines().next()?.trim();
    is_bssid(first).then(|| first.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ap(security: ApSecurity) -> AccessPoint {
        AccessPoint {
            ssid: "cbox box-0042".into(),
            passphrase: "lemon-harbor-7-quiet".into(),
            security,
        }
    }

    #[test]
    fn transition_mode_sets_both_keys_and_optional_protection() {
        let c = ap(ApSecurity::Wpa2Wpa3).commands(false).unwrap();
        assert_eq!(
            c,
            [
                "SET ssid cbox box-0042",
                "SET wpa 2",
                "SET wpa_key_mgmt WPA-PSK SAE",
                "SET rsn_pairwise CCMP",
                "SET ieee80211w 1",
                "SET wpa_passphrase lemon-harbor-7-quiet",
                "SET sae_password lemon-harbor-7-quiet",
                "SET ignore_broadcast_ssid 0",
                "SET start_disabled 0",
                "DISABLE",
                "ENABLE",
                "UPDATE_BEACON",
            ]
        );
        let w3 = ap(ApSecurity::Wpa3).commands(true).unwrap();
        assert!(w3.contains(&"SET ieee80211w 2".to_string()));
        assert!(!w3.iter().any(|l| l.starts_with("SET wpa_passphrase")));
        assert!(w3.contains(&"SET ignore_broadcast_ssid 1".to_string()));
        let w2 = ap(ApSecurity::Wpa2).commands(false).unwrap();
        assert!(!w2.iter().any(|l| l.starts_with("SET sae_password")));
    }

    #[test]
    fn bad_settings_are_refused_before_anything_is_sent() {
        let mut a = ap(ApSecurity::Wpa2);
        a.passphrase = "short".into();
        assert_eq!(a.commands(false), Err(ApError::BadPassphrase));
        a.passphrase = "new\nline-injected".into();
        assert_eq!(a.commands(false), Err(ApError::BadPassphrase));
        a.passphrase = "long-enough-pass".into();
        a.ssid = "two\nlines".into();
        assert_eq!(a.commands(false), Err(ApError::BadSsid));
        a.ssid = "x".repeat(33);
        assert_eq!(a.commands(false), Err(ApError::BadSsid));
        assert!(refuse("02:00:00:00:01:00\nDISABLE").is_err());
        assert_eq!(
            refuse("02:00:00:00:01:00").unwrap(),
            [
                "DENY_ACL ADD_MAC 02:00:00:00:01:00",
                "DEAUTHENTICATE 02:00:00:00:01:00"
            ]
        );
    }

    #[test]
    fn the_join_uri_escapes_what_the_format_reserves() {
        let a = AccessPoint {
            ssid: "box;1".into(),
            passphrase: "a:b\\c,d\"e-f".into(),
            security: ApSecurity::Wpa2Wpa3,
        };
        assert_eq!(
            a.join_uri(false),
            r#"WIFI:T:WPA;S:box\;1;P:a\:b\\c\,d\"e-f;;"#
        );
        assert!(a.join_uri(true).ends_with(";H:true;;"));
    }

    #[test]
    fn station_events_and_replies() {
        assert_eq!(
            parse_ap_event("<3>AP-STA-CONNECTED 02:00:00:00:01:00"),
            Some(ApEvent::StationJoined("02:00:00:00:01:00".into()))
        );
        assert_eq!(
            parse_ap_event("<3>AP-STA-DISCONNECTED 02:AA:00:00:01:00"),
            Some(ApEvent::StationLeft("02:aa:00:00:01:00".into()))
        );
        assert_eq!(parse_ap_event("<3>AP-ENABLED "), Some(ApEvent::Enabled));
        assert!(matches!(
            parse_ap_event("<3>AP-STA-CONNECTED garbage"),
            Some(ApEvent::Other(_))
        ));
        assert_eq!(parse_ap_event("  "), None);
        assert_eq!(
            parse_ap_state("phy=phy0\nstate=ENABLED\nfreq=2437\n"),
            Some("ENABLED")
        );
        assert_eq!(
            parse_station("02:00:00:00:01:00\nflags=[AUTH]\n"),
            Some("02:00:00:00:01:00".into())
        );
        assert_eq!(parse_station(""), None);
        assert_eq!(parse_station("FAIL\n"), None);
    }

    proptest! {
        /// Whatever a monitor or a reply holds, parsing never panics.
        #[test]
        fn parsing_anything_is_safe(s in ".{0,200}") {
            let _ = parse_ap_event(&s);
            let _ = parse_ap_state(&s);
            let _ = parse_station(&s);
        }

        /// Every command of valid settings is one line.
        #[test]
        fn commands_are_single_lines(ssid in "[ -~]{1,32}", pass in "[ -~]{8,63}", hidden in any::<bool>()) {
            let a = AccessPoint { ssid, passphrase: pass, security: ApSecurity::Wpa2Wpa3 };
            for c in a.commands(hidden).unwrap() {
                prop_assert!(!c.contains('\n') && !c.contains('\r'));
            }
        }
    }
}
