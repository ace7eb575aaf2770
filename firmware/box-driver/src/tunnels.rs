//! The box driver's tunnels: connecting one for a site over the uplinks in
//! the decision task's order, registering its reader and writer, handing it
//! to the session (recovery) or to the pending planned switch, and the
//! jittered back-off between attempts.

use std::time::Duration;

use relay_io::connect::Egress;
use relay_io::io::{spawn_reader, spawn_writer};
use relay_io::out::{TUNNEL_NOTSENT_LOWAT, TunnelOut};
use session::{BoxState, TunnelId};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

use super::net::Connected;
use super::{BoxDriver, Input, LiveTunnel, Purpose, RELAY_GONE_AFTER, now, relays};

impl BoxDriver {
    /// Connects a tunnel for `site`, trying uplinks in the decision task's
    /// order of preference (the one that just failed, if any, last).
    pub(super) fn connect_site(&mut self, site: usize, failed: Option<usize>) {
        if self.sites[site].connecting {
            return;
        }
        if let Some(t) = self.sites[site].not_before {
            if tokio::time::Instant::now() < t {
                // The retry scheduled with the refusal comes at `t`.
                debug!(site, "the SNAPT asked for a wait; not yet");
                return;
            }
            self.sites[site].not_before = None;
        }
        // Only uplinks with link and address: an attempt over a link
        // without carrier hangs until its timeout while a better one may
        // come up meanwhile. With none, wait for one (the link monitor's
        // "gained" retries at once) or the back-off.
        let table = self.up.task.table();
        let usable = |u: &usize| table[*u].link_up && table[*u].address.is_some();
        let mut order: Vec<usize> = self
            .up
            .task
            .preference(now())
            .into_iter()
            .filter(|u| Some(*u) != failed && usable(u))
            .collect();
        order.extend(failed.filter(usable));
        if let Some(u) = self.sites[site].resume_on.take()
            && let Some(i) = order.iter().position(|x| *x == u)
        {
            order.remove(i);
            order.insert(0, u);
        }
        if order.is_empty() {
            debug!(site, "no uplink has link and address; waiting for one");
            self.sites[site].awaiting_link = true;
            self.schedule_retry(site);
            return;
        }
        self.sites[site].awaiting_link = false;
        self.sites[site].connecting = true;
        // A new session picks its relay of the fleet here; a resumption
        // keeps the session's.
        let _ = self.sites[site]
            .relays
            .relay(self.cfg.box_id.as_str(), now());
        self.spawn_connect(site, order, Purpose::Recover);
    }

    /// Tries `order`'s uplinks one after the other until one gives a
    /// tunnel; the driver learns the outcome as `TunnelConnected`.
    pub(super) fn spawn_connect(&self, site: usize, order: Vec<usize>, purpose: Purpose) {
        let mut snapt = self.cfg.snapts[site].clone();
        if let Some(relay) = self.sites[site].relays.current() {
            // Every tunnel of the session names its relay (the router
            // routes on it) and checks that relay's certificate.
            snapt.server_name = relay.to_owned();
        }
        let egresses: Vec<(usize, Egress)> =
            order.into_iter().map(|u| (u, self.egress(u))).collect();
        let net = self.net.clone();
        let tx = self.tx.clone();
        let timeout = self
            .cfg
            .session
            .inactivity_timeout
            .max(Duration::from_secs(2));
        let span = self.sites[site].span.clone();
        tokio::spawn(
            async move {
                let mut last = String::from("no uplink configured");
                for (uplink, egress) in egresses {
                    match net.tunnel(&snapt, &egress, timeout).await {
                        Ok(t) => {
                            let _ = tx.send(Input::TunnelConnected {
                                site,
                                uplink,
                                purpose,
                                result: Ok(t),
                            });
                            return;
                        }
                        Err(e) => {
                            warn!(via = %egress, error = %e, "tunnel connect failed");
                            last = e;
                        }
                    }
                }
                let _ = tx.send(Input::TunnelConnected {
                    site,
                    uplink: 0,
                    purpose,
                    result: Err(last),
                });
            }
            .instrument(span),
        );
    }

