//! The relay's datagram flows: each is one datagram stream of a box's
//! session and the UDP socket its datagrams leave from. Two shapes:
//!
//! * opened by the box (a phone's UDP toward a service): a socket of its
//!   own, connected to the service, with its own receive loop;
//! * opened here (a UDP client service: a server sent a datagram to the
//!   box's client-service address): the service's shared listening socket,
//!   answers sent back to the server's address and port, one flow per
//!   (box, service, server address).
//!
//! The table is bounded by the sessions' stream limits; flows end with their
//! stream, their session, or after their quiet timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use relay_io::udp::FlowAge;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;
use wire::{BoxId, ServiceName, StreamId};

use crate::Key;

/// One datagram flow.
pub(crate) struct ServerFlow {
    pub(crate) sock: Arc<UdpSocket>,
    /// The flow's own receive loop (box-opened flows), stopped with it.
    recv: Option<AbortHandle>,
    /// Client-service flows: the service and the server's address, where
    /// the box's answers go.
    pushed: Option<(ServiceName, SocketAddr)>,
    age: FlowAge,
}

impl ServerFlow {
    /// Where the box's datagrams on this flow go: the connected service
    /// (`None`), or the server that pushed.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.pushed.as_ref().map(|(_, peer)| *peer)
    }

    /// A datagram from the box on this flow.
    pub(crate) fn heard_from_box(&mut self, now: Instant) {
        if self.pushed.is_some() {
            self.age.inbound(now);
        } else {
            self.age.outbound(now);
        }
    }

    /// A datagram from the server side on this flow.
    pub(crate) fn heard_from_server(&mut self, now: Instant) {
        if self.pushed.is_some() {
            self.age.outbound(now);
        } else {
            self.age.inbound(now);
        }
    }
}

/// Every datagram flow of the relay.
#[derive(Default)]
pub(crate) struct ServerFlows {
    by_key: HashMap<Key, ServerFlow>,
    /// Client-service flows by (box, service, server address).
    pushed: HashMap<(BoxId, ServiceName, SocketAddr), StreamId>,
    /// Datagrams from servers to a client service that found no flow (the
    /// box not connected, or its stream table full).
    pub(crate) pushed_dropped: u64,
}

impl ServerFlows {
    /// A flow the box opened toward a service, with its own socket and loop.
    pub(crate) fn insert_opened(
        &mut self,
        key: Key,
        sock: Arc<UdpSocket>,
        recv: AbortHandle,
        now: Instant,
    ) {
        self.by_key.insert(
            key,
            ServerFlow {
                sock,
                recv: Some(recv),
                pushed: None,
                age: FlowAge::new(now),
            },
        );
    }

    /// A client-service flow opened here for `peer` (its first datagram is
    /// on its way).
    pub(crate) fn insert_pushed(
        &mut self,
        key: Key,
        service: ServiceName,
        peer: SocketAddr,
        sock: Arc<UdpSocket>,
        now: Instant,
    ) {
        self.pushed
            .insert((key.0.clone(), service.clone(), peer), key.1);
        self.by_key.insert(
            key,
            ServerFlow {
                sock,
                recv: None,
                pushed: Some((service, peer)),
                age: FlowAge::new(now),
            },
        );
    }

    /// The client-service flow of `peer` to `service` on box `b`, if open.
    pub(crate) fn pushed_flow(
        &self,
        b: &BoxId,
        service: &ServiceName,
        peer: SocketAddr,
    ) -> Option<StreamId> {
        self.pushed
            .get(&(b.clone(), service.clone(), peer))
            .copied()
    }

    pub(crate) fn get_mut(&mut self, key: &Key) -> Option<&mut ServerFlow> {
        self.by_key.get_mut(key)
    }

    /// Ends a flow (its stream was reset or closed, or it went quiet).
    pub(crate) fn remove(&mut self, key: &Key) -> bool {
        let Some(f) = self.by_key.remove(key) else {
            return false;
        };
        if let Some(r) = f.recv {
            r.abort();
        }
        if let Some((service, peer)) = f.pushed {
            self.pushed.remove(&(key.0.clone(), service, peer));
        }
        true
    }

    /// Ends every flow of box `b` (its session was released).
    pub(crate) fn remove_box(&mut self, b: &BoxId) {
        let keys: Vec<Key> = self
            .by_key
            .keys()
            .filter(|(x, _)| x == b)
            .cloned()
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }

    /// Flows quiet for their timeout at `at`.
    pub(crate) fn expired(&self, timeouts: &config::UdpTimeouts, at: Instant) -> Vec<Key> {
        self.by_key
            .iter()
            .filter(|(_, f)| f.age.expired(timeouts, at))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Empties the table for a relay upgrade: every flow's receive loop
    /// stopped, and the sockets of the flows boxes opened (client-service
    /// flows share their service's socket, handed over as a listener).
    pub(crate) fn take_opened(&mut self) -> Vec<(Key, Arc<UdpSocket>)> {
        self.pushed.clear();
        self.by_key
            .drain()
            .filter_map(|(key, f)| {
                if let Some(r) = f.recv {
                    r.abort();
                }
                f.pushed.is_none().then_some((key, f.sock))
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Client-service flows open.
    pub(crate) fn pushed_len(&self) -> usize {
        self.pushed.len()
    }
}
