//! The tasks that move bytes between sockets and a driver: one reader and
//! one writer per tunnel and per local connection. A reader forwards what it
//! reads as a driver input; a writer takes chunks from a channel and reports
//! what it wrote. Neither holds protocol state.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, Span};

/// Read buffer of a tunnel: several TLS records' worth.
pub const READ_CHUNK: usize = 64 * 1024;

/// Most bytes a tunnel writer gathers from its queue into one flush.
const COALESCE_LIMIT: usize = 256 * 1024;

/// Read buffer of a local (application) connection: one DATA frame's worth,
/// so that 1,000 idle streams cost little memory.
pub const LOCAL_READ_CHUNK: usize = 16 * 1024;

/// Spawns a reader: every chunk read is passed to `on_bytes`; EOF or an
/// error ends it with `on_end`. It runs in `span` (a tunnel's).
pub fn spawn_reader<R, F, G>(mut rd: R, mut on_bytes: F, on_end: G, span: Span) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    F: FnMut(Vec<u8>) -> bool + Send + 'static,
    G: FnOnce(Option<std::io::Error>) + Send + 'static,
{
    let task = async move {
        let end = loop {
            let mut buf = Vec::with_capacity(READ_CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => {
                    // Queued for the driver: a small read keeps a small
                    // allocation, a large one is handed over uncopied.
                    if n < READ_CHUNK / 4 {
                        buf.shrink_to_fit();
                    }
                    if !on_bytes(buf) {
                        break None;
                    }
                }
                Err(e) => break Some(e),
            }
        };
        on_end(end);
    };
    tokio::spawn(task.instrument(span))
}

