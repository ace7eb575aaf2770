//! A TCP relay put between cnaptd and snaptd that can break the path the way
//! real uplinks break: reset every connection at once (RST, both ends learn
//! at once), or blackhole it (bytes silently vanish, nobody learns anything);
//! or make it slow (a rate toward the server, as a thin uplink).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// The relay.
#[derive(Debug, Clone)]
pub struct Cutter {
    /// Where cnaptd should connect.
    pub addr: SocketAddr,
    kill: broadcast::Sender<()>,
    blackhole: Arc<AtomicBool>,
    /// Bytes a second toward the server (0: as fast as it goes).
    rate: Arc<AtomicU64>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
}

impl Cutter {
    /// Relays 127.0.0.1:(any) to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind cutter");
        let addr = l.local_addr().expect("addr");
        let (kill, _) = broadcast::channel(16);
        let c = Self {
            addr,
            kill,
            blackhole: Arc::new(AtomicBool::new(false)),
            rate: Arc::new(AtomicU64::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
        };
        let me = c.clone();
        tokio::spawn(async move {
            while let Ok((a, _)) = l.accept().await {
                me.accepted.fetch_add(1, Ordering::Relaxed);
                let me = me.clone();
                tokio::spawn(async move {
                    if let Ok(b) = TcpStream::connect(target).await {
                        me.pipe(a, b).await;
                    }
                });
            }
        });
        c
    }

    /// Resets every relayed connection now (RST to both ends).
    pub fn reset_all(&self) {
        let _ = self.kill.send(());
    }

    /// Silently drops everything from now on (`true`), or relays again.
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }

    /// Relays toward the server at most `bytes_per_sec` (0: no limit); what
    /// it cannot take waits in the box's socket, as on a thin uplink.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    async fn pipe(&self, a: TcpStream, b: TcpStream) {
        let _ = a.set_nodelay(true);
        let _ = b.set_nodelay(true);
        let mut kill = self.kill.subscribe();
        let (mut ar, mut aw) = a.into_split();
        let (mut br, mut bw) = b.into_split();
        let mut abuf = vec![0u8; 64 * 1024];
        let mut bbuf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                r = ar.read(&mut abuf) => match r {
                    Ok(0) | Err(_) => { let _ = bw.shutdown().await; break; }
                    Ok(n) => {
                        if !self.blackhole.load(Ordering::SeqCst) && bw.write_all(&abuf[..n]).await.is_err() { break }
                        let rate = self.rate.load(Ordering::SeqCst);
                        if rate > 0 {
                            tokio::time::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64)).await;
                        }
                    }
                },
                r = br.read(&mut bbuf) => match r {
                    Ok(0) | Err(_) => { let _ = aw.shutdown().await; break; }
                    Ok(n) => if !self.blackhole.load(Ordering::SeqCst) && aw.write_all(&bbuf[..n]).await.is_err() { break },
                },
                _ = kill.recv() => {
                    // Linger 0: the close sends RST, as a dropped path would.
                    if let (Ok(a), Ok(b)) = (ar.reunite(aw), br.reunite(bw)) {
                        let _ = a.set_zero_linger();
                        let _ = b.set_zero_linger();
                    }
                    return;
                }
            }
        }
    }
}
