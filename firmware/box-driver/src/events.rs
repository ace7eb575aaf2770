//! What the sessions report to the box driver, carried out: stream data and
//! ends to the phone's sockets, switch progress into the handover history
//! (where each switch starts, what it cost, failed planned switches),
//! new tunnels when one is needed, refusals and a new session after the
//! old one ended, datagrams back to their flows.

use std::time::Instant;

use serde_json::json;
use session::{BoxSession, Event, SiteEvent, SwitchKind};
use tracing::{debug, info, warn};

use status::{HandoverKind, HandoverRecord, Outcome};

use super::{BoxDriver, SwitchStart, now, relays};
use control::Reply;
use relay_io::io::WriteCmd;

impl BoxDriver {
    pub(super) fn event(&mut self, ev: SiteEvent) {
        let (site, ev) = match ev {
            SiteEvent::AllSwitched => {
                if let Some(mut p) = self.pending_switch.take() {
                    let ms = p.started.elapsed().as_secs_f64() * 1e3;
                    info!(uplink = %self.cfg.uplinks[p.uplink].name, ms, "all sites switched");
                    if let Some(r) = p.reply.take() {
                        let _ = r.send(Reply::ok(
                            json!({ "uplink": self.cfg.uplinks[p.uplink].name, "ms": ms }),
                        ));
                    }
                }
                return;
            }
            SiteEvent::Site { site, event } => (site, event),
        };
        match ev {
            Event::Data { stream, bytes } => {
                if let Err(e) = self.locals.deliver((site, stream), WriteCmd::Data(bytes)) {
                    self.codec_failed((site, stream), &e);
                }
            }
            Event::Finished { stream } => {
                if let Err(e) = self.locals.deliver((site, stream), WriteCmd::Finish) {
                    self.codec_failed((site, stream), &e);
                }
            }
            Event::StreamOpened {
                stream,
                kind,
                service,
                codec,
                ..
            } => self.open_client_service(site, stream, kind, service, codec),
            Event::StreamReset {
                stream,
                code,
                reason,
            } => {
                debug!(site, %stream, ?code, %reason, "stream reset");
                if code == wire::ResetCode::SessionEnded && self.locals.contains(&(site, stream)) {
                    self.sites[site].reset_by_end += 1;
                }
                self.locals.abort(&(site, stream));
                self.flows.remove(&(site, stream));
            }
            Event::StreamClosed { stream } => self.locals.remove(&(site, stream)),
            Event::PathReport(r) => self.qos_heard(&r),
            Event::Writable { stream } => self.push_pending((site, stream)),
            Event::SwitchStarted { kind, since, .. } => self.note_switch_start(site, kind, since),
            Event::SwitchCompleted { kind, to, .. } => {
                self.proven(site);
                self.sites[site].relay_closed = false;
                let uplink = self.tunnels.get(&to).map(|t| t.uplink);
                if let Some(u) = uplink {
                    self.sites[site].uplink = Some(u);
                }
                let start = self.switch_started.remove(&site);
                self.sites[site].last_uplink = None;
                let stall = start.as_ref().map_or(0.0, |s| {
                    now().saturating_duration_since(s.at).as_secs_f64() * 1e3
                });
                let replayed_now = self
                    .coord
                    .site(site)
                    .map_or(0, |s| s.stats().bytes_replayed);
                let name = |u: usize| self.cfg.uplinks[u].name.clone();
                let rec = HandoverRecord {
                    seq: 0,
                    at_unix_ms: unix_ms(),
                    site,
                    kind: match (start.as_ref().and_then(|s| s.intent), kind) {
                        (Some(HandoverKind::Prompt), _) => HandoverKind::Prompt,
                        (_, SwitchKind::Planned) => HandoverKind::Planned,
                        (_, SwitchKind::Sudden) => HandoverKind::Sudden,
                    },
                    from_uplink: start.as_ref().and_then(|s| s.from).map(name),
                    to_uplink: uplink.map(name).unwrap_or_default(),
                    reason: start.as_ref().map_or_else(
                        || "the session lost its tunnel".into(),
                        |s| s.reason.clone(),
                    ),
                    stall_ms: stall,
                    bytes_buffered: start.as_ref().map_or(0, |s| s.buffered),
                    bytes_replayed: replayed_now
                        .saturating_sub(start.as_ref().map_or(replayed_now, |s| s.replayed)),
                    outcome: Outcome::Completed,
                };
                info!(site, kind = ?rec.kind, from = ?rec.from_uplink, uplink = %rec.to_uplink, ms = rec.stall_ms, replayed = rec.bytes_replayed, reason = %rec.reason, "handover complete");
                self.history.push(rec);
                // The applications hear of it now, not at the next sample.
                self.qos_tick();
            }
            Event::NeedTunnel => {
                let lost = self.sites[site].uplink.take();
                self.sites[site].last_uplink = lost.or(self.sites[site].last_uplink);
                // A tunnel the relay closed itself says nothing against its
                // uplink: the preferred one is tried first as always.
                let failed = if std::mem::take(&mut self.sites[site].relay_closed) {
                    // The uplink that carried it a moment ago goes first.
                    self.sites[site].resume_on = lost;
                    None
                } else {
                    lost
                };
                if self.sites[site].proven {
                    self.connect_site(site, failed);
                } else {
                    // Lost before any exchange worked: refused in the TLS
                    // handshake, or a dead path. Do not hammer the SNAPT.
                    if self.sites[site].last_error.is_none() {
                        self.sites[site].last_error = Some("tls: the SNAPT closed the tunnel during set-up (certificate refused or revoked?)".into());
                    }
                    self.schedule_retry(site);
                }
            }
            Event::CloseTunnel { tunnel, reason } => {
                debug!(site, ?tunnel, ?reason, "closing tunnel");
                let active = self.sites[site].uplink.is_some()
                    && self.tunnels.get(&tunnel).map(|t| t.uplink) == self.sites[site].uplink
                    && self.sites[site].standby.is_none_or(|(s, _)| s != tunnel);
                if active && let Some(cause) = self.close_cause(site, &reason) {
                    info!(site, tunnel = tunnel.0, %cause, "active tunnel given up");
                    self.sites[site].cause.get_or_insert(cause);
                    self.path_lost(site);
                }
                self.standby_gone(site, tunnel, &format!("{reason:?}"));
                self.tunnels.remove(&tunnel);
            }
            Event::Connected { session_id } => {
                info!(site, session_id, "session established");
                self.proven(site);
            }
            Event::Refused {
                code,
                reason,
                retry_after_ms,
            } => {
                warn!(site, ?code, %reason, retry_after_ms, "SNAPT refused us");
                self.sites[site].last_error =
                    Some(format!("refused by the SNAPT ({code:?}): {reason}"));
                if code == wire::RefuseCode::UnknownSession {
                    // The SNAPT answers but no longer knows the session (it
                    // restarted): the new session starts from the base wait,
                    // not after the back-off its outage built up.
                    self.sites[site].backoff.reset();
                }
                let fleet = self.sites[site].relays.is_fleet();
                if retry_after_ms > 0 {
                    // The relay's advice is a floor: nothing tries it
                    // sooner (a link coming back included), and a little
                    // jitter on top keeps the boxes it refused together
                    // from returning together.
                    let wait = daemon::backoff::at_least(
                        std::time::Duration::from_millis(u64::from(retry_after_ms)),
                        daemon::backoff::random(),
                    );
                    if fleet {
                        // Of a fleet, only that relay waits: a sibling may
                        // take the session now.
                        self.sites[site].relays.failed(super::now(), wait);
                        if self.sites[site].relays.any_up(super::now()) {
                            self.schedule_retry(site);
                            return;
                        }
                    }
                    self.sites[site].not_before = Some(tokio::time::Instant::now() + wait);
                    if let Some(e) = &mut self.sites[site].last_error {
                        e.push_str(&format!("; next attempt in {:.1} s", wait.as_secs_f64()));
                    }
                    self.retry_after(site, wait);
                } else {
                    if fleet {
                        self.sites[site]
                            .relays
                            .failed(super::now(), relays::DOWN_FOR);
                    }
                    self.schedule_retry(site);
                }
            }
            Event::SessionClosed { code, reason } => {
                warn!(site, ?code, %reason, "session ended; starting a new one");
                // The phones' connections of the session are reset (most
                // already were, one by one, as the session ended).
                let cut = self.locals.abort_where(|(s, _)| *s == site)
                    + std::mem::take(&mut self.sites[site].reset_by_end);
                // A switch under way ends here: continuity was lost, the
                // streams were reset. Recorded as failed, with no stall.
                if let Some(start) = self.switch_started.remove(&site) {
                    let name = |u: usize| self.cfg.uplinks[u].name.clone();
                    self.history.push(HandoverRecord {
                        seq: 0,
                        at_unix_ms: unix_ms(),
                        site,
                        kind: match start.kind {
                            SwitchKind::Planned => HandoverKind::Planned,
                            SwitchKind::Sudden => HandoverKind::Sudden,
                        },
                        from_uplink: start.from.map(name),
                        to_uplink: self.sites[site].uplink.map(name).unwrap_or_default(),
                        reason: start.reason,
                        stall_ms: 0.0,
                        bytes_buffered: start.buffered,
                        bytes_replayed: 0,
                        outcome: Outcome::Failed(format!("continuity lost: {reason}")),
                    });
                } else if let Some(from) = self.sites[site].uplink.or(self.sites[site].last_uplink)
                    && cut > 0
                {
                    // Lost outside a switch with connections open (the
                    // session's relay gone, a resumption refused): recorded
                    // the same way, so the technician and the operator see
                    // why they were reset. An idle session ended (a relay
                    // drained) cost nothing and is not a failure.
                    let name = self.cfg.uplinks[from].name.clone();
                    self.history.push(HandoverRecord {
                        seq: 0,
                        at_unix_ms: unix_ms(),
                        site,
                        kind: HandoverKind::Sudden,
                        from_uplink: Some(name.clone()),
                        to_uplink: name,
                        reason: format!("session lost with {cut} connections open"),
                        stall_ms: 0.0,
                        bytes_buffered: 0,
                        bytes_replayed: 0,
                        outcome: Outcome::Failed(format!("continuity lost: {reason}")),
                    });
                }
                self.sites[site].cause = None;
                self.sites[site].intent = None;
                self.sites[site].last_uplink = None;
                // Of a fleet: the next session picks its relay again,
                // passing over this one for a while.
                self.sites[site]
                    .relays
                    .failed(super::now(), relays::DOWN_FOR);
                self.flows.remove_site(site);
                self.incarnation += 1;
                if let Ok(fresh) = BoxSession::new(
                    self.cfg.session.clone(),
                    self.cfg.box_id.clone(),
                    self.incarnation,
                ) {
                    self.coord.replace(site, fresh);
                }
                if std::mem::take(&mut self.sites[site].relay_gone)
                    && self.sites[site].relays.any_up(super::now())
                {
                    // Its relay is gone: a sibling takes the new session now.
                    self.connect_site(site, None);
                } else {
                    self.schedule_retry(site);
                }
            }
            Event::Datagram { flow, bytes } => {
                if let Some((sock, peer)) = self.flows.reply_to(&(site, flow), super::now()) {
                    relay_io::udp::send(&sock, bytes, Some(peer));
                }
            }
        }
    }
}

