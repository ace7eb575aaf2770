//! `[pan]`: the PAN side — the bridge phones and laptops join, the
//! Ethernet ports cnaptd puts in it, and the Bluetooth network access
//! point with its pairing policy (`[pan.bluetooth]`). Optional: without it
//! the box serves whatever reaches CBoxIP and manages no bridge.

use std::path::{Path, PathBuf};

use pairing::Policy;
use serde::Deserialize;

use crate::common::{ConfigError, invalid};

/// `[pan]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PanSection {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    ethernet: Vec<String>,
    #[serde(default)]
    bluetooth: Option<BluetoothSection>,
    #[serde(default)]
    wifi: Option<WifiApSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WifiApSection {
    #[serde(default = "default_ap_interface")]
    interface: String,
    #[serde(default)]
    ctrl: Option<PathBuf>,
    #[serde(default)]
    ssid: Option<String>,
    #[serde(default = "default_ap_passphrase_file")]
    passphrase_file: PathBuf,
    #[serde(default = "default_ap_security")]
    security: String,
    #[serde(default = "default_outside_window")]
    outside_window: String,
    #[serde(default = "default_ap_stations_file")]
    stations_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BluetoothSection {
    #[serde(default = "default_adapter")]
    adapter: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default = "default_policy")]
    pairing: String,
    #[serde(default = "default_window")]
    pairing_seconds: u32,
    #[serde(default = "default_max_window")]
    max_pairing_seconds: u32,
    #[serde(default = "default_trusted_file")]
    trusted_file: PathBuf,
}

fn default_bridge() -> String {
    "pan0".into()
}
fn default_adapter() -> String {
    "hci0".into()
}
fn default_policy() -> String {
    "just-works".into()
}
fn default_window() -> u32 {
    120
}
fn default_max_window() -> u32 {
    600
}
fn default_trusted_file() -> PathBuf {
    "/var/lib/cbox/trusted-devices.json".into()
}
fn default_ap_interface() -> String {
    "wlan1".into()
}
fn default_ap_passphrase_file() -> PathBuf {
    "/data/cbox/ap-passphrase".into()
}
fn default_ap_security() -> String {
    "wpa2-wpa3".into()
}
fn default_outside_window() -> String {
    "hidden".into()
}
fn default_ap_stations_file() -> PathBuf {
    "/var/lib/cbox/ap-stations.json".into()
}

/// The PAN side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pan {
    /// The bridge (`pan0`).
    pub bridge: String,
    /// Ethernet ports enslaved to it by cnaptd.
    pub ethernet: Vec<String>,
    /// The Bluetooth network access point.
    pub bluetooth: Option<Bluetooth>,
    /// The Wi-Fi access point for phones (hostapd, bridged into the PAN).
    pub wifi: Option<WifiAp>,
}

/// What the box's access point does outside a pairing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideWindow {
    /// Its name is not broadcast; phones that know it (joined from the QR
    /// code, which says "hidden") still join.
    Hidden,
    /// Always visible (anyone with the passphrase joins).
    Visible,
    /// Hidden, and only phones that joined during a window may join again
    /// (others are sent away at once).
    Closed,
}

impl OutsideWindow {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OutsideWindow::Hidden => "hidden",
            OutsideWindow::Visible => "visible",
            OutsideWindow::Closed => "closed",
        }
    }
}

/// `[pan.wifi]`: the access point phones join when Bluetooth PAN will not
/// do (every iPhone; any phone or laptop by choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiAp {
    /// The AP interface hostapd runs on (`wlan1`).
    pub interface: String,
    /// hostapd's control socket (`/run/hostapd/<interface>`).
    pub ctrl: PathBuf,
    /// The network's name.
    pub ssid: String,
    /// The file holding the box's passphrase (written at provisioning).
    pub passphrase_file: PathBuf,
    /// How phones authenticate.
    pub security: wpa_ctrl::hostapd::ApSecurity,
    /// Outside a pairing window.
    pub outside_window: OutsideWindow,
    /// The phones that joined during a window (for `closed`).
    pub stations_file: PathBuf,
}

/// `[pan.bluetooth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bluetooth {
    /// The adapter (`hci0`).
    pub adapter: String,
    /// The name phones see.
    pub alias: String,
    /// How phones pair.
    pub pairing: Policy,
    /// A window opened without a length lasts this long.
    pub pairing_seconds: u32,
    /// The longest window anybody may open.
    pub max_pairing_seconds: u32,
    /// Where the trusted devices are kept.
    pub trusted_file: PathBuf,
}

