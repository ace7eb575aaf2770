//! The relay's side of the path notices: each reporting box's last
//! PATH_REPORT, what its active tunnel carries toward it (the rate and the
//! round trip from `TCP_INFO`), a notice to the hub for the servers' feed
//! when one is due, and the relay's own PATH_REPORT back to the box (its
//! phones learn the download rate from it). Only boxes that report take
//! part: a box reports when it has services with `qos_notify = true`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use config::QosListen;
use qos_notify::feed::{Feed, Listener};
use qos_notify::{Figures, HandoverView, Hub, Notice, Pacer, Rate, RateEstimator, UplinkView};
use session::TunnelId;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};
use wire::{BoxId, PathReport};

use crate::{ServerDriver, now};

/// How often the tunnels of reporting boxes are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A box that has not reported for this long no longer takes part.
const STALE: Duration = Duration::from_secs(30);

/// The notices of the relay, if configured.
#[derive(Debug)]
pub(crate) struct RelayQos {
    hub: Hub,
    services: Vec<String>,
    heartbeat: Duration,
    boxes: HashMap<BoxId, BoxPath>,
}

#[derive(Debug)]
struct BoxPath {
    report: PathReport,
    heard: Instant,
    /// The uplink before the last handover.
    from: Option<String>,
    tunnel: Option<TunnelId>,
    rate: RateEstimator,
    rtt_ms: Option<u32>,
    pacer: Pacer,
    seq: u64,
}

impl RelayQos {
    pub(crate) fn new(hub: Hub, services: Vec<String>, heartbeat: Duration) -> Self {
        Self {
            hub,
            services,
            heartbeat,
            boxes: HashMap::new(),
        }
    }

    /// The hub the notices go to.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Whether any box takes part (the sampling tick runs only then).
    pub(crate) fn active(&self) -> bool {
        !self.boxes.is_empty()
    }
}

fn kbps(r: &PathReport) -> Option<Rate> {
    (r.send_kbps > 0).then_some(Rate {
        kbps: r.send_kbps,
        app_limited: r.app_limited,
    })
}

fn handover_name(k: wire::HandoverKind) -> &'static str {
    match k {
        wire::HandoverKind::Planned => "planned",
        wire::HandoverKind::Sudden => "sudden",
        _ => "unknown",
    }
}

impl ServerDriver {
    /// Listens for the servers' subscriptions (`[qos] listen`), if
    /// configured.
    pub(crate) async fn spawn_qos_feed(&mut self) -> std::io::Result<Option<AbortHandle>> {
        let (Some(q), Some(listen)) = (self.qos.as_ref(), self.cfg.qos.listen.clone()) else {
            return Ok(None);
        };
        let (hub, services) = (q.hub.clone(), q.services.clone());
        if services.is_empty() {
            warn!(
                "[qos] listen is set but no service has qos_notify = true: every subscription will be refused"
            );
        }
        let listener = match &listen {
            QosListen::Tcp(addr) => Listener::Tcp(
                self.listen_tcp(crate::upgrade::Label::QosTcp(*addr))
                    .await?,
            ),
            QosListen::Unix(path) => {
                // A socket left by an earlier run (not any other file).
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(path)?;
                }
                Listener::Unix(tokio::net::UnixListener::bind(path)?)
            }
        };
        info!(listen = ?listen, services = ?services, "qos feed for servers");
        let feed = Feed::new(hub, services, self.cfg.qos.max_subscribers);
        let task = tokio::spawn(feed.serve(listener, self.accept_stats.clone()));
        Ok(Some(task.abort_handle()))
    }

    /// A PATH_REPORT from `b`.
    pub(crate) fn qos_report(&mut self, b: BoxId, r: PathReport) {
        let Some(q) = self.qos.as_mut() else {
            return;
        };
        let t = now();
        let heartbeat = q.heartbeat;
        let p = q.boxes.entry(b.clone()).or_insert_with(|| BoxPath {
            report: PathReport::default(),
            heard: t,
            from: None,
            tunnel: None,
            rate: RateEstimator::default(),
            rtt_ms: None,
            pacer: Pacer::new(heartbeat),
            seq: 0,
        });
        if r.switches != p.report.switches && r.uplink != p.report.uplink {
            p.from = Some(p.report.uplink.clone()).filter(|u| !u.is_empty());
        }
        p.report = r;
        p.heard = t;
        debug!(box_id = %b, uplink = %p.report.uplink, "path report");
        self.qos_sample(&b, t);
    }

    /// The box's session ended.
    pub(crate) fn qos_forget(&mut self, b: &BoxId) {
        if let Some(q) = self.qos.as_mut() {
            q.boxes.remove(b);
            q.hub.forget(b.as_str());
        }
    }

    /// Samples every reporting box's tunnel; notices and reports those
    /// that are due.
    pub(crate) fn qos_tick(&mut self) {
        let t = now();
        let Some(q) = self.qos.as_mut() else {
            return;
        };
        q.boxes
            .retain(|_, p| t.saturating_duration_since(p.heard) < STALE);
        let boxes: Vec<BoxId> = q.boxes.keys().cloned().collect();
        for b in boxes {
            self.qos_sample(&b, t);
        }
    }

    fn qos_sample(&mut self, b: &BoxId, t: Instant) {
        let active = self.server.session_mut(b).and_then(|s| s.active_tunnel());
        let info = active
            .and_then(|a| self.tunnels.get(&a))
            .and_then(|x| x.watch.as_ref())
            .and_then(|w| w.sample().ok());
        let Some(q) = self.qos.as_mut() else {
            return;
        };
        let services = q.services.clone();
        let Some(p) = q.boxes.get_mut(b) else {
            return;
        };
        if active != p.tunnel {
            // A new path: its rate is not the old one's.
            p.tunnel = active;
            p.rate = RateEstimator::default();
            p.rtt_ms = None;
        }
        if let Some(i) = info {
            p.rate
                .sample(t, i.delivery_rate, i.delivery_rate_app_limited);
            p.rtt_ms = Some(u32::try_from(i.rtt.as_millis()).unwrap_or(u32::MAX));
        }
        let down = p.rate.estimate(t);
        let r = &p.report;
        let figures = Figures {
            uplink: (!r.uplink.is_empty()).then(|| UplinkView {
                name: r.uplink.clone(),
                kind: r.kind.name().into(),
            }),
            rtt_ms: p.rtt_ms.or((r.rtt_ms > 0).then_some(r.rtt_ms)),
            loss_pct: Some(f64::from(r.loss_permille) / 10.0),
            up: kbps(r),
            down,
            handover: (r.switches > 0).then(|| HandoverView {
                number: r.switches,
                kind: handover_name(r.handover).into(),
                from: p.from.clone(),
                to: r.uplink.clone(),
                stall_ms: r.stall_ms,
                reason: None,
            }),
        };
        let Some(cause) = p.pacer.poll(t, &figures) else {
            return;
        };
        p.seq += 1;
        let notice = Notice {
            v: qos_notify::NOTICE_VERSION,
            seq: p.seq,
            box_id: b.as_str().to_owned(),
            at_unix_ms: qos_notify::unix_ms(),
            cause,
            services,
            figures,
            dropped: 0,
        };
        let back = PathReport {
            rtt_ms: notice.figures.rtt_ms.unwrap_or(0),
            send_kbps: down.map_or(0, |d| d.kbps),
            app_limited: down.is_some_and(|d| d.app_limited),
            ..PathReport::default()
        };
        q.hub.publish(notice);
        if let Some(s) = self.server.session_mut(b) {
            s.report_path(back);
        }
    }
}
