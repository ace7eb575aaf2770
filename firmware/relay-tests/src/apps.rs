//! Application servers and clients for the tests: an echo server, and a
//! client that streams pseudo-random bytes through it while reading them
//! back, comparing SHA-256 digests of what went and what came.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server on 127.0.0.1 (any port); returns its address.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic pseudo-random bytes (xorshift), seeded.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What an echo transfer saw.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes sent (and expected back).
    pub bytes: usize,
    /// Longest time between two successful reads.
    pub max_gap: Duration,
    /// Total duration.
    pub elapsed: Duration,
}

/// Sends `len` bytes to `addr` in `chunk`-sized writes, pausing `pace`
/// between writes, reads the echo concurrently, half-closes, and checks the
/// SHA-256 of what came back. `Err` describes any difference.
pub async fn echo_transfer(
    addr: SocketAddr,
    seed: u64,
    len: usize,
    chunk: usize,
    pace: Duration,
) -> Result<Transfer, String> {
    let data = pattern(seed, len);
    let want = Sha256::digest(&data);
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut r, mut w) = s.into_split();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut h = Sha256::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        let mut max_gap = Duration::ZERO;
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    total += n;
                    let now = Instant::now();
                    max_gap = max_gap.max(now - last);
                    last = now;
                }
                Err(e) => return Err(format!("read after {total} bytes: {e}")),
            }
        }
        Ok((h.finalize(), total, max_gap))
    });
    for part in data.chunks(chunk) {
        w.write_all(part).await.map_err(|e| format!("write: {e}"))?;
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    w.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    let (got, total, max_gap) = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .map_err(|_| "echo did not finish within 120 s".to_string())?
        .map_err(|e| e.to_string())??;
    if total != len {
        return Err(format!("{total} bytes came back of {len} sent"));
    }
    if got != want {
        return Err("echoed bytes differ (SHA-256 mismatch)".into());
    }
    Ok(Transfer {
        bytes: len,
        max_gap,
        elapsed: start.elapsed(),
    })
}

/// A UDP echo server on 127.0.0.1 (any port); returns its address.
pub async fn udp_echo_server() -> SocketAddr {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp echo");
    let addr = s.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], peer).await;
        }
    });
    addr
}
