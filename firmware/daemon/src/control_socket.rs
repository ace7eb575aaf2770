//! The daemons' control socket: a Unix socket (a stale one replaced) whose
//! every connection may send requests, one JSON line each, answered in
//! order; the requests go to the driver as [`Call`]s.

use std::path::Path;

use control::{Call, Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// Listens on `path` (replacing a stale socket) and forwards every request;
/// returns the accept loop's handle.
pub fn serve(
    path: &Path,
    calls: mpsc::UnboundedSender<Call>,
) -> std::io::Result<tokio::task::AbortHandle> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let task = crate::accept::spawn_accept_loop(
        listener,
        "control",
        crate::accept::AcceptStats::default(),
        move |sock| {
            if calls.is_closed() {
                return false;
            }
            let calls = calls.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut lines = BufReader::new(rd).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match serde_json::from_str::<Request>(&line) {
                        Err(e) => Reply::err(format!("bad request: {e}")),
                        Ok(req) => {
                            let (tx, rx) = oneshot::channel();
                            if calls.send((req, tx)).is_err() {
                                Reply::err("daemon is shutting down")
                            } else {
                                rx.await
                                    .unwrap_or_else(|_| Reply::err("daemon dropped the request"))
                            }
                        }
                    };
                    let mut text =
                        serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
                    text.push('\n');
                    if wr.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
            true
        },
    );
    Ok(task.abort_handle())
}
