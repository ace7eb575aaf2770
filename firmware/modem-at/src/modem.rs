//! LTE modem bring-up and watch, as a state machine over the [`AtEngine`]:
//! probe (echo off, numeric errors, identity → vendor profile), SIM (PIN
//! from the config), APN, registration (URCs on, automatic operator), data
//! activation, address; then every `poll_interval` signal, operator and
//! registration. Registration lost → back to waiting for it; a boot URC
//! (the modem reset itself) or the port going away → from the start.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::engine::{AtEngine, AtError, Event};
use crate::parse::{self, RegStatus, Signal, SimState};
use crate::profile::Profile;

/// What the modem driver needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemConfig {
    /// Access point name.
    pub apn: String,
    /// SIM PIN, if the SIM asks for one.
    pub pin: Option<String>,
    /// PDP context id.
    pub cid: u8,
    /// Vendor profile; `None` = detect from `ATI`.
    pub profile: Option<Profile>,
    /// Period of the signal/operator/registration poll.
    pub poll_interval: Duration,
    /// Timeout of ordinary commands.
    pub command_timeout: Duration,
}

impl ModemConfig {
    /// Defaults for `apn`.
    pub fn new(apn: &str) -> Self {
        Self {
            apn: apn.to_string(),
            pin: None,
            cid: 1,
            profile: None,
            poll_interval: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the bring-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Talking to the modem at all.
    Probing,
    /// Checking / unlocking the SIM.
    Sim,
    /// Setting the APN, enabling URCs.
    Configuring,
    /// Waiting for network registration.
    Registering,
    /// Bringing the data connection up.
    Activating,
    /// Data up, address known; polling signal.
    Online,
    /// Stopped: the SIM needs the user (PUK, wrong PIN) or no profile fits.
    Failed,
}

/// What the modem driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ModemEvent {
    /// Bring-up moved on.
    Phase(Phase),
    /// Manufacturer/model line and the profile chosen.
    Identified {
        /// `ATI` text.
        model: String,
        /// Profile in use.
        profile: Profile,
    },
    /// The SIM's state.
    Sim(SimState),
    /// Registration changed.
    Registration(RegStatus),
    /// A signal reading.
    Signal(Signal),
    /// Operator name.
    Operator(Option<String>),
    /// The data address (`None`: no data connection).
    Address(Option<IpAddr>),
    /// The modem reset itself (boot URC) or stopped answering.
    Restarted(String),
    /// A step failed and will be tried again: why.
    Retry(String),
    /// Something needs the user: why.
    Failed(String),
}

/// The modem driver.
#[derive(Debug)]
pub struct Modem {
    cfg: ModemConfig,
    at: AtEngine,
    phase: Phase,
    profile: Profile,
    /// Commands of the current step still to answer.
    step_left: usize,
    step_failed: Option<(String, AtError)>,
    step_lines: Vec<String>,
    next_poll: Option<Instant>,
    registered: bool,
    address: Option<IpAddr>,
    timeouts_in_a_row: u32,
    /// No port: bring-up starts when [`Modem::port_opened`] says so.
    closed: bool,
    events: Vec<ModemEvent>,
}

impl Modem {
    /// A modem whose port is not open yet: call [`Modem::port_opened`].
    pub fn new(cfg: ModemConfig) -> Self {
        let mut m = Self {
            profile: cfg.profile.unwrap_or(Profile::Generic),
            cfg,
            at: AtEngine::new(),
            phase: Phase::Probing,
            step_left: 0,
            step_failed: None,
            step_lines: Vec::new(),
            next_poll: None,
            registered: false,
            address: None,
            timeouts_in_a_row: 0,
            closed: true,
            events: Vec::new(),
        };
        m.events.push(ModemEvent::Phase(Phase::Probing));
        m
    }

    /// The port is open (first time, or again after a reset): bring-up
    /// starts, its timers from `now`.
    pub fn port_opened(&mut self, now: Instant) {
        if self.closed {
            self.closed = false;
            self.enter(Phase::Probing, now);
        }
    }

    /// Where the bring-up is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes read from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.at.handle_input(bytes, now);
        self.pump(now);
    }

