//! A hand-driven tunnel client: real TLS with a chosen certificate, frames
//! written and read one by one — to play a misbehaving or hostile box.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wire::Frame;

/// A raw tunnel.
#[derive(Debug)]
pub struct Raw {
    s: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects with the box certificate in `pki/boxes/<id>.pem`.
    pub async fn connect(pki: &Path, id: &str, addr: SocketAddr) -> std::io::Result<Self> {
        Self::connect_to(pki, id, addr, "127.0.0.1").await
    }

    /// As [`Raw::connect`], naming `server` in the SNI and checking the
    /// server's certificate against it (a relay of a fleet behind a router).
    pub async fn connect_to(
        pki: &Path,
        id: &str,
        addr: SocketAddr,
        server: &str,
    ) -> std::io::Result<Self> {
        let cfg = tls::client_config(
            &pki.join("ca.pem"),
            &pki.join(format!("boxes/{id}.pem")),
            &pki.join(format!("boxes/{id}.key")),
            tls::CipherPreference::Chacha20,
        )
        .map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server.to_string()).map_err(std::io::Error::other)?;
        let s = TlsConnector::from(cfg).connect(name, tcp).await?;
        Ok(Self { s, buf: Vec::new() })
    }

    /// Writes raw bytes.
    pub async fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b).await?;
        self.s.flush().await
    }

    /// Writes one frame.
    pub async fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        let mut b = Vec::new();
        wire::encode(f, &mut b);
        self.send_bytes(&b).await
    }

    /// The next frame, `None` if the server closed the tunnel (or `limit`
    /// passed without a whole frame).
    pub async fn recv(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok((f, n)) = wire::decode(&self.buf, 1 << 20) {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether the server closed the tunnel within `limit` (frames skipped).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
