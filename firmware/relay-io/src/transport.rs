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

    /// A [`SendGate`] on the same socket.
    pub fn gate(&self, limit: u32) -> std::io::Result<SendGate> {
        SendGate::new(&self.0, limit)
    }
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

/// Holds a tunnel's writer back while its socket holds more than the path
/// needs: more than [`GATE_TIME`] of data unsent (`floor` bytes at least),
/// or more than [`INFLIGHT_GAIN`] round trips of data in flight and unsent.
///
/// `TCP_NOTSENT_LOWAT` alone does not bound the unsent bytes: the kernel
/// checks it only when it starts a new buffer, and appends up to a whole
/// GSO-sized one (about 64 KiB: 100 ms at 5 Mbit/s) beyond it. Nor does
/// the congestion control bound the bytes in flight to the path's
/// bandwidth-delay product: BBR's gain and its allowance for aggregated
/// acknowledgements keep two to four of them in flight, a standing queue
/// at the bottleneck that every keystroke in the tunnel waits behind (a
/// separate TCP connection waits behind the same queue only once). The
/// gate reads `TCP_INFO` (unsent, unacknowledged, the delivery and pacing
/// rates) and BBR's bandwidth and round-trip estimates (`TCP_CC_INFO`; the
/// bytes in flight are capped only under BBR) before each write, keeps the socket's
/// low-water mark at its unsent limit, and waits for the writability that
/// mark signals or for the time the excess takes to leave (2 ms at most),
/// then looks again.
#[derive(Debug)]
pub struct SendGate {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    floor: u32,
    lowat: std::sync::atomic::AtomicU32,
    /// Whether the socket runs BBR (whose bandwidth estimate caps the
    /// bytes in flight).
    bbr: bool,
    /// BBR's estimates as last read, and when: they move over round trips,
    /// so a reading serves [`BBR_REFRESH`] of writes (one system call per
    /// write less).
    bbr_seen: std::sync::Mutex<Option<(std::time::Instant, BbrPath)>>,
}

/// How long a reading of BBR's estimates is used.
const BBR_REFRESH: Duration = Duration::from_millis(5);

/// What the gate lets wait unsent, in time at the path's rate.
pub const GATE_TIME: Duration = Duration::from_millis(2);

/// What the gate lets be in flight and unsent, in smallest round trips at
/// the path's rate (plus [`GATE_TIME`]): room for the rate to grow by half
/// a round trip, a standing queue of half the path's round trip at most.
pub const INFLIGHT_GAIN: f64 = 1.5;

/// Whether the in-flight cap is applied. Off: when a path's round trip
/// grows on a live tunnel, BBR keeps its old minimum for up to 10 s and the
/// cap then holds keepalives back behind data for a round trip — the
/// simulated world's manual-mode-suggest counted them lost (17 %, 44 %) and
/// fled a Wi-Fi that was only slower. It comes back on once the gate can
/// tell a longer path from a standing queue (docs/performance.md).
pub const INFLIGHT_CAP: bool = false;

/// The most the gate lets wait unsent, whatever the rate.
const GATE_CEILING: u32 = 256 * 1024;

/// The gate always lets this many segments be in flight (TCP's initial
/// window), whatever it measured.
const INFLIGHT_FLOOR_SEGMENTS: u64 = 10;

/// The longest the gate waits before it looks again.
const GATE_RECHECK: Duration = Duration::from_millis(2);

/// What one reading of `TCP_INFO` lets the writer do.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Verdict {
    /// The unsent limit (what the low-water mark follows).
    limit: u32,
    /// `None`: write; else look again after this long.
    wait: Option<Duration>,
}

