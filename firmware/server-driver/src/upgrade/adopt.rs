//! Step 4 of an upgrade (see the module above): the sessions, connections
//! and flows taken over — by the new process from its predecessor, or by
//! the old one from itself when a handover failed half-way.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;

use relay_io::io::WriteCmd;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::{debug, info, warn};
use wire::{BoxId, Codec, ResetCode, Role, StreamKind};

use super::{Inheritance, InheritanceBox, Label};
use crate::{Key, ServerDriver, now};

/// What [`ServerDriver::adopt`] took over.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Adopted {
    pub(crate) sessions: usize,
    pub(crate) connections: usize,
    pub(crate) flows: usize,
    /// Streams opened again toward their service (their connect was under
    /// way in the old process: nothing had been sent either way).
    pub(crate) reconnected: usize,
    /// Streams reset: compressed, or whose connection could not be handed
    /// over.
    pub(crate) reset: usize,
}

/// What the driver needs of a stream after its image went into the server.
struct StreamMeta {
    id: wire::StreamId,
    kind: StreamKind,
    service: wire::ServiceName,
    dest: Option<std::net::SocketAddr>,
    codec: Codec,
    /// Nothing sent or delivered either way yet.
    untouched: bool,
    peer_fin_emitted: bool,
}

impl ServerDriver {
    /// Keeps what a predecessor handed over ([`super::receive`]): `run`
    /// listens on its sockets and takes over its sessions.
    pub fn inherit(&mut self, inh: InheritanceBox, predecessor: daemon::handoff::Channel) {
        self.inherited = Some(inh.0);
        self.predecessor = Some(predecessor);
    }

