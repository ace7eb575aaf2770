//! The PAN side of the world: a DHCP server on the box's `pan0` (dnsmasq;
//! systemd-networkd's on the image) handing out addresses with CBoxIP as
//! router and DNS, the phone taking a lease (busybox udhcpc, its script
//! configuring only the phone's namespace), and a resolver next to the
//! SNAPT (dnsmasq in the internet namespace) that the box's `dns` UDP
//! service reaches through the tunnel — name resolution survives handovers
//! and never leaks to whichever uplink is active.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::apps::apps_dir;
use crate::procs::{Procs, log};
use crate::topology::{Topology, addr};

/// The name the resolver knows.
pub const NAME: &str = "files.cbox.test";

/// Starts the resolver (internet) and the DHCP server (box, on pan0).
pub fn start(world: &Topology, dir: &Path, procs: &mut Procs) -> anyhow::Result<()> {
    let c = world
        .exec("internet", "/usr/sbin/dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .arg(format!("--listen-address={}", addr::INTERNET))
        .arg(format!("--address=/{NAME}/{}", addr::INTERNET))
        .arg(format!("--pid-file={}", dir.join("dns.pid").display()))
        .arg("--log-facility=-")
        .stderr(log(dir, "resolver")?)
        .spawn()
        .context("dnsmasq (apt-get install dnsmasq-base)")?;
    procs.push("resolver", c);
    let c = world
        .exec("box", "/usr/sbin/dnsmasq")
        .args([
            "--keep-in-foreground",
            "--port=0",
            "--bind-interfaces",
            "--interface=pan0",
        ])
        .arg("--dhcp-range=198.18.77.100,198.18.77.150,255.255.255.0,10m")
        .arg(format!("--dhcp-option=option:router,{}", addr::CBOX_IP))
        .arg(format!("--dhcp-option=option:dns-server,{}", addr::CBOX_IP))
        .arg(format!(
            "--dhcp-leasefile={}",
            dir.join("dhcp.leases").display()
        ))
        .arg(format!("--pid-file={}", dir.join("dhcp.pid").display()))
        .arg("--log-facility=-")
        .stderr(log(dir, "dhcp")?)
        .spawn()
        .context("dnsmasq (apt-get install dnsmasq-base)")?;
    procs.push("dhcp", c);
    world.wait_listening("internet", 53, Duration::from_secs(10))
}

/// The phone gives up its fixed address and takes a lease: (address,
/// router, DNS server) as the DHCP server sent them.
pub fn lease(world: &Topology, dir: &Path) -> anyhow::Result<(String, String, String)> {
    world.ip("phone", &["addr", "flush", "dev", "ph0"])?;
    let file = dir.join("lease");
    let out = world
        .exec("phone", "busybox")
        .args([
            "udhcpc", "-i", "ph0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s",
        ])
        .arg(apps_dir().join("udhcpc.sh"))
        .env("LEASE_FILE", &file)
        .output()
        .context("busybox udhcpc (apt-get install busybox)")?;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let f: Vec<&str> = text.split_whitespace().collect();
    let [ip, router, dns, ..] = f[..] else {
        bail!(
            "the phone got no DHCP lease: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    Ok((ip.to_string(), router.to_string(), dns.to_string()))
}

/// Resolves the resolver's name from the phone through the DNS server the
/// lease gave; the address, or why not (bounded: 3 tries of 3 s).
pub fn resolve(world: &Topology, server: &str) -> anyhow::Result<String> {
    let out = world
        .exec("phone", "python3")
        .arg(apps_dir().join("dns_query.py"))
        .args([NAME, server])
        .output()?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || answer.is_empty() {
        bail!(
            "{NAME} not resolved through {server}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(answer)
}
