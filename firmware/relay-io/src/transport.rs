//! The kernel's view of a tunnel's TCP connection (`TCP_INFO`): its round
//! trip, how long since it last received an acknowledgement, and what is
//! still unacknowledged. The dead-path rule reads it so that a path whose
//! segments are still acknowledged is never declared dead merely because
//! its peer's application is slow.
//!
//! Also the other socket options of tunnels: the unsent queue's low-water
//! mark (`TCP_NOTSENT_LOWAT`), keepalives, and BBR's estimates
//! (`TCP_CC_INFO`), which the send gate (`crate::gate`) reads.
//!
//! These socket-option calls are the only unsafe code of the workspace's
//! runtime crates; neither nix nor socket2 offers either option, and the
//! crates that do generate bindings with bindgen at build time (libclang in
//! the image build).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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
    /// The rate the kernel paces the connection at (bytes per second; 0
    /// or `u64::MAX` when it does not know).
    pub pacing_rate: u64,
    /// The rate its last acknowledged data was delivered at (bytes per
    /// second; 0 before any).
    pub delivery_rate: u64,
    /// The smallest round trip seen (the path without queues).
    pub min_rtt: Duration,
    /// The segment size the connection sends.
    pub snd_mss: u32,
    /// The last delivery-rate sample was taken while the sender had less
    /// to send than the path took (`tcpi_delivery_rate_app_limited`).
    pub delivery_rate_app_limited: bool,
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
    // The byte after tcpi_snd_wscale/tcpi_rcv_wscale holds the bit fields
    // tcpi_delivery_rate_app_limited:1 and tcpi_fastopen_client_fail:2
    // (linux/tcp.h); libc's struct leaves it as padding.
    // SAFETY: byte 7 lies inside the zeroed `tcp_info` (which is larger
    // than 8 bytes); any value of a byte is valid.
    let flags = unsafe { info.as_ptr().cast::<u8>().add(7).read() };
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
        pacing_rate: i.tcpi_pacing_rate,
        delivery_rate: i.tcpi_delivery_rate,
        min_rtt: Duration::from_micros(u64::from(i.tcpi_min_rtt)),
        snd_mss: i.tcpi_snd_mss,
        delivery_rate_app_limited: flags & 1 == 1,
    })
}

/// Sets one integer option of the socket behind `fd`.
#[allow(unsafe_code)]
fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `fd` is a borrowed descriptor valid for the call; the value
    // is a `c_int` passed by pointer with its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// TCP keep-alive on the socket behind `fd`: the first probe after `idle`
/// without traffic, then every `interval`, and the connection given up
/// after `count` unanswered — so a tunnel whose peer vanished without a
/// word (and that nothing else closes) gives its descriptor back.
pub fn set_keepalive(
    fd: impl AsFd,
    idle: Duration,
    interval: Duration,
    count: u32,
) -> std::io::Result<()> {
    let fd = fd.as_fd();
    let secs = |d: Duration| libc::c_int::try_from(d.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set_int(fd, libc::SOL_TCP, libc::TCP_KEEPIDLE, secs(idle))?;
    set_int(fd, libc::SOL_TCP, libc::TCP_KEEPINTVL, secs(interval))?;
    set_int(
        fd,
        libc::SOL_TCP,
        libc::TCP_KEEPCNT,
        libc::c_int::try_from(count).unwrap_or(libc::c_int::MAX),
    )
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

    /// A [`crate::gate::SendGate`] on the same socket.
    pub fn gate(&self, limit: u32) -> std::io::Result<crate::gate::SendGate> {
        crate::gate::SendGate::new(&self.0, limit)
    }
}

/// Sets the congestion control of the socket behind `fd`
/// (`TCP_CONGESTION`): one of the kernel's allowed ones
/// (`net.ipv4.tcp_allowed_congestion_control`), or any loaded one with
/// `CAP_NET_ADMIN`. Set to a different one, a live connection's control
/// starts afresh (its state is initialised again).
#[allow(unsafe_code)]
pub fn set_congestion_control(fd: impl AsFd, name: &str) -> std::io::Result<()> {
    // SAFETY: `name` is a valid buffer of `name.len()` bytes for the call;
    // the kernel copies at most that many.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The congestion control of the socket behind `fd` (`TCP_CONGESTION`).
#[allow(unsafe_code)]
pub fn congestion_control(fd: impl AsFd) -> std::io::Result<String> {
    let mut name = [0u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: `name` is a buffer of `len` bytes; the kernel writes at most
    // `len` bytes into it and stores the length it wrote in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let name = &name[..(len as usize).min(name.len())];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// What BBR knows of the path (`TCP_CC_INFO` of a socket running BBR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BbrPath {
    /// The bottleneck bandwidth (bytes per second): the largest recent
    /// delivery rate, which an application-limited sender does not pull
    /// down.
    pub bw: u64,
    /// The path's round trip without queues, as BBR keeps it: the
    /// smallest of the last 10 s (`TCP_INFO`'s smallest is of the last
    /// 5 minutes, and a path that got slower keeps it long after).
    pub min_rtt: Duration,
}

/// What BBR knows of the path of the socket behind `fd`.
#[allow(unsafe_code)]
pub fn bbr_path(fd: impl AsFd) -> std::io::Result<BbrPath> {
    // struct tcp_bbr_info (linux/inet_diag.h): bw_lo, bw_hi, min_rtt,
    // pacing_gain, cwnd_gain; the kernel writes the largest of the
    // congestion controls' info structs that fits.
    let mut info = [0u32; 5];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a buffer of `len` bytes; the kernel writes at most
    // `len` bytes into it and stores the length it wrote in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_CC_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if (len as usize) < std::mem::size_of_val(&info) {
        return Err(std::io::Error::other("TCP_CC_INFO is not BBR's"));
    }
    Ok(BbrPath {
        bw: u64::from(info[0]) | (u64::from(info[1]) << 32),
        min_rtt: Duration::from_micros(u64::from(info[2])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn tcp_info_tells_an_application_limited_rate_sample_from_a_bulk_one() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        // A few small writes, each read before the next: every sample is
        // application-limited.
        for _ in 0..5 {
            tx.write_all(&[7u8; 100]).unwrap();
            rx.read_exact(&mut buf[..100]).unwrap();
        }
        let small = tcp_info(&tx).unwrap();
        assert!(small.delivery_rate > 0);
        assert!(small.delivery_rate_app_limited, "{small:?}");
        // A bulk transfer the reader drains: some sample is not.
        let reader = std::thread::spawn(move || {
            let mut n = 0usize;
            while n < 64 << 20 {
                match rx.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
        });
        let chunk = vec![1u8; 1 << 20];
        let mut bulk_seen = false;
        for _ in 0..64 {
            tx.write_all(&chunk).unwrap();
            bulk_seen |= !tcp_info(&tx).unwrap().delivery_rate_app_limited;
        }
        drop(tx);
        reader.join().unwrap();
        assert!(bulk_seen, "a bulk sender is not application-limited");
    }

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

    #[test]
    fn the_congestion_control_is_set_and_read_back() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        set_congestion_control(&c, "reno").unwrap();
        assert_eq!(congestion_control(&c).unwrap(), "reno");
        assert!(set_congestion_control(&c, "no-such-control").is_err());
        assert_eq!(congestion_control(&c).unwrap(), "reno");
    }

    #[test]
    fn a_descriptor_that_is_not_a_tcp_socket_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(tcp_info(&f).is_err());
    }
}
