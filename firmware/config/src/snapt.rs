//! `snapt.toml`: the server-side relay.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use session::ServerConfig;
use wire::ServiceName;

use crate::common::{
    Compress, ConfigError, Protocol, SessionSection, TlsSection, UdpSection, UdpTimeouts,
    checked_compress, invalid, parse_toml, read_toml,
};
use crate::policy::{BoxPolicy, DestinationRule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: SocketAddr,
    #[serde(default = "default_control")]
    control_socket: PathBuf,
    #[serde(default = "default_grace")]
    shutdown_grace_ms: u64,
    #[serde(default = "default_max_boxes")]
    max_boxes: usize,
    #[serde(default = "default_new_sessions_per_s")]
    new_sessions_per_s: u32,
    #[serde(default = "default_max_handshakes")]
    max_handshakes: usize,
    #[serde(default = "default_threads")]
    threads: usize,
    tls: TlsSection,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    client_service: Vec<RawClientListen>,
    #[serde(default)]
    client_service_addresses: Vec<IpAddr>,
    #[serde(default)]
    policy: Vec<RawPolicy>,
    #[serde(default)]
    policy_loopback: bool,
    #[serde(default)]
    session: SessionSection,
    #[serde(default)]
    udp: UdpSection,
    #[serde(default)]
    qos: crate::qos::RelayQosSection,
}

fn default_grace() -> u64 {
    5000
}

fn default_threads() -> usize {
    1
}

fn default_control() -> PathBuf {
    PathBuf::from("/run/cbox/snaptd.sock")
}

fn default_max_boxes() -> usize {
    1000
}

fn default_new_sessions_per_s() -> u32 {
    1000
}

fn default_max_handshakes() -> usize {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "box")]
    box_id: String,
    allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    target: String,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    compress: Compress,
    #[serde(default)]
    qos_notify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientListen {
    name: String,
    port: u16,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    compress: Compress,
    #[serde(default)]
    boxes: Vec<String>,
}

/// `[[service]]`: where a box-opened stream for `name` is relayed.
#[derive(Debug, Clone)]
pub struct ServerService {
    /// The service name boxes ask for.
    pub name: ServiceName,
    /// `host:port` of the real server.
    pub target: String,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// How its bytes are compressed (the boxes' setting must match).
    pub compress: Compress,
    /// Its servers may subscribe to the path notices of the boxes using
    /// it (`qos_notify = true`).
    pub qos_notify: bool,
}

/// `[[client_service]]`: a push service listened for on each listed box's
/// virtual address, relayed to that box.
#[derive(Debug, Clone)]
pub struct ClientServiceListen {
    /// Service name (the box maps it to the phone's address).
    pub name: ServiceName,
    /// The real client-service port, listened on at each box's address.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// How its bytes are compressed toward the boxes.
    pub compress: Compress,
    /// Boxes that offer it.
    pub boxes: Vec<String>,
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct SnaptConfig {
    /// Tunnel listener.
    pub listen: SocketAddr,
    /// Unix socket for `cboxctl snapt`.
    pub control_socket: PathBuf,
    /// On SIGTERM, how long open streams may finish before DISCONNECT;
    /// default 5000 ms.
    pub shutdown_grace: std::time::Duration,
    /// Certificates (and the CRL).
    pub tls: TlsSection,
    /// Box-opened services.
    pub services: Vec<ServerService>,
    /// Client (push) services.
    pub client_services: Vec<ClientServiceListen>,
    /// Addresses handed out to boxes for their client services, one per box,
    /// in order (so identical boxes don't collide on a port).
    pub client_service_addresses: Vec<IpAddr>,
    /// Session core limits, `max_boxes` and `new_sessions_per_s` included.
    pub server: ServerConfig,
    /// TLS handshakes at once; further tunnels wait their turn (up to 64
    /// times as many; beyond, they are closed at once and counted).
    pub max_handshakes: usize,
    /// Runtime threads: 1 (default) runs everything on one thread, which
    /// moves a box's bytes with the fewest hand-offs; more let the tunnels'
    /// TLS work run in parallel on a many-core host serving many boxes.
    pub threads: usize,
    /// Destinations boxes may ask for (transparent mode); default deny.
    pub policies: Vec<BoxPolicy>,
    /// Policy rules may reach the relay host's loopback addresses (a test
    /// bench whose servers run on the relay's host); off by default.
    pub policy_loopback: bool,
    /// `[udp]`: idle timeouts of datagram flows.
    pub udp: UdpTimeouts,
    /// `[qos]`: the subscription listener of the path notices.
    pub qos: crate::RelayQos,
}

impl SnaptConfig {
    /// The services whose servers may follow the boxes' path notices.
    pub fn qos_services(&self) -> Vec<ServiceName> {
        self.services
            .iter()
            .filter(|s| s.qos_notify)
            .map(|s| s.name.clone())
            .collect()
    }

    /// Whether `box_id` may have the SNAPT connect to `dest`: never to
    /// what [`Self::always_denied`] names, whatever the rules; else as
    /// the rules say (default deny).
    pub fn allows(&self, box_id: &str, dest: &SocketAddr) -> bool {
        self.always_denied(dest).is_none() && crate::policy::allows(&self.policies, box_id, dest)
    }

