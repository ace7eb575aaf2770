//! LED patterns and the three LED pins: a pattern per LED from the panel
//! state, the level each pattern has at a given time, and the pins written
//! only when a level changes.

use embedded_hal::digital::OutputPin;

use crate::{Pairing, PanelState, Uplink};

/// What one LED does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Dark.
    Off,
    /// Lit.
    On,
    /// Lit `on_ms`, dark `off_ms`, repeated; `phase_ms` shifts the start
    /// (two LEDs alternate with the same period and half a period apart).
    Blink {
        /// Lit time.
        on_ms: u32,
        /// Dark time.
        off_ms: u32,
        /// Shift of the cycle.
        phase_ms: u32,
    },
}

const fn blink(on_ms: u32, off_ms: u32) -> Pattern {
    Pattern::Blink {
        on_ms,
        off_ms,
        phase_ms: 0,
    }
}

impl Pattern {
    /// Lit at `now_ms`?
    pub fn level(self, now_ms: u64) -> bool {
        match self {
            Pattern::Off => false,
            Pattern::On => true,
            Pattern::Blink {
                on_ms,
                off_ms,
                phase_ms,
            } => {
                let period = u64::from(on_ms) + u64::from(off_ms);
                if period == 0 {
                    return false;
                }
                (now_ms + u64::from(phase_ms)) % period < u64::from(on_ms)
            }
        }
    }
}

/// The patterns of green, amber and blue for `s`.
pub fn patterns(s: &PanelState) -> [Pattern; 3] {
    let blue = match s.pairing {
        Pairing::Closed => Pattern::Off,
        Pairing::Open => blink(250, 250),
        Pairing::Passkey => Pattern::On,
    };
    if s.booting {
        let alternate = |phase_ms| Pattern::Blink {
            on_ms: 250,
            off_ms: 250,
            phase_ms,
        };
        return [alternate(0), alternate(250), blue];
    }
    let green = match (s.uplink, s.handover) {
        (_, true) => blink(100, 100),
        (None, false) => Pattern::Off,
        (Some(Uplink::Local), false) => Pattern::On,
        (Some(Uplink::Cellular), false) => blink(500, 500),
    };
    let amber = if s.fault {
        blink(100, 100)
    } else if s.uplink.is_none() {
        Pattern::On
    } else if s.degraded {
        blink(500, 500)
    } else {
        Pattern::Off
    };
    [green, amber, blue]
}

/// The three LED pins, written only on a change of level.
#[derive(Debug)]
pub struct Leds<G, A, B> {
    green: G,
    amber: A,
    blue: B,
    shown: [Option<bool>; 3],
}

fn drive<P: OutputPin>(pin: &mut P, on: bool) -> Result<(), P::Error> {
    if on { pin.set_high() } else { pin.set_low() }
}

impl<G: OutputPin, A: OutputPin, B: OutputPin> Leds<G, A, B> {
    /// Takes the pins (active high; an active-low LED is inverted by the
    /// GPIO line's configuration).
    pub fn new(green: G, amber: A, blue: B) -> Self {
        Self {
            green,
            amber,
            blue,
            shown: [None; 3],
        }
    }

    /// Shows `p` as of `now_ms`. A pin that fails keeps its old level and
    /// is tried again next time; the first error is returned (a broken LED
    /// must not stop the others).
    pub fn show(&mut self, p: &[Pattern; 3], now_ms: u64) -> Result<(), String> {
        let mut first_err = None;
        for (i, pattern) in p.iter().enumerate() {
            let want = pattern.level(now_ms);
            if self.shown[i] == Some(want) {
                continue;
            }
            let r = match i {
                0 => drive(&mut self.green, want).map_err(|e| format!("green LED: {e:?}")),
                1 => drive(&mut self.amber, want).map_err(|e| format!("amber LED: {e:?}")),
                _ => drive(&mut self.blue, want).map_err(|e| format!("blue LED: {e:?}")),
            };
            match r {
                Ok(()) => self.shown[i] = Some(want),
                Err(e) => {
                    self.shown[i] = None;
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The pins back (to release the GPIO lines).
    pub fn release(self) -> (G, A, B) {
        (self.green, self.amber, self.blue)
    }
}
