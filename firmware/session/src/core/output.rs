//! Scheduling of outgoing frames: control frames first (each to its own
//! tunnel, in order), then on the data tunnel — as far as its writer has
//! room —
//! the streams' OPEN / ACK / WINDOW parts, RESETs, stream data by deficit
//! round robin, and datagrams.
//!
//! Nothing here walks every stream: a stream is *touched* when something
//! may have changed what it has to send (the application wrote, the peer
//! acknowledged or granted credit, a resynchronisation rewound it); a poll
//! looks at the touched streams and at the scheduling queues only, so the
//! cost of an input does not grow with the number of idle streams.
//!
//! The data scheduler is deficit round robin with a quantum of one DATA
//! frame and the fq_codel idea of new flows first: a stream that gets data
//! after having had none joins `fresh` and is served before every stream
//! that has been sending for a while (`busy`); after its turn, a stream
//! with more to send goes to the back of `busy`. An interactive stream
//! therefore waits behind at most one frame of each bulk stream.

use wire::{Frame, StreamId};

use super::Core;
use crate::event::Transmit;

/// The smallest DATA payload the scheduler cuts when room is short.
const MIN_CHUNK: usize = 1024;

impl Core {
    /// Frames to write: control frames first (each to its tunnel, in order),
    /// then stream frames on the data tunnel while its writer has room.
    pub fn poll_transmit(&mut self, max_bytes: usize) -> Option<Transmit> {
        if let Some(&(t, _)) = self.control.front() {
            let mut bytes = Vec::new();
            while let Some((ct, _)) = self.control.front() {
                if *ct != t || bytes.len() >= max_bytes {
                    break;
                }
                if let Some((_, f)) = self.control.pop_front() {
                    wire::encode(&f, &mut bytes);
                }
            }
            return Some(Transmit { tunnel: t, bytes });
        }
        let t = self.data_tunnel?;
        let room = self.room.get(&t).copied().unwrap_or(usize::MAX);
        if room == 0 {
            return None;
        }
        let max_bytes = max_bytes.min(room);
        let mut out = Vec::new();
        while let Some((stream, code, reason)) = self.resets.pop_front() {
            wire::encode(
                &Frame::Reset {
                    stream,
                    code,
                    reason,
                },
                &mut out,
            );
        }
        self.write_stream_controls(&mut out);
        // Datagrams (small, late is useless) before stream data, but in at
        // most half the room while streams wait: a UDP flood cannot starve
        // them. Then the data, then more datagrams if room is left.
        self.write_datagrams(&mut out, max_bytes / 2);
        self.write_stream_data(&mut out, max_bytes);
        self.write_datagrams(&mut out, max_bytes);
        if out.is_empty() {
            None
        } else {
            Some(Transmit {
                tunnel: t,
                bytes: out,
            })
        }
    }

    /// Something about stream `id` may have changed what it has to send.
    pub(super) fn touch(&mut self, id: StreamId) {
        self.touched.insert(id);
    }

    /// Datagrams while `out` is shorter than `limit` (the first always).
    fn write_datagrams(&mut self, out: &mut Vec<u8>, limit: usize) {
        while out.len() < limit.max(1) {
            let Some((flow, payload)) = self.datagrams.pop_front() else {
                break;
            };
            // Its OPEN went out with the stream controls before.
            if self.streams.get(&flow).is_some_and(|s| !s.open_pending) {
                wire::encode(&Frame::Datagram { flow, payload }, out);
            }
        }
    }

    fn write_stream_controls(&mut self, out: &mut Vec<u8>) {
        let window = u64::from(self.cfg.window);
        // Control parts (OPEN, ACK, WINDOW) of the touched streams first:
        // they are small and unblock the peer. In id order: the peer takes
        // an OPEN below its highest one seen for a stream that already
        // ended, so OPENs (also those resent after a resynchronisation) must
        // never overtake each other — every stream with an OPEN due is
        // touched, so all of them go out here, in order.
        let touched = std::mem::take(&mut self.touched);
        for id in &touched {
            let Some(s) = self.streams.get_mut(id) else {
                continue;
            };
            if s.open_pending {
                s.open_pending = false;
                let f = Frame::Open {
                    stream: *id,
                    kind: s.kind,
                    service: s.service.clone(),
                    dest: s.dest,
                    codec: s.codec,
                };
                wire::encode(&f, out);
            }
            if s.recv.ack_pending {
                s.recv.ack_pending = false;
                let fin = s.recv.fin_delivered();
                wire::encode(
                    &Frame::Ack {
                        stream: *id,
                        offset: s.recv.delivered,
                        fin,
                    },
                    out,
                );
                s.recv.ack_sent = s.recv.delivered;
                s.recv.fin_ack_sent |= fin;
                let limit = s.recv.delivered + window;
                if limit > s.recv.limit {
                    s.recv.limit = limit;
                }
                wire::encode(
                    &Frame::Window {
                        stream: *id,
                        limit: s.recv.limit,
                    },
                    out,
                );
            }
            if !s.scheduled && s.send.ready() {
                s.scheduled = true;
                self.fresh.push_back(*id);
            }
        }
        for id in touched {
            self.reap(id);
        }
    }

    /// Stream data, one frame per turn, fresh streams first.
    fn write_stream_data(&mut self, out: &mut Vec<u8>, max_bytes: usize) {
        // Frames no bigger than the room: on a slow uplink the writer's
        // budget is a few KiB, and a keystroke waits behind at most that.
        let chunk = self.cfg.max_data_payload.min(max_bytes.max(MIN_CHUNK));
        while out.len() < max_bytes {
            let Some(id) = self.fresh.pop_front().or_else(|| self.busy.pop_front()) else {
                break;
            };
            // Ids of streams that ended since they were queued are skipped.
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.scheduled = false;
            if let Some((len, replayed)) = s.send.write_next_chunk(id, chunk, out) {
                self.stats.bytes_sent += len as u64;
                self.stats.bytes_replayed += replayed;
            }
            if s.send.fin_due() {
                s.send.fin_sent = true;
                wire::encode(
                    &Frame::Fin {
                        stream: id,
                        offset: s.send.sent,
                    },
                    out,
                );
            }
            if s.send.ready() {
                s.scheduled = true;
                self.busy.push_back(id);
            }
        }
    }
}