    /// Why `dest` is out of every box's reach whatever the policy allows
    /// (a rule like `0.0.0.0/0` must not open them): the relay host itself
    /// (loopback unless `policy_loopback`, unspecified, its tunnel
    /// listener), link-local and
    /// multicast or broadcast addresses, and the addresses and ports where
    /// it listens for the boxes' client services (one box must not reach
    /// another box's phones).
    pub fn always_denied(&self, dest: &SocketAddr) -> Option<&'static str> {
        let ip = dest.ip();
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if (ip.is_loopback() && !self.policy_loopback) || ip.is_unspecified() {
            Some("the relay host itself")
        } else if link_local || ip.is_multicast() {
            Some("a link-local, broadcast or multicast address")
        } else if *dest == self.listen
            || (self.listen.ip().is_unspecified() && dest.port() == self.listen.port())
        {
            Some("the relay's tunnel listener")
        } else if self.client_service_addresses.contains(&ip) {
            Some("a box's client-service address")
        } else {
            None
        }
    }

    /// Reads and validates `path`, including that the TLS files exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg = Self::validate(path, read_toml(path)?)?;
        cfg.tls.check(path)?;
        Ok(cfg)
    }

    /// Parses and validates TOML text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::validate(path, parse_toml(path, text)?)
    }

    fn validate(path: &Path, raw: Raw) -> Result<Self, ConfigError> {
        let session = raw.session.build(path)?;
        if raw.max_boxes == 0 {
            return Err(invalid(path, "max_boxes", "must be at least 1"));
        }
        if raw.new_sessions_per_s == 0 {
            return Err(invalid(path, "new_sessions_per_s", "must be at least 1"));
        }
        if !(1..=4096).contains(&raw.max_handshakes) {
            return Err(invalid(path, "max_handshakes", "must be 1 to 4096"));
        }
        let mut names = HashSet::new();
        let mut services = Vec::new();
        for (i, s) in raw.service.iter().enumerate() {
            let name = ServiceName::new(&s.name)
                .map_err(|e| invalid(path, format!("service[{i}].name"), e.to_string()))?;
            if !names.insert(s.name.clone()) {
                return Err(invalid(
                    path,
                    format!("service[{i}].name"),
                    format!("{:?} is used twice", s.name),
                ));
            }
            if !s.target.contains(':') {
                return Err(invalid(
                    path,
                    format!("service[{i}].target"),
                    "must be host:port",
                ));
            }
            services.push(ServerService {
                name,
                target: s.target.clone(),
                protocol: s.protocol,
                compress: checked_compress(
                    path,
                    format!("service[{i}].compress"),
                    s.protocol,
                    s.compress,
                )?,
                qos_notify: s.qos_notify,
            });
        }
        let mut client_services = Vec::new();
        for (i, c) in raw.client_service.iter().enumerate() {
            let name = ServiceName::new(&c.name)
                .map_err(|e| invalid(path, format!("client_service[{i}].name"), e.to_string()))?;
            if c.port == 0 {
                return Err(invalid(
                    path,
                    format!("client_service[{i}].port"),
                    "must not be 0",
                ));
            }
            client_services.push(ClientServiceListen {
                name,
                port: c.port,
                protocol: c.protocol,
                compress: checked_compress(
                    path,
                    format!("client_service[{i}].compress"),
                    c.protocol,
                    c.compress,
                )?,
                boxes: c.boxes.clone(),
            });
        }
        if !(1..=256).contains(&raw.threads) {
            return Err(invalid(path, "threads", "must be between 1 and 256"));
        }
        if !client_services.is_empty() && raw.client_service_addresses.is_empty() {
            return Err(invalid(
                path,
                "client_service_addresses",
                "client services need at least one address",
            ));
        }
        let mut policies = Vec::new();
        for (i, p) in raw.policy.iter().enumerate() {
            if p.box_id != "*" {
                wire::BoxId::new(&p.box_id)
                    .map_err(|e| invalid(path, format!("policy[{i}].box"), e.to_string()))?;
            }
            let allow = p
                .allow
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    DestinationRule::parse(r)
                        .map_err(|e| invalid(path, format!("policy[{i}].allow[{j}]"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            policies.push(BoxPolicy {
                box_id: p.box_id.clone(),
                allow,
            });
        }
        Ok(Self {
            policies,
            policy_loopback: raw.policy_loopback,
            listen: raw.listen,
            control_socket: raw.control_socket,
            shutdown_grace: std::time::Duration::from_millis(raw.shutdown_grace_ms),
            tls: raw.tls,
            services,
            client_services,
            client_service_addresses: raw.client_service_addresses,
            server: ServerConfig {
                session,
                max_sessions: raw.max_boxes,
                new_sessions_per_s: raw.new_sessions_per_s,
            },
            max_handshakes: raw.max_handshakes,
            threads: raw.threads,
            udp: raw.udp.build(path)?,
            qos: raw.qos.build(path)?,
        })
    }
}
