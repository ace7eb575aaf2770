//! Reassembles frames from the byte chunks a tunnel delivers.

use wire::{DecodeError, Frame, InvalidFrame};

/// Input buffer of one tunnel. Holds at most one partial frame (bounded by
/// the frame limit) plus whatever the driver handed over in one call.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    pos: usize,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received after the last complete frame.
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        rest
    }

    /// The next complete frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self, max_len: usize) -> Result<Option<Frame>, InvalidFrame> {
        match wire::decode(&self.buf[self.pos..], max_len) {
            Ok((frame, used)) => {
                self.pos += used;
                Ok(Some(frame))
            }
            Err(DecodeError::Incomplete { .. }) => Ok(None),
            Err(DecodeError::Invalid(e)) => {
                self.buf = Vec::new();
                self.pos = 0;
                Err(e)
            }
        }
    }
}
