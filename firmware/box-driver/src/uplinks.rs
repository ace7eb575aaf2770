//! The decision task wired to the box: the link monitor's events, the
//! active tunnel's keepalive figures and the standby uplinks' probes go in;
//! planned and sudden switches, suggestions and probes come out and are
//! carried out here. The uplinks' lookup table for `cboxctl status`.

use std::time::{Duration, Instant};

use decision::{Decision, Observation};
use tracing::{debug, info, warn};

use super::radios::{ModemStatus, WifiStatus};
use super::{BoxDriver, Input, now};
use box_os::linkmon::LinkEvent;

/// How long after a link or address comes back its routes are given to
/// appear before a tunnel is tried over it.
pub(super) const LINK_SETTLE: Duration = Duration::from_millis(300);

/// The decision task's half of the driver's state.
#[derive(Debug)]
pub(super) struct Uplinks {
    pub(super) task: decision::DecisionTask,
    /// Keepalive counters of the active tunnel at the last Check, and that
    /// tunnel (its counters are not another tunnel's).
    seen: (Option<session::TunnelId>, u64, u64),
    /// A probe is under way, per uplink.
    probing: Vec<bool>,
    /// The pending suggestion's reason (manual mode).
    pub(super) suggestion: Option<String>,
    /// The modem drivers' view, per uplink (LTE uplinks with a modem).
    pub(super) modems: Vec<Option<ModemStatus>>,
    /// The Wi-Fi drivers' view, per uplink.
    pub(super) wifis: Vec<Option<WifiStatus>>,
    /// Policy routing: what each uplink's table and rule should hold (the
    /// adapters' routing task applies the changes).
    routing: box_os::routing::Planner,
}

impl Uplinks {
    pub(super) fn new(cfg: &config::CnaptConfig) -> Self {
        let specs = cfg
            .uplinks
            .iter()
            .enumerate()
            .map(|(i, u)| u.spec(i))
            .collect();
        Self {
            task: decision::DecisionTask::new(cfg.decision.clone(), specs, now()),
            seen: (None, 0, 0),
            probing: vec![false; cfg.uplinks.len()],
            suggestion: None,
            modems: cfg
                .uplinks
                .iter()
                .map(|u| u.modem.as_ref().map(|_| ModemStatus::default()))
                .collect(),
            wifis: cfg
                .uplinks
                .iter()
                .map(|u| u.wifi.as_ref().map(|_| WifiStatus::default()))
                .collect(),
            routing: box_os::routing::Planner::new(cfg.routing, &cfg.uplinks),
        }
    }

    /// Uplinks without an interface count as always up, with their source
    /// address (or none in particular).
    pub(super) fn observe_fixed_uplinks(&mut self, cfg: &config::CnaptConfig, t: Instant) {
        for (i, u) in cfg.uplinks.iter().enumerate() {
            if u.interface.is_none() {
                self.count_as_up(i, u.source, t);
            }
        }
    }

    fn count_as_up(&mut self, uplink: usize, source: Option<std::net::IpAddr>, t: Instant) {
        let address = Some(source.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)));
        self.task.observe(Observation::Link { uplink, up: true }, t);
        self.task
            .observe(Observation::Address { uplink, address }, t);
    }
}

impl BoxDriver {
    /// No link monitor: every uplink counts as up; losses are noticed by
    /// the keepalives only.
    pub(super) fn no_link_monitor(&mut self) {
        let t = now();
        for i in 0..self.cfg.uplinks.len() {
            let source = self.cfg.uplinks[i].source;
            self.up.count_as_up(i, source, t);
        }
        self.carry_out_decisions();
    }

