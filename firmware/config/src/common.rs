//! Parts shared by both daemons: TLS files, session limits, errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use session::SessionConfig;

/// A configuration that cannot be used, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (it names the key and the line).
        message: String,
    },
    /// A value out of range or a broken cross-reference.
    #[error("{path}: {key}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, as a TOML path (`service[1].listen`).
        key: String,
        /// What is wrong.
        problem: String,
    },
}

pub(crate) fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(path, &text)
}

pub(crate) fn parse_toml<T: for<'de> Deserialize<'de>>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim().to_owned(),
    })
}

/// Builds an [`ConfigError::Invalid`] for `key`.
pub(crate) fn invalid(
    path: &Path,
    key: impl Into<String>,
    problem: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: key.into(),
        problem: problem.into(),
    }
}

/// Byte stream or datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// How a TCP service's bytes are compressed between box and relay
/// (`compress = "zstd"` or `"lz4"`; both ends of a service must agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compress {
    /// Not compressed (default; right for TLS, SSH and media).
    #[default]
    None,
    /// zstd (level 1, 64 KiB window).
    Zstd,
    /// lz4 (64 KiB dictionary of the stream's own history).
    Lz4,
}

impl Compress {
    /// The codec named in the stream's OPEN.
    pub fn codec(self) -> wire::Codec {
        match self {
            Compress::None => wire::Codec::None,
            Compress::Zstd => wire::Codec::Zstd,
            Compress::Lz4 => wire::Codec::Lz4,
        }
    }

    /// The setting's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Compress::None => "none",
            Compress::Zstd => "zstd",
            Compress::Lz4 => "lz4",
        }
    }
}

/// `compress` of a service: only byte streams are compressed.
pub(crate) fn checked_compress(
    path: &Path,
    key: String,
    protocol: Protocol,
    compress: Compress,
) -> Result<Compress, ConfigError> {
    if protocol == Protocol::Udp && compress != Compress::None {
        return Err(invalid(
            path,
            key,
            "only TCP services are compressed (datagrams are sent as they are)",
        ));
    }
    Ok(compress)
}

/// Which AEAD to prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CipherChoice {
    /// AES-GCM first where the CPU has AES instructions, ChaCha20 where
    /// it has not (default).
    #[default]
    Auto,
    /// ChaCha20-Poly1305 first (fast without AES instructions).
    Chacha20,
    /// AES-GCM first.
    Aes,
}

/// `[tls]`: certificate files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// CA certificate (PEM) that issued the peer's certificate.
    pub ca: PathBuf,
    /// Our certificate (PEM).
    pub cert: PathBuf,
    /// Our private key (PEM, mode 0600).
    pub key: PathBuf,
    /// snaptd only: revocation list (PEM), reloaded when it changes.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// Cipher preference; default `auto`.
    #[serde(default)]
    pub prefer: CipherChoice,
}

impl TlsSection {
    pub(crate) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        for (key, file) in [
            ("tls.ca", &self.ca),
            ("tls.cert", &self.cert),
            ("tls.key", &self.key),
        ] {
            if !file.exists() {
                return Err(invalid(
                    path,
                    key,
                    format!("{} does not exist", file.display()),
                ));
            }
        }
        Ok(())
    }
}

/// `[session]`: protocol limits and timers (see `docs/protocol.md` §10–11).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// Per-stream window in bytes; default 262144.
    pub window: u32,
    /// Streams per session; default 256.
    pub max_streams: u32,
    /// Replay-buffer bytes per session; default 16 MiB.
    pub max_buffered_bytes: usize,
    /// Keepalive interval, ms; default 1000.
    pub keepalive_ms: u64,
    /// A silent tunnel is dead after this, ms; default 4000.
    pub inactivity_timeout_ms: u64,
    /// Z: longest handover wait, ms; default 30000.
    pub switch_timeout_ms: u64,
    /// Box: a busy tunnel silent this long (or 3 round trips, if longer)
    /// with its probes unanswered is dead, ms; default 150.
    pub dead_path_floor_ms: u64,
    /// Box: PING interval of the warm standby tunnel, ms; default 25000.
    pub standby_keepalive_ms: u64,
}

