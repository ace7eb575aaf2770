//! `[web]`: the technician's status page on the PAN side (optional).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::common::{ConfigError, invalid};

/// `[web]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebSection {
    listen: SocketAddr,
    pin: String,
    #[serde(default = "default_ttl")]
    session_minutes: u64,
}

fn default_ttl() -> u64 {
    720
}

/// The status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    /// CBoxIP and port: the PAN side only.
    pub listen: SocketAddr,
    /// The admin PIN.
    pub pin: String,
    /// How long a login lasts.
    pub session_ttl: Duration,
}

impl WebSection {
    pub(crate) fn build(&self, path: &Path) -> Result<Web, ConfigError> {
        if self.listen.ip().is_unspecified() {
            return Err(invalid(
                path,
                "web.listen",
                "must be the box's PAN address (CBoxIP), never every address: the page must not be reachable from an uplink",
            ));
        }
        let p = &self.pin;
        if !(4..=12).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(path, "web.pin", "4 to 12 digits"));
        }
        if ["0000", "1234", "1111"].contains(&p.as_str()) {
            return Err(invalid(
                path,
                "web.pin",
                "too easy to guess; choose another",
            ));
        }
        if !(5..=10_080).contains(&self.session_minutes) {
            return Err(invalid(path, "web.session_minutes", "5 to 10080 (a week)"));
        }
        Ok(Web {
            listen: self.listen,
            pin: self.pin.clone(),
            session_ttl: Duration::from_secs(self.session_minutes * 60),
        })
    }
}