    /// Bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.at.poll_transmit()
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.at.poll_timeout(), self.next_poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.at.handle_timeout(now);
        if self.next_poll.is_some_and(|t| now >= t) {
            self.next_poll = None;
            self.poll(now);
        }
        self.pump(now);
    }

    /// The serial port went away (USB re-enumeration, a read error): what
    /// was known is void; bring-up starts over once the port is open again.
    pub fn port_closed(&mut self, why: &str) {
        self.at.reset();
        while self.at.poll_event().is_some() {}
        self.forget(why);
        self.phase = Phase::Probing;
        self.events.push(ModemEvent::Phase(Phase::Probing));
        self.closed = true;
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ModemEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    // ---- internals ----------------------------------------------------

    fn send(&mut self, cmd: &str, timeout: Duration, now: Instant) {
        self.step_left += 1;
        self.at.send(cmd, timeout, now);
    }

    fn forget(&mut self, why: &str) {
        self.events.push(ModemEvent::Restarted(why.to_string()));
        if self.address.take().is_some() {
            self.events.push(ModemEvent::Address(None));
        }
        self.registered = false;
        self.step_left = 0;
        self.step_failed = None;
        self.step_lines.clear();
        self.next_poll = None;
        self.timeouts_in_a_row = 0;
    }

    fn restart(&mut self, why: &str, now: Instant) {
        self.forget(why);
        self.enter(Phase::Probing, now);
    }

    fn enter(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.events.push(ModemEvent::Phase(phase));
        let t = self.cfg.command_timeout;
        match phase {
            Phase::Probing => {
                self.send("AT", t, now);
                self.send("ATE0", t, now);
                self.send("AT+CMEE=1", t, now);
                self.send("ATI", t, now);
            }
            Phase::Sim => self.send("AT+CPIN?", t, now),
            Phase::Configuring => {
                let ctx = format!("AT+CGDCONT={},\"IP\",\"{}\"", self.cfg.cid, self.cfg.apn);
                self.send(&ctx, t, now);
                self.send("AT+CREG=2", t, now);
                self.send("AT+CEREG=2", t, now);
                for c in self.profile.init_commands() {
                    self.send(c, t, now);
                }
                // Automatic operator selection may take the network's time.
                self.send("AT+COPS=0", Duration::from_secs(180), now);
            }
            Phase::Registering => {
                self.send("AT+CEREG?", t, now);
                self.send("AT+CREG?", t, now);
            }
            Phase::Activating => {
                for c in self.profile.activate(self.cfg.cid) {
                    self.send(&c, Duration::from_secs(150), now);
                }
                self.send(&format!("AT+CGPADDR={}", self.cfg.cid), t, now);
            }
            Phase::Online => {
                self.next_poll = Some(now);
            }
            Phase::Failed => {}
        }
    }

    fn poll(&mut self, now: Instant) {
        let t = self.cfg.command_timeout;
        if self.phase == Phase::Online {
            self.send("AT+CSQ", t, now);
            self.send("AT+CESQ", t, now);
            self.send("AT+COPS?", t, now);
            self.send("AT+CEREG?", t, now);
            self.send(&format!("AT+CGPADDR={}", self.cfg.cid), t, now);
        } else if self.phase == Phase::Registering {
            // Still waiting: ask again (no new Phase event).
            self.send("AT+CEREG?", t, now);
            self.send("AT+CREG?", t, now);
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.at.poll_event() {
            match ev {
                Event::Urc(line) => self.urc(&line, now),
                Event::Done {
                    command, result, ..
                } => self.done(&command, result, now),
            }
        }
    }

    fn urc(&mut self, line: &str, now: Instant) {
        if self.profile.is_boot_urc(line) {
            if self.phase != Phase::Probing {
                self.at.reset();
                while self.at.poll_event().is_some() {}
                self.restart(&format!("the modem restarted ({line})"), now);
            }
            return;
        }
        if let Some((_, stat)) = parse::registration(line, false) {
            self.registration(stat, now);
        }
    }

    fn registration(&mut self, stat: RegStatus, now: Instant) {
        let reg = stat.registered();
        if reg != self.registered {
            self.registered = reg;
            self.events.push(ModemEvent::Registration(stat));
            if reg && self.phase == Phase::Registering && self.step_left == 0 {
                self.next_poll = None;
                self.enter(Phase::Activating, now);
                return;
            }
            if !reg && self.phase == Phase::Online {
                if self.address.take().is_some() {
                    self.events.push(ModemEvent::Address(None));
                }
                self.enter(Phase::Registering, now);
                self.next_poll = Some(now + self.cfg.poll_interval);
            }
        }
    }

    fn done(&mut self, command: &str, result: Result<Vec<String>, AtError>, now: Instant) {
        self.step_left = self.step_left.saturating_sub(1);
        match &result {
            Err(AtError::Timeout(_)) => self.timeouts_in_a_row += 1,
            _ => self.timeouts_in_a_row = 0,
        }
        if self.timeouts_in_a_row >= 3 {
            // The port may now be another device: the driver reopens it.
            self.port_closed("the modem stopped answering");
            return;
        }
        match result {
            Ok(lines) => self.answer(command, &lines, now),
            Err(e) => {
                // Data deactivation of an inactive context and the like are
                // not worth stopping for; the step decides below.
                if self.step_failed.is_none() {
                    self.step_failed = Some((command.to_string(), e));
                }
            }
        }
        if self.step_left == 0 {
            self.step_done(now);
        }
    }

    fn answer(&mut self, command: &str, lines: &[String], now: Instant) {
        for l in lines {
            if command == "ATI" {
                self.step_lines.push(l.clone());
            } else if let Some(sim) = parse::cpin(l) {
                self.events.push(ModemEvent::Sim(sim));
                self.step_lines.push(l.clone());
            } else if let Some((_, stat)) = parse::registration(l, true) {
                self.registration(stat, now);
            } else if let Some(rssi) = parse::csq(l) {
                self.events.push(ModemEvent::Signal(Signal {
                    rssi_dbm: rssi,
                    ..Signal::default()
                }));
            } else if let Some((rsrq, rsrp)) = parse::cesq(l) {
                self.events.push(ModemEvent::Signal(Signal {
                    rssi_dbm: None,
                    rsrp_dbm: rsrp,
                    rsrq_db: rsrq,
                }));
            } else if let Some(op) = parse::cops(l) {
                self.events.push(ModemEvent::Operator(op));
            } else if let Some(addr) = parse::cgpaddr(l, self.cfg.cid) {
                let addr = addr.filter(|a| !a.is_unspecified());
                if addr != self.address {
                    self.address = addr;
                    self.events.push(ModemEvent::Address(addr));
                }
            }
        }
    }

    fn step_done(&mut self, now: Instant) {
        let failed = self.step_failed.take();
        let lines = std::mem::take(&mut self.step_lines);
        match self.phase {
            Phase::Probing => {
                if let Some((cmd, e)) = failed {
                    self.restart(&format!("probe: {cmd}: {e}"), now);
                    return;
                }
                let model = lines.join(" ");
                if self.cfg.profile.is_none() {
                    self.profile = Profile::detect(&model);
                }
                self.events.push(ModemEvent::Identified {
                    model,
                    profile: self.profile,
                });
                self.enter(Phase::Sim, now);
            }
            Phase::Sim => {
                let state = lines.iter().find_map(|l| parse::cpin(l));
                match (state, failed) {
                    (Some(SimState::Ready), _) => self.enter(Phase::Configuring, now),
                    (Some(SimState::Pin), None) => match self.cfg.pin.clone() {
                        Some(pin) => {
                            let t = self.cfg.command_timeout;
                            self.send(&format!("AT+CPIN=\"{pin}\""), t, now);
                            self.send("AT+CPIN?", t, now);
                        }
                        None => self.fail("the SIM asks for a PIN and none is configured"),
                    },
                    (Some(SimState::Pin), Some((_, e))) => {
                        self.fail(&format!("the SIM refused the configured PIN ({e})"))
                    }
                    (Some(SimState::Puk), _) => self.fail("the SIM is blocked (PUK needed)"),
                    (Some(SimState::Other(s)), _) => self.fail(&format!("SIM state {s}")),
                    (None, f) => self.fail(&format!(
                        "no SIM answer ({})",
                        f.map_or("no +CPIN line".into(), |(c, e)| format!("{c}: {e}"))
                    )),
                }
            }
            Phase::Configuring => {
                if let Some((cmd, e)) = failed {
                    self.fail(&format!("{cmd}: {e}"));
                } else {
                    self.enter(Phase::Registering, now);
                }
            }
            Phase::Registering => {
                if self.registered {
                    self.enter(Phase::Activating, now);
                } else {
                    self.next_poll = Some(now + self.cfg.poll_interval);
                }
            }
            Phase::Activating => {
                if self.address.is_some() {
                    self.enter(Phase::Online, now);
                } else {
                    // Refused, or no address yet: try again after a poll.
                    self.events.push(ModemEvent::Retry(match failed {
                        Some((cmd, e)) => format!("data activation: {cmd}: {e}"),
                        None => "data activation gave no address".into(),
                    }));
                    self.phase = Phase::Registering;
                    self.next_poll = Some(now + self.cfg.poll_interval);
                }
            }
            Phase::Online => {
                self.next_poll = Some(now + self.cfg.poll_interval);
            }
            Phase::Failed => {}
        }
    }

    fn fail(&mut self, why: &str) {
        self.phase = Phase::Failed;
        self.events.push(ModemEvent::Phase(Phase::Failed));
        self.events.push(ModemEvent::Failed(why.to_string()));
    }
}