impl Default for SessionSection {
    fn default() -> Self {
        let d = SessionConfig::default();
        Self {
            window: d.window,
            max_streams: d.max_streams,
            max_buffered_bytes: d.max_buffered_bytes,
            keepalive_ms: d.keepalive.as_millis() as u64,
            inactivity_timeout_ms: d.inactivity_timeout.as_millis() as u64,
            switch_timeout_ms: d.switch_timeout.as_millis() as u64,
            dead_path_floor_ms: d.dead_path_floor.as_millis() as u64,
            standby_keepalive_ms: d.standby_keepalive.as_millis() as u64,
        }
    }
}

impl SessionSection {
    /// The session core's configuration, validated.
    pub(crate) fn build(&self, path: &Path) -> Result<SessionConfig, ConfigError> {
        let cfg = SessionConfig {
            window: self.window,
            max_streams: self.max_streams,
            max_buffered_bytes: self.max_buffered_bytes,
            keepalive: Duration::from_millis(self.keepalive_ms),
            inactivity_timeout: Duration::from_millis(self.inactivity_timeout_ms),
            switch_timeout: Duration::from_millis(self.switch_timeout_ms),
            dead_path_floor: Duration::from_millis(self.dead_path_floor_ms),
            standby_keepalive: Duration::from_millis(self.standby_keepalive_ms),
            ..SessionConfig::default()
        };
        cfg.validate().map_err(|e| {
            let key = match e.field {
                "keepalive" => "keepalive_ms",
                "inactivity_timeout" => "inactivity_timeout_ms",
                "switch_timeout" => "switch_timeout_ms",
                "dead_path_floor" => "dead_path_floor_ms",
                "standby_keepalive" => "standby_keepalive_ms",
                other => other,
            };
            invalid(path, format!("session.{key}"), e.problem)
        })?;
        Ok(cfg)
    }
}

/// `[udp]`: how long a datagram flow lives without traffic (both daemons).
/// Like a NAT's UDP timeouts (Linux conntrack: 30 s, 120 s for streams): a
/// flow that never continued after an answer — a DNS query, a probe — ends
/// after `idle_timeout_ms`; one that did — a call, a game, a VPN — after
/// `stream_timeout_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct UdpSection {
    idle_timeout_ms: u64,
    stream_timeout_ms: u64,
}

impl Default for UdpSection {
    fn default() -> Self {
        let d = UdpTimeouts::default();
        Self {
            idle_timeout_ms: d.idle.as_millis() as u64,
            stream_timeout_ms: d.stream.as_millis() as u64,
        }
    }
}

/// Idle timeouts of datagram flows, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTimeouts {
    /// A flow that has not continued after an answer; default 30 s.
    pub idle: Duration,
    /// A flow that has (traffic both ways, then more); default 120 s.
    pub stream: Duration,
}

impl Default for UdpTimeouts {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30),
            stream: Duration::from_secs(120),
        }
    }
}

impl UdpSection {
    pub(crate) fn build(&self, path: &Path) -> Result<UdpTimeouts, ConfigError> {
        if !(1_000..=3_600_000).contains(&self.idle_timeout_ms) {
            return Err(invalid(
                path,
                "udp.idle_timeout_ms",
                "1000 to 3600000 (an hour)",
            ));
        }
        if self.stream_timeout_ms < self.idle_timeout_ms || self.stream_timeout_ms > 86_400_000 {
            return Err(invalid(
                path,
                "udp.stream_timeout_ms",
                "at least udp.idle_timeout_ms and at most 86400000 (a day)",
            ));
        }
        Ok(UdpTimeouts {
            idle: Duration::from_millis(self.idle_timeout_ms),
            stream: Duration::from_millis(self.stream_timeout_ms),
        })
    }
}
