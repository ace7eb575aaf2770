//! The link monitor: the uplinks' interfaces as the kernel sees them, over
//! rtnetlink — whether each is up (administratively up with carrier) and
//! which address it has, and the gateway of its default route in the main
//! table (what DHCP or the modem set; policy routing copies it into the
//! uplink's own table). Subscribes to the link, address and IPv4 route
//! multicast groups first, then dumps the current state, so nothing falls
//! between the two; every change reaches the box driver within
//! milliseconds of the kernel's notification (the trigger of a sudden
//! switch).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use futures_util::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// A change of one watched interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Up (admin up and carrier) or not; also sent when it disappears.
    Link {
        /// Interface name.
        iface: String,
        /// Usable at the link layer.
        up: bool,
    },
    /// Its address (the lowest of its global ones) changed.
    Address {
        /// Interface name.
        iface: String,
        /// `None` when it has none left.
        address: Option<IpAddr>,
    },
    /// The gateway of its IPv4 default route in the main table changed.
    Gateway {
        /// Interface name.
        iface: String,
        /// `None` when it has no such route (or one without a gateway).
        gateway: Option<IpAddr>,
    },
}

#[derive(Debug, Default)]
struct IfState {
    up: bool,
    addresses: BTreeSet<IpAddr>,
    gateways: BTreeSet<IpAddr>,
}

/// What is known about the watched interfaces; turns netlink messages into
/// [`LinkEvent`]s (only real changes).
#[derive(Debug)]
pub struct Interfaces {
    watched: Vec<String>,
    names: HashMap<u32, String>,
    state: HashMap<String, IfState>,
}

impl Interfaces {
    /// Watches `names`.
    pub fn new(names: Vec<String>) -> Self {
        Self {
            watched: names,
            names: HashMap::new(),
            state: HashMap::new(),
        }
    }

    fn primary(&self, iface: &str) -> Option<IpAddr> {
        self.state
            .get(iface)
            .and_then(|s| s.addresses.iter().next().copied())
    }

    /// The events `msg` causes.
    pub fn handle(&mut self, msg: &RouteNetlinkMessage) -> Vec<LinkEvent> {
        match msg {
            RouteNetlinkMessage::NewLink(l) => self.link(l, true),
            RouteNetlinkMessage::DelLink(l) => self.link(l, false),
            RouteNetlinkMessage::NewAddress(a) => self.address(a, true),
            RouteNetlinkMessage::DelAddress(a) => self.address(a, false),
            RouteNetlinkMessage::NewRoute(r) => self.route(r, true),
            RouteNetlinkMessage::DelRoute(r) => self.route(r, false),
            _ => Vec::new(),
        }
    }

    fn link(&mut self, l: &LinkMessage, exists: bool) -> Vec<LinkEvent> {
        let index = l.header.index;
        let name = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        let Some(name) = name.or_else(|| self.names.get(&index).cloned()) else {
            return Vec::new();
        };
        if !self.watched.contains(&name) {
            return Vec::new();
        }
        let had_address = self.primary(&name).is_some();
        if exists {
            self.names.insert(index, name.clone());
        } else {
            // Gone (a modem re-enumerating): its addresses went with it.
            self.names.remove(&index);
        }
        let up = exists
            && l.header.flags.contains(LinkFlags::Up)
            && l.header.flags.contains(LinkFlags::LowerUp);
        let st = self.state.entry(name.clone()).or_default();
        let mut out = Vec::new();
        if st.up != up {
            st.up = up;
            out.push(LinkEvent::Link {
                iface: name.clone(),
                up,
            });
        }
        if !exists {
            st.addresses.clear();
            if st.gateways.iter().next().is_some() {
                st.gateways.clear();
                out.push(LinkEvent::Gateway {
                    iface: name.clone(),
                    gateway: None,
                });
            }
            if had_address {
                out.push(LinkEvent::Address {
                    iface: name,
                    address: None,
                });
            }
        }
        out
    }

