//! The box's operating-system adapters, each speaking the real protocol of
//! what it drives, none of them deciding anything:
//!
//! * [`linkmon`]: links, addresses and default gateways over rtnetlink.
//! * [`routing`]: policy routing, a table and source rule per uplink.
//! * [`wifi`]: wpa_supplicant over its control socket (`wpa-ctrl`).
//! * [`modem_port`]: the LTE modem's AT port (tokio-serial + `modem-at`).
//! * [`pan`]: the PAN bridge's ports and clients (rtnetlink) and the
//!   Bluetooth NAP (BlueZ over D-Bus).
//! * [`transparent`] and [`transparent_udp`]: the nftables rules, routes
//!   and sockets of transparent mode.
//! * [`guard`]: the nftables rule that closes the PAN-side listeners to
//!   the uplinks' networks.
//! * [`front_panel`]: the LEDs and button on the GPIO character device.
//!
//! [`adapters`] starts the ones a configuration asks for, outside the box
//! driver; they report to it as `OsEvent`s through one sink and take its
//! commands through channels.
#![warn(missing_docs)]

pub mod adapters;
mod ctrl_socket;
pub mod front_panel;
pub mod guard;
pub mod linkmon;
pub mod modem_port;
pub mod pan;
pub mod routing;
pub mod transparent;
pub mod transparent_udp;
pub mod wifi;
