//! Fair shares of a session's stream table among the phones. The table
//! (`max_streams`, 256 by default) is the box's, shared by every phone on
//! the PAN; one phone holding 300 idle connections used to take all of it
//! and have every other phone's new connections refused. Here one phone
//! (one source address) may hold at most [`SHARE_NUM`]/[`SHARE_DEN`] of the
//! table; beyond that its new connection or flow is refused (counted),
//! while the others still find room. Pure: the session is asked through a
//! closure.

use std::collections::HashMap;
use std::net::IpAddr;

use wire::StreamId;

use super::Key;

/// A phone's share of the table: three quarters.
pub const SHARE_NUM: usize = 3;
/// See [`SHARE_NUM`].
pub const SHARE_DEN: usize = 4;

/// Which phone holds which stream.
#[derive(Debug, Default)]
pub struct PhoneShares {
    owners: HashMap<Key, IpAddr>,
    counts: HashMap<IpAddr, usize>,
}

impl PhoneShares {
    /// The most one phone may hold of a table of `max_streams`.
    pub fn cap(max_streams: usize) -> usize {
        (max_streams * SHARE_NUM / SHARE_DEN).max(1)
    }

    /// Whether `phone` already holds its share of `site`'s table of
    /// `max_streams`; `is_open` tells which of `site`'s streams still exist
    /// (those that ended are forgotten here first).
    pub fn full(
        &mut self,
        site: usize,
        phone: IpAddr,
        max_streams: usize,
        mut is_open: impl FnMut(StreamId) -> bool,
    ) -> bool {
        let cap = Self::cap(max_streams);
        let held = |me: &Self| me.counts.get(&phone).copied().unwrap_or(0);
        // Forget ended streams when it matters (at the cap) or when the
        // memory has grown past what open streams could need.
        if held(self) >= cap || self.owners.len() > 2 * max_streams.max(1) {
            self.owners.retain(|(s, id), _| *s != site || is_open(*id));
            self.counts.clear();
            for ip in self.owners.values() {
                *self.counts.entry(*ip).or_default() += 1;
            }
        }
        held(self) >= cap
    }

    /// `phone` opened `key`.
    pub fn record(&mut self, key: Key, phone: IpAddr) {
        if let Some(old) = self.owners.insert(key, phone)
            && let Some(c) = self.counts.get_mut(&old)
        {
            *c = c.saturating_sub(1);
        }
        *self.counts.entry(phone).or_default() += 1;
    }

    /// Entries remembered (a bound check for tests).
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use wire::Role;

    fn sid(i: u32) -> StreamId {
        StreamId::new(Role::Box, i).unwrap_or_else(|| panic!("id {i}"))
    }

    #[test]
    fn one_phone_cannot_take_the_whole_table() {
        let mut s = PhoneShares::default();
        let greedy: IpAddr = "10.44.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let other: IpAddr = "10.44.0.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let open: HashSet<u32> = (0..256).collect();
        let mut taken = 0;
        for i in 0..300u32 {
            if s.full(0, greedy, 256, |id| open.contains(&id.index())) {
                break;
            }
            s.record((0, sid(i)), greedy);
            taken += 1;
        }
        assert_eq!(taken, 192);
        assert!(!s.full(0, other, 256, |_| true), "another phone finds room");
    }

    #[test]
    fn ended_streams_give_their_share_back_and_memory_stays_bounded() {
        let mut s = PhoneShares::default();
        let phone: IpAddr = IpAddr::from([10, 44, 0, 2]);
        // A day of short connections: each ends before the next.
        for i in 0..10_000u32 {
            assert!(!s.full(0, phone, 256, |id| id.index() == i), "at {i}");
            s.record((0, sid(i)), phone);
        }
        assert!(s.remembered() <= 2 * 256 + 1, "{}", s.remembered());
    }
}
