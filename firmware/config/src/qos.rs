//! `[qos]`: the path notices for applications (services with
//! `qos_notify = true`): on the box, the UDP multicast announcement on the
//! PAN (the status page's event stream needs nothing here); on the relay,
//! the subscription listener for servers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::common::{ConfigError, invalid};

/// cnaptd's `[qos]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BoxQosSection {
    #[serde(default)]
    multicast: Option<SocketAddrV4>,
    #[serde(default)]
    source: Option<Ipv4Addr>,
    #[serde(default = "default_heartbeat")]
    heartbeat_s: u64,
}

/// snaptd's `[qos]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelayQosSection {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default = "default_subscribers")]
    max_subscribers: usize,
    #[serde(default = "default_heartbeat")]
    heartbeat_s: u64,
}

impl Default for BoxQosSection {
    fn default() -> Self {
        Self {
            multicast: None,
            source: None,
            heartbeat_s: default_heartbeat(),
        }
    }
}

impl Default for RelayQosSection {
    fn default() -> Self {
        Self {
            listen: None,
            max_subscribers: default_subscribers(),
            heartbeat_s: default_heartbeat(),
        }
    }
}

fn default_heartbeat() -> u64 {
    5
}

fn default_subscribers() -> usize {
    64
}

/// The box's path notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxQos {
    /// Multicast group and port the notices are announced to on the PAN
    /// (none: not announced; the status page's `/qos/events` still works).
    pub multicast: Option<SocketAddrV4>,
    /// The box's PAN address the announcements leave from.
    pub source: Option<Ipv4Addr>,
    /// A notice at least this often, changed or not.
    pub heartbeat: Duration,
}

impl Default for BoxQos {
    fn default() -> Self {
        Self {
            multicast: None,
            source: None,
            heartbeat: Duration::from_secs(default_heartbeat()),
        }
    }
}

/// Where the relay takes subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QosListen {
    /// A TCP address (keep it on a private network: no TLS).
    Tcp(SocketAddr),
    /// A Unix socket path (`unix:/run/cbox/qos.sock`).
    Unix(PathBuf),
}

/// The relay's path notices for servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayQos {
    /// Where servers subscribe (none: no subscriptions taken).
    pub listen: Option<QosListen>,
    /// Subscribers at once; more are refused with a message.
    pub max_subscribers: usize,
    /// A notice at least this often, changed or not.
    pub heartbeat: Duration,
}

impl Default for RelayQos {
    fn default() -> Self {
        Self {
            listen: None,
            max_subscribers: default_subscribers(),
            heartbeat: Duration::from_secs(default_heartbeat()),
        }
    }
}

fn heartbeat(path: &Path, s: u64) -> Result<Duration, ConfigError> {
    if !(1..=300).contains(&s) {
        return Err(invalid(path, "qos.heartbeat_s", "1 to 300"));
    }
    Ok(Duration::from_secs(s))
}

impl BoxQosSection {
    /// `web_ip`: the status page's address, the default source.
    pub(crate) fn build(&self, path: &Path, web_ip: Option<IpAddr>) -> Result<BoxQos, ConfigError> {
        let source = match (self.source, web_ip) {
            (Some(s), _) => Some(s),
            (None, Some(IpAddr::V4(v4))) => Some(v4),
            _ => None,
        };
        if let Some(m) = self.multicast {
            if !m.ip().is_multicast() {
                return Err(invalid(
                    path,
                    "qos.multicast",
                    format!(
                        "{} is not a multicast group (224.0.0.0/4; 239.255.0.0/16 is the site-local range)",
                        m.ip()
                    ),
                ));
            }
            if m.port() == 0 {
                return Err(invalid(path, "qos.multicast", "the port must not be 0"));
            }
            if source.is_none() {
                return Err(invalid(
                    path,
                    "qos.source",
                    "needed with qos.multicast (the box's PAN address, CBoxIP) when [web] does not give it",
                ));
            }
        }
        Ok(BoxQos {
            multicast: self.multicast,
            source,
            heartbeat: heartbeat(path, self.heartbeat_s)?,
        })
    }
}

impl RelayQosSection {
    pub(crate) fn build(&self, path: &Path) -> Result<RelayQos, ConfigError> {
        let listen = match self.listen.as_deref() {
            None => None,
            Some(s) => Some(match s.strip_prefix("unix:") {
                Some(p) if p.starts_with('/') => QosListen::Unix(PathBuf::from(p)),
                Some(_) => {
                    return Err(invalid(
                        path,
                        "qos.listen",
                        "a Unix socket is given as unix:/absolute/path",
                    ));
                }
                None => QosListen::Tcp(s.parse().map_err(|_| {
                    invalid(
                        path,
                        "qos.listen",
                        format!("{s:?} is neither host:port (an IP address) nor unix:/path"),
                    )
                })?),
            }),
        };
        if !(1..=1024).contains(&self.max_subscribers) {
            return Err(invalid(path, "qos.max_subscribers", "1 to 1024"));
        }
        Ok(RelayQos {
            listen,
            max_subscribers: self.max_subscribers,
            heartbeat: heartbeat(path, self.heartbeat_s)?,
        })
    }
}
