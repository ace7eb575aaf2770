//! An LTE modem for the simulated world: speaks AT on a pty (a Quectel EC25
//! as its AT manual describes it: echo until `ATE0`, `+CME ERROR`s,
//! `+CEREG` URCs, `RDY` after a reset), so cnaptd's real modem driver runs
//! against it. Registration and signal follow the scenario; the data call
//! brings the box's `wwan0` link up and losing registration takes it down,
//! as a modem's data interface would. A reset makes the port disappear
//! (the pty closes, the symlink goes) and come back two seconds later.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::termios;

/// The scenario's levers.
#[derive(Debug)]
struct State {
    registered: bool,
    rsrp_dbm: i32,
    data: bool,
    reset_at: Option<Instant>,
    urcs: Vec<String>,
}

/// The running emulator; stops (and removes its port) when dropped.
pub struct ModemEmu {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    link: PathBuf,
}

impl std::fmt::Debug for ModemEmu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModemEmu")
            .field("port", &self.link)
            .finish()
    }
}

/// Called with `true` when the data call comes up, `false` when it drops.
pub type DataHook = Box<dyn Fn(bool) + Send>;

fn open_port(link: &Path) -> anyhow::Result<(std::fs::File, OwnedFd)> {
    let pty = nix::pty::openpty(None, None).context("openpty")?;
    // Not inherited by the daemons spawned later: a copy of the master in
    // cnaptd would keep the port alive through a "reset".
    for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
    }
    let mut t = termios::tcgetattr(pty.slave.as_fd())?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(pty.slave.as_fd(), termios::SetArg::TCSANOW, &t)?;
    let name = nix::unistd::ttyname(pty.slave.as_fd())?;
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&name, link)?;
    Ok((std::fs::File::from(pty.master), pty.slave))
}

impl ModemEmu {
    /// Starts a registered modem with good signal whose AT port is the
    /// symlink `link`; `on_data` follows its data call.
    pub fn start(link: &Path, on_data: DataHook) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            registered: true,
            rsrp_dbm: -85,
            data: false,
            reset_at: None,
            urcs: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let port = open_port(link)?;
        let (st, sp, lk) = (state.clone(), stop.clone(), link.to_path_buf());
        let thread = std::thread::spawn(move || serve(port, &lk, &st, &sp, &on_data));
        Ok(Self {
            state,
            stop,
            thread: Some(thread),
            link: link.to_path_buf(),
        })
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// The network takes the registration away (out of coverage) or gives
    /// it back; the URC goes out, a running data call drops.
    pub fn set_registered(&self, on: bool) {
        self.with(|s| {
            if s.registered != on {
                s.registered = on;
                s.urcs.push(if on {
                    "+CEREG: 1,\"1A2B\",\"01C3D4E5\",7".into()
                } else {
                    "+CEREG: 4".into()
                });
            }
        });
    }

    /// Signal (RSRP, dBm).
    pub fn set_rsrp(&self, dbm: i32) {
        self.with(|s| s.rsrp_dbm = dbm.clamp(-140, -44));
    }

    /// The module resets: the port disappears for two seconds.
    pub fn reset(&self) {
        self.with(|s| s.reset_at = Some(Instant::now()));
    }
}

impl Drop for ModemEmu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.link);
    }
}

