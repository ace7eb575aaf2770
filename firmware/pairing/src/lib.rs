//! Who may pair with the box and connect to its network access point.
//!
//! Pure: the BlueZ agent and the button, page and `cboxctl` only report
//! what happened, with the time; this crate answers. It owns
//!
//! * the **pairing window** ([`Window`]): opened for a number of seconds by
//!   the button, `cboxctl pan pair` or the page, closed by itself when the
//!   time is up, or by the first pairing completed within it;
//! * the **agent's answers** ([`Window::confirm`], [`Window::display`],
//!   [`Window::authorize_service`]) under the configured [`Policy`]: nothing
//!   pairs while the window is closed; within it, `just-works` accepts the
//!   confirmation, `passkey` shows the six digits on the status page for
//!   the technician to type on the phone;
//! * the **trusted devices** ([`Trusted`]): what the box remembers across
//!   restarts (its own file, beside BlueZ's store), and the only devices
//!   whose network connections are authorized;
//! * the **join code** of the Wi-Fi access point ([`join_code`]): the QR
//!   code phones scan, for the page, the label and a terminal.

mod address;
pub mod join_code;
mod trusted;
mod window;

pub use address::{AddressError, BdAddr};
pub use trusted::{Trusted, TrustedDevice, TrustedError};
pub use window::{Answer, Policy, Window, WindowError};

/// Network access point (the service phones connect to).
pub const NAP_UUID: &str = "00001116-0000-1000-8000-00805f9b34fb";
/// PAN user (some stacks ask for this one when connecting).
pub const PANU_UUID: &str = "00001115-0000-1000-8000-00805f9b34fb";

#[cfg(test)]
mod tests;