    /// A TCP listener for `label`: handed over, or bound now. A copy of it
    /// is kept for the next upgrade.
    pub(crate) async fn listen_tcp(&mut self, label: Label) -> std::io::Result<TcpListener> {
        let addr = match &label {
            Label::Tunnel(a) | Label::ClientTcp(a) | Label::QosTcp(a) => *a,
            _ => return Err(std::io::Error::other("not a TCP listener")),
        };
        let listener = match self
            .inherited
            .as_mut()
            .and_then(|i| i.listeners.remove(&label))
        {
            Some(fd) => {
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true)?;
                debug!(%addr, "listener handed over");
                TcpListener::from_std(l)?
            }
            None => TcpListener::bind(addr).await?,
        };
        self.keep_listener(label, &listener);
        Ok(listener)
    }

    /// A UDP client-service socket for `label` (handed over or bound now).
    pub(crate) async fn listen_udp(&mut self, label: Label) -> std::io::Result<UdpSocket> {
        let Label::ClientUdp(addr) = label else {
            return Err(std::io::Error::other("not a UDP socket"));
        };
        let sock = match self
            .inherited
            .as_mut()
            .and_then(|i| i.listeners.remove(&label))
        {
            Some(fd) => {
                let s = std::net::UdpSocket::from(fd);
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s)?
            }
            None => UdpSocket::bind(addr).await?,
        };
        self.keep_listener(label, &sock);
        Ok(sock)
    }

    fn keep_listener(&mut self, label: Label, sock: &impl std::os::fd::AsFd) {
        match sock.as_fd().try_clone_to_owned() {
            Ok(fd) => self.listen_fds.push((label, fd)),
            Err(e) => warn!(error = %e, "listener not kept for upgrades"),
        }
    }

    /// Takes over the inherited sessions, connections and flows: each
    /// session waits for its box to resume; each stream gets its connection
    /// back (and a FIN the old process owed it); a stream whose connect was
    /// still under way is connected again; anything that cannot carry on is
    /// reset with its reason (never closed as if complete).
    pub(crate) fn adopt(&mut self) -> Adopted {
        let Some(inh) = self.inherited.take() else {
            return Adopted::default();
        };
        let Inheritance {
            streams,
            flows,
            images,
            drain_s,
            ..
        } = inh;
        let mut conns: HashMap<Key, (bool, OwnedFd)> = streams
            .into_iter()
            .map(|(k, fin, fd)| (k, (fin, fd)))
            .collect();
        let mut flow_fds: HashMap<Key, OwnedFd> = flows.into_iter().collect();
        let mut done = Adopted::default();
        let mut failed: HashSet<BoxId> = HashSet::new();
        for img in images {
            let b = img.owner.clone();
            let metas: Vec<StreamMeta> = img
                .streams
                .iter()
                .map(|s| StreamMeta {
                    id: s.id,
                    kind: s.kind,
                    service: s.service.clone(),
                    dest: s.dest,
                    codec: s.codec,
                    untouched: s.acked == 0 && s.unacked.is_empty() && s.delivered == 0,
                    peer_fin_emitted: s.peer_fin_emitted,
                })
                .collect();
            if let Err(e) = self.server.import(img, now()) {
                warn!(box_id = %b, error = %e, "session not taken over; its connections are reset");
                failed.insert(b);
                continue;
            }
            done.sessions += 1;
            for m in metas {
                self.adopt_stream(&b, m, &mut conns, &mut flow_fds, &mut done);
            }
        }
        for ((b, sid), (_, fd)) in conns {
            // A stream that ended while the old process stopped (its close
            // not yet heard): closed as complete; one of a session that
            // could not be taken over: reset.
            if failed.contains(&b)
                && let Ok(s) = tcp_from(fd)
            {
                let _ = s.set_zero_linger();
            }
            debug!(box_id = %b, stream = %sid, "connection without a stream closed");
        }
        if let Some(s) = drain_s {
            // A drain under way carries on, with the time it had left.
            let _ = self.start_drain(s);
        }
        info!(
            sessions = done.sessions,
            connections = done.connections,
            flows = done.flows,
            reconnected = done.reconnected,
            reset = done.reset,
            "sessions taken over"
        );
        done
    }

    fn adopt_stream(
        &mut self,
        b: &BoxId,
        m: StreamMeta,
        conns: &mut HashMap<Key, (bool, OwnedFd)>,
        flow_fds: &mut HashMap<Key, OwnedFd>,
        done: &mut Adopted,
    ) {
        let key = (b.clone(), m.id);
        let opened_by_box = m.id.opener() == Role::Box;
        let outcome: Result<(), String> = match m.kind {
            StreamKind::Stream => match conns.remove(&key) {
                Some((fin_sent, fd)) => tcp_from(fd).map(|stream| {
                    self.locals.attach(key.clone(), stream);
                    if m.peer_fin_emitted && !fin_sent {
                        let _ = self.locals.deliver(key.clone(), WriteCmd::Finish);
                    }
                    done.connections += 1;
                }),
                None if m.untouched && opened_by_box && m.codec == Codec::None => {
                    self.open_target(b.clone(), m.id, m.kind, m.service, m.dest, m.codec);
                    done.reconnected += 1;
                    Ok(())
                }
                None if m.codec != Codec::None => {
                    Err("relay upgraded: a compressed stream cannot move to the new process".into())
                }
                None => {
                    Err("relay upgraded: this stream's connection could not be handed over".into())
                }
            },
            StreamKind::Datagram => match flow_fds.remove(&key) {
                Some(fd) => udp_from(fd).map(|sock| {
                    self.start_flow(key.clone(), sock);
                    done.flows += 1;
                }),
                // A box's flow without a socket: opened afresh (a UDP
                // server sees a new source port).
                None if opened_by_box => {
                    self.open_target(b.clone(), m.id, m.kind, m.service, m.dest, m.codec);
                    done.reconnected += 1;
                    Ok(())
                }
                // A client-service flow: the server's next datagram opens
                // a new one.
                None => Err("relay upgraded: client-service flow ended".into()),
            },
        };
        if let Err(reason) = outcome {
            done.reset += 1;
            daemon::warn_throttled!(box_id = %b, stream = %m.id, %reason, "stream reset");
            if let Some(s) = self.server.session_mut(b) {
                let _ = s.streams().reset(m.id, ResetCode::ConnectFailed, &reason);
            }
        }
    }
}

fn tcp_from(fd: OwnedFd) -> Result<TcpStream, String> {
    let s = std::net::TcpStream::from(fd);
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    TcpStream::from_std(s).map_err(|e| e.to_string())
}

fn udp_from(fd: OwnedFd) -> Result<UdpSocket, String> {
    let s = std::net::UdpSocket::from(fd);
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    UdpSocket::from_std(s).map_err(|e| e.to_string())
}

impl ServerDriver {
    /// Step 4's end: systemd learns the new main pid, the predecessor
    /// hears TAKEN (and exits). If it is gone, this process carries on: a
    /// predecessor that gives up kills its successor before it takes
    /// anything back, so both never run the same sessions.
    pub(crate) async fn tell_predecessor(&mut self) {
        let Some(ch) = self.predecessor.take() else {
            return;
        };
        daemon::notify_main_pid();
        let sent = tokio::task::spawn_blocking(move || ch.send(super::TAKEN, &[])).await;
        match sent {
            Ok(Ok(())) => info!("took over from the previous snaptd"),
            Ok(Err(e)) => warn!(error = %e, "the previous snaptd did not hear TAKEN; carrying on"),
            Err(e) => warn!(error = %e, "the previous snaptd did not hear TAKEN; carrying on"),
        }
    }
}
