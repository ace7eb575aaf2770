//! Carrying out the decision task's switches, each the way its cause
//! calls for, and keeping a warm standby tunnel:
//!
//! * planned (a better path, the old one good): make-before-break with
//!   drain markers, over the standby when it is on the target;
//! * prompt (away from a degraded path): the new tunnel first (or the
//!   standby), then the session moves at once with SWITCH_UNEXPECTED;
//! * sudden (the old path critical or gone): over the standby at once; a
//!   gone path is dropped and the session resumes on the standby or a new
//!   tunnel.
//!
//! The standby is an authenticated tunnel on the best other uplink (one
//! whose `standby` is not off), bound to the session and PINGed every
//! `standby_keepalive`, so that no switch waits for a TCP or TLS handshake.

use std::time::Instant;

use session::TunnelId;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{BoxDriver, PendingSwitch, Purpose, now};
use control::Reply;
use decision::Observation;

impl BoxDriver {
    /// Starts a planned switch of every site to `to`; `reply` answers a
    /// user's request. `prompt`: the old path is degraded, move at once.
    pub(super) fn start_switch(
        &mut self,
        to: usize,
        reply: Option<oneshot::Sender<Reply>>,
        reason: String,
        prompt: bool,
    ) {
        if self.pending_switch.is_some() {
            // The task's own request waits for its patience to run out; a
            // user's is answered and forgotten.
            if let Some(r) = reply {
                let _ = r.send(Reply::err("a switch is already in progress"));
                self.up
                    .task
                    .observe(Observation::SwitchFailed { uplink: to }, now());
            }
            return;
        }
        let sites = self.cfg.snapts.len();
        // Already there (a decision that crossed a switch completing), or
        // no session to move yet.
        let there = self.sites.iter().all(|s| s.uplink == Some(to));
        let no_session = (0..sites).all(|i| {
            self.coord
                .site(i)
                .is_none_or(|s| s.state() != session::BoxState::Established)
        });
        if there || no_session {
            info!(uplink = %self.cfg.uplinks[to].name, there, "switch: nothing to move");
            self.up.task.abandon();
            if let Some(r) = reply {
                let name = &self.cfg.uplinks[to].name;
                let _ = r.send(if there {
                    Reply::ok(serde_json::json!({ "uplink": name, "ms": 0.0 }))
                } else {
                    Reply::err("no session is established yet; the box connects over the best uplink by itself")
                });
            }
            return;
        }
        self.pending_switch = Some(PendingSwitch {
            uplink: to,
            tunnels: vec![None; sites],
            reply,
            started: Instant::now(),
            reason: reason.clone(),
            prompt,
        });
        for site in 0..sites {
            self.sites[site].cause = Some(reason.clone());
            self.sites[site].intent = Some(if prompt {
                status::HandoverKind::Prompt
            } else {
                status::HandoverKind::Planned
            });
            match self.standby_on(site, to) {
                Some(t) => self.switch_tunnel_ready(site, t),
                None => self.spawn_connect(
                    site,
                    vec![to],
                    if prompt {
                        Purpose::Prompt
                    } else {
                        Purpose::Planned
                    },
                ),
            }
        }
    }

    /// `t` (fresh, or the standby) is up for `site`'s part of the pending
    /// switch. A prompt switch moves that site at once; a planned one waits
    /// until every site has its tunnel and then switches them together.
    pub(super) fn switch_tunnel_ready(&mut self, site: usize, t: TunnelId) {
        let Some(p) = &mut self.pending_switch else {
            self.tunnels.remove(&t);
            return;
        };
        p.tunnels[site] = Some(t);
        if p.prompt {
            let moved = self.coord.site(site).map(|s| s.move_to(t, now()));
            match moved {
                Some(Ok(())) => self.forget_used_standby(site, t),
                Some(Err(e)) => {
                    debug!(site, error = %e, "prompt switch: site not moved");
                    self.tunnels.remove(&t);
                }
                None => {}
            }
            let all = self
                .pending_switch
                .as_ref()
                .is_some_and(|p| p.tunnels.iter().all(Option::is_some));
            if all && let Some(mut p) = self.pending_switch.take() {
                let ms = p.started.elapsed().as_secs_f64() * 1e3;
                info!(uplink = %self.cfg.uplinks[p.uplink].name, ms, "prompt switch under way on every site");
                if let Some(r) = p.reply.take() {
                    let name = &self.cfg.uplinks[p.uplink].name;
                    let _ = r.send(Reply::ok(serde_json::json!({ "uplink": name, "ms": ms })));
                }
            }
            return;
        }
        if p.tunnels.iter().all(Option::is_some) {
            let ts: Vec<TunnelId> = p.tunnels.iter().flatten().copied().collect();
            // The sites move to `to` when each completes its switch
            // (SwitchCompleted), not now.
            match self.coord.switch_all(&ts, now()) {
                Ok(()) => {
                    for (site, t) in ts.iter().enumerate() {
                        self.forget_used_standby(site, *t);
                    }
                }
                Err(e) => {
                    for t in ts {
                        if !self.is_standby(t) {
                            self.tunnels.remove(&t);
                        }
                    }
                    self.fail_pending_switch(&e.to_string());
                }
            }
        }
    }

