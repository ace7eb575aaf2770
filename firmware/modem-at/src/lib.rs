//! The cbox's LTE modem over its AT port, sans-IO: an AT command engine
//! ([`engine`]: queue, per-command timeouts, echo, final result codes,
//! interleaved URCs, resynchronisation after garbage or a timeout), typed
//! readings of 3GPP TS 27.007 answers ([`parse`]), vendor profiles
//! ([`profile`]) and the bring-up/watch state machine ([`modem`]). Bytes
//! and time in, bytes and events out; the serial port and the clock belong
//! to the runtime.

pub mod engine;
pub mod modem;
pub mod parse;
pub mod profile;

pub use engine::{AtEngine, AtError, CommandId, Event};
pub use modem::{Modem, ModemConfig, ModemEvent, Phase};
pub use parse::{RegStatus, Signal, SimState};
pub use profile::Profile;

#[cfg(test)]
mod tests;
