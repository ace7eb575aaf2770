//! A relay upgrade without resets: the running snaptd hands its listening
//! sockets, its sessions (as `session::image`s) and its connections to the
//! real servers to a new snaptd process, then exits; the boxes resume on the
//! new process with the resynchronisation they use after any sudden loss.
//!
//! The sequence (docs/operations.md, "Upgrading a relay"):
//!
//! 1. old: `cboxctl snapt upgrade` (`systemctl reload snaptd`) starts the
//!    snaptd binary now installed, with the same arguments and one end of a
//!    handover channel (`--take-over-fd`).
//! 2. new: loads its configuration and certificates, then says `HELLO`. A
//!    new binary or configuration that cannot start fails here, and the old
//!    process carries on as if nothing had happened.
//! 3. old (`handover`): stops accepting and reading; each connection's
//!    writer stops between two system calls and reports what its socket
//!    took; the sessions are written down with what was read from servers
//!    but not yet taken; `SOCKETS` messages carry labelled descriptors,
//!    `IMAGE` messages the sessions, `END` the counts.
//! 4. new (`adopt`): takes the listeners, imports the sessions, gives every
//!    stream its connection back, starts accepting, tells systemd its pid,
//!    says `TAKEN`.
//! 5. old: closes its tunnels and exits. Every box sees its tunnel end,
//!    connects to the same address — the new process — and resumes.
//!
//! If anything fails after step 3 began, the old process takes its own
//! material back through the same `adopt` (its boxes resume on it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use daemon::handoff::Channel;
use session::image::SessionImage;
use wire::{BoxId, StreamId};

use crate::Key;

mod adopt;
mod handover;

pub(crate) use handover::Successor;

/// The new process is ready to take over.
const HELLO: &[u8] = b"HELLO";
/// Labels, one per line, for the message's descriptors.
const SOCKETS: &[u8] = b"SOCKETS\n";
/// A piece of the sessions' images.
const IMAGE: &[u8] = b"IMAGE";
/// Everything was sent: `END <descriptors> <image bytes> <drain s|->`.
const END: &[u8] = b"END ";
/// The new process has taken over and accepts.
const TAKEN: &[u8] = b"TAKEN";

/// How long the new process may take to start (configuration, TLS files).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one step of the handover may take once it has begun.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a descriptor handed over is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Label {
    /// The tunnel listener.
    Tunnel(SocketAddr),
    /// A TCP client-service listener.
    ClientTcp(SocketAddr),
    /// A UDP client-service socket.
    ClientUdp(SocketAddr),
    /// The qos feed's TCP listener.
    QosTcp(SocketAddr),
    /// A stream's connection to its server; whether its FIN was sent.
    Stream(Key, bool),
    /// A box's datagram flow's socket.
    Flow(Key),
}

impl Label {
    fn encode(&self) -> String {
        match self {
            Label::Tunnel(a) => format!("tunnel {a}"),
            Label::ClientTcp(a) => format!("client-tcp {a}"),
            Label::ClientUdp(a) => format!("client-udp {a}"),
            Label::QosTcp(a) => format!("qos-tcp {a}"),
            Label::Stream((b, s), fin) => format!("stream {b} {} {}", s.0, u8::from(*fin)),
            Label::Flow((b, s)) => format!("flow {b} {}", s.0),
        }
    }

    fn parse(s: &str) -> Option<Label> {
        let mut w = s.split(' ');
        let kind = w.next()?;
        let label = match kind {
            "tunnel" | "client-tcp" | "client-udp" | "qos-tcp" => {
                let a: SocketAddr = w.next()?.parse().ok()?;
                match kind {
                    "tunnel" => Label::Tunnel(a),
                    "client-tcp" => Label::ClientTcp(a),
                    "client-udp" => Label::ClientUdp(a),
                    _ => Label::QosTcp(a),
                }
            }
            "stream" | "flow" => {
                let b = BoxId::new(w.next()?).ok()?;
                let sid = StreamId(w.next()?.parse().ok()?);
                if kind == "flow" {
                    Label::Flow((b, sid))
                } else {
                    let fin = match w.next()? {
                        "0" => false,
                        "1" => true,
                        _ => return None,
                    };
                    Label::Stream((b, sid), fin)
                }
            }
            _ => return None,
        };
        w.next().is_none().then_some(label)
    }
}

