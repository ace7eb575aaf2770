//! Transparent mode's plumbing on the box: the nftables rules that redirect
//! PAN clients' outbound TCP to cnaptd (installed and removed as one
//! transaction, idempotently) and the original destination of a
//! redirected connection (`SO_ORIGINAL_DST`).

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};

/// The table cnaptd owns (and only it).
pub const TABLE: &str = "cbox_transparent";

/// The ruleset for `interface` → `listen` (an `nft -f` script): TCP
/// arriving on the PAN interface for an address that is not the box's own
/// is redirected to the listener; with `udp`, unicast datagrams to the
/// outside are marked and diverted (TPROXY) to the same port unchanged —
/// see [`crate::transparent_udp`]. The box's own services (and DHCP's
/// broadcasts) stay as they are.
pub fn ruleset(interface: &str, listen: std::net::SocketAddr, udp: bool) -> String {
    let port = listen.port();
    let divert = if udp {
        format!(
            "  chain divert {{\n    type filter hook prerouting priority mangle; policy accept;\n    \
             iifname \"{interface}\" meta l4proto udp fib daddr type unicast meta mark set {mark:#x} tproxy ip to {listen} accept\n  }}\n",
            mark = crate::transparent_udp::MARK
        )
    } else {
        String::new()
    };
    format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\n\
         table inet {TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
         iifname \"{interface}\" meta l4proto tcp fib daddr type != local redirect to :{port}\n  }}\n{divert}}}\n"
    )
}

/// Removes the table (if it is there).
pub fn teardown() -> String {
    format!("add table inet {TABLE}\ndelete table inet {TABLE}\n")
}

/// Why the rules could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// `nft` could not be run.
    #[error("nft: {0}")]
    Spawn(#[from] std::io::Error),
    /// `nft` refused the script.
    #[error("nft refused the rules: {0}")]
    Refused(String),
}

/// Runs an `nft -f -` script.
pub fn apply(script: &str) -> Result<(), RulesError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(RulesError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Where a redirected connection was going.
pub fn original_destination(stream: &tokio::net::TcpStream) -> std::io::Result<SocketAddr> {
    let sin = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::OriginalDst)
        .map_err(std::io::Error::from)?;
    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(sin.sin_port),
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_redirects_only_foreign_tcp_from_the_pan_and_replaces_itself() {
        let listen = "198.18.77.1:7999".parse().unwrap();
        let r = ruleset("pan0", listen, false);
        assert!(
            r.starts_with("add table inet cbox_transparent\ndelete table inet cbox_transparent\n")
        );
        assert!(r.contains(
            "iifname \"pan0\" meta l4proto tcp fib daddr type != local redirect to :7999"
        ));
        assert!(!r.contains("udp"));
        let r = ruleset("pan0", listen, true);
        assert!(r.contains(
            "iifname \"pan0\" meta l4proto udp fib daddr type unicast meta mark set 0x1c0b tproxy ip to 198.18.77.1:7999 accept"
        ), "{r}");
        assert_eq!(
            teardown(),
            "add table inet cbox_transparent\ndelete table inet cbox_transparent\n"
        );
    }
}
