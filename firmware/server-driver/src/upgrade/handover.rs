//! Steps 1, 3 and 5 of an upgrade (see the module above): the old process
//! starts its successor, stops, writes everything down, hands it over and
//! exits — or, if the handover fails half-way, takes it all back itself.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use control::Reply;
use daemon::handoff::{Channel, MAX_FDS, MAX_MESSAGE};
use relay_io::io::Released;
use relay_io::locals::LocalEvent;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{END, HELLO, IMAGE, Inheritance, Label, SOCKETS, START_TIMEOUT, STEP_TIMEOUT, TAKEN};
use crate::{Input, Key, ServerDriver};

/// A new process that said HELLO, and the operator waiting for the outcome.
#[derive(Debug)]
pub(crate) struct Successor {
    channel: Channel,
    child: std::process::Child,
    reply: oneshot::Sender<Reply>,
    asked: Instant,
}

/// A connection stopped for the handover.
struct Stopped {
    fd: OwnedFd,
    fin_sent: bool,
    unread: Vec<u8>,
    eof: bool,
}

impl ServerDriver {
    /// How to start a successor: this program (the file now installed at
    /// its path) with these arguments and `--take-over-fd N`.
    pub fn upgrade_command(&mut self, program: PathBuf, args: Vec<OsString>) {
        self.upgrade_cmd = Some((program, args));
    }

