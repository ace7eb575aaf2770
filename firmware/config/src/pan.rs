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

/// The PAN side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pan {
    /// The bridge (`pan0`).
    pub bridge: String,
    /// Ethernet ports enslaved to it by cnaptd.
    pub ethernet: Vec<String>,
    /// The Bluetooth network access point.
    pub bluetooth: Option<Bluetooth>,
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
        Ok(Pan {
            bridge: self.bridge.clone(),
            ethernet: self.ethernet.clone(),
            bluetooth,
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
