//! The driver's end of a tunnel writer: the bytes handed to the writer task
//! and not yet reported written, held to a budget.
//!
//! While a tunnel's writer holds [`TUNNEL_BUDGET`] bytes the driver tells the
//! session the tunnel is full, and stream data waits in the streams' own
//! buffers — where the scheduler can still put an interactive stream ahead
//! of a download — instead of in a queue nobody can reorder. Only control
//! frames (PONGs, switch messages) still go to a full writer; a writer that
//! holds [`TUNNEL_HARD_LIMIT`] bytes has a peer that does not read, and the
//! tunnel is given up rather than grow the daemon.

use tokio::sync::mpsc;

use crate::io::WriteCmd;

/// Bytes a tunnel writer may hold before stream data waits in the session:
/// about one TLS record being written and one waiting. With the socket's
/// `TCP_NOTSENT_LOWAT` this bounds what a keystroke can find ahead of it.
pub const TUNNEL_BUDGET: usize = 32 * 1024;

/// Bytes a tunnel writer may hold at all: past it the peer is not reading
/// (only control frames can get here, the PONGs of a peer that PINGs and
/// never reads, say).
pub const TUNNEL_HARD_LIMIT: usize = 1024 * 1024;

/// `TCP_NOTSENT_LOWAT` of tunnel sockets: the kernel takes more only once
/// less than this is waiting to be sent, so the socket buffer is not a
/// queue of seconds on a slow uplink.
pub const TUNNEL_NOTSENT_LOWAT: u32 = 16 * 1024;

/// What handing bytes to the writer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued; the writer has room for more.
    Room,
    /// Queued; the writer is at its budget now.
    Full,
    /// Not queued: the writer holds the hard limit (or is gone); give the
    /// tunnel up.
    Overflow,
}

/// The sending end of one tunnel writer with its byte count.
#[derive(Debug)]
pub struct TunnelOut {
    tx: mpsc::UnboundedSender<WriteCmd>,
    queued: usize,
}

impl TunnelOut {
    /// Wraps the channel to a writer spawned with [`crate::io::spawn_writer`],
    /// whose `on_written` reports to [`Self::written`].
    pub fn new(tx: mpsc::UnboundedSender<WriteCmd>) -> Self {
        Self { tx, queued: 0 }
    }

    /// Hands `bytes` to the writer.
    pub fn send(&mut self, bytes: Vec<u8>) -> Sent {
        let n = bytes.len();
        if self.queued + n > TUNNEL_HARD_LIMIT || self.tx.send(WriteCmd::Data(bytes)).is_err() {
            return Sent::Overflow;
        }
        self.queued += n;
        if self.is_full() {
            Sent::Full
        } else {
            Sent::Room
        }
    }

    /// The writer wrote `n` bytes; true if that made room in a full writer.
    pub fn written(&mut self, n: usize) -> bool {
        let was_full = self.is_full();
        self.queued = self.queued.saturating_sub(n);
        was_full && !self.is_full()
    }

    /// At or over the budget.
    pub fn is_full(&self) -> bool {
        self.queued >= TUNNEL_BUDGET
    }

    /// Bytes handed to the writer and not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_fills_drains_and_overflows_at_the_hard_limit() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut out = TunnelOut::new(tx);
        assert_eq!(out.send(vec![0; 16 * 1024]), Sent::Room);
        assert_eq!(out.send(vec![0; 16 * 1024]), Sent::Full);
        assert_eq!(out.send(vec![0; 1024]), Sent::Full);
        assert!(!out.written(1024), "still at the budget");
        assert!(out.written(1024), "room again");
        assert!(!out.is_full());
        assert!(!out.written(1024), "had room already");
        // A peer that never reads: only control frames pile up, to a point.
        let mut sent = 0;
        while out.send(vec![0; 64]) != Sent::Overflow {
            sent += 1;
            assert!(sent < TUNNEL_HARD_LIMIT, "bounded");
        }
        assert!(out.queued() <= TUNNEL_HARD_LIMIT);
        assert!(rx.try_recv().is_ok());
        drop(rx);
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        assert_eq!(
            TunnelOut::new(tx).send(vec![1]),
            Sent::Overflow,
            "writer gone"
        );
    }
}