    /// The active path is critical or gone. Each site moves over its
    /// standby at once; without one, a gone path is given up now (the
    /// session resumes over the preferred uplink left) and a critical one
    /// is left promptly once a new tunnel is up.
    pub(super) fn sudden(&mut self, to: usize, reason: String) {
        let mut prompt = false;
        let mut acted = false;
        for site in 0..self.cfg.snapts.len() {
            // A site already moving (over its standby, or recovering) needs
            // nothing more.
            let established = self
                .coord
                .site(site)
                .is_some_and(|s| s.state() == session::BoxState::Established);
            if !established || self.sites[site].uplink == Some(to) {
                continue;
            }
            acted = true;
            self.sites[site].cause = Some(reason.clone());
            self.sites[site].intent = Some(status::HandoverKind::Sudden);
            if let Some(t) = self.standby_on(site, to)
                && let Some(Ok(())) = self.coord.site(site).map(|s| s.move_to(t, now()))
            {
                self.forget_used_standby(site, t);
                continue;
            }
            let link = self.sites[site]
                .uplink
                .is_some_and(|u| self.up.task.table()[u].link_up);
            if link {
                prompt = true;
                continue;
            }
            let Some(tunnel) = self.coord.site(site).and_then(|s| s.active_tunnel()) else {
                continue;
            };
            if self.tunnels.remove(&tunnel).is_some() {
                self.coord.handle_tunnel_lost(site, tunnel, now());
            }
        }
        if prompt {
            self.start_switch(to, None, reason, true);
        }
        if !acted {
            // Nothing could move (no session yet, or already there).
            self.up.task.abandon();
        }
    }

    /// The site's confirmed standby, if it is on `uplink`.
    fn standby_on(&mut self, site: usize, uplink: usize) -> Option<TunnelId> {
        let t = self.coord.site(site).and_then(|s| s.standby())?;
        (self.tunnels.get(&t).map(|x| x.uplink) == Some(uplink)).then_some(t)
    }

    fn is_standby(&self, t: TunnelId) -> bool {
        self.sites
            .iter()
            .any(|s| s.standby.is_some_and(|(x, _)| x == t))
    }

    /// The standby `t` now carries the session (or the switch): a new
    /// standby will be made.
    fn forget_used_standby(&mut self, site: usize, t: TunnelId) {
        if self.sites[site].standby.is_some_and(|(x, _)| x == t) {
            self.sites[site].standby = None;
        }
    }

