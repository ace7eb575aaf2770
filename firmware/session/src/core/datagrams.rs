//! The datagrams waiting for the tunnel, bounded in count and in bytes,
//! fair among flows: when a datagram does not fit, the flow holding the
//! most bytes gives up its oldest one (the idea of fq's drop from the
//! fattest flow). A video call sent faster than the uplink loses its own
//! datagrams, not the DNS query or the game's packets beside it — with one
//! queue dropping its oldest, a phone's lookups failed whenever its video
//! outran LTE. Order is kept: datagrams leave first in, first out.

use std::collections::{HashMap, VecDeque};

use wire::StreamId;

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct DatagramQueue {
    queue: VecDeque<(StreamId, Vec<u8>)>,
    bytes: usize,
    /// Payload bytes queued per flow.
    load: HashMap<StreamId, usize>,
}

impl DatagramQueue {
    /// Queues `bytes` of `flow` within `max_count` datagrams and
    /// `max_bytes`; returns how many datagrams were dropped for room.
    pub(crate) fn push(
        &mut self,
        flow: StreamId,
        bytes: Vec<u8>,
        max_count: usize,
        max_bytes: usize,
    ) -> u64 {
        let mut dropped = 0;
        while !self.queue.is_empty()
            && (self.queue.len() >= max_count || self.bytes + bytes.len() > max_bytes)
        {
            // The heaviest flow, counting the newcomer as its flow's.
            let newcomer = bytes.len();
            let heaviest = self
                .load
                .iter()
                .map(|(f, b)| (*f, *b + if *f == flow { newcomer } else { 0 }))
                .max_by_key(|(f, b)| (*b, std::cmp::Reverse(*f)))
                .map(|(f, _)| f);
            let at = heaviest
                .and_then(|h| self.queue.iter().position(|(f, _)| *f == h))
                .unwrap_or(0);
            if self.remove(at).is_none() {
                break;
            }
            dropped += 1;
        }
        self.bytes += bytes.len();
        *self.load.entry(flow).or_default() += bytes.len();
        self.queue.push_back((flow, bytes));
        dropped
    }

    fn remove(&mut self, at: usize) -> Option<(StreamId, Vec<u8>)> {
        let (flow, payload) = self.queue.remove(at)?;
        self.bytes -= payload.len();
        if let Some(l) = self.load.get_mut(&flow) {
            *l -= payload.len();
            if *l == 0 && !self.queue.iter().any(|(f, _)| *f == flow) {
                self.load.remove(&flow);
            }
        }
        Some((flow, payload))
    }

    /// The next datagram to send.
    pub(crate) fn pop_front(&mut self) -> Option<(StreamId, Vec<u8>)> {
        self.remove(0)
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.load.clear();
        self.bytes = 0;
    }

    /// Datagrams queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Role;

    fn flow(i: u32) -> StreamId {
        StreamId::new(Role::Box, i).unwrap_or_else(|| panic!("id {i}"))
    }

    #[test]
    fn a_flood_loses_its_own_datagrams_and_the_small_flows_keep_theirs() {
        let mut q = DatagramQueue::default();
        let (video, dns) = (flow(1), flow(2));
        let mut dropped = 0;
        for i in 0..1000u32 {
            dropped += q.push(video, vec![0; 1200], 256, 64 * 1024);
            if i % 100 == 0 {
                dropped += q.push(dns, vec![1; 60], 256, 64 * 1024);
            }
        }
        let mut out = Vec::new();
        while let Some((f, _)) = q.pop_front() {
            out.push(f);
        }
        assert_eq!(
            out.iter().filter(|f| **f == dns).count(),
            10,
            "every query kept"
        );
        assert!(out.iter().filter(|f| **f == video).count() <= 64 * 1024 / 1200);
        assert_eq!(dropped as usize + out.len(), 1010);
    }

    #[test]
    fn order_is_kept_and_the_bounds_hold() {
        let mut q = DatagramQueue::default();
        for i in 0..10u8 {
            q.push(flow(u32::from(i % 3)), vec![i], 4, 1 << 20);
            assert!(q.len() <= 4);
        }
        let mut last = None;
        while let Some((_, p)) = q.pop_front() {
            assert!(last.is_none_or(|l| p[0] > l), "out of order");
            last = Some(p[0]);
        }
        assert!(q.load.is_empty() && q.bytes == 0);
    }
}
