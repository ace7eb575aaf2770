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
use tracing::debug;
use wire::StreamId;

/// Largest datagram relayed.
pub const MAX_DATAGRAM: usize = 65_507;

/// Spawns the receive loop of `sock`; every datagram goes to `on_datagram`
/// with its sender's address. A receive error does not end it (a connected
/// socket reports an ICMP port unreachable as ECONNREFUSED on its next
/// receive; the service may be back for the next datagram): it is logged
/// at debug level and, unless it was such a refusal, followed by a short
/// pause. It ends when `on_datagram` returns false or it is aborted.
pub fn spawn_receiver<F>(sock: Arc<UdpSocket>, mut on_datagram: F) -> AbortHandle
where
    F: FnMut(SocketAddr, Vec<u8>) -> bool + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, peer)) => {
                    if !on_datagram(peer, buf[..n].to_vec()) {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    debug!(error = %e, "datagram refused by its destination");
                }
                Err(e) => {
                    debug!(error = %e, "datagram not received");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
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
    /// A UDP client service's flow, opened by the relay (a server pushed):
    /// its site and stream.
    Pushed(usize, StreamId),
}

/// The age and shape of one datagram flow's conversation, as a NAT keeps
/// it: when it was last used, whether an answer came back, and whether the
/// conversation went on after that ("assured": a call, a VPN — not a
/// one-shot query).
#[derive(Debug, Clone, Copy)]
pub struct FlowAge {
    last_used: Instant,
    answered: bool,
    assured: bool,
}

impl FlowAge {
    /// A flow whose first datagram went out at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            last_used: now,
            answered: false,
            assured: false,
        }
    }

    /// A datagram in the opening direction (phone → server).
    pub fn outbound(&mut self, now: Instant) {
        self.last_used = now;
        if self.answered {
            self.assured = true;
        }
    }

    /// A datagram in the answering direction (server → phone).
    pub fn inbound(&mut self, now: Instant) {
        self.last_used = now;
        self.answered = true;
    }

    /// Whether the conversation went on after an answer.
    pub fn assured(&self) -> bool {
        self.assured
    }

    /// When it was last used.
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// Whether it has been quiet for its timeout at `now`.
    pub fn expired(&self, timeouts: &config::UdpTimeouts, now: Instant) -> bool {
        let limit = if self.assured {
            timeouts.stream
        } else {
            timeouts.idle
        };
        now.saturating_duration_since(self.last_used) >= limit
    }
}

/// Where a flow's datagrams go back to on the box.
#[derive(Debug)]
struct FlowEnd {
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    target: Target,
    /// A flow's own receive loop (transparent flows), stopped with it.
    recv: Option<AbortHandle>,
    age: FlowAge,
}

/// The box side: flows of the phones' UDP conversations.
#[derive(Debug, Default)]
pub struct BoxFlows {
    by_peer: HashMap<(Target, SocketAddr), (usize, StreamId)>,
    by_flow: HashMap<(usize, StreamId), FlowEnd>,
}