impl BoxDriver {
    /// The path `site`'s session ran over failed: the decision task holds
    /// its uplink down, whatever its figures said.
    pub(super) fn path_lost(&mut self, site: usize) {
        if let Some(u) = self.sites[site].uplink {
            self.up
                .task
                .observe(decision::Observation::Lost { uplink: u }, now());
        }
    }

    /// A switch of `site` begins: its record measures from `since` (the
    /// lost path's last sign of life, for a switch after a loss) and keeps
    /// the cause noted for the site. The first note counts.
    pub(super) fn note_switch_start(&mut self, site: usize, kind: SwitchKind, since: Instant) {
        if self.switch_started.contains_key(&site) {
            return;
        }
        let (buffered, replayed) = self.coord.site(site).map_or((0, 0), |s| {
            let st = s.stats();
            (st.bytes_buffered, st.bytes_replayed)
        });
        // After a loss the session may already be reconnecting elsewhere
        // (NeedTunnel came first): the uplink lost is the one left.
        let from = self.sites[site].last_uplink.or(self.sites[site].uplink);
        let intent = self.sites[site].intent.take();
        let reason = self.sites[site].cause.take().unwrap_or_else(|| {
            let name = from.map_or("the uplink", |u| self.cfg.uplinks[u].name.as_str());
            format!("{name}: the tunnel was lost")
        });
        self.switch_started.insert(
            site,
            SwitchStart {
                at: since,
                kind,
                intent,
                from,
                buffered,
                replayed,
                reason,
            },
        );
    }

