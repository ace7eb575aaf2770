//! The application side of the box driver: a phone's connection accepted
//! on a service, its datagrams, its bytes handed to the session, resets,
//! and the box's client services (streams the SNAPT opens towards a server
//! on the PAN side).

use std::net::SocketAddr;

use config::Protocol;
use tokio::net::TcpStream;
use tracing::{debug, warn};
use wire::{ResetCode, StreamId, StreamKind};

use super::{BoxDriver, Input, Key, shares};

impl BoxDriver {
    pub(super) fn accepted(&mut self, service: usize, stream: TcpStream, peer: SocketAddr) {
        let svc = &self.cfg.services[service];
        let (site, name, codec) = (svc.snapt, svc.name.clone(), svc.compress.codec());
        match self.open_stream(
            site,
            peer.ip(),
            StreamKind::Stream,
            name.clone(),
            None,
            codec,
        ) {
            Ok(sid) => {
                debug!(service = %name, %peer, stream = %sid, "phone connected");
                let key = (site, sid);
                match self.locals.set_codec(key, codec) {
                    Ok(()) => self.locals.attach(key, stream),
                    Err(e) => self.codec_failed(key, &e),
                }
            }
            Err(e) => {
                daemon::warn_throttled!(service = %name, %peer, error = %e, "refusing phone connection")
            }
        }
    }

    /// Opens a stream or flow for `phone` on `site`'s session: refused
    /// when the phone holds its share of the table already; when the table
    /// is full, first ends the least recently used datagram flow that never
    /// went on after an answer (a NAT's early drop). A refusal is counted.
    pub(super) fn open_stream(
        &mut self,
        site: usize,
        phone: std::net::IpAddr,
        kind: StreamKind,
        service: wire::ServiceName,
        dest: Option<SocketAddr>,
        codec: wire::Codec,
    ) -> Result<StreamId, session::StreamError> {
        let max = self.cfg.session.max_streams as usize;
        let mut over_share = self.phone_at_share(site, phone, max);
        if over_share && let Some(key) = self.flows.evictable_of(site, phone) {
            // The phone makes room among its own one-shot flows first (a
            // stub resolver's queries), as the table does below.
            debug!(site, flow = %key.1, %phone, "phone at its share: its idle datagram flow ended for room");
            self.end_flow(key, "ended to make room for a new stream of the same phone");
            self.counters.flows_evicted += 1;
            over_share = self.phone_at_share(site, phone, max);
        }
        if over_share {
            self.counters.connections_refused += 1;
            return Err(session::StreamError::PhoneShare {
                share: shares::PhoneShares::cap(max),
            });
        }
        let full = self
            .coord
            .site(site)
            .is_some_and(|s| s.streams().count() >= self.cfg.session.max_streams as usize);
        if full && let Some(key) = self.flows.evictable(site) {
            debug!(site, flow = %key.1, "stream table full: idle datagram flow ended for room");
            self.end_flow(key, "ended to make room for a new stream");
            self.counters.flows_evicted += 1;
        }
        let r = match self.coord.site(site) {
            Some(s) => s.streams().open_with_codec(kind, service, dest, codec),
            None => Err(session::StreamError::SessionClosed),
        };
        match r {
            Ok(id) => self.shares.record((site, id), phone),
            Err(_) => self.counters.connections_refused += 1,
        }
        r
    }

    /// Whether `phone` holds its share of `site`'s table of `max`.
    fn phone_at_share(&mut self, site: usize, phone: std::net::IpAddr, max: usize) -> bool {
        let coord = &mut self.coord;
        self.shares.full(site, phone, max, |id| {
            coord.site(site).is_some_and(|s| s.streams().is_open(id))
        })
    }

    /// Ends datagram flow `key` here and at the SNAPT.
    pub(super) fn end_flow(&mut self, key: Key, why: &str) {
        self.flows.remove(&key);
        if let Some(s) = self.coord.site(key.0) {
            let _ = s.streams().reset(key.1, ResetCode::ApplicationError, why);
        }
    }

