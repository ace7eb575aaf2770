//! Line polarity: an LED wired to 3V3, or a button pulling its line to
//! ground, is active low; [`ActiveLow`] turns the logical level the panel
//! speaks into the electrical one.

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

/// A pin whose logical "on" is electrically low.
#[derive(Debug)]
pub struct ActiveLow<P>(pub P);

impl<P: ErrorType> ErrorType for ActiveLow<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for ActiveLow<P> {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.0.set_high()
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.set_low()
    }
}

impl<P: InputPin> InputPin for ActiveLow<P> {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        self.0.is_low()
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        self.0.is_high()
    }
}

/// Either polarity, chosen at run time from the pin map.
#[derive(Debug)]
pub enum Polarity<P> {
    /// On = high.
    High(P),
    /// On = low.
    Low(ActiveLow<P>),
}

impl<P> Polarity<P> {
    /// `pin` with its polarity.
    pub fn new(pin: P, active_low: bool) -> Self {
        if active_low {
            Polarity::Low(ActiveLow(pin))
        } else {
            Polarity::High(pin)
        }
    }
}

impl<P: ErrorType> ErrorType for Polarity<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for Polarity<P> {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        match self {
            Polarity::High(p) => p.set_low(),
            Polarity::Low(p) => p.set_low(),
        }
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        match self {
            Polarity::High(p) => p.set_high(),
            Polarity::Low(p) => p.set_high(),
        }
    }
}

impl<P: InputPin> InputPin for Polarity<P> {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        match self {
            Polarity::High(p) => p.is_high(),
            Polarity::Low(p) => p.is_high(),
        }
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        match self {
            Polarity::High(p) => p.is_low(),
            Polarity::Low(p) => p.is_low(),
        }
    }
}