    /// A planned switch could not be made: the box stays, the task is told,
    /// the attempt is recorded.
    pub(super) fn fail_pending_switch(&mut self, why: &str) {
        if let Some(mut p) = self.pending_switch.take() {
            warn!(uplink = %self.cfg.uplinks[p.uplink].name, %why, "planned switch failed");
            let reason = p.reason.clone();
            for s in &mut self.sites {
                s.cause = None;
                s.intent = None;
            }
            self.up.task.observe(
                decision::Observation::SwitchFailed { uplink: p.uplink },
                now(),
            );
            // The sites stay where they are; a later switch measures anew.
            self.switch_started
                .retain(|_, s| s.kind != SwitchKind::Planned);
            self.history.push(status::HandoverRecord {
                seq: 0,
                at_unix_ms: unix_ms(),
                site: 0,
                kind: status::HandoverKind::Planned,
                from_uplink: self.sites[0]
                    .uplink
                    .map(|u| self.cfg.uplinks[u].name.clone()),
                to_uplink: self.cfg.uplinks[p.uplink].name.clone(),
                reason,
                // Nothing stalled: the sessions stayed where they were.
                stall_ms: 0.0,
                bytes_buffered: 0,
                bytes_replayed: 0,
                outcome: status::Outcome::Failed(why.to_string()),
            });
            for t in p.tunnels.iter().flatten() {
                if !self
                    .sites
                    .iter()
                    .any(|s| s.standby.is_some_and(|(x, _)| x == *t))
                {
                    self.tunnels.remove(t);
                }
            }
            if let Some(r) = p.reply.take() {
                let _ = r.send(Reply::err(format!("switch failed: {why}")));
            }
        }
    }
}

/// Now, milliseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
