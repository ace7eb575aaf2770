//! The box's announcement of its path notices on the PAN: each notice as
//! one UDP datagram (its JSON) to a multicast group, from the box's PAN
//! address with a TTL of 1, so it never leaves the PAN. A phone's app joins
//! the group and reads; nothing is sent back and nothing waits for it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::hub::{Filter, Hub};

/// The socket announcements leave from: bound to `source` (the box's PAN
/// address), multicast out of the interface that holds it, TTL 1.
pub fn socket(source: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_multicast_if_v4(&source)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
    UdpSocket::from_std(s.into())
}

/// Announces every notice of `hub` to `group` from `source`, for ever.
/// Until `source` exists on the box (the PAN bridge comes up after the
/// daemon) it retries every 2 s; a failed send is counted and logged
/// sparsely, never retried.
pub async fn announce(hub: Hub, group: SocketAddrV4, source: Ipv4Addr) {
    let mut sub = hub.subscribe(Filter::default());
    let mut tries = 0u64;
    let sock = loop {
        match socket(source) {
            Ok(s) => break s,
            Err(e) => {
                tries += 1;
                if tries.is_power_of_two() {
                    warn!(%source, error = %e, tries, "qos announcements: waiting for the PAN address");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    info!(%group, %source, "qos notices announced on the PAN");
    let mut failed = 0u64;
    while let Some(n) = sub.next().await {
        let Ok(text) = serde_json::to_vec(&n) else {
            continue;
        };
        if let Err(e) = sock.send_to(&text, SocketAddr::V4(group)).await {
            failed += 1;
            if failed.is_power_of_two() {
                warn!(%group, error = %e, failed, "qos announcement not sent");
            }
        }
    }
}
