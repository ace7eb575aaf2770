//! The devices the box trusts, kept in its own file across restarts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::BdAddr;

/// One trusted phone or PDA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedDevice {
    /// Its address.
    pub address: BdAddr,
    /// Its name when it paired.
    pub name: String,
    /// When it paired (Unix ms).
    pub paired_unix_ms: u64,
}

/// The trusted devices, by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted {
    devices: BTreeMap<BdAddr, TrustedDevice>,
}

/// The file does not hold a device list.
#[derive(Debug, thiserror::Error)]
#[error("not a trusted-device list: {0}")]
pub struct TrustedError(#[from] serde_json::Error);

#[derive(Serialize, Deserialize)]
struct File {
    devices: Vec<TrustedDevice>,
}

impl Trusted {
    /// Reads the file's text.
    pub fn from_json(text: &str) -> Result<Self, TrustedError> {
        let f: File = serde_json::from_str(text)?;
        Ok(Trusted {
            devices: f.devices.into_iter().map(|d| (d.address, d)).collect(),
        })
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let f = File {
            devices: self.devices.values().cloned().collect(),
        };
        serde_json::to_string_pretty(&f).unwrap_or_else(|_| "{\"devices\":[]}".into())
    }

    /// Adds (or renews) a device; whether the list changed.
    pub fn add(&mut self, d: TrustedDevice) -> bool {
        let changed = self.devices.get(&d.address) != Some(&d);
        self.devices.insert(d.address, d);
        changed
    }

    /// Forgets a device; whether it was there.
    pub fn remove(&mut self, a: BdAddr) -> bool {
        self.devices.remove(&a).is_some()
    }

    /// Whether `a` is trusted.
    pub fn contains(&self, a: BdAddr) -> bool {
        self.devices.contains_key(&a)
    }

    /// One device.
    pub fn get(&self, a: BdAddr) -> Option<&TrustedDevice> {
        self.devices.get(&a)
    }

    /// All, by address.
    pub fn iter(&self) -> impl Iterator<Item = &TrustedDevice> {
        self.devices.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}