    /// Ends the datagram flows that have been quiet for their timeout.
    pub(super) fn sweep_flows(&mut self) {
        for key in self.flows.expired(&self.cfg.udp, super::now()) {
            debug!(site = key.0, flow = %key.1, "idle datagram flow ended");
            self.end_flow(key, "idle");
            self.counters.flows_expired += 1;
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
        let target = relay_io::udp::Target::Service(service);
        let key = match self.flows.flow(target, peer, super::now()) {
            Some(k) => k,
            None => {
                let Some(sock) = self.udp.get(&service).cloned() else {
                    return;
                };
                let name = svc.name.clone();
                match self.open_stream(
                    site,
                    peer.ip(),
                    StreamKind::Datagram,
                    name.clone(),
                    None,
                    wire::Codec::None,
                ) {
                    Ok(flow) => {
                        debug!(service = %name, %peer, %flow, "datagram flow opened");
                        self.flows
                            .insert(target, peer, (site, flow), sock, None, super::now());
                        (site, flow)
                    }
                    Err(e) => {
                        daemon::warn_throttled!(service = %name, %peer, error = %e, "datagram dropped: no flow");
                        return;
                    }
                }
            }
        };
        if let Some(s) = self.coord.site(key.0) {
            let _ = s.streams().send_datagram(key.1, bytes);
        }
    }

    /// A compressed stream that cannot be compressed or decompressed (a
    /// corrupt record from the relay): the stream is reset, nothing else.
    pub(super) fn codec_failed(&mut self, key: Key, e: &stream_codec::CodecError) {
        daemon::warn_throttled!(site = key.0, stream = %key.1, error = %e, "compressed stream failed");
        self.locals.abort(&key);
        if let Some(s) = self.coord.site(key.0) {
            let _ = s.streams().reset(
                key.1,
                ResetCode::ProtocolViolation,
                &format!("compressed stream: {e}"),
            );
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
        codec: wire::Codec,
    ) {
        let (protocol, label) = match kind {
            StreamKind::Stream => (Protocol::Tcp, "TCP"),
            StreamKind::Datagram => (Protocol::Udp, "UDP"),
        };
        let target = self
            .cfg
            .client_services
            .iter()
            .find(|c| c.name == service && c.protocol == protocol)
            .map(|c| (c.connect, c.compress.codec()));
        let opened = match target {
            Some((_, expected)) if codec != expected => Err((
                ResetCode::CodecMismatch,
                format!(
                    "the relay compresses client service {service} with {codec}, this box expects {expected} (compress = in both configurations)"
                ),
            )),
            Some((to, _)) if kind == StreamKind::Datagram => self
                .open_pushed_flow(site, stream, to)
                .map_err(|e| (ResetCode::ConnectFailed, e)),
            Some(_) => Ok(()),
            None => Err((
                ResetCode::ConnectFailed,
                format!("no {label} client service {service} on this box"),
            )),
        };
        if let Err((code, reason)) = opened {
            warn!(site, %stream, %service, %reason, "client service stream refused");
            if let Some(s) = self.coord.site(site) {
                let _ = s.streams().reset(stream, code, &reason);
            }
            return;
        }
        let target = target.map(|(to, _)| to);
        let Some(addr) = target.filter(|_| kind == StreamKind::Stream) else {
            return;
        };
        self.locals.reserve((site, stream));
        if let Err(e) = self.locals.set_codec((site, stream), codec) {
            return self.codec_failed((site, stream), &e);
        }
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

    /// A datagram flow the relay opened toward a UDP client service (a
    /// server pushed): a socket of its own toward the phone's service,
    /// whose answers go back on the flow. Datagrams from anyone but the
    /// service are ignored.
    fn open_pushed_flow(
        &mut self,
        site: usize,
        flow: StreamId,
        to: SocketAddr,
    ) -> Result<(), String> {
        let local: SocketAddr = if to.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = std::net::UdpSocket::bind(local)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UdpSocket::from_std)
            .map_err(|e| format!("client service socket: {e}"))?;
        let sock = std::sync::Arc::new(sock);
        let (tx, key) = (self.tx.clone(), (site, flow));
        let recv = relay_io::udp::spawn_receiver(sock.clone(), move |from, bytes| {
            from != to || tx.send(Input::PushedReply { key, bytes }).is_ok()
        });
        debug!(site, %flow, service = %to, "client service datagram flow opened");
        self.flows.insert(
            relay_io::udp::Target::Pushed(site, flow),
            to,
            key,
            sock,
            Some(recv),
            super::now(),
        );
        Ok(())
    }

    /// The phone's service answered on a pushed flow.
    pub(super) fn pushed_reply(&mut self, key: Key, bytes: Vec<u8>) {
        if !self.flows.used(&key, super::now()) {
            return;
        }
        if let Some(s) = self.coord.site(key.0) {
            let _ = s.streams().send_datagram(key.1, bytes);
        }
    }
}
