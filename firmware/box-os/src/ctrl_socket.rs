//! A client of the wpa_ctrl socket protocol that wpa_supplicant and hostapd
//! both speak (`wpactrl`, blocking): requests on a thread of their own,
//! each bounded by a timeout (a wedged connection is abandoned and the
//! caller reopens), and an attached monitor on another thread whose events
//! go to a channel until it closes.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A directory of its own for each client socket: wpactrl names its socket
/// `wpa_ctrl_<pid>-1` and removes a file of that name when it opens, so two
/// clients of one process in one directory would steal each other's
/// replies; an abandoned client's cleanup must not hit its successor's.
fn client_dir(cli_dir: &Path, kind: &str) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = cli_dir.join(format!("{kind}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

type Job = (String, oneshot::Sender<Result<String, String>>);

/// A request connection on its own thread.
pub(crate) struct CtrlClient {
    jobs: std_mpsc::Sender<Job>,
    timeout: Duration,
}

impl CtrlClient {
    /// Connects to the daemon's socket `ctrl`; `name` tags the thread and
    /// the client's folder under `cli_dir`.
    pub(crate) fn open(
        ctrl: &Path,
        cli_dir: &Path,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let dir = client_dir(cli_dir, &format!("{name}-request"))?;
        let client = wpactrl::Client::builder()
            .ctrl_path(ctrl)
            .cli_path(&dir)
            .open()
            .map_err(|e| {
                let _ = std::fs::remove_dir(&dir);
                format!("{}: {e}", ctrl.display())
            })?;
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("{name}-request"))
            .spawn(move || {
                let mut client = client;
                while let Ok((cmd, reply)) = rx.recv() {
                    let r = client.request(&cmd).map_err(|e| e.to_string());
                    let _ = reply.send(r);
                }
                drop(client);
                let _ = std::fs::remove_dir(&dir);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { jobs: tx, timeout })
    }

    /// Sends `cmd`, waits for the reply at most the timeout.
    pub(crate) async fn ask(&self, cmd: &str) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((cmd.to_string(), tx))
            .map_err(|_| "the request thread is gone".to_string())?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the request thread is gone".into()),
            Err(_) => Err(format!("{cmd}: no answer within {:?}", self.timeout)),
        }
    }
}

/// The attached monitor on its own thread; events go to `out` until it
/// closes or the socket fails (then `out`'s receiver sees the end).
pub(crate) fn spawn_monitor(
    ctrl: &Path,
    cli_dir: &Path,
    name: &str,
    out: mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let dir = client_dir(cli_dir, &format!("{name}-events"))?;
    let client = wpactrl::Client::builder()
        .ctrl_path(ctrl)
        .cli_path(&dir)
        .open()
        .and_then(wpactrl::Client::attach)
        .map_err(|e| {
            let _ = std::fs::remove_dir(&dir);
            format!("attach: {e}")
        })?;
    std::thread::Builder::new()
        .name(format!("{name}-events"))
        .spawn(move || {
            let mut client = client;
            loop {
                match client.recv() {
                    Ok(Some(msg)) => {
                        if out.send(msg).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        if out.is_closed() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => break,
                }
            }
            drop(client);
            let _ = std::fs::remove_dir(&dir);
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
