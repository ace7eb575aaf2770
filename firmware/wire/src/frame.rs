//! The frames of the tunnel protocol and the codes they carry.
//!
//! Names follow the reference handover sequence; `docs/protocol.md` gives each
//! frame's byte layout and the state in which it may appear.

use std::net::SocketAddr;

use crate::ids::{BoxId, ServiceName, StreamId};

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Box → server, first frame of a fresh session.
    Connect {
        /// Protocol version the box speaks.
        version: u16,
        /// Per-stream receive window the box grants (bytes).
        window: u32,
        /// Keepalive interval the box will use (milliseconds).
        keepalive_ms: u32,
        /// Grows with every connection attempt of the box, across restarts;
        /// a CONNECT no newer than the live session's is stale.
        incarnation: u64,
        /// The box's id; must equal the tunnel's authenticated identity.
        box_id: BoxId,
    },
    /// Server → box: the session exists.
    ConnectAck {
        /// Protocol version the server speaks.
        version: u16,
        /// Id of the new session, quoted by SWITCH_STEP2 / SWITCH_UNEXPECTED.
        session_id: u64,
        /// Per-stream receive window the server grants (bytes).
        window: u32,
        /// The server's keepalive interval (milliseconds).
        keepalive_ms: u32,
    },
    /// Server → box: a CONNECT, SWITCH_STEP2 or SWITCH_UNEXPECTED was refused.
    Refused {
        /// Machine-readable reason.
        code: RefuseCode,
        /// Human-readable detail (at most 255 bytes).
        reason: String,
        /// How long the box should wait before its next attempt at this
        /// relay, in milliseconds (0: no advice; the box's own back-off).
        /// On the wire only when not 0.
        retry_after_ms: u32,
    },
    /// Either side: the session ends cleanly.
    Disconnect {
        /// Machine-readable reason.
        code: DisconnectCode,
        /// Human-readable detail.
        reason: String,
    },
    /// Keepalive probe; answered by PONG with the same nonce.
    Ping {
        /// Opaque value echoed by PONG.
        nonce: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The nonce of the PING answered.
        nonce: u64,
    },
    /// Opens a stream or a datagram flow.
    Open {
        /// Id chosen by the opener (parity says who opened it).
        stream: StreamId,
        /// Byte stream or datagram flow.
        kind: StreamKind,
        /// The service the peer should connect the stream to.
        service: ServiceName,
        /// Original destination (transparent mode), if any.
        dest: Option<SocketAddr>,
        /// How the stream's bytes are compressed (both ends must agree;
        /// absent on the wire for [`Codec::None`]).
        codec: Codec,
    },
    /// Stream bytes at an absolute offset of the sender's direction.
    Data {
        /// The stream.
        stream: StreamId,
        /// Offset of the first payload byte in the stream direction.
        offset: u64,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// The receiver has written every byte below `offset` to its local socket.
    Ack {
        /// The stream.
        stream: StreamId,
        /// Delivered offset (cumulative).
        offset: u64,
        /// The FIN at `offset` was delivered too.
        fin: bool,
    },
    /// The receiver lets the sender send bytes below `limit`.
    Window {
        /// The stream.
        stream: StreamId,
        /// Absolute credit limit.
        limit: u64,
    },
    /// The sender's direction ends at `offset` (its final size).
    Fin {
        /// The stream.
        stream: StreamId,
        /// Final size of the direction.
        offset: u64,
    },
    /// The stream is aborted in both directions.
    Reset {
        /// The stream.
        stream: StreamId,
        /// Machine-readable reason.
        code: ResetCode,
        /// Human-readable detail.
        reason: String,
    },
    /// One datagram of a flow opened with [`StreamKind::Datagram`].
    Datagram {
        /// The flow.
        flow: StreamId,
        /// The datagram.
        payload: Vec<u8>,
    },
    /// Box → server on the old tunnel: a planned switch begins.
    SwitchStep1 {
        /// Sequence number of this switch within the session.
        switch: u32,
    },
    /// Server → box on the old tunnel: SWITCH_STEP1 accepted (the seed's ACK).
    SwitchAck {
        /// The switch acknowledged.
        switch: u32,
    },
    /// Either side on the old tunnel: no stream data follows on this tunnel.
    LastMessageBeforeRedirection {
        /// The switch.
        switch: u32,
    },
    /// Server → box on the old tunnel: the box's drain marker arrived.
    OkToRedirection {
        /// The switch.
        switch: u32,
    },
    /// Box → server on the old tunnel: the box is done with the old tunnel.
    ClientServicesReadyForRedirection {
        /// The switch.
        switch: u32,
    },
    /// Server → box on the old tunnel: the server is done with it too.
    ServerServicesReadyForRedirection {
        /// The switch.
        switch: u32,
    },
    /// Box → server, first frame on the new tunnel of a planned switch.
    SwitchStep2 {
        /// Protocol version.
        version: u16,
        /// The session to move.
        session_id: u64,
        /// The switch (as in SWITCH_STEP1).
        switch: u32,
        /// The box's id; must own the session and match the tunnel identity.
        box_id: BoxId,
    },
    /// Server → box on the new tunnel: the session now lives here.
    AllRedirected {
        /// The switch completed.
        switch: u32,
        /// What the server has received of each stream.
        sync: SyncState,
    },
    /// Box → server, first frame on a new tunnel after a sudden loss.
    SwitchUnexpected {
        /// Protocol version.
        version: u16,
        /// The session to resume.
        session_id: u64,
        /// Switch sequence number (the server answers ALL_REDIRECTED with it).
        switch: u32,
        /// The box's id; must own the session and match the tunnel identity.
        box_id: BoxId,
        /// What the box has received of each stream.
        sync: SyncState,
    },
    /// Box → server, first frame of a warm standby tunnel: bound to the
    /// session, it carries no stream data, only PINGs every `keepalive_ms`,
    /// until the box moves the session onto it (SWITCH_UNEXPECTED or
    /// SWITCH_STEP2) — without a TCP or TLS handshake in the stall.
    Standby {
        /// Protocol version.
        version: u16,
        /// The session it stands by for.
        session_id: u64,
        /// The box's id; must own the session and match the tunnel identity.
        box_id: BoxId,
        /// How often the box PINGs it (the server releases it after three
        /// intervals of silence).
        keepalive_ms: u32,
    },
    /// Either way, just before a SWITCH_UNEXPECTED or ALL_REDIRECTED on the
    /// same tunnel: more entries of its stream list, when the list is longer
    /// than one frame carries ([`crate::SYNC_ENTRIES_PER_FRAME`]). The
    /// receiver adds them to the list of the frame that follows.
    SyncPart {
        /// Entries, as in [`SyncState::streams`].
        streams: Vec<StreamSync>,
    },
    /// Either way, on the active tunnel of an established session: the
    /// sender's view of the path, for the QoS notices of services with
    /// `qos_notify` (a box sends it only when it has such services; a
    /// server only to a box that sent one).
    PathReport(PathReport),
}

