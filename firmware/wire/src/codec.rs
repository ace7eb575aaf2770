//! Encoding and decoding of [`Frame`]s.
//!
//! [`decode`] looks at a byte buffer that may hold a partial frame, several
//! frames, or garbage. It never panics, and it allocates only after the whole
//! frame is present and its length is within the caller's limit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::frame::{
    Codec, DisconnectCode, Frame, FrameType, HandoverKind, PathReport, RefuseCode, ResetCode,
    StreamKind, StreamSync, SyncState, UplinkKind,
};
use crate::ids::{BoxId, ServiceName, StreamId};
use crate::{HEADER_LEN, SYNC_ENTRY_LEN};

/// Why bytes could not be decoded into a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed; `needed` is the total buffer length that would
    /// let decoding proceed (at least the header, then the whole frame).
    #[error("incomplete frame: {needed} bytes needed")]
    Incomplete {
        /// Buffer length at which to try again.
        needed: usize,
    },
    /// The bytes are not a valid frame; the tunnel carrying them must close.
    #[error("invalid frame: {0}")]
    Invalid(#[from] InvalidFrame),
}

/// The ways a complete frame can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFrame {
    /// The length field is zero (no room for the type byte).
    #[error("length field is zero")]
    ZeroLength,
    /// The length field exceeds the receiver's limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The type byte is unknown.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The body ended before a field was complete.
    #[error("{0} body is truncated")]
    Truncated(&'static str),
    /// The body has bytes after its last field.
    #[error("{0} body has {1} trailing bytes")]
    Trailing(&'static str, usize),
    /// A field holds a value outside its domain.
    #[error("{frame}: bad {field}")]
    BadField {
        /// The frame type's name.
        frame: &'static str,
        /// The field's name.
        field: &'static str,
    },
}

/// Appends the encoding of `frame` to `out`.
///
/// Free-text reasons longer than 255 bytes are cut at a character boundary.
/// A SYNC list longer than 65,535 entries is cut too (the session never
/// builds one: its stream limit is far lower).
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, frame.frame_type() as u8]);
    match frame {
        Frame::Connect {
            version,
            window,
            keepalive_ms,
            incarnation,
            box_id,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&window.to_be_bytes());
            out.extend_from_slice(&keepalive_ms.to_be_bytes());
            out.extend_from_slice(&incarnation.to_be_bytes());
            put_str(out, box_id.as_str());
        }
        Frame::ConnectAck {
            version,
            session_id,
            window,
            keepalive_ms,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&session_id.to_be_bytes());
            out.extend_from_slice(&window.to_be_bytes());
            out.extend_from_slice(&keepalive_ms.to_be_bytes());
        }
        Frame::Refused {
            code,
            reason,
            retry_after_ms,
        } => {
            out.push(code.to_u8());
            put_str(out, reason);
            if *retry_after_ms != 0 {
                out.extend_from_slice(&retry_after_ms.to_be_bytes());
            }
        }
        Frame::Disconnect { code, reason } => {
            out.push(code.to_u8());
            put_str(out, reason);
        }
        Frame::Ping { nonce } | Frame::Pong { nonce } => {
            out.extend_from_slice(&nonce.to_be_bytes())
        }
        Frame::Open {
            stream,
            kind,
            service,
            dest,
            codec,
        } => {
            out.extend_from_slice(&stream.0.to_be_bytes());
            out.push(match kind {
                StreamKind::Stream => 0,
                StreamKind::Datagram => 1,
            });
            put_str(out, service.as_str());
            put_addr(out, dest);
            if *codec != Codec::None {
                out.push(codec.to_u8());
            }
        }
        Frame::Data {
            stream,
            offset,
            payload,
        } => {
            out.extend_from_slice(&stream.0.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(payload);
        }
        Frame::Ack {
            stream,
            offset,
            fin,
        } => {
            out.extend_from_slice(&stream.0.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.push(u8::from(*fin));
        }
        Frame::Window { stream, limit } => {
            out.extend_from_slice(&stream.0.to_be_bytes());
            out.extend_from_slice(&limit.to_be_bytes());
        }
        Frame::Fin { stream, offset } => {
            out.extend_from_slice(&stream.0.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Frame::Reset {
            stream,
            code,
            reason,
        } => {
            out.extend_from_slice(&stream.0.to_be_bytes());
            out.push(code.to_u8());
            put_str(out, reason);
        }
        Frame::Datagram { flow, payload } => {
            out.extend_from_slice(&flow.0.to_be_bytes());
            out.extend_from_slice(payload);
        }
        Frame::SwitchStep1 { switch }
        | Frame::SwitchAck { switch }
        | Frame::LastMessageBeforeRedirection { switch }
        | Frame::OkToRedirection { switch }
        | Frame::ClientServicesReadyForRedirection { switch }
        | Frame::ServerServicesReadyForRedirection { switch } => {
            out.extend_from_slice(&switch.to_be_bytes());
        }
        Frame::SwitchStep2 {
            version,
            session_id,
            switch,
            box_id,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&session_id.to_be_bytes());
            out.extend_from_slice(&switch.to_be_bytes());
            put_str(out, box_id.as_str());
        }
        Frame::Standby {
            version,
            session_id,
            box_id,
            keepalive_ms,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&session_id.to_be_bytes());
            put_str(out, box_id.as_str());
            out.extend_from_slice(&keepalive_ms.to_be_bytes());
        }
        Frame::AllRedirected { switch, sync } => {
            out.extend_from_slice(&switch.to_be_bytes());
            put_sync(out, sync);
        }
        Frame::SyncPart { streams } => put_entries(out, streams),
        Frame::PathReport(r) => {
            out.extend_from_slice(&r.switches.to_be_bytes());
            out.push(r.handover.to_u8());
            out.extend_from_slice(&r.stall_ms.to_be_bytes());
            put_str(out, &r.uplink);
            out.push(r.kind.to_u8());
            out.extend_from_slice(&r.rtt_ms.to_be_bytes());
            out.extend_from_slice(&r.loss_permille.to_be_bytes());
            out.extend_from_slice(&r.send_kbps.to_be_bytes());
            out.push(u8::from(r.app_limited));
        }
        Frame::SwitchUnexpected {
            version,
            session_id,
            switch,
            box_id,
            sync,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&session_id.to_be_bytes());
            out.extend_from_slice(&switch.to_be_bytes());
            put_str(out, box_id.as_str());
            put_sync(out, sync);
        }
    }
    let len = out.len() - start - 4;
    // A frame longer than 4 GiB cannot be built from the types above.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a DATA frame whose payload is `head` then `tail` (the two halves
