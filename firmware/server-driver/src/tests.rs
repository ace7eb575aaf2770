//! The server driver under paused time: a box made of the session core
//! (`BoxSession`) reaches it through in-memory tunnels handed in at its
//! door; the session's life — established, orphaned by a lost tunnel,
//! resumed within Z, released after it — is read from its status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use control::Request;
use session::{BoxSession, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use super::*;

/// The box's end: the session core and its current pipe.
struct BoxEnd {
    session: BoxSession,
    pipe: Option<(TunnelId, DuplexStream)>,
    next: u64,
}

impl BoxEnd {
    fn new() -> Self {
        let session =
            BoxSession::new(SessionConfig::default(), BoxId::new("box-1").unwrap(), 1).unwrap();
        Self {
            session,
            pipe: None,
            next: 1,
        }
    }

    /// A new tunnel through `door`, handed to the session.
    fn connect(&mut self, door: &TunnelDoor) {
        let (near, far) = tokio::io::duplex(1 << 20);
        assert!(door.enter(far, BoxId::new("box-1").unwrap(), "01".into(), None));
        let t = TunnelId(self.next);
        self.next += 1;
        if let Some((old, _)) = self.pipe.take() {
            self.session.handle_tunnel_lost(old, now());
        }
        self.session.switch_to(t, now()).unwrap();
        self.pipe = Some((t, near));
    }

    /// The tunnel breaks (both ends see it).
    fn lose_tunnel(&mut self) {
        if let Some((t, _)) = self.pipe.take() {
            self.session.handle_tunnel_lost(t, now());
        }
    }

    /// Runs the box's side for `d` of (virtual) time.
    async fn run_for(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(tx) = self.session.poll_transmit() {
                if let Some((t, p)) = self.pipe.as_mut()
                    && *t == tx.tunnel
                {
                    let _ = p.write_all(&tx.bytes).await;
                }
            }
            while self.session.poll_event().is_some() {}
            let timer = self
                .session
                .poll_timeout()
                .map(|(d, _)| tokio::time::Instant::from_std(d))
                .unwrap_or(end)
                .min(end);
            let Some((t, p)) = self.pipe.as_mut() else {
                tokio::time::sleep_until(end).await;
                return;
            };
            let t = *t;
            tokio::select! {
                r = p.read(&mut buf) => match r {
                    Ok(n) if n > 0 => self.session.handle_input(t, &buf[..n], now()),
                    _ => {
                        self.pipe = None;
                        self.session.handle_tunnel_lost(t, now());
                    }
                },
                _ = tokio::time::sleep_until(timer) => {
                    if timer >= end {
                        return;
                    }
                    self.session.handle_timeout(now());
                }
            }
        }
    }
}

/// A directory removed when dropped (also on failure).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a test holds of a running driver.
struct Running {
    door: TunnelDoor,
    control: mpsc::UnboundedSender<Call>,
    _stop: oneshot::Sender<()>,
    _dir: TempDir,
}

/// snaptd's driver with a fresh PKI, running.
async fn start(tag: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("cbox-server-driver-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = tls::Pki::new(&dir);
    pki.init("test CA", 1).unwrap();
    pki.issue_server("snapt", &["127.0.0.1".into()], 10)
        .unwrap();
    let (cert, key) = pki.server_files("snapt");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ncontrol_socket = \"{}/snaptd.sock\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.display(),
        pki.ca_cert().display(),
        cert.display(),
        key.display()
    );
    let cfg = SnaptConfig::parse(std::path::Path::new("snapt.toml"), &text).unwrap();
    let driver = ServerDriver::new(cfg, 7).unwrap();
    let (door, control) = (driver.door(), driver.control_handle());
    let (stop_tx, stop) = oneshot::channel();
    let (ready, ready_rx) = oneshot::channel();
    tokio::spawn(driver.run(Lifecycle {
        stop,
        ready,
        heartbeat: daemon::Heartbeat::new(),
    }));
    ready_rx.await.unwrap();
    Running {
        door,
        control,
        _stop: stop_tx,
        _dir: TempDir(dir),
    }
}

async fn boxes(control: &mpsc::UnboundedSender<Call>) -> Vec<serde_json::Value> {
    let (tx, rx) = oneshot::channel();
    control.send((Request::Status, tx)).unwrap();
    let r = rx.await.unwrap();
    r.data["boxes"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_session_outlives_a_lost_tunnel_within_z_and_is_released_after_it() {
    let Running { door, control, .. } = &start("lifecycle").await;
    let mut b = BoxEnd::new();
    b.connect(door);
    b.run_for(Duration::from_secs(2)).await;
    let up = boxes(control).await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["state"], "Established");
    let id = up[0]["session_id"].clone();

    // The tunnel breaks (an uplink lost): the session waits for the box.
    b.lose_tunnel();
    b.run_for(Duration::from_secs(1)).await;
    assert_eq!(boxes(control).await[0]["state"], "Orphaned");
    // The box comes back over a new tunnel within Z: resumed.
    b.connect(door);
    b.run_for(Duration::from_secs(2)).await;
    let back = boxes(control).await;
    assert_eq!(back[0]["state"], "Established");
    assert_eq!(back[0]["session_id"], id, "the same session");
    assert_eq!(back[0]["switches"], 1);

    // Then it falls silent (a blackhole: the pipe stays open): after the
    // inactivity timeout the session is orphaned, after Z released.
    let cfg = SessionConfig::default();
    tokio::time::sleep(cfg.inactivity_timeout + Duration::from_secs(1)).await;
    assert_eq!(boxes(control).await[0]["state"], "Orphaned");
    tokio::time::sleep(cfg.switch_timeout).await;
    assert!(boxes(control).await.is_empty(), "released after Z");
}
