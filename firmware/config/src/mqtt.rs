//! `[mqtt]`: the box's link to the fleet operator's broker (optional).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::common::{ConfigError, invalid};

/// `[mqtt]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MqttSection {
    broker: String,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_status_interval")]
    status_interval_ms: u64,
    #[serde(default = "default_queue")]
    queue_limit: usize,
    #[serde(default = "default_keepalive")]
    keepalive_s: u64,
    #[serde(default = "yes")]
    follow_active_uplink: bool,
}

fn yes() -> bool {
    true
}

fn default_prefix() -> String {
    "cbox".into()
}

fn default_status_interval() -> u64 {
    30_000
}

fn default_queue() -> usize {
    256
}

fn default_keepalive() -> u64 {
    30
}

/// The broker and how to report to it. The box's certificate and key
/// (`[tls]`) are its client identity; its id is the client id and topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mqtt {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// CA of the broker's certificate (default: `[tls].ca`).
    pub ca: Option<PathBuf>,
    /// Topic prefix.
    pub prefix: String,
    /// The status is published at least this often.
    pub status_interval: Duration,
    /// Events held while the broker is away.
    pub queue_limit: usize,
    /// MQTT keep-alive.
    pub keepalive: Duration,
    /// Connect over the uplink the sessions use (SO_BINDTODEVICE).
    pub follow_active_uplink: bool,
}

impl MqttSection {
    pub(crate) fn build(&self, path: &Path) -> Result<Mqtt, ConfigError> {
        let bad = |key: &str, why: &str| invalid(path, format!("mqtt.{key}"), why);
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .ok_or_else(|| bad("broker", "must be host:port (8883 for MQTT over TLS)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("broker", "the port must be a number 1 to 65535"))?;
        if host.is_empty() || port == 0 {
            return Err(bad("broker", "must be host:port (8883 for MQTT over TLS)"));
        }
        let p = &self.prefix;
        if p.is_empty()
            || p.len() > 64
            || p.contains(['+', '#', '\0'])
            || p.starts_with('/')
            || p.ends_with('/')
        {
            return Err(bad(
                "prefix",
                "1 to 64 characters, no '+', '#', and no '/' at either end",
            ));
        }
        if let Some(ca) = &self.ca
            && !ca.exists()
        {
            return Err(bad("ca", &format!("{} does not exist", ca.display())));
        }
        if self.status_interval_ms < 1000 {
            return Err(bad("status_interval_ms", "at least 1000"));
        }
        if !(1..=100_000).contains(&self.queue_limit) {
            return Err(bad("queue_limit", "1 to 100000"));
        }
        if !(5..=3600).contains(&self.keepalive_s) {
            return Err(bad("keepalive_s", "5 to 3600"));
        }
        Ok(Mqtt {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            ca: self.ca.clone(),
            prefix: self.prefix.clone(),
            status_interval: Duration::from_millis(self.status_interval_ms),
            queue_limit: self.queue_limit,
            keepalive: Duration::from_secs(self.keepalive_s),
            follow_active_uplink: self.follow_active_uplink,
        })
    }
}