    /// A change the kernel reported.
    pub(super) fn link_event(&mut self, ev: LinkEvent) {
        let t = now();
        for c in self.up.routing.observe(&ev) {
            if let Some(tx) = &self.os.routes {
                let _ = tx.send(c);
            }
        }
        let gained = matches!(
            ev,
            LinkEvent::Link { up: true, .. }
                | LinkEvent::Address {
                    address: Some(_),
                    ..
                }
        );
        let ev_kind = match &ev {
            LinkEvent::Link { up, .. } => Some(*up),
            _ => None,
        };
        let (iface, obs): (String, Box<dyn Fn(usize) -> Observation>) = match ev {
            LinkEvent::Link { iface, up } => {
                info!(%iface, up, "link");
                (
                    iface,
                    Box::new(move |uplink| Observation::Link { uplink, up }),
                )
            }
            LinkEvent::Address { iface, address } => {
                info!(%iface, ?address, "address");
                (
                    iface,
                    Box::new(move |uplink| Observation::Address { uplink, address }),
                )
            }
            LinkEvent::Gateway { iface, gateway } => {
                // Policy routing's business only (above).
                debug!(%iface, ?gateway, "default gateway");
                return;
            }
        };
        for i in 0..self.cfg.uplinks.len() {
            if self.cfg.uplinks[i].interface.as_deref() == Some(iface.as_str()) {
                if ev_kind.is_some_and(|up| self.hold_link_change(i, up, t)) {
                    continue;
                }
                self.up.task.observe(obs(i), t);
            }
        }
        self.carry_out_decisions();
        if gained {
            // A way out came back: sites without a tunnel try soon instead
            // of at the end of their back-off — after LINK_SETTLE, because
            // the link comes up before its routes do, and a connection
            // started in between keeps a dead route until it times out.
            for site in 0..self.cfg.snapts.len() {
                let waiting = self.coord.site(site).is_some_and(|s| {
                    matches!(
                        s.state(),
                        session::BoxState::Idle | session::BoxState::Recovering
                    )
                });
                if waiting && (self.sites[site].proven || self.sites[site].awaiting_link) {
                    self.sites[site].backoff.reset();
                    self.retry_after(site, LINK_SETTLE);
                }
            }
        }
    }

    /// The decision task's timer: a Check feeds the active path's figures
    /// first.
    pub(super) fn decision_timeout(&mut self) {
        let t = now();
        self.end_expired_roams(t);
        if t < self.up.task.poll_timeout() {
            return;
        }
        self.sync_active();
        // The sessions' own traffic loads the active uplink: its round trips
        // then hold our own queue (see decision::Observation::Loaded).
        let active = self.up.task.active();
        let busy = self.coord.site(0).is_some_and(|s| s.busy());
        for u in 0..self.cfg.uplinks.len() {
            let loaded = busy && active == Some(u);
            self.up
                .task
                .observe(Observation::Loaded { uplink: u, loaded }, t);
        }
        if let (Some(u), Some(s)) = (self.up.task.active(), self.coord.site(0)) {
            let p = s.path_stats();
            let tunnel = s.active_tunnel();
            let (t0, sent0, lost0) = self.up.seen;
            self.up.seen = (tunnel, p.pings_sent, p.pings_lost);
            // A new tunnel's first window only sets the baseline; counters
            // that went back restarted with a new path.
            let fresh = t0 != tunnel || p.pings_sent < sent0 || p.pings_lost < lost0;
            let (sent, lost) = (
                p.pings_sent.saturating_sub(sent0),
                p.pings_lost.saturating_sub(lost0),
            );
            if !fresh && sent > 0 {
                self.up.task.observe(
                    Observation::Path {
                        uplink: u,
                        rtt: p.latest_rtt,
                        sent: u32::try_from(sent).unwrap_or(u32::MAX),
                        lost: u32::try_from(lost).unwrap_or(u32::MAX),
                    },
                    t,
                );
            }
        }
        self.up.task.handle_timeout(t);
        self.carry_out_decisions();
    }

    /// A probe came back.
    pub(super) fn probed(&mut self, uplink: usize, rtt: Option<Duration>) {
        if let Some(p) = self.up.probing.get_mut(uplink) {
            *p = false;
        }
        debug!(uplink = %self.cfg.uplinks[uplink].name, ?rtt, "probe");
        self.up.task.observe(
            Observation::Path {
                uplink,
                rtt,
                sent: 1,
                lost: u32::from(rtt.is_none()),
            },
            now(),
        );
        self.carry_out_decisions();
    }

