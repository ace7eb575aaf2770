//! QoS notifications: after a handover (and whenever the path changes
//! materially) the applications of services with `qos_notify = true` are
//! told what the path now is — uplink, round trip, loss, the rate each
//! direction carries, the handover that just happened — so that a sender
//! can adapt (the reference's "information to update their QoS").
//!
//! [`notice`] is the pure part: the notice, when one is due, the rate
//! estimate. [`hub`] carries a daemon's notices to its channels: the
//! relay's subscription [`feed`] for servers, the box's [`announce`]ment by
//! multicast on the PAN (the box's status page serves them as
//! server-sent events, in the `web` crate). The figures between box and
//! relay travel in the tunnel's PATH_REPORT frame (`docs/protocol.md`).
#![warn(missing_docs)]

pub mod announce;
pub mod feed;
pub mod hub;
pub mod notice;

#[cfg(test)]
mod feed_tests;

pub use hub::{Filter, Hub, Subscription};
pub use notice::{
    Cause, Figures, HandoverView, NOTICE_VERSION, Notice, Pacer, Rate, RateEstimator, UplinkView,
};

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
