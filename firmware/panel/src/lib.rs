//! The box's front panel: three status LEDs (green, amber, blue) and the
//! pairing button, through embedded-hal's `OutputPin` and `InputPin` — on
//! the box the Linux GPIO character device, in tests `embedded-hal-mock`.
//! Pure: every call takes the time (milliseconds since any origin).
//!
//! What the LEDs say ([`PanelState`] → [`patterns`]):
//!
//! | state | green | amber | blue |
//! |---|---|---|---|
//! | booting | alternating with amber (2 Hz) | alternating | off |
//! | on Wi-Fi or cable, good | on | off | — |
//! | on LTE, good | slow blink (1 Hz) | off | — |
//! | handover in progress | fast blink (5 Hz) | — | — |
//! | uplink degraded (warning/critical) | as above | slow blink | — |
//! | no uplink | off | on | — |
//! | fault (SIM, passphrase, config) | — | fast blink | — |
//! | pairing window open | — | — | blink (2 Hz) |
//! | passkey to confirm | — | — | on |
//!
//! The button ([`Button`]): a short press (released within
//! [`LONG_PRESS_MS`]) opens the pairing window; holding it that long forces
//! a switch to the next uplink.

mod button;
mod leds;
mod pins;

pub use button::{Button, DEBOUNCE_MS, LONG_PRESS_MS, Press};
pub use leds::{Leds, Pattern, patterns};
pub use pins::{ActiveLow, Polarity};

/// The uplink the sessions run over, as the LEDs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uplink {
    /// Wi-Fi or a cable: green on.
    Local,
    /// LTE (metered): green blinks slowly.
    Cellular,
}

/// The pairing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pairing {
    /// Closed.
    #[default]
    Closed,
    /// Open: phones may pair.
    Open,
    /// A passkey waits for the technician's confirmation.
    Passkey,
}

/// Everything the LEDs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PanelState {
    /// cnaptd is starting (no snapshot yet).
    pub booting: bool,
    /// The uplink in use; `None`: no session.
    pub uplink: Option<Uplink>,
    /// The uplink in use is degraded (warning or critical).
    pub degraded: bool,
    /// A handover is in progress.
    pub handover: bool,
    /// Something needs the user (SIM, Wi-Fi passphrase, …).
    pub fault: bool,
    /// The pairing window.
    pub pairing: Pairing,
}

/// The uplink a long press switches to: the next one after the active
/// uplink, in the configuration's order, that has link (wrapping around);
/// `None` when no other uplink has one.
pub fn next_uplink(s: &status::Snapshot) -> Option<String> {
    let n = s.uplinks.len();
    let active = s
        .uplinks
        .iter()
        .position(|u| u.active)
        .unwrap_or(n.saturating_sub(1));
    (1..=n)
        .map(|k| &s.uplinks[(active + k) % n])
        .find(|u| !u.active && u.link)
        .map(|u| u.name.clone())
}

impl Pairing {
    /// The pairing window as the status model reports it (the Bluetooth
    /// NAP's, or on a box with only the Wi-Fi access point, the access
    /// point's: one window for both).
    pub fn of(s: &status::Snapshot) -> Self {
        match s.bluetooth.as_ref().map(|b| &b.pairing) {
            Some(p) if p.passkey.is_some() => Pairing::Passkey,
            Some(p) if p.open => Pairing::Open,
            _ if s.wifi_ap.as_ref().is_some_and(|a| a.pairing_open) => Pairing::Open,
            _ => Pairing::Closed,
        }
    }
}

impl PanelState {
    /// What the status model says; `handover` and `pairing` come from the
    /// daemon's own state.
    pub fn from_snapshot(s: &status::Snapshot, handover: bool, pairing: Pairing) -> Self {
        let active = s.active_uplink();
        let uplink = active
            .filter(|_| s.connected())
            .map(|u| match u.kind.as_str() {
                "lte" => Uplink::Cellular,
                _ => Uplink::Local,
            });
        let fault = s.uplinks.iter().any(|u| {
            u.modem.as_ref().is_some_and(|m| m.problem.is_some())
                || u.wifi.as_ref().is_some_and(|w| w.problem.is_some())
        });
        let switching = s
            .sites
            .iter()
            .any(|x| x.state == "Switching" || x.state == "Resyncing");
        Self {
            booting: false,
            uplink,
            degraded: active.is_some_and(|u| u.health == "warning" || u.health == "critical"),
            handover: handover || switching,
            fault,
            pairing,
        }
    }
}

#[cfg(test)]
mod tests;
