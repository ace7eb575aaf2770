//! Transparent mode in the box driver (the rules, listener and diverted
//! datagrams' socket are `box_os::adapters`'): each redirected connection
//! opened as a stream to its original destination; the diverted datagrams,
//! one flow per (phone socket, destination), each with a socket bound to
//! the destination that receives the phone's next datagrams and sends the
//! replies, ended when quiet like every datagram flow (`[udp]`).

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tracing::debug;
use wire::{ServiceName, StreamKind};

use super::{BoxDriver, Input, OsEvent, now};
use box_os::transparent_udp;
use relay_io::udp::{Target, spawn_receiver};

/// The service name transparent streams carry (the SNAPT connects to their
/// destination instead, if its policy allows).
const SERVICE: &str = "transparent";

impl BoxDriver {
    /// A redirected connection: a stream to where it was going.
    pub(super) fn accepted_transparent(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        dest: SocketAddr,
    ) {
        let Some(t) = &self.cfg.transparent else {
            return;
        };
        let site = t.snapt;
        let Ok(svc) = ServiceName::new(SERVICE) else {
            return;
        };
        match self.open_stream(
            site,
            peer.ip(),
            StreamKind::Stream,
            svc,
            Some(dest),
            wire::Codec::None,
        ) {
            Ok(sid) => {
                debug!(%peer, %dest, stream = %sid, "transparent connection");
                self.locals.attach((site, sid), stream);
            }
            Err(e) => {
                daemon::warn_throttled!(%peer, %dest, error = %e, "refusing transparent connection")
            }
        }
    }

    /// A diverted datagram: on its flow, opened on first use.
    pub(super) fn transparent_datagram(
        &mut self,
        peer: SocketAddr,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) {
        let Some(t) = &self.cfg.transparent else {
            return;
        };
        if dest == t.listen {
            return;
        }
        let site = t.snapt;
        let target = Target::Transparent(dest);
        let key = match self.flows.flow(target, peer, now()) {
            Some(k) => k,
            None => {
                let Ok(svc) = ServiceName::new(SERVICE) else {
                    return;
                };
                // Replies leave from the server's address; the phone's next
                // datagrams to it arrive on the same socket.
                let sock = match transparent_udp::reply_socket(dest, peer) {
                    Ok(s) => s,
                    Err(e) => {
                        daemon::warn_throttled!(%peer, %dest, error = %e, "transparent datagram dropped: no reply socket");
                        return;
                    }
                };
                let flow = match self.open_stream(
                    site,
                    peer.ip(),
                    StreamKind::Datagram,
                    svc,
                    Some(dest),
                    wire::Codec::None,
                ) {
                    Ok(f) => f,
                    Err(e) => {
                        daemon::warn_throttled!(%peer, %dest, error = %e, "transparent datagram dropped: no flow");
                        return;
                    }
                };
                debug!(%peer, %dest, %flow, "transparent datagram flow");
                let tx = self.tx.clone();
                let recv = spawn_receiver(sock.clone(), move |_, bytes| {
                    tx.send(Input::Os(OsEvent::TransparentUdp { peer, dest, bytes }))
                        .is_ok()
                });
                self.flows
                    .insert(target, peer, (site, flow), sock, Some(recv), now());
                (site, flow)
            }
        };
        if let Some(s) = self.coord.site(key.0) {
            let _ = s.streams().send_datagram(key.1, bytes);
        }
    }
}