    fn address(&mut self, a: &AddressMessage, added: bool) -> Vec<LinkEvent> {
        let Some(name) = self.names.get(&a.header.index).cloned() else {
            return Vec::new();
        };
        // IFA_LOCAL is the interface's own address on point-to-point links;
        // elsewhere IFA_ADDRESS is.
        let ip = a
            .attributes
            .iter()
            .find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            })
            .or_else(|| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
        let Some(ip) = ip.filter(|ip| !is_link_local(ip)) else {
            return Vec::new();
        };
        let before = self.primary(&name);
        let st = self.state.entry(name.clone()).or_default();
        if added {
            st.addresses.insert(ip);
        } else {
            st.addresses.remove(&ip);
        }
        let after = self.primary(&name);
        if before == after {
            return Vec::new();
        }
        vec![LinkEvent::Address {
            iface: name,
            address: after,
        }]
    }
}

impl Interfaces {
    /// A default route of the main table on a watched interface.
    fn route(&mut self, r: &RouteMessage, added: bool) -> Vec<LinkEvent> {
        let table = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(r.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || r.header.destination_prefix_length != 0
        {
            return Vec::new();
        }
        let Some(name) = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => self.names.get(i).cloned(),
            _ => None,
        }) else {
            return Vec::new();
        };
        let gw = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
            _ => None,
        });
        let Some(gw) = gw else { return Vec::new() };
        let st = self.state.entry(name.clone()).or_default();
        let before = st.gateways.iter().next().copied();
        if added {
            st.gateways.insert(gw);
        } else {
            st.gateways.remove(&gw);
        }
        let after = st.gateways.iter().next().copied();
        if before == after {
            return Vec::new();
        }
        vec![LinkEvent::Gateway {
            iface: name,
            gateway: after,
        }]
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkMonError {
    /// No netlink socket (not Linux, or no permission).
    #[error("netlink: {0}")]
    Netlink(#[from] std::io::Error),
    /// The initial dump failed.
    #[error("netlink dump: {0}")]
    Dump(String),
}

/// Starts watching `ifaces`; every change goes to `out` (the current state
/// first, as events). Runs until `out` is closed.
pub async fn spawn(
    ifaces: Vec<String>,
    out: mpsc::UnboundedSender<LinkEvent>,
) -> Result<tokio::task::AbortHandle, LinkMonError> {
    let (conn, handle, mut messages) = new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
    ])?;
    let conn = tokio::spawn(conn);
    let mut ifs = Interfaces::new(ifaces);
    let mut dump = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(l) = links.next().await {
        let l = l.map_err(|e| LinkMonError::Dump(e.to_string()))?;
        dump.push(RouteNetlinkMessage::NewLink(l));
    }
    let mut addrs = handle.address().get().execute();
    while let Some(a) = addrs.next().await {
        let a = a.map_err(|e| LinkMonError::Dump(e.to_string()))?;
        dump.push(RouteNetlinkMessage::NewAddress(a));
    }
    let mut routes = handle
        .route()
        .get(rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.next().await {
        let r = r.map_err(|e| LinkMonError::Dump(e.to_string()))?;
        dump.push(RouteNetlinkMessage::NewRoute(r));
    }
    for m in &dump {
        for ev in ifs.handle(m) {
            let _ = out.send(ev);
        }
    }
    // Interfaces that do not exist yet are down until they appear.
    for name in ifs.watched.clone() {
        if !ifs.state.contains_key(&name) {
            ifs.state.insert(name.clone(), IfState::default());
            let _ = out.send(LinkEvent::Link {
                iface: name,
                up: false,
            });
        }
    }
    let task = tokio::spawn(async move {
        let _handle = handle;
        while let Some((msg, _)) = messages.next().await {
            if let NetlinkPayload::InnerMessage(m) = msg.payload {
                for ev in ifs.handle(&m) {
                    debug!(?ev, "link event");
                    if out.send(ev).is_err() {
                        conn.abort();
                        return;
                    }
                }
            }
        }
        warn!("the netlink monitor stopped");
        conn.abort();
    });
    Ok(task.abort_handle())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rtnetlink::packet_route::AddressFamily;

    use super::*;

    fn link(index: u32, name: &str, flags: LinkFlags) -> RouteNetlinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.header.flags = flags;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        RouteNetlinkMessage::NewLink(l)
    }

    fn addr(index: u32, ip: [u8; 4], add: bool) -> RouteNetlinkMessage {
        let mut a = AddressMessage::default();
        a.header.index = index;
        a.header.family = AddressFamily::Inet;
        a.attributes
            .push(AddressAttribute::Address(IpAddr::V4(Ipv4Addr::from(ip))));
        if add {
            RouteNetlinkMessage::NewAddress(a)
        } else {
            RouteNetlinkMessage::DelAddress(a)
        }
    }

    fn default_route(index: u32, table: u32, gw: [u8; 4], add: bool) -> RouteNetlinkMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = u8::try_from(table).unwrap_or(0);
        r.attributes.push(RouteAttribute::Table(table));
        r.attributes.push(RouteAttribute::Oif(index));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::from(
                gw,
            ))));
        if add {
            RouteNetlinkMessage::NewRoute(r)
        } else {
            RouteNetlinkMessage::DelRoute(r)
        }
    }

    #[test]
    fn the_main_tables_default_gateway_is_learnt() {
        let mut ifs = Interfaces::new(vec!["eth1".into()]);
        ifs.handle(&link(5, "eth1", LinkFlags::Up | LinkFlags::LowerUp));
        let gw = Some(IpAddr::V4(Ipv4Addr::new(198, 18, 40, 1)));
        assert_eq!(
            ifs.handle(&default_route(5, 254, [198, 18, 40, 1], true)),
            vec![LinkEvent::Gateway {
                iface: "eth1".into(),
                gateway: gw
            }]
        );
        // Our own per-uplink table is not learnt from.
        assert!(
            ifs.handle(&default_route(5, 102, [198, 18, 41, 1], true))
                .is_empty()
        );
        // Nor a route of an unwatched interface.
        assert!(
            ifs.handle(&default_route(6, 254, [198, 18, 42, 1], true))
                .is_empty()
        );
        assert_eq!(
            ifs.handle(&default_route(5, 254, [198, 18, 40, 1], false)),
            vec![LinkEvent::Gateway {
                iface: "eth1".into(),
                gateway: None
            }]
        );
    }

    #[test]
    fn link_and_address_changes_become_events_once() {
        let mut ifs = Interfaces::new(vec!["wlan0".into()]);
        let up = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
        assert_eq!(
            ifs.handle(&link(3, "wlan0", up)),
            vec![LinkEvent::Link {
                iface: "wlan0".into(),
                up: true
            }]
        );
        // The same state again (e.g. a statistics update): nothing.
        assert!(ifs.handle(&link(3, "wlan0", up)).is_empty());
        // Unwatched interfaces are ignored.
        assert!(ifs.handle(&link(4, "eth9", up)).is_empty());
        assert!(ifs.handle(&addr(4, [198, 18, 9, 2], true)).is_empty());
        let a = Some(IpAddr::V4(Ipv4Addr::new(198, 18, 10, 2)));
        assert_eq!(
            ifs.handle(&addr(3, [198, 18, 10, 2], true)),
            vec![LinkEvent::Address {
                iface: "wlan0".into(),
                address: a
            }]
        );
        // A link-local address does not count.
        assert!(ifs.handle(&addr(3, [169, 254, 1, 1], true)).is_empty());
        // Carrier lost (admin still up).
        assert_eq!(
            ifs.handle(&link(3, "wlan0", LinkFlags::Up)),
            vec![LinkEvent::Link {
                iface: "wlan0".into(),
                up: false
            }]
        );
        assert_eq!(
            ifs.handle(&addr(3, [198, 18, 10, 2], false)),
            vec![LinkEvent::Address {
                iface: "wlan0".into(),
                address: None
            }]
        );
    }

    #[test]
    fn a_vanishing_interface_loses_link_and_address() {
        let mut ifs = Interfaces::new(vec!["wwan0".into()]);
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        ifs.handle(&link(7, "wwan0", up));
        ifs.handle(&addr(7, [198, 18, 20, 2], true));
        let RouteNetlinkMessage::NewLink(l) = link(7, "wwan0", up) else {
            unreachable!()
        };
        let evs = ifs.handle(&RouteNetlinkMessage::DelLink(l));
        assert_eq!(
            evs,
            vec![
                LinkEvent::Link {
                    iface: "wwan0".into(),
                    up: false
                },
                LinkEvent::Address {
                    iface: "wwan0".into(),
                    address: None
                }
            ]
        );
        // Re-enumerated under a new index: known again.
        ifs.handle(&link(9, "wwan0", up));
        assert_eq!(ifs.handle(&addr(9, [198, 18, 20, 3], true)).len(), 1);
    }
}
