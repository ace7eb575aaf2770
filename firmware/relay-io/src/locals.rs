//! The phone-side (box) or server-side (SNAPT) TCP connections of streams,
//! shared by both drivers: a paced reader that hands bytes to the session only
//! as fast as it takes them, a writer that reports what reached the socket,
//! and the bytes that wait for either. A compressed stream (`set_codec`)
//! compresses what it reads and decompresses what it writes, one record at
//! a time and only while less than [`DECODED_AHEAD`] bytes wait for the
//! socket: a peer's tiny records that expand hugely cost their window, not
//! the relay's memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use session::Streams;
use stream_codec::{CodecError, Compressor, Decompressor};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wire::StreamId;

use crate::connect::tune;
use crate::io::{Released, Stop, WriteCmd, spawn_local_writer, spawn_paced_reader};

/// What a local connection reports to its driver.
#[derive(Debug)]
pub enum LocalEvent<K> {
    /// Bytes read; `ack` once the session has taken all of them.
    Data {
        /// The stream.
        key: K,
        /// The bytes.
        bytes: Vec<u8>,
        /// Fire when consumed (lets the reader read on).
        ack: oneshot::Sender<()>,
    },
    /// EOF (`error` None) or a socket error.
    End {
        /// The stream.
        key: K,
        /// The error, if it was one.
        error: Option<String>,
    },
    /// Bytes were written to the socket.
    Delivered {
        /// The stream.
        key: K,
        /// How many bytes of the stream (compressed ones for a compressed
        /// stream): what the session counts as delivered.
        n: usize,
        /// How many bytes reached the socket.
        plain: usize,
    },
}

/// How a connection's tasks reach the driver; false once it is gone.
pub type Sink<K> = Arc<dyn Fn(LocalEvent<K>) -> bool + Send + Sync>;

#[derive(Default)]
struct Local {
    tx: Option<mpsc::UnboundedSender<WriteCmd>>,
    /// For the socket, before it is connected (a connect in progress).
    early: Vec<WriteCmd>,
    /// From the socket, not yet taken by the session.
    pending: VecDeque<(Vec<u8>, usize, oneshot::Sender<()>)>,
    eof: bool,
    reader: Option<JoinHandle<()>>,
    /// Stops the writer: a reset (RST) instead of a close, or a release.
    stop: Option<oneshot::Sender<Stop>>,
    /// A compressed stream's two halves.
    compress: Option<Compressor>,
    decompress: Option<Decompressor>,
    /// Decompressed bytes handed to the writer, not yet written.
    decoded_ahead: usize,
    /// The FIN, held until the last record is decompressed.
    fin_held: bool,
}

/// A connection stopped for a relay upgrade ([`Locals::release_all`]).
#[derive(Debug)]
pub struct Handover<K> {
    /// Its stream.
    pub key: K,
    /// Its reader, aborted: once it has ended, nothing more of this
    /// connection comes through the sink.
    pub reader: Option<JoinHandle<()>>,
    /// Its write half, once the writer stopped.
    pub writer: oneshot::Receiver<Released>,
    /// Bytes read from it that the session had not taken yet (more may
    /// still arrive through the sink: read them after the writer replied).
    pub unread: Vec<u8>,
    /// It reached EOF (the FIN for the session is still due).
    pub eof: bool,
}

/// Decompressed bytes a connection's writer may have waiting before the
/// next record is decompressed.
pub const DECODED_AHEAD: usize = 256 * 1024;

impl Local {
    fn send(&mut self, cmd: WriteCmd) {
        match &self.tx {
            Some(tx) => {
                let _ = tx.send(cmd);
            }
            None => self.early.push(cmd),
        }
    }

    /// Decompresses whole records while the writer has room ahead, then
    /// the FIN once nothing is left.
    fn decode(&mut self) -> Result<(), CodecError> {
        let Some(d) = &mut self.decompress else {
            return Ok(());
        };
        let mut out = Vec::new();
        while self.decoded_ahead < DECODED_AHEAD {
            match d.next_record()? {
                Some((bytes, count)) => {
                    self.decoded_ahead += bytes.len();
                    out.push(WriteCmd::Decoded { bytes, count });
                }
                None => break,
            }
        }
        let fin = if self.fin_held && self.decoded_ahead < DECODED_AHEAD {
            if d.pending() > 0 {
                return Err(CodecError::Corrupt("the stream ended inside a record"));
            }
            self.fin_held = false;
            true
        } else {
            false
        };
        for cmd in out {
            self.send(cmd);
        }
        if fin {
            self.send(WriteCmd::Finish);
        }
        Ok(())
    }
}

