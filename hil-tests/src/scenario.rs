//! Scenario files: a timeline of what happens to the box's uplinks while the
//! phone's applications run (see `hil-tests/scenarios/*.toml`).

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

/// One scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (the report's row).
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Seconds the interactive stream runs (the scenario's length).
    pub duration_s: f64,
    /// MiB the phone downloads with curl during it.
    #[serde(default = "default_download")]
    pub download_mib: usize,
    /// curl's rate limit in MB/s (so the download spans the events).
    #[serde(default = "default_rate")]
    pub download_rate_mb: f64,
    /// Most handovers the box may do (flapping: must not ping-pong).
    #[serde(default)]
    pub max_handovers: Option<usize>,
    /// Fewest handovers expected.
    #[serde(default)]
    pub min_handovers: usize,
    /// Fewest Wi-Fi roams (access point to access point) expected.
    #[serde(default)]
    pub min_roams: usize,
    /// Whether the applications' open connections must survive the
    /// timeline (false for a snaptd restart: they are reset, the box comes
    /// back and new connections work).
    #[serde(default = "default_true")]
    pub streams_survive: bool,
    /// The hosted side as a fleet: three snaptd (relay-1…3) behind
    /// Debian's HAProxy routing on the TLS SNI, all in the internet
    /// namespace; the box lists the relays (`[[snapt]] relays`).
    #[serde(default)]
    pub relay_fleet: bool,
    /// A crowd of this many other boxes (`cbox-crowd`: real TLS sessions
    /// held from the LTE carrier's network, each on its own relay of the
    /// fleet) beside the real box; see [`crate::box_crowd`].
    #[serde(default)]
    pub box_crowd: Option<usize>,
    /// A second real box (cnaptd `box-2` on a wired site, its own record
    /// stream); see [`crate::second_box`].
    #[serde(default)]
    pub second_box: bool,
    /// The box also has a wired WAN (`eth1` to a site router), its
    /// preferred uplink; the timeline starts with the box on it.
    #[serde(default)]
    pub wired_wan: bool,
    /// Transparent mode: the phone's curl goes straight to the internet
    /// server (no service configured for it) and the box redirects it; a
    /// destination outside the SNAPT's policy must be refused.
    #[serde(default)]
    pub transparent: bool,
    /// A server pushes a UDP stream to the phone through the box's UDP
    /// client service (the relay's per-box address); the phone echoes it.
    #[serde(default)]
    pub udp_push: bool,
    /// The web and echo services are compressed between box and relay
    /// (`"zstd"` or `"lz4"`; SSH is encrypted and never is).
    #[serde(default)]
    pub compress: Option<Compression>,
    /// The phone takes its address by DHCP on the box's PAN and resolves a
    /// name through the box's DNS service (through the tunnel) before and
    /// after the timeline.
    #[serde(default)]
    pub pan_dhcp: bool,
    /// The daemons run with the shipped session and decision defaults
    /// (keepalive 1 s, inactivity 4 s, dwell 3 s, hold-down 30 s …), not
    /// the world's shorter test timers.
    #[serde(default)]
    pub shipped_defaults: bool,
    /// Handover records the box must write during the timeline, in order
    /// (others may come between).
    #[serde(default)]
    pub expect: Vec<ExpectedRecord>,
    /// A bulk download beside the interactive stream: curl runs without a
    /// rate limit (as fast as the links allow), the baselines download the
    /// same file, and the report gives the records' round trips (median,
    /// 99th percentile) and the download's rate.
    #[serde(default)]
    pub bulk: bool,
    /// `compare` also runs the scenario on zero-delay links (pointless where
    /// the links' rates are the point).
    #[serde(default = "default_true")]
    pub compare_zero: bool,
    /// A day of other phones beside the scenario's applications (needs
    /// `pan_dhcp`): see [`crate::crowd`].
    #[serde(default)]
    pub crowd: Option<CrowdSpec>,
    /// A live stream from a server to the phone on a `live` service with
    /// `qos_notify = true`: its sender follows the relay's QoS feed
    /// (`"adaptive"`) or sends at a fixed rate (`"fixed"`); see
    /// [`crate::live`].
    #[serde(default)]
    pub live: Option<LiveMode>,
    /// The adaptive live stream's largest frame latency must stay within
    /// this (ms); the fixed one must exceed it.
    #[serde(default)]
    pub live_bound_ms: Option<f64>,
    /// The timeline.
    #[serde(default, rename = "event")]
    pub events: Vec<Event>,
}

