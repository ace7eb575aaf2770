//! The applications of the world: writers producing pattern bytes (as fast
//! as the session takes them, or paced records), readers checking every byte
//! and "writing it to the local socket" at a chosen rate.

use std::time::Instant;

use wire::{BoxId, ServiceName, StreamId, StreamKind};

use super::{Direction, RECORD, World};

impl Direction {
    /// Bytes the writer has produced by `now`.
    pub(super) fn allowed(&self, now: Instant) -> u64 {
        match (self.pace, self.start) {
            (Some(p), Some(s)) if now >= s => {
                let ticks = ((now - s).as_nanos() / p.as_nanos().max(1)) as u64 + 1;
                (ticks * RECORD).min(self.total)
            }
            (Some(_), _) => 0,
            (None, _) => self.total,
        }
    }

    /// When a paced writer produces its next record.
    pub(super) fn next_write(&self, now: Instant) -> Option<Instant> {
        let (p, s) = (self.pace?, self.start?);
        if self.written >= self.total || now < s {
            return None;
        }
        let ticks = ((now - s).as_nanos() / p.as_nanos().max(1)) as u32 + 1;
        Some(s + p * ticks)
    }
}

impl World {
    /// Applications: open due streams, write what fits, finish, consume.
    pub(super) fn pump_apps(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for i in 0..self.streams.len() {
            let (site, by_box, start, id) = {
                let s = &self.streams[i];
                (s.site, s.opened_by_box, s.start, s.id)
            };
            if id.is_none() {
                if start > now {
                    continue;
                }
                let svc = ServiceName::new("svc").unwrap();
                if by_box {
                    if let Ok(sid) =
                        self.session(site)
                            .streams()
                            .open(StreamKind::Stream, svc, None)
                    {
                        self.streams[i].id = Some(sid);
                        self.by_box.insert((site, sid), i);
                        moved = true;
                    }
                } else {
                    // A push waits until the box has confirmed the session (a
                    // session whose CONNECT_ACK was lost is replaced).
                    let confirmed = self.session(site).session_id();
                    let Some(sess) = self.servers[site].session_mut(&BoxId::new("box-1").unwrap())
                    else {
                        continue;
                    };
                    if sess.session_id() != confirmed {
                        continue;
                    }
                    if let Ok(sid) = sess.streams().open(StreamKind::Stream, svc, None) {
                        self.streams[i].id = Some(sid);
                        self.by_server.insert((site, sid), i);
                        moved = true;
                    }
                }
                continue;
            }
            let Some(sid) = id else { continue };
            moved |= self.pump_direction(i, sid, true);
            moved |= self.pump_direction(i, sid, false);
        }
        moved
    }

    /// Writer and reader of one direction of stream `i` (`up`: box → server).
    fn pump_direction(&mut self, i: usize, sid: StreamId, up: bool) -> bool {
        let site = self.streams[i].site;
        let consume = self.consume_per_pump;
        let dir = if up {
            self.streams[i].up.clone()
        } else {
            self.streams[i].down.clone()
        };
        let mut moved = false;
        let now = self.now;
        let box_id = BoxId::new("box-1").unwrap();
        // Writer side.
        if dir.written < dir.total || !dir.finished {
            let mut written = dir.written;
            let mut finished = dir.finished;
            let mut op = |streams: &mut session::Streams<'_>| {
                let allowed = dir.allowed(now);
                if written < allowed {
                    let n = (allowed - written).min(8 * 1024) as usize;
                    let buf: Vec<u8> = (0..n as u64)
                        .map(|k| dir.byte(sid, up, written + k))
                        .collect();
                    if let Ok(took) = streams.send(sid, &buf) {
                        written += took as u64;
                    }
                }
                if written == dir.total && !finished && streams.finish(sid).is_ok() {
                    finished = true;
                }
            };
            if up {
                op(&mut self.session(site).streams());
            } else if let Some(s) = self.servers[site].session_mut(&box_id) {
                op(&mut s.streams());
            }
            let d = if up {
                &mut self.streams[i].up
            } else {
                &mut self.streams[i].down
            };
            moved |= written != d.written || finished != d.finished;
            d.written = written;
            d.finished = finished;
        }
        // Reader side: "write to the local socket" at most `consume` bytes.
        let d = if up {
            &mut self.streams[i].up
        } else {
            &mut self.streams[i].down
        };
        if d.undelivered > 0 {
            let n = d.undelivered.min(consume);
            d.undelivered -= n;
            moved = true;
            if up {
                if let Some(s) = self.servers[site].session_mut(&box_id) {
                    let _ = s.streams().delivered(sid, n as usize);
                }
            } else {
                let _ = self.session(site).streams().delivered(sid, n as usize);
            }
        }
        moved
    }
}

pub(super) fn check_bytes(
    d: &mut Direction,
    stream: StreamId,
    up: bool,
    bytes: &[u8],
    now: Instant,
) {
    if let (Some(pace), Some(start)) = (d.pace, d.start) {
        // Records completed by these bytes, and how late each one is.
        let first = d.received / RECORD;
        let last = (d.received + bytes.len() as u64) / RECORD;
        for k in first..last {
            let written_at = start + pace * k as u32;
            if d.measure_from.is_some_and(|m| written_at < m) {
                continue;
            }
            d.max_record_delay = d
                .max_record_delay
                .max(now.saturating_duration_since(written_at));
        }
    }
    for (k, b) in bytes.iter().enumerate() {
        let off = d.received + k as u64;
        if d.corrupt_at.is_none() && (off >= d.total || *b != d.byte(stream, up, off)) {
            d.corrupt_at = Some(off);
        }
    }
    d.received += bytes.len() as u64;
    d.undelivered += bytes.len() as u64;
}
