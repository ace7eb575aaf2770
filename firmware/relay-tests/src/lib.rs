//! Harness for running the real daemons on loopback: a PKI made with the real
//! `cboxctl`, free ports, daemons started from config files (killed by pid
//! when the bed is dropped, also on panic), application servers, and a TCP
//! cutter between cnaptd and snaptd that resets or silently blackholes
//! tunnels, and what a daemon costs (`/proc`). Used by `tests/` and by the
//! examples (`bench`, `datapath`, `abuse`, `reconnect_storm`); a relay
//! fleet behind HAProxy ([`router`]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]
#![warn(missing_docs)]

pub mod apps;
pub mod bed;
pub mod crowd;
pub mod cutter;
pub mod procinfo;
pub mod raw;
pub mod router;
