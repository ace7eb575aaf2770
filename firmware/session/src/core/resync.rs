//! Resynchronisation after a sudden switch: stating what we received, and
//! applying what the peer received (section 8 of `docs/protocol.md`).

use std::collections::BTreeSet;

use wire::{FrameType, ResetCode, StreamId, StreamKind, StreamSync, SyncState};

use super::{Core, violation};
use crate::event::Event;
use crate::violation::Violation;

impl Core {
    /// What we have received of every stream, for SWITCH_UNEXPECTED /
    /// ALL_REDIRECTED.
    pub fn sync_state(&self) -> SyncState {
        SyncState {
            peer_opened_seen: self.peer_opened_seen,
            streams: self
                .streams
                .iter()
                .map(|(id, s)| StreamSync {
                    stream: *id,
                    received: s.recv.received,
                    fin_received: s.recv.fin.is_some(),
                })
                .collect(),
        }
    }

    /// Applies the peer's [`SyncState`]: every stream resumes from what the
    /// peer has, lost OPENs are sent again, streams the peer forgot end.
    pub fn apply_sync(&mut self, peer: &SyncState) -> Result<(), Violation> {
        let mut listed = BTreeSet::new();
        for e in &peer.streams {
            if !listed.insert(e.stream) {
                return Err(Violation::ListedTwice(e.stream));
            }
            match self.streams.get_mut(&e.stream) {
                Some(s) if s.kind == StreamKind::Stream => {
                    s.send
                        .rewind(e.received, e.fin_received)
                        .map_err(|v| violation(e.stream, v))?;
                }
                Some(_) => {}
                None => match self.forgotten(e.stream, FrameType::SwitchUnexpected) {
                    Ok(_) => {
                        let reason = "stream already ended".to_owned();
                        self.resets.push_back((e.stream, ResetCode::Gone, reason));
                    }
                    // The peer opened it and its OPEN never arrived: the peer
                    // sends it again, since our `peer_opened_seen` is lower.
                    Err(_) if e.stream.opener() == self.role.peer() => {}
                    Err(reason) => return Err(reason),
                },
            }
        }
        let unlisted: Vec<StreamId> = self
            .streams
            .keys()
            .copied()
            .filter(|id| !listed.contains(id))
            .collect();
        for id in unlisted {
            let lost_open = id.opener() == self.role && id.index() >= peer.peer_opened_seen;
            if lost_open {
                if let Some(s) = self.streams.get_mut(&id) {
                    if s.send.acked > 0 || s.recv.received > 0 {
                        return Err(Violation::LostOpenWithData(id));
                    }
                    s.open_pending = true;
                    s.send.sent = 0;
                    s.send.fin_sent = false;
                }
            } else if let Some(s) = self.remove_stream(id) {
                // The peer forgot it: it ended normally there, or was reset.
                if s.send.fin.is_some() && s.recv.fin == Some(s.recv.received) {
                    self.events.push_back(Event::StreamClosed { stream: id });
                } else {
                    self.events.push_back(Event::StreamReset {
                        stream: id,
                        code: ResetCode::Gone,
                        reason: "the peer no longer knows this stream".into(),
                    });
                }
            }
        }
        for s in self.streams.values_mut() {
            s.recv.ack_pending = true;
        }
        // Every stream rewound or acknowledges again: all of them are due.
        self.touched.extend(self.streams.keys().copied());
        Ok(())
    }
}