/// The gate's rule, apart from the socket: `bbr` is what BBR knows of the
/// path when the socket runs BBR.
fn verdict(i: &TcpInfo, bbr: Option<BbrPath>, floor: u32) -> Verdict {
    let bw = bbr.map(|b| b.bw);
    let known = |r: u64| (r != 0 && r != u64::MAX).then_some(r);
    // What the path delivers: BBR's filtered estimate, or else the last
    // delivery rate (the pacing rate runs ahead of it while the congestion
    // control probes for more).
    let rate = match (
        bw.and_then(known),
        known(i.delivery_rate),
        known(i.pacing_rate),
    ) {
        (Some(b), _, _) => Some(b),
        (None, Some(d), Some(p)) => Some(d.min(p)),
        (None, d, p) => d.or(p),
    };
    let Some(rate) = rate else {
        let wait = (i.notsent > floor).then_some(GATE_RECHECK);
        return Verdict { limit: floor, wait };
    };
    let bytes_in = |t: Duration| rate as f64 * t.as_secs_f64();
    let limit = u32::try_from(bytes_in(GATE_TIME) as u64)
        .unwrap_or(GATE_CEILING)
        .clamp(floor, GATE_CEILING);
    let mut excess = u64::from(i.notsent.saturating_sub(limit));
    // Bytes in flight only against a filtered estimate: a cap from the
    // last delivery rate would feed on itself (less in flight, a lower
    // rate, a smaller cap).
    if let Some(min_rtt) = bbr
        .filter(|_| INFLIGHT_CAP)
        .map(|b| b.min_rtt)
        .filter(|r| !r.is_zero())
    {
        let mss = u64::from(i.snd_mss.max(536));
        let cap = (bytes_in(min_rtt.mul_f64(INFLIGHT_GAIN) + GATE_TIME) as u64)
            .max(INFLIGHT_FLOOR_SEGMENTS * mss)
            .max(u64::from(limit));
        let held = u64::from(i.unacked) * mss + u64::from(i.notsent);
        excess = excess.max(held.saturating_sub(cap));
    }
    let wait = (excess > 0).then(|| {
        Duration::from_secs_f64(excess as f64 / rate as f64)
            .clamp(Duration::from_micros(200), GATE_RECHECK)
    });
    Verdict { limit, wait }
}

impl SendGate {
    /// A [`TcpWatch`] on the gate's socket (for figures beside the
    /// writer's).
    pub fn watch(&self) -> std::io::Result<TcpWatch> {
        TcpWatch::new(self.fd.get_ref())
    }