/// A PATH_REPORT's figures: what the sender measures of the path it sends
/// on, and the last handover of the session as it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathReport {
    /// Handovers the session has completed (the sender's count).
    pub switches: u32,
    /// How the last of them went.
    pub handover: HandoverKind,
    /// How long the applications waited in it (milliseconds, the box's
    /// measure; 0 from the server).
    pub stall_ms: u32,
    /// The uplink the session runs over (the box's name for it; empty
    /// from the server).
    pub uplink: String,
    /// Its kind.
    pub kind: UplinkKind,
    /// The tunnel's smoothed round trip (milliseconds).
    pub rtt_ms: u32,
    /// Loss on the path (per mille of the box's probes; 0 from the server).
    pub loss_permille: u16,
    /// The sender's estimate of the rate it can send at (kbit/s; 0 when
    /// it does not know yet).
    pub send_kbps: u32,
    /// The estimate was taken while the sender had less to send than the
    /// path takes: the path may carry more.
    pub app_limited: bool,
}

/// What one side has received, sent on a new tunnel so the other side can
/// resend exactly what is missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// How many streams opened by the *receiver of this frame* the sender has
    /// seen an OPEN for (streams with a higher index must be re-opened).
    pub peer_opened_seen: u32,
    /// One entry per stream the sender still knows.
    pub streams: Vec<StreamSync>,
}

/// One stream's receive position in a [`SyncState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSync {
    /// The stream.
    pub stream: StreamId,
    /// Next byte offset expected from the peer.
    pub received: u64,
    /// The peer's FIN has been received.
    pub fin_received: bool,
}

/// Byte stream or datagram flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Reliable, ordered bytes (TCP services).
    Stream,
    /// Unreliable datagrams (UDP services); never replayed.
    Datagram,
}

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $val:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
            /// A code this version does not know (kept for forward compatibility).
            Other(u8),
        }
        impl $name {
            /// The code's byte on the wire.
            pub fn to_u8(self) -> u8 {
                match self { $($name::$variant => $val,)* $name::Other(v) => v }
            }
            /// Parses a code byte; unknown values become `Other`.
            pub fn from_u8(v: u8) -> Self {
                match v { $($val => $name::$variant,)* v => $name::Other(v) }
            }
        }
    };
}