/// of a ring buffer), without building the frame first: the same bytes as
/// [`encode`] of `Frame::Data` with the joined payload.
pub fn encode_data(stream: StreamId, offset: u64, head: &[u8], tail: &[u8], out: &mut Vec<u8>) {
    let body = 4 + 8 + head.len() + tail.len();
    let len = u32::try_from(1 + body).unwrap_or(u32::MAX);
    out.reserve(HEADER_LEN + body);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(FrameType::Data as u8);
    out.extend_from_slice(&stream.0.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
}

/// Decodes the first frame in `buf`, returning it and the number of bytes it
/// took. `max_len` bounds the length field (type byte + body).
pub fn decode(buf: &[u8], max_len: usize) -> Result<(Frame, usize), DecodeError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Err(DecodeError::Incomplete { needed: HEADER_LEN });
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if len == 0 {
        return Err(InvalidFrame::ZeroLength.into());
    }
    if len > max_len {
        return Err(InvalidFrame::TooLong { len, max: max_len }.into());
    }
    // Checked before the body is complete so garbage is rejected early.
    if let Some(&ty) = buf.get(4)
        && FrameType::from_u8(ty).is_none()
    {
        return Err(InvalidFrame::UnknownType(ty).into());
    }
    let total = 4 + len;
    let Some(frame_bytes) = buf.get(4..total) else {
        return Err(DecodeError::Incomplete { needed: total });
    };
    let ty = FrameType::from_u8(frame_bytes[0]).ok_or(InvalidFrame::UnknownType(frame_bytes[0]))?;
    let mut r = Reader {
        buf: &frame_bytes[1..],
        frame: ty.name(),
    };
    let frame = decode_body(ty, &mut r)?;
    r.finish()?;
    Ok((frame, total))
}

