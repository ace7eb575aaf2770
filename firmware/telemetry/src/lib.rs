//! The box's MQTT link to the fleet operator (rumqttc, TLS with the
//! workspace's ring provider): the status model's snapshot retained on
//! `<prefix>/<box>/status` (on every material change and periodically),
//! `…/online` retained `online` and the last will `offline`, events on
//! `…/events` (each handover, suggestion, uplink and mode change),
//! commands on `…/cmd` answered on `…/cmd/reply` with their correlation
//! id. rumqttc has neither back-off nor persistence: reconnection waits
//! grow exponentially with jitter (`daemon::backoff`) and events wait in a
//! bounded queue while the broker is away ([`outbox`]).
//!
//! The link reads the box through the same control calls as `cboxctl`
//! (status, switch, mode, approve, decline), so it changes nothing the
//! daemon does and needs nothing from it beyond its control handle.

pub mod command;
pub mod command_gate;
pub mod outbox;
pub mod topics;

mod client;

pub use client::{MqttConfig, run};
