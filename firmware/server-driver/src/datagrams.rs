//! The relay's side of datagram flows in the driver: a box's flow opened
//! toward its service, a server's datagram to a box's UDP client service,
//! and quiet flows ended (the table itself is `flows`).

use std::net::SocketAddr;
use std::sync::Arc;

use relay_io::udp::spawn_receiver;
use tokio::net::UdpSocket;
use tracing::debug;
use wire::{BoxId, ResetCode, ServiceName, StreamId, StreamKind};

use crate::{FLOW_GRACE, Input, ServerDriver, now};

impl ServerDriver {
    /// Ends the datagram flows that have been quiet for their timeout plus
    /// [`FLOW_GRACE`] (the box is told with a RESET). The box ends quiet
    /// flows itself, nearer the phone; this is the backstop against a box
    /// that does not.
    pub(crate) fn sweep_flows(&mut self) {
        let t = now().checked_sub(FLOW_GRACE).unwrap_or_else(now);
        let quiet = self.flows.expired(&self.cfg.udp, t);
        for key in quiet {
            debug!(box_id = %key.0, flow = %key.1, "idle datagram flow ended");
            self.flows.remove(&key);
            if let Some(s) = self.server.session_mut(&key.0) {
                let _ = s
                    .streams()
                    .reset(key.1, ResetCode::ApplicationError, "idle");
            }
        }
    }

    /// A datagram flow: a UDP socket connected to `target` (the service's,
    /// or a transparent flow's destination), whose replies go back on the
    /// flow.
    pub(crate) fn open_datagram_target(
        &mut self,
        b: BoxId,
        flow: StreamId,
        service: ServiceName,
        target: Result<SocketAddr, String>,
    ) {
        let sock = target.and_then(|target| {
            let local: SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .map_err(|_| "address".to_string())?;
            let std_sock = std::net::UdpSocket::bind(local).map_err(|e| e.to_string())?;
            std_sock
                .connect(target)
                .map_err(|e| format!("{target}: {e}"))?;
            std_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            UdpSocket::from_std(std_sock).map_err(|e| e.to_string())
        });
        match sock {
            Ok(sock) => {
                debug!(box_id = %b, %flow, %service, "datagram flow opened");
                self.start_flow((b, flow), sock);
            }
            Err(reason) => {
                daemon::warn_throttled!(box_id = %b, %flow, %service, %reason, "datagram flow refused");
                if let Some(s) = self.server.session_mut(&b) {
                    let _ = s.streams().reset(flow, ResetCode::ConnectFailed, &reason);
                }
            }
        }
    }

    /// Runs a box's datagram flow on `sock` (connected to its service).
    pub(crate) fn start_flow(&mut self, key: crate::Key, sock: UdpSocket) {
        let sock = Arc::new(sock);
        let tx = self.tx.clone();
        let k2 = key.clone();
        let recv = spawn_receiver(sock.clone(), move |_, bytes| {
            tx.send(Input::UdpOut {
                key: k2.clone(),
                bytes,
            })
            .is_ok()
        });
        self.flows.insert_opened(key, sock, recv, now());
    }

    /// A datagram from a server to box `b`'s UDP client service: on the
    /// flow of that server's address, opened toward the box on first use;
    /// dropped and counted when the box is not connected or has no room.
    pub(crate) fn pushed_datagram(
        &mut self,
        b: BoxId,
        service: ServiceName,
        sock: Arc<UdpSocket>,
        peer: SocketAddr,
        bytes: Vec<u8>,
    ) {
        let flow = match self.flows.pushed_flow(&b, &service, peer) {
            Some(flow) => flow,
            None => {
                let opened = self.server.session_mut(&b).map(|s| {
                    s.streams()
                        .open(StreamKind::Datagram, service.clone(), None)
                });
                match opened {
                    Some(Ok(flow)) => {
                        debug!(box_id = %b, %service, %peer, %flow, "client service datagram flow opened");
                        self.flows
                            .insert_pushed((b.clone(), flow), service, peer, sock, now());
                        flow
                    }
                    Some(Err(e)) => {
                        self.flows.pushed_dropped += 1;
                        daemon::warn_throttled!(box_id = %b, %service, %peer, error = %e, "client service datagram dropped");
                        return;
                    }
                    None => {
                        self.flows.pushed_dropped += 1;
                        daemon::warn_throttled!(box_id = %b, %service, %peer, "client service datagram dropped: the box is not connected");
                        return;
                    }
                }
            }
        };
        if let Some(f) = self.flows.get_mut(&(b.clone(), flow)) {
            f.heard_from_server(now());
        }
        if let Some(s) = self.server.session_mut(&b) {
            let _ = s.streams().send_datagram(flow, bytes);
        }
    }
}
