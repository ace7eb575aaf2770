//! The interface lookup table: every uplink the box has, what is known about
//! it (link, address, signal, path quality) and the health that follows from
//! the policy's thresholds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::Policy;

/// What sort of uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A Wi-Fi hotspot through wpa_supplicant.
    Wifi,
    /// An LTE modem.
    Lte,
    /// A wired WAN port.
    Wired,
}

impl Kind {
    /// Lower-case name (`wifi`, `lte`, `wired`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wifi => "wifi",
            Kind::Lte => "lte",
            Kind::Wired => "wired",
        }
    }
}

/// What the user configured about one uplink: the scoring criteria.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkSpec {
    /// Name (`cboxctl switch NAME`).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Preference: lower is preferred among uplinks of equal health.
    pub priority: u8,
    /// Cost per use (e.g. per MB); lower is preferred at equal priority.
    pub cost: u32,
    /// Below this signal (dBm) the uplink is not chosen.
    pub min_signal_dbm: Option<i32>,
    /// The uplink may be brought up and used without the user (a metered
    /// or roaming link may be configured not to).
    pub auto_connect: bool,
}

/// How usable an uplink is, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// No link, or no address: nothing gets through.
    Down,
    /// Below a critical threshold: leave it even in manual mode.
    Critical,
    /// Below a warning threshold: look for better.
    Warning,
    /// Fine (or not measured yet, with link and address).
    Good,
}

impl Health {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Health::Down => "down",
            Health::Critical => "critical",
            Health::Warning => "warning",
            Health::Good => "good",
        }
    }
}

/// How far back a loaded uplink's lowest round trip is looked for: long
/// enough to hold a sample between the box's own bursts (its queue is
/// bounded to half a round trip by the send gate, docs/architecture.md),
/// short enough that a path that got slower is left while it is slow — 5 s
/// outlasted the demo's 2.5 s fade and the box stayed on it.
pub const LOADED_WINDOW: Duration = Duration::from_secs(2);

/// Round-trip samples an entry keeps.
pub const RECENT_SAMPLES: usize = 16;

/// One row of the lookup table.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The configuration.
    pub spec: UplinkSpec,
    /// Carrier / operational state (netlink, the modem, wpa_supplicant).
    pub link_up: bool,
    /// The uplink's address, if it has one.
    pub address: Option<IpAddr>,
    /// Radio signal (RSSI or RSRP), if the uplink is a radio and reports it.
    pub signal_dbm: Option<i32>,
    /// Latest round-trip time to the SNAPT over this uplink.
    pub rtt: Option<Duration>,
    /// The lower of the last two samples, which judges health: one slow
    /// sample (a SYN retransmitted, a burst of queueing) is not a slow
    /// path; two in a row are. None until two samples arrived.
    pub rtt_confirmed: Option<Duration>,
    /// The box's own traffic loads the uplink: its round trips include the
    /// box's own queue, which comes and goes with the transfer's congestion
    /// control; the warning then judges the lowest sample of the last
    /// [`LOADED_WINDOW`] (a path that got slower is slow in all of them).
    pub loaded: bool,
    /// When the entry was last judged less than good.
    pub last_bad: Option<Instant>,
    /// Recent round-trip samples (time, value), newest last, at most
    /// [`RECENT_SAMPLES`].
    pub recent: std::collections::VecDeque<(Instant, Duration)>,
    /// Smoothed share of keepalives/probes lost, 0..1.
    pub loss: f64,
    /// When the last path sample arrived.
    pub sampled_at: Option<Instant>,
    /// Health as last evaluated.
    pub health: Health,
    /// Why (the threshold that decided it).
    pub why: String,
    /// When `health` last changed.
    pub changed_at: Instant,
    /// Since when the uplink has been continuously Good (for dwell times).
    pub good_since: Option<Instant>,
}

impl Entry {
    /// A new row: nothing known, down.
    pub fn new(spec: UplinkSpec, now: Instant) -> Self {
        Self {
            spec,
            link_up: false,
            address: None,
            signal_dbm: None,
            rtt: None,
            rtt_confirmed: None,
            loaded: false,
            last_bad: None,
            recent: std::collections::VecDeque::new(),
            loss: 0.0,
            sampled_at: None,
            health: Health::Down,
            why: "no link yet".into(),
            changed_at: now,
            good_since: None,
        }
    }

    /// Health from what is known now, and the reason.
    pub fn assess(&self, p: &Policy, now: Instant) -> (Health, String) {
        if !self.link_up {
            return (Health::Down, "link down".into());
        }
        if self.address.is_none() {
            return (Health::Down, "no address".into());
        }
        let mut worst = (Health::Good, String::from("ok"));
        let mut worse = |h: Health, why: String| {
            if h < worst.0 {
                worst = (h, why);
            }
        };
        if let Some(s) = self.signal_dbm {
            let floor = self
                .spec
                .min_signal_dbm
                .map_or(p.signal_critical_dbm, |m| m.max(p.signal_critical_dbm));
            if s < floor {
                worse(Health::Critical, format!("signal {s} dBm < {floor}"));
            } else if s < p.signal_warning_dbm {
                worse(
                    Health::Warning,
                    format!("signal {s} dBm < {}", p.signal_warning_dbm),
                );
            }
        }
        let fresh = self
            .sampled_at
            .is_some_and(|t| now.saturating_duration_since(t) <= p.sample_max_age);
        if fresh {
            if self.loss >= p.loss_critical {
                worse(
                    Health::Critical,
                    format!(
                        "loss {:.0}% ≥ {:.0}%",
                        self.loss * 100.0,
                        p.loss_critical * 100.0
                    ),
                );
            } else if self.loss >= p.loss_warning {
                worse(
                    Health::Warning,
                    format!(
                        "loss {:.0}% ≥ {:.0}%",
                        self.loss * 100.0,
                        p.loss_warning * 100.0
                    ),
                );
            }
            if let Some(r) = self.rtt_confirmed {
                let warn_rtt = if self.loaded {
                    self.recent
                        .iter()
                        .filter(|(t, _)| now.saturating_duration_since(*t) <= LOADED_WINDOW)
                        .map(|(_, r)| *r)
                        .min()
                        .unwrap_or(r)
                } else {
                    r
                };
                if r >= p.rtt_critical {
                    worse(
                        Health::Critical,
                        format!("rtt {} ms ≥ {}", r.as_millis(), p.rtt_critical.as_millis()),
                    );
                } else if warn_rtt >= p.rtt_warning {
                    let how = if self.loaded { "loaded, lowest " } else { "" };
                    worse(
                        Health::Warning,
                        format!(
                            "rtt {how}{} ms ≥ {}",
                            warn_rtt.as_millis(),
                            p.rtt_warning.as_millis()
                        ),
                    );
                }
            }
        }
        worst
    }

    /// Re-evaluates `health`; true if it changed.
    pub fn refresh(&mut self, p: &Policy, now: Instant) -> bool {
        let (h, why) = self.assess(p, now);
        self.why = why;
        if h == Health::Good {
            self.good_since.get_or_insert(now);
        } else {
            self.good_since = None;
            self.last_bad = Some(now);
        }
        if h != self.health {
            self.health = h;
            self.changed_at = now;
            true
        } else {
            false
        }
    }

    /// Ordering key: healthier first, then uplinks allowed to connect on
    /// their own, then the user's priority, then cost.
    pub fn rank(&self) -> (std::cmp::Reverse<Health>, bool, u8, u32) {
        (
            std::cmp::Reverse(self.health),
            !self.spec.auto_connect,
            self.spec.priority,
            self.spec.cost,
        )
    }
}