    /// Tells the task which uplink the sessions use, if that changed.
    pub(super) fn sync_active(&mut self) {
        let active = self.sites.first().and_then(|s| s.uplink);
        if active != self.up.task.active() {
            self.up
                .task
                .observe(Observation::Active { uplink: active }, now());
            self.carry_out_decisions();
        }
    }

    pub(super) fn carry_out_decisions(&mut self) {
        // Bounded: carrying out a decision may feed the task again.
        for _ in 0..64 {
            let Some(d) = self.up.task.poll_decision() else {
                return;
            };
            match d {
                Decision::Planned { to, reason } => {
                    info!(uplink = %self.cfg.uplinks[to].name, %reason, "decision: planned switch");
                    self.start_switch(to, None, reason, false);
                }
                Decision::Prompt { to, reason } => {
                    info!(uplink = %self.cfg.uplinks[to].name, %reason, "decision: prompt switch away from a degraded path");
                    self.start_switch(to, None, reason, true);
                }
                Decision::Sudden { to, reason } => {
                    info!(uplink = %self.cfg.uplinks[to].name, %reason, "decision: sudden switch");
                    self.sudden(to, reason);
                }
                Decision::Suggest { to, reason } => {
                    info!(uplink = %self.cfg.uplinks[to].name, %reason, "decision: suggesting a switch (manual mode)");
                    self.up.suggestion = Some(reason);
                }
                Decision::Withdraw => {
                    debug!("suggestion withdrawn");
                    self.up.suggestion = None;
                }
                Decision::Probe { uplink } => self.spawn_probe(uplink),
                Decision::Search => {
                    // The modems poll their registration themselves.
                    for c in self.os.wifi.iter().flatten() {
                        let _ = c.send(box_os::wifi::WifiCommand::Scan);
                    }
                }
            }
        }
        warn!("the decision task keeps deciding; the rest waits for the next Check");
    }

    fn spawn_probe(&mut self, uplink: usize) {
        let Some(busy) = self.up.probing.get_mut(uplink) else {
            return;
        };
        if *busy {
            return;
        }
        *busy = true;
        let probe = self.net.probe(
            &self.cfg.snapts[0].address,
            &self.egress(uplink),
            Duration::from_secs(1),
        );
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let rtt = probe.await;
            let _ = tx.send(Input::Probed { uplink, rtt });
        });
    }

    /// The lookup table as the status model shows it.
    pub(super) fn uplink_rows(&self) -> Vec<status::UplinkRow> {
        let t = now();
        let active = self.up.task.active();
        self.up
            .task
            .table()
            .iter()
            .enumerate()
            .map(|(i, e)| status::UplinkRow {
                name: e.spec.name.clone(),
                kind: e.spec.kind.name().into(),
                interface: self.cfg.uplinks[i].interface.clone(),
                active: active == Some(i),
                health: e.health.name().into(),
                why: e.why.clone(),
                link: e.link_up,
                address: e.address,
                signal_dbm: e.signal_dbm,
                rtt_ms: e.rtt.map(|d| d.as_secs_f64() * 1e3),
                loss: e.loss,
                priority: e.spec.priority,
                cost: e.spec.cost,
                auto_connect: e.spec.auto_connect,
                changed_s_ago: t.saturating_duration_since(e.changed_at).as_secs_f64(),
                modem: self.up.modems.get(i).cloned().flatten(),
                wifi: self
                    .up
                    .wifis
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|w| w.view.clone()),
            })
            .collect()
    }

    /// The pending suggestion (manual mode).
    pub(super) fn suggestion(&self) -> Option<status::Suggestion> {
        self.up.task.suggestion().map(|s| status::Suggestion {
            uplink: self.cfg.uplinks[s].name.clone(),
            reason: self.up.suggestion.clone(),
        })
    }
}
