//! Sans-IO session and handover state machine of cbox, for both roles: the box
//! (CNAPT, [`BoxSession`]) and the server-side relay (SNAPT, [`Server`]).
//!
//! It guarantees that every stream's bytes cross any change of tunnel —
//! planned (make-before-break, with drain markers) or sudden (after a loss,
//! with offset resynchronisation) — exactly once and in order, and that a
//! session can only be moved by the box it belongs to. It performs no I/O,
//! reads no clock and draws no random numbers: time comes in as `now`,
//! randomness as a seed, bytes as slices. `docs/protocol.md` is the normative
//! description.
//!
//! # The calling contract (quinn-proto style)
//!
//! 1. The driver owns the sockets and the clock. It names each TLS
//!    connection with a [`TunnelId`] of its choosing.
//! 2. Inputs: `handle_input(tunnel, bytes, now)` for bytes read from a tunnel;
//!    `handle_tunnel_lost(tunnel, now)` when a tunnel fails or is closed
//!    (always, also after the session asked for the close);
//!    `handle_timeout(now)` once the deadline from `poll_timeout` has passed;
//!    on the server `handle_tunnel_up(tunnel, identity, now)` after the TLS
//!    handshake authenticated the box.
//! 3. Commands: `switch_to(tunnel, now)` (box: first tunnel, planned or sudden
//!    switch), `close(reason)`, and the stream operations of [`Streams`]
//!    (`open`, `send`, `finish`, `reset`, `delivered`, `send_datagram`).
//!    `delivered` must be called once `Data` bytes are written to the local
//!    socket: only then may the peer forget them.
//! 4. Outputs, drained in this order after every input or command:
//!    `poll_transmit()` until `None` (write the bytes to the named tunnel,
//!    dropping them if it is gone); `poll_event()` until `None`;
//!    `poll_timeout()` for the next wake-up, with the [`Timer`] saying why.
//! 5. `Event::CloseTunnel` means: flush what was already transmitted, then
//!    close. `Event::NeedTunnel` (box) means: connect a new tunnel over the
//!    best uplink and pass it to `switch_to`.
//!
//! # What it does not do
//!
//! TLS, sockets, uplink choice (the `uplink` decision task decides; this
//! crate only carries out a switch), service tables and policy.
//!
//! # Layout
//!
//! `config` (limits, timers), `event` (what the driver is told), `stream`
//! (one stream's halves and replay buffer), `core` (stream multiplexing,
//! resynchronisation, scheduling — shared by both roles), `box_session`,
//! `server_session` and `server` (the roles' handover phases), `multisite`
//! (switching several SNAPTs together), `keepalive` (RTT and loss).
#![warn(missing_docs)]

mod box_session;
mod config;
mod core;
mod event;
pub mod image;
mod keepalive;
mod liveness;
mod multisite;
mod reader;
mod rng;
mod server;
mod server_session;
mod stream;
mod streams;
#[cfg(test)]
mod testkit;
mod violation;

pub use box_session::{BoxSession, BoxState, SwitchError};
pub use config::{ConfigError, SessionConfig};
pub use core::{SessionStats, StreamError};
pub use event::{CloseReason, Event, SwitchKind, Timer, Transmit, TunnelId};
pub use keepalive::PathStats;
pub use liveness::TransportSample;
pub use multisite::{Coordinator, SiteEvent};
pub use server::{Server, ServerConfig, ServerEvent};
pub use server_session::{ServerSession, ServerState};
pub use stream::StreamViolation;
pub use streams::Streams;
pub use violation::Violation;
