//! lz4 behind the record format: each record an lz4 block compressed with
//! the stream's last application bytes as dictionary, the same history on
//! both sides (lz4_flex, pure Rust). The dictionary grows with the record
//! (16 times its size, at least 4 KiB, at most lz4's 64 KiB reach): lz4_flex
//! hashes the whole dictionary for every block, and a 200-byte write must
//! not pay for 64 KiB of it. Both sides know the record's size, so both
//! take the same dictionary.

use crate::{CodecError, Engine};

/// lz4's largest match distance: older history cannot be referred to.
const HISTORY: usize = 64 * 1024;

#[derive(Default)]
pub(crate) struct Lz4 {
    /// Last application bytes sent / received (the dictionaries).
    sent: Vec<u8>,
    received: Vec<u8>,
}

fn remember(history: &mut Vec<u8>, plain: &[u8]) {
    history.extend_from_slice(plain);
    if history.len() > 2 * HISTORY {
        let cut = history.len() - HISTORY;
        history.drain(..cut);
    }
}

/// The dictionary for a record of `len` application bytes.
fn dict(history: &[u8], len: usize) -> &[u8] {
    let want = len.saturating_mul(16).clamp(4 * 1024, HISTORY);
    &history[history.len().saturating_sub(want)..]
}

impl Engine for Lz4 {
    fn compress(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        out.resize(
            start + lz4_flex::block::get_maximum_output_size(plain.len()),
            0,
        );
        let n = lz4_flex::block::compress_into_with_dict(
            plain,
            &mut out[start..],
            dict(&self.sent, plain.len()),
        )
        .map_err(|e| CodecError::Library(e.to_string()))?;
        out.truncate(start + n);
        remember(&mut self.sent, plain);
        Ok(())
    }

    fn decompress(&mut self, payload: &[u8], plain_len: usize) -> Result<Vec<u8>, CodecError> {
        let mut plain = vec![0u8; plain_len];
        let n = lz4_flex::block::decompress_into_with_dict(
            payload,
            &mut plain,
            dict(&self.received, plain_len),
        )
        .map_err(|_| CodecError::Corrupt("lz4 data"))?;
        if n != plain_len {
            return Err(CodecError::Corrupt(
                "record expands to another size than declared",
            ));
        }
        remember(&mut self.received, &plain);
        Ok(plain)
    }
}
