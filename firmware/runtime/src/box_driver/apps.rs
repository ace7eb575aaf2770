//! The application side of the box driver: a phone's connection accepted
//! on a service, its datagrams, its bytes handed to the session, resets,
//! and the box's client services (streams the SNAPT opens towards a server
//! on the PAN side).

use std::net::SocketAddr;

use config::Protocol;
use tokio::net::TcpStream;
use tracing::{debug, warn};
use wire::{ResetCode, StreamId, StreamKind};

use super::{BoxDriver, Input, Key};

impl BoxDriver {
    pub(super) fn accepted(&mut self, service: usize, stream: TcpStream, peer: SocketAddr) {
        let svc = &self.cfg.services[service];
        let site = svc.snapt;
        let Some(session) = self.coord.site(site) else {
            return;
        };
        match session
            .streams()
            .open(StreamKind::Stream, svc.name.clone(), None)
        {
            Ok(sid) => {
                debug!(service = %svc.name, %peer, stream = %sid, "phone connected");
                self.locals.attach((site, sid), stream);
            }
            Err(e) => warn!(service = %svc.name, %peer, error = %e, "refusing phone connection"),
        }
    }

    /// Hands buffered application bytes to the session as far as it takes
    /// them; FIN after the last.
    pub(super) fn push_pending(&mut self, key: Key) {
        if let Some(session) = self.coord.site(key.0) {
            self.locals.push(&key, key.1, &mut session.streams());
        }
    }

    /// A datagram from a phone: on its flow, opened on first use.
    pub(super) fn udp_in(&mut self, service: usize, peer: SocketAddr, bytes: Vec<u8>) {
        let svc = &self.cfg.services[service];
        let site = svc.snapt;
        let target = crate::udp::Target::Service(service);
        let key = match self.flows.flow(target, peer, super::now()) {
            Some(k) => k,
            None => {
                let (Some(session), Some(sock)) = (self.coord.site(site), self.udp.get(&service))
                else {
                    return;
                };
                match session
                    .streams()
                    .open(StreamKind::Datagram, svc.name.clone(), None)
                {
                    Ok(flow) => {
                        debug!(service = %svc.name, %peer, %flow, "datagram flow opened");
                        self.flows.insert(
                            target,
                            peer,
                            (site, flow),
                            sock.clone(),
                            None,
                            super::now(),
                        );
                        (site, flow)
                    }
                    Err(e) => {
                        warn!(service = %svc.name, %peer, error = %e, "datagram dropped: no flow");
                        return;
                    }
                }
            }
        };
        if let Some(s) = self.coord.site(key.0) {
            let _ = s.streams().send_datagram(key.1, bytes);
        }
    }

    pub(super) fn reset_local(&mut self, key: Key, reason: &str) {
        self.locals.abort(&key);
        if let Some(s) = self.coord.site(key.0) {
            let _ = s
                .streams()
                .reset(key.1, ResetCode::ApplicationError, reason);
        }
    }

    pub(super) fn client_connected(&mut self, key: Key, result: Result<TcpStream, String>) {
        match result {
            Ok(stream) if self.locals.contains(&key) => self.locals.attach(key, stream),
            Ok(_) => {}
            Err(e) => {
                warn!(site = key.0, stream = %key.1, error = %e, "client service unreachable");
                self.locals.remove(&key);
                if let Some(s) = self.coord.site(key.0) {
                    let _ = s.streams().reset(key.1, ResetCode::ConnectFailed, &e);
                }
            }
        }
    }

    pub(super) fn open_client_service(
        &mut self,
        site: usize,
        stream: StreamId,
        kind: StreamKind,
        service: wire::ServiceName,
    ) {
        let target = self
            .cfg
            .client_services
            .iter()
            .find(|c| c.name == service && c.protocol == Protocol::Tcp);
        let Some(target) = target.filter(|_| kind == StreamKind::Stream) else {
            if let Some(s) = self.coord.site(site) {
                let _ = s.streams().reset(
                    stream,
                    ResetCode::ConnectFailed,
                    &format!("no client service {service} on this box"),
                );
            }
            return;
        };
        let addr = target.connect;
        self.locals.reserve((site, stream));
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("{addr}: {e}"));
            let _ = tx.send(Input::ClientConnected {
                key: (site, stream),
                result,
            });
        });
    }
}