fn serve(
    mut port: (std::fs::File, OwnedFd),
    link: &Path,
    state: &Mutex<State>,
    stop: &AtomicBool,
    on_data: &DataHook,
) {
    let mut echo = true;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    // Reads do not block, so the thread sees URCs, resets and the stop flag.
    let set_nonblocking = |f: &std::fs::File| {
        let _ = nix::fcntl::fcntl(
            f.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
    };
    set_nonblocking(&port.0);
    while !stop.load(Ordering::SeqCst) {
        let (urcs, reset) = match state.lock() {
            Ok(mut s) => (std::mem::take(&mut s.urcs), s.reset_at.take()),
            Err(_) => return,
        };
        if reset.is_some() {
            if let Ok(mut s) = state.lock()
                && s.data
            {
                s.data = false;
                on_data(false);
            }
            // Gone from the bus: the driver's reads fail, the port is absent.
            drop(port);
            let _ = std::fs::remove_file(link);
            std::thread::sleep(Duration::from_secs(2));
            match open_port(link) {
                Ok(p) => port = p,
                Err(_) => return,
            }
            set_nonblocking(&port.0);
            echo = true;
            line.clear();
            // Booted: says so (whoever has the port open hears it).
            let _ = port.0.write_all(b"\r\nRDY\r\n");
            continue;
        }
        for u in urcs {
            if u == "+CEREG: 4"
                && let Ok(mut s) = state.lock()
                && s.data
            {
                s.data = false;
                on_data(false);
            }
            let _ = port.0.write_all(format!("\r\n{u}\r\n").as_bytes());
        }
        match port.0.read(&mut buf) {
            Ok(n) if n > 0 => {
                for &b in &buf[..n] {
                    if b == b'\r' || b == b'\n' {
                        if line.is_empty() {
                            continue;
                        }
                        let cmd = String::from_utf8_lossy(&line).trim().to_string();
                        line.clear();
                        if echo {
                            let _ = port.0.write_all(format!("{cmd}\r").as_bytes());
                        }
                        if cmd.eq_ignore_ascii_case("ATE0") {
                            echo = false;
                        }
                        let reply = answer(&cmd, state, on_data);
                        let _ = port.0.write_all(reply.as_bytes());
                    } else if line.len() < 1024 {
                        line.push(b);
                    }
                }
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The modem's answer to one command line.
fn answer(cmd: &str, state: &Mutex<State>, on_data: &DataHook) -> String {
    let Ok(mut s) = state.lock() else {
        return "\r\nERROR\r\n".into();
    };
    let ok = |info: &str| {
        if info.is_empty() {
            "\r\nOK\r\n".to_string()
        } else {
            format!("\r\n{info}\r\n\r\nOK\r\n")
        }
    };
    let stat = if s.registered { 1 } else { 4 };
    match cmd {
        "AT" | "ATE0" | "ATE1" | "AT+CMEE=1" | "AT+CREG=2" | "AT+CEREG=2" | "AT+COPS=0" => ok(""),
        "ATI" => ok("Quectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G-cbox-world"),
        "AT+CPIN?" => ok("+CPIN: READY"),
        "AT+CEREG?" => ok(&format!("+CEREG: 2,{stat},\"1A2B\",\"01C3D4E5\",7")),
        "AT+CREG?" => ok(&format!("+CREG: 2,{stat},\"1A2B\",\"01C3D4E5\",7")),
        "AT+CSQ" => {
            // RSSI follows RSRP loosely (RSSI ≈ RSRP + 30 dB on a 10 MHz cell).
            let rssi = ((s.rsrp_dbm + 30 + 113) / 2).clamp(0, 31);
            ok(&format!("+CSQ: {rssi},99"))
        }
        "AT+CESQ" => ok(&format!("+CESQ: 99,99,255,255,20,{}", s.rsrp_dbm + 141)),
        "AT+COPS?" => ok(if s.registered {
            "+COPS: 0,0,\"cbox-world LTE\",7"
        } else {
            "+COPS: 0"
        }),
        "AT+CGPADDR=1" => ok(if s.data {
            "+CGPADDR: 1,\"198.18.20.2\""
        } else {
            "+CGPADDR: 1,\"0.0.0.0\""
        }),
        c if c.starts_with("AT+CGDCONT=1,") || c.starts_with("AT+QURCCFG=") => ok(""),
        "AT+QNETDEVCTL=1,1,1" | "AT+CGACT=1,1" => {
            if !s.registered {
                // 30: no network service.
                "\r\n+CME ERROR: 30\r\n".into()
            } else {
                if !s.data {
                    s.data = true;
                    on_data(true);
                }
                ok("")
            }
        }
        _ => "\r\nERROR\r\n".into(),
    }
}
