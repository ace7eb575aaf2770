//! The byte-moving tasks both relays share, holding no protocol state:
//!
//! * [`io`]: a reader and a writer per tunnel and per local connection; a
//!   local writer resets its connection (RST) when its stream was aborted.
//! * [`locals`]: the local TCP connections of streams (the phone's on the
//!   box, the server's on the SNAPT), read only as fast as the session
//!   takes the bytes.
//! * [`udp`]: datagram sockets, and the flows of the phones' UDP
//!   conversations with their ages (ended like a NAT's mappings).
//! * [`out`]: the driver's end of a tunnel writer, held to a byte budget.
//! * [`gate`]: holds a tunnel's writer while its socket holds what the
//!   path needs (unsent bytes, bytes in flight).
//! * [`connect`]: a TCP connection bound to one uplink, then TLS; a probe.
//!
//! Every protocol decision is the session core's (`session`).
#![warn(missing_docs)]

pub mod connect;
pub mod gate;
pub mod io;
pub mod locals;
pub mod out;
pub mod transport;
pub mod udp;
