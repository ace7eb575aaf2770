//! `cboxctl` requests to the box driver, and the status it reports: the
//! status model's snapshot (sessions, the uplinks' lookup table, the
//! decision task's mode and suggestion, the handover history).

use decision::{Decision, Mode};
use serde_json::json;
use tokio::sync::oneshot;
use tracing::info;

use super::{BoxDriver, now};
use control::{Reply, Request};

impl BoxDriver {
    pub(super) fn control(&mut self, req: Request, reply: oneshot::Sender<Reply>) {
        match req {
            Request::Status => {
                let _ = reply.send(match serde_json::to_value(self.snapshot()) {
                    Ok(v) => Reply::ok(v),
                    Err(e) => Reply::err(format!("status: {e}")),
                });
            }
            Request::Switch { uplink } => {
                let Some(u) = self.cfg.uplinks.iter().position(|x| x.name == uplink) else {
                    let names: Vec<&str> =
                        self.cfg.uplinks.iter().map(|x| x.name.as_str()).collect();
                    let _ = reply.send(Reply::err(format!(
                        "no uplink {uplink:?}; configured: {}",
                        names.join(", ")
                    )));
                    return;
                };
                if self.pending_switch.is_some() {
                    let _ = reply.send(Reply::err("a switch is already in progress"));
                    return;
                }
                match self.up.task.force(u, now()) {
                    Ok(_) => self.start_switch(u, Some(reply), "forced by the user".into(), false),
                    Err(e) => {
                        let _ = reply.send(Reply::err(e));
                    }
                }
            }
            Request::Approve => match self.up.task.approve(now()) {
                Ok(Decision::Planned { to, .. }) => {
                    let reason = format!(
                        "suggestion approved: {}",
                        self.up.suggestion.take().unwrap_or_default()
                    );
                    self.start_switch(to, Some(reply), reason, false);
                }
                Ok(_) => {
                    let _ = reply.send(Reply::err("nothing to approve"));
                }
                Err(e) => {
                    let _ = reply.send(Reply::err(e));
                }
            },
            Request::Decline => {
                let r = self.up.task.decline();
                self.up.suggestion = None;
                let _ = reply.send(match r {
                    Ok(()) => Reply::ok(json!({ "declined": true })),
                    Err(e) => Reply::err(e),
                });
            }
            Request::Mode { mode } => {
                let m = match mode.as_str() {
                    "automatic" => Mode::Automatic,
                    "manual" => Mode::Manual,
                    other => {
                        let _ = reply.send(Reply::err(format!(
                            "no mode {other:?}; automatic or manual"
                        )));
                        return;
                    }
                };
                info!(mode = m.name(), "decision mode");
                self.up.task.set_mode(m, now());
                self.carry_out_decisions();
                let _ = reply.send(Reply::ok(json!({ "mode": m.name() })));
            }
            Request::Disconnect => {
                for site in 0..self.cfg.snapts.len() {
                    if let Some(s) = self.coord.site(site) {
                        s.close("disconnect requested by cboxctl");
                    }
                }
                let _ = reply.send(Reply::ok(json!({ "disconnected": self.cfg.snapts.len() })));
            }
            Request::PanPair { .. }
            | Request::PanClose
            | Request::PanConfirm { .. }
            | Request::PanDevices
            | Request::PanForget { .. }
            | Request::PanWifi => match &self.os.pan {
                Some(p) => p.call(req, reply),
                None => {
                    let _ = reply.send(Reply::err(box_os::pan::NO_BLUETOOTH));
                }
            },
            Request::Kick { .. } | Request::Drain { .. } | Request::Upgrade => {
                let _ = reply.send(Reply::err("this is a snaptd command"));
            }
        }
    }

    /// The box's snapshot (the status model).
    pub(super) fn snapshot(&mut self) -> status::Snapshot {
        let mut sites = Vec::new();
        for site in 0..self.cfg.snapts.len() {
            let Some(s) = self.coord.site(site) else {
                continue;
            };
            let st = s.stats();
            let path = s.path_stats();
            sites.push(status::SiteRow {
                snapt: self.cfg.snapts[site].name.clone(),
                state: format!("{:?}", s.state()),
                session_id: s.session_id(),
                uplink: self.sites[site]
                    .uplink
                    .map(|u| self.cfg.uplinks[u].name.clone()),
                streams: st.streams_open,
                bytes_sent: st.bytes_sent,
                bytes_received: st.bytes_received,
                bytes_replayed: st.bytes_replayed,
                bytes_buffered: st.bytes_buffered,
                datagrams_dropped: st.datagrams_dropped,
                switches: st.switches,
                rtt_ms: path.srtt.map(|d| d.as_secs_f64() * 1e3),
                pings_sent: path.pings_sent,
                pings_lost: path.pings_lost,
                last_error: self.sites[site].last_error.clone(),
                standby: s
                    .standby()
                    .and_then(|t| self.tunnels.get(&t))
                    .map(|t| self.cfg.uplinks[t.uplink].name.clone()),
                relay: self.sites[site].relays.current().map(str::to_owned),
            });
        }
        status::Snapshot {
            box_id: self.cfg.box_id.as_str().to_string(),
            mode: self.up.task.mode().name().into(),
            suggestion: self.suggestion(),
            uplinks: self.uplink_rows(),
            sites,
            pan_clients: self
                .os
                .pan
                .as_ref()
                .map(|p| p.clients())
                .unwrap_or_default(),
            bluetooth: self.os.pan.as_ref().and_then(|p| p.bluetooth()),
            wifi_ap: self.os.pan.as_ref().and_then(|p| p.access_point()),
            handovers: self.history.records().cloned().collect(),
            handovers_total: self.history.total(),
            counters: status::Counters {
                accept_errors: self.accept_stats.errors(),
                page_refused: self.accept_stats.refused(),
                datagram_flows: self.flows.len() as u64,
                ..self.counters.clone()
            },
        }
    }
}
