//! The path notice an application receives (its JSON is documented in
//! `docs/protocol.md`, "QoS notices"), the figures it is made of, and the
//! two decisions behind it: when a notice is due ([`Pacer`]) and what the
//! tunnel says the path carries ([`RateEstimator`]). Pure: time is passed
//! in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Version of the notice format (the `v` field).
pub const NOTICE_VERSION: u32 = 1;

/// The uplink a session runs over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkView {
    /// The box's name for it (`wifi`, `lte` …).
    pub name: String,
    /// `wifi`, `lte`, `wired` or `unknown`.
    pub kind: String,
}

/// A rate estimate of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// kbit/s.
    pub kbps: u32,
    /// Measured while the sender had less to send than the path took:
    /// the path may carry more (a lower bound).
    pub app_limited: bool,
}

/// The last handover, as a notice carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverView {
    /// Its number in the session (counting from 1).
    pub number: u32,
    /// `planned` or `sudden`.
    pub kind: String,
    /// Uplink left, if known.
    #[serde(default)]
    pub from: Option<String>,
    /// Uplink moved to.
    pub to: String,
    /// How long the applications' data waited, at the box (milliseconds).
    pub stall_ms: u32,
    /// Why, in words (the box's notices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a notice says of the path: everything but its envelope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The uplink now, if the session has one.
    pub uplink: Option<UplinkView>,
    /// The tunnel's smoothed round trip (milliseconds), what a packet of
    /// the application waits for besides its own queue.
    pub rtt_ms: Option<u32>,
    /// Loss on the path, percent of the box's probes.
    pub loss_pct: Option<f64>,
    /// Box → servers (phones' uploads).
    pub up: Option<Rate>,
    /// Servers → box (phones' downloads).
    pub down: Option<Rate>,
    /// The session's last handover.
    pub handover: Option<HandoverView>,
}

/// Why a notice was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A handover completed since the last notice.
    Handover,
    /// The uplink, rate, round trip or loss moved materially.
    Change,
    /// Nothing moved for the heartbeat interval.
    Heartbeat,
    /// The state as a new subscriber finds it.
    Current,
}

/// One path notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Format version ([`NOTICE_VERSION`]).
    pub v: u32,
    /// Counts the notices of this box from 1 (per daemon run).
    pub seq: u64,
    /// The box.
    #[serde(rename = "box")]
    pub box_id: String,
    /// When it was made, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Why now.
    pub cause: Cause,
    /// The services it is for (those with `qos_notify = true`).
    pub services: Vec<String>,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Notices this subscriber missed before this one (it read too slowly).
    #[serde(default)]
    pub dropped: u64,
}

/// Decides when the next notice is due: at once after a handover or a
/// change of uplink; for a rate (±20 %), round trip (±25 % and 5 ms) or
/// loss (1 point) that moved, no sooner than `min_gap` after the last;
/// otherwise every `heartbeat`.
#[derive(Debug, Clone)]
pub struct Pacer {
    heartbeat: Duration,
    min_gap: Duration,
    last: Option<(Instant, Figures)>,
}

/// The shortest wait between two notices for a change.
pub const MIN_GAP: Duration = Duration::from_millis(250);

impl Pacer {
    /// A pacer with a heartbeat (and [`MIN_GAP`]).
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            heartbeat,
            min_gap: MIN_GAP,
            last: None,
        }
    }

    /// Whether `now`'s figures make a notice due, and why; a `Some`
    /// counts as sent.
    pub fn poll(&mut self, now: Instant, f: &Figures) -> Option<Cause> {
        let cause = match &self.last {
            None => Some(Cause::Change),
            Some((at, last)) => {
                let since = now.saturating_duration_since(*at);
                let number = |x: &Figures| x.handover.as_ref().map(|h| h.number);
                if number(f) != number(last) {
                    Some(Cause::Handover)
                } else if f.uplink != last.uplink || (since >= self.min_gap && moved(last, f)) {
                    Some(Cause::Change)
                } else if since >= self.heartbeat {
                    Some(Cause::Heartbeat)
                } else {
                    None
                }
            }
        };
        if cause.is_some() {
            self.last = Some((now, f.clone()));
        }
        cause
    }

    /// When the heartbeat is next due (none before the first notice).
    pub fn next_heartbeat(&self) -> Option<Instant> {
        self.last.as_ref().map(|(at, _)| *at + self.heartbeat)
    }
}

/// A material move of the figures since `a`.
fn moved(a: &Figures, b: &Figures) -> bool {
    let rate = |x: Option<Rate>, y: Option<Rate>| match (x, y) {
        (None, None) => false,
        (Some(x), Some(y)) => {
            let (x, y) = (f64::from(x.kbps), f64::from(y.kbps));
            (x - y).abs() > 0.2 * x.max(1.0)
        }
        _ => true,
    };
    let rtt = match (a.rtt_ms, b.rtt_ms) {
        (Some(x), Some(y)) => {
            let d = x.abs_diff(y);
            d >= 5 && f64::from(d) > 0.25 * f64::from(x)
        }
        (None, None) => false,
        _ => true,
    };
    let loss = match (a.loss_pct, b.loss_pct) {
        (Some(x), Some(y)) => (x - y).abs() >= 1.0,
        (None, None) => false,
        _ => true,
    };
    rate(a.up, b.up) || rate(a.down, b.down) || rtt || loss
}

/// What one tunnel's `TCP_INFO` delivery-rate samples say the path
/// carries: over the last [`RATE_WINDOW`], the median of the samples taken
/// while the sender was not application-limited; with none, the largest
/// application-limited sample, marked as a lower bound. Start a new one
/// with each tunnel (a path's rate says nothing of the next).
#[derive(Debug, Clone, Default)]
pub struct RateEstimator {
    samples: VecDeque<(Instant, u64, bool)>,
}