/// How a scenario's live stream is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveMode {
    /// Following the relay's QoS notices.
    Adaptive,
    /// At 20 Mbit/s whatever happens.
    Fixed,
}

impl LiveMode {
    /// Its name in the scenario file and the report.
    pub fn name(self) -> &'static str {
        match self {
            LiveMode::Adaptive => "adaptive",
            LiveMode::Fixed => "fixed",
        }
    }
}

/// What the crowd does and what it must see.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdSpec {
    /// The video-call-like UDP stream's rate, Mbit/s.
    pub video_mbit: f64,
    /// Connections the laptop opens and leaves idle.
    pub idle_connections: usize,
    /// cnaptd's resident memory must stay below this, MiB.
    pub cnaptd_max_mib: f64,
    /// snaptd's, MiB.
    pub snaptd_max_mib: f64,
}

/// A handover record a scenario expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRecord {
    /// `planned`, `prompt` or `sudden` (alternatives: `prompt|sudden`).
    pub kind: String,
    /// The uplink it went to.
    pub to: String,
    /// Words its reason must contain.
    #[serde(default)]
    pub reason: Option<String>,
    /// Not before this many seconds into the timeline.
    #[serde(default)]
    pub after_s: Option<f64>,
    /// Not after.
    #[serde(default)]
    pub before_s: Option<f64>,
}

fn default_download() -> usize {
    16
}

fn default_true() -> bool {
    true
}

fn default_rate() -> f64 {
    2.0
}

/// Something that happens at `at` seconds. (Unknown keys are refused by
/// [`Action`]; serde cannot refuse them on a flattened struct.)
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// Seconds from the start.
    pub at: f64,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
}

/// The uplinks of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uplink {
    /// wlan0 through the Wi-Fi radio.
    Wifi,
    /// wwan0 through the LTE radio and the carrier NAT.
    Lte,
    /// eth1, a cable to a site router (scenarios with `wired_wan`).
    Cable,
}

impl Uplink {
    /// The box's interface.
    pub fn dev(self) -> &'static str {
        match self {
            Uplink::Wifi => "wlan0",
            Uplink::Lte => "wwan0",
            Uplink::Cable => "eth1",
        }
    }

    /// The name in cnapt.toml.
    pub fn name(self) -> &'static str {
        match self {
            Uplink::Wifi => "wifi",
            Uplink::Lte => "lte",
            Uplink::Cable => "cable",
        }
    }

    /// The box's address on it.
    pub fn box_address(self) -> &'static str {
        match self {
            Uplink::Wifi => crate::topology::addr::BOX_WIFI,
            Uplink::Lte => crate::topology::addr::BOX_LTE,
            Uplink::Cable => crate::topology::addr::BOX_CABLE,
        }
    }

    /// Its gateway and the metric of the box's default route through it.
    pub fn gateway(self) -> (&'static str, &'static str) {
        match self {
            Uplink::Wifi => ("198.18.10.1", "100"),
            Uplink::Lte => ("198.18.20.1", "200"),
            Uplink::Cable => ("198.18.40.1", "50"),
        }
    }
}

