//! The kernel's view of a tunnel's TCP connection (`TCP_INFO`): its round
//! trip, how long since it last received an acknowledgement, and what is
//! still unacknowledged. The dead-path rule reads it so that a path whose
//! segments are still acknowledged is never declared dead merely because
//! its peer's application is slow.
//!
//! Also where a tunnel socket's unsent queue is bounded
//! (`TCP_NOTSENT_LOWAT`).
//!
//! These socket-option calls are the only unsafe code of the workspace's
//! runtime crates; neither nix nor socket2 offers either option, and the
//! crates that do generate bindings with bindgen at build time (libclang in
//! the image build).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// What `TCP_INFO` says of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// Smoothed round trip.
    pub rtt: Duration,
    /// Time since the last acknowledgement arrived.
    pub since_last_ack: Duration,
    /// Time since the last data arrived.
    pub since_last_data: Duration,
    /// Segments sent and not acknowledged.
    pub unacked: u32,
    /// Retransmissions of the segment at the head (timeouts in a row).
    pub retransmits: u8,
    /// Retransmissions over the connection's life.
    pub total_retrans: u32,
    /// Bytes in the socket not yet sent (waiting for the congestion window
    /// or pacing).
    pub notsent: u32,
}

/// Reads `TCP_INFO` of the socket behind `fd`.
#[allow(unsafe_code)]
pub fn tcp_info(fd: impl AsFd) -> std::io::Result<TcpInfo> {
    let fd = fd.as_fd();
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is a descriptor borrowed for the duration of the call;
    // `info` is a zeroed `tcp_info` of `len` bytes, and the kernel writes
    // at most `len` bytes into it and stores the length it wrote in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: zero-initialised above and (partly) written by the kernel;
    // every field of `tcp_info` is a plain integer, valid for any bits.
    let i = unsafe { info.assume_init() };
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    Ok(TcpInfo {
        rtt: Duration::from_micros(u64::from(i.tcpi_rtt)),
        since_last_ack: ms(i.tcpi_last_ack_recv),
        since_last_data: ms(i.tcpi_last_data_recv),
        unacked: i.tcpi_unacked,
        retransmits: i.tcpi_retransmits,
        total_retrans: i.tcpi_total_retrans,
        notsent: i.tcpi_notsent_bytes,
    })
}

/// Sets `TCP_NOTSENT_LOWAT` on the socket behind `fd`: the kernel reports
/// it writable, and takes more bytes, only while less than `bytes` wait
/// unsent — the socket buffer holds what is in flight, not a queue.
#[allow(unsafe_code)]
pub fn set_notsent_lowat(fd: impl AsFd, bytes: u32) -> std::io::Result<()> {
    let value = bytes as libc::c_int;
    // SAFETY: `fd` is a borrowed descriptor valid for the call; the value
    // is a `c_int` passed by pointer with its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `TCP_NOTSENT_LOWAT` of the socket behind `fd`.
#[allow(unsafe_code)]
pub fn notsent_lowat(fd: impl AsFd) -> std::io::Result<u32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as in `tcp_info`: a borrowed descriptor, a `c_int` of `len`
    // bytes the kernel writes at most `len` bytes into.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u32::try_from(value).unwrap_or(0))
}

/// A tunnel's TCP socket kept for `TCP_INFO` (a duplicate descriptor: drop
/// it with the tunnel, or the socket outlives it).
#[derive(Debug)]
pub struct TcpWatch(OwnedFd);

impl TcpWatch {
    /// Watches the socket behind `fd`.
    pub fn new(fd: impl AsFd) -> std::io::Result<Self> {
        Ok(Self(fd.as_fd().try_clone_to_owned()?))
    }

    /// The connection's `TCP_INFO` now.
    pub fn sample(&self) -> std::io::Result<TcpInfo> {
        tcp_info(&self.0)
    }

    /// A [`SendGate`] on the same socket.
    pub fn gate(&self, limit: u32) -> std::io::Result<SendGate> {
        SendGate::new(&self.0, limit)
    }
}

/// Holds a tunnel's writer back while more than `limit` bytes wait unsent
/// in its socket.
///
/// `TCP_NOTSENT_LOWAT` alone does not bound them: the kernel checks it only
/// when it starts a new buffer, and appends up to a whole GSO-sized one
/// (about 64 KiB: 100 ms at 5 Mbit/s) beyond it. The gate reads the unsent
/// count (`TCP_INFO`) before each write and waits for the socket's
/// writability (which the low-water mark signals) — or 2 ms at most, then
/// looks again.
#[derive(Debug)]
pub struct SendGate {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    limit: u32,
}

impl SendGate {
    /// A gate on the socket behind `fd` (a duplicate descriptor is kept).
    #[allow(unsafe_code)]
    pub fn new(fd: impl AsFd, limit: u32) -> std::io::Result<Self> {
        let own = fd.as_fd().try_clone_to_owned()?;
        // SAFETY: the descriptor is our own duplicate, owned by the AsyncFd
        // and closed only when it is dropped, after its registration.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(own, tokio::io::Interest::WRITABLE)?
        };
        Ok(Self { fd, limit })
    }

    /// Returns once at most `limit` bytes wait unsent (or the socket
    /// cannot say).
    pub async fn ready(&self) {
        loop {
            match tcp_info(self.fd.get_ref()) {
                Ok(i) if i.notsent > self.limit => {}
                _ => return,
            }
            let wait = tokio::time::timeout(GATE_RECHECK, self.fd.writable()).await;
            if let Ok(Ok(mut guard)) = wait {
                // Writable by the kernel's measure; unsent by ours decides.
                guard.clear_ready();
            }
        }
    }
}

/// How long the gate waits for a writability edge before it looks again.
const GATE_RECHECK: Duration = Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_live_connection_reports_its_round_trip_and_acknowledgements() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let watch = TcpWatch::new(&c).unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).await.unwrap();
        server.await.unwrap();
        let i = watch.sample().unwrap();
        assert_eq!(i.unacked, 0, "{i:?}");
        assert!(
            i.rtt > Duration::ZERO && i.rtt < Duration::from_secs(1),
            "{i:?}"
        );
        assert!(i.since_last_ack < Duration::from_secs(5), "{i:?}");
    }

    #[tokio::test]
    async fn the_unsent_low_water_mark_is_set_on_the_socket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        set_notsent_lowat(&c, 16 * 1024).unwrap();
        assert_eq!(notsent_lowat(&c).unwrap(), 16 * 1024);
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(set_notsent_lowat(&f, 1).is_err());
    }

    #[tokio::test]
    async fn the_gate_holds_while_bytes_wait_unsent_and_opens_when_they_leave() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (mut far, _) = l.accept().await.unwrap();
        let gate = SendGate::new(&c, 4096).unwrap();
        gate.ready().await;
        // The far end does not read: its window fills, then our socket.
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), c.write(&chunk)).await
        {
            sent += n;
        }
        assert!(tcp_info(&c).unwrap().notsent > 4096);
        let held = tokio::time::timeout(Duration::from_millis(50), gate.ready()).await;
        assert!(held.is_err(), "the gate must hold while bytes wait unsent");
        // The far end reads everything: the gate opens.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0;
            while got < sent {
                got += far.read(&mut buf).await.unwrap();
            }
        });
        tokio::time::timeout(Duration::from_secs(5), gate.ready())
            .await
            .unwrap();
        reader.await.unwrap();
    }

    #[test]
    fn a_descriptor_that_is_not_a_tcp_socket_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(tcp_info(&f).is_err());
    }
}
