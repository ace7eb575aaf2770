//! The PAN bridge (`pan0`): cnaptd puts the configured Ethernet ports in
//! it (again whenever one reappears) and lists who is on it — every
//! address the bridge has learnt on a port (a phone's bnep interface
//! carries the phone's Bluetooth address as its Ethernet source, a laptop
//! its MAC) with the IPv4 address the box's neighbour table has for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::{Handle, LinkUnspec, new_connection};
use status::PanClient;
use tokio::sync::watch;
use tracing::{info, warn};

const EVERY: Duration = Duration::from_secs(1);

struct Link {
    name: String,
    controller: Option<u32>,
    mac: Vec<u8>,
    up: bool,
}

/// Starts the bridge task; the client list comes out.
pub(crate) fn spawn(bridge: String, ethernet: Vec<String>) -> watch::Receiver<Vec<PanClient>> {
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let handle = match new_connection() {
            Ok((conn, handle, _)) => {
                tokio::spawn(conn);
                handle
            }
            Err(e) => {
                warn!(%bridge, "PAN bridge not managed: netlink: {e}");
                return;
            }
        };
        let mut problem: Option<String> = None;
        loop {
            match scan(&handle, &bridge, &ethernet).await {
                Ok(clients) => {
                    if problem.take().is_some() {
                        info!(%bridge, "PAN bridge found");
                    }
                    tx.send_if_modified(|old| {
                        let changed = *old != clients;
                        if changed {
                            info!(%bridge, clients = clients.len(), "PAN clients changed");
                            *old = clients;
                        }
                        changed
                    });
                }
                Err(e) => {
                    if problem.as_deref() != Some(e.as_str()) {
                        warn!(%bridge, "PAN bridge: {e}");
                    }
                    problem = Some(e);
                    tx.send_if_modified(|old| !std::mem::take(old).is_empty());
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
    rx
}

fn mac_text(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

async fn links(handle: &Handle) -> Result<HashMap<u32, Link>, String> {
    let mut out = HashMap::new();
    let mut s = handle.link().get().execute();
    while let Some(m) = s.try_next().await.map_err(|e| format!("links: {e}"))? {
        let mut l = Link {
            name: String::new(),
            controller: None,
            mac: Vec::new(),
            up: m.header.flags.contains(LinkFlags::Up),
        };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Controller(c) => l.controller = Some(c),
                LinkAttribute::Address(a) => l.mac = a,
                _ => {}
            }
        }
        out.insert(m.header.index, l);
    }
    Ok(out)
}

async fn scan(
    handle: &Handle,
    bridge: &str,
    ethernet: &[String],
) -> Result<Vec<PanClient>, String> {
    let links = links(handle).await?;
    let Some((&br, _)) = links.iter().find(|(_, l)| l.name == bridge) else {
        return Err(format!(
            "no bridge {bridge} (systemd-networkd creates it on the box)"
        ));
    };
    for e in ethernet {
        let Some((&i, l)) = links.iter().find(|(_, l)| &l.name == e) else {
            continue;
        };
        if l.controller != Some(br) || !l.up {
            let msg = LinkUnspec::new_with_index(i).controller(br).up().build();
            match handle.link().set(msg).execute().await {
                Ok(()) => info!(port = %e, %bridge, "Ethernet PAN port in the bridge"),
                Err(err) => warn!(port = %e, %bridge, "Ethernet PAN port not added: {err}"),
            }
        }
    }
    let local: Vec<&[u8]> = links.values().map(|l| l.mac.as_slice()).collect();
    // Who the bridge has learnt on which port.
    let mut fdb = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    let mut clients: Vec<PanClient> = Vec::new();
    while let Some(n) = fdb
        .try_next()
        .await
        .map_err(|e| format!("bridge table: {e}"))?
    {
        let port = n.header.ifindex;
        let Some(pl) = links.get(&port) else { continue };
        if port == br || pl.controller != Some(br) {
            continue;
        }
        if matches!(
            n.header.state,
            NeighbourState::Permanent | NeighbourState::Noarp
        ) {
            continue;
        }
        let Some(mac) = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => Some(m.clone()),
            _ => None,
        }) else {
            continue;
        };
        if mac[0] & 1 == 1 || local.contains(&mac.as_slice()) {
            continue;
        }
        let address = mac_text(&mac);
        if !clients.iter().any(|c| c.address == address) {
            clients.push(PanClient {
                address,
                interface: pl.name.clone(),
                ip: None,
            });
        }
    }
    // Their IPv4 addresses, from the bridge's neighbour table.
    let mut arp = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(n) = arp
        .try_next()
        .await
        .map_err(|e| format!("neighbours: {e}"))?
    {
        if n.header.ifindex != br
            || matches!(
                n.header.state,
                NeighbourState::Failed | NeighbourState::Incomplete
            )
        {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    ip = Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::LinkLayerAddress(m) => mac = Some(mac_text(m)),
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac)
            && let Some(c) = clients.iter_mut().find(|c| c.address == mac)
        {
            c.ip = Some(ip);
        }
    }
    clients.sort_by(|a, b| (&a.interface, &a.address).cmp(&(&b.interface, &b.address)));
    Ok(clients)
}