/// What can happen.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A user-forced planned switch through `cboxctl switch`.
    Switch {
        /// Target uplink.
        uplink: Uplink,
    },
    /// `cboxctl mode manual|automatic`.
    Mode {
        /// `manual` or `automatic`.
        mode: String,
    },
    /// `cboxctl approve`: the box must be suggesting a switch now, or the
    /// run fails.
    Approve,
    /// snaptd is killed (SIGKILL, no goodbye) and started again after
    /// `down_s` seconds.
    SnaptRestart {
        /// Seconds without snaptd.
        #[serde(default)]
        down_s: f64,
    },
    /// `cboxctl snapt upgrade`: snaptd hands its listeners, sessions and
    /// server connections to a new snaptd process and exits; the box
    /// resumes on the new one and no stream is reset.
    SnaptUpgrade,
    /// Every relay (the single snaptd, or each of the fleet) is killed
    /// (SIGKILL) and started again after `down_s` seconds: a fleet
    /// restarted at once.
    RelaysRestart {
        /// Seconds without relays.
        #[serde(default)]
        down_s: f64,
    },
    /// The relay the box's session is on is killed (SIGKILL) and stays
    /// dead (`relay_fleet` scenarios): the box must start anew on another.
    RelayKill,
    /// The LTE modem (emulated on the box's AT port): registration lost or
    /// back (the data call and `wwan0` follow), signal, or a reset (the
    /// port disappears for two seconds).
    Modem {
        /// Registered with the network.
        #[serde(default)]
        registered: Option<bool>,
        /// RSRP, dBm.
        #[serde(default)]
        rsrp_dbm: Option<i32>,
        /// Reset the module.
        #[serde(default)]
        reset: Option<bool>,
    },
    /// A Wi-Fi hotspot of the world (`site-a`, `site-b`: the box's
    /// network; `cafe`: open, not the box's) changes: its signal, going out
    /// of range, or its conditions (applied to the Wi-Fi radio while the
    /// box is associated with it).
    Hotspot {
        /// Which.
        hotspot: String,
        /// Signal the box hears, dBm.
        #[serde(default)]
        signal_dbm: Option<i32>,
        /// Out of range.
        #[serde(default)]
        gone: Option<bool>,
        /// One-way delay, ms.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// Frame loss, 0..1.
        #[serde(default)]
        loss: Option<f64>,
        /// Rate limit, Mbit/s.
        #[serde(default)]
        rate_mbit: Option<f64>,
    },
    /// The box's interface goes down (a link event); for the cable, the
    /// cable is pulled (carrier lost, the interface stays configured).
    LinkDown {
        /// Which.
        uplink: Uplink,
    },
    /// The interface comes back.
    LinkUp {
        /// Which.
        uplink: Uplink,
    },
    /// The box loses its address on the uplink (DHCP lease gone).
    AddressLoss {
        /// Which.
        uplink: Uplink,
    },
    /// Radio conditions change; `down = true` is a silent blackhole (frames
    /// vanish, no link event).
    SetLink {
        /// Which.
        uplink: Uplink,
        /// One-way delay, ms.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// Jitter, ms.
        #[serde(default)]
        jitter_ms: Option<u64>,
        /// Frame loss, 0..1.
        #[serde(default)]
        loss: Option<f64>,
        /// Rate limit, Mbit/s.
        #[serde(default)]
        rate_mbit: Option<f64>,
        /// Outage.
        #[serde(default)]
        down: Option<bool>,
    },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let s: Scenario = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        if s.duration_s <= 0.0 {
            bail!("{}: duration_s must be positive", path.display());
        }
        if s.crowd.is_some() && !s.pan_dhcp {
            bail!(
                "{}: crowd needs pan_dhcp = true (the laptop is one of the crowd)",
                path.display()
            );
        }
        if let Some(e) = s.events.iter().find(|e| e.at < 0.0 || e.at > s.duration_s) {
            bail!(
                "{}: an event at {} s lies outside 0..duration_s",
                path.display(),
                e.at
            );
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenarios_parse() {
        // The suite's scenarios and the benchmarks' (run by `compare`).
        let mut n = 0;
        for sub in ["scenarios", "bench"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "toml") {
                    Scenario::load(&p).unwrap();
                    n += 1;
                }
            }
        }
        assert!(n >= 9, "{n} scenarios");
    }
}

/// A codec a scenario compresses its services with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd.
    Zstd,
    /// lz4.
    Lz4,
}

impl Compression {
    /// The value of `compress =` in the daemons' configurations.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }
}
