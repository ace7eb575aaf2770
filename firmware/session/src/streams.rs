//! The application side of a session, the same for both roles: open streams,
//! write and finish them, report deliveries, send datagrams.

use std::net::SocketAddr;

use wire::{ResetCode, ServiceName, StreamId, StreamKind};

use crate::core::{Core, StreamError};

/// Stream operations on one session, from `BoxSession::streams` or
/// `ServerSession::streams`.
#[derive(Debug)]
pub struct Streams<'a>(pub(crate) &'a mut Core);

impl Streams<'_> {
    /// Opens a byte stream or datagram flow to `service` on the peer.
    pub fn open(
        &mut self,
        kind: StreamKind,
        service: ServiceName,
        dest: Option<SocketAddr>,
    ) -> Result<StreamId, StreamError> {
        self.0.open_stream(kind, service, dest, wire::Codec::None)
    }

    /// As [`Self::open`], for a stream whose bytes are compressed with
    /// `codec` (the caller compresses and decompresses; the peer must be
    /// configured alike, or it resets the stream with `CodecMismatch`).
    pub fn open_with_codec(
        &mut self,
        kind: StreamKind,
        service: ServiceName,
        dest: Option<SocketAddr>,
        codec: wire::Codec,
    ) -> Result<StreamId, StreamError> {
        self.0.open_stream(kind, service, dest, codec)
    }

    /// Buffers application bytes; returns how many fit (0: wait for
    /// `Event::Writable`). The bytes are kept until the peer has delivered
    /// them, so they survive any handover.
    pub fn send(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        self.0.send(stream, data)
    }

    /// Bytes [`Self::send`] would take on `stream` now.
    pub fn capacity(&self, stream: StreamId) -> usize {
        self.0.send_capacity(stream)
    }

    /// The application closed its sending side (FIN after the buffered bytes).
    pub fn finish(&mut self, stream: StreamId) -> Result<(), StreamError> {
        self.0.finish(stream)
    }

    /// Aborts a stream in both directions.
    pub fn reset(
        &mut self,
        stream: StreamId,
        code: ResetCode,
        reason: &str,
    ) -> Result<(), StreamError> {
        self.0.reset(stream, code, reason)
    }

    /// The driver wrote `n` bytes of the stream's `Data` events to the local
    /// socket (this is what the peer's replay buffer waits for).
    pub fn delivered(&mut self, stream: StreamId, n: usize) -> Result<(), StreamError> {
        self.0.handle_delivered(stream, n)
    }

    /// Queues a datagram on a flow. While no tunnel carries data the queue
    /// holds `max_queued_datagrams`; beyond that the oldest is dropped.
    pub fn send_datagram(&mut self, flow: StreamId, bytes: Vec<u8>) -> Result<(), StreamError> {
        self.0.send_datagram(flow, bytes)
    }

    /// Streams and flows open now.
    pub fn count(&self) -> usize {
        self.0.stream_count()
    }

    /// Whether `stream` is open (not yet closed or reset).
    pub fn is_open(&self, stream: StreamId) -> bool {
        self.0.has_stream(stream)
    }
}
