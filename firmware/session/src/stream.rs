//! One stream's two directions: the send half with its replay buffer and
//! credit, and the receive half with its offsets and acknowledgements.
//!
//! Offsets are absolute byte positions in a direction. The sender keeps every
//! byte from the peer's acknowledged offset (what the peer wrote to its local
//! socket) to what the application wrote: that is the replay buffer, bounded
//! by the peer's window. A resynchronisation only moves `sent` back.

use std::collections::VecDeque;
use std::net::SocketAddr;

use wire::{Codec, ServiceName, StreamKind};

/// Broken stream rules, found in a peer's frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamViolation {
    /// DATA starts beyond the next expected offset (the tunnel is ordered).
    #[error("data at offset {offset} leaves a gap after {received}")]
    Gap {
        /// Offset of the frame.
        offset: u64,
        /// Next expected offset.
        received: u64,
    },
    /// DATA goes beyond the credit granted.
    #[error("data up to {end} exceeds the window limit {limit}")]
    OverWindow {
        /// End of the frame's payload.
        end: u64,
        /// The limit granted.
        limit: u64,
    },
    /// DATA or FIN disagrees with an earlier FIN.
    #[error("data or FIN beyond the final size {fin}")]
    BeyondFin {
        /// The final size announced earlier.
        fin: u64,
    },
    /// An ACK, or a peer's received offset, names bytes never written.
    #[error("offset {offset} acknowledges more than the {written} bytes written")]
    AckBeyondWritten {
        /// The offset acknowledged.
        offset: u64,
        /// Bytes written so far.
        written: u64,
    },
    /// A peer's received offset is below what it already acknowledged.
    #[error("received offset {offset} is below the acknowledged {acked}")]
    RewindBelowAck {
        /// The offset.
        offset: u64,
        /// Acknowledged so far.
        acked: u64,
    },
    /// A FIN acknowledgement for a direction that was not finished there.
    #[error("FIN acknowledged at {offset} but the final size is {fin:?}")]
    BadFinAck {
        /// The offset of the ACK.
        offset: u64,
        /// Our final size, if any.
        fin: Option<u64>,
    },
}

/// Replay-buffer capacity an emptied buffer may keep (bigger ones are freed).
const IDLE_BUFFER_KEPT: usize = 4 * 1024;

/// Sending direction of a stream.
#[derive(Debug, Default)]
pub(crate) struct SendHalf {
    /// Bytes `[acked, written)`: the replay buffer.
    buf: VecDeque<u8>,
    /// Everything below was delivered by the peer.
    pub acked: u64,
    /// Next offset to transmit.
    pub sent: u64,
    /// The peer lets us send below this offset.
    pub peer_limit: u64,
    /// Final size, once the application finished writing.
    pub fin: Option<u64>,
    /// FIN has been transmitted on the current data tunnel.
    pub fin_sent: bool,
    /// The peer delivered our FIN.
    pub fin_acked: bool,
    /// The application was refused space: tell it when there is room.
    pub blocked: bool,
    /// Highest offset ever transmitted (bytes below it sent again are replays).
    pub max_sent: u64,
}

impl SendHalf {
    pub fn new(peer_limit: u64) -> Self {
        Self {
            peer_limit,
            ..Self::default()
        }
    }

    /// Offset after the last byte the application wrote.
    pub fn written(&self) -> u64 {
        self.acked + self.buf.len() as u64
    }

