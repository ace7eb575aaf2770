//! How the box driver leaves the box: a tunnel to a SNAPT over one uplink,
//! and a probe of an uplink's path. Behind a small trait so that a test can
//! hand the driver in-memory tunnels; the real one is TCP bound to the
//! uplink, then TLS.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use config::SnaptLink;
use relay_io::connect::{Egress, connect_tunnel, probe};
use relay_io::transport::TcpWatch;
use tokio::io::{AsyncRead, AsyncWrite};

/// A tunnel's byte stream (TLS in the field, a duplex pipe in tests).
pub trait TunnelIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> TunnelIo for T {}

/// A tunnel's byte stream, boxed.
pub type Tunnel = Box<dyn TunnelIo>;

/// A connected tunnel: its bytes, and its TCP socket for `TCP_INFO` when
/// it has one (the dead-path rule's view of the transport).
#[derive(Debug)]
pub struct Connected {
    /// The byte stream.
    pub io: Tunnel,
    /// The TCP socket under it, if any.
    pub tcp: Option<TcpWatch>,
}

impl std::fmt::Debug for dyn TunnelIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelIo")
    }
}

/// A future the driver spawns.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The ways out of the box.
pub trait Net: Send + Sync + 'static {
    /// A tunnel to `snapt` over `via`, within `timeout`; the error says why
    /// not in words for `cboxctl status`.
    fn tunnel(
        &self,
        snapt: &SnaptLink,
        via: &Egress,
        timeout: Duration,
    ) -> Pending<Result<Connected, String>>;

    /// The round trip of a TCP handshake to `address` over `via`, or
    /// `None` if none came back within `timeout`.
    fn probe(&self, address: &str, via: &Egress, timeout: Duration) -> Pending<Option<Duration>>;
}

/// The real way out: TCP bound to the uplink (`SO_BINDTODEVICE`, source
/// address), `TCP_NODELAY`, TLS 1.3 with the box's certificate.
#[derive(Debug, Clone)]
pub struct TlsNet {
    tls: Arc<rustls::ClientConfig>,
}

impl TlsNet {
    /// Tunnels with this client configuration.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls }
    }
}

impl Net for TlsNet {
    fn tunnel(
        &self,
        snapt: &SnaptLink,
        via: &Egress,
        timeout: Duration,
    ) -> Pending<Result<Connected, String>> {
        let (address, name, via, tls) = (
            snapt.address.clone(),
            snapt.server_name.clone(),
            via.clone(),
            self.tls.clone(),
        );
        Box::pin(async move {
            let t = connect_tunnel(&address, &name, &via, tls, timeout)
                .await
                .map_err(|e| e.to_string())?;
            let tcp = TcpWatch::new(t.get_ref().0).ok();
            Ok(Connected {
                io: Box::new(t),
                tcp,
            })
        })
    }

    fn probe(&self, address: &str, via: &Egress, timeout: Duration) -> Pending<Option<Duration>> {
        let (address, via) = (address.to_owned(), via.clone());
        Box::pin(async move { probe(&address, &via, timeout).await })
    }
}