/// What a process takes over: from its predecessor, or its own material
/// back after a failed handover.
#[derive(Debug, Default)]
pub(crate) struct Inheritance {
    /// Listening sockets, by what they listen for.
    pub(crate) listeners: HashMap<Label, OwnedFd>,
    /// Streams' connections, with whether their FIN was sent.
    pub(crate) streams: Vec<(Key, bool, OwnedFd)>,
    /// Datagram flows' sockets.
    pub(crate) flows: Vec<(Key, OwnedFd)>,
    /// The sessions.
    pub(crate) images: Vec<SessionImage>,
    /// Seconds left of a drain for maintenance under way.
    pub(crate) drain_s: Option<u64>,
}

impl Inheritance {
    fn add(&mut self, label: Label, fd: OwnedFd) {
        match label {
            Label::Stream(key, fin) => self.streams.push((key, fin, fd)),
            Label::Flow(key) => self.flows.push((key, fd)),
            l => {
                self.listeners.insert(l, fd);
            }
        }
    }
}

/// The successor's side of steps 2–3: says HELLO on `channel` and receives
/// everything (blocking; run it on a blocking thread). The channel comes
/// back for the final TAKEN.
pub fn receive(channel: Channel) -> std::io::Result<(Channel, InheritanceBox)> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    channel.set_timeout(START_TIMEOUT)?;
    channel.send(HELLO, &[])?;
    let mut inh = Inheritance::default();
    let mut image = Vec::new();
    let mut fds_seen = 0usize;
    loop {
        let (msg, fds) = channel.recv()?;
        if let Some(text) = msg.strip_prefix(SOCKETS) {
            let text = std::str::from_utf8(text).map_err(|_| bad("labels are not text".into()))?;
            let labels: Vec<&str> = text.lines().collect();
            if labels.len() != fds.len() {
                return Err(bad(format!(
                    "{} labels for {} descriptors",
                    labels.len(),
                    fds.len()
                )));
            }
            for (l, fd) in labels.into_iter().zip(fds) {
                let label = Label::parse(l).ok_or_else(|| bad(format!("bad label {l:?}")))?;
                inh.add(label, fd);
                fds_seen += 1;
            }
        } else if let Some(piece) = msg.strip_prefix(IMAGE) {
            image.extend_from_slice(piece);
        } else if let Some(end) = msg.strip_prefix(END) {
            let end = String::from_utf8_lossy(end);
            let mut words = end.split(' ');
            let counts = format!(
                "{} {}",
                words.next().unwrap_or_default(),
                words.next().unwrap_or_default()
            );
            let expected = format!("{fds_seen} {}", image.len());
            if counts != expected {
                return Err(bad(format!(
                    "the predecessor sent {counts} (descriptors, image bytes), {expected} arrived"
                )));
            }
            inh.drain_s = match words.next() {
                None | Some("-") => None,
                Some(s) => Some(s.parse().map_err(|_| bad(format!("bad drain {s:?}")))?),
            };
            inh.images = session::image::decode(&image).map_err(|e| bad(e.to_string()))?;
            return Ok((channel, InheritanceBox(inh)));
        } else {
            return Err(bad("unexpected message".into()));
        }
    }
}

/// What [`receive`] hands the driver ([`crate::ServerDriver::inherit`]).
#[derive(Debug)]
pub struct InheritanceBox(pub(crate) Inheritance);

impl InheritanceBox {
    /// Sessions, stream connections and flows received.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.0.images.len(),
            self.0.streams.len(),
            self.0.flows.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_back_and_nonsense_is_refused() {
        let b = BoxId::new("box-7").unwrap();
        for l in [
            Label::Tunnel("0.0.0.0:4433".parse().unwrap()),
            Label::ClientTcp("[::1]:22".parse().unwrap()),
            Label::ClientUdp("198.18.0.1:53".parse().unwrap()),
            Label::QosTcp("127.0.0.1:9".parse().unwrap()),
            Label::Stream((b.clone(), StreamId(12)), true),
            Label::Stream((b.clone(), StreamId(0)), false),
            Label::Flow((b, StreamId(5))),
        ] {
            assert_eq!(Label::parse(&l.encode()), Some(l));
        }
        for bad in [
            "",
            "tunnel",
            "tunnel nowhere",
            "stream box-7 12",
            "stream box-7 12 2",
            "stream Box! 1 0",
            "flow box-7 x",
            "flow box-7 1 extra",
            "spare 1.2.3.4:5",
        ] {
            assert_eq!(Label::parse(bad), None, "{bad:?}");
        }
    }
}