    /// Bytes held for replay.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// A copy of the replay buffer (bytes `[acked, written)`).
    pub fn unacked(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    /// A send half rebuilt from an image: nothing counts as sent on the new
    /// tunnel yet (the resynchronisation says where to resume).
    pub fn restored(acked: u64, unacked: Vec<u8>, peer_limit: u64, max_sent: u64) -> Self {
        Self {
            buf: unacked.into(),
            acked,
            sent: acked,
            peer_limit,
            max_sent,
            ..Self::default()
        }
    }

    /// Appends up to `room` bytes of `data`; returns how many were taken.
    pub fn write(&mut self, data: &[u8], room: usize) -> usize {
        let n = data.len().min(room);
        self.buf.extend(&data[..n]);
        if n < data.len() {
            self.blocked = true;
        }
        n
    }

    /// The next chunk to transmit: at most `max` bytes from `sent`, within
    /// the peer's credit. Advances `sent`. Returns the offset, the bytes, and
    /// how many of them were transmitted before (a replay).
    #[cfg(test)]
    pub fn next_chunk(&mut self, max: usize) -> Option<(u64, Vec<u8>, u64)> {
        let mut out = Vec::new();
        let (_, replayed) = self.write_next_chunk(wire::StreamId(0), max, &mut out)?;
        match wire::decode(&out, usize::MAX) {
            Ok((
                wire::Frame::Data {
                    offset, payload, ..
                },
                _,
            )) => Some((offset, payload, replayed)),
            _ => None,
        }
    }

    /// Data within the peer's credit, or the FIN, waits to be transmitted.
    pub fn ready(&self) -> bool {
        self.sent < self.written().min(self.peer_limit) || self.fin_due()
    }

    /// The next chunk to transmit — at most `max` bytes from `sent`, within
    /// the peer's credit — appended as a DATA frame for `stream` to `out`
    /// straight from the replay buffer. Advances `sent`. Returns the payload
    /// length and how much of it was transmitted before (a replay).
    pub fn write_next_chunk(
        &mut self,
        stream: wire::StreamId,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Option<(usize, u64)> {
        let end = self.written().min(self.peer_limit);
        if self.sent >= end {
            return None;
        }
        let len = ((end - self.sent) as usize).min(max);
        let start = (self.sent - self.acked) as usize;
        let (a, b) = self.buf.as_slices();
        let (head, tail) = if start < a.len() {
            let take = len.min(a.len() - start);
            (&a[start..start + take], &b[..len - take])
        } else {
            (&b[start - a.len()..start - a.len() + len], &b[..0])
        };
        wire::encode_data(stream, self.sent, head, tail, out);
        let offset = self.sent;
        self.sent += len as u64;
        let replayed = self.max_sent.min(self.sent).saturating_sub(offset);
        self.max_sent = self.max_sent.max(self.sent);
        Some((len, replayed))
    }

    /// A FIN should be transmitted now.
    pub fn fin_due(&self) -> bool {
        matches!(self.fin, Some(f) if self.sent == f && !self.fin_sent)
    }

    /// The peer delivered everything below `offset` (and the FIN if `fin`).
    /// Returns whether the application should hear it may write again.
    pub fn handle_ack(&mut self, offset: u64, fin: bool) -> Result<bool, StreamViolation> {
        if offset > self.written() {
            return Err(StreamViolation::AckBeyondWritten {
                offset,
                written: self.written(),
            });
        }
        if fin {
            if self.fin != Some(offset) {
                return Err(StreamViolation::BadFinAck {
                    offset,
                    fin: self.fin,
                });
            }
            self.fin_acked = true;
        }
        if offset > self.acked {
            self.buf.drain(..(offset - self.acked) as usize);
            // A stream that went quiet gives its burst's buffer back: idle
            // streams cost their bookkeeping, not their largest window.
            if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER_KEPT {
                self.buf = VecDeque::new();
            }
            self.acked = offset;
            // The peer may have acknowledged bytes we are about to resend.
            self.sent = self.sent.max(offset);
            if self.blocked {
                self.blocked = false;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// After a new tunnel: the peer has received everything below `received`
    /// (and our FIN if `fin_received`); transmit again from there.
    pub fn rewind(&mut self, received: u64, fin_received: bool) -> Result<(), StreamViolation> {
        if received > self.written() {
            return Err(StreamViolation::AckBeyondWritten {
                offset: received,
                written: self.written(),
            });
        }
        if received < self.acked {
            return Err(StreamViolation::RewindBelowAck {
                offset: received,
                acked: self.acked,
            });
        }
        if fin_received && self.fin != Some(received) {
            return Err(StreamViolation::BadFinAck {
                offset: received,
                fin: self.fin,
            });
        }
        self.sent = received;
        self.fin_sent = fin_received;
        Ok(())
    }

    /// Nothing left to send or to have acknowledged.
    pub fn done(&self) -> bool {
        self.fin_acked
    }
}

/// Receiving direction of a stream.
#[derive(Debug, Default)]
pub(crate) struct RecvHalf {
    /// Next offset expected from the peer.
    pub received: u64,
    /// Everything below was written to the local socket by the driver.
    pub delivered: u64,
    /// The peer's final size, once its FIN arrived.
    pub fin: Option<u64>,
    /// `Event::Finished` was given to the driver.
    pub fin_emitted: bool,
    /// Highest credit limit ever granted.
    pub limit: u64,
    /// Last acknowledged offset sent, and whether it covered the FIN.
    pub ack_sent: u64,
    pub fin_ack_sent: bool,
    /// ACK/WINDOW should be (re)sent.
    pub ack_pending: bool,
}

impl RecvHalf {
    pub fn new(window: u64) -> Self {
        Self {
            limit: window,
            ..Self::default()
        }
    }

    /// Accepts DATA; returns the bytes new to us (a resent prefix is dropped).
    pub fn handle_data(
        &mut self,
        offset: u64,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, StreamViolation> {
        let end = offset + payload.len() as u64;
        if offset > self.received {
            return Err(StreamViolation::Gap {
                offset,
                received: self.received,
            });
        }
        if end > self.limit {
            return Err(StreamViolation::OverWindow {
                end,
                limit: self.limit,
            });
        }
        if let Some(fin) = self.fin
            && end > fin
        {
            return Err(StreamViolation::BeyondFin { fin });
        }
        if end <= self.received {
            return Ok(Vec::new());
        }
        let skip = (self.received - offset) as usize;
        self.received = end;
        let mut payload = payload;
        payload.drain(..skip);
        Ok(payload)
    }

    /// Accepts a FIN at `offset`.
    pub fn handle_fin(&mut self, offset: u64) -> Result<(), StreamViolation> {
        match self.fin {
            Some(f) if f != offset => Err(StreamViolation::BeyondFin { fin: f }),
            _ if offset < self.received || offset > self.limit => Err(StreamViolation::BeyondFin {
                fin: self.received.max(offset),
            }),
            _ => {
                self.fin = Some(offset);
                Ok(())
            }
        }
    }

    /// Every byte before the FIN has arrived and `Finished` is not yet given.
    pub fn finish_due(&self) -> bool {
        !self.fin_emitted && self.fin == Some(self.received)
    }

    /// The driver wrote `n` more bytes to the local socket.
    pub fn handle_delivered(&mut self, n: u64, window: u64) {
        self.delivered = (self.delivered + n).min(self.received);
        let caught_up = self.delivered == self.received;
        let far_behind = self.delivered - self.ack_sent >= window / 8;
        let credit_low = self.limit - self.delivered <= window / 2;
        if caught_up || far_behind || credit_low {
            self.ack_pending = true;
        }
    }

    /// The peer's FIN was delivered.
    pub fn fin_delivered(&self) -> bool {
        self.fin == Some(self.delivered)
    }

    /// Direction finished and its FIN acknowledgement sent.
    pub fn done(&self) -> bool {
        self.fin_delivered() && self.fin_ack_sent && !self.ack_pending
    }
}

/// A stream or datagram flow.
#[derive(Debug)]
pub(crate) struct Stream {
    pub kind: StreamKind,
    pub service: ServiceName,
    pub dest: Option<SocketAddr>,
    /// How its bytes are compressed (carried in OPEN; the session core
    /// moves the compressed bytes like any others).
    pub codec: Codec,
    /// OPEN must be (re)transmitted before anything else of this stream.
    pub open_pending: bool,
    /// In one of the data scheduler's queues.
    pub scheduled: bool,
    pub send: SendHalf,
    pub recv: RecvHalf,
}

impl Stream {
    pub fn new(
        kind: StreamKind,
        service: ServiceName,
        dest: Option<SocketAddr>,
        local: bool,
        own_window: u64,
        peer_window: u64,
    ) -> Self {
        Self {
            kind,
            service,
            dest,
            codec: Codec::None,
            open_pending: local,
            scheduled: false,
            send: SendHalf::new(peer_window),
            recv: RecvHalf::new(own_window),
        }
    }

    /// Both directions finished and acknowledged (datagram flows never are:
    /// they end by RESET).
    pub fn done(&self) -> bool {
        self.kind == StreamKind::Stream && self.send.done() && self.recv.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_buffer_keeps_bytes_until_acknowledged_and_rewinds() {
        let mut s = SendHalf::new(10);
        assert_eq!(s.write(b"abcdefghijkl", 100), 12);
        assert_eq!(s.next_chunk(4), Some((0, b"abcd".to_vec(), 0)));
        assert_eq!(s.next_chunk(100), Some((4, b"efghij".to_vec(), 0)));
        assert_eq!(s.next_chunk(100), None, "credit exhausted at 10");
        assert_eq!(s.handle_ack(3, false), Ok(false));
        assert_eq!(s.buffered(), 9);
        s.rewind(5, false).unwrap();
        assert_eq!(s.next_chunk(2), Some((5, b"fg".to_vec(), 2)), "a replay");
        assert_eq!(
            s.rewind(2, false),
            Err(StreamViolation::RewindBelowAck {
                offset: 2,
                acked: 3
            })
        );
        assert!(matches!(
            s.rewind(13, false),
            Err(StreamViolation::AckBeyondWritten { .. })
        ));
    }

    #[test]
    fn write_is_bounded_by_room_and_reports_writable_after_ack() {
        let mut s = SendHalf::new(100);
        assert_eq!(s.write(b"abcdef", 4), 4);
        assert!(s.blocked);
        s.next_chunk(100);
        assert_eq!(s.handle_ack(2, false), Ok(true));
        assert_eq!(s.handle_ack(2, false), Ok(false));
    }

    #[test]
    fn receiver_drops_resent_prefix_and_rejects_gaps_and_overruns() {
        let mut r = RecvHalf::new(8);
        assert_eq!(r.handle_data(0, b"abc".to_vec()), Ok(b"abc".to_vec()));
        assert_eq!(r.handle_data(1, b"bcde".to_vec()), Ok(b"de".to_vec()));
        assert_eq!(r.handle_data(0, b"ab".to_vec()), Ok(vec![]));
        assert_eq!(
            r.handle_data(7, b"x".to_vec()),
            Err(StreamViolation::Gap {
                offset: 7,
                received: 5
            })
        );
        assert_eq!(
            r.handle_data(5, b"xyzw".to_vec()),
            Err(StreamViolation::OverWindow { end: 9, limit: 8 })
        );
        r.handle_fin(5).unwrap();
        assert!(r.finish_due());
        assert_eq!(r.handle_fin(6), Err(StreamViolation::BeyondFin { fin: 5 }));
    }

    #[test]
    fn fin_ack_must_match_the_final_size() {
        let mut s = SendHalf::new(100);
        s.write(b"abc", 10);
        assert!(matches!(
            s.handle_ack(3, true),
            Err(StreamViolation::BadFinAck { .. })
        ));
        s.fin = Some(3);
        assert_eq!(s.handle_ack(3, true), Ok(false));
        assert!(s.done());
    }
}
