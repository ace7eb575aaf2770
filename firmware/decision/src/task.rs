//! The decision task's state machine: observations in, decisions out, time
//! passed in. The Check activity (every `check_interval`) re-assesses every
//! uplink and asks for light probes of the standby ones; the Search activity
//! (every `search_interval`) asks the drivers to scan and query
//! registration. Switching follows the mode and the hysteresis rules.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::table::{Entry, Health, UplinkSpec};
use crate::{Mode, Policy};

/// An uplink judged less than good this recently when the sessions leave
/// it counts as left for its health (held down).
const RECENTLY_BAD: std::time::Duration = std::time::Duration::from_secs(10);

/// Something the drivers saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Carrier / operational state changed (netlink, modem, wpa_supplicant).
    Link {
        /// Uplink index.
        uplink: usize,
        /// Up or down.
        up: bool,
    },
    /// The uplink's address appeared, changed or went away.
    Address {
        /// Uplink index.
        uplink: usize,
        /// The address, `None` when removed.
        address: Option<IpAddr>,
    },
    /// A radio signal reading (RSSI/RSRP), `None` when lost.
    Signal {
        /// Uplink index.
        uplink: usize,
        /// dBm.
        dbm: Option<i32>,
    },
    /// Keepalives (active uplink) or probes (standby) over one Check window.
    Path {
        /// Uplink index.
        uplink: usize,
        /// Latest round-trip time, if any answer came back.
        rtt: Option<Duration>,
        /// Probes or keepalives sent in the window.
        sent: u32,
        /// Of those, unanswered.
        lost: u32,
    },
    /// Whether the box's own traffic fills this uplink now (a download, an
    /// upload): its round trips then include the box's own queue, and a
    /// box must not flee its own download. While loaded, the warning
    /// threshold is held against the lowest round trip of the last
    /// 2 s (`LOADED_WINDOW`); the critical one, loss and signal
    /// as ever.
    Loaded {
        /// Uplink index.
        uplink: usize,
        /// Loaded or not.
        loaded: bool,
    },
    /// The box's sessions now run over this uplink (`None`: over none).
    Active {
        /// Uplink index.
        uplink: Option<usize>,
    },
    /// The sessions' path over this uplink failed (dead path, inactivity,
    /// the tunnel reset): whatever its figures said, it is not good, and
    /// it is held down once left.
    Lost {
        /// Uplink index.
        uplink: usize,
    },
    /// A switch the task asked for did not happen.
    SwitchFailed {
        /// Its target.
        uplink: usize,
    },
}

/// What the task wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Move the sessions to `to` while the current path still works
    /// (make-before-break).
    Planned {
        /// Target uplink.
        to: usize,
        /// Why, for logs and the handover record.
        reason: String,
    },
    /// The current path still carries something but is degraded: move the
    /// sessions to `to` as soon as its tunnel is up, without waiting for
    /// the old path to drain (what is in flight there is sent again).
    Prompt {
        /// Target uplink.
        to: usize,
        /// Why.
        reason: String,
    },
    /// The current path is gone or critical: resume the sessions over `to`
    /// now (over the warm standby if there is one).
    Sudden {
        /// Target uplink.
        to: usize,
        /// Why.
        reason: String,
    },
    /// Manual mode: propose `to` to the user (cboxctl, MQTT, the web page).
    Suggest {
        /// Proposed uplink.
        to: usize,
        /// Why.
        reason: String,
    },
    /// The pending suggestion no longer stands.
    Withdraw,
    /// Measure a standby uplink (a light probe to the SNAPT over it).
    Probe {
        /// Uplink index.
        uplink: usize,
    },
    /// Search activity: scan for hotspots, query modem registration.
    Search,
}

/// Why a user request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such uplink.
    #[error("no uplink {0}")]
    Unknown(usize),
    /// The target cannot carry anything now.
    #[error("uplink {name} is down ({why})")]
    Down {
        /// Its name.
        name: String,
        /// Why it is down.
        why: String,
    },
    /// Nothing to approve.
    #[error("no switch is being suggested")]
    NoSuggestion,
}