    /// A connection attempt for `site` failed with `error`. With a relay
    /// fleet: a new session's relay is passed over for the next attempt;
    /// a session whose resumptions reach the router but not its relay
    /// (the TLS handshake fails) [`RELAY_GONE_AFTER`] times in a row is
    /// given up — its relay is gone, and waiting out the switch timeout
    /// would only keep the phone's applications hanging — and a new
    /// session starts on another relay ("continuity lost").
    fn relay_unreachable(&mut self, site: usize, error: &str) {
        if !self.sites[site].relays.is_fleet() {
            return;
        }
        let state = self.coord.site(site).map(|s| s.state());
        match state {
            Some(BoxState::Idle) => self.sites[site].relays.failed(now(), relays::DOWN_FOR),
            Some(BoxState::Recovering) if error.starts_with("tls with") => {
                let s = &mut self.sites[site];
                s.relay_misses += 1;
                if s.relay_misses >= RELAY_GONE_AFTER {
                    s.relay_misses = 0;
                    let relay = s.relays.current().unwrap_or_default().to_owned();
                    warn!(site, %relay, "the session's relay is gone; starting anew on another");
                    s.relays.failed(now(), relays::DOWN_FOR);
                    // The next relay is another host: no reason to wait the
                    // back-off this one's failures built up.
                    s.backoff.reset();
                    s.relay_gone = true;
                    if let Some(session) = self.coord.site(site) {
                        session.close(&format!(
                            "relay {relay} unreachable behind the router ({error})"
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    /// How to leave over `uplink`.
    pub(super) fn egress(&self, uplink: usize) -> Egress {
        Egress {
            interface: self.cfg.uplinks[uplink].interface.clone(),
            source: self.cfg.uplinks[uplink].source,
        }
    }

    fn register_tunnel(&mut self, site: usize, uplink: usize, tunnel: Connected) -> TunnelId {
        let id = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        let span = tracing::info_span!(
            parent: &self.sites[site].span,
            "tunnel",
            uplink = %self.cfg.uplinks[uplink].name,
            tunnel = id.0
        );
        let (rd, wr) = tokio::io::split(tunnel.io);
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (t1, t2, t3) = (self.tx.clone(), self.tx.clone(), self.tx.clone());
        let gate = tunnel
            .tcp
            .as_ref()
            .and_then(|w| w.gate(TUNNEL_NOTSENT_LOWAT).ok());
        spawn_writer(
            wr,
            wrx,
            gate,
            move |n| {
                let _ = t3.send(Input::TunnelWritten { tunnel: id, n });
            },
            |_| {},
            span.clone(),
        );
        spawn_reader(
            rd,
            move |bytes| t1.send(Input::TunnelBytes { tunnel: id, bytes }).is_ok(),
            move |err| {
                let _ = t2.send(Input::TunnelLost {
                    tunnel: id,
                    closed_by_relay: err.is_none(),
                });
            },
            span,
        );
        self.tunnels.insert(
            id,
            LiveTunnel {
                site,
                uplink,
                out: TunnelOut::new(wtx),
                tcp: tunnel.tcp,
            },
        );
        id
    }

    pub(super) fn tunnel_connected(
        &mut self,
        site: usize,
        uplink: usize,
        purpose: Purpose,
        result: Result<Connected, String>,
    ) {
        if purpose == Purpose::Recover {
            self.sites[site].connecting = false;
        }
        let tunnel = match result {
            Ok(t) => t,
            Err(e) => {
                match purpose {
                    Purpose::Planned | Purpose::Prompt => {
                        self.fail_pending_switch(&format!("site {site}: {e}"))
                    }
                    Purpose::Standby => self.standby_connected(site, None, uplink),
                    Purpose::Recover => {
                        self.relay_unreachable(site, &e);
                        self.sites[site].last_error = Some(e);
                        self.schedule_retry(site);
                    }
                }
                return;
            }
        };
        if purpose == Purpose::Recover {
            self.sites[site].relay_misses = 0;
        }
        let id = self.register_tunnel(site, uplink, tunnel);
        let span = self.sites[site].span.clone();
        let _site = span.enter();
        info!(uplink = %self.cfg.uplinks[uplink].name, tunnel = id.0, ?purpose, "tunnel up");
        match purpose {
            Purpose::Recover => {
                let Some(s) = self.coord.site(site) else {
                    return;
                };
                match s.switch_to(id, now()) {
                    Ok(()) => {
                        self.sites[site].uplink = Some(uplink);
                        self.sites[site].proven = false;
                    }
                    Err(e) => {
                        debug!(error = %e, "tunnel not needed");
                        self.tunnels.remove(&id);
                    }
                }
            }
            Purpose::Planned | Purpose::Prompt => self.switch_tunnel_ready(site, id),
            Purpose::Standby => self.standby_connected(site, Some(id), uplink),
        }
    }

    /// Tries `site` again after its back-off (full jitter: a fleet that
    /// lost its relay together does not come back in lockstep).
    pub(super) fn schedule_retry(&mut self, site: usize) {
        let delay = self.sites[site].backoff.next(daemon::backoff::random());
        debug!(site, delay_ms = delay.as_millis() as u64, "next attempt");
        self.retry_after(site, delay);
    }

    /// Tries `site` again after `delay`.
    pub(super) fn retry_after(&self, site: usize, delay: Duration) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Input::Retry { site });
        });
    }

    /// A site's attempt worked: its next retry starts from the base again.
    pub(super) fn proven(&mut self, site: usize) {
        let s = &mut self.sites[site];
        s.proven = true;
        s.backoff.reset();
        s.last_error = None;
    }
}
