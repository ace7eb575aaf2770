//! Datagram services: a UDP socket per service, one datagram flow per
//! (service, peer address) through the tunnel. Datagrams are never replayed:
//! while no tunnel carries data the session queues a bounded number and
//! drops the oldest (counted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::AbortHandle;
use wire::StreamId;

/// Largest datagram relayed.
pub const MAX_DATAGRAM: usize = 65_507;

/// Spawns the receive loop of `sock`; every datagram goes to `on_datagram`
/// with its sender's address.
pub fn spawn_receiver<F>(sock: Arc<UdpSocket>, mut on_datagram: F) -> AbortHandle
where
    F: FnMut(SocketAddr, Vec<u8>) -> bool + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if !on_datagram(peer, buf[..n].to_vec()) {
                break;
            }
        }
    })
    .abort_handle()
}

/// Where a phone's datagrams were going: a configured service (its index),
/// or — transparent mode — the address it sent them to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `[[service]]` number.
    Service(usize),
    /// The original destination of a diverted datagram.
    Transparent(SocketAddr),
}

/// Where a flow's datagrams go back to on the box.
#[derive(Debug)]
struct FlowEnd {
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    target: Target,
    /// A flow's own receive loop (transparent flows), stopped with it.
    recv: Option<AbortHandle>,
    last_used: Instant,
}

/// The box side: flows of the phones' UDP conversations.
#[derive(Debug, Default)]
pub struct BoxFlows {
    by_peer: HashMap<(Target, SocketAddr), (usize, StreamId)>,
    by_flow: HashMap<(usize, StreamId), FlowEnd>,
}

impl BoxFlows {
    /// The flow of `peer` to `target`, if one is open (and marks it used).
    pub fn flow(
        &mut self,
        target: Target,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<(usize, StreamId)> {
        let key = self.by_peer.get(&(target, peer)).copied()?;
        if let Some(e) = self.by_flow.get_mut(&key) {
            e.last_used = now;
        }
        Some(key)
    }

    /// Records a new flow; `sock` is where its replies leave from, `recv`
    /// a receive loop of its own to stop with it.
    pub fn insert(
        &mut self,
        target: Target,
        peer: SocketAddr,
        key: (usize, StreamId),
        sock: Arc<UdpSocket>,
        recv: Option<AbortHandle>,
        now: Instant,
    ) {
        self.by_peer.insert((target, peer), key);
        self.by_flow.insert(
            key,
            FlowEnd {
                sock,
                peer,
                target,
                recv,
                last_used: now,
            },
        );
    }

    /// Where the datagrams of flow `key` go back to (and marks it used).
    pub fn reply_to(
        &mut self,
        key: &(usize, StreamId),
        now: Instant,
    ) -> Option<(Arc<UdpSocket>, SocketAddr)> {
        self.by_flow.get_mut(key).map(|e| {
            e.last_used = now;
            (e.sock.clone(), e.peer)
        })
    }

    /// Forgets a flow (reset or session end).
    pub fn remove(&mut self, key: &(usize, StreamId)) {
        if let Some(e) = self.by_flow.remove(key) {
            self.by_peer.remove(&(e.target, e.peer));
            if let Some(r) = e.recv {
                r.abort();
            }
        }
    }

    /// Transparent flows unused for `idle`: a phone's conversation with a
    /// server it no longer talks to (a DNS query, a finished call).
    pub fn idle_transparent(&self, idle: Duration, now: Instant) -> Vec<(usize, StreamId)> {
        self.by_flow
            .iter()
            .filter(|(_, e)| {
                matches!(e.target, Target::Transparent(_))
                    && now.saturating_duration_since(e.last_used) >= idle
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// Forgets every flow of a site.
    pub fn remove_site(&mut self, site: usize) {
        let keys: Vec<(usize, StreamId)> = self
            .by_flow
            .keys()
            .filter(|(s, _)| *s == site)
            .copied()
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }
}

/// Sends a datagram without waiting; if tokio does not know the socket is
/// writable yet (a fresh socket: `try_send` answers WouldBlock without even
/// trying), sends it from a task instead of dropping it.
pub fn send(sock: &Arc<UdpSocket>, bytes: Vec<u8>, to: Option<SocketAddr>) {
    let r = match to {
        Some(peer) => sock.try_send_to(&bytes, peer),
        None => sock.try_send(&bytes),
    };
    if matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock) {
        let sock = sock.clone();
        tokio::spawn(async move {
            let _ = match to {
                Some(peer) => sock.send_to(&bytes, peer).await,
                None => sock.send(&bytes).await,
            };
        });
    }
}