/// How a switch is to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Planned,
    Prompt,
    Sudden,
}

/// When an uplink was left, and how.
#[derive(Debug, Clone, Copy)]
struct Left {
    at: Instant,
    /// Degraded (warning, critical, down) or lost when left.
    degraded: bool,
}

/// A switch asked for and not yet seen done.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    to: usize,
    since: Instant,
}

/// The decision task.
#[derive(Debug)]
pub struct DecisionTask {
    policy: Policy,
    table: Vec<Entry>,
    active: Option<usize>,
    /// The user chose this uplink: automatic mode stays on it while it is
    /// at least Warning.
    pinned: Option<usize>,
    suggestion: Option<usize>,
    in_flight: Option<InFlight>,
    /// A switch to this uplink failed then: not chosen again for the
    /// policy's patience.
    failed: Option<(usize, Instant)>,
    /// When each uplink was last left, and whether it was degraded or lost
    /// then (such an uplink is held down for `hold_down`).
    left: Vec<Option<Left>>,
    last_switch: Option<Instant>,
    /// The sessions have had an uplink before (a later one is a switch).
    ever_active: bool,
    next_check: Instant,
    next_search: Instant,
    next_probe: Vec<Instant>,
    out: VecDeque<Decision>,
}

impl DecisionTask {
    /// A task for `uplinks` (index = uplink number) under `policy`.
    pub fn new(policy: Policy, uplinks: Vec<UplinkSpec>, now: Instant) -> Self {
        let n = uplinks.len();
        Self {
            next_check: now + policy.check_interval,
            next_search: now,
            next_probe: vec![now; n],
            table: uplinks.into_iter().map(|s| Entry::new(s, now)).collect(),
            policy,
            active: None,
            pinned: None,
            suggestion: None,
            in_flight: None,
            failed: None,
            left: vec![None; n],
            last_switch: None,
            ever_active: false,
            out: VecDeque::new(),
        }
    }

    /// The lookup table.
    pub fn table(&self) -> &[Entry] {
        &self.table
    }

