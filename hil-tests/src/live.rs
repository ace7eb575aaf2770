//! The live stream of a QoS scenario (`live = "adaptive"` or `"fixed"`):
//! a server sends 20 ms frames to the phone through the box, adapting its
//! rate from the relay's QoS feed or not (`apps/live_stream.py`); the phone
//! measures each frame's latency and records the notices of the box page's
//! event stream and of the PAN multicast. What the run's report says of it,
//! and whether it met the scenario's bound.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::scenario::{LiveMode, Scenario};

/// Ports and addresses of the live stream and the notices.
pub mod port {
    /// The live server, in the internet.
    pub const SERVER: u16 = 7200;
    /// The box's `live` service.
    pub const BOX: u16 = 7201;
    /// The relay's QoS feed.
    pub const FEED: u16 = 7300;
    /// The PAN announcement's group and port.
    pub const GROUP: &str = "239.255.70.1:7301";
}

#[derive(Debug, Deserialize)]
struct PhoneSide {
    samples: Vec<(f64, f64)>,
    frames: u64,
    bytes: u64,
    error: Option<String>,
    sse: Vec<Heard>,
    multicast: Vec<Heard>,
}

#[derive(Debug, Clone, Deserialize)]
struct Heard {
    t: f64,
    delay_ms: i64,
    cause: Option<String>,
    handover: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct SenderSide {
    rates: Vec<(f64, u64, String)>,
    notices: u64,
    dropped_frames: u64,
    error: Option<String>,
}

/// What the live stream showed.
#[derive(Debug, Clone, Serialize)]
pub struct LiveFigures {
    /// `adaptive` or `fixed`.
    pub mode: String,
    /// Frames received.
    pub frames: u64,
    /// Mean rate received, Mbit/s.
    pub mbit: f64,
    /// Frame latency (made → received), median, 99th percentile and
    /// largest, ms.
    pub latency_p50_ms: f64,
    /// See `latency_p50_ms`.
    pub latency_p99_ms: f64,
    /// See `latency_p50_ms`.
    pub latency_max_ms: f64,
    /// The same over the frames received after the phone heard of the
    /// first handover (from the page's event stream).
    pub after_handover_p99_ms: Option<f64>,
    /// See `after_handover_p99_ms`.
    pub after_handover_max_ms: Option<f64>,
    /// Frames the sender dropped (live content it could no longer send in
    /// time; adaptive only).
    pub dropped_frames: u64,
    /// The sender's rate changes.
    pub rate_changes: usize,
    /// Its last rate, Mbit/s.
    pub final_rate_mbit: f64,
    /// Notices the sender had from the relay's feed.
    pub feed_notices: u64,
    /// Notices the phone had: page event stream, PAN multicast.
    pub page_notices: usize,
    /// See `page_notices`.
    pub multicast_notices: usize,
    /// From a handover's notice being made to its arrival at the phone
    /// (page event stream), ms.
    pub page_handover_delay_ms: Option<i64>,
    /// Problems the applications reported.
    pub errors: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v
}

impl LiveFigures {
    /// Reads the phone's and the sender's files; none if the phone wrote
    /// nothing.
    pub fn read(phone: &Path, sender: &Path, mode: LiveMode, secs: f64) -> Option<Self> {
        let p: PhoneSide = serde_json::from_str(&std::fs::read_to_string(phone).ok()?).ok()?;
        let s: Option<SenderSide> = std::fs::read_to_string(sender)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let all = sorted(p.samples.iter().map(|x| x.1));
        let handover = |h: &&Heard| h.handover.is_some() && h.cause.as_deref() == Some("handover");
        let first = p.sse.iter().find(handover).cloned();
        let after = first
            .as_ref()
            .map(|h| sorted(p.samples.iter().filter(|x| x.0 >= h.t).map(|x| x.1)));
        let mut errors: Vec<String> = p.error.clone().into_iter().collect();
        if let Some(e) = s.as_ref().and_then(|s| s.error.clone()) {
            errors.push(e);
        }
        Some(Self {
            mode: mode.name().into(),
            frames: p.frames,
            mbit: p.bytes as f64 * 8.0 / secs / 1e6,
            latency_p50_ms: percentile(&all, 0.5),
            latency_p99_ms: percentile(&all, 0.99),
            latency_max_ms: all.last().copied().unwrap_or(0.0),
            after_handover_p99_ms: after.as_ref().map(|a| percentile(a, 0.99)),
            after_handover_max_ms: after.as_ref().and_then(|a| a.last().copied()),
            dropped_frames: s.as_ref().map_or(0, |s| s.dropped_frames),
            rate_changes: s.as_ref().map_or(0, |s| s.rates.len().saturating_sub(1)),
            final_rate_mbit: s
                .as_ref()
                .and_then(|s| s.rates.last())
                .map_or(0.0, |r| r.1 as f64 / 1e3),
            feed_notices: s.as_ref().map_or(0, |s| s.notices),
            page_notices: p.sse.len(),
            multicast_notices: p.multicast.len(),
            page_handover_delay_ms: first.map(|h| h.delay_ms),
            errors,
        })
    }

    /// Whether the stream met the scenario: the adaptive sender keeps its
    /// largest latency within `live_bound_ms` and hears of the handover on
    /// every channel; the fixed one is shown to exceed it (else the links
    /// did not test anything).
    pub fn check(&self, sc: &Scenario) -> Result<String, String> {
        let ms = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.0}"));
        let summary = format!(
            "live ({}): {} frames, {:.1} Mbit/s, latency p50 {:.0} / p99 {:.0} / max {:.0} ms (after the handover p99 {}, max {} ms); {} rate changes, {} frames dropped; notices: feed {}, page {}, multicast {}; the page's stream heard the handover {} ms after it was made",
            self.mode,
            self.frames,
            self.mbit,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            ms(self.after_handover_p99_ms),
            ms(self.after_handover_max_ms),
            self.rate_changes,
            self.dropped_frames,
            self.feed_notices,
            self.page_notices,
            self.multicast_notices,
            ms(self.page_handover_delay_ms.map(|d| d as f64)),
        );
        if self.frames == 0 || !self.errors.is_empty() {
            return Err(format!("{summary}; errors: {:?}", self.errors));
        }
        let Some(bound) = sc.live_bound_ms else {
            return Ok(summary);
        };
        match self.mode.as_str() {
            "adaptive" => {
                if self.latency_max_ms > bound {
                    return Err(format!("{summary}: over the {bound} ms bound"));
                }
                if self.feed_notices == 0
                    || self.page_handover_delay_ms.is_none()
                    || self.multicast_notices == 0
                {
                    return Err(format!("{summary}: a channel carried no notice"));
                }
            }
            _ => {
                if self.latency_max_ms <= bound {
                    return Err(format!(
                        "{summary}: the sender without notices stayed within {bound} ms, so the links did not test the adaptation"
                    ));
                }
            }
        }
        Ok(summary)
    }
}
