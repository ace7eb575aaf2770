//! The phone-side (box) or server-side (SNAPT) TCP connections of streams,
//! shared by both drivers: a paced reader that hands bytes to the session only
//! as fast as it takes them, a writer that reports what reached the socket,
//! and the bytes that wait for either.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use session::Streams;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use wire::StreamId;

use crate::connect::tune;
use crate::io::{WriteCmd, spawn_local_writer, spawn_paced_reader};

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
    /// `n` bytes were written to the socket.
    Delivered {
        /// The stream.
        key: K,
        /// How many.
        n: usize,
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
    reader: Option<AbortHandle>,
    /// Resets the connection (RST) instead of closing it.
    abort: Option<oneshot::Sender<()>>,
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
        let (abort_tx, abort_rx) = oneshot::channel();
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
            abort_rx,
            move |n| {
                s1(LocalEvent::Delivered { key: k1.clone(), n });
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
        local.reader = Some(reader.abort_handle());
        local.abort = Some(abort_tx);
    }

    /// Bytes (or the FIN) for the socket of `key`. Data for an unknown
    /// stream is kept until it connects; a FIN for one is dropped.
    pub fn deliver(&mut self, key: K, cmd: WriteCmd) {
        if matches!(cmd, WriteCmd::Finish) && !self.map.contains_key(&key) {
            return;
        }
        let l = self.map.entry(key).or_default();
        match &l.tx {
            Some(tx) => {
                let _ = tx.send(cmd);
            }
            None => l.early.push(cmd),
        }
    }

    /// Bytes read from the socket of `key`, to hand to the session.
    pub fn queue(&mut self, key: &K, bytes: Vec<u8>, ack: oneshot::Sender<()>) {
        if let Some(l) = self.map.get_mut(key) {
            l.pending.push_back((bytes, 0, ack));
        }
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
    }

    /// Resets the connection of `key` (RST, nothing more written): the
    /// stream was aborted, and the application must see an error, never an
    /// end of stream.
    pub fn abort(&mut self, key: &K) {
        if let Some(l) = self.map.remove(key) {
            if let Some(a) = l.abort {
                let _ = a.send(());
            }
            if let Some(r) = l.reader {
                r.abort();
            }
        }
    }

    /// Resets every connection whose key matches (a session ended).
    pub fn abort_where(&mut self, f: impl Fn(&K) -> bool) {
        let keys: Vec<K> = self.map.keys().filter(|k| f(k)).cloned().collect();
        for k in keys {
            self.abort(&k);
        }
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
