//! `cnapt.toml`: the box daemon.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use session::SessionConfig;
use wire::{BoxId, ServiceName};

use crate::common::{
    Compress, ConfigError, Protocol, SessionSection, TlsSection, UdpSection, UdpTimeouts,
    checked_compress, invalid, parse_toml, read_toml,
};
use crate::uplinks::{DecisionSection, Uplink};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    box_id: String,
    #[serde(default = "default_control")]
    control_socket: PathBuf,
    #[serde(default = "default_grace")]
    shutdown_grace_ms: u64,
    #[serde(default)]
    pinmap: Option<PathBuf>,

    tls: TlsSection,
    #[serde(default)]
    snapt: Vec<SnaptLink>,
    #[serde(default)]
    uplink: Vec<Uplink>,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    client_service: Vec<RawClientTarget>,
    #[serde(default)]
    session: SessionSection,
    #[serde(default)]
    udp: UdpSection,
    #[serde(default)]
    decision: DecisionSection,
    #[serde(default)]
    routing: crate::routing::RoutingSection,
    #[serde(default)]
    mqtt: Option<crate::mqtt::MqttSection>,
    #[serde(default)]
    web: Option<crate::web::WebSection>,
    #[serde(default)]
    transparent: Option<crate::transparent::TransparentSection>,
    #[serde(default)]
    pan: Option<crate::pan::PanSection>,
    #[serde(default)]
    qos: crate::qos::BoxQosSection,
}

fn default_grace() -> u64 {
    5000
}

fn default_control() -> PathBuf {
    PathBuf::from("/run/cbox/cnaptd.sock")
}

/// `[[snapt]]`: one server-side relay (several = multi-site).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnaptLink {
    /// Name used by `[[service]].snapt`.
    pub name: String,
    /// `host:port` of its tunnel listener (with `relays`: of the TLS
    /// router in front of them).
    pub address: String,
    /// Name its certificate is issued for (DNS name or IP); not with
    /// `relays`.
    #[serde(default)]
    pub server_name: String,
    /// A relay fleet behind one TLS router that routes on the SNI: the
    /// relays' names (each its certificate's). A new session picks one by
    /// a stable hash of the box id over those not known to be down, and
    /// every tunnel of the session names it, so all reach the same relay.
    #[serde(default)]
    pub relays: Vec<String>,
}

/// Most relays in one `[[snapt]]`'s set.
pub const MAX_RELAYS: usize = 64;

