//! A server session written down for another process: what a relay upgrade
//! hands to the new snaptd (docs/operations.md, "Upgrading a relay").
//!
//! An image keeps only what the box can resynchronise from: per stream the
//! bytes the box has not had acknowledged (the replay buffer, with the
//! offsets around it) and, receiving, what reached the real server's socket.
//! Bytes the old process received but had not yet written are left out on
//! purpose — the box still holds them (a box forgets only what the relay
//! acknowledged, and the relay acknowledges only what it delivered), so the
//! resynchronisation after the upgrade brings them again, exactly once.
//!
//! The encoding is private to two builds of snaptd on one host: a magic and
//! a version, big-endian integers, length-prefixed strings and bytes. It is
//! checked as strictly as a peer's frame all the same: a bad image is an
//! error naming what is wrong, never a panic.

use std::net::SocketAddr;

use wire::{BoxId, Codec, ServiceName, StreamId, StreamKind};

/// Magic and version of the encoding.
const MAGIC: &[u8; 8] = b"CBXIMG\x00\x01";

/// One session, as the new process rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    /// The box.
    pub owner: BoxId,
    /// Its id (what the box's SWITCH_UNEXPECTED names).
    pub session_id: u64,
    /// The incarnation of the CONNECT that created it.
    pub incarnation: u64,
    /// The newest switch number accepted.
    pub last_switch: u32,
    /// The window the box grants for each stream.
    pub peer_window: u64,
    /// Streams this side opened so far (the next index).
    pub next_index: u32,
    /// Streams the box opened that this side has seen.
    pub peer_opened_seen: u32,
    /// Its streams and datagram flows.
    pub streams: Vec<StreamImage>,
}

/// One stream or datagram flow of a [`SessionImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamImage {
    /// Its id.
    pub id: StreamId,
    /// Stream or datagram flow.
    pub kind: StreamKind,
    /// The service it reaches.
    pub service: ServiceName,
    /// Its destination, if the box named one.
    pub dest: Option<SocketAddr>,
    /// How its bytes are compressed.
    pub codec: Codec,
    /// Its OPEN has not been sent yet.
    pub open_pending: bool,
    /// Everything below was delivered by the box.
    pub acked: u64,
    /// The highest offset ever sent (what is sent again below is a replay).
    pub max_sent: u64,
    /// The box lets us send below this offset.
    pub peer_limit: u64,
    /// Bytes from `acked` on, not yet acknowledged: the replay buffer (and
    /// whatever the old process had read from the server beyond it).
    pub unacked: Vec<u8>,
    /// The final size, once the server's side ended.
    pub fin: Option<u64>,
    /// The box delivered our FIN.
    pub fin_acked: bool,
    /// What reached the server's socket; the box resumes from here.
    pub delivered: u64,
    /// The highest credit granted to the box.
    pub limit: u64,
    /// The box's final size, if every byte before it was delivered.
    pub peer_fin: Option<u64>,
    /// The driver was told of that FIN (`Event::Finished`).
    pub peer_fin_emitted: bool,
}

impl StreamImage {
    /// Offset after the last byte written by the application.
    pub fn written(&self) -> u64 {
        self.acked + self.unacked.len() as u64
    }

    /// Checks that the offsets agree with each other.
    pub fn check(&self) -> Result<(), ImageError> {
        let bad = |what: &'static str| ImageError::Inconsistent {
            stream: self.id,
            what,
        };
        if self.max_sent > self.written() {
            return Err(bad("more sent than written"));
        }
        if self.peer_limit < self.acked {
            return Err(bad("acknowledged beyond the box's credit"));
        }
        if let Some(fin) = self.fin
            && fin != self.written()
        {
            return Err(bad("final size is not the bytes written"));
        }
        if self.fin_acked && self.fin.is_none() {
            return Err(bad("FIN acknowledged but never written"));
        }
        if self.delivered > self.limit {
            return Err(bad("delivered beyond the credit granted"));
        }
        if self.peer_fin.is_some_and(|f| f != self.delivered) {
            return Err(bad("the box's FIN is not at the delivered offset"));
        }
        if self.peer_fin_emitted && self.peer_fin.is_none() {
            return Err(bad("FIN reported without a FIN"));
        }
        Ok(())
    }
}

