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
    echo_data(addr, pattern(seed, len), chunk, pace).await
}

/// JSON lines as an app's API traffic has them (compressible, unlike
/// [`pattern`]), `len` bytes, varying with `seed`.
pub fn json_lines(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 200);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"seq\":{i},\"box\":\"box-{}\",\"uplink\":\"{}\",\"rtt_ms\":{}.{},\"signal_dbm\":-{},\"ok\":true}}\n",
                i % 97,
                if i.is_multiple_of(3) { "wifi" } else { "lte" },
                20 + i % 180,
                i % 10,
                50 + i % 40
            )
            .as_bytes(),
        );
        i = i
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            >> 40;
    }
    out.truncate(len);
    out
}

/// As [`echo_transfer`], with the bytes given.
pub async fn echo_data(
    addr: SocketAddr,
    data: Vec<u8>,
    chunk: usize,
    pace: Duration,
) -> Result<Transfer, String> {
    let len = data.len();
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

/// A download server on 127.0.0.1 (any port): to every connection it sends
/// `len` bytes (a 64 KiB block of `pattern(seed, ..)` repeated, so `len`
/// may be large); with `reset_after = Some(n)` it stops after `n` bytes and
/// resets the connection (RST, as a crashed or aborting server does),
/// otherwise it closes normally (FIN) after the last byte.
pub async fn download_server(seed: u64, len: usize, reset_after: Option<usize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind download");
    let addr = l.local_addr().expect("addr");
    let block = std::sync::Arc::new(pattern(seed, 64 * 1024));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let block = block.clone();
            tokio::spawn(async move {
                let mut left = reset_after.unwrap_or(len).min(len);
                while left > 0 {
                    let n = left.min(block.len());
                    if s.write_all(&block[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                if reset_after.is_some() {
                    // Let the bytes leave before the reset discards them.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = s.set_zero_linger();
                    drop(s);
                } else {
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

/// How a download through the box ended, as the application saw it.
#[derive(Debug)]
pub struct Download {
    /// Bytes read before the end.
    pub bytes: usize,
    /// `None`: a clean end of stream (FIN); otherwise the read error.
    pub error: Option<std::io::ErrorKind>,
}

/// Connects to `addr` and reads until end of stream or error (at most
/// `limit`).
pub async fn download(addr: SocketAddr, limit: Duration) -> Result<Download, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0;
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => bytes += n,
                Err(e) => return Some(e.kind()),
            }
        }
    };
    let error = tokio::time::timeout(limit, read_all)
        .await
        .map_err(|_| format!("the download neither ended nor failed within {limit:?}"))?;
    Ok(Download { bytes, error })
}
