//! The driver's end of a tunnel writer: the bytes handed to the writer task
//! and not yet reported written, held to a budget.
//!
//! While a tunnel's writer holds its budget (what it drains in 2 ms, within
//! [`BUDGET_FLOOR`]..[`BUDGET_CEILING`]) the driver tells the
//! session the tunnel is full, and stream data waits in the streams' own
//! buffers — where the scheduler can still put an interactive stream ahead
//! of a download — instead of in a queue nobody can reorder. Only control
//! frames (PONGs, switch messages) still go to a full writer; a writer that
//! holds [`TUNNEL_HARD_LIMIT`] bytes has a peer that does not read, and the
//! tunnel is given up rather than grow the daemon.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::io::WriteCmd;

/// Least and most bytes a tunnel writer may hold before stream data waits
/// in the session. In between, the budget is what the tunnel drains in
/// [`BUDGET_TIME`] at the rate it was last seen draining: on a 5 Mbit/s
/// uplink the floor (about 7 ms of data), on a gigabit path the ceiling.
pub const BUDGET_FLOOR: usize = 4 * 1024;
/// See [`BUDGET_FLOOR`].
pub const BUDGET_CEILING: usize = 256 * 1024;
/// See [`BUDGET_FLOOR`]: what a keystroke may find queued ahead of it in
/// the writer, in time.
pub const BUDGET_TIME: Duration = Duration::from_millis(2);
/// The budget before any rate was measured.
pub const TUNNEL_BUDGET: usize = 32 * 1024;

/// Bytes a tunnel writer may hold at all: past it the peer is not reading
/// (only control frames can get here, the PONGs of a peer that PINGs and
/// never reads, say).
pub const TUNNEL_HARD_LIMIT: usize = 1024 * 1024;

/// `TCP_NOTSENT_LOWAT` of tunnel sockets: the kernel takes more only once
/// less than this is waiting to be sent, so the socket buffer is not a
/// queue of seconds on a slow uplink.
pub const TUNNEL_NOTSENT_LOWAT: u32 = 4 * 1024;

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

/// The sending end of one tunnel writer with its byte count and the rate
/// it drains at.
#[derive(Debug)]
pub struct TunnelOut {
    tx: mpsc::UnboundedSender<WriteCmd>,
    queued: usize,
    budget: usize,
    /// Since when the writer has held bytes without a pause, and how many
    /// it wrote since (the drain rate is only meaningful while busy).
    busy: Option<(Instant, usize)>,
}

impl TunnelOut {
    /// Wraps the channel to a writer spawned with [`crate::io::spawn_writer`],
    /// whose `on_written` reports to [`Self::written`].
    pub fn new(tx: mpsc::UnboundedSender<WriteCmd>) -> Self {
        Self {
            tx,
            queued: 0,
            budget: TUNNEL_BUDGET,
            busy: None,
        }
    }

    /// Hands `bytes` to the writer.
    pub fn send(&mut self, bytes: Vec<u8>) -> Sent {
        self.send_at(bytes, Instant::now())
    }

    fn send_at(&mut self, bytes: Vec<u8>, now: Instant) -> Sent {
        let n = bytes.len();
        if self.queued + n > TUNNEL_HARD_LIMIT || self.tx.send(WriteCmd::Data(bytes)).is_err() {
            return Sent::Overflow;
        }
        self.queued += n;
        self.busy.get_or_insert((now, 0));
        if self.is_full() {
            Sent::Full
        } else {
            Sent::Room
        }
    }

    /// The writer wrote `n` bytes; true if that made room in a full writer.
    pub fn written(&mut self, n: usize) -> bool {
        self.written_at(n, Instant::now())
    }

    fn written_at(&mut self, n: usize, now: Instant) -> bool {
        let was_full = self.is_full();
        self.queued = self.queued.saturating_sub(n);
        if let Some((since, bytes)) = &mut self.busy {
            *bytes += n;
            let dt = now.saturating_duration_since(*since);
            if dt >= Duration::from_millis(20) {
                // Bytes per BUDGET_TIME at the rate of the last busy spell.
                let per = *bytes as f64 * BUDGET_TIME.as_secs_f64() / dt.as_secs_f64();
                self.budget = (per as usize).clamp(BUDGET_FLOOR, BUDGET_CEILING);
                *since = now;
                *bytes = 0;
            }
        }
        if self.queued == 0 {
            self.busy = None;
        }
        was_full && !self.is_full()
    }

    /// At or over the budget.
    pub fn is_full(&self) -> bool {
        self.queued >= self.budget
    }

    /// Bytes the writer may still take within its budget.
    pub fn room(&self) -> usize {
        self.budget.saturating_sub(self.queued)
    }

    /// Bytes handed to the writer and not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// The current budget (bytes).
    pub fn budget(&self) -> usize {
        self.budget
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

    #[test]
    fn the_budget_follows_the_drain_rate_within_its_bounds() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut out = TunnelOut::new(tx);
        // `n` bytes written every `every`, forty times (a busy spell of at
        // least 20 ms for the rates below), from `t`; the
        // writer always holds one more chunk than it wrote.
        let mut run = |t: Instant, n: usize, every: Duration| {
            out.send_at(vec![0; n], t);
            for i in 1..=40u32 {
                out.send_at(vec![0; n], t);
                out.written_at(n, t + every * i);
            }
            out.written_at(n, t + every * 41);
            assert_eq!(out.queued(), 0);
            out.budget()
        };
        let t0 = Instant::now();
        // A slow uplink, 16 KiB every 25 ms (5 Mbit/s): the floor.
        assert_eq!(run(t0, 16 * 1024, Duration::from_millis(25)), BUDGET_FLOOR);
        // A fast path, 256 KiB every 1 ms: the ceiling.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            run(t1, 256 * 1024, Duration::from_millis(1)),
            BUDGET_CEILING
        );
        // 40 MB/s: 2 ms is 80 kB.
        let b = run(
            t1 + Duration::from_secs(2),
            200_000,
            Duration::from_millis(5),
        );
        assert!((70_000..90_000).contains(&b), "{b}");
    }
}
