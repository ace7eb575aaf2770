//! A test bed: a temporary directory with a PKI, and the daemons started in
//! it. Everything it started is killed (by pid) when it is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of a workspace binary built next to this test (`target/<profile>/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// A TCP port free on 127.0.0.1 right now, and not handed out before by
/// this process (the kernel gives a port just released again: two services
/// of one configuration once got the same one).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port free on 127.0.0.1 that was not handed out already");
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Its name (for messages).
    pub name: String,
    child: Child,
    /// Its log file (stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Asks it to stop (SIGTERM) and waits up to `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory with a PKI and the daemons of one test.
#[derive(Debug)]
pub struct Bed {
    /// The directory.
    pub dir: PathBuf,
    /// Daemons started (dropped = killed).
    pub daemons: Vec<Daemon>,
    /// Extra environment for the daemons started from now on.
    pub env: Vec<(String, String)>,
    /// A command the daemons started from now on run under (it must exec
    /// them, keeping the pid: `prlimit --nofile=64:64 --`), if any.
    pub wrapper: Vec<String>,
    /// Processes a daemon of the bed started (an upgraded snaptd), killed
    /// by pid with the bed.
    pub descendants: Vec<u32>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.daemons.clear();
        for pid in self.descendants.drain(..) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test bed kept for inspection: {}", self.dir.display());
        }
    }
}

impl Bed {
    /// A bed with a CA and a server certificate for 127.0.0.1.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cbox-relay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bed dir");
        let bed = Self {
            dir,
            daemons: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
            descendants: Vec::new(),
        };
        bed.pki(&["init"]);
        bed.pki(&["server", "snapt", "--san", "127.0.0.1"]);
        bed
    }

    /// Runs `cboxctl pki --dir <bed>/pki ARGS`, panicking on failure.
    pub fn pki(&self, args: &[&str]) -> String {
        let out = Command::new(bin("cboxctl"))
            .arg("pki")
            .arg("--dir")
            .arg(self.dir.join("pki"))
            .args(args)
            .output()
            .expect("cboxctl");
        assert!(
            out.status.success(),
            "cboxctl pki {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Path inside the bed.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Writes `text` to `name` in the bed and starts `daemon -c` on it.
    pub fn start(&mut self, daemon: &str, name: &str, text: &str) -> usize {
        let conf = self.path(&format!("{name}.toml"));
        std::fs::write(&conf, text).expect("config");
        let log = self.path(&format!("{name}.log"));
        let mut cmd = match self.wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(bin(daemon));
                c
            }
            None => Command::new(bin(daemon)),
        };
        let child = cmd
            .arg("-c")
            .arg(&conf)
            .env(
                "RUST_LOG",
                std::env::var("CBOX_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn daemon");
        self.daemons.push(Daemon {
            name: name.into(),
            child,
            log,
        });
        self.daemons.len() - 1
    }

    /// Starts any helper process (a bus, a D-Bus test double) as one of
    /// the bed's daemons: stderr and stdout to `<name>.log`, killed with
    /// the bed.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> usize {
        let log = self.path(&format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log");
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        self.daemons.push(Daemon {
            name: name.into(),
            child,
            log,
        });
        self.daemons.len() - 1
    }

    /// Starts snaptd `name` listening on `port`; `top` holds top-level keys,
    /// `extra` tables appended after `[tls]`.
    pub fn snaptd(&mut self, name: &str, port: u16, top: &str, extra: &str) -> PathBuf {
        self.snaptd_as(name, "snapt", port, top, extra)
    }

    /// As [`Self::snaptd`], presenting the server certificate `cert`
    /// (`cboxctl pki server CERT`, issued beforehand).
    pub fn snaptd_as(
        &mut self,
        name: &str,
        cert: &str,
        port: u16,
        top: &str,
        extra: &str,
    ) -> PathBuf {
        let control = self.path(&format!("{name}.sock"));
        let pki = self.path("pki");
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\ncontrol_socket = \"{}\"\n{top}\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/{cert}.pem\"\nkey = \"{p}/servers/{cert}.key\"\ncrl = \"{p}/crl.pem\"\n{extra}",
            control.display(),
            p = pki.display()
        );
        let i = self.start("snaptd", name, &text);
        self.wait_for_socket(i, &control);
        control
    }

    /// Starts cnaptd for `box_id` (certificate issued if needed) with `body`
    /// TOML (snapts, uplinks, services, session) appended.
    pub fn cnaptd(&mut self, box_id: &str, body: &str) -> PathBuf {
        self.cnaptd_with(box_id, "", body)
    }

    /// As [`Self::cnaptd`], with top-level keys `top` before `[tls]`.
    pub fn cnaptd_with(&mut self, box_id: &str, top: &str, body: &str) -> PathBuf {
        if !self.path(&format!("pki/boxes/{box_id}.pem")).exists() {
            self.pki(&["box", box_id]);
        }
        let control = self.path(&format!("{box_id}.sock"));
        // A restarted daemon: the socket left by the last one is no sign.
        let _ = std::fs::remove_file(&control);
        let pki = self.path("pki");
        let text = format!(
            "box_id = \"{box_id}\"\ncontrol_socket = \"{}\"\n{top}\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/boxes/{box_id}.pem\"\nkey = \"{p}/boxes/{box_id}.key\"\n{body}",
            control.display(),
            p = pki.display()
        );
        let i = self.start("cnaptd", box_id, &text);
        self.wait_for_socket(i, &control);
        control
    }

    /// A daemon's log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }
}

impl Bed {
    /// Waits for a daemon's control socket; if the daemon exits first, fails
    /// with its log.
    fn wait_for_socket(&mut self, daemon: usize, p: &Path) {
        let until = Instant::now() + Duration::from_secs(10);
        while !p.exists() {
            let d = &mut self.daemons[daemon];
            if d.exited() {
                let log = std::fs::read_to_string(&d.log).unwrap_or_default();
                panic!("{} exited at start:\n{log}", d.name);
            }
            assert!(Instant::now() < until, "{} did not appear", p.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `cboxctl --socket S --json ARGS`: the JSON reply, or the error text.
pub fn ctl(socket: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(bin("cboxctl"))
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// `cboxctl snapt --snapt-socket S --json ARGS`.
pub fn snapt_ctl(socket: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(bin("cboxctl"))
        .arg("--json")
        .arg("snapt")
        .arg("--snapt-socket")
        .arg(socket)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Polls `f` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every site of the box at `socket` is Established.
pub fn wait_established(socket: &Path) {
    wait_until(Duration::from_secs(15), "the box to be established", || {
        ctl(socket, &["status"]).is_ok_and(|v| {
            v["sites"]
                .as_array()
                .is_some_and(|s| !s.is_empty() && s.iter().all(|x| x["state"] == "Established"))
        })
    });
}