/// Whether `name` can be a Linux interface name.
pub(crate) fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl PanSection {
    pub(crate) fn build(&self, path: &Path, box_id: &str) -> Result<Pan, ConfigError> {
        if !is_interface_name(&self.bridge) {
            return Err(invalid(path, "pan.bridge", "an interface name like pan0"));
        }
        for (i, e) in self.ethernet.iter().enumerate() {
            if !is_interface_name(e) || *e == self.bridge {
                return Err(invalid(
                    path,
                    format!("pan.ethernet[{i}]"),
                    "an Ethernet interface name like eth0, not the bridge itself",
                ));
            }
            if self.ethernet[..i].contains(e) {
                return Err(invalid(path, format!("pan.ethernet[{i}]"), "listed twice"));
            }
        }
        let bluetooth = self
            .bluetooth
            .as_ref()
            .map(|b| b.build(path, box_id))
            .transpose()?;
        let wifi = self
            .wifi
            .as_ref()
            .map(|w| w.build(path, box_id))
            .transpose()?;
        if let Some(w) = &wifi
            && (self.ethernet.contains(&w.interface) || w.interface == self.bridge)
        {
            return Err(invalid(
                path,
                "pan.wifi.interface",
                format!("{} is also the bridge or in pan.ethernet", w.interface),
            ));
        }
        Ok(Pan {
            bridge: self.bridge.clone(),
            ethernet: self.ethernet.clone(),
            bluetooth,
            wifi,
        })
    }
}

impl BluetoothSection {
    fn build(&self, path: &Path, box_id: &str) -> Result<Bluetooth, ConfigError> {
        let key = |k: &str| format!("pan.bluetooth.{k}");
        let a = &self.adapter;
        if !(a.starts_with("hci") && a.len() > 3 && a[3..].bytes().all(|b| b.is_ascii_digit())) {
            return Err(invalid(path, key("adapter"), "an adapter name like hci0"));
        }
        let alias = self
            .alias
            .clone()
            .unwrap_or_else(|| format!("cbox {box_id}"));
        if alias.trim().is_empty() || alias.len() > 248 {
            return Err(invalid(
                path,
                key("alias"),
                "1 to 248 bytes (the Bluetooth name limit)",
            ));
        }
        let pairing = self
            .pairing
            .parse::<Policy>()
            .map_err(|e| invalid(path, key("pairing"), e))?;
        if !(10..=3600).contains(&self.max_pairing_seconds) {
            return Err(invalid(path, key("max_pairing_seconds"), "10 to 3600"));
        }
        if !(10..=self.max_pairing_seconds).contains(&self.pairing_seconds) {
            return Err(invalid(
                path,
                key("pairing_seconds"),
                format!("10 to max_pairing_seconds ({})", self.max_pairing_seconds),
            ));
        }
        if !self.trusted_file.is_absolute() {
            return Err(invalid(path, key("trusted_file"), "an absolute path"));
        }
        Ok(Bluetooth {
            adapter: a.clone(),
            alias,
            pairing,
            pairing_seconds: self.pairing_seconds,
            max_pairing_seconds: self.max_pairing_seconds,
            trusted_file: self.trusted_file.clone(),
        })
    }
}

impl WifiApSection {
    fn build(&self, path: &Path, box_id: &str) -> Result<WifiAp, ConfigError> {
        let key = |k: &str| format!("pan.wifi.{k}");
        if !is_interface_name(&self.interface) {
            return Err(invalid(
                path,
                key("interface"),
                "an interface name like wlan1",
            ));
        }
        let ssid = self.ssid.clone().unwrap_or_else(|| {
            let mut s = format!("cbox-{box_id}");
            while s.len() > 32 {
                s.pop();
            }
            s
        });
        if !wpa_ctrl::hostapd::valid_ssid(&ssid) {
            return Err(invalid(
                path,
                key("ssid"),
                "1 to 32 bytes without control characters",
            ));
        }
        let security = self
            .security
            .parse()
            .map_err(|e: String| invalid(path, key("security"), e))?;
        let outside_window = match self.outside_window.as_str() {
            "hidden" => OutsideWindow::Hidden,
            "visible" => OutsideWindow::Visible,
            "closed" => OutsideWindow::Closed,
            _ => {
                return Err(invalid(
                    path,
                    key("outside_window"),
                    "one of \"hidden\", \"visible\", \"closed\"",
                ));
            }
        };
        for (k, p) in [
            ("passphrase_file", &self.passphrase_file),
            ("stations_file", &self.stations_file),
        ] {
            if !p.is_absolute() {
                return Err(invalid(path, key(k), "an absolute path"));
            }
        }
        let ctrl = match &self.ctrl {
            Some(c) if !c.is_absolute() => {
                return Err(invalid(path, key("ctrl"), "an absolute path"));
            }
            Some(c) => c.clone(),
            None => PathBuf::from("/run/hostapd").join(&self.interface),
        };
        Ok(WifiAp {
            interface: self.interface.clone(),
            ctrl,
            ssid,
            passphrase_file: self.passphrase_file.clone(),
            security,
            outside_window,
            stations_file: self.stations_file.clone(),
        })
    }
}
