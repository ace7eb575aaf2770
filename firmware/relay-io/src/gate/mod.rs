//! The send gate: holds a tunnel's writer back while the socket already
//! holds what the path needs (unsent bytes, and bytes in flight against
//! BBR's estimates), so that a keystroke waits behind milliseconds of a
//! download, not a window of it.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

pub mod stale;

use crate::transport::{
    BbrPath, TcpInfo, TcpWatch, bbr_path, congestion_control, set_notsent_lowat, tcp_info,
};

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
/// then looks again. The in-flight cap is lifted while BBR's round trip is
/// stale (the path got longer: [`stale`]).
#[derive(Debug)]
pub struct SendGate {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    floor: u32,
    lowat: std::sync::atomic::AtomicU32,
    /// Whether the socket runs BBR (whose bandwidth estimate caps the
    /// bytes in flight).
    bbr: bool,
    /// What the gate has seen of the path.
    seen: std::sync::Mutex<Seen>,
}

/// What a gate remembers between its readings.
#[derive(Debug)]
struct Seen {
    /// BBR's estimates as last read, and when: they move over round trips,
    /// so a reading serves [`BBR_REFRESH`] of writes (one system call per
    /// write less).
    bbr: Option<(Instant, BbrPath)>,
    /// Whether BBR's minimum round trip can be trusted for the in-flight
    /// cap (`stale`).
    cap: stale::CapState,
    /// What the last reading let the writer write, less what it wrote
    /// since, and when it was read: while a chunk fits in it no new
    /// reading is needed (acknowledgements only add room).
    allowance: Option<(Instant, u64)>,
    /// When BBR's round-trip clock was last restarted (or the gate made).
    restarted: Instant,
    /// Times it was restarted (for figures).
    restarts: u64,
    /// BBR could not be set again after a restart: no more restarts.
    restart_failed: bool,
}

/// How often the gate restarts BBR's round-trip clock on a busy tunnel
/// whose round trip is current: sooner than BBR's own 10 s, after which it
/// would spend 200 ms in PROBE_RTT at four segments in flight — every
/// stream of the tunnel (each keystroke) stalled behind it, where separate
/// connections would only slow the download.
pub const BBR_RESTART_EVERY: Duration = Duration::from_secs(8);

/// Whether BBR's minimum round trip is the connection's (`TCP_INFO`'s, of
/// the last 5 minutes) within a tenth: a restarted BBR takes the
/// connection's as its own, which after a path got longer is stale.
fn round_trip_is_current(connection_min: Duration, bbr_min: Duration) -> bool {
    bbr_min.saturating_sub(connection_min) <= bbr_min / 10 + Duration::from_micros(100)
}

/// Restarts BBR on a live connection: set to another control and back, it
/// is initialised again — its round-trip clock starts now (with the
/// connection's minimum), and it measures the bandwidth anew within a
/// round trip (the gate's in-flight cap holds its start-up gain).
/// Without `CAP_NET_ADMIN`, `bbr` must be in
/// `net.ipv4.tcp_allowed_congestion_control` (it is when it is the
/// default); `reno` always is. Tries twice to set BBR back.
fn restart_bbr(fd: impl AsFd) -> std::io::Result<()> {
    use crate::transport::set_congestion_control;
    set_congestion_control(&fd, "reno")?;
    set_congestion_control(&fd, "bbr").or_else(|_| set_congestion_control(&fd, "bbr"))
}

/// Takes a write of `len` plain bytes from `allowance` if it covers them
/// and is recent; else forgets it (the next write reads the socket).
fn pass(allowance: &mut Option<(Instant, u64)>, now: Instant, len: usize) -> bool {
    let len = on_the_wire(len);
    match *allowance {
        Some((at, room)) if now.saturating_duration_since(at) < ALLOWANCE_AGE && room >= len => {
            *allowance = Some((at, room - len));
            true
        }
        _ => {
            *allowance = None;
            false
        }
    }
}

/// What `len` plain bytes take in the socket: TLS adds 22 bytes per
/// record of at most 16 KiB.
fn on_the_wire(len: usize) -> u64 {
    (len + len / 512 + 22) as u64
}

/// How long a reading's allowance serves: the rate it was computed at
/// moves little within it.
const ALLOWANCE_AGE: Duration = Duration::from_millis(2);

