//! tokio drivers around the sans-IO session core.
//!
//! * [`box_driver`]: cnaptd's loop — phone-side listeners, tunnels over the
//!   configured uplinks, planned switches on command, recovery after losses.
//! * [`server_driver`]: snaptd's loop — TLS acceptor, sessions of many boxes,
//!   connections to the real servers, client-service listeners, CRL reload.
//! * [`control`]: the JSON-lines control socket both daemons serve and
//!   `cboxctl` speaks.
//! * [`io`] and [`connect`]: the byte-moving tasks and tunnel set-up.
//!
//! Every decision about the protocol is the session core's; these modules
//! only move bytes and events.
#![warn(missing_docs)]

pub mod accept;
pub mod box_driver;
pub mod connect;
pub mod control;
pub mod daemon;
pub mod front_panel;
pub mod io;
pub mod linkmon;
pub mod locals;
pub mod modem_port;
pub mod pan;
pub mod routing;
pub mod server_driver;
pub mod transparent;
pub mod transparent_udp;
pub mod udp;
pub mod watchdog;
pub mod wifi;

pub use box_driver::BoxDriver;
pub use server_driver::ServerDriver;