/// Spawns a reader with backpressure: after each chunk it waits until the
/// driver has taken the whole chunk (the oneshot fires) before reading more.
///
/// An idle connection holds no buffer: the reader waits for readability
/// and only then allocates the chunk it reads into, which it hands over
/// as it is (no copy).
pub fn spawn_paced_reader<F, G>(rd: OwnedReadHalf, mut on_chunk: F, on_end: G) -> JoinHandle<()>
where
    F: FnMut(Vec<u8>, oneshot::Sender<()>) -> bool + Send + 'static,
    G: FnOnce(Option<std::io::Error>) + Send + 'static,
{
    tokio::spawn(async move {
        let end = loop {
            if let Err(e) = rd.readable().await {
                break Some(e);
            }
            let mut buf = Vec::with_capacity(LOCAL_READ_CHUNK);
            match rd.try_read_buf(&mut buf) {
                Ok(0) => break None,
                Ok(_) => {
                    let (tx, rx) = oneshot::channel();
                    if !on_chunk(buf, tx) || rx.await.is_err() {
                        break None;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => break Some(e),
            }
        };
        on_end(end);
    })
}

/// What a writer is asked to do.
#[derive(Debug)]
pub enum WriteCmd {
    /// Write these bytes.
    Data(Vec<u8>),
    /// Write these decompressed bytes; they stand for `count` bytes of the
    /// (compressed) stream, which is what the writer reports as written.
    Decoded {
        /// Application bytes.
        bytes: Vec<u8>,
        /// Stream bytes they came from.
        count: usize,
    },
    /// Shut the write side down (FIN) once earlier data is written.
    Finish,
}

/// Spawns a writer; `on_written(n)` after each chunk, `on_end(err)` when the
/// channel closes or writing fails. It runs in `span` (a tunnel's). With a
/// `gate` (a tunnel's TCP socket), each chunk waits until little enough is
/// unsent in the socket.
pub fn spawn_writer<W, F, G>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    gate: Option<crate::gate::SendGate>,
    mut on_written: F,
    on_end: G,
    span: Span,
) where
    W: AsyncWrite + Unpin + Send + 'static,
    F: FnMut(usize) + Send + 'static,
    G: FnOnce(Option<std::io::Error>) + Send + 'static,
{
    let task = async move {
        let end = loop {
            match rx.recv().await {
                Some(WriteCmd::Data(b) | WriteCmd::Decoded { bytes: b, .. }) => {
                    // What else is queued goes in the same flush (fewer TLS
                    // flushes and system calls under load).
                    if let Some(g) = &gate {
                        g.ready().await;
                    }
                    let mut written = b.len();
                    let mut result = wr.write_all(&b).await;
                    let mut finish = false;
                    while result.is_ok() && written < COALESCE_LIMIT && !finish {
                        match rx.try_recv() {
                            Ok(WriteCmd::Data(more) | WriteCmd::Decoded { bytes: more, .. }) => {
                                // Out with what is written so far before
                                // the gate waits on the socket.
                                if let Some(g) = &gate {
                                    result = wr.flush().await;
                                    if result.is_err() {
                                        break;
                                    }
                                    g.ready().await;
                                }
                                written += more.len();
                                result = wr.write_all(&more).await;
                            }
                            Ok(WriteCmd::Finish) => finish = true,
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = result {
                        break Some(e);
                    }
                    if let Err(e) = wr.flush().await {
                        break Some(e);
                    }
                    on_written(written);
                    if finish {
                        let _ = wr.shutdown().await;
                    }
                }
                Some(WriteCmd::Finish) => {
                    let _ = wr.shutdown().await;
                }
                None => {
                    let _ = wr.shutdown().await;
                    break None;
                }
            }
        };
        on_end(end);
    };
    tokio::spawn(task.instrument(span));
}

/// What stops a local connection's writer early.
#[derive(Debug)]
pub enum Stop {
    /// Reset the connection (RST), even in the middle of a write the peer
    /// does not read.
    Abort,
    /// Stop writing — between two system calls, never inside one — report
    /// what the socket took, and give the write half back untouched (no FIN)
    /// for another process (a relay upgrade).
    Release(oneshot::Sender<Released>),
}

/// A local connection's write half, given back by its writer.
#[derive(Debug)]
pub struct Released {
    /// The half, its socket still open both ways.
    pub half: OwnedWriteHalf,
    /// Its FIN was sent (the stream's end reached the socket).
    pub fin_sent: bool,
}

/// Spawns the writer of a local (application) TCP connection: as
/// [`spawn_writer`] (`on_written(stream bytes, bytes written)`: they differ
/// for decompressed data). `stop` ends it early: [`Stop::Abort`] resets the
/// connection (RST: `SO_LINGER` 0, no FIN), so that an application reading
/// to EOF can never take a stream the relay aborted for a complete one;
/// [`Stop::Release`] hands the half back. Dropping `stop` without sending
/// is neither: the writer drains its channel and closes with FIN as usual.
pub fn spawn_local_writer<F, G>(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    mut stop: oneshot::Receiver<Stop>,
    mut on_written: F,
    on_end: G,
) where
    F: FnMut(usize, usize) + Send + 'static,
    G: FnOnce(Option<std::io::Error>) + Send + 'static,
{
    tokio::spawn(async move {
        // Whether `stop` can still fire (its sender was not dropped).
        let mut armed = true;
        let mut fin_sent = false;
        let end = loop {
            let cmd = tokio::select! {
                biased;
                r = &mut stop, if armed => match r {
                    Ok(Stop::Abort) => return reset(wr),
                    Ok(Stop::Release(reply)) => return release(wr, fin_sent, reply),
                    Err(_) => {
                        armed = false;
                        continue;
                    }
                },
                cmd = rx.recv() => cmd,
            };
            let (b, count) = match cmd {
                Some(WriteCmd::Data(b)) => {
                    let n = b.len();
                    (b, n)
                }
                Some(WriteCmd::Decoded { bytes, count }) => (bytes, count),
                Some(WriteCmd::Finish) => {
                    let _ = wr.shutdown().await;
                    fin_sent = true;
                    continue;
                }
                None => {
                    let _ = wr.shutdown().await;
                    break None;
                }
            };
            // One system call at a time, so that a stop between two of
            // them knows exactly what the socket took.
            let mut done = 0;
            let failed = loop {
                if done == b.len() {
                    break None;
                }
                tokio::select! {
                    biased;
                    r = &mut stop, if armed => match r {
                        Ok(Stop::Abort) => return reset(wr),
                        Ok(Stop::Release(reply)) => {
                            // A partly written plain chunk counts what
                            // went out; a decompressed one cannot be
                            // split (compressed streams are not handed
                            // over).
                            if done > 0 && count == b.len() {
                                on_written(done, done);
                            }
                            return release(wr, fin_sent, reply);
                        }
                        Err(_) => armed = false,
                    },
                    r = wr.write(&b[done..]) => match r {
                        Ok(0) => break Some(std::io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) => break Some(e),
                    },
                }
            };
            match failed {
                Some(e) => break Some(e),
                None => on_written(count, b.len()),
            }
        };
        on_end(end);
    });
}

/// Gives the write half back without the FIN its drop would send.
fn release(wr: OwnedWriteHalf, fin_sent: bool, reply: oneshot::Sender<Released>) {
    if let Err(Released { half, .. }) = reply.send(Released { half: wr, fin_sent }) {
        // Nobody took it: the connection ends as if reset.
        reset(half);
    }
}

/// Closes a connection with RST: zero linger, and the write half let go
/// without the FIN its drop would send (the fd closes with the read half).
fn reset(wr: OwnedWriteHalf) {
    let _ = wr.as_ref().set_zero_linger();
    wr.forget();
}
