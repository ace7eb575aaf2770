//! Scheduling of outgoing frames: control frames first (each to its own
//! tunnel, in order), then stream frames on the data tunnel, round-robin.

use wire::{Frame, StreamId};

use super::Core;
use crate::event::Transmit;

impl Core {
    /// Frames to write: control frames first (each to its tunnel, in order),
    /// then stream frames on the data tunnel, round-robin over streams.
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
        self.write_stream_frames(&mut out, max_bytes);
        while out.len() < max_bytes {
            let Some((flow, payload)) = self.datagrams.pop_front() else {
                break;
            };
            if self.streams.get(&flow).is_some_and(|s| !s.open_pending) {
                wire::encode(&Frame::Datagram { flow, payload }, &mut out);
            }
        }
        if out.is_empty() {
            None
        } else {
            Some(Transmit {
                tunnel: t,
                bytes: out,
            })
        }
    }

    fn write_stream_frames(&mut self, out: &mut Vec<u8>, max_bytes: usize) {
        let window = u64::from(self.cfg.window);
        let chunk = self.cfg.max_data_payload;
        let ids: Vec<StreamId> = self
            .streams
            .range(StreamId(self.rr_next)..)
            .chain(self.streams.range(..StreamId(self.rr_next)))
            .map(|(id, _)| *id)
            .collect();
        // Control parts (OPEN, ACK, WINDOW) of every stream first: they are
        // small and unblock the peer. In id order: the peer takes an OPEN
        // below its highest one seen for a stream that already ended, so
        // OPENs (also those resent after a resynchronisation) must never
        // overtake each other.
        let in_order: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in &in_order {
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
        }
        // Then data, one chunk per stream per pass.
        let mut progress = true;
        while progress && out.len() < max_bytes {
            progress = false;
            for id in &ids {
                if out.len() >= max_bytes {
                    self.rr_next = id.0;
                    break;
                }
                let Some(s) = self.streams.get_mut(id) else {
                    continue;
                };
                if let Some((offset, payload, replayed)) = s.send.next_chunk(chunk) {
                    self.stats.bytes_sent += payload.len() as u64;
                    self.stats.bytes_replayed += replayed;
                    wire::encode(
                        &Frame::Data {
                            stream: *id,
                            offset,
                            payload,
                        },
                        out,
                    );
                    progress = true;
                }
                if s.send.fin_due() {
                    s.send.fin_sent = true;
                    wire::encode(
                        &Frame::Fin {
                            stream: *id,
                            offset: s.send.sent,
                        },
                        out,
                    );
                }
            }
        }
        for id in ids {
            self.reap(id);
        }
    }
}
