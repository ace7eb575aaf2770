//! The pairing window and the agent's answers.

use std::str::FromStr;

use status::PairingView;

use crate::{BdAddr, NAP_UUID, PANU_UUID, Trusted};

/// How a phone pairs while the window is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The box accepts the confirmation by itself: pressing the button
    /// and accepting on the phone is all it takes.
    JustWorks,
    /// The six digits are shown on the status page (and the blue LED is
    /// steady); the technician compares them with the phone's and confirms
    /// on the page, with `cboxctl pan confirm` or a short press — or types
    /// them on a phone that has no display of its own.
    Passkey,
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "just-works" => Ok(Policy::JustWorks),
            "passkey" => Ok(Policy::Passkey),
            _ => Err("\"just-works\" or \"passkey\"".into()),
        }
    }
}

impl Policy {
    /// The configuration's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::JustWorks => "just-works",
            Policy::Passkey => "passkey",
        }
    }
}

/// What the agent replies to BlueZ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Go ahead.
    Accept,
    /// Wait for the technician ([`Window::confirm_passkey`]), at most
    /// [`Window::CONFIRM_TIMEOUT_MS`].
    AskTechnician,
    /// Refuse, with the reason the box logs.
    Reject(&'static str),
}

/// A request the window cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Zero or longer than allowed.
    #[error("a pairing window lasts 1 to {max} s, not {asked} s")]
    Duration {
        /// Seconds asked for.
        asked: u32,
        /// The configured maximum.
        max: u32,
    },
    /// Nothing to confirm.
    #[error("no passkey is waiting for confirmation")]
    NothingToConfirm,
}

/// The pairing window of one adapter.
#[derive(Debug, Clone)]
pub struct Window {
    policy: Policy,
    max_secs: u32,
    open_until_ms: Option<u64>,
    /// The passkey on show, and for whom.
    passkey: Option<(BdAddr, u32)>,
    /// The technician's word on the passkey on show.
    confirmed: Option<bool>,
}

impl Window {
    /// How long a passkey waits for the technician.
    pub const CONFIRM_TIMEOUT_MS: u64 = 30_000;

    /// A closed window.
    pub fn new(policy: Policy, max_secs: u32) -> Self {
        Window {
            policy,
            max_secs: max_secs.max(1),
            open_until_ms: None,
            passkey: None,
            confirmed: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Opens (or extends) the window for `secs` seconds from `now_ms`.
    pub fn open(&mut self, now_ms: u64, secs: u32) -> Result<u32, WindowError> {
        if secs == 0 || secs > self.max_secs {
            return Err(WindowError::Duration {
                asked: secs,
                max: self.max_secs,
            });
        }
        self.open_until_ms = Some(now_ms.saturating_add(u64::from(secs) * 1000));
        Ok(secs)
    }

    /// Closes it now; whether it was open.
    pub fn close(&mut self, now_ms: u64) -> bool {
        let was = self.is_open(now_ms);
        self.open_until_ms = None;
        self.passkey = None;
        self.confirmed = None;
        was
    }

    /// Lets time pass: true when the window has just run out.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        match self.open_until_ms {
            Some(t) if now_ms >= t => {
                self.close(now_ms);
                true
            }
            _ => false,
        }
    }

    /// Whether pairing is possible at `now_ms`.
    pub fn is_open(&self, now_ms: u64) -> bool {
        self.open_until_ms.is_some_and(|t| now_ms < t)
    }

    /// When it closes by itself.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.open_until_ms
    }

    /// BlueZ asks to confirm a numeric-comparison passkey.
    pub fn confirm(&mut self, now_ms: u64, device: BdAddr, passkey: u32) -> Answer {
        if !self.is_open(now_ms) {
            return Answer::Reject("the pairing window is closed");
        }
        match self.policy {
            Policy::JustWorks => Answer::Accept,
            Policy::Passkey => {
                self.passkey = Some((device, passkey % 1_000_000));
                self.confirmed = None;
                Answer::AskTechnician
            }
        }
    }

    /// BlueZ asks to authorize a just-works pairing (no digits at all).
    pub fn authorize(&mut self, now_ms: u64) -> Answer {
        match (self.is_open(now_ms), self.policy) {
            (false, _) => Answer::Reject("the pairing window is closed"),
            (true, Policy::JustWorks) => Answer::Accept,
            (true, Policy::Passkey) => Answer::Reject("this box pairs with a passkey only"),
        }
    }

    /// BlueZ asks to show a passkey (or a legacy PIN) the phone's user types.
    pub fn display(&mut self, now_ms: u64, device: BdAddr, passkey: u32) -> Answer {
        if !self.is_open(now_ms) {
            return Answer::Reject("the pairing window is closed");
        }
        self.passkey = Some((device, passkey % 1_000_000));
        Answer::Accept
    }

    /// The technician's word on the passkey on show (page, `cboxctl`,
    /// button).
    pub fn confirm_passkey(&mut self, yes: bool) -> Result<(), WindowError> {
        if self.passkey.is_none() {
            return Err(WindowError::NothingToConfirm);
        }
        self.confirmed = Some(yes);
        Ok(())
    }

    /// What the technician said so far about `device`'s passkey.
    pub fn technician_says(&self, device: BdAddr) -> Option<bool> {
        match self.passkey {
            Some((d, _)) if d == device => self.confirmed,
            _ => None,
        }
    }

    /// BlueZ cancelled the request or it timed out: nothing on show.
    pub fn cancel(&mut self) {
        self.passkey = None;
        self.confirmed = None;
    }

    /// A pairing completed: one pairing per window.
    pub fn paired(&mut self, now_ms: u64) {
        self.close(now_ms);
    }

    /// BlueZ asks whether `device` may use `uuid` — the network access
    /// point only, for trusted devices only.
    pub fn authorize_service(&self, device: BdAddr, uuid: &str, trusted: &Trusted) -> Answer {
        let uuid = uuid.to_ascii_lowercase();
        if uuid != NAP_UUID && uuid != PANU_UUID {
            return Answer::Reject("the box offers the network access point only");
        }
        if trusted.contains(device) {
            Answer::Accept
        } else {
            Answer::Reject("the device is not trusted (pair it first)")
        }
    }

    /// For the status model.
    pub fn view(&self, now_ms: u64) -> PairingView {
        let open = self.is_open(now_ms);
        PairingView {
            open,
            policy: self.policy.as_str().to_string(),
            seconds_left: self.open_until_ms.filter(|_| open).map(|t| {
                u32::try_from(t.saturating_sub(now_ms).div_ceil(1000)).unwrap_or(u32::MAX)
            }),
            passkey: self.passkey.map(|(_, k)| format!("{k:06}")),
            device: self.passkey.map(|(d, _)| d.to_string()),
        }
    }
}