    /// Step 1: starts the successor and waits (off the loop) for its HELLO.
    pub(crate) fn start_upgrade(&mut self, reply: oneshot::Sender<Reply>) {
        if self.upgrading {
            let _ = reply.send(Reply::err("an upgrade is already under way"));
            return;
        }
        let Some((program, args)) = self.upgrade_cmd.clone() else {
            let _ = reply.send(Reply::err(
                "this snaptd was started without a way to upgrade",
            ));
            return;
        };
        let (channel, theirs) = match Channel::pair() {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Reply::err(format!("handover channel: {e}")));
                return;
            }
        };
        let child = std::process::Command::new(&program)
            .args(&args)
            .arg("--take-over-fd")
            .arg(theirs.as_raw_fd().to_string())
            .spawn();
        drop(theirs);
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Reply::err(format!("starting {}: {e}", program.display())));
                return;
            }
        };
        info!(program = %program.display(), pid = child.id(), "upgrade: successor started");
        self.upgrading = true;
        let tx = self.tx.clone();
        let asked = Instant::now();
        tokio::task::spawn_blocking(move || {
            let hello = channel
                .set_timeout(START_TIMEOUT)
                .and_then(|()| channel.recv());
            match hello {
                Ok((msg, _)) if msg == HELLO => {
                    let _ = tx.send(Input::SuccessorReady(Successor {
                        channel,
                        child,
                        reply,
                        asked,
                    }));
                }
                outcome => {
                    let why = match outcome {
                        Ok(_) => "it sent something else than HELLO".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    // Ours to end: it never took anything.
                    let _ = child.kill();
                    let status = child
                        .wait()
                        .map_or_else(|e| format!("not known: {e}"), |s| s.to_string());
                    warn!(%why, %status, "upgrade abandoned before anything moved: the new snaptd did not start");
                    let _ = reply.send(Reply::err(format!(
                        "the new snaptd did not start ({why}; {status}); this one carries on (the log says why)"
                    )));
                    let _ = tx.send(Input::UpgradeAbandoned);
                }
            }
        });
    }

    /// Steps 3 and 5: stops everything, hands it to `s` and returns true
    /// (the process must exit now); false if it took everything back.
    pub(crate) async fn hand_over(&mut self, s: Successor) -> bool {
        let started = Instant::now();
        if let Some(hb) = &self.heartbeat {
            hb.stopping();
        }
        let Successor {
            channel,
            mut child,
            reply,
            asked,
        } = s;
        let (inh, stopped_streams) = self.stop_everything().await;
        let stopped_at = started.elapsed();
        let counts = (inh.images.len(), inh.streams.len(), inh.flows.len());
        let (inh, outcome) = tokio::task::spawn_blocking(move || {
            let r = send_all(&channel, &inh);
            (inh, r)
        })
        .await
        .unwrap_or_else(|e| (Inheritance::default(), Err(std::io::Error::other(e))));
        match outcome {
            Ok(()) => {
                info!(
                    sessions = counts.0,
                    connections = counts.1,
                    flows = counts.2,
                    stopped_ms = stopped_at.as_millis() as u64,
                    handed_ms = started.elapsed().as_millis() as u64,
                    "upgrade: everything handed over; exiting"
                );
                // The boxes see their tunnels end now and resume on the
                // successor.
                self.tunnels.clear();
                let _ = reply.send(Reply::ok(json!({
                    "successor_pid": child.id(),
                    "sessions": counts.0,
                    "connections": counts.1,
                    "flows": counts.2,
                    "streams_stopped": stopped_streams,
                    "stopped_ms": stopped_at.as_millis() as u64,
                    "handover_ms": started.elapsed().as_millis() as u64,
                    "total_ms": asked.elapsed().as_millis() as u64,
                })));
                true
            }
            Err(e) => {
                error!(error = %e, "upgrade failed half-way: taking everything back");
                let _ = child.kill();
                let _ = tokio::task::spawn_blocking(move || child.wait()).await;
                self.take_back(inh).await;
                let _ = reply.send(Reply::err(format!(
                    "the handover failed ({e}); this snaptd took its sessions back and carries on"
                )));
                false
            }
        }
    }

    /// Stops accepting, reading and writing; returns the material of a
    /// handover and how many connections stopped.
    async fn stop_everything(&mut self) -> (Inheritance, usize) {
        for t in self.listen_tasks.drain(..) {
            t.abort();
        }
        for t in self.tunnels.values_mut() {
            if let Some(r) = t.reader.take() {
                r.abort();
            }
        }
        for (_, c) in self.connecting.drain() {
            c.abort();
        }
        let handovers = self.locals.release_all();
        let flows = self.flows.take_opened();
        let mut stopped: HashMap<Key, Stopped> = HashMap::new();
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let n = handovers.len();
        for h in handovers {
            if let Some(r) = h.reader {
                let _ = tokio::time::timeout_at(deadline, r).await;
            }
            // A writer that had ended (its connection failed) has nothing
            // to hand over: the new process resets its stream.
            if let Ok(Ok(Released { half, fin_sent })) =
                tokio::time::timeout_at(deadline, h.writer).await
            {
                let fd = half.as_ref().as_fd().try_clone_to_owned();
                half.forget();
                match fd {
                    Ok(fd) => {
                        stopped.insert(
                            h.key,
                            Stopped {
                                fd,
                                fin_sent,
                                unread: h.unread,
                                eof: h.eof,
                            },
                        );
                    }
                    Err(e) => warn!(error = %e, "connection not handed over"),
                }
            }
        }
        // What the readers and writers reported before they stopped.
        while let Ok(input) = self.rx.try_recv() {
            match input {
                Input::Local(LocalEvent::Delivered { key, n, .. }) => {
                    if let Some(s) = self.server.session_mut(&key.0) {
                        let _ = s.streams().delivered(key.1, n);
                    }
                }
                Input::Local(LocalEvent::Data { key, bytes, .. }) => {
                    if let Some(s) = stopped.get_mut(&key) {
                        s.unread.extend_from_slice(&bytes);
                    }
                }
                Input::Local(LocalEvent::End { key, error: None }) => {
                    if let Some(s) = stopped.get_mut(&key) {
                        s.eof = true;
                    }
                }
                Input::Local(LocalEvent::End {
                    key,
                    error: Some(_),
                }) => {
                    stopped.remove(&key);
                }
                Input::Control((_, reply)) => {
                    let _ = reply.send(Reply::err("snaptd is handing over to a new process"));
                }
                _ => {}
            }
        }
        let mut inh = Inheritance {
            images: self.server.images(),
            drain_s: self
                .drain_deadline
                .map(|d| d.saturating_duration_since(Instant::now()).as_secs()),
            ..Inheritance::default()
        };
        for img in &mut inh.images {
            for st in &mut img.streams {
                let Some(s) = stopped.get(&(img.owner.clone(), st.id)) else {
                    continue;
                };
                if st.fin.is_none() {
                    // Read from the server, not yet taken by the session.
                    st.unacked.extend_from_slice(&s.unread);
                    if s.eof {
                        st.fin = Some(st.written());
                    }
                }
            }
        }
        for (label, fd) in self.listen_fds.drain(..) {
            inh.listeners.insert(label, fd);
        }
        for (key, s) in stopped {
            inh.streams.push((key, s.fin_sent, s.fd));
        }
        for (key, sock) in flows {
            match sock.as_fd().try_clone_to_owned() {
                Ok(fd) => inh.flows.push((key, fd)),
                Err(e) => warn!(error = %e, "datagram flow not handed over"),
            }
        }
        (inh, n)
    }

    /// A failed handover: a fresh session table takes the images back, the
    /// tunnels close (the boxes resume here), listeners and connections
    /// restart.
    async fn take_back(&mut self, inh: Inheritance) {
        self.tunnels.clear();
        match session::Server::new(self.cfg.server.clone(), rand_seed()) {
            Ok(server) => self.server = server,
            Err(e) => error!(error = %e, "session table not renewed"),
        }
        self.inherited = Some(inh);
        if let Some(hb) = self.heartbeat.clone() {
            hb.forget_tasks();
            if let Err(e) = self.start_listeners(&hb).await {
                error!(error = %e, "listeners not restarted after a failed upgrade");
            }
        }
        self.adopt();
        self.upgrading = false;
    }
}

