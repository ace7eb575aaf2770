//! The tunnels' way in: each accepted connection's TLS handshake (bounded
//! in time), the box's identity from its certificate, then the driver's
//! door. Handshakes are the relay's costliest work per tunnel (a key
//! exchange and a certificate check), and a fleet that lost its relay
//! arrives at once: at most `max_handshakes` run together, up to
//! [`QUEUE_PER_PLACE`] times as many wait their turn (a connection's first
//! byte is awaited before it queues, so a silent connection holds no
//! place), and the rest are closed at once and counted — the box's back-off
//! with full jitter brings them back spread out. The queue is long because
//! waiting is cheap (a descriptor) and a closed connection is not: its box
//! comes back with a new TCP connection and handshake after its back-off
//! (2,000 boxes at once against a queue of 4 per place: 1,696 closed, all
//! back in 3.6 s instead of 1.5 s; `examples/reconnect_storm.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tls::{peer_box_id, peer_serial};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::TunnelDoor;

/// Connections that may wait per handshake place.
pub const QUEUE_PER_PLACE: usize = 64;

/// How long a connection has for its first byte, a place and its handshake.
pub const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// The bound on handshakes at once and their counters.
#[derive(Debug, Clone)]
pub struct Handshakes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    running: Semaphore,
    max: usize,
    waiting: AtomicUsize,
    shed: AtomicU64,
    timed_out: AtomicU64,
}

impl Handshakes {
    /// At most `max` handshakes at once (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                running: Semaphore::new(max),
                max,
                waiting: AtomicUsize::new(0),
                shed: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
            }),
        }
    }

    /// Handshakes running now.
    pub fn running(&self) -> usize {
        self.inner.max - self.inner.running.available_permits()
    }

    /// Connections waiting for a place.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Connections closed because too many were waiting.
    pub fn shed(&self) -> u64 {
        self.inner.shed.load(Ordering::Relaxed)
    }

    /// Connections that got no place or no handshake within
    /// [`HANDSHAKE_TIME`].
    pub fn timed_out(&self) -> u64 {
        self.inner.timed_out.load(Ordering::Relaxed)
    }

    /// The most that may wait for a place.
    fn max_waiting(&self) -> usize {
        self.inner.max.saturating_mul(QUEUE_PER_PLACE)
    }

    /// One accepted connection through its handshake into the driver.
    pub async fn authenticate(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        acceptor: tokio_rustls::TlsAcceptor,
        door: TunnelDoor,
    ) {
        // The boxes' reachability probes connect and close without a byte:
        // routine, not a refused handshake worth a warning per box and probe.
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIME;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
            Ok(Ok(0)) => {
                debug!(%peer, "probe: connected and closed before TLS");
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "connection failed before TLS");
                return;
            }
            Err(_) => {
                self.inner.timed_out.fetch_add(1, Ordering::Relaxed);
                daemon::warn_throttled!(%peer, "no TLS handshake begun in time");
                return;
            }
        }
        let permit = match self.inner.running.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                if self.inner.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting() {
                    self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
                    self.inner.shed.fetch_add(1, Ordering::Relaxed);
                    daemon::warn_throttled!(%peer, running = self.inner.max, "handshakes full: connection closed");
                    return;
                }
                let got = tokio::time::timeout_at(deadline, self.inner.running.acquire()).await;
                self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
                match got {
                    Ok(Ok(p)) => p,
                    _ => {
                        self.inner.timed_out.fetch_add(1, Ordering::Relaxed);
                        daemon::warn_throttled!(%peer, "no handshake place in time");
                        return;
                    }
                }
            }
        };
        let gate = relay_io::gate::SendGate::new(&tcp, relay_io::out::TUNNEL_NOTSENT_LOWAT).ok();
        let stream = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                daemon::warn_throttled!(%peer, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                self.inner.timed_out.fetch_add(1, Ordering::Relaxed);
                daemon::warn_throttled!(%peer, "TLS handshake timed out");
                return;
            }
        };
        drop(permit);
        let (_, conn) = stream.get_ref();
        let identity = match peer_box_id(conn.peer_certificates()) {
            Ok(id) => id,
            Err(e) => {
                daemon::warn_throttled!(%peer, error = %e, "certificate names no box");
                return;
            }
        };
        let serial = peer_serial(conn.peer_certificates()).unwrap_or_default();
        debug!(%peer, box_id = %identity, "tunnel authenticated");
        door.enter(stream, identity, serial, gate);
    }
}
