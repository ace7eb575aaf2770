//! `[[uplink]]` and `[decision]` of cnapt.toml: the box's ways out with the
//! user's criteria for choosing among them, and the decision task's
//! thresholds, timers and hysteresis.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use decision::{Kind, Mode, Policy, UplinkSpec};
use serde::Deserialize;

use crate::common::{ConfigError, invalid};

/// `[[uplink]]`: a way out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// Name used by `cboxctl switch NAME`.
    pub name: String,
    /// `wifi`, `lte` or `wired` (default).
    #[serde(default)]
    pub kind: UplinkKind,
    /// Interface to bind tunnels to (SO_BINDTODEVICE) and to watch through
    /// netlink, e.g. `wlan0`.
    #[serde(default)]
    pub interface: Option<String>,
    /// Source address of tunnels over this uplink (default: whatever
    /// address the interface has).
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// Next hop of this uplink's routing table (default: learnt from the
    /// main table's default route on the interface, as DHCP or the modem
    /// set it; none on a point-to-point link).
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Preference among uplinks of equal health, lower first (default: the
    /// position in the file).
    #[serde(default)]
    pub priority: Option<u8>,
    /// Cost of use (e.g. cents per MB); lower first at equal priority.
    #[serde(default)]
    pub cost: u32,
    /// Below this signal (dBm) the uplink is not chosen.
    #[serde(default)]
    pub min_signal_dbm: Option<i32>,
    /// The box may use it without the user (false for, say, a roaming SIM).
    #[serde(default = "yes")]
    pub auto_connect: bool,
    /// Keep a warm standby tunnel over this uplink while another carries
    /// the sessions (default true): the next switch to it needs no TCP or
    /// TLS handshake. Costs a PING every `standby_keepalive_ms` (about
    /// 1 MB a day at 25 s); turn it off on a metered link.
    #[serde(default = "yes")]
    pub standby: bool,
    /// `[uplink.modem]`: the LTE modem's AT port (kind = "lte" only).
    #[serde(default)]
    pub modem: Option<ModemSection>,
    /// `[uplink.wifi]`: wpa_supplicant's control socket and the networks
    /// to join (kind = "wifi" only).
    #[serde(default)]
    pub wifi: Option<WifiSection>,
}

/// `[uplink.wifi]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiSection {
    /// wpa_supplicant's control socket, e.g. `/run/wpa_supplicant/wlan0`.
    pub ctrl: std::path::PathBuf,
    /// STATUS / SIGNAL_POLL period, ms.
    #[serde(default = "default_wifi_poll")]
    pub poll_interval_ms: u64,
    /// Below this signal (dBm) the driver scans every 2 s and roams to a
    /// clearly stronger access point of the same network.
    #[serde(default = "default_roam_threshold")]
    pub roam_threshold_dbm: i32,
    /// How much stronger (dB) that access point must be.
    #[serde(default = "default_roam_margin")]
    pub roam_margin_db: i32,
    /// `[[uplink.wifi.network]]`: hotspots to join, most preferred first.
    #[serde(default, rename = "network")]
    pub networks: Vec<WifiNetwork>,
}

/// `[[uplink.wifi.network]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiNetwork {
    /// SSID.
    pub ssid: String,
    /// WPA passphrase; absent for an open hotspot.
    #[serde(default)]
    pub psk: Option<String>,
    /// Hidden SSID (probe for it).
    #[serde(default)]
    pub hidden: bool,
}

fn default_wifi_poll() -> u64 {
    1000
}

fn default_roam_threshold() -> i32 {
    wpa_ctrl::RoamPolicy::default().threshold_dbm
}

fn default_roam_margin() -> i32 {
    wpa_ctrl::RoamPolicy::default().margin_db
}

impl WifiSection {
    /// When to roam; `Err` names the bad key.
    pub fn roam_policy(&self) -> Result<wpa_ctrl::RoamPolicy, (String, String)> {
        if !(-100..=-30).contains(&self.roam_threshold_dbm) {
            return Err(("roam_threshold_dbm".into(), "between -100 and -30".into()));
        }
        if !(1..=40).contains(&self.roam_margin_db) {
            return Err(("roam_margin_db".into(), "between 1 and 40".into()));
        }
        Ok(wpa_ctrl::RoamPolicy {
            threshold_dbm: self.roam_threshold_dbm,
            margin_db: self.roam_margin_db,
        })
    }

    /// The networks as wpa_supplicant will be given them (the first gets
    /// the highest priority); `Err` names the bad key.
    pub fn networks(&self) -> Result<Vec<wpa_ctrl::NetworkConfig>, (String, String)> {
        let n = self.networks.len();
        self.networks
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let net = wpa_ctrl::NetworkConfig {
                    ssid: w.ssid.as_bytes().to_vec(),
                    psk: w.psk.clone(),
                    priority: i32::try_from(n - i).unwrap_or(i32::MAX),
                    hidden: w.hidden,
                };
                // Rendering checks the SSID and passphrase.
                for r in net.requests(0) {
                    r.render()
                        .map_err(|e| (format!("network[{i}]"), e.to_string()))?;
                }
                Ok(net)
            })
            .collect()
    }
}