/// How far back the estimator looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The most samples it keeps (a sample every 100 ms fills a second).
const MAX_SAMPLES: usize = 32;

impl RateEstimator {
    /// Adds a sample: the delivery rate (bytes per second; 0 means none
    /// yet and is ignored) and whether it was application-limited.
    pub fn sample(&mut self, now: Instant, bytes_per_s: u64, app_limited: bool) {
        if bytes_per_s == 0 {
            return;
        }
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, bytes_per_s, app_limited));
    }

    /// The estimate at `now`, if there is any sample in the window.
    pub fn estimate(&mut self, now: Instant) -> Option<Rate> {
        while let Some(&(at, _, _)) = self.samples.front() {
            if now.saturating_duration_since(at) > RATE_WINDOW {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        let mut full: Vec<u64> = self.samples.iter().filter(|s| !s.2).map(|s| s.1).collect();
        let kbps = |bytes: u64| u32::try_from(bytes.saturating_mul(8) / 1000).unwrap_or(u32::MAX);
        if !full.is_empty() {
            full.sort_unstable();
            return Some(Rate {
                kbps: kbps(full[full.len() / 2]),
                app_limited: false,
            });
        }
        self.samples.iter().map(|s| s.1).max().map(|b| Rate {
            kbps: kbps(b),
            app_limited: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(kbps: u32, rtt: u32) -> Figures {
        Figures {
            uplink: Some(UplinkView {
                name: "wifi".into(),
                kind: "wifi".into(),
            }),
            rtt_ms: Some(rtt),
            loss_pct: Some(0.0),
            up: Some(Rate {
                kbps,
                app_limited: false,
            }),
            down: None,
            handover: None,
        }
    }

    #[test]
    fn a_handover_goes_at_once_a_change_waits_for_the_gap_and_the_heartbeat_fills_silence() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(5));
        let f = figures(10_000, 20);
        assert_eq!(p.poll(t0, &f), Some(Cause::Change), "the first notice");
        assert_eq!(p.poll(t0 + Duration::from_millis(100), &f), None);
        // A small move is no news; a big one is, after the gap.
        let small = figures(11_000, 22);
        assert_eq!(p.poll(t0 + Duration::from_secs(1), &small), None);
        let big = figures(4_000, 20);
        assert_eq!(p.poll(t0 + Duration::from_millis(200), &big), None);
        assert_eq!(
            p.poll(t0 + Duration::from_millis(300), &big),
            Some(Cause::Change)
        );
        // A handover is news at once, even inside the gap.
        let mut h = big.clone();
        h.handover = Some(HandoverView {
            number: 1,
            kind: "sudden".into(),
            from: Some("wifi".into()),
            to: "lte".into(),
            stall_ms: 240,
            reason: None,
        });
        assert_eq!(
            p.poll(t0 + Duration::from_millis(310), &h),
            Some(Cause::Handover)
        );
        assert_eq!(p.poll(t0 + Duration::from_millis(320), &h), None);
        assert_eq!(
            p.poll(t0 + Duration::from_millis(5_310), &h),
            Some(Cause::Heartbeat)
        );
        // A new uplink is news at once too.
        let mut u = h.clone();
        u.uplink = Some(UplinkView {
            name: "lte".into(),
            kind: "lte".into(),
        });
        assert_eq!(
            p.poll(t0 + Duration::from_millis(5_320), &u),
            Some(Cause::Change)
        );
    }

    #[test]
    fn a_round_trip_moves_when_it_grows_by_a_quarter_and_five_ms() {
        assert!(!moved(&figures(1, 4), &figures(1, 8)), "4 ms is noise");
        assert!(moved(&figures(1, 20), &figures(1, 30)));
        assert!(!moved(&figures(1, 100), &figures(1, 120)));
        assert!(moved(&figures(1, 100), &figures(1, 130)));
    }

    #[test]
    fn the_rate_is_the_median_of_full_samples_else_a_marked_lower_bound() {
        let t0 = Instant::now();
        let mut e = RateEstimator::default();
        assert_eq!(e.estimate(t0), None);
        e.sample(t0, 0, false);
        assert_eq!(e.estimate(t0), None, "zero is no sample");
        e.sample(t0, 500_000, true);
        assert_eq!(
            e.estimate(t0),
            Some(Rate {
                kbps: 4_000,
                app_limited: true
            })
        );
        let ms = Duration::from_millis;
        e.sample(t0 + ms(100), 600_000, false);
        e.sample(t0 + ms(200), 700_000, false);
        e.sample(t0 + ms(300), 5_000_000, false);
        assert_eq!(
            e.estimate(t0 + ms(300)),
            Some(Rate {
                kbps: 5_600,
                app_limited: false
            }),
            "the median of 0.6, 0.7 and 5 MB/s"
        );
        // A second later only the last sample is left.
        assert_eq!(e.estimate(t0 + ms(1_250)).map(|r| r.kbps), Some(40_000));
        assert_eq!(e.estimate(t0 + ms(2_500)), None);
    }

    #[test]
    fn a_notice_reads_back_from_its_json() {
        let n = Notice {
            v: NOTICE_VERSION,
            seq: 3,
            box_id: "box-7".into(),
            at_unix_ms: 1,
            cause: Cause::Handover,
            services: vec!["live".into()],
            figures: figures(4_800, 80),
            dropped: 0,
        };
        let text = serde_json::to_string(&n).unwrap_or_default();
        assert!(text.contains("\"box\":\"box-7\""), "{text}");
        assert!(text.contains("\"cause\":\"handover\""), "{text}");
        assert!(text.contains("\"rtt_ms\":80"), "flattened figures: {text}");
        let back: Notice = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back, n);
    }
}