/// Seed for a renewed session table.
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32)
}

/// Sends the material (blocking): descriptors in batches, the images in
/// pieces, the counts; then waits for TAKEN.
fn send_all(channel: &Channel, inh: &Inheritance) -> std::io::Result<()> {
    channel.set_timeout(STEP_TIMEOUT)?;
    let mut all: Vec<(String, &OwnedFd)> = Vec::new();
    for (l, fd) in &inh.listeners {
        all.push((l.encode(), fd));
    }
    for (key, fin, fd) in &inh.streams {
        all.push((Label::Stream(key.clone(), *fin).encode(), fd));
    }
    for (key, fd) in &inh.flows {
        all.push((Label::Flow(key.clone()).encode(), fd));
    }
    let mut batch_bytes = SOCKETS.len();
    let mut batch: Vec<&(String, &OwnedFd)> = Vec::new();
    let flush = |batch: &mut Vec<&(String, &OwnedFd)>| -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut msg = SOCKETS.to_vec();
        msg.extend_from_slice(
            batch
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
                .as_bytes(),
        );
        let fds: Vec<_> = batch.iter().map(|(_, fd)| fd.as_fd()).collect();
        channel.send(&msg, &fds)?;
        batch.clear();
        Ok(())
    };
    for item in &all {
        if batch.len() == MAX_FDS || batch_bytes + item.0.len() + 1 > MAX_MESSAGE {
            flush(&mut batch)?;
            batch_bytes = SOCKETS.len();
        }
        batch_bytes += item.0.len() + 1;
        batch.push(item);
    }
    flush(&mut batch)?;
    let image = session::image::encode(&inh.images);
    for piece in image.chunks(MAX_MESSAGE - IMAGE.len()) {
        let mut msg = IMAGE.to_vec();
        msg.extend_from_slice(piece);
        channel.send(&msg, &[])?;
    }
    let mut end = END.to_vec();
    let drain = inh.drain_s.map_or("-".into(), |s| s.to_string());
    end.extend_from_slice(format!("{} {} {drain}", all.len(), image.len()).as_bytes());
    channel.send(&end, &[])?;
    // The successor imports and starts accepting before it answers.
    channel.set_timeout(Duration::from_secs(30))?;
    let (msg, _) = channel.recv()?;
    if msg != TAKEN {
        return Err(std::io::Error::other(format!(
            "the successor answered {:?}",
            String::from_utf8_lossy(&msg)
        )));
    }
    Ok(())
}