    /// A gate on the socket behind `fd` (a duplicate descriptor is kept)
    /// that lets at least `floor` bytes wait unsent.
    #[allow(unsafe_code)]
    pub fn new(fd: impl AsFd, floor: u32) -> std::io::Result<Self> {
        let own = fd.as_fd().try_clone_to_owned()?;
        // SAFETY: the descriptor is our own duplicate, owned by the AsyncFd
        // and closed only when it is dropped, after its registration.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(own, tokio::io::Interest::WRITABLE)?
        };
        let bbr = congestion_control(fd.get_ref()).is_ok_and(|cc| cc == "bbr");
        Ok(Self {
            fd,
            floor,
            lowat: std::sync::atomic::AtomicU32::new(0),
            bbr,
            bbr_seen: std::sync::Mutex::new(None),
        })
    }

    /// BBR's estimates, read at most every [`BBR_REFRESH`].
    fn bbr_path(&self) -> Option<BbrPath> {
        if !self.bbr {
            return None;
        }
        let now = std::time::Instant::now();
        let mut seen = match self.bbr_seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((at, path)) = *seen
            && now.duration_since(at) < BBR_REFRESH
        {
            return Some(path);
        }
        let path = bbr_path(self.fd.get_ref()).ok();
        *seen = path.map(|p| (now, p));
        path
    }

    /// Returns once little enough waits in the socket (or it cannot say,
    /// or the socket is closed or failed: the write reports that).
    pub async fn ready(&self) {
        use std::sync::atomic::Ordering;
        loop {
            // Never a loop that does not yield: the box and the relay run
            // on one thread each.
            tokio::task::coop::consume_budget().await;
            let Ok(i) = tcp_info(self.fd.get_ref()) else {
                return;
            };
            let v = verdict(&i, self.bbr_path(), self.floor);
            // The writability edge comes at the low-water mark: keep it at
            // the limit (a system call only when the limit moved by a quarter).
            let lowat = self.lowat.load(Ordering::Relaxed);
            if lowat.abs_diff(v.limit) > lowat / 4
                && set_notsent_lowat(self.fd.get_ref(), v.limit).is_ok()
            {
                self.lowat.store(v.limit, Ordering::Relaxed);
            }
            let Some(wait) = v.wait else {
                return;
            };
            match tokio::time::timeout(wait, self.fd.writable()).await {
                Ok(Ok(mut guard)) => {
                    // Closed or failed: tokio keeps that readiness for good
                    // (waiting on it again would return at once, forever).
                    let r = guard.ready();
                    if r.is_write_closed() || r.is_error() {
                        return;
                    }
                    // Writable by the kernel's measure; ours decides.
                    guard.clear_ready();
                }
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A reading of a tunnel on a 50 Mbit/s path with a 10 ms round trip.
    fn reading(unacked: u32, notsent: u32) -> TcpInfo {
        TcpInfo {
            rtt: Duration::from_millis(40),
            since_last_ack: Duration::ZERO,
            since_last_data: Duration::ZERO,
            unacked,
            retransmits: 0,
            total_retrans: 0,
            notsent,
            pacing_rate: 18_000_000,
            delivery_rate: 6_250_000,
            min_rtt: Duration::from_millis(10),
            snd_mss: 1448,
            delivery_rate_app_limited: false,
        }
    }

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

    #[test]
    fn the_gate_holds_the_writer_at_a_queue_of_its_own() {
        let bw = Some(BbrPath {
            bw: 6_250_000,
            min_rtt: Duration::from_millis(10),
        });
        // 2 ms at 6.25 MB/s: 12.5 kB may wait unsent.
        let quiet = verdict(&reading(20, 0), bw, 4096);
        assert_eq!(quiet.limit, 12_500);
        assert_eq!(quiet.wait, None);
        // 40 ms of data in flight (BBR still in its start-up gain) on a
        // 10 ms path: held, about as long as the excess takes to leave.
        let queued = verdict(&reading(190, 0), bw, 4096);
        if INFLIGHT_CAP {
            assert!(queued.wait.is_some_and(|w| w >= Duration::from_millis(1)));
        } else {
            assert_eq!(queued.wait, None, "the in-flight cap is off");
        }
        // Within 1.5 round trips and 2 ms: goes.
        assert_eq!(verdict(&reading(60, 4000), bw, 4096).wait, None);
        // Unsent beyond the limit: held even with little in flight.
        assert!(verdict(&reading(1, 40_000), bw, 4096).wait.is_some());
    }

    #[test]
    fn the_round_trip_is_bbrs_recent_one_not_the_connections_smallest() {
        // The tunnel was set up on a 10 ms path that has become an 80 ms
        // one (TCP_INFO's minimum remembers 5 minutes, BBR's 10 s): 80 kB
        // in flight at 625 kB/s is less than 1.5 of BBR's round trips.
        let mut i = reading(50, 0);
        i.min_rtt = Duration::from_millis(11);
        let bbr = Some(BbrPath {
            bw: 625_000,
            min_rtt: Duration::from_millis(80),
        });
        assert_eq!(verdict(&i, bbr, 4096).wait, None);
    }

    #[test]
    fn without_a_filtered_estimate_only_the_unsent_bytes_count() {
        // Without BBR's bandwidth the delivery rate sets the unsent limit,
        // but no cap on bytes in flight (it would feed on itself).
        let v = verdict(&reading(190, 0), None, 4096);
        assert_eq!(
            v,
            Verdict {
                limit: 12_500,
                wait: None
            }
        );
        // Nothing measured yet: the floor.
        let mut fresh = reading(1, 5000);
        fresh.pacing_rate = 0;
        fresh.delivery_rate = 0;
        let v = verdict(&fresh, None, 4096);
        assert_eq!(
            v,
            Verdict {
                limit: 4096,
                wait: Some(GATE_RECHECK)
            }
        );
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

    /// Found on the radio bench: a tunnel closed with bytes still unsent
    /// (its path had died) keeps the "write closed" readiness tokio never
    /// clears; the gate must return (the write reports the error), not
    /// spin without yielding — which froze cnaptd's whole runtime.
    #[test]
    fn a_closed_socket_with_bytes_unsent_opens_the_gate_instead_of_spinning() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                    .await
                    .unwrap();
                let (_far, _) = l.accept().await.unwrap();
                let gate = SendGate::new(&c, 4096).unwrap();
                let chunk = vec![7u8; 64 * 1024];
                while let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(100), c.write(&chunk)).await
                {
                }
                assert!(tcp_info(&c).unwrap().notsent > 4096);
                // Both directions shut: the socket hangs up with its queue.
                let c = c.into_std().unwrap();
                c.shutdown(std::net::Shutdown::Both).unwrap();
                let r = tokio::time::timeout(Duration::from_secs(5), gate.ready()).await;
                drop(c);
                r
            });
            let _ = done_tx.send(r.is_ok());
        });
        let opened = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the gate spun without yielding: the runtime froze");
        assert!(opened, "the gate held a closed socket");
    }

    #[test]
    fn a_descriptor_that_is_not_a_tcp_socket_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(tcp_info(&f).is_err());
    }
}
