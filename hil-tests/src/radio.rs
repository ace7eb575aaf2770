//! The link emulator: a userspace "radio" in the path of an uplink. Two
//! threads (one per direction) enter the radio's network namespace, read
//! Ethernet frames from one veth end with a packet socket, and write them to
//! the other after the link's delay and jitter, subject to its loss, rate and
//! outage — all changeable while it runs (this kernel has no netem).
//!
//! Packet sockets need `sockaddr_ll`, which nix cannot build without
//! `unsafe`; the few libc calls live in [`packet`] with their invariants.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sched::{CloneFlags, setns};

/// What the radio does to frames. Defaults: see [`LinkParams::wifi`] and
/// [`LinkParams::lte`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// One-way delay.
    pub delay: Duration,
    /// Uniform jitter added to the delay (0..jitter); frames stay in order.
    pub jitter: Duration,
    /// Probability of dropping a frame.
    pub loss: f64,
    /// Bits per second (0 = unlimited).
    pub rate_bps: u64,
    /// Everything dropped (outage, out of coverage).
    pub down: bool,
}

impl LinkParams {
    /// A good Wi-Fi hotspot: 5 ms, 1 ms jitter, 50 Mbit/s.
    pub fn wifi() -> Self {
        Self {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            rate_bps: 50_000_000,
            down: false,
        }
    }

    /// LTE: 40 ms, 5 ms jitter, 20 Mbit/s.
    pub fn lte() -> Self {
        Self {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(5),
            loss: 0.0,
            rate_bps: 20_000_000,
            down: false,
        }
    }
}

/// A running radio; stops (threads joined) when dropped.
#[derive(Debug)]
pub struct Radio {
    /// Change these to change the link.
    pub params: Arc<Mutex<LinkParams>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Frames forwarded and dropped, both directions.
    pub counters: Arc<Counters>,
}

/// Frame counters of a radio.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames delivered.
    pub forwarded: std::sync::atomic::AtomicU64,
    /// Frames dropped (loss, outage, queue overflow).
    pub dropped: std::sync::atomic::AtomicU64,
}

impl Radio {
    /// Forwards between interfaces `a` and `b` of namespace `ns`.
    pub fn start(ns: &str, a: &str, b: &str, params: LinkParams) -> anyhow::Result<Self> {
        let params = Arc::new(Mutex::new(params));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for (i, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
            let (ns, from, to) = (ns.to_owned(), from.to_owned(), to.to_owned());
            let (params, stop, counters) = (params.clone(), stop.clone(), counters.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let t = std::thread::Builder::new()
                .name(format!("radio-{ns}-{i}"))
                .spawn(move || {
                    let setup = (|| -> anyhow::Result<(packet::Socket, packet::Socket)> {
                        let f = File::open(format!("/var/run/netns/{ns}"))
                            .with_context(|| format!("namespace {ns}"))?;
                        setns(f, CloneFlags::CLONE_NEWNET).context("setns")?;
                        Ok((packet::Socket::bind(&from)?, packet::Socket::bind(&to)?))
                    })();
                    match setup {
                        Ok((rx, tx)) => {
                            let _ = ready_tx.send(Ok(()));
                            forward(&rx, &tx, &params, &stop, &counters, i as u64 + 1);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })?;
            ready_rx.recv().context("radio thread")??;
            threads.push(t);
        }
        Ok(Self {
            params,
            stop,
            threads,
            counters,
        })
    }

    /// Changes the link.
    pub fn set(&self, f: impl FnOnce(&mut LinkParams)) {
        if let Ok(mut p) = self.params.lock() {
            f(&mut p);
        }
    }
}

impl Drop for Radio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One direction: frames wait in a queue until their departure time.
fn forward(
    rx: &packet::Socket,
    tx: &packet::Socket,
    params: &Mutex<LinkParams>,
    stop: &AtomicBool,
    counters: &Counters,
    seed: u64,
) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    // When the link is busy serialising earlier frames (rate limit).
    let mut busy_until = Instant::now();
    let mut last_departure = Instant::now();
    let mut buf = vec![0u8; 65_600];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        while queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, frame)) = queue.pop_front() {
                if tx.send(&frame) {
                    counters.forwarded.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let wait = queue
            .front()
            .map_or(Duration::from_millis(20), |(at, _)| {
                at.saturating_duration_since(now)
            })
            .min(Duration::from_millis(20));
        let Some(n) = rx.recv(&mut buf, wait) else {
            continue;
        };
        let p = params
            .lock()
            .map(|p| *p)
            .unwrap_or_else(|_| LinkParams::wifi());
        if p.down || (p.loss > 0.0 && rand() < p.loss) {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = Instant::now();
        let start = busy_until.max(now);
        let serialise = Duration::from_nanos(
            (n as u64 * 8 * 1_000_000_000)
                .checked_div(p.rate_bps)
                .unwrap_or(0),
        );
        busy_until = start + serialise;
        // A queue longer than 200 ms of traffic overflows: drop (a radio's buffer is finite).
        if busy_until > now + Duration::from_millis(200) + p.delay {
            busy_until = start;
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let jitter = p.jitter.mul_f64(rand());
        let at = (busy_until + p.delay + jitter).max(last_departure);
        last_departure = at;
        queue.push_back((at, buf[..n].to_vec()));
    }
}

/// `AF_PACKET` sockets bound to one interface.
#[allow(unsafe_code)]
mod packet {
    use std::time::Duration;

    use anyhow::bail;

    /// A raw packet socket on one interface; closed on drop.
    #[derive(Debug)]
    pub struct Socket {
        fd: libc::c_int,
    }

    impl Socket {
        /// Opens a packet socket for every protocol, bound to `ifname`.
        pub fn bind(ifname: &str) -> anyhow::Result<Self> {
            let ifindex = nix::net::if_::if_nametoindex(ifname)?;
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain syscall with constant arguments; the returned fd
            // is owned by `Socket` and closed exactly once in Drop.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            if fd < 0 {
                bail!("packet socket: {}", std::io::Error::last_os_error());
            }
            let s = Self { fd };
            // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
            let r = unsafe {
                libc::bind(
                    fd,
                    std::ptr::from_ref(&sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r < 0 {
                bail!("bind to {ifname}: {}", std::io::Error::last_os_error());
            }
            Ok(s)
        }

        /// Receives one frame that arrived on the interface (frames this
        /// socket's host sent are skipped), waiting at most `wait`.
        pub fn recv(&self, buf: &mut [u8], wait: Duration) -> Option<usize> {
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = wait.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                return None;
            }
            // SAFETY: zeroed sockaddr_ll is valid; the lengths describe the buffers.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    std::ptr::from_mut(&mut from).cast(),
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                return None;
            }
            Some(n as usize)
        }

        /// Sends one frame out of the interface.
        pub fn send(&self, frame: &[u8]) -> bool {
            // SAFETY: the buffer is valid for its length; the socket is bound.
            unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) >= 0 }
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            // SAFETY: the fd is owned by this value and closed once.
            unsafe { libc::close(self.fd) };
        }
    }
}