    /// Uplink index of `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.table.iter().position(|e| e.spec.name == name)
    }

    /// The uplink the sessions use.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Manual or automatic.
    pub fn mode(&self) -> Mode {
        self.policy.mode
    }

    /// The pending suggestion (manual mode).
    pub fn suggestion(&self) -> Option<usize> {
        self.suggestion
    }

    /// Uplinks in the order a new tunnel should try them at `now`:
    /// healthiest and most preferred first; those within their hold-down
    /// (just lost or left degraded: their good figures may be stale) after
    /// every other usable one; Down ones last.
    pub fn preference(&self, now: Instant) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.table.len()).collect();
        order.sort_by_key(|&i| {
            let down = self.table[i].health == Health::Down;
            (down, self.held_down(i, now), self.table[i].rank())
        });
        order
    }

    /// Takes in what a driver saw.
    pub fn observe(&mut self, obs: Observation, now: Instant) {
        match obs {
            Observation::Link { uplink, up } => {
                if let Some(e) = self.table.get_mut(uplink) {
                    // A link that went down or just came up has no path
                    // history worth keeping.
                    if e.link_up != up {
                        e.rtt = None;
                        e.rtt_confirmed = None;
                        e.recent.clear();
                        e.loss = 0.0;
                        e.sampled_at = None;
                        // Its address and routes settle a moment after
                        // the link: probe it a little later.
                        if let Some(p) = self.next_probe.get_mut(uplink) {
                            *p = now + self.policy.probe_interval / 2;
                        }
                    }
                    e.link_up = up;
                }
            }
            Observation::Address { uplink, address } => {
                if let Some(e) = self.table.get_mut(uplink) {
                    e.address = address;
                }
            }
            Observation::Signal { uplink, dbm } => {
                if let Some(e) = self.table.get_mut(uplink) {
                    e.signal_dbm = dbm;
                }
            }
            Observation::Loaded { uplink, loaded } => {
                if let Some(e) = self.table.get_mut(uplink) {
                    e.loaded = loaded;
                }
            }
            Observation::Path {
                uplink,
                rtt,
                sent,
                lost,
            } => {
                if let Some(e) = self.table.get_mut(uplink)
                    && sent > 0
                {
                    let window = f64::from(lost.min(sent)) / f64::from(sent);
                    // Losses weigh by what the window holds: three or more
                    // packets (a keepalive window) count half, one probe a
                    // sixth — a single lost probe makes an uplink a
                    // warning, two in a row critical. A clean window always
                    // counts half: a path that answers again is trusted
                    // again as quickly as before (dwell and hold-down still
                    // apply).
                    let weight = if lost == 0 {
                        0.5
                    } else {
                        (f64::from(sent) / 6.0).min(0.5)
                    };
                    e.loss = (1.0 - weight) * e.loss + weight * window;
                    if let Some(r) = rtt {
                        e.rtt_confirmed = e.rtt.map(|prev| prev.min(r));
                        e.rtt = Some(r);
                        if e.recent.len() >= crate::table::RECENT_SAMPLES {
                            e.recent.pop_front();
                        }
                        e.recent.push_back((now, r));
                    }
                    e.sampled_at = Some(now);
                }
            }
            Observation::Active { uplink } => {
                if uplink != self.active {
                    // Every way into an uplink counts as a switch (planned,
                    // sudden, recovery, reconnection): the least interval
                    // applies after each. The very first connection is not.
                    if uplink.is_some() && self.ever_active {
                        self.last_switch = Some(now);
                    }
                    // Leaving: degraded if its health says so (a path that
                    // failed was reported `Lost` first); merely without a
                    // tunnel (the relay restarted) is not held against it.
                    if let Some(old) = self.active {
                        self.leave(old, false, now);
                    }
                    self.ever_active |= uplink.is_some();
                    self.active = uplink;
                }
                if self.in_flight.is_some_and(|f| Some(f.to) == uplink) {
                    self.in_flight = None;
                }
                if self.suggestion.is_some_and(|s| Some(s) == uplink) {
                    self.suggestion = None;
                }
            }
            Observation::Lost { uplink } => self.leave(uplink, true, now),
            Observation::SwitchFailed { uplink } => {
                if self.in_flight.is_some_and(|f| f.to == uplink) {
                    self.in_flight = None;
                }
                self.failed = Some((uplink, now));
            }
        }
        self.evaluate(now);
    }

    /// The driver could not carry out the last switch asked for (nothing
    /// to move yet, or already there): the task decides afresh at once.
    pub fn abandon(&mut self) {
        self.in_flight = None;
    }

    /// The user (cboxctl, MQTT, the web page) forces `to`.
    pub fn force(&mut self, to: usize, now: Instant) -> Result<Decision, Refusal> {
        let e = self.table.get_mut(to).ok_or(Refusal::Unknown(to))?;
        e.refresh(&self.policy, now);
        if e.health == Health::Down {
            return Err(Refusal::Down {
                name: e.spec.name.clone(),
                why: e.why.clone(),
            });
        }
        self.pinned = Some(to);
        self.clear_suggestion();
        self.in_flight = Some(InFlight { to, since: now });
        Ok(Decision::Planned {
            to,
            reason: "forced by the user".into(),
        })
    }

    /// The user approves the suggestion (manual mode).
    pub fn approve(&mut self, now: Instant) -> Result<Decision, Refusal> {
        let to = self.suggestion.ok_or(Refusal::NoSuggestion)?;
        self.force(to, now)
    }

    /// The user declines the suggestion; it is not repeated until something
    /// changes for the worse on the active uplink.
    pub fn decline(&mut self) -> Result<(), Refusal> {
        let to = self.suggestion.take().ok_or(Refusal::NoSuggestion)?;
        self.pinned = self.active.or(Some(to));
        Ok(())
    }

    /// Manual or automatic from now on.
    pub fn set_mode(&mut self, mode: Mode, now: Instant) {
        self.policy.mode = mode;
        if mode == Mode::Automatic {
            self.clear_suggestion();
        }
        self.evaluate(now);
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        let probe = self
            .standby()
            .map(|i| self.next_probe[i])
            .min()
            .unwrap_or(self.next_check);
        self.next_check.min(self.next_search).min(probe)
    }

    /// Runs whatever activity is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_search {
            self.next_search = now + self.policy.search_interval;
            self.out.push_back(Decision::Search);
        }
        let due: Vec<usize> = self
            .standby()
            .filter(|&i| now >= self.next_probe[i])
            .collect();
        for i in due {
            self.next_probe[i] = now + self.policy.probe_interval;
            self.out.push_back(Decision::Probe { uplink: i });
        }
        if now >= self.next_check {
            self.next_check = now + self.policy.check_interval;
            self.evaluate(now);
        }
    }

    /// The next decision to carry out.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.out.pop_front()
    }

    // ---- internals ---------------------------------------------------

    /// The sessions left `old` (`lost`: its path failed). It must be
    /// measured good for the dwell time from now before it is chosen again;
    /// degraded or lost, it is also held down. A lost path's samples are
    /// void: it counts as failed until probes say otherwise.
    fn leave(&mut self, old: usize, lost: bool, now: Instant) {
        let Some(e) = self.table.get_mut(old) else {
            return;
        };
        // Left for its health even if it looks good again by the time the
        // switch completes (the demo's fade ended while the switch ran and
        // the box went back 10 s later, inside the hold-down).
        let recently_bad = e
            .last_bad
            .is_some_and(|t| now.saturating_duration_since(t) <= RECENTLY_BAD);
        let degraded = lost || e.health < Health::Good || recently_bad;
        e.good_since = None;
        if lost {
            e.loss = 1.0;
            e.rtt = None;
            e.rtt_confirmed = None;
            e.sampled_at = Some(now);
            e.refresh(&self.policy, now);
        }
        if let Some(l) = self.left.get_mut(old) {
            *l = Some(Left { at: now, degraded });
        }
    }

    /// Uplink `i` was left since `since` for a reason that is explained
    /// and over — a Wi-Fi roam between access points of one network, whose
    /// reassociation gap the sessions fled —: no hold-down for it. It must
    /// still be measured good for the dwell time before it is chosen again,
    /// and switches stay `min_interval` apart.
    pub fn forgive(&mut self, i: usize, since: Instant) {
        if let Some(Some(l)) = self.left.get_mut(i)
            && l.at >= since
        {
            l.degraded = false;
        }
    }

    /// Whether `i` is within its hold-down at `now`.
    pub fn held_down(&self, i: usize, now: Instant) -> bool {
        self.left.get(i).copied().flatten().is_some_and(|l| {
            l.degraded && now.saturating_duration_since(l.at) < self.policy.hold_down
        })
    }

    /// Whether `i` has been good for the dwell time, counted from the last
    /// time the sessions left it.
    fn dwelt(&self, i: usize, now: Instant) -> bool {
        let left = self.left.get(i).copied().flatten().map(|l| l.at);
        self.table[i].good_since.is_some_and(|t| {
            let since = left.map_or(t, |l| t.max(l));
            now.saturating_duration_since(since) >= self.policy.dwell
        })
    }

    /// Uplinks with link and address that are not active: probe targets.
    fn standby(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.table.len()).filter(move |&i| {
            Some(i) != self.active && self.table[i].link_up && self.table[i].address.is_some()
        })
    }

    fn clear_suggestion(&mut self) {
        if self.suggestion.take().is_some() {
            self.out.push_back(Decision::Withdraw);
        }
    }

    /// The best uplink other than the active one (and one that just failed
    /// to take the sessions), at least `floor` healthy.
    fn best_other(&self, floor: Health, now: Instant) -> Option<usize> {
        let failed = self
            .failed
            .filter(|(_, t)| now.saturating_duration_since(*t) < self.policy.switch_patience)
            .map(|(u, _)| u);
        let mut c: Vec<usize> = (0..self.table.len())
            .filter(|&i| {
                Some(i) != self.active
                    && Some(i) != failed
                    && self.table[i].health >= floor
                    && !self.held_down(i, now)
            })
            .collect();
        c.sort_by_key(|&i| self.table[i].rank());
        c.first().copied()
    }

    fn evaluate(&mut self, now: Instant) {
        for e in &mut self.table {
            e.refresh(&self.policy, now);
        }
        let active_down = self
            .active
            .is_some_and(|a| self.table[a].health == Health::Down);
        if let Some(f) = self.in_flight {
            // A switch is under way; give it the policy's time — unless the
            // path it leaves is gone meanwhile.
            if now.saturating_duration_since(f.since) < self.policy.switch_patience && !active_down
            {
                return;
            }
            self.in_flight = None;
        }
        let Some(a) = self.active else { return };
        let cur = &self.table[a];
        let (health, why, name) = (cur.health, cur.why.clone(), cur.spec.name.clone());
        if self
            .pinned
            .is_some_and(|p| p != a || health < Health::Warning)
        {
            self.pinned = None;
        }
        match health {
            Health::Down => {
                // Any way out beats none, whatever the mode.
                if let Some(to) = self.best_other(Health::Critical, now) {
                    self.switch(to, now, Style::Sudden, format!("{name}: {why}"));
                }
            }
            Health::Critical => {
                // A critical path is as good as gone: move without waiting
                // for it (the standby, or a new tunnel, and the offsets).
                if let Some(to) = self.best_other(Health::Warning, now) {
                    self.switch(to, now, Style::Sudden, format!("{name}: {why}"));
                }
            }
            Health::Warning | Health::Good => {
                if self.pinned == Some(a) {
                    return;
                }
                let Some(to) = self.best_other(Health::Good, now) else {
                    self.clear_suggestion();
                    return;
                };
                let cand = &self.table[to];
                let better = if health == Health::Warning {
                    true
                } else {
                    // Both Good: only a preferred uplink is worth a switch.
                    (cand.spec.priority, cand.spec.cost)
                        < (self.table[a].spec.priority, self.table[a].spec.cost)
                };
                let dwelt = self.dwelt(to, now);
                let rested = self
                    .last_switch
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.policy.min_interval);
                if !better {
                    self.clear_suggestion();
                    return;
                }
                if !(dwelt && rested) {
                    return;
                }
                let reason = if health == Health::Warning {
                    format!("{name}: {why}; {} is good", cand.spec.name)
                } else {
                    format!("preferred {} is good again", cand.spec.name)
                };
                // Away from a degraded path: promptly; from a good one to a
                // better one: gracefully (nothing to send again).
                let style = if health == Health::Warning {
                    Style::Prompt
                } else {
                    Style::Planned
                };
                match self.policy.mode {
                    Mode::Automatic => self.switch(to, now, style, reason),
                    Mode::Manual => {
                        if self.suggestion != Some(to) {
                            self.suggestion = Some(to);
                            self.out.push_back(Decision::Suggest { to, reason });
                        }
                    }
                }
            }
        }
    }

    fn switch(&mut self, to: usize, now: Instant, style: Style, reason: String) {
        self.clear_suggestion();
        self.in_flight = Some(InFlight { to, since: now });
        self.out.push_back(match style {
            Style::Planned => Decision::Planned { to, reason },
            Style::Prompt => Decision::Prompt { to, reason },
            Style::Sudden => Decision::Sudden { to, reason },
        });
    }
}
