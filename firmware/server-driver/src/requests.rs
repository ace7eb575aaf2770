//! The answers to `cboxctl snapt …` (status, kick, drain); an upgrade is
//! started by `upgrade::handover`.

use control::{Reply, Request};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Instant;
use wire::{BoxId, DisconnectCode};

use crate::ServerDriver;

impl ServerDriver {
    pub(crate) fn control(&mut self, req: Request) -> Reply {
        match req {
            Request::Status => {
                let boxes: Vec<serde_json::Value> = self
                    .server
                    .sessions()
                    .map(|s| {
                        let st = s.stats();
                        let p = s.path_stats();
                        json!({
                            "box_id": s.owner().as_str(),
                            "session_id": s.session_id(),
                            "state": format!("{:?}", s.state()),
                            "streams": st.streams_open,
                            "bytes_sent": st.bytes_sent,
                            "bytes_received": st.bytes_received,
                            "bytes_replayed": st.bytes_replayed,
                            "switches": st.switches,
                            "rtt_ms": p.srtt.map(|d| d.as_secs_f64() * 1e3),
                        })
                    })
                    .collect();
                Reply::ok(json!({
                    "listen": self.cfg.listen.to_string(),
                    "pid": std::process::id(),
                    "uptime_s": self.started.elapsed().as_secs(),
                    "tunnels": self.tunnels.len(),
                    "accept_errors": self.accept_stats.errors(),
                    "draining": self.drain_deadline.map(|d| json!({
                        "deadline_in_s": d.saturating_duration_since(Instant::now()).as_secs(),
                        "sessions_left": self.server.sessions().count(),
                    })),
                    "qos": self.qos.as_ref().map(|q| {
                        let h = q.hub();
                        json!({
                            "subscribers": h.subscribers(),
                            "notices": h.stats().published.load(Ordering::Relaxed),
                            "dropped": h.stats().dropped.load(Ordering::Relaxed),
                        })
                    }),
                    "handshakes_running": self.handshakes.running(),
                    "handshakes_waiting": self.handshakes.waiting(),
                    "handshakes_shed": self.handshakes.shed(),
                    "handshakes_timed_out": self.handshakes.timed_out(),
                    "sessions_refused_busy": self.server.refused_busy(),
                    "connects_refused": self.admission.refused(),
                    "connects_delayed": self.admission.delayed(),
                    "connects_in_flight": self.admission.load().0,
                    "connects_waiting": self.admission.load().1,
                    "datagram_flows": self.flows.len(),
                    "pushed_flows": self.flows.pushed_len(),
                    "pushed_dropped": self.flows.pushed_dropped,
                    "boxes": boxes,
                }))
            }
            Request::Kick { box_id } => match BoxId::new(&box_id) {
                Ok(b)
                    if self.server.disconnect(
                        &b,
                        DisconnectCode::Requested,
                        "kicked by the operator",
                    ) =>
                {
                    Reply::ok(json!({ "kicked": box_id }))
                }
                Ok(_) => Reply::err(format!("box {box_id} has no session")),
                Err(e) => Reply::err(format!("bad box id: {e}")),
            },
            Request::Drain { deadline_s } => self.start_drain(deadline_s),
            Request::Switch { .. }
            | Request::Disconnect
            | Request::Approve
            | Request::Decline
            | Request::Mode { .. }
            | Request::PanPair { .. }
            | Request::PanClose
            | Request::PanConfirm { .. }
            | Request::PanDevices
            | Request::PanForget { .. }
            | Request::PanWifi => Reply::err("this is a cnaptd command"),
            // Answered by `start_upgrade`.
            Request::Upgrade => Reply::err("upgrade is not a plain request"),
        }
    }
}
