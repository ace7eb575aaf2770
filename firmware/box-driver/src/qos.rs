//! The box's side of the path notices (services with `qos_notify = true`):
//! every [`SAMPLE_EVERY`] the active tunnel's `TCP_INFO` gives the round
//! trip and the upload rate, the relay's last PATH_REPORT the download
//! rate, the decision task the loss, the handover history the last
//! handover; when a notice is due it goes to the hub (the status page's
//! `/qos/events`, the PAN announcement) and the same figures to each relay
//! as a PATH_REPORT (its servers' feed).

use std::time::{Duration, Instant};

use qos_notify::announce::announce;
use qos_notify::{Figures, HandoverView, Hub, Notice, Pacer, Rate, RateEstimator, UplinkView};
use session::TunnelId;
use status::{HandoverKind, Outcome};
use tokio::task::AbortHandle;
use wire::PathReport;

use super::{BoxDriver, now};

/// How often the active tunnel is sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The relay's download rate is trusted this long after its report.
const DOWN_FRESH: Duration = Duration::from_secs(3);

/// What the box keeps for its notices.
#[derive(Debug)]
pub(super) struct BoxQos {
    hub: Hub,
    services: Vec<String>,
    pacer: Pacer,
    rate: RateEstimator,
    tunnel: Option<TunnelId>,
    down: Option<(Instant, Rate)>,
    seq: u64,
}

impl BoxQos {
    /// The notices of `cfg`'s `qos_notify` services, if it has any.
    pub(super) fn new(cfg: &config::CnaptConfig) -> Option<Self> {
        let services: Vec<String> = cfg
            .qos_services()
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        (!services.is_empty()).then(|| Self {
            hub: Hub::new(),
            services,
            pacer: Pacer::new(cfg.qos.heartbeat),
            rate: RateEstimator::default(),
            tunnel: None,
            down: None,
            seq: 0,
        })
    }

    pub(super) fn hub(&self) -> &Hub {
        &self.hub
    }
}

fn kind_name(k: config::UplinkKind) -> (&'static str, wire::UplinkKind) {
    match k {
        config::UplinkKind::Wifi => ("wifi", wire::UplinkKind::Wifi),
        config::UplinkKind::Lte => ("lte", wire::UplinkKind::Lte),
        config::UplinkKind::Wired => ("wired", wire::UplinkKind::Wired),
    }
}

impl BoxDriver {
    /// The hub of the box's path notices (none without `qos_notify`
    /// services): the status page serves it.
    pub fn qos_hub(&self) -> Option<Hub> {
        self.qos.as_ref().map(|q| q.hub().clone())
    }

    /// Starts the PAN announcement (`[qos] multicast`), if configured.
    pub(super) fn spawn_qos_announcer(&self) -> Option<AbortHandle> {
        let q = self.qos.as_ref()?;
        let (group, source) = (self.cfg.qos.multicast?, self.cfg.qos.source?);
        Some(tokio::spawn(announce(q.hub.clone(), group, source)).abort_handle())
    }

    /// The relay's PATH_REPORT: its download rate.
    pub(super) fn qos_heard(&mut self, r: &PathReport) {
        if let Some(q) = self.qos.as_mut() {
            q.down = (r.send_kbps > 0).then_some((
                now(),
                Rate {
                    kbps: r.send_kbps,
                    app_limited: r.app_limited,
                },
            ));
        }
    }

    /// Samples the active tunnel; sends a notice and the reports if due.
    pub(super) fn qos_tick(&mut self) {
        let t = now();
        // The first site with a session on a tunnel speaks for the box
        // (every site switches with it).
        let active = (0..self.cfg.snapts.len()).find_map(|s| {
            let a = self.coord.site(s).and_then(|x| x.active_tunnel())?;
            Some((s, a))
        });
        let info = active
            .and_then(|(_, a)| self.tunnels.get(&a))
            .and_then(|x| x.tcp.as_ref())
            .and_then(|w| w.sample().ok());
        let uplink = active.and_then(|(s, _)| self.sites[s].uplink);
        let loss = uplink
            .and_then(|u| self.up.task.table().get(u))
            .map(|e| e.loss * 100.0);
        let last = self
            .history
            .records()
            .filter(|r| r.outcome == Outcome::Completed)
            .last()
            .cloned();
        let Some(q) = self.qos.as_mut() else {
            return;
        };
        let tunnel = active.map(|(_, a)| a);
        if tunnel != q.tunnel {
            // A new path: neither direction's rate is the old one's.
            q.tunnel = tunnel;
            q.rate = RateEstimator::default();
            q.down = None;
        }
        if let Some(i) = &info {
            q.rate
                .sample(t, i.delivery_rate, i.delivery_rate_app_limited);
        }
        let up = q.rate.estimate(t);
        let down = q
            .down
            .filter(|(at, _)| t.saturating_duration_since(*at) < DOWN_FRESH)
            .map(|(_, r)| r);
        let spec = uplink.map(|u| {
            let (name, kind) = kind_name(self.cfg.uplinks[u].kind);
            (self.cfg.uplinks[u].name.clone(), name, kind)
        });
        let figures = Figures {
            uplink: spec.as_ref().map(|(n, k, _)| UplinkView {
                name: n.clone(),
                kind: (*k).into(),
            }),
            rtt_ms: info.map(|i| u32::try_from(i.rtt.as_millis()).unwrap_or(u32::MAX)),
            loss_pct: loss,
            up,
            down,
            handover: last.as_ref().map(|r| HandoverView {
                number: u32::try_from(r.seq).unwrap_or(u32::MAX),
                kind: match r.kind {
                    HandoverKind::Planned => "planned",
                    _ => "sudden",
                }
                .into(),
                from: r.from_uplink.clone(),
                to: r.to_uplink.clone(),
                stall_ms: r.stall_ms.round() as u32,
                reason: Some(r.reason.clone()),
            }),
        };
        let Some(cause) = q.pacer.poll(t, &figures) else {
            return;
        };
        q.seq += 1;
        let report = PathReport {
            switches: figures.handover.as_ref().map_or(0, |h| h.number),
            handover: match last.as_ref().map(|r| r.kind) {
                None => wire::HandoverKind::None,
                Some(HandoverKind::Planned) => wire::HandoverKind::Planned,
                Some(_) => wire::HandoverKind::Sudden,
            },
            stall_ms: figures.handover.as_ref().map_or(0, |h| h.stall_ms),
            uplink: spec.as_ref().map(|(n, _, _)| n.clone()).unwrap_or_default(),
            kind: spec.map_or(wire::UplinkKind::Unknown, |(_, _, k)| k),
            rtt_ms: figures.rtt_ms.unwrap_or(0),
            loss_permille: loss.map_or(0, |l| (l * 10.0).round().clamp(0.0, 1000.0) as u16),
            send_kbps: up.map_or(0, |r| r.kbps),
            app_limited: up.is_some_and(|r| r.app_limited),
        };
        q.hub.publish(Notice {
            v: qos_notify::NOTICE_VERSION,
            seq: q.seq,
            box_id: self.cfg.box_id.as_str().to_owned(),
            at_unix_ms: qos_notify::unix_ms(),
            cause,
            services: q.services.clone(),
            figures,
            dropped: 0,
        });
        for s in 0..self.cfg.snapts.len() {
            if let Some(site) = self.coord.site(s) {
                site.report_path(report.clone());
            }
        }
    }
}
