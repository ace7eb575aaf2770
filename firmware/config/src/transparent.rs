//! `[transparent]`: every TCP connection a PAN client opens to the outside
//! is redirected to cnaptd (nftables on the PAN interface) and relayed to
//! its original destination — for apps nobody configured a service for.
//! The SNAPT connects only where its per-box policy allows.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::common::{ConfigError, invalid};

/// `[transparent]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransparentSection {
    listen: SocketAddr,
    interface: String,
    #[serde(default)]
    snapt: Option<String>,
    #[serde(default = "yes")]
    udp: bool,
}

fn yes() -> bool {
    true
}

/// Transparent mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transparent {
    /// Where redirected connections arrive (CBoxIP:port).
    pub listen: SocketAddr,
    /// The PAN interface whose TCP is redirected (`pan0`).
    pub interface: String,
    /// Index into the SNAPTs.
    pub snapt: usize,
    /// Datagrams too (TPROXY on the same port, UDP).
    pub udp: bool,
}

impl TransparentSection {
    pub(crate) fn build(&self, path: &Path, snapts: &[String]) -> Result<Transparent, ConfigError> {
        if self.listen.ip().is_unspecified() || !self.listen.is_ipv4() {
            return Err(invalid(
                path,
                "transparent.listen",
                "the box's IPv4 PAN address (CBoxIP) and a port",
            ));
        }
        let i = &self.interface;
        if !crate::pan::is_interface_name(i) {
            return Err(invalid(
                path,
                "transparent.interface",
                "an interface name like pan0",
            ));
        }
        let snapt = match &self.snapt {
            None => 0,
            Some(n) => snapts.iter().position(|x| x == n).ok_or_else(|| {
                invalid(
                    path,
                    "transparent.snapt",
                    format!("no [[snapt]] named {n:?}"),
                )
            })?,
        };
        Ok(Transparent {
            listen: self.listen,
            interface: i.clone(),
            snapt,
            udp: self.udp,
        })
    }
}
