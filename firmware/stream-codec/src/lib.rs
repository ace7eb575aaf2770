//! Per-stream compression of the bytes between box and relay (pure: no I/O,
//! no clock). What it owns: the record format both relays agree on, and the
//! two codecs (`zstd`, `lz4`) behind one compressor and one decompressor.
//!
//! A compressed stream is a sequence of records, each the compression of
//! one piece of application bytes (what one read from the socket gave, cut
//! at [`MAX_RECORD`]):
//!
//! ```text
//! record := comp_len varint | plain_len varint | payload (comp_len bytes)
//! ```
//!
//! Every record is flushed whole: nothing waits for a fuller block, so an
//! interactive write costs its compression and a few bytes, never a delay.
//! The codecs keep their history across records (zstd's window, lz4's last
//! 64 KiB as dictionary), so small records of a JSON or log stream compress
//! against what came before. The session core carries the records like any
//! bytes — offsets, replay and resumption count compressed bytes — so a
//! handover never needs the codec's state.
//!
//! Decompression is bounded whatever the peer sends: a record expands to at
//! most [`MAX_RECORD`] bytes, its declared size is checked, zstd's window is
//! capped, and the caller takes records one at a time (so it can stop while
//! the application does not read).

use thiserror::Error;
use wire::Codec;

mod lz4;
mod zstd_codec;

#[cfg(test)]
mod tests;

/// The most application bytes one record carries.
pub const MAX_RECORD: usize = 64 * 1024;

/// The most compressed bytes a record may declare (a record that does not
/// compress is at most this much larger than its input).
pub const MAX_COMPRESSED: usize = MAX_RECORD + MAX_RECORD / 8 + 64;

/// A stream that cannot be compressed or decompressed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The codec is not one this build knows.
    #[error("unknown compression codec {0}")]
    Unknown(u8),
    /// A record header or payload is malformed, or expands to another size
    /// than it declares.
    #[error("corrupt compressed record: {0}")]
    Corrupt(&'static str),
    /// The compression library failed.
    #[error("compression failed: {0}")]
    Library(String),
}

trait Engine: Send {
    /// Compresses `plain` (at most [`MAX_RECORD`]) and appends the payload.
    fn compress(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decompresses one record's payload into exactly `plain_len` bytes.
    fn decompress(&mut self, payload: &[u8], plain_len: usize) -> Result<Vec<u8>, CodecError>;
}

/// An engine the drivers can hold in shared state: zstd's contexts are not
/// `Sync`, and are only ever used through `&mut` (the mutex is never
/// locked).
struct Shared(std::sync::Mutex<Box<dyn Engine>>);

impl Shared {
    fn get(&mut self) -> &mut dyn Engine {
        match self.0.get_mut() {
            Ok(e) => e.as_mut(),
            Err(poisoned) => poisoned.into_inner().as_mut(),
        }
    }
}

fn engine(codec: Codec) -> Result<Option<Shared>, CodecError> {
    let e: Box<dyn Engine> = match codec {
        Codec::None => return Ok(None),
        Codec::Zstd => Box::new(zstd_codec::Zstd::new()?),
        Codec::Lz4 => Box::new(lz4::Lz4::default()),
        Codec::Other(n) => return Err(CodecError::Unknown(n)),
    };
    Ok(Some(Shared(std::sync::Mutex::new(e))))
}

/// The sending side of a compressed stream.
pub struct Compressor {
    engine: Shared,
    /// Application bytes in, record bytes out (for the figures).
    plain: u64,
    compressed: u64,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("plain", &self.plain)
            .field("compressed", &self.compressed)
            .finish()
    }
}

impl Compressor {
    /// A compressor for `codec`; `None` for [`Codec::None`].
    pub fn new(codec: Codec) -> Result<Option<Self>, CodecError> {
        Ok(engine(codec)?.map(|engine| Self {
            engine,
            plain: 0,
            compressed: 0,
        }))
    }

    /// The records of `plain` (one per [`MAX_RECORD`] piece), each flushed.
    pub fn compress(&mut self, plain: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(plain.len() / 2 + 16);
        let mut payload = Vec::with_capacity(plain.len().min(MAX_RECORD) + 64);
        for piece in plain.chunks(MAX_RECORD) {
            payload.clear();
            self.engine.get().compress(piece, &mut payload)?;
            put_varint(&mut out, payload.len());
            put_varint(&mut out, piece.len());
            out.extend_from_slice(&payload);
        }
        self.plain += plain.len() as u64;
        self.compressed += out.len() as u64;
        Ok(out)
    }

    /// Application bytes taken and record bytes produced so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.plain, self.compressed)
    }
}

/// The receiving side of a compressed stream: record bytes in (as the
/// session delivers them, cut anywhere), application bytes out, one record
/// at a time.
pub struct Decompressor {
    engine: Shared,
    /// Record bytes not yet decompressed (at most one record's worth beyond
    /// what the caller left queued: the session's window bounds it).
    pending: Vec<u8>,
    start: usize,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("pending", &(self.pending.len() - self.start))
            .finish()
    }
}

impl Decompressor {
    /// A decompressor for `codec`; `None` for [`Codec::None`].
    pub fn new(codec: Codec) -> Result<Option<Self>, CodecError> {
        Ok(engine(codec)?.map(|engine| Self {
            engine,
            pending: Vec::new(),
            start: 0,
        }))
    }

    /// Record bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.pending.len() / 2 {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Record bytes received and not yet decompressed.
    pub fn pending(&self) -> usize {
        self.pending.len() - self.start
    }

    /// The next whole record: its application bytes and how many record
    /// bytes it took (what the application has consumed, in the stream's
    /// own counting, once those bytes are written). `None` until a whole
    /// record has arrived.
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, usize)>, CodecError> {
        let buf = &self.pending[self.start..];
        let Some((comp_len, a)) = get_varint(buf)? else {
            return Ok(None);
        };
        let Some((plain_len, b)) = get_varint(&buf[a..])? else {
            return Ok(None);
        };
        if plain_len > MAX_RECORD || comp_len > MAX_COMPRESSED {
            return Err(CodecError::Corrupt("record larger than allowed"));
        }
        let head = a + b;
        if buf.len() < head + comp_len {
            return Ok(None);
        }
        let plain = self
            .engine
            .get()
            .decompress(&buf[head..head + comp_len], plain_len)?;
        self.start += head + comp_len;
        Ok(Some((plain, head + comp_len)))
    }
}

/// LEB128, at most three bytes (values below 2^21).
fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A varint and its length; `None` if more bytes are needed.
fn get_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut v = 0usize;
    for (i, byte) in buf.iter().enumerate() {
        if i >= 3 {
            return Err(CodecError::Corrupt("length field too long"));
        }
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if buf.len() >= 3 {
        return Err(CodecError::Corrupt("length field too long"));
    }
    Ok(None)
}