impl BoxFlows {
    /// The flow of `peer` to `target`, if one is open (a datagram from the
    /// phone is on its way: it counts as used).
    pub fn flow(
        &mut self,
        target: Target,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<(usize, StreamId)> {
        let key = self.by_peer.get(&(target, peer)).copied()?;
        if let Some(e) = self.by_flow.get_mut(&key) {
            e.age.outbound(now);
        }
        Some(key)
    }

    /// Records a new flow (its first datagram goes out at `now`); `sock` is
    /// where its replies leave from, `recv` a receive loop of its own to
    /// stop with it.
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
                age: FlowAge::new(now),
            },
        );
    }

    /// Where the datagrams of flow `key` go back to (an answer: it counts
    /// as used).
    pub fn reply_to(
        &mut self,
        key: &(usize, StreamId),
        now: Instant,
    ) -> Option<(Arc<UdpSocket>, SocketAddr)> {
        self.by_flow.get_mut(key).map(|e| {
            e.age.inbound(now);
            (e.sock.clone(), e.peer)
        })
    }

    /// A datagram in the opening direction on flow `key` (from the phone;
    /// for a pushed flow, the phone's answer); whether the flow is open.
    pub fn used(&mut self, key: &(usize, StreamId), now: Instant) -> bool {
        match self.by_flow.get_mut(key) {
            Some(e) => {
                e.age.outbound(now);
                true
            }
            None => false,
        }
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

    /// Flows quiet for their timeout at `now`.
    pub fn expired(&self, timeouts: &config::UdpTimeouts, now: Instant) -> Vec<(usize, StreamId)> {
        self.by_flow
            .iter()
            .filter(|(_, e)| e.age.expired(timeouts, now))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The flow of `site` to end first when its stream table is full: the
    /// least recently used one that never went on after an answer (a
    /// conversation that did is never cut for room).
    pub fn evictable(&self, site: usize) -> Option<(usize, StreamId)> {
        self.evictable_where(site, |_| true)
    }

    /// As [`Self::evictable`], among the flows of the client at `ip` (a
    /// phone at its share of the table makes room among its own).
    pub fn evictable_of(&self, site: usize, ip: std::net::IpAddr) -> Option<(usize, StreamId)> {
        self.evictable_where(site, |e| e.peer.ip() == ip)
    }

    fn evictable_where(
        &self,
        site: usize,
        pick: impl Fn(&FlowEnd) -> bool,
    ) -> Option<(usize, StreamId)> {
        self.by_flow
            .iter()
            .filter(|((s, _), e)| *s == site && !e.age.assured() && pick(e))
            .min_by_key(|(_, e)| e.age.last_used())
            .map(|(k, _)| *k)
    }

    /// Flows open.
    pub fn len(&self) -> usize {
        self.by_flow.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.by_flow.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> (usize, StreamId) {
        (0, StreamId(i * 2))
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 2], port))
    }

    async fn flows(n: u32, t0: Instant) -> BoxFlows {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let mut f = BoxFlows::default();
        for i in 0..n {
            let at = t0 + Duration::from_millis(u64::from(i));
            f.insert(
                Target::Service(0),
                peer(1000 + i as u16),
                key(i),
                sock.clone(),
                None,
                at,
            );
        }
        f
    }

    #[tokio::test]
    async fn a_one_shot_query_ends_after_the_idle_timeout_a_conversation_after_the_stream_timeout()
    {
        let t0 = Instant::now();
        let mut f = flows(2, t0).await;
        let to = config::UdpTimeouts::default();
        // Flow 0: query, answer (DNS). Flow 1: query, answer, more (a call).
        f.reply_to(&key(0), t0);
        f.reply_to(&key(1), t0);
        assert_eq!(f.flow(Target::Service(0), peer(1001), t0), Some(key(1)));
        assert!(
            f.expired(&to, t0 + to.idle - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(f.expired(&to, t0 + to.idle), vec![key(0)]);
        let mut both = f.expired(&to, t0 + to.stream);
        both.sort();
        assert_eq!(both, vec![key(0), key(1)]);
    }

    #[tokio::test]
    async fn room_is_made_from_the_least_recently_used_one_shot_flow_never_a_conversation() {
        let t0 = Instant::now();
        let mut f = flows(4, t0).await;
        // Flow 0 (the oldest) became a conversation; flow 2 was just used.
        f.reply_to(&key(0), t0);
        f.flow(Target::Service(0), peer(1000), t0);
        f.flow(Target::Service(0), peer(1002), t0 + Duration::from_secs(1));
        assert_eq!(f.evictable(0), Some(key(1)));
        f.remove(&key(1));
        assert_eq!(f.evictable(0), Some(key(3)));
        f.remove(&key(3));
        assert_eq!(f.evictable(0), Some(key(2)));
        f.remove(&key(2));
        assert_eq!(f.evictable(0), None, "a conversation is never cut for room");
        assert_eq!(f.evictable(1), None);
        assert_eq!(f.len(), 1);
    }
}
