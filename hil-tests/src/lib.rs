//! The simulated world of the cbox (work in progress, see the
//! simulated-world issue): network namespaces for the phone, the box, one ISP
//! per uplink and the internet, joined by veth pairs, addresses from
//! 198.18.0.0/15 only; the real daemons run inside them.
//!
//! [`topology`] builds and tears down the namespaces (also a stale set left by
//! a crashed run). The `cbox-world` binary runs the live demo.
#![allow(clippy::print_stdout)]
#![warn(missing_docs)]

pub mod apps;
pub mod baseline;
pub mod box_crowd;
pub mod crowd;
pub mod daemons;
pub mod fleet;
pub mod live;
mod live_view;
pub mod modem_emu;
pub mod pan;
pub mod procs;
pub mod radio;
pub mod radio_vm;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod second_box;
pub mod stranger;
mod timeline;
pub mod topology;
pub mod wifi_world;
pub mod wpa_emu;