code_enum! {
    /// Why a CONNECT / SWITCH_STEP2 / SWITCH_UNEXPECTED was refused.
    RefuseCode {
        /// The version is not spoken by the server.
        UnsupportedVersion = 1,
        /// The server has reached its maximum number of boxes.
        OverCapacity = 2,
        /// The box id in the frame differs from the tunnel's identity.
        WrongIdentity = 3,
        /// No such session (expired or never existed).
        UnknownSession = 4,
        /// The session belongs to another box.
        NotOwner = 5,
        /// The first frame on a tunnel was not CONNECT/SWITCH_STEP2/SWITCH_UNEXPECTED.
        UnexpectedFrame = 6,
                /// The switch sequence number does not match the one in progress.
        BadSwitch = 7,
        /// A CONNECT older than the box's live session (a late, abandoned attempt).
        Stale = 8,
        /// The relay takes new sessions more slowly than they arrive (a
        /// fleet reconnecting at once): come back after the frame's wait.
        Busy = 9,
        /// The relay is drained for maintenance and takes no new sessions:
        /// another relay of the fleet, or this one after the frame's wait.
        Draining = 10,
    }
}

code_enum! {
    /// Why a session ended.
    DisconnectCode {
        /// Asked for by the user or operator.
        Requested = 1,
        /// The daemon is shutting down.
        Shutdown = 2,
        /// The peer broke the protocol.
        ProtocolViolation = 3,
        /// Nothing was heard for the inactivity timeout.
        Inactivity = 4,
        /// A handover did not finish within the switch timeout.
        SwitchTimeout = 5,
        /// A newer session of the same box replaced this one.
        Replaced = 6,
    }
}

code_enum! {
    /// How a stream's bytes are compressed between box and relay.
    Codec {
        /// Not compressed.
        None = 0,
        /// zstd records.
        Zstd = 1,
        /// lz4 records.
        Lz4 = 2,
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::None => f.write_str("none"),
            Codec::Zstd => f.write_str("zstd"),
            Codec::Lz4 => f.write_str("lz4"),
            Codec::Other(n) => write!(f, "codec {n}"),
        }
    }
}

code_enum! {
    /// Why a stream was reset.
    ResetCode {
        /// The local application closed or failed.
        ApplicationError = 1,
        /// The peer does not know the service, or could not connect to it.
        ConnectFailed = 2,
        /// Too many streams in this session.
        TooManyStreams = 3,
        /// The destination is not allowed by the box's policy.
        PolicyDenied = 4,
        /// The session ended (timeout, disconnect) with the stream open.
        SessionEnded = 5,
        /// The peer broke the stream protocol (offset, window).
        ProtocolViolation = 6,
        /// After a resynchronisation: the sender no longer knows this stream.
        Gone = 7,
        /// The two ends are configured to compress the service differently.
        CodecMismatch = 8,
    }
}

/// The type byte of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the frames'
pub enum FrameType {
    Connect = 0x01,
    ConnectAck = 0x02,
    Refused = 0x03,
    Disconnect = 0x04,
    Ping = 0x05,
    Pong = 0x06,
    Open = 0x10,
    Data = 0x11,
    Ack = 0x12,
    Window = 0x13,
    Fin = 0x14,
    Reset = 0x15,
    Datagram = 0x16,
    SwitchStep1 = 0x20,
    SwitchAck = 0x21,
    LastMessageBeforeRedirection = 0x22,
    OkToRedirection = 0x23,
    ClientServicesReadyForRedirection = 0x24,
    ServerServicesReadyForRedirection = 0x25,
    SwitchStep2 = 0x26,
    AllRedirected = 0x27,
    SwitchUnexpected = 0x28,
    Standby = 0x29,
    SyncPart = 0x2a,
    PathReport = 0x30,
}

impl FrameType {
    /// Every frame type, in type-byte order.
    pub const ALL: [FrameType; 25] = [
        FrameType::Connect,
        FrameType::ConnectAck,
        FrameType::Refused,
        FrameType::Disconnect,
        FrameType::Ping,
        FrameType::Pong,
        FrameType::Open,
        FrameType::Data,
        FrameType::Ack,
        FrameType::Window,
        FrameType::Fin,
        FrameType::Reset,
        FrameType::Datagram,
        FrameType::SwitchStep1,
        FrameType::SwitchAck,
        FrameType::LastMessageBeforeRedirection,
        FrameType::OkToRedirection,
        FrameType::ClientServicesReadyForRedirection,
        FrameType::ServerServicesReadyForRedirection,
        FrameType::SwitchStep2,
        FrameType::AllRedirected,
        FrameType::SwitchUnexpected,
        FrameType::Standby,
        FrameType::SyncPart,
        FrameType::PathReport,
    ];

