//! Transparent mode for datagrams (TPROXY): PAN clients' UDP to the outside
//! is delivered, unchanged, to cnaptd's transparent socket — the nftables
//! rule marks it and diverts it (see [`crate::transparent::ruleset`]), a
//! policy-routing rule sends marked packets to a table whose only route is
//! `local 0.0.0.0/0 dev lo`, and the socket (`IP_TRANSPARENT`,
//! `IP_RECVORIGDSTADDR`) reads each datagram with the address it was sent
//! to. Replies leave from a socket bound to that address, so the phone sees
//! them come from the server it asked.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use futures_util::TryStreamExt;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, bind, connect,
    recvmsg, setsockopt, socket, sockopt,
};
use rtnetlink::packet_route::route::{RouteScope, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{Handle, RouteMessageBuilder, new_connection};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The firewall mark of diverted datagrams, and the routing table (and
/// rule priority) that delivers them locally.
pub const MARK: u32 = 0x1c0b;
/// Priority of the rule `fwmark MARK lookup MARK` (before the uplinks').
pub const RULE_PRIORITY: u32 = 900;

fn v4(a: SocketAddr) -> io::Result<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "transparent datagrams are IPv4 only",
        )),
    }
}

/// A non-blocking UDP socket with `IP_TRANSPARENT`, bound to `at` (which
/// need not be the box's address); `orig_dst` also asks for each
/// datagram's original destination.
fn transparent_socket(at: SocketAddr, orig_dst: bool) -> io::Result<UdpSocket> {
    let at = v4(at)?;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::IpTransparent, &true)?;
    if orig_dst {
        setsockopt(&fd, sockopt::Ipv4OrigDstAddr, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrIn::from(at))?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// The socket diverted datagrams arrive on (CBoxIP and the transparent
/// port). Needs CAP_NET_ADMIN.
pub fn listener(at: SocketAddr) -> io::Result<UdpSocket> {
    transparent_socket(at, true)
}

/// The socket of one flow: bound to the server's address `from` and
/// connected to the phone `to` — replies leave from it, and the phone's
/// next datagrams to that server arrive on it (the kernel prefers the
/// connected socket to the listener).
pub fn reply_socket(from: SocketAddr, to: SocketAddr) -> io::Result<Arc<UdpSocket>> {
    let to = v4(to)?;
    let sock = transparent_socket(from, false)?;
    connect(sock.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(Arc::new(sock))
}

/// One datagram: its length, who sent it and where it was going.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    sock.async_io(Interest::READABLE, || {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(nix::libc::sockaddr_in);
        let msg = recvmsg::<SockaddrIn>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )?;
        let peer = msg
            .address
            .map(|a| SocketAddr::V4(SocketAddrV4::new(a.ip(), a.port())))
            .ok_or_else(|| io::Error::other("datagram without a sender"))?;
        let mut dest = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::Ipv4OrigDstAddr(sin) = c {
                dest = Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )));
            }
        }
        let dest = dest.ok_or_else(|| io::Error::other("datagram without its destination"))?;
        Ok((msg.bytes, peer, dest))
    })
    .await
}

/// Where br_netfilter (if loaded) says whether bridged IPv4 traffic runs
/// through the IP hooks at bridge level.
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// TPROXY cannot deliver datagrams that cross a bridge while br_netfilter
/// runs the IP hooks at bridge level: the socket it assigns there is
/// dropped when the packet reaches IP, and the datagram finds no port. So
/// the bridge must not call them (the box filters nothing at bridge
/// level). Returns whether it was changed; an error says what to set.
pub fn bridge_hooks_off() -> Result<bool, String> {
    let now = match std::fs::read_to_string(BRIDGE_NF) {
        Ok(v) => v,
        // br_netfilter not loaded: nothing in the way.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{BRIDGE_NF}: {e}")),
    };
    if now.trim() == "0" {
        return Ok(false);
    }
    std::fs::write(BRIDGE_NF, "0").map_err(|e| {
        format!("br_netfilter is loaded and {BRIDGE_NF} is 1 (cannot set it to 0: {e}); set net.bridge.bridge-nf-call-iptables = 0")
    })?;
    Ok(true)
}

/// Why the local-delivery route could not be set.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No netlink socket.
    #[error("netlink: {0}")]
    Netlink(#[from] io::Error),
    /// The kernel refused.
    #[error("{what}: {source}")]
    Kernel {
        /// What was being done.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
}

fn err(what: &'static str) -> impl FnOnce(rtnetlink::Error) -> RouteError {
    move |source| RouteError::Kernel { what, source }
}

/// Adds (`add`) or removes the rule `fwmark MARK lookup MARK` and the route
/// `local 0.0.0.0/0 dev lo table MARK`; removing what is not there, or
/// adding what is, is no error.
pub async fn local_delivery(add: bool) -> Result<(), RouteError> {
    let (conn, handle, _) = new_connection()?;
    let task = tokio::spawn(conn);
    let r = apply(&handle, add).await;
    task.abort();
    r
}

async fn apply(handle: &Handle, add: bool) -> Result<(), RouteError> {
    // Whatever an earlier run left goes first.
    let mut rules = handle.rule().get(rtnetlink::IpVersion::V4).execute();
    let mut stale = Vec::new();
    while let Some(r) = rules.try_next().await.map_err(err("listing rules"))? {
        let ours = r
            .attributes
            .iter()
            .any(|a| matches!(a, RuleAttribute::FwMark(m) if *m == MARK))
            && r.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Priority(p) if *p == RULE_PRIORITY));
        if ours {
            stale.push(r);
        }
    }
    for r in stale {
        handle
            .rule()
            .del(r)
            .execute()
            .await
            .map_err(err("removing the rule"))?;
    }
    let lo = {
        let mut links = handle.link().get().match_name(String::from("lo")).execute();
        links
            .try_next()
            .await
            .map_err(err("finding lo"))?
            .map(|l| l.header.index)
    };
    let route = |lo: u32| {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .table_id(MARK)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .output_interface(lo)
            .build()
    };
    if let Some(lo) = lo {
        let _ = handle.route().del(route(lo)).execute().await;
        if add {
            handle
                .route()
                .add(route(lo))
                .execute()
                .await
                .map_err(err("adding the local route"))?;
        }
    }
    if add {
        handle
            .rule()
            .add()
            .v4()
            .fw_mark(MARK)
            .table_id(MARK)
            .priority(RULE_PRIORITY)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(err("adding the rule"))?;
    }
    Ok(())
}
