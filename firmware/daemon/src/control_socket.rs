//! The daemons' control socket: a Unix socket (a stale one replaced; any
//! other file at its path is an error, never deleted) with mode 0660
//! whatever the umask, whose every connection may send requests, one JSON
//! line each (at most [`MAX_REQUEST`] bytes), answered in order; the
//! requests go to the driver as [`Call`]s.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use control::{Call, Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// The longest request line; a longer one is answered with an error and
/// its connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The socket's mode: its owner and group (the operators' group) only.
pub const SOCKET_MODE: u32 = 0o660;

/// Why `path` cannot be the control socket (`None`: it can): anything but
/// a socket or nothing at that path.
pub fn unusable(path: &Path) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Some(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        )),
        _ => None,
    }
}

/// Listens on `path` (replacing a stale socket) and forwards every request;
/// returns the accept loop's handle.
pub fn serve(
    path: &Path,
    calls: mpsc::UnboundedSender<Call>,
) -> std::io::Result<tokio::task::AbortHandle> {
    if let Some(why) = unusable(path) {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, why));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // Before the first accept, so no connection is taken under a looser mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
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
                let mut rd = BufReader::new(rd);
                let mut line = String::new();
                loop {
                    line.clear();
                    let limit = u64::try_from(MAX_REQUEST + 1).unwrap_or(u64::MAX);
                    match (&mut rd).take(limit).read_line(&mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if line.len() > MAX_REQUEST {
                        let reply =
                            Reply::err(format!("request longer than {MAX_REQUEST} bytes; closing"));
                        let mut text = serde_json::to_string(&reply).unwrap_or_default();
                        text.push('\n');
                        let _ = wr.write_all(text.as_bytes()).await;
                        break;
                    }
                    let reply = match serde_json::from_str::<Request>(line.trim_end()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cbox-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok();
        dir
    }

    #[tokio::test]
    async fn the_socket_is_for_its_owner_and_group_whatever_the_umask() {
        let dir = scratch("mode");
        let path = dir.join("ctl.sock");
        let (tx, _rx) = mpsc::unbounded_channel();
        let task = serve(&path, tx).expect("serve");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_file_at_the_socket_path_is_refused_and_kept() {
        let dir = scratch("file");
        let path = dir.join("important.txt");
        std::fs::write(&path, "keep me").expect("write");
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = serve(&path, tx).expect_err("a regular file is no socket");
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "keep me");
        assert!(unusable(&path).is_some());
        assert!(unusable(&dir.join("absent.sock")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_endless_request_line_is_answered_with_an_error_and_closed() {
        let dir = scratch("long");
        let path = dir.join("ctl.sock");
        let (tx, _rx) = mpsc::unbounded_channel();
        let task = serve(&path, tx).expect("serve");
        let sock = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        let (rd, mut wr) = sock.into_split();
        // Four times the limit without a newline; the server stops reading
        // at the limit, so the write may fail part way.
        let junk = vec![b'x'; 4 * MAX_REQUEST];
        let _ = wr.write_all(&junk).await;
        let mut lines = BufReader::new(rd).lines();
        let reply = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line())
            .await
            .expect("answered in time")
            .expect("read")
            .expect("a reply line");
        assert!(reply.contains("request longer than"), "{reply}");
        let end = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line())
            .await
            .expect("closed in time");
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