/// How long a reading of BBR's estimates is used.
const BBR_REFRESH: Duration = Duration::from_millis(5);

/// What the gate lets wait unsent, in time at the path's rate.
pub const GATE_TIME: Duration = Duration::from_millis(2);

/// What the gate lets be in flight and unsent, in smallest round trips at
/// the path's rate (plus [`GATE_TIME`]): room for the rate to grow by a
/// quarter in a round trip, a standing queue of a quarter of the path's
/// round trip at most. (1.5 let a tunnel whose BBR stays in its start-up
/// gain keep half a round trip queued: on the 10 ms Wi-Fi of the
/// keystroke bench a p50 of 21–30 ms, 18 ms with 1.25, plain TCP 27 ms.)
pub const INFLIGHT_GAIN: f64 = 1.25;

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
    /// What may still be written before this reading would hold the
    /// writer (0 when it holds it).
    room: u64,
}

/// The gate's rule, apart from the socket: `bbr` is what BBR knows of the
/// path when the socket runs BBR; `cap`, whether its round trip may cap the
/// bytes in flight ([`stale::CapState`]).
fn verdict(i: &TcpInfo, bbr: Option<BbrPath>, cap: bool, floor: u32) -> Verdict {
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
        let room = u64::from(floor.saturating_sub(i.notsent));
        return Verdict {
            limit: floor,
            wait,
            room,
        };
    };
    let bytes_in = |t: Duration| rate as f64 * t.as_secs_f64();
    let limit = u32::try_from(bytes_in(GATE_TIME) as u64)
        .unwrap_or(GATE_CEILING)
        .clamp(floor, GATE_CEILING);
    let mut excess = u64::from(i.notsent.saturating_sub(limit));
    let mut room = u64::from(limit.saturating_sub(i.notsent));
    // Bytes in flight only against a filtered estimate: a cap from the
    // last delivery rate would feed on itself (less in flight, a lower
    // rate, a smaller cap).
    if let Some(min_rtt) = bbr
        .filter(|_| cap)
        .map(|b| b.min_rtt)
        .filter(|r| !r.is_zero())
    {
        let mss = u64::from(i.snd_mss.max(536));
        let cap = (bytes_in(min_rtt.mul_f64(INFLIGHT_GAIN) + GATE_TIME) as u64)
            .max(INFLIGHT_FLOOR_SEGMENTS * mss)
            .max(u64::from(limit));
        let held = u64::from(i.unacked) * mss + u64::from(i.notsent);
        excess = excess.max(held.saturating_sub(cap));
        room = room.min(cap.saturating_sub(held));
    }
    let wait = (excess > 0).then(|| {
        Duration::from_secs_f64(excess as f64 / rate as f64)
            .clamp(Duration::from_micros(200), GATE_RECHECK)
    });
    Verdict { limit, wait, room }
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
            seen: std::sync::Mutex::new(Seen {
                bbr: None,
                cap: stale::CapState::default(),
                allowance: None,
                restarted: Instant::now(),
                restarts: 0,
                restart_failed: false,
            }),
        })
    }

    /// BBR's estimates (read at most every [`BBR_REFRESH`]), and whether
    /// the in-flight cap applies, given the reading `i`; restarts BBR's
    /// round-trip clock when due ([`BBR_RESTART_EVERY`]).
    fn bbr_path(&self, i: &TcpInfo) -> (Option<BbrPath>, bool) {
        let srtt = i.rtt;
        if !self.bbr {
            return (None, false);
        }
        let now = Instant::now();
        let mut seen = self.seen();
        let path = match seen.bbr {
            Some((at, path)) if now.duration_since(at) < BBR_REFRESH => Some(path),
            _ => {
                let path = bbr_path(self.fd.get_ref()).ok();
                seen.bbr = path.map(|p| (now, p));
                path
            }
        };
        let lifts = seen.cap.lifts;
        let cap = path.is_some_and(|p| seen.cap.update(now, srtt, p.min_rtt));
        if seen.cap.lifts != lifts {
            tracing::debug!(
                srtt_ms = srtt.as_secs_f64() * 1e3,
                bbr_min_rtt_ms = path.map_or(0.0, |p| p.min_rtt.as_secs_f64() * 1e3),
                "send gate: in-flight cap lifted, the path is longer than BBR's round trip"
            );
        }
        if let Some(p) = path
            && cap
            && !seen.restart_failed
            && now.duration_since(seen.restarted) >= BBR_RESTART_EVERY
            && round_trip_is_current(i.min_rtt, p.min_rtt)
        {
            seen.restarted = now;
            match restart_bbr(self.fd.get_ref()) {
                Ok(()) => {
                    seen.restarts += 1;
                    tracing::debug!(
                        bbr_min_rtt_ms = p.min_rtt.as_secs_f64() * 1e3,
                        "send gate: BBR restarted (its round-trip clock, instead of PROBE_RTT)"
                    );
                }
                Err(e) => {
                    seen.restart_failed = true;
                    tracing::warn!(error = %e, "send gate: BBR could not be restarted; BBR's PROBE_RTT will stall the tunnel every 10 s");
                }
            }
        }
        if seen.restart_failed {
            return (None, false);
        }
        (path, cap)
    }

    /// Times BBR's round-trip clock was restarted.
    pub fn bbr_restarts(&self) -> u64 {
        self.seen().restarts
    }

    /// Times the in-flight cap was lifted because BBR's round trip was
    /// stale (the path got longer).
    pub fn cap_lifts(&self) -> u64 {
        self.seen().cap.lifts
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether a write of `len` (plain) bytes may go without a new reading
    /// of the socket: the last reading's allowance still covers it (then it
    /// is taken from it). On a fast path most writes, on a slow one none.
    pub fn try_pass(&self, len: usize) -> bool {
        pass(&mut self.seen().allowance, Instant::now(), len)
    }

    /// As [`Self::ready`] before a write of `len` (plain) bytes, without a
    /// reading while the last one's allowance covers them ([`Self::try_pass`]).
    pub async fn ready_for(&self, len: usize) {
        if self.try_pass(len) {
            return;
        }
        self.ready().await;
        let mut seen = self.seen();
        if let Some((_, room)) = &mut seen.allowance {
            *room = room.saturating_sub(on_the_wire(len));
        }
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
            let (bbr, cap) = self.bbr_path(&i);
            let v = verdict(&i, bbr, cap, self.floor);
            // The writability edge comes at the low-water mark: keep it at
            // the limit (a system call only when the limit moved by a quarter).
            let lowat = self.lowat.load(Ordering::Relaxed);
            if lowat.abs_diff(v.limit) > lowat / 4
                && set_notsent_lowat(self.fd.get_ref(), v.limit).is_ok()
            {
                self.lowat.store(v.limit, Ordering::Relaxed);
            }
            let Some(wait) = v.wait else {
                self.seen().allowance = Some((Instant::now(), v.room));
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
    fn the_gate_holds_the_writer_at_a_queue_of_its_own() {
        let bw = Some(BbrPath {
            bw: 6_250_000,
            min_rtt: Duration::from_millis(10),
        });
        // 2 ms at 6.25 MB/s: 12.5 kB may wait unsent.
        let quiet = verdict(&reading(20, 0), bw, true, 4096);
        assert_eq!(quiet.limit, 12_500);
        assert_eq!(quiet.wait, None);
        // 40 ms of data in flight (BBR still in its start-up gain) on a
        // 10 ms path: held, about as long as the excess takes to leave.
        let queued = verdict(&reading(190, 0), bw, true, 4096);
        assert!(queued.wait.is_some_and(|w| w >= Duration::from_millis(1)));
        // Unless the cap is lifted (BBR's round trip is stale).
        assert_eq!(verdict(&reading(190, 0), bw, false, 4096).wait, None);
        // Within 1.25 round trips and 2 ms (90.6 kB): goes; just beyond:
        // held.
        assert_eq!(verdict(&reading(50, 4000), bw, true, 4096).wait, None);
        assert!(verdict(&reading(60, 4000), bw, true, 4096).wait.is_some());
        // Unsent beyond the limit: held even with little in flight.
        assert!(verdict(&reading(1, 40_000), bw, true, 4096).wait.is_some());
    }

    #[test]
    fn the_round_trip_is_bbrs_recent_one_not_the_connections_smallest() {
        // The tunnel was set up on a 10 ms path that has become an 80 ms
        // one (TCP_INFO's minimum remembers 5 minutes, BBR's 10 s): 58 kB
        // in flight at 625 kB/s is less than 1.25 of BBR's round trips.
        let mut i = reading(40, 0);
        i.min_rtt = Duration::from_millis(11);
        let bbr = Some(BbrPath {
            bw: 625_000,
            min_rtt: Duration::from_millis(80),
        });
        assert_eq!(verdict(&i, bbr, true, 4096).wait, None);
    }

    #[test]
    fn a_reading_lets_the_writes_it_covers_pass_without_another() {
        let t = Instant::now();
        let mut a = Some((t, 40_000));
        assert!(pass(&mut a, t, 16_384));
        assert!(pass(&mut a, t + Duration::from_millis(1), 16_384));
        // What is left (about 7 kB) does not cover another: read again.
        assert!(!pass(&mut a, t + Duration::from_millis(1), 16_384));
        assert_eq!(a, None);
        assert!(!pass(&mut a, t, 1), "nothing to take from");
        // An old reading does not serve, however much it allowed.
        let mut a = Some((t, 1 << 30));
        assert!(!pass(&mut a, t + ALLOWANCE_AGE, 100));
    }

    #[tokio::test]
    async fn the_allowance_is_what_the_reading_found_room_for() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (_far, _) = l.accept().await.unwrap();
        let gate = SendGate::new(&c, 4096).unwrap();
        gate.ready().await;
        let room = gate.seen().allowance.map(|(_, r)| r);
        // Nothing unsent: at least the floor, at most the unsent ceiling.
        assert!(
            room.is_some_and(|r| (4096..=u64::from(GATE_CEILING)).contains(&r)),
            "{room:?}"
        );
        assert!(!gate.try_pass(1 << 20), "more than the reading allowed");
        assert_eq!(gate.seen().allowance, None);
    }

    #[test]
    fn bbr_is_restarted_only_while_its_round_trip_is_the_connections() {
        let ms = Duration::from_millis;
        assert!(round_trip_is_current(ms(10), ms(10)));
        assert!(round_trip_is_current(ms(10), ms(11)));
        assert!(round_trip_is_current(
            Duration::from_micros(30),
            Duration::from_micros(90)
        ));
        // The path got longer: BBR measured 90 ms, the connection still
        // remembers 10 ms; a restart would take the stale 10 ms.
        assert!(!round_trip_is_current(ms(10), ms(90)));
    }

    #[tokio::test]
    async fn a_restarted_bbr_runs_bbr_again_on_a_live_connection() {
        use crate::transport::{congestion_control, set_congestion_control};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (mut far, _) = l.accept().await.unwrap();
        set_congestion_control(&c, "bbr").expect("this test needs tcp_bbr (modprobe tcp_bbr)");
        c.write_all(&[1u8; 100_000]).await.unwrap();
        restart_bbr(&c).unwrap();
        assert_eq!(congestion_control(&c).unwrap(), "bbr");
        // The connection carries on.
        c.write_all(&[2u8; 100_000]).await.unwrap();
        let mut got = vec![0u8; 200_000];
        far.read_exact(&mut got).await.unwrap();
        assert!(got[..100_000].iter().all(|b| *b == 1) && got[100_000..].iter().all(|b| *b == 2));
        assert!(
            bbr_path(&c).is_ok(),
            "BBR's estimates readable after the restart"
        );
    }

    #[test]
    fn without_a_filtered_estimate_only_the_unsent_bytes_count() {
        // Without BBR's bandwidth the delivery rate sets the unsent limit,
        // but no cap on bytes in flight (it would feed on itself).
        let v = verdict(&reading(190, 0), None, true, 4096);
        assert_eq!(
            v,
            Verdict {
                limit: 12_500,
                wait: None,
                room: 12_500
            }
        );
        // Nothing measured yet: the floor.
        let mut fresh = reading(1, 5000);
        fresh.pacing_rate = 0;
        fresh.delivery_rate = 0;
        let v = verdict(&fresh, None, true, 4096);
        assert_eq!(
            v,
            Verdict {
                limit: 4096,
                wait: Some(GATE_RECHECK),
                room: 0
            }
        );
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
}