fn decode_body(ty: FrameType, r: &mut Reader<'_>) -> Result<Frame, InvalidFrame> {
    Ok(match ty {
        FrameType::Connect => Frame::Connect {
            version: r.u16()?,
            window: r.u32()?,
            keepalive_ms: r.u32()?,
            incarnation: r.u64()?,
            box_id: r.box_id()?,
        },
        FrameType::ConnectAck => Frame::ConnectAck {
            version: r.u16()?,
            session_id: r.u64()?,
            window: r.u32()?,
            keepalive_ms: r.u32()?,
        },
        FrameType::Refused => Frame::Refused {
            code: RefuseCode::from_u8(r.u8()?),
            reason: r.text()?,
            retry_after_ms: if r.is_empty() {
                0
            } else {
                // Present only when not 0: a zero is malformed.
                match r.u32()? {
                    0 => return Err(r.bad("retry_after_ms")),
                    ms => ms,
                }
            },
        },
        FrameType::Disconnect => Frame::Disconnect {
            code: DisconnectCode::from_u8(r.u8()?),
            reason: r.text()?,
        },
        FrameType::Ping => Frame::Ping { nonce: r.u64()? },
        FrameType::Pong => Frame::Pong { nonce: r.u64()? },
        FrameType::Open => Frame::Open {
            stream: r.stream()?,
            kind: match r.u8()? {
                0 => StreamKind::Stream,
                1 => StreamKind::Datagram,
                _ => return Err(r.bad("kind")),
            },
            service: ServiceName::new(&r.text()?).map_err(|_| r.bad("service"))?,
            dest: r.addr()?,
            codec: if r.is_empty() {
                Codec::None
            } else {
                match Codec::from_u8(r.u8()?) {
                    // Present only when not None: a zero byte is malformed.
                    Codec::None => return Err(r.bad("codec")),
                    c => c,
                }
            },
        },
        FrameType::Data => {
            let stream = r.stream()?;
            let offset = r.u64()?;
            let payload = r.rest();
            if offset.checked_add(payload.len() as u64).is_none() {
                return Err(r.bad("offset"));
            }
            Frame::Data {
                stream,
                offset,
                payload,
            }
        }
        FrameType::Ack => Frame::Ack {
            stream: r.stream()?,
            offset: r.u64()?,
            fin: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(r.bad("flags")),
            },
        },
        FrameType::Window => Frame::Window {
            stream: r.stream()?,
            limit: r.u64()?,
        },
        FrameType::Fin => Frame::Fin {
            stream: r.stream()?,
            offset: r.u64()?,
        },
        FrameType::Reset => Frame::Reset {
            stream: r.stream()?,
            code: ResetCode::from_u8(r.u8()?),
            reason: r.text()?,
        },
        FrameType::Datagram => Frame::Datagram {
            flow: r.stream()?,
            payload: r.rest(),
        },
        FrameType::SwitchStep1 => Frame::SwitchStep1 { switch: r.u32()? },
        FrameType::SwitchAck => Frame::SwitchAck { switch: r.u32()? },
        FrameType::LastMessageBeforeRedirection => {
            Frame::LastMessageBeforeRedirection { switch: r.u32()? }
        }
        FrameType::OkToRedirection => Frame::OkToRedirection { switch: r.u32()? },
        FrameType::ClientServicesReadyForRedirection => {
            Frame::ClientServicesReadyForRedirection { switch: r.u32()? }
        }
        FrameType::ServerServicesReadyForRedirection => {
            Frame::ServerServicesReadyForRedirection { switch: r.u32()? }
        }
        FrameType::SwitchStep2 => Frame::SwitchStep2 {
            version: r.u16()?,
            session_id: r.u64()?,
            switch: r.u32()?,
            box_id: r.box_id()?,
        },
        FrameType::Standby => Frame::Standby {
            version: r.u16()?,
            session_id: r.u64()?,
            box_id: r.box_id()?,
            keepalive_ms: r.u32()?,
        },
        FrameType::SyncPart => Frame::SyncPart {
            streams: r.entries()?,
        },
        FrameType::PathReport => Frame::PathReport(PathReport {
            switches: r.u32()?,
            handover: HandoverKind::from_u8(r.u8()?),
            stall_ms: r.u32()?,
            uplink: r.text()?,
            kind: UplinkKind::from_u8(r.u8()?),
            rtt_ms: r.u32()?,
            loss_permille: r.u16()?,
            send_kbps: r.u32()?,
            app_limited: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(r.bad("flags")),
            },
        }),
        FrameType::AllRedirected => Frame::AllRedirected {
            switch: r.u32()?,
            sync: r.sync()?,
        },
        FrameType::SwitchUnexpected => Frame::SwitchUnexpected {
            version: r.u16()?,
            session_id: r.u64()?,
            switch: r.u32()?,
            box_id: r.box_id()?,
            sync: r.sync()?,
        },
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_addr(out: &mut Vec<u8>, addr: &Option<SocketAddr>) {
    match addr {
        None => out.push(0),
        Some(SocketAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
}

fn put_sync(out: &mut Vec<u8>, sync: &SyncState) {
    out.extend_from_slice(&sync.peer_opened_seen.to_be_bytes());
    put_entries(out, &sync.streams);
}

/// A count and the entries (at most 65,535: the sender splits longer lists
/// into SYNC_PART frames of [`crate::SYNC_ENTRIES_PER_FRAME`]).
fn put_entries(out: &mut Vec<u8>, streams: &[StreamSync]) {
    let n = streams.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for s in &streams[..n] {
        out.extend_from_slice(&s.stream.0.to_be_bytes());
        out.extend_from_slice(&s.received.to_be_bytes());
        out.push(u8::from(s.fin_received));
    }
}

/// A cursor over one frame's body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    frame: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InvalidFrame> {
        if self.buf.len() < n {
            return Err(InvalidFrame::Truncated(self.frame));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], InvalidFrame> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn u8(&mut self) -> Result<u8, InvalidFrame> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, InvalidFrame> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, InvalidFrame> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, InvalidFrame> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn stream(&mut self) -> Result<StreamId, InvalidFrame> {
        Ok(StreamId(self.u32()?))
    }

    fn text(&mut self) -> Result<String, InvalidFrame> {
        let n = self.u8()? as usize;
        let bytes = self.take(n)?;
        let frame = self.frame;
        String::from_utf8(bytes.to_vec()).map_err(|_| InvalidFrame::BadField {
            frame,
            field: "text",
        })
    }

    fn box_id(&mut self) -> Result<BoxId, InvalidFrame> {
        let s = self.text()?;
        BoxId::new(&s).map_err(|_| self.bad("box_id"))
    }

    fn addr(&mut self) -> Result<Option<SocketAddr>, InvalidFrame> {
        Ok(match self.u8()? {
            0 => None,
            4 => {
                let ip = Ipv4Addr::from(self.array::<4>()?);
                Some(SocketAddr::new(IpAddr::V4(ip), self.u16()?))
            }
            6 => {
                let ip = Ipv6Addr::from(self.array::<16>()?);
                Some(SocketAddr::new(IpAddr::V6(ip), self.u16()?))
            }
            _ => return Err(self.bad("dest")),
        })
    }

    fn sync(&mut self) -> Result<SyncState, InvalidFrame> {
        let peer_opened_seen = self.u32()?;
        Ok(SyncState {
            peer_opened_seen,
            streams: self.entries()?,
        })
    }

    fn entries(&mut self) -> Result<Vec<StreamSync>, InvalidFrame> {
        let n = self.u16()? as usize;
        // The count is checked against the bytes present before allocating.
        if self.buf.len() < n * SYNC_ENTRY_LEN {
            return Err(InvalidFrame::Truncated(self.frame));
        }
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = self.stream()?;
            let received = self.u64()?;
            let fin_received = match self.u8()? {
                0 => false,
                1 => true,
                _ => return Err(self.bad("sync flags")),
            };
            streams.push(StreamSync {
                stream,
                received,
                fin_received,
            });
        }
        Ok(streams)
    }

    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf).to_vec()
    }

    fn bad(&self, field: &'static str) -> InvalidFrame {
        InvalidFrame::BadField {
            frame: self.frame,
            field,
        }
    }

    fn finish(&self) -> Result<(), InvalidFrame> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(InvalidFrame::Trailing(self.frame, self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests;
