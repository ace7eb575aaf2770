//! Frame codec of the cbox tunnel protocol.
//!
//! Every message exchanged between a box (CNAPT, `cnaptd`) and a server-side
//! relay (SNAPT, `snaptd`) over the authenticated tunnel is one [`Frame`]:
//!
//! ```text
//!  0               4       5
//!  +---------------+-------+---------------------------+
//!  | length (u32)  | type  | body (length - 1 bytes)   |
//!  +---------------+-------+---------------------------+
//! ```
//!
//! All integers are big-endian. `length` counts the type byte and the body, and
//! never exceeds the decoder's limit ([`DEFAULT_MAX_FRAME_LEN`] unless the
//! caller chooses another), so decoding arbitrary bytes allocates at most that
//! much. `docs/protocol.md` is the normative description; its test vectors are
//! checked against this crate.
//!
//! What this crate does **not** do: it has no notion of sessions, streams'
//! state, timers or sockets — see the `session` crate for that.
//!
//! Layout: [`frame`] (the frame types and codes), [`codec`] (encode/decode),
//! [`ids`] (validated identifiers: box id, service name, stream id).
#![warn(missing_docs)]

pub mod codec;
pub mod frame;
pub mod ids;

pub use codec::{DecodeError, InvalidFrame, decode, encode, encode_data};
pub use frame::{
    Codec, DisconnectCode, Frame, FrameType, HandoverKind, PathReport, RefuseCode, ResetCode,
    StreamKind, StreamSync, SyncState, UplinkKind,
};
pub use ids::{BoxId, InvalidId, Role, ServiceName, StreamId};

/// Protocol version spoken by this implementation (carried in CONNECT,
/// SWITCH_STEP2 and SWITCH_UNEXPECTED).
pub const VERSION: u16 = 1;

/// Bytes before the body: the 4-byte length and the 1-byte type.
pub const HEADER_LEN: usize = 5;

/// Default limit of the `length` field (type byte + body): 64 KiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024;

/// Bytes a DATA frame needs besides its payload (header + stream + offset).
pub const DATA_OVERHEAD: usize = HEADER_LEN + 4 + 8;

/// Bytes one stream entry takes in a SWITCH_UNEXPECTED / ALL_REDIRECTED frame.
pub const SYNC_ENTRY_LEN: usize = 4 + 8 + 1;

/// Most stream entries one frame carries: a longer list goes out as
/// SYNC_PART frames of this many entries, the rest in the SWITCH_UNEXPECTED
/// or ALL_REDIRECTED itself (4,096 entries: 53 KiB, under the default
/// frame limit).
pub const SYNC_ENTRIES_PER_FRAME: usize = 4096;