/// `[uplink.modem]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemSection {
    /// The AT port, e.g. `/dev/ttyUSB2` (a udev symlink survives
    /// re-enumeration better: `/dev/cbox-modem-at`).
    pub port: std::path::PathBuf,
    /// Baud rate (USB modems ignore it).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Access point name.
    pub apn: String,
    /// SIM PIN, if the SIM is locked.
    #[serde(default)]
    pub pin: Option<String>,
    /// `generic`, `quectel-ec2x`, `simcom-sim7600`; default: from `ATI`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Signal/operator/registration poll, ms.
    #[serde(default = "default_modem_poll")]
    pub poll_interval_ms: u64,
}

fn default_baud() -> u32 {
    115_200
}

fn default_modem_poll() -> u64 {
    5000
}

impl ModemSection {
    /// The modem driver's configuration; `Err` names the bad key.
    pub fn modem_config(&self) -> Result<modem_at::ModemConfig, (&'static str, String)> {
        let profile = match self.profile.as_deref() {
            None | Some("auto") => None,
            Some("generic") => Some(modem_at::Profile::Generic),
            Some("quectel-ec2x") => Some(modem_at::Profile::QuectelEc2x),
            Some("simcom-sim7600") => Some(modem_at::Profile::SimcomSim7600),
            Some(other) => {
                return Err((
                    "profile",
                    format!("{other:?}: one of auto, generic, quectel-ec2x, simcom-sim7600"),
                ));
            }
        };
        if self.apn.is_empty() || self.apn.contains('"') {
            return Err(("apn", "must be non-empty and contain no quote".into()));
        }
        if let Some(pin) = &self.pin
            && !(4..=8).contains(&pin.len())
        {
            return Err(("pin", "a SIM PIN has 4 to 8 digits".into()));
        }
        if let Some(pin) = &self.pin
            && !pin.chars().all(|c| c.is_ascii_digit())
        {
            return Err(("pin", "a SIM PIN has digits only".into()));
        }
        if self.poll_interval_ms < 500 {
            return Err(("poll_interval_ms", "at least 500".into()));
        }
        let mut c = modem_at::ModemConfig::new(&self.apn);
        c.pin = self.pin.clone();
        c.profile = profile;
        c.poll_interval = Duration::from_millis(self.poll_interval_ms);
        Ok(c)
    }
}

fn yes() -> bool {
    true
}

/// The kinds of `[[uplink]].kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UplinkKind {
    /// A Wi-Fi station.
    Wifi,
    /// An LTE modem.
    Lte,
    /// A wired WAN port.
    #[default]
    Wired,
}

impl Uplink {
    /// The decision task's view of it; `index` is its position in the file.
    pub fn spec(&self, index: usize) -> UplinkSpec {
        UplinkSpec {
            name: self.name.clone(),
            kind: match self.kind {
                UplinkKind::Wifi => Kind::Wifi,
                UplinkKind::Lte => Kind::Lte,
                UplinkKind::Wired => Kind::Wired,
            },
            priority: self
                .priority
                .unwrap_or_else(|| u8::try_from(index).unwrap_or(u8::MAX)),
            cost: self.cost,
            min_signal_dbm: self.min_signal_dbm,
            auto_connect: self.auto_connect,
        }
    }
}

/// `[decision]`; every key optional (defaults of [`Policy`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionSection {
    mode: Option<RawMode>,
    check_interval_ms: Option<u64>,
    search_interval_ms: Option<u64>,
    probe_interval_ms: Option<u64>,
    rtt_warning_ms: Option<u64>,
    rtt_critical_ms: Option<u64>,
    loss_warning: Option<f64>,
    loss_critical: Option<f64>,
    signal_warning_dbm: Option<i32>,
    signal_critical_dbm: Option<i32>,
    dwell_ms: Option<u64>,
    min_interval_ms: Option<u64>,
    hold_down_ms: Option<u64>,
    sample_max_age_ms: Option<u64>,
    switch_patience_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Automatic,
    Manual,
}

impl DecisionSection {
    pub(crate) fn build(&self, path: &Path) -> Result<Policy, ConfigError> {
        let d = Policy::default();
        let ms = |v: Option<u64>, dflt: Duration| v.map_or(dflt, Duration::from_millis);
        let p = Policy {
            mode: match self.mode {
                None => d.mode,
                Some(RawMode::Automatic) => Mode::Automatic,
                Some(RawMode::Manual) => Mode::Manual,
            },
            check_interval: ms(self.check_interval_ms, d.check_interval),
            search_interval: ms(self.search_interval_ms, d.search_interval),
            probe_interval: ms(self.probe_interval_ms, d.probe_interval),
            rtt_warning: ms(self.rtt_warning_ms, d.rtt_warning),
            rtt_critical: ms(self.rtt_critical_ms, d.rtt_critical),
            loss_warning: self.loss_warning.unwrap_or(d.loss_warning),
            loss_critical: self.loss_critical.unwrap_or(d.loss_critical),
            signal_warning_dbm: self.signal_warning_dbm.unwrap_or(d.signal_warning_dbm),
            signal_critical_dbm: self.signal_critical_dbm.unwrap_or(d.signal_critical_dbm),
            dwell: ms(self.dwell_ms, d.dwell),
            min_interval: ms(self.min_interval_ms, d.min_interval),
            hold_down: ms(self.hold_down_ms, d.hold_down),
            sample_max_age: ms(self.sample_max_age_ms, d.sample_max_age),
            switch_patience: ms(self.switch_patience_ms, d.switch_patience),
        };
        p.validate()
            .map_err(|(key, problem)| invalid(path, format!("decision.{key}"), problem))?;
        Ok(p)
    }
}