impl SnaptLink {
    /// The problem with its names, as (key, problem).
    fn check_names(&self) -> Result<(), (String, String)> {
        let dns = |n: &str| {
            !n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        };
        match (self.server_name.is_empty(), self.relays.is_empty()) {
            (true, true) => Err((
                "server_name".into(),
                "needed (the name on the relay's certificate), or a relays list".into(),
            )),
            (false, false) => Err((
                "server_name".into(),
                "not used with relays (each relay's own name is checked): remove it".into(),
            )),
            (false, true) => Ok(()),
            (true, false) => {
                if self.relays.len() > MAX_RELAYS {
                    return Err(("relays".into(), format!("at most {MAX_RELAYS}")));
                }
                let mut seen = HashSet::new();
                for (j, r) in self.relays.iter().enumerate() {
                    if !dns(r) {
                        return Err((format!("relays[{j}]"), format!("{r:?} is not a DNS name")));
                    }
                    if !seen.insert(r.to_ascii_lowercase()) {
                        return Err((format!("relays[{j}]"), format!("{r:?} is listed twice")));
                    }
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    listen: SocketAddr,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    compress: Compress,
    #[serde(default)]
    qos_notify: bool,
    #[serde(default)]
    snapt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientTarget {
    name: String,
    connect: SocketAddr,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    compress: Compress,
}

/// `[[service]]`: a server service the phone reaches on the box.
#[derive(Debug, Clone)]
pub struct BoxService {
    /// Service name (asked for in OPEN).
    pub name: ServiceName,
    /// Where the box listens (CBoxIP:port).
    pub listen: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// How its bytes are compressed toward the SNAPT.
    pub compress: Compress,
    /// Its phones may follow the path's notices (`qos_notify = true`).
    pub qos_notify: bool,
    /// Index into [`CnaptConfig::snapts`].
    pub snapt: usize,
}

/// `[[client_service]]`: where a server-opened (push) stream goes on the PAN.
#[derive(Debug, Clone)]
pub struct ClientTarget {
    /// Service name the SNAPT opens.
    pub name: ServiceName,
    /// The phone's address and port (ClientIP:port).
    pub connect: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// How its bytes are compressed (the SNAPT's setting must match).
    pub compress: Compress,
}

/// The validated box configuration.
#[derive(Debug, Clone)]
pub struct CnaptConfig {
    /// Our id; must equal our certificate's CN.
    pub box_id: BoxId,
    /// Unix socket for `cboxctl`.
    pub control_socket: PathBuf,
    /// On SIGTERM, how long open streams may finish before DISCONNECT;
    /// default 5000 ms.
    pub shutdown_grace: std::time::Duration,

    /// The board's LED/button pin map (`board/pinmap/*.toml`), if any.
    pub pinmap: Option<PathBuf>,
    /// Certificates.
    pub tls: TlsSection,
    /// Server-side relays, at least one.
    pub snapts: Vec<SnaptLink>,
    /// Uplinks in order of preference, at least one.
    pub uplinks: Vec<Uplink>,
    /// Server services.
    pub services: Vec<BoxService>,
    /// Client-service targets.
    pub client_services: Vec<ClientTarget>,
    /// Session limits and timers.
    pub session: SessionConfig,
    /// `[udp]`: idle timeouts of datagram flows (services and transparent).
    pub udp: UdpTimeouts,
    /// The decision task's thresholds, timers and hysteresis.
    pub decision: decision::Policy,
    /// `[routing]`: a table and source rule per uplink.
    pub routing: crate::Routing,
    /// `[mqtt]`: the link to the fleet operator's broker, if configured.
    pub mqtt: Option<crate::Mqtt>,
    /// `[web]`: the technician's status page, if configured.
    pub web: Option<crate::Web>,
    /// `[transparent]`: PAN clients' TCP relayed to its original
    /// destination, if configured.
    pub transparent: Option<crate::Transparent>,
    /// `[pan]`: the bridge, Ethernet PAN ports and the Bluetooth NAP.
    pub pan: Option<crate::Pan>,
    /// `[qos]`: how the path notices of `qos_notify` services go out.
    pub qos: crate::BoxQos,
}

impl CnaptConfig {
    /// The services whose applications are told of the path.
    pub fn qos_services(&self) -> Vec<ServiceName> {
        self.services
            .iter()
            .filter(|s| s.qos_notify)
            .map(|s| s.name.clone())
            .collect()
    }
}

impl CnaptConfig {
    /// Reads and validates `path`, including that the TLS files exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg = Self::validate(path, read_toml(path)?)?;
        cfg.tls.check(path)?;
        if let Some(p) = &cfg.pinmap {
            crate::PinMap::load(p)?;
        }
        Ok(cfg)
    }

    /// Parses and validates TOML text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::validate(path, parse_toml(path, text)?)
    }

    fn validate(path: &Path, raw: Raw) -> Result<Self, ConfigError> {
        let box_id = BoxId::new(&raw.box_id).map_err(|e| invalid(path, "box_id", e.to_string()))?;

        let session = raw.session.build(path)?;
        let decision = raw.decision.build(path)?;
        if raw.snapt.is_empty() {
            return Err(invalid(path, "snapt", "at least one [[snapt]] is needed"));
        }
        let mut names = HashSet::new();
        for (i, s) in raw.snapt.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(invalid(
                    path,
                    format!("snapt[{i}].name"),
                    format!("{:?} is used twice", s.name),
                ));
            }
            if !s.address.contains(':') {
                return Err(invalid(
                    path,
                    format!("snapt[{i}].address"),
                    "must be host:port",
                ));
            }
            s.check_names()
                .map_err(|(key, problem)| invalid(path, format!("snapt[{i}].{key}"), problem))?;
        }
        if raw.uplink.is_empty() {
            return Err(invalid(path, "uplink", "at least one [[uplink]] is needed"));
        }
        let mqtt = raw.mqtt.as_ref().map(|m| m.build(path)).transpose()?;
        let web = raw.web.as_ref().map(|w| w.build(path)).transpose()?;
        let qos = raw
            .qos
            .build(path, web.as_ref().map(|w: &crate::Web| w.listen.ip()))?;
        let snapt_names: Vec<String> = raw.snapt.iter().map(|s| s.name.clone()).collect();
        let transparent = raw
            .transparent
            .as_ref()
            .map(|t| t.build(path, &snapt_names))
            .transpose()?;
        let pan = raw
            .pan
            .as_ref()
            .map(|p| p.build(path, &raw.box_id))
            .transpose()?;
        let routing = raw
            .routing
            .build(raw.uplink.len())
            .map_err(|(key, problem)| invalid(path, format!("routing.{key}"), problem))?;
        let mut up_names = HashSet::new();
        for (i, u) in raw.uplink.iter().enumerate() {
            if !up_names.insert(u.name.as_str()) {
                return Err(invalid(
                    path,
                    format!("uplink[{i}].name"),
                    format!("{:?} is used twice", u.name),
                ));
            }
            if let Some(w) = &u.wifi {
                if u.kind != crate::UplinkKind::Wifi {
                    return Err(invalid(
                        path,
                        format!("uplink[{i}].wifi"),
                        "only an uplink of kind = \"wifi\" has a Wi-Fi section",
                    ));
                }
                w.networks().map_err(|(key, problem)| {
                    invalid(path, format!("uplink[{i}].wifi.{key}"), problem)
                })?;
                w.roam_policy().map_err(|(key, problem)| {
                    invalid(path, format!("uplink[{i}].wifi.{key}"), problem)
                })?;
                if w.poll_interval_ms < 100 {
                    return Err(invalid(
                        path,
                        format!("uplink[{i}].wifi.poll_interval_ms"),
                        "at least 100",
                    ));
                }
            }
            if let Some(m) = &u.modem {
                if u.kind != crate::UplinkKind::Lte {
                    return Err(invalid(
                        path,
                        format!("uplink[{i}].modem"),
                        "only an uplink of kind = \"lte\" has a modem",
                    ));
                }
                m.modem_config().map_err(|(key, problem)| {
                    invalid(path, format!("uplink[{i}].modem.{key}"), problem)
                })?;
            }
        }
        let mut services = Vec::new();
        let mut listens = HashSet::new();
        for (i, s) in raw.service.iter().enumerate() {
            let name = ServiceName::new(&s.name)
                .map_err(|e| invalid(path, format!("service[{i}].name"), e.to_string()))?;
            let snapt = match &s.snapt {
                None => 0,
                Some(n) => raw.snapt.iter().position(|x| &x.name == n).ok_or_else(|| {
                    invalid(
                        path,
                        format!("service[{i}].snapt"),
                        format!("no [[snapt]] named {n:?}"),
                    )
                })?,
            };
            if !listens.insert((s.listen, s.protocol)) {
                return Err(invalid(
                    path,
                    format!("service[{i}].listen"),
                    format!("{} is used twice", s.listen),
                ));
            }
            services.push(BoxService {
                name,
                listen: s.listen,
                protocol: s.protocol,
                compress: checked_compress(
                    path,
                    format!("service[{i}].compress"),
                    s.protocol,
                    s.compress,
                )?,
                qos_notify: s.qos_notify,
                snapt,
            });
        }
        let mut client_services = Vec::new();
        for (i, c) in raw.client_service.iter().enumerate() {
            let name = ServiceName::new(&c.name)
                .map_err(|e| invalid(path, format!("client_service[{i}].name"), e.to_string()))?;
            client_services.push(ClientTarget {
                name,
                connect: c.connect,
                protocol: c.protocol,
                compress: checked_compress(
                    path,
                    format!("client_service[{i}].compress"),
                    c.protocol,
                    c.compress,
                )?,
            });
        }

        Ok(Self {
            box_id,
            control_socket: raw.control_socket,
            shutdown_grace: std::time::Duration::from_millis(raw.shutdown_grace_ms),
            pinmap: raw.pinmap,

            tls: raw.tls,
            snapts: raw.snapt,
            uplinks: raw.uplink,
            services,
            client_services,
            session,
            udp: raw.udp.build(path)?,
            decision,
            routing,
            mqtt,
            web,
            transparent,
            pan,
            qos,
        })
    }
}
