//! Multi-site: one box session per SNAPT, switched together.
//!
//! The reference runs the first part of a planned switch per SNAPT, then waits
//! until every SNAPT has drained (its synchronisation step) before any of them
//! moves to the new address, and completes per SNAPT. Here every session stops
//! at that synchronisation point (after its server's drain marker); when all
//! are there — or have fallen back to a sudden switch, which needs no
//! agreement — all continue. [`SiteEvent::AllSwitched`] reports the moment the
//! last site completes.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::box_session::{BoxSession, BoxState, SwitchError};
use crate::event::{Event, Timer, Transmit, TunnelId};

/// An event of one site's session, or of the coordinated switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteEvent {
    /// From the session of site `site` (an index into the coordinator's sites).
    Site {
        /// The site.
        site: usize,
        /// Its event.
        event: Event,
    },
    /// Every site of the coordinated switch has completed it.
    AllSwitched,
}

/// The sessions of one box with several SNAPTs.
#[derive(Debug)]
pub struct Coordinator {
    sites: Vec<BoxSession>,
    pending: BTreeSet<usize>,
    events: std::collections::VecDeque<SiteEvent>,
}

impl Coordinator {
    /// Coordinates `sites` (one session per SNAPT, in a fixed order).
    pub fn new(sites: Vec<BoxSession>) -> Self {
        Self {
            sites,
            pending: BTreeSet::new(),
            events: Default::default(),
        }
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether there are no sites.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Replaces site `site`'s session (after it ended), returning the old one.
    pub fn replace(&mut self, site: usize, session: BoxSession) -> Option<BoxSession> {
        let slot = self.sites.get_mut(site)?;
        self.pending.remove(&site);
        Some(std::mem::replace(slot, session))
    }

    /// Bytes tunnel `t`'s writer may still take (see
    /// [`crate::Server::set_tunnel_room`]); told to the site holding `t`.
    pub fn set_tunnel_room(&mut self, site: usize, t: TunnelId, room: usize) {
        if let Some(s) = self.sites.get_mut(site) {
            s.set_tunnel_room(t, room);
        }
    }

    /// One site's session (for its streams and status).
    pub fn site(&mut self, site: usize) -> Option<&mut BoxSession> {
        self.sites.get_mut(site)
    }

    /// Moves every site to the new uplink: `tunnels[i]` is site `i`'s new
    /// tunnel, already connected over it. Planned where the site's tunnel
    /// works, sudden where it was lost. All or nothing: if any site is busy,
    /// no site starts.
    pub fn switch_all(&mut self, tunnels: &[TunnelId], now: Instant) -> Result<(), SwitchError> {
        if tunnels.len() != self.sites.len() {
            return Err(SwitchError::Busy);
        }
        let busy = |s: &BoxSession| {
            matches!(
                s.state(),
                BoxState::Connecting | BoxState::Switching | BoxState::Resyncing
            )
        };
        if self.sites.iter().any(busy) || !self.pending.is_empty() {
            return Err(SwitchError::Busy);
        }
        for (i, (s, t)) in self.sites.iter_mut().zip(tunnels).enumerate() {
            s.set_hold_at_sync(true);
            s.switch_to(*t, now)?;
            self.pending.insert(i);
        }
        self.collect(now);
        Ok(())
    }

    /// Bytes read from site `site`'s tunnel `t`.
    pub fn handle_input(&mut self, site: usize, t: TunnelId, bytes: &[u8], now: Instant) {
        if let Some(s) = self.sites.get_mut(site) {
            s.handle_input(t, bytes, now);
        }
        self.collect(now);
    }

    /// Site `site`'s tunnel `t` failed.
    pub fn handle_tunnel_lost(&mut self, site: usize, t: TunnelId, now: Instant) {
        if let Some(s) = self.sites.get_mut(site) {
            s.handle_tunnel_lost(t, now);
        }
        self.collect(now);
    }

    /// Timers of all sites.
    pub fn handle_timeout(&mut self, now: Instant) {
        for s in &mut self.sites {
            if s.poll_timeout().is_some_and(|(d, _)| now >= d) {
                s.handle_timeout(now);
            }
        }
        self.collect(now);
    }

    /// The earliest deadline over all sites.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.sites
            .iter()
            .filter_map(BoxSession::poll_timeout)
            .min_by_key(|(d, _)| *d)
    }

    /// Output of any site, with the site's index.
    pub fn poll_transmit(&mut self) -> Option<(usize, Transmit)> {
        self.sites
            .iter_mut()
            .enumerate()
            .find_map(|(i, s)| s.poll_transmit().map(|tx| (i, tx)))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SiteEvent> {
        self.events.pop_front()
    }

    /// Gathers site events, releases the synchronisation point when every
    /// switching site has reached it, and notices the end of the switch.
    fn collect(&mut self, now: Instant) {
        let all_at_sync = self.pending.iter().all(|&i| {
            self.sites
                .get(i)
                .is_none_or(|s| s.is_held_at_sync() || !s.before_sync_point())
        });
        if all_at_sync {
            for &i in &self.pending {
                if let Some(s) = self.sites.get_mut(i) {
                    s.release_sync(now);
                }
            }
        }
        for (i, s) in self.sites.iter_mut().enumerate() {
            while let Some(event) = s.poll_event() {
                let done = matches!(
                    event,
                    Event::SwitchCompleted { .. } | Event::SessionClosed { .. }
                );
                if done && self.pending.remove(&i) {
                    s.set_hold_at_sync(false);
                    if self.pending.is_empty() {
                        self.events.push_back(SiteEvent::Site { site: i, event });
                        self.events.push_back(SiteEvent::AllSwitched);
                        continue;
                    }
                }
                self.events.push_back(SiteEvent::Site { site: i, event });
            }
        }
    }
}