    /// Parses a type byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| *t as u8 == v)
    }

    /// The protocol name (as in the reference and `docs/protocol.md`).
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Connect => "CONNECT",
            FrameType::ConnectAck => "CONNECT_ACK",
            FrameType::Refused => "REFUSED",
            FrameType::Disconnect => "DISCONNECT",
            FrameType::Ping => "PING",
            FrameType::Pong => "PONG",
            FrameType::Open => "OPEN",
            FrameType::Data => "DATA",
            FrameType::Ack => "ACK",
            FrameType::Window => "WINDOW",
            FrameType::Fin => "FIN",
            FrameType::Reset => "RESET",
            FrameType::Datagram => "DATAGRAM",
            FrameType::SwitchStep1 => "SWITCH_STEP1",
            FrameType::SwitchAck => "SWITCH_ACK",
            FrameType::LastMessageBeforeRedirection => "LAST_MESSAGE_BEFORE_REDIRECTION",
            FrameType::OkToRedirection => "OK_TO_REDIRECTION",
            FrameType::ClientServicesReadyForRedirection => "CLIENT_SERVICES_READY_FOR_REDIRECTION",
            FrameType::ServerServicesReadyForRedirection => "SERVER_SERVICES_READY_FOR_REDIRECTION",
            FrameType::SwitchStep2 => "SWITCH_STEP2",
            FrameType::AllRedirected => "ALL_REDIRECTED",
            FrameType::SwitchUnexpected => "SWITCH_UNEXPECTED",
            FrameType::Standby => "STANDBY",
            FrameType::SyncPart => "SYNC_PART",
            FrameType::PathReport => "PATH_REPORT",
        }
    }
}

impl Frame {
    /// This frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Connect { .. } => FrameType::Connect,
            Frame::ConnectAck { .. } => FrameType::ConnectAck,
            Frame::Refused { .. } => FrameType::Refused,
            Frame::Disconnect { .. } => FrameType::Disconnect,
            Frame::Ping { .. } => FrameType::Ping,
            Frame::Pong { .. } => FrameType::Pong,
            Frame::Open { .. } => FrameType::Open,
            Frame::Data { .. } => FrameType::Data,
            Frame::Ack { .. } => FrameType::Ack,
            Frame::Window { .. } => FrameType::Window,
            Frame::Fin { .. } => FrameType::Fin,
            Frame::Reset { .. } => FrameType::Reset,
            Frame::Datagram { .. } => FrameType::Datagram,
            Frame::SwitchStep1 { .. } => FrameType::SwitchStep1,
            Frame::SwitchAck { .. } => FrameType::SwitchAck,
            Frame::LastMessageBeforeRedirection { .. } => FrameType::LastMessageBeforeRedirection,
            Frame::OkToRedirection { .. } => FrameType::OkToRedirection,
            Frame::ClientServicesReadyForRedirection { .. } => {
                FrameType::ClientServicesReadyForRedirection
            }
            Frame::ServerServicesReadyForRedirection { .. } => {
                FrameType::ServerServicesReadyForRedirection
            }
            Frame::SwitchStep2 { .. } => FrameType::SwitchStep2,
            Frame::AllRedirected { .. } => FrameType::AllRedirected,
            Frame::SwitchUnexpected { .. } => FrameType::SwitchUnexpected,
            Frame::Standby { .. } => FrameType::Standby,
            Frame::SyncPart { .. } => FrameType::SyncPart,
            Frame::PathReport(_) => FrameType::PathReport,
        }
    }
}

code_enum! {
    /// How a session's last handover went (in a PATH_REPORT).
    #[derive(Default)]
    HandoverKind {
        /// None yet.
        #[default]
        None = 0,
        /// Planned (SWITCH_STEP1 … ALL_REDIRECTED).
        Planned = 1,
        /// Sudden (SWITCH_UNEXPECTED).
        Sudden = 2,
    }
}

code_enum! {
    /// What an uplink is (in a PATH_REPORT).
    #[derive(Default)]
    UplinkKind {
        /// Not known (or not said: the server's reports).
        #[default]
        Unknown = 0,
        /// Wi-Fi.
        Wifi = 1,
        /// LTE (cellular).
        Lte = 2,
        /// Wired Ethernet.
        Wired = 3,
    }
}

impl UplinkKind {
    /// Its name in notices and logs.
    pub fn name(self) -> &'static str {
        match self {
            UplinkKind::Wifi => "wifi",
            UplinkKind::Lte => "lte",
            UplinkKind::Wired => "wired",
            UplinkKind::Unknown | UplinkKind::Other(_) => "unknown",
        }
    }
}
