//! Transparent mode in the box driver: the redirect rules installed at
//! start (removed at stop), the listener for redirected connections and
//! each one opened as a stream to its original destination; with UDP, the
//! diverted datagrams, one flow per (phone socket, destination), each with
//! a socket bound to the destination that receives the phone's next
//! datagrams and sends the replies, ended when quiet like every datagram
//! flow (`[udp]`).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};
use wire::{ServiceName, StreamKind};

use super::{BoxDriver, Input, now};
use box_os::transparent::{apply, original_destination, ruleset, teardown};
use box_os::transparent_udp;
use relay_io::udp::{MAX_DATAGRAM, Target, spawn_receiver};

/// The service name transparent streams carry (the SNAPT connects to their
/// destination instead, if its policy allows).
const SERVICE: &str = "transparent";

impl BoxDriver {
    /// Installs the redirect and starts accepting; problems are logged and
    /// leave the configured services running.
    pub(super) async fn start_transparent(&mut self) {
        let Some(t) = self.cfg.transparent.clone() else {
            return;
        };
        let listener = match TcpListener::bind(t.listen).await {
            Ok(l) => l,
            Err(e) => {
                warn!(listen = %t.listen, error = %e, "transparent mode off: cannot listen");
                return;
            }
        };
        let udp = if t.udp {
            self.start_transparent_udp(t.listen).await
        } else {
            false
        };
        if let Err(e) = apply(&ruleset(&t.interface, t.listen, udp)) {
            warn!(interface = %t.interface, error = %e, "transparent mode off: redirect not installed");
            return;
        }
        info!(interface = %t.interface, listen = %t.listen, udp, "transparent mode: PAN clients' traffic is relayed to its destination");
        let tx = self.tx.clone();
        let accept = daemon::accept::spawn_accept_loop(
            listener,
            "transparent",
            self.accept_stats.clone(),
            move |(stream, peer)| tx.send(Input::Transparent { stream, peer }).is_ok(),
        );
        self.keep_listener("transparent", accept.abort_handle());
    }

    /// The diverted datagrams' socket, local delivery of marked packets and
    /// the idle sweep; whether it all works.
    async fn start_transparent_udp(&mut self, listen: SocketAddr) -> bool {
        match transparent_udp::bridge_hooks_off() {
            Ok(true) => info!(
                "transparent UDP: bridged traffic no longer runs the IP hooks at bridge level (net.bridge.bridge-nf-call-iptables = 0)"
            ),
            Ok(false) => {}
            Err(e) => {
                warn!("transparent UDP off: {e}");
                return false;
            }
        }
        let sock = match transparent_udp::listener(listen) {
            Ok(s) => s,
            Err(e) => {
                warn!(%listen, error = %e, "transparent UDP off: no transparent socket");
                return false;
            }
        };
        if let Err(e) = transparent_udp::local_delivery(true).await {
            warn!(error = %e, "transparent UDP off: no local delivery of diverted datagrams");
            return false;
        }
        let tx = self.tx.clone();
        let recv = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                match transparent_udp::recv(&sock, &mut buf).await {
                    Ok((n, peer, dest)) => {
                        let bytes = buf[..n].to_vec();
                        if tx
                            .send(Input::TransparentUdp { peer, dest, bytes })
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => debug!(error = %e, "transparent datagram not read"),
                }
            }
        });
        self.keep_listener("transparent datagrams", recv.abort_handle());
        true
    }

    /// Removes the redirect and the local delivery (at stop).
    pub(super) async fn stop_transparent(&self) {
        let Some(t) = &self.cfg.transparent else {
            return;
        };
        if let Err(e) = apply(&teardown()) {
            warn!(error = %e, "transparent mode: redirect not removed");
        }
        if t.udp
            && let Err(e) = transparent_udp::local_delivery(false).await
        {
            warn!(error = %e, "transparent mode: local delivery not removed");
        }
    }

    /// A redirected connection: a stream to where it was going.
    pub(super) fn accepted_transparent(&mut self, stream: TcpStream, peer: SocketAddr) {
        let Some(t) = &self.cfg.transparent else {
            return;
        };
        let dest = match original_destination(&stream) {
            Ok(d) if d != t.listen => d,
            Ok(_) => {
                debug!(%peer, "direct connection to the transparent port refused");
                return;
            }
            Err(e) => {
                warn!(%peer, error = %e, "no original destination");
                return;
            }
        };
        let site = t.snapt;
        let Ok(svc) = ServiceName::new(SERVICE) else {
            return;
        };
        match self.open_stream(site, StreamKind::Stream, svc, Some(dest)) {
            Ok(sid) => {
                debug!(%peer, %dest, stream = %sid, "transparent connection");
                self.locals.attach((site, sid), stream);
            }
            Err(e) => warn!(%peer, %dest, error = %e, "refusing transparent connection"),
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
                        warn!(%peer, %dest, error = %e, "transparent datagram dropped: no reply socket");
                        return;
                    }
                };
                let flow = match self.open_stream(site, StreamKind::Datagram, svc, Some(dest)) {
                    Ok(f) => f,
                    Err(e) => {
                        warn!(%peer, %dest, error = %e, "transparent datagram dropped: no flow");
                        return;
                    }
                };
                debug!(%peer, %dest, %flow, "transparent datagram flow");
                let tx = self.tx.clone();
                let recv = spawn_receiver(sock.clone(), move |_, bytes| {
                    tx.send(Input::TransparentUdp { peer, dest, bytes }).is_ok()
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