/// Why an image cannot be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not an image of this version.
    #[error("not a session image of this version")]
    BadMagic,
    /// It ends in the middle of a field.
    #[error("image truncated in {0}")]
    Truncated(&'static str),
    /// A field holds something impossible.
    #[error("bad {0} in the image")]
    BadField(&'static str),
    /// Bytes follow the last session.
    #[error("{0} bytes after the last session")]
    Trailing(usize),
    /// A stream's offsets contradict each other.
    #[error("stream {stream}: {what}")]
    Inconsistent {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        what: &'static str,
    },
    /// The session exists here already.
    #[error("box {0} already has a session here")]
    Duplicate(BoxId),
}

/// Writes `images` in the encoding [`decode`] reads.
pub fn encode(images: &[SessionImage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + images
            .iter()
            .flat_map(|s| &s.streams)
            .map(|s| 96 + s.unacked.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, images.len() as u32);
    for s in images {
        put_str(&mut out, s.owner.as_str());
        put_u64(&mut out, s.session_id);
        put_u64(&mut out, s.incarnation);
        put_u32(&mut out, s.last_switch);
        put_u64(&mut out, s.peer_window);
        put_u32(&mut out, s.next_index);
        put_u32(&mut out, s.peer_opened_seen);
        put_u32(&mut out, s.streams.len() as u32);
        for st in &s.streams {
            put_u32(&mut out, st.id.0);
            out.push(match st.kind {
                StreamKind::Stream => 0,
                StreamKind::Datagram => 1,
            });
            put_str(&mut out, st.service.as_str());
            put_str(
                &mut out,
                &st.dest.map(|d| d.to_string()).unwrap_or_default(),
            );
            out.push(st.codec.to_u8());
            out.push(
                u8::from(st.open_pending)
                    | u8::from(st.fin_acked) << 1
                    | u8::from(st.peer_fin_emitted) << 2,
            );
            put_u64(&mut out, st.acked);
            put_u64(&mut out, st.max_sent);
            put_u64(&mut out, st.peer_limit);
            put_opt(&mut out, st.fin);
            put_u64(&mut out, st.delivered);
            put_u64(&mut out, st.limit);
            put_opt(&mut out, st.peer_fin);
            put_u32(&mut out, st.unacked.len() as u32);
            out.extend_from_slice(&st.unacked);
        }
    }
    out
}

/// Reads what [`encode`] wrote, checking every stream.
pub fn decode(bytes: &[u8]) -> Result<Vec<SessionImage>, ImageError> {
    let mut r = Reader { buf: bytes };
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(ImageError::BadMagic);
    }
    let n = r.u32("session count")?;
    let mut images = Vec::new();
    for _ in 0..n {
        let owner = BoxId::new(&r.string("box id")?).map_err(|_| ImageError::BadField("box id"))?;
        let session_id = r.u64("session id")?;
        let incarnation = r.u64("incarnation")?;
        let last_switch = r.u32("switch")?;
        let peer_window = r.u64("window")?;
        let next_index = r.u32("next index")?;
        let peer_opened_seen = r.u32("streams seen")?;
        let count = r.u32("stream count")?;
        let mut streams = Vec::new();
        for _ in 0..count {
            let id = StreamId(r.u32("stream id")?);
            let kind = match r.u8("kind")? {
                0 => StreamKind::Stream,
                1 => StreamKind::Datagram,
                _ => return Err(ImageError::BadField("stream kind")),
            };
            let service = ServiceName::new(&r.string("service")?)
                .map_err(|_| ImageError::BadField("service"))?;
            let dest = match r.string("destination")?.as_str() {
                "" => None,
                d => Some(d.parse().map_err(|_| ImageError::BadField("destination"))?),
            };
            let codec = match Codec::from_u8(r.u8("codec")?) {
                Codec::Other(_) => return Err(ImageError::BadField("codec")),
                c => c,
            };
            let flags = r.u8("flags")?;
            if flags > 0b111 {
                return Err(ImageError::BadField("flags"));
            }
            let st = StreamImage {
                id,
                kind,
                service,
                dest,
                codec,
                open_pending: flags & 1 != 0,
                fin_acked: flags & 2 != 0,
                peer_fin_emitted: flags & 4 != 0,
                acked: r.u64("acked")?,
                max_sent: r.u64("sent")?,
                peer_limit: r.u64("credit")?,
                fin: r.opt("final size")?,
                delivered: r.u64("delivered")?,
                limit: r.u64("limit")?,
                peer_fin: r.opt("box's final size")?,
                unacked: {
                    let len = r.u32("buffer length")? as usize;
                    r.take(len, "buffer")?.to_vec()
                },
            };
            st.check()?;
            streams.push(st);
        }
        images.push(SessionImage {
            owner,
            session_id,
            incarnation,
            last_switch,
            peer_window,
            next_index,
            peer_opened_seen,
            streams,
        });
    }
    if !r.buf.is_empty() {
        return Err(ImageError::Trailing(r.buf.len()));
    }
    Ok(images)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_opt(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            put_u64(out, v);
        }
        None => out.push(0),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ImageError> {
        if self.buf.len() < n {
            return Err(ImageError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ImageError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ImageError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ImageError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn opt(&mut self, what: &'static str) -> Result<Option<u64>, ImageError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.u64(what)?)),
            _ => Err(ImageError::BadField(what)),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, ImageError> {
        let len = self.u32(what)? as usize;
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| ImageError::BadField(what))
    }
}

#[cfg(test)]
mod tests;
