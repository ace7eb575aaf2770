//! Bringing up a tunnel from the box: a TCP connection bound to one uplink
//! (source address and `SO_BINDTODEVICE`), `TCP_NODELAY`, then TLS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a tunnel could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Name resolution found nothing.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The server name is not a valid DNS name or IP.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// Socket set-up or TCP connect failed.
    #[error("tcp to {addr} via {via}: {source}")]
    Tcp {
        /// Destination.
        addr: SocketAddr,
        /// Uplink description.
        via: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate refused, …).
    #[error("tls with {addr}: {source}")]
    Tls {
        /// Destination.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The attempt took too long.
    #[error("connecting to {0} timed out")]
    Timeout(String),
}

/// How to leave the box.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Interface to bind to (SO_BINDTODEVICE; needs CAP_NET_RAW).
    pub interface: Option<String>,
    /// Source address.
    pub source: Option<IpAddr>,
}

impl std::fmt::Display for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.interface, &self.source) {
            (Some(i), Some(s)) => write!(f, "{i}/{s}"),
            (Some(i), None) => write!(f, "{i}"),
            (None, Some(s)) => write!(f, "{s}"),
            (None, None) => write!(f, "default route"),
        }
    }
}

/// TCP socket options every leg gets: no Nagle (latency hygiene).
pub fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
}

/// A tunnel's TCP socket options: [`tune`], a bounded unsent queue
/// ([`crate::out::TUNNEL_NOTSENT_LOWAT`]) so that what a keystroke finds
/// ahead of it in the kernel is what is in flight, not a buffer of seconds,
/// and TCP keep-alive ([`TUNNEL_KEEPALIVE`]: a socket whose peer vanished
/// is closed even where no session timer watches it, e.g. a tunnel not yet
/// part of a session), and BBR ([`TUNNEL_CONGESTION`]).
pub fn tune_tunnel(s: &TcpStream) {
    tune(s);
    use_bbr(s);
    if let Err(e) = crate::transport::set_notsent_lowat(s, crate::out::TUNNEL_NOTSENT_LOWAT) {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
    let (idle, interval, count) = TUNNEL_KEEPALIVE;
    if let Err(e) = crate::transport::set_keepalive(s, idle, interval, count) {
        tracing::debug!(error = %e, "TCP keep-alive not set");
    }
}

/// The congestion control of tunnels: the send gate caps a tunnel's bytes
/// in flight from BBR's estimates (`crate::gate`); under another control
/// it bounds only the unsent bytes, and the bottleneck's queue is the
/// control's (a loss-based one fills it).
pub const TUNNEL_CONGESTION: &str = "bbr";

/// Asks for [`TUNNEL_CONGESTION`] on a tunnel socket unless it runs it
/// already. Without it (not built into the kernel or loaded, or not in
/// `net.ipv4.tcp_allowed_congestion_control` for a process without
/// `CAP_NET_ADMIN`) the system's default stays, said once per process.
fn use_bbr(s: &TcpStream) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if crate::transport::congestion_control(s).is_ok_and(|c| c == TUNNEL_CONGESTION) {
        return;
    }
    if let Err(e) = crate::transport::set_congestion_control(s, TUNNEL_CONGESTION)
        && !SAID.swap(true, Ordering::Relaxed)
    {
        let now = crate::transport::congestion_control(s).unwrap_or_default();
        tracing::warn!(
            error = %e,
            congestion = %now,
            "tunnels cannot run BBR: keystrokes will wait behind the bottleneck's queue \
             (load tcp_bbr and allow it: docs/operations.md)"
        );
    }
}

/// A tunnel socket's TCP keep-alive: idle time, probe interval, probes.
pub const TUNNEL_KEEPALIVE: (Duration, Duration, u32) =
    (Duration::from_secs(30), Duration::from_secs(10), 3);

/// Connects a TCP socket to `address` (`host:port`) over `egress`; also
/// returns the address it resolved to.
pub async fn connect_tcp(
    address: &str,
    egress: &Egress,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|_| ConnectError::Resolve(address.to_owned()))?
        .find(|a| egress.source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .ok_or_else(|| ConnectError::Resolve(address.to_owned()))?;
    let tcp_err = |source| ConnectError::Tcp {
        addr,
        via: egress.to_string(),
        source,
    };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(tcp_err)?;
    if let Some(dev) = &egress.interface {
        sock.bind_device(Some(dev.as_bytes())).map_err(tcp_err)?;
    }
    if let Some(src) = egress.source {
        sock.bind(SocketAddr::new(src, 0)).map_err(tcp_err)?;
    }
    let tcp = sock.connect(addr).await.map_err(tcp_err)?;
    tune_tunnel(&tcp);
    Ok((tcp, addr))
}

/// Connects to `address` (`host:port`) over `egress` and runs the TLS
/// handshake for `server_name`.
pub async fn connect_tunnel(
    address: &str,
    server_name: &str,
    egress: &Egress,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    // One deadline for both phases; a handshake that times out after the
    // TCP connection was made is a TLS failure (the far end, or a router
    // in front of it, took the connection and never answered), not a path
    // that carries nothing.
    let deadline = tokio::time::Instant::now() + timeout;
    let (tcp, addr) = tokio::time::timeout_at(deadline, connect_tcp(address, egress))
        .await
        .map_err(|_| ConnectError::Timeout(address.to_owned()))??;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| ConnectError::ServerName(server_name.to_owned()))?;
    match tokio::time::timeout_at(deadline, TlsConnector::from(tls).connect(name, tcp)).await {
        Ok(r) => r.map_err(|source| ConnectError::Tls { addr, source }),
        Err(_) => Err(ConnectError::Tls {
            addr,
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no handshake within the connect timeout",
            ),
        }),
    }
}

/// A light probe of the path to `address` over `egress`: the time a TCP
/// handshake takes (closed at once, before any TLS), `None` if nothing
/// comes back within `timeout`. A refused connection is an answer too: the
/// path works even while the SNAPT is down or restarting.
pub async fn probe(address: &str, egress: &Egress, timeout: Duration) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, connect_tcp(address, egress)).await {
        Ok(Ok(_tcp)) => Some(start.elapsed()),
        Ok(Err(ConnectError::Tcp { source, .. }))
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Some(start.elapsed())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tunnel_socket_runs_bbr_whatever_the_systems_default() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        crate::transport::set_congestion_control(&c, "reno").unwrap();
        tune_tunnel(&c);
        assert_eq!(
            crate::transport::congestion_control(&c).unwrap(),
            TUNNEL_CONGESTION,
            "this test needs tcp_bbr (modprobe tcp_bbr)"
        );
        assert!(c.nodelay().unwrap());
    }
}
