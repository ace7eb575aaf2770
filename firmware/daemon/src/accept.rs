//! Accept loops that never end on an error. An accept can fail for reasons
//! that pass — the process or the system is out of file descriptors
//! (EMFILE, ENFILE), out of buffers (ENOBUFS, ENOMEM), a connection was
//! aborted before it was taken (ECONNABORTED) — and a listener that stops
//! at the first of them stops for good while the daemon looks alive. Here
//! every error is counted, logged at most once per [`LOG_EVERY`] (with the
//! number left unlogged), and followed by a short pause (growing while the
//! errors last, so a full fd table is not spun on); then the loop goes on.
//! A loop ends only when its consumer is gone.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tracing::warn;

/// At most one log line per listener this often while errors go on.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The first pause after an error that means "out of a resource".
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Something that accepts connections.
pub trait Listen: Send + 'static {
    /// What an accept gives.
    type Conn: Send;
    /// The next connection.
    fn accept_one(&self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send;
}

impl Listen for TcpListener {
    type Conn = (TcpStream, SocketAddr);
    fn accept_one(&self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send {
        self.accept()
    }
}

impl Listen for UnixListener {
    type Conn = UnixStream;
    async fn accept_one(&self) -> std::io::Result<Self::Conn> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// What listeners met, shared with whoever reports it (one set may serve
/// several listeners).
#[derive(Debug, Default, Clone)]
pub struct AcceptStats {
    errors: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl AcceptStats {
    /// Accept errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Connections accepted and closed at once for being over a limit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a connection closed for being over a limit; returns the
    /// count so far.
    pub fn refuse(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The pause after an error and whether to log it: the state between
/// errors of one listener (pure; time comes in).
#[derive(Debug)]
struct Pacing {
    pause: Duration,
    last_log: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl Pacing {
    fn new() -> Self {
        Self {
            pause: FIRST_PAUSE,
            last_log: None,
            unlogged: 0,
        }
    }

    /// An accept succeeded: the next error starts from the first pause.
    fn ok(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// An error at `now`: how long to pause, and `Some(unlogged)` if it is
    /// to be logged (with the count of errors not logged since the last).
    fn error(&mut self, e: &std::io::Error, now: tokio::time::Instant) -> (Duration, Option<u64>) {
        let log = match self.last_log {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        let pause = if exhausted(e) {
            let p = self.pause;
            self.pause = (self.pause * 2).min(MAX_PAUSE);
            p
        } else {
            // A connection that failed on its own: no reason to wait long.
            FIRST_PAUSE
        };
        (pause, log)
    }
}

/// Whether `e` means the process or system ran out of something (waiting
/// helps) rather than one connection failing.
fn exhausted(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|n| {
        matches!(
            Errno::from_raw(n),
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
        )
    })
}

/// Accepts on `listener` until `on_conn` returns false (its consumer is
/// gone), surviving every accept error. `name` says which listener in the
/// log lines; `stats` counts the errors.
pub async fn accept_loop<L, F>(listener: L, name: &str, stats: AcceptStats, mut on_conn: F)
where
    L: Listen,
    F: FnMut(L::Conn) -> bool,
{
    let mut pacing = Pacing::new();
    loop {
        match listener.accept_one().await {
            Ok(conn) => {
                pacing.ok();
                if !on_conn(conn) {
                    return;
                }
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let (pause, log) = pacing.error(&e, tokio::time::Instant::now());
                if let Some(unlogged) = log {
                    warn!(listener = name, error = %e, unlogged, pause_ms = pause.as_millis() as u64, "accept failed; going on");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Spawns [`accept_loop`] as a task.
pub fn spawn_accept_loop<L, F>(
    listener: L,
    name: &'static str,
    stats: AcceptStats,
    on_conn: F,
) -> tokio::task::JoinHandle<()>
where
    L: Listen,
    F: FnMut(L::Conn) -> bool + Send + 'static,
{
    tokio::spawn(accept_loop(listener, name, stats, on_conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> std::io::Error {
        std::io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32)
    }

    #[test]
    fn pauses_grow_while_descriptors_are_exhausted_and_reset_after_a_success() {
        let mut p = Pacing::new();
        let t = tokio::time::Instant::now();
        let pauses: Vec<Duration> = (0..9).map(|_| p.error(&emfile(), t).0).collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().unwrap_or(&Duration::ZERO), MAX_PAUSE);
        p.ok();
        assert_eq!(p.error(&emfile(), t).0, FIRST_PAUSE);
        // A single aborted connection is not a reason to wait.
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(p.error(&aborted, t).0, FIRST_PAUSE);
    }

    #[test]
    fn one_log_line_per_period_with_the_count_of_the_others() {
        let mut p = Pacing::new();
        let t0 = tokio::time::Instant::now();
        assert_eq!(p.error(&emfile(), t0).1, Some(0));
        for i in 1..=50 {
            assert_eq!(p.error(&emfile(), t0 + Duration::from_millis(i)).1, None);
        }
        assert_eq!(p.error(&emfile(), t0 + LOG_EVERY).1, Some(50));
    }

    #[tokio::test]
    async fn the_loop_ends_only_when_its_consumer_is_gone() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = spawn_accept_loop(l, "test", AcceptStats::default(), move |(s, _)| {
            tx.send(s).is_ok()
        });
        let _c = TcpStream::connect(addr).await.unwrap();
        assert!(rx.recv().await.is_some());
        drop(rx);
        let _c2 = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
