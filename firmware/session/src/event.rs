//! What a session tells its driver: events, timers, and the ids it uses.

use std::net::SocketAddr;
use std::time::Instant;

use wire::{DisconnectCode, RefuseCode, ResetCode, ServiceName, StreamId, StreamKind};

/// A tunnel (one TLS connection) as named by the driver. The driver picks the
/// numbers; the session only compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u64);

/// Planned (make-before-break) or sudden (after a loss) handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchKind {
    /// SWITCH_STEP1 … ALL_REDIRECTED with drain markers.
    Planned,
    /// SWITCH_UNEXPECTED with offset resynchronisation.
    Sudden,
}

/// Why the session wants a tunnel closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A planned switch has drained this (old) tunnel.
    Drained,
    /// Another tunnel replaced this one after a sudden switch.
    Replaced,
    /// Nothing arrived for the inactivity timeout.
    Inactive,
    /// Busy and silent past the dead-path bound, fast probes unanswered,
    /// the transport without progress (a silent blackhole).
    DeadPath,
    /// A warm standby tunnel's PING went unanswered.
    StandbyLost,
    /// The peer sent bytes that are not a valid frame or a frame that is not
    /// allowed in the current state.
    ProtocolViolation(crate::Violation),
    /// The tunnel's first frame was refused (REFUSED was queued on it).
    Refused(RefuseCode),
    /// The session ended.
    SessionEnded,
}

/// Something the driver must act on, from [`poll_event`](crate::BoxSession::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Box: the server accepted CONNECT.
    Connected {
        /// The session's id.
        session_id: u64,
    },
    /// Box: the server refused the session or a resumption.
    Refused {
        /// Machine-readable reason.
        code: RefuseCode,
        /// The server's explanation.
        reason: String,
        /// The server's advice: no new attempt at it before this (0: none).
        retry_after_ms: u32,
    },
    /// The peer opened a stream or datagram flow: connect it locally.
    StreamOpened {
        /// The stream.
        stream: StreamId,
        /// Stream or datagram flow.
        kind: StreamKind,
        /// Which service the peer asked for.
        service: ServiceName,
        /// Original destination (transparent mode).
        dest: Option<SocketAddr>,
        /// How the opener compresses the stream's bytes.
        codec: wire::Codec,
    },
    /// Bytes to write to the stream's local socket; report them with
    /// `handle_delivered` once written.
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes, in order, exactly once.
        bytes: Vec<u8>,
    },
    /// The peer finished its direction: shut down the local socket's write
    /// side once every byte of earlier `Data` events is written.
    Finished {
        /// The stream.
        stream: StreamId,
    },
    /// The stream was aborted; drop its local socket.
    StreamReset {
        /// The stream.
        stream: StreamId,
        /// Machine-readable reason.
        code: ResetCode,
        /// Explanation.
        reason: String,
    },
    /// The stream's send buffer has room again.
    Writable {
        /// The stream.
        stream: StreamId,
    },
    /// Both directions are done and acknowledged; the stream is forgotten.
    StreamClosed {
        /// The stream.
        stream: StreamId,
    },
    /// A datagram for a flow's local socket.
    Datagram {
        /// The flow.
        flow: StreamId,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// The peer's view of the path (PATH_REPORT), for QoS notices.
    PathReport(wire::PathReport),
    /// A handover began.
    SwitchStarted {
        /// Its sequence number in the session.
        switch: u32,
        /// Planned or sudden.
        kind: SwitchKind,
        /// The tunnel the session moves to (the server learns it later).
        to: Option<TunnelId>,
        /// Box: since when the applications wait — the lost path's last
        /// sign of life for a switch after a loss, now otherwise.
        since: Instant,
    },
    /// A handover finished: data flows on `to`.
    SwitchCompleted {
        /// Its sequence number.
        switch: u32,
        /// Planned or sudden (a planned switch whose old tunnel failed ends sudden).
        kind: SwitchKind,
        /// The tunnel now carrying the session.
        to: TunnelId,
    },
    /// Box: the session has no working tunnel; bring one up over the best
    /// uplink and hand it over with `switch_to`.
    NeedTunnel,
    /// Flush what `poll_transmit` produced for this tunnel, then close it.
    CloseTunnel {
        /// The tunnel.
        tunnel: TunnelId,
        /// Why.
        reason: CloseReason,
    },
    /// The session is over; all its streams were reset or closed.
    SessionClosed {
        /// Machine-readable reason.
        code: DisconnectCode,
        /// Explanation.
        reason: String,
    },
}

/// Why the session asked to be woken ([`poll_timeout`](crate::BoxSession::poll_timeout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Time to send a PING.
    Keepalive,
    /// A tunnel may have been silent for the inactivity timeout.
    Inactivity,
    /// A handover step, or a server's wait for the box to come back, may
    /// have exceeded the switch timeout Z.
    SwitchTimeout,
    /// The active path fell silent while busy: a fast probe or the
    /// dead-path verdict is due.
    PathProbe,
    /// The warm standby tunnel's PING is due, or its answer overdue.
    Standby,
}

/// Bytes for one tunnel, from `poll_transmit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to write them.
    pub tunnel: TunnelId,
    /// One or more whole frames.
    pub bytes: Vec<u8>,
}
