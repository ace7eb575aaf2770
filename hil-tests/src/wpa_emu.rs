//! An emulator of wpa_supplicant's control socket for the simulated world,
//! where there is no Wi-Fi hardware: the real wpa_supplicant (wired
//! driver) refuses SCAN and SIGNAL_POLL. Speaks the wpa_ctrl datagram
//! protocol on a Unix socket — one request per datagram from a client's
//! bound socket, the reply to that socket, events to the clients that sent
//! `ATTACH` — so cnaptd's real Wi-Fi driver runs against it. The station
//! itself ([`station::Station`]) is pure; this owns the socket and thread
//! and tells the world (through a callback) when the Wi-Fi link is
//! associated, roaming or lost.

pub mod station;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use station::{Effect, Hotspot, LinkChange, Station};

/// Called with every change of the Wi-Fi link.
pub type OnLink = Box<dyn Fn(&LinkChange) + Send>;

/// A running emulator; stops (thread joined, socket removed) when dropped.
#[derive(Debug)]
pub struct WpaEmu {
    station: Arc<Mutex<Station>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// Attached monitors are dropped after this many failed sends in a row
/// (their socket is gone).
const MAX_SEND_FAILURES: u32 = 3;

impl WpaEmu {
    /// Serves `hotspots` on a control socket at `path` (its directory is
    /// created).
    pub fn start(path: &Path, hotspots: Vec<Hotspot>, on_link: OnLink) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).with_context(|| format!("{}", path.display()))?;
        sock.set_read_timeout(Some(Duration::from_millis(10)))?;
        let station = Arc::new(Mutex::new(Station::new(hotspots)));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, halt) = (station.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("wpa-emu".into())
            .spawn(move || serve(&sock, &st, &halt, &on_link))?;
        Ok(Self {
            station,
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Station) -> T) -> T {
        let mut st = self.station.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st)
    }

    /// The scenario changes what the box hears of `bssid` (`None`: out of
    /// range); `false` if no such hotspot exists.
    pub fn set_signal(&self, bssid: &str, signal_dbm: Option<i32>) -> bool {
        self.with(|s| s.set_signal(bssid, signal_dbm, Instant::now()))
    }

    /// The access point the box is associated with.
    pub fn associated(&self) -> Option<String> {
        self.with(|s| s.associated().map(String::from))
    }

    /// Roams completed so far.
    pub fn roams(&self) -> u32 {
        self.with(|s| s.roams())
    }
}

impl Drop for WpaEmu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(sock: &UnixDatagram, station: &Mutex<Station>, stop: &AtomicBool, on_link: &OnLink) {
    let mut monitors: Vec<(PathBuf, u32)> = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let got = sock.recv_from(&mut buf);
        let now = Instant::now();
        let mut st = station.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok((n, from)) = got
            && let Some(client) = from.as_pathname().map(Path::to_path_buf)
        {
            let req = String::from_utf8_lossy(&buf[..n]).trim().to_string();
            let reply = match req.as_str() {
                "ATTACH" => {
                    monitors.retain(|(p, _)| *p != client);
                    monitors.push((client.clone(), 0));
                    "OK\n".to_string()
                }
                "DETACH" => {
                    let before = monitors.len();
                    monitors.retain(|(p, _)| *p != client);
                    if monitors.len() < before {
                        "OK\n"
                    } else {
                        "FAIL\n"
                    }
                    .to_string()
                }
                r => st.handle(r, now),
            };
            let _ = sock.send_to(reply.as_bytes(), &client);
        }
        st.tick(now);
        let effects = st.drain();
        drop(st);
        for e in effects {
            match e {
                Effect::Event(msg) => {
                    for (path, fails) in &mut monitors {
                        match sock.send_to(msg.as_bytes(), &*path) {
                            Ok(_) => *fails = 0,
                            Err(_) => *fails += 1,
                        }
                    }
                    monitors.retain(|(_, f)| *f < MAX_SEND_FAILURES);
                }
                Effect::Link(change) => on_link(&change),
            }
        }
    }
}
