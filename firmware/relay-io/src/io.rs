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

/// The largest read buffer of a busy local connection: each read that
/// fills its buffer doubles the next one up to this (fewer reads, wake-ups
/// and hand-overs per byte of a bulk transfer); a read that does not goes
/// back to [`LOCAL_READ_CHUNK`].
pub const LOCAL_READ_MAX: usize = 64 * 1024;

/// Most bytes a local writer gathers from its queue into one (vectored)
/// system call.
const LOCAL_GATHER_LIMIT: usize = 256 * 1024;

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
        let mut size = LOCAL_READ_CHUNK;
        let end = loop {
            if let Err(e) = rd.readable().await {
                break Some(e);
            }
            let mut buf = Vec::with_capacity(size);
            match rd.try_read_buf(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    size = if n >= size {
                        (size * 2).min(LOCAL_READ_MAX)
                    } else {
                        LOCAL_READ_CHUNK
                    };
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
                        g.ready_for(b.len()).await;
                    }
                    let mut written = b.len();
                    let mut result = wr.write_all(&b).await;
                    let mut finish = false;
                    while result.is_ok() && written < COALESCE_LIMIT && !finish {
                        match rx.try_recv() {
                            Ok(WriteCmd::Data(more) | WriteCmd::Decoded { bytes: more, .. }) => {
                                // Out with what is written so far before
                                // the gate looks at the socket (unless the
                                // last look still covers this chunk).
                                if let Some(g) = &gate
                                    && !g.try_pass(more.len())
                                {
                                    result = wr.flush().await;
                                    if result.is_err() {
                                        break;
                                    }
                                    g.ready_for(more.len()).await;
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
        // A command taken from the queue while gathering, not written yet.
        let mut next: Option<WriteCmd> = None;
        let end = loop {
            let cmd = match next.take() {
                Some(cmd) => Some(cmd),
                None => tokio::select! {
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
                },
            };
            let (bufs, count) = match cmd {
                Some(WriteCmd::Data(b)) => {
                    // Plain chunks queued behind it go in the same system
                    // call (the frames of one tunnel read, say).
                    let mut n = b.len();
                    let mut bufs = vec![b];
                    while n < LOCAL_GATHER_LIMIT {
                        match rx.try_recv() {
                            Ok(WriteCmd::Data(more)) => {
                                n += more.len();
                                bufs.push(more);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    (bufs, n)
                }
                Some(WriteCmd::Decoded { bytes, count }) => (vec![bytes], count),
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
            let total: usize = bufs.iter().map(Vec::len).sum();
            let mut done = 0;
            let failed = loop {
                if done == total {
                    break None;
                }
                let slices = unwritten(&bufs, done);
                tokio::select! {
                    biased;
                    r = &mut stop, if armed => match r {
                        Ok(Stop::Abort) => return reset(wr),
                        Ok(Stop::Release(reply)) => {
                            // A partly written plain chunk counts what
                            // went out; a decompressed one cannot be
                            // split (compressed streams are not handed
                            // over).
                            if done > 0 && count == total {
                                on_written(done, done);
                            }
                            return release(wr, fin_sent, reply);
                        }
                        Err(_) => armed = false,
                    },
                    r = wr.write_vectored(&slices) => match r {
                        Ok(0) => break Some(std::io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) => break Some(e),
                    },
                }
            };
            match failed {
                Some(e) => break Some(e),
                None => on_written(count, total),
            }
        };
        on_end(end);
    });
}

/// The parts of `bufs` after the first `skip` bytes.
fn unwritten(bufs: &[Vec<u8>], mut skip: usize) -> Vec<std::io::IoSlice<'_>> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        out.push(std::io::IoSlice::new(&b[skip..]));
        skip = 0;
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unwritten_parts_skip_what_went_out() {
        let bufs = vec![vec![1u8; 3], vec![2u8; 4], vec![3u8; 2]];
        let lens =
            |skip| -> Vec<usize> { unwritten(&bufs, skip).iter().map(|s| s.len()).collect() };
        assert_eq!(lens(0), [3, 4, 2]);
        assert_eq!(lens(3), [4, 2]);
        assert_eq!(lens(5), [2, 2]);
        assert_eq!(lens(9), Vec::<usize>::new());
        assert_eq!(unwritten(&bufs, 5)[0][0], 2);
    }

    /// A connection whose accepted end has a receive buffer of 1 MiB.
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(1 << 20).unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = sock.listen(4).unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn a_local_writer_gathers_queued_chunks_in_order_and_counts_them_all() {
        let (c, mut s) = pair().await;
        let (_rd, wr) = c.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (_stop_tx, stop_rx) = oneshot::channel();
        let (wtx, mut wrx) = mpsc::unbounded_channel();
        // Queued before the writer runs: it finds them all at once.
        let mut expect = Vec::new();
        for i in 0..40u8 {
            let chunk = vec![i; 16 * 1024 + usize::from(i)];
            expect.extend_from_slice(&chunk);
            tx.send(WriteCmd::Data(chunk)).unwrap();
        }
        tx.send(WriteCmd::Finish).unwrap();
        spawn_local_writer(
            wr,
            rx,
            stop_rx,
            move |n, plain| {
                assert_eq!(n, plain);
                let _ = wtx.send(n);
            },
            |e| assert!(e.is_none(), "{e:?}"),
        );
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert!(got == expect, "bytes out of order or lost");
        let mut reports = Vec::new();
        while let Ok(n) = wrx.try_recv() {
            reports.push(n);
        }
        assert_eq!(reports.iter().sum::<usize>(), expect.len());
        assert!(reports.len() < 40, "gathered: {} reports", reports.len());
    }

    #[tokio::test]
    async fn a_busy_local_reader_reads_more_at_a_time_up_to_its_maximum() {
        let (mut c, s) = pair().await;
        // Everything is waiting before the reader starts: every read fills
        // its buffer.
        c.write_all(&vec![5u8; 160 * 1024]).await.unwrap();
        drop(c);
        let mut peek = vec![0u8; 256 * 1024];
        let mut waiting = 0;
        while s.peek(&mut peek).await.unwrap() < 160 * 1024 {
            waiting += 1;
            assert!(waiting < 500, "the bytes never all arrived");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (rd, _wr) = s.into_split();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        let (etx, erx) = oneshot::channel();
        spawn_paced_reader(
            rd,
            move |buf, ack| {
                let _ = ack.send(());
                ctx.send(buf.len()).is_ok()
            },
            move |e| {
                let _ = etx.send(e.is_none());
            },
        );
        assert!(erx.await.unwrap());
        let mut sizes = Vec::new();
        while let Ok(n) = crx.try_recv() {
            sizes.push(n);
        }
        assert_eq!(sizes.iter().sum::<usize>(), 160 * 1024);
        assert_eq!(sizes.first(), Some(&LOCAL_READ_CHUNK));
        assert_eq!(sizes.iter().max(), Some(&LOCAL_READ_MAX), "{sizes:?}");
    }
}