    /// Keeps every established site's warm standby: on the best usable
    /// uplink other than the active one (not held down, `standby` not off),
    /// re-made after a loss with back-off. A standby the session no longer
    /// holds (used, lost, refused) is forgotten here.
    pub(super) fn maintain_standbys(&mut self) {
        let t = now();
        for site in 0..self.cfg.snapts.len() {
            let held = self
                .coord
                .site(site)
                .map(|s| (s.standby_pending(), s.state()));
            let Some((pending, state)) = held else {
                continue;
            };
            // Used by a switch (it carries the session now) or closed by the
            // session (its CloseTunnel removed it): either way not ours.
            if let Some((sb, _)) = self.sites[site].standby
                && pending != Some(sb)
            {
                self.sites[site].standby = None;
            }
            let s = &self.sites[site];
            if state != session::BoxState::Established
                || s.standby_connecting
                || tokio::time::Instant::now() < s.standby_retry
            {
                continue;
            }
            let active = s.uplink;
            let current = s.standby.map(|(_, u)| u);
            let table = self.up.task.table();
            let order = self.up.task.preference(t);
            let cand = order.iter().copied().find(|&u| {
                Some(u) != active
                    && self.cfg.uplinks[u].standby
                    && table[u].link_up
                    && table[u].address.is_some()
                    && table[u].health >= decision::Health::Warning
                    && !self.up.task.held_down(u, t)
            });
            let Some(u) = cand else { continue };
            // A standby in place stays unless it runs over the active
            // uplink or a better one is usable now (it is replaced once the
            // new one is bound).
            if let Some(cur) = current {
                let rank = |x: usize| order.iter().position(|&y| y == x);
                if cur == u || (Some(cur) != active && rank(cur) <= rank(u)) {
                    continue;
                }
            }
            debug!(site, uplink = %self.cfg.uplinks[u].name, replaces = ?current, "connecting a warm standby");
            self.sites[site].standby_connecting = true;
            self.spawn_connect(site, vec![u], Purpose::Standby);
        }
    }

    /// A standby tunnel came up (or did not).
    pub(super) fn standby_connected(&mut self, site: usize, t: Option<TunnelId>, uplink: usize) {
        self.sites[site].standby_connecting = false;
        let Some(t) = t else {
            let wait = self.sites[site]
                .standby_backoff
                .next(daemon::backoff::random());
            self.sites[site].standby_retry = tokio::time::Instant::now() + wait;
            return;
        };
        match self.coord.site(site).map(|s| s.add_standby(t, now())) {
            Some(Ok(())) => {
                info!(site, uplink = %self.cfg.uplinks[uplink].name, tunnel = t.0, "warm standby bound");
                self.sites[site].standby = Some((t, uplink));
                self.sites[site].standby_backoff.reset();
            }
            _ => {
                self.tunnels.remove(&t);
            }
        }
    }

    /// The standby of `site` was closed or lost (`t`): make another after
    /// a back-off.
    pub(super) fn standby_gone(&mut self, site: usize, t: TunnelId, why: &str) {
        if self.sites[site].standby.is_some_and(|(x, _)| x == t) {
            warn!(site, tunnel = t.0, %why, "warm standby gone");
            self.sites[site].standby = None;
            let wait = self.sites[site]
                .standby_backoff
                .next(daemon::backoff::random());
            self.sites[site].standby_retry = tokio::time::Instant::now() + wait;
        }
    }

    /// Feeds each site's active tunnel's `TCP_INFO` to its session (the
    /// dead-path rule's view of the transport).
    pub(super) fn sample_transports(&mut self) {
        let t = now();
        for site in 0..self.cfg.snapts.len() {
            let Some(active) = self.coord.site(site).and_then(|s| s.active_tunnel()) else {
                continue;
            };
            let Some(info) = self
                .tunnels
                .get(&active)
                .and_then(|x| x.tcp.as_ref())
                .and_then(|w| w.sample().ok())
            else {
                continue;
            };
            let sample = session::TransportSample {
                rtt: info.rtt,
                since_last_ack: info.since_last_ack,
                unacked: info.unacked,
            };
            if let Some(s) = self.coord.site(site) {
                s.handle_transport(active, sample, t);
            }
        }
    }

    /// Why a site's tunnel was closed, in words for its handover record.
    pub(super) fn close_cause(&self, site: usize, reason: &session::CloseReason) -> Option<String> {
        let name = self.sites[site]
            .uplink
            .map_or("the uplink", |u| self.cfg.uplinks[u].name.as_str());
        match reason {
            session::CloseReason::DeadPath => Some(format!(
                "{name}: no answer while busy (dead path, probes unanswered)"
            )),
            session::CloseReason::Inactive => Some(format!(
                "{name}: silent for {} ms (inactivity timeout)",
                self.cfg.session.inactivity_timeout.as_millis()
            )),
            session::CloseReason::ProtocolViolation(v) => {
                Some(format!("{name}: protocol violation ({v})"))
            }
            _ => None,
        }
    }
}
