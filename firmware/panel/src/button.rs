//! The pairing button: sampled now and then, debounced, turned into a
//! short press (on release) or a long press (once, while still held).

use embedded_hal::digital::InputPin;

/// A level must hold this long to count.
pub const DEBOUNCE_MS: u64 = 30;
/// Held this long: a long press.
pub const LONG_PRESS_MS: u64 = 2000;

/// What the technician did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// Pressed and released within [`LONG_PRESS_MS`]: open pairing.
    Short,
    /// Held [`LONG_PRESS_MS`]: force a switch.
    Long,
}

/// The button on an input pin (pressed = high; an active-low button is
/// inverted by the GPIO line's configuration).
#[derive(Debug)]
pub struct Button<P> {
    pin: P,
    /// Debounced level and since when.
    pressed: bool,
    since_ms: u64,
    /// A raw level differing from the debounced one, and since when.
    candidate: Option<(bool, u64)>,
    long_sent: bool,
}

impl<P: InputPin> Button<P> {
    /// Starts released.
    pub fn new(pin: P, now_ms: u64) -> Self {
        Self {
            pin,
            pressed: false,
            since_ms: now_ms,
            candidate: None,
            long_sent: false,
        }
    }

    /// Samples the pin at `now_ms` (every 10 ms or so); a press, if one
    /// just happened.
    pub fn poll(&mut self, now_ms: u64) -> Result<Option<Press>, P::Error> {
        let raw = self.pin.is_high()?;
        if raw == self.pressed {
            self.candidate = None;
        } else {
            match self.candidate {
                Some((level, t)) if level == raw => {
                    if now_ms.saturating_sub(t) >= DEBOUNCE_MS {
                        self.candidate = None;
                        let held = now_ms.saturating_sub(self.since_ms);
                        self.pressed = raw;
                        self.since_ms = now_ms;
                        if !raw {
                            let was_long = self.long_sent;
                            self.long_sent = false;
                            if !was_long && held < LONG_PRESS_MS {
                                return Ok(Some(Press::Short));
                            }
                        }
                    }
                }
                _ => self.candidate = Some((raw, now_ms)),
            }
        }
        if self.pressed && !self.long_sent && now_ms.saturating_sub(self.since_ms) >= LONG_PRESS_MS
        {
            self.long_sent = true;
            return Ok(Some(Press::Long));
        }
        Ok(None)
    }

    /// The pin back.
    pub fn release(self) -> P {
        self.pin
    }
}
