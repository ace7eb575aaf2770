//! zstd behind the record format: one compression context per direction of
//! a stream, flushed after every record, its window held to 64 KiB (memory
//! per stream on a Pi; a peer cannot make the decoder take a larger one).

use zstd::stream::raw::{CParameter, DParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

use crate::{CodecError, Engine, MAX_COMPRESSED};

/// log2 of the window: 64 KiB of history.
const WINDOW_LOG: u32 = 16;
/// zstd's fastest regular level: on a Pi's one core the relay must keep up
/// with the uplink.
const LEVEL: i32 = 1;

pub(crate) struct Zstd {
    enc: Option<Encoder<'static>>,
    dec: Option<Decoder<'static>>,
}

fn lib(e: std::io::Error) -> CodecError {
    CodecError::Library(e.to_string())
}

impl Zstd {
    pub(crate) fn new() -> Result<Self, CodecError> {
        Ok(Self {
            enc: None,
            dec: None,
        })
    }

    /// The contexts are made on first use: a stream that only ever sends
    /// never holds a decoder.
    fn encoder(&mut self) -> Result<&mut Encoder<'static>, CodecError> {
        if self.enc.is_none() {
            let mut e = Encoder::new(LEVEL).map_err(lib)?;
            e.set_parameter(CParameter::WindowLog(WINDOW_LOG))
                .map_err(lib)?;
            e.set_parameter(CParameter::ChecksumFlag(false))
                .map_err(lib)?;
            e.set_parameter(CParameter::ContentSizeFlag(false))
                .map_err(lib)?;
            self.enc = Some(e);
        }
        self.enc.as_mut().ok_or(CodecError::Corrupt("no encoder"))
    }

    fn decoder(&mut self) -> Result<&mut Decoder<'static>, CodecError> {
        if self.dec.is_none() {
            let mut d = Decoder::new().map_err(lib)?;
            d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
                .map_err(lib)?;
            self.dec = Some(d);
        }
        self.dec.as_mut().ok_or(CodecError::Corrupt("no decoder"))
    }
}

impl Engine for Zstd {
    fn compress(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let enc = self.encoder()?;
        let start = out.len();
        out.resize(start + MAX_COMPRESSED, 0);
        let mut written = 0;
        let mut input = InBuffer::around(plain);
        // Bounded: each step consumes input or writes output, and the
        // output buffer holds the worst case of one record.
        for _ in 0..64 {
            let mut o = OutBuffer::around(&mut out[start + written..]);
            let more = if input.pos() < plain.len() {
                enc.run(&mut input, &mut o).map_err(lib)?;
                1
            } else {
                enc.flush(&mut o).map_err(lib)?
            };
            written += o.pos();
            if more == 0 {
                out.truncate(start + written);
                return Ok(());
            }
            if start + written >= out.len() {
                break;
            }
        }
        out.truncate(start);
        Err(CodecError::Library("zstd did not flush a record".into()))
    }

    fn decompress(&mut self, payload: &[u8], plain_len: usize) -> Result<Vec<u8>, CodecError> {
        let corrupt = |_| CodecError::Corrupt("zstd data");
        let dec = self.decoder()?;
        let mut plain = vec![0u8; plain_len];
        let mut got = 0;
        let mut input = InBuffer::around(payload);
        // Bounded: each step consumes input or fills output.
        for _ in 0..64 {
            if input.pos() == payload.len() && got == plain_len {
                break;
            }
            let mut o = OutBuffer::around(&mut plain[got..]);
            dec.run(&mut input, &mut o).map_err(corrupt)?;
            let n = o.pos();
            got += n;
            if n == 0 && (input.pos() == payload.len() || got == plain_len) {
                break;
            }
        }
        if got != plain_len || input.pos() != payload.len() {
            return Err(CodecError::Corrupt(
                "record expands to another size than declared",
            ));
        }
        // Nothing may be left inside the decoder either.
        let mut extra = [0u8; 1];
        let mut o = OutBuffer::around(&mut extra[..]);
        dec.run(&mut InBuffer::around(&[]), &mut o)
            .map_err(corrupt)?;
        if o.pos() > 0 {
            return Err(CodecError::Corrupt(
                "record expands to another size than declared",
            ));
        }
        Ok(plain)
    }
}
