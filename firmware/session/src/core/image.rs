//! The stream table written down for a relay upgrade, and rebuilt from it
//! (see `crate::image`): replay buffers and offsets, never what was
//! received but not yet delivered.

use wire::StreamKind;

use super::Core;
use crate::image::{ImageError, StreamImage};
use crate::stream::{RecvHalf, SendHalf, Stream};

impl Core {
    /// Every stream's image.
    pub(crate) fn stream_images(&self) -> Vec<StreamImage> {
        self.streams
            .iter()
            .map(|(id, s)| {
                // The box's FIN counts only once every byte before it
                // reached the server: otherwise the box sends it again.
                let peer_fin = s.recv.fin.filter(|f| *f == s.recv.delivered);
                StreamImage {
                    id: *id,
                    kind: s.kind,
                    service: s.service.clone(),
                    dest: s.dest,
                    codec: s.codec,
                    open_pending: s.open_pending,
                    acked: s.send.acked,
                    max_sent: s.send.max_sent,
                    peer_limit: s.send.peer_limit,
                    unacked: s.send.unacked(),
                    fin: s.send.fin,
                    fin_acked: s.send.fin_acked,
                    delivered: s.recv.delivered,
                    limit: s.recv.limit,
                    peer_fin,
                    peer_fin_emitted: peer_fin.is_some() && s.recv.fin_emitted,
                }
            })
            .collect()
    }

    /// The (next index, streams seen) pair of an image.
    pub(crate) fn counters(&self) -> (u32, u32) {
        (self.next_index, self.peer_opened_seen)
    }

    /// Fills an empty stream table from an image.
    pub(crate) fn restore_streams(
        &mut self,
        next_index: u32,
        peer_opened_seen: u32,
        images: Vec<StreamImage>,
    ) -> Result<(), ImageError> {
        self.next_index = next_index;
        self.peer_opened_seen = peer_opened_seen;
        for img in images {
            img.check()?;
            let seen = if img.id.opener() == self.role {
                next_index
            } else {
                peer_opened_seen
            };
            if img.id.index() >= seen {
                return Err(ImageError::Inconsistent {
                    stream: img.id,
                    what: "an id beyond those opened",
                });
            }
            if self.streams.contains_key(&img.id) {
                return Err(ImageError::Inconsistent {
                    stream: img.id,
                    what: "listed twice",
                });
            }
            let mut s = Stream::new(
                img.kind,
                img.service.clone(),
                img.dest,
                false,
                img.limit,
                img.peer_limit,
            );
            s.codec = img.codec;
            s.open_pending = img.open_pending;
            if img.kind == StreamKind::Stream {
                let written = img.written();
                s.send = SendHalf::restored(img.acked, img.unacked, img.peer_limit, img.max_sent);
                s.send.fin = img.fin;
                s.send.fin_acked = img.fin_acked;
                debug_assert_eq!(s.send.written(), written);
                s.recv = RecvHalf::new(img.limit);
                s.recv.received = img.delivered;
                s.recv.delivered = img.delivered;
                s.recv.ack_sent = img.delivered;
                s.recv.fin = img.peer_fin;
                s.recv.fin_emitted = img.peer_fin_emitted;
                s.recv.ack_pending = true;
                self.stats.bytes_buffered += s.send.buffered() as u64;
            }
            self.streams.insert(img.id, s);
        }
        self.stats.streams_open = self.streams.len() as u64;
        Ok(())
    }
}
