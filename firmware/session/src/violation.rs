//! How a peer can break the protocol. Each is a reason to close the tunnel
//! it arrived on (never the session by itself, never a panic); the driver
//! logs it, and tests match on the variant.

use wire::{FrameType, InvalidFrame, StreamId};

use crate::stream::StreamViolation;

/// A protocol violation by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Bytes that do not decode as a frame.
    #[error("invalid frame: {0}")]
    InvalidFrame(#[from] InvalidFrame),
    /// A valid frame the receiver's state does not allow.
    #[error("{} not allowed {when}", frame.name())]
    OutOfState {
        /// The frame's type.
        frame: FrameType,
        /// The state, in words ("while connecting", "on a drained tunnel").
        when: &'static str,
    },
    /// A stream frame for a stream id not opened yet.
    #[error("{} for stream {stream}, which was never opened", frame.name())]
    NeverOpened {
        /// The frame's type.
        frame: FrameType,
        /// The stream.
        stream: StreamId,
    },
    /// A byte-stream frame on a datagram flow, or DATAGRAM on a stream.
    #[error("{} on stream {stream}, which is of the other kind", frame.name())]
    WrongKind {
        /// The frame's type.
        frame: FrameType,
        /// The stream.
        stream: StreamId,
    },
    /// OPEN of a stream id that belongs to the receiving side.
    #[error("OPEN of stream {0}, whose id belongs to this side")]
    OpenOfOwnId(StreamId),
    /// A second OPEN of an open stream.
    #[error("second OPEN of stream {0}")]
    SecondOpen(StreamId),
    /// A stream's offsets, acknowledgements or FIN contradict each other.
    #[error("stream {stream}: {violation}")]
    Stream {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        violation: StreamViolation,
    },
    /// SYNC_PART frames of one tunnel list more than 65,535 streams.
    #[error("SYNC_PART frames list more than {0} streams")]
    TooManySyncEntries(usize),
    /// A resynchronisation lists a stream twice.
    #[error("stream {0} listed twice in a resynchronisation")]
    ListedTwice(StreamId),
    /// A resynchronisation leaves out a stream that already exchanged data.
    #[error("stream {0} exchanged data but its OPEN is unknown")]
    LostOpenWithData(StreamId),
    /// CONNECT_ACK of another protocol version.
    #[error("CONNECT_ACK with version {0}")]
    Version(u16),
    /// SWITCH_UNEXPECTED naming another session, box or version.
    #[error("SWITCH_UNEXPECTED for another session")]
    OtherSession,
    /// A switch number not newer than the last one carried out.
    #[error("switch {got} is older than switch {last} already carried out")]
    StaleSwitch {
        /// The number received.
        got: u32,
        /// The last one carried out.
        last: u32,
    },
}

impl Violation {
    /// A frame not allowed in the state `when`.
    pub(crate) fn out_of_state(frame: &wire::Frame, when: &'static str) -> Self {
        Self::OutOfState {
            frame: frame.frame_type(),
            when,
        }
    }
}