/// The local connections of a driver's streams.
pub struct Locals<K> {
    map: HashMap<K, Local>,
    sink: Sink<K>,
}

impl<K> std::fmt::Debug for Locals<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locals")
            .field("connections", &self.map.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Locals<K> {
    /// Connections reporting through `sink`.
    pub fn new(sink: Sink<K>) -> Self {
        Self {
            map: HashMap::new(),
            sink,
        }
    }

    /// Reserves `key` for a connection being made (its bytes wait meanwhile).
    pub fn reserve(&mut self, key: K) {
        self.map.entry(key).or_default();
    }

    /// Whether `key` has (or waits for) a connection.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Starts the reader and writer of `stream` for `key`.
    pub fn attach(&mut self, key: K, stream: TcpStream) {
        tune(&stream);
        let (rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (s1, s2, s3, s4) = (
            self.sink.clone(),
            self.sink.clone(),
            self.sink.clone(),
            self.sink.clone(),
        );
        let (k1, k2, k3, k4) = (key.clone(), key.clone(), key.clone(), key.clone());
        spawn_local_writer(
            wr,
            wrx,
            stop_rx,
            move |n, plain| {
                s1(LocalEvent::Delivered {
                    key: k1.clone(),
                    n,
                    plain,
                });
            },
            move |err| {
                if let Some(e) = err {
                    s4(LocalEvent::End {
                        key: k4,
                        error: Some(e.to_string()),
                    });
                }
            },
        );
        let reader = spawn_paced_reader(
            rd,
            move |bytes, ack| {
                s2(LocalEvent::Data {
                    key: k2.clone(),
                    bytes,
                    ack,
                })
            },
            move |err| {
                s3(LocalEvent::End {
                    key: k3,
                    error: err.map(|e| e.to_string()),
                });
            },
        );
        let local = self.map.entry(key).or_default();
        for cmd in local.early.drain(..) {
            let _ = wtx.send(cmd);
        }
        local.tx = Some(wtx);
        local.reader = Some(reader);
        local.stop = Some(stop_tx);
    }

    /// Compresses the stream of `key` with `codec` from now on (before its
    /// first byte either way).
    pub fn set_codec(&mut self, key: K, codec: wire::Codec) -> Result<(), CodecError> {
        let l = self.map.entry(key).or_default();
        l.compress = Compressor::new(codec)?;
        l.decompress = Decompressor::new(codec)?;
        Ok(())
    }

    /// Bytes (or the FIN) for the socket of `key`. Data for an unknown
    /// stream is kept until it connects; a FIN for one is dropped. A
    /// compressed stream's records are decompressed as the socket takes
    /// them; a corrupt one is an error (reset the stream).
    pub fn deliver(&mut self, key: K, cmd: WriteCmd) -> Result<(), CodecError> {
        if matches!(cmd, WriteCmd::Finish) && !self.map.contains_key(&key) {
            return Ok(());
        }
        let l = self.map.entry(key).or_default();
        if l.decompress.is_none() {
            l.send(cmd);
            return Ok(());
        }
        match cmd {
            WriteCmd::Data(bytes) => {
                if let Some(d) = &mut l.decompress {
                    d.push(&bytes);
                }
            }
            WriteCmd::Finish => l.fin_held = true,
            WriteCmd::Decoded { .. } => l.send(cmd),
        }
        l.decode()
    }

    /// `plain` decompressed bytes of `key` reached its socket: decompress
    /// further records.
    pub fn drained(&mut self, key: &K, plain: usize) -> Result<(), CodecError> {
        match self.map.get_mut(key) {
            Some(l) if l.decompress.is_some() => {
                l.decoded_ahead = l.decoded_ahead.saturating_sub(plain);
                l.decode()
            }
            _ => Ok(()),
        }
    }

    /// Bytes read from the socket of `key`, to hand to the session
    /// (compressed first, for a compressed stream).
    pub fn queue(
        &mut self,
        key: &K,
        bytes: Vec<u8>,
        ack: oneshot::Sender<()>,
    ) -> Result<(), CodecError> {
        if let Some(l) = self.map.get_mut(key) {
            let bytes = match &mut l.compress {
                Some(c) => c.compress(&bytes)?,
                None => bytes,
            };
            l.pending.push_back((bytes, 0, ack));
        }
        Ok(())
    }

    /// The socket of `key` reached EOF: FIN after the queued bytes.
    pub fn mark_eof(&mut self, key: &K) {
        if let Some(l) = self.map.get_mut(key) {
            l.eof = true;
        }
    }

    /// Hands queued bytes to the session as far as it takes them (the
    /// reader waits for the rest: `Writable` calls this again), then the FIN.
    pub fn push(&mut self, key: &K, stream: StreamId, streams: &mut Streams<'_>) {
        let Some(local) = self.map.get_mut(key) else {
            return;
        };
        while let Some((bytes, off, _)) = local.pending.front_mut() {
            match streams.send(stream, &bytes[*off..]) {
                Ok(n) => *off += n,
                Err(_) => {
                    local.pending.clear();
                    return;
                }
            }
            if *off < bytes.len() {
                return;
            }
            if let Some((_, _, ack)) = local.pending.pop_front() {
                let _ = ack.send(());
            }
        }
        if local.eof {
            local.eof = false;
            let _ = streams.finish(stream);
        }
    }

    /// Closes the connection of `key` after the bytes already queued for it
    /// (FIN if its FIN was delivered): the stream ended normally. Its reader
    /// stops at once.
    pub fn remove(&mut self, key: &K) {
        if let Some(r) = self.map.remove(key).and_then(|l| l.reader) {
            r.abort();
        }
        self.shrink();
    }

    /// Gives back the table's room once most of it is empty (a map keeps
    /// the capacity of its busiest moment: 5,000 connections leave about
    /// a megabyte behind otherwise). Geometric, so its cost is amortized.
    fn shrink(&mut self) {
        let cap = self.map.capacity();
        if cap > 256 && self.map.len() < cap / 4 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Resets the connection of `key` (RST, nothing more written): the
    /// stream was aborted, and the application must see an error, never an
    /// end of stream.
    pub fn abort(&mut self, key: &K) {
        if let Some(l) = self.map.remove(key) {
            if let Some(a) = l.stop {
                let _ = a.send(Stop::Abort);
            }
            if let Some(r) = l.reader {
                r.abort();
            }
        }
        self.shrink();
    }

    /// Resets every connection whose key matches (a session ended); how
    /// many there were.
    pub fn abort_where(&mut self, f: impl Fn(&K) -> bool) -> usize {
        let keys: Vec<K> = self.map.keys().filter(|k| f(k)).cloned().collect();
        for k in &keys {
            self.abort(k);
        }
        keys.len()
    }

    /// Stops every connection for a relay upgrade: readers at once,
    /// writers between two system calls, handing back their write half
    /// (the reply) — reporting first, through the sink, what their socket
    /// took. Compressed streams (their codec state cannot move) and
    /// connections not yet made are reset or dropped; each connection's
    /// bytes read but not yet taken by the session, and whether it reached
    /// EOF, come back with it. The table is empty afterwards.
    pub fn release_all(&mut self) -> Vec<Handover<K>> {
        let mut out = Vec::new();
        for (key, l) in std::mem::take(&mut self.map) {
            if let Some(r) = &l.reader {
                r.abort();
            }
            let reader = l.reader;
            match l.stop {
                Some(stop) if l.compress.is_none() => {
                    let (tx, rx) = oneshot::channel();
                    let _ = stop.send(Stop::Release(tx));
                    out.push(Handover {
                        key,
                        reader,
                        writer: rx,
                        unread: l
                            .pending
                            .into_iter()
                            .flat_map(|(b, off, _)| b.into_iter().skip(off))
                            .collect(),
                        eof: l.eof,
                    });
                }
                Some(stop) => {
                    let _ = stop.send(Stop::Abort);
                }
                None => {}
            }
        }
        out
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_its_room_back_when_the_connections_are_gone() {
        let sink: Sink<u32> = Arc::new(|_| true);
        let mut l = Locals::new(sink);
        for k in 0..5000u32 {
            l.reserve(k);
        }
        let busy = l.map.capacity();
        assert!(busy >= 5000);
        for k in 0..4990u32 {
            if k % 2 == 0 {
                l.remove(&k);
            } else {
                l.abort(&k);
            }
        }
        assert_eq!(l.map.len(), 10);
        assert!(
            l.map.capacity() <= 256,
            "capacity {} of {busy} kept for 10 connections",
            l.map.capacity()
        );
        // The ten left are still there.
        assert!((4990..5000).all(|k| l.contains(&k)));
    }
}
