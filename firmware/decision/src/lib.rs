//! The box's decision task (the seed's Check and Search activities) as a
//! pure state machine: drivers report what they see ([`Observation`]: link,
//! address, signal, keepalive and probe results, the active uplink), the
//! task keeps the interface lookup table ([`table`]), scores the uplinks from
//! the user's criteria and answers with [`Decision`]s — a planned switch
//! while the current path works, a sudden one when it is gone, a suggestion
//! in manual mode, probes of standby uplinks, searches. Time is passed in;
//! no sockets, no clock, no runtime (quinn-proto style).
//!
//! Hysteresis: a candidate must stay Good for `dwell` before the box moves
//! to it for being better, and automatic switches for betterment are at
//! least `min_interval` apart; an uplink left because it degraded is not
//! returned to for `hold_down`. Losing the current path (Down) switches at
//! once in both modes; a Critical path is left in both modes; a Warning one
//! or a preferred uplink coming back is a switch in automatic mode and a
//! suggestion in manual mode. A user-forced uplink is kept while it is at
//! least Warning.

pub mod table;
mod task;

use std::time::Duration;

pub use table::{Entry, Health, Kind, UplinkSpec};
pub use task::{Decision, DecisionTask, Observation, Refusal};

/// Who switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The box switches on its own.
    #[default]
    Automatic,
    /// The box suggests and waits for the user, except below the critical
    /// threshold or when the path is gone.
    Manual,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Automatic => "automatic",
            Mode::Manual => "manual",
        }
    }
}

/// Thresholds, timers and hysteresis of the task.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Manual or automatic at start.
    pub mode: Mode,
    /// Check activity period (the seed's Y).
    pub check_interval: Duration,
    /// Search activity period (the seed's X).
    pub search_interval: Duration,
    /// How often each standby uplink is probed.
    pub probe_interval: Duration,
    /// Round-trip time from which an uplink is Warning.
    pub rtt_warning: Duration,
    /// … and Critical.
    pub rtt_critical: Duration,
    /// Smoothed loss (0..1) from which an uplink is Warning.
    pub loss_warning: f64,
    /// … and Critical.
    pub loss_critical: f64,
    /// Signal (dBm) below which an uplink is Warning.
    pub signal_warning_dbm: i32,
    /// … and Critical.
    pub signal_critical_dbm: i32,
    /// A better candidate must be Good this long before a switch to it.
    pub dwell: Duration,
    /// Least time between automatic switches for betterment.
    pub min_interval: Duration,
    /// An uplink left because it degraded (warning, critical, down) is not
    /// returned to for betterment before this has passed: a fading hotspot
    /// that looks fine to a light probe must not pull the box back.
    pub hold_down: Duration,
    /// Path samples older than this no longer count.
    pub sample_max_age: Duration,
    /// How long a switch the task asked for may take before it decides
    /// again.
    pub switch_patience: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: Mode::Automatic,
            check_interval: Duration::from_millis(500),
            search_interval: Duration::from_secs(10),
            probe_interval: Duration::from_secs(2),
            rtt_warning: Duration::from_millis(250),
            rtt_critical: Duration::from_millis(800),
            loss_warning: 0.05,
            loss_critical: 0.25,
            signal_warning_dbm: -75,
            signal_critical_dbm: -85,
            dwell: Duration::from_secs(3),
            min_interval: Duration::from_secs(10),
            hold_down: Duration::from_secs(30),
            sample_max_age: Duration::from_secs(5),
            switch_patience: Duration::from_secs(5),
        }
    }
}

impl Policy {
    /// Checks the values against each other; `Err` names the bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("check_interval_ms", self.check_interval),
            ("search_interval_ms", self.search_interval),
            ("probe_interval_ms", self.probe_interval),
            ("sample_max_age_ms", self.sample_max_age),
            ("switch_patience_ms", self.switch_patience),
        ];
        for (k, v) in positive {
            if v.is_zero() {
                return Err((k, "must be greater than 0".into()));
            }
        }
        if self.rtt_warning >= self.rtt_critical {
            return Err((
                "rtt_warning_ms",
                "must be below rtt_critical_ms".to_string(),
            ));
        }
        for (k, v) in [
            ("loss_warning", self.loss_warning),
            ("loss_critical", self.loss_critical),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err((k, format!("{v} is not a share between 0 and 1")));
            }
        }
        if self.loss_warning >= self.loss_critical {
            return Err(("loss_warning", "must be below loss_critical".into()));
        }
        if self.signal_warning_dbm <= self.signal_critical_dbm {
            return Err((
                "signal_warning_dbm",
                "must be above signal_critical_dbm".into(),
            ));
        }
        if self.sample_max_age < self.check_interval {
            return Err((
                "sample_max_age_ms",
                "must be at least check_interval_ms".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod hysteresis_tests;
#[cfg(test)]
mod tests;
