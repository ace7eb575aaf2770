//! Limits and timers of a session, with their defaults and validation.

use std::time::Duration;

use wire::{DATA_OVERHEAD, HEADER_LEN, SYNC_ENTRY_LEN};

/// Limits and timers shared by both roles. Every field has a default (see
/// [`SessionConfig::default`]); [`SessionConfig::validate`] names the first
/// field that is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Per-stream receive window granted to the peer, in bytes. Also bounds
    /// the peer's replay buffer for the stream. Default 256 KiB.
    pub window: u32,
    /// Most streams (and datagram flows) open at once in one session; an
    /// OPEN beyond it is answered with RESET `TooManyStreams`. Default 256.
    pub max_streams: u32,
    /// Most bytes held in all replay buffers of one session (data written by
    /// the application and not yet acknowledged). Default 16 MiB.
    pub max_buffered_bytes: usize,
    /// Largest frame accepted or sent (type byte + body). Default 64 KiB.
    pub max_frame_len: usize,
    /// Largest DATA payload sent. Default 16 KiB.
    pub max_data_payload: usize,
    /// Datagrams queued for the tunnel (none carries data, or the one that
    /// does has no room: a phone sending faster than the uplink); the
    /// oldest is dropped beyond it, or beyond 256 KiB of payload, and
    /// counted. Default 256.
    pub max_queued_datagrams: usize,
    /// Interval between PINGs on the active tunnel. Default 1 s.
    pub keepalive: Duration,
    /// A tunnel on which nothing arrives for this long is dead. Default 4 s.
    pub inactivity_timeout: Duration,
    /// Z: the longest any handover step waits; a server also keeps a
    /// tunnel-less session this long before releasing it. Default 30 s.
    pub switch_timeout: Duration,
    /// Box: a busy active tunnel silent for `max(3 × RTT, this)` (and
    /// unanswered fast probes) is dead without waiting for the inactivity
    /// timeout (see `liveness`). Default 150 ms: shorter, a busy path whose
    /// round trip jumps by more than the floor (a Wi-Fi retry burst, a
    /// queue filling) would be taken for a dead one.
    pub dead_path_floor: Duration,
    /// Box: PING interval of a warm standby tunnel (the server releases one
    /// silent for three intervals). Default 25 s.
    pub standby_keepalive: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            window: 256 * 1024,
            max_streams: 256,
            max_buffered_bytes: 16 * 1024 * 1024,
            max_frame_len: wire::DEFAULT_MAX_FRAME_LEN,
            max_data_payload: 16 * 1024,
            max_queued_datagrams: 256,
            keepalive: Duration::from_secs(1),
            inactivity_timeout: Duration::from_secs(4),
            switch_timeout: Duration::from_secs(30),
            dead_path_floor: Duration::from_millis(150),
            standby_keepalive: Duration::from_secs(25),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError {
        field,
        problem: problem.into(),
    })
}

impl SessionConfig {
    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window < 1024 {
            return bad("window", "must be at least 1024 bytes");
        }
        if self.max_streams == 0 || self.max_streams > 65_535 {
            return bad("max_streams", "must be between 1 and 65535");
        }
        if self.max_buffered_bytes < self.window as usize {
            return bad("max_buffered_bytes", "must be at least one window");
        }
        // A stream list goes out in frames of SYNC_ENTRIES_PER_FRAME entries
        // (SYNC_PART), whatever max_streams is: one of them must fit.
        let sync_len = 64 + HEADER_LEN + wire::SYNC_ENTRIES_PER_FRAME * SYNC_ENTRY_LEN;
        if self.max_frame_len < sync_len || self.max_frame_len > 16 * 1024 * 1024 {
            return bad(
                "max_frame_len",
                format!("must be between {sync_len} (a part of a stream list) and 16 MiB"),
            );
        }
        if self.max_data_payload == 0
            || self.max_data_payload + DATA_OVERHEAD > self.max_frame_len + 4
        {
            return bad(
                "max_data_payload",
                "must be non-zero and fit in max_frame_len",
            );
        }
        if self.keepalive.is_zero() {
            return bad("keepalive", "must be non-zero");
        }
        if self.inactivity_timeout <= self.keepalive {
            return bad("inactivity_timeout", "must be longer than keepalive");
        }
        if self.switch_timeout.is_zero() {
            return bad("switch_timeout", "must be non-zero");
        }
        if self.dead_path_floor < Duration::from_millis(20)
            || self.dead_path_floor > self.inactivity_timeout
        {
            return bad(
                "dead_path_floor",
                "must be at least 20 ms and at most the inactivity timeout",
            );
        }
        if self.standby_keepalive < Duration::from_secs(1)
            || self.standby_keepalive > Duration::from_secs(3600)
        {
            return bad("standby_keepalive", "must be between 1 s and an hour");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        SessionConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        // Any stream limit works with the default frame size (SYNC_PART).
        let cfg = SessionConfig {
            max_streams: 65_535,
            ..Default::default()
        };
        cfg.validate().unwrap();
        let cfg = SessionConfig {
            max_frame_len: 16 * 1024,
            ..Default::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "max_frame_len");
        let cfg = SessionConfig {
            inactivity_timeout: Duration::from_millis(10),
            ..Default::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "inactivity_timeout");
        let cfg = SessionConfig {
            window: 10,
            ..Default::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "window: must be at least 1024 bytes"
        );
    }
}
