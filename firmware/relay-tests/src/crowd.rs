//! A crowd of hand-driven boxes: each with its own certificate and real TLS
//! 1.3, connecting, holding and resuming its session as cnaptd does (a
//! REFUSED's wait plus up to a quarter; a failed or closed connection: full
//! jitter from 0.2 s doubling to 5 s; a lost tunnel: SWITCH_UNEXPECTED on
//! the same relay, a new session if the relay no longer knows it). Used by
//! the `reconnect_storm` example and by `cbox-crowd`, the simulated world's
//! box load generator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wire::{BoxId, Frame, RefuseCode, SyncState, VERSION};

use crate::raw::Raw;

/// What a crowd saw, times since its start.
#[derive(Debug, Default)]
pub struct Tally {
    /// When each TLS connection was begun.
    pub attempts: Vec<Duration>,
    /// REFUSED Busy (or Draining) answers.
    pub busy: usize,
    /// Connections that failed or closed before an answer.
    pub failed: usize,
    /// When each box got its session (or got it back).
    pub done: Vec<Duration>,
    /// The first refusal's reason.
    pub reason: Option<String>,
}

impl Tally {
    /// The most attempts begun in one 100 ms window, as a rate per second.
    pub fn peak_attempts_per_s(&self) -> usize {
        let mut windows = std::collections::HashMap::<u128, usize>::new();
        for a in &self.attempts {
            *windows.entry(a.as_millis() / 100).or_default() += 1;
        }
        windows.values().max().copied().unwrap_or(0) * 10
    }

    /// The median and the largest of `done`.
    pub fn median_and_max(&self) -> (Duration, Duration) {
        let mut done = self.done.clone();
        done.sort();
        (
            done.get(done.len() / 2).copied().unwrap_or_default(),
            done.last().copied().unwrap_or_default(),
        )
    }
}

/// A pseudo-random number (a fresh `RandomState` per call).
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

/// Full jitter over a ceiling doubling to 5 s.
pub fn jittered(ceiling: &mut Duration) -> Duration {
    let w = Duration::from_millis(random() % (ceiling.as_millis() as u64 + 1));
    *ceiling = (*ceiling * 2).min(Duration::from_secs(5));
    w
}

/// Where one box of the crowd goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The PKI folder (`boxes/<id>.pem`).
    pub pki: PathBuf,
    /// The box id.
    pub id: String,
    /// The relay's (or router's) address.
    pub addr: SocketAddr,
    /// The name in the SNI (the box's relay of a fleet).
    pub server: String,
}

/// What one attempt came to.
enum Answer {
    Session(Box<Raw>, u64),
    Unknown,
    Wait(Duration),
    Failed,
}

async fn attempt(t: &Target, first: Frame, tally: &Mutex<Tally>, start: Instant) -> Answer {
    tally.lock().unwrap().attempts.push(start.elapsed());
    let Ok(mut raw) = Raw::connect_to(&t.pki, &t.id, t.addr, &t.server).await else {
        tally.lock().unwrap().failed += 1;
        return Answer::Failed;
    };
    let resumed = match &first {
        Frame::SwitchUnexpected { session_id, .. } => Some(*session_id),
        _ => None,
    };
    let _ = raw.send(&first).await;
    match raw.recv(Duration::from_secs(10)).await {
        Some(Frame::ConnectAck { session_id, .. }) => Answer::Session(Box::new(raw), session_id),
        Some(Frame::AllRedirected { .. }) => {
            Answer::Session(Box::new(raw), resumed.unwrap_or_default())
        }
        Some(Frame::Refused {
            code: RefuseCode::UnknownSession,
            ..
        }) => Answer::Unknown,
        Some(Frame::Refused {
            retry_after_ms,
            reason,
            ..
        }) if retry_after_ms > 0 => {
            let mut tl = tally.lock().unwrap();
            tl.busy += 1;
            tl.reason.get_or_insert(reason);
            let w = Duration::from_millis(u64::from(retry_after_ms));
            Answer::Wait(w + Duration::from_millis(random() % (w.as_millis() as u64 / 4 + 1)))
        }
        _ => {
            tally.lock().unwrap().failed += 1;
            Answer::Failed
        }
    }
}

/// Gets `t` a session: its old one resumed (`resume`: its id and the next
/// switch number) or, if the relay does not know it, a new one. Gives up
/// after 200 attempts. Returns the tunnel, the session id and whether it
/// was resumed.
pub async fn session(
    t: &Target,
    mut resume: Option<(u64, u32)>,
    incarnation: &mut u64,
    tally: &Mutex<Tally>,
    start: Instant,
) -> Option<(Raw, u64, bool)> {
    let mut backoff = Duration::from_millis(200);
    for _ in 0..200 {
        let first = match &mut resume {
            Some((session_id, switch)) => {
                *switch += 1;
                Frame::SwitchUnexpected {
                    version: VERSION,
                    session_id: *session_id,
                    switch: *switch,
                    box_id: BoxId::new(&t.id).ok()?,
                    sync: SyncState {
                        peer_opened_seen: 0,
                        streams: Vec::new(),
                    },
                }
            }
            None => {
                *incarnation += 1;
                Frame::Connect {
                    version: VERSION,
                    window: 65536,
                    keepalive_ms: 1000,
                    incarnation: *incarnation,
                    box_id: BoxId::new(&t.id).ok()?,
                }
            }
        };
        let wait = match attempt(t, first, tally, start).await {
            Answer::Session(raw, sid) => {
                tally.lock().unwrap().done.push(start.elapsed());
                return Some((*raw, sid, resume.is_some()));
            }
            Answer::Unknown => {
                resume = None;
                Duration::ZERO
            }
            Answer::Wait(w) => w,
            Answer::Failed => jittered(&mut backoff),
        };
        tokio::time::sleep(wait).await;
    }
    None
}

/// One box arriving (a new session), its first attempt within 200 ms of
/// the crowd's start; its tunnel is kept open.
pub async fn arrive(t: Target, start: Instant, tally: Arc<Mutex<Tally>>) -> Option<(Raw, u64)> {
    tokio::time::sleep(Duration::from_millis(random() % 200)).await;
    let mut incarnation = 0;
    session(&t, None, &mut incarnation, &tally, start)
        .await
        .map(|(raw, sid, _)| (raw, sid))
}

/// Holds a session as a live box does (a PING a second, what comes is
/// read) until the relay closes the tunnel (true) or `until` (false).
pub async fn hold(raw: &mut Raw, until: Instant) -> bool {
    let mut nonce = 0;
    while Instant::now() < until {
        nonce += 1;
        if raw.send(&Frame::Ping { nonce }).await.is_err() {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if raw.closed_within(left.min(Duration::from_secs(1))).await {
            return true;
        }
    }
    false
}
