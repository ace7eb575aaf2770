//! The PAN side of the world: a DHCP server on the box's `pan0` (dnsmasq;
//! systemd-networkd's on the image) handing out addresses with CBoxIP as
//! router and DNS, the phone and a laptop on the Ethernet PAN port (which
//! cnaptd puts in the bridge) taking a lease (busybox udhcpc, its script
//! configuring only the client's namespace), and a resolver next to the
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
fn start(world: &Topology, dir: &Path, procs: &mut Procs) -> anyhow::Result<()> {
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

/// Both PAN clients take their leases, the phone resolves a name through
/// the tunnel, and `cboxctl status` lists both clients with the addresses
/// they got: notes for the report, and the DNS server to ask again later.
pub fn join(
    world: &Topology,
    dir: &Path,
    procs: &mut Procs,
    box_sock: &Path,
) -> anyhow::Result<(Vec<String>, String)> {
    start(world, dir, procs)?;
    let (ip, router, dns) = lease(world, dir, "phone", "ph0")?;
    let answer = resolve(world, &dns)?;
    let mut notes = vec![format!(
        "the phone leased {ip} (router {router}, DNS {dns}) and resolved {NAME} to {answer} through the tunnel"
    )];
    // The laptop's port joins the bridge only through cnaptd.
    let (lap_ip, lap_router, _) = lease(world, dir, "laptop", "lap0")?;
    // Any first packet of the laptop's (here one ping) makes it known.
    let _ = world
        .exec("laptop", "ping")
        .args(["-c", "1", "-W", "2", &lap_router])
        .output();
    notes.push(format!(
        "the laptop on the Ethernet PAN port (eth0, enslaved by cnaptd) leased {lap_ip}"
    ));
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let clients = crate::procs::status(box_sock)
            .map(|v| v["pan_clients"].clone())
            .unwrap_or_default();
        let list: Vec<(String, String)> = clients
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["interface"].as_str().unwrap_or("").to_string(),
                    c["ip"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let want = [
            ("eth0".to_string(), lap_ip.clone()),
            ("pan-ph".to_string(), ip.clone()),
        ];
        if want.iter().all(|w| list.contains(w)) {
            notes.push(format!("cboxctl status lists the PAN clients: {list:?}"));
            return Ok((notes, dns));
        }
        if std::time::Instant::now() > until {
            bail!("cboxctl status lists PAN clients {list:?}, expected {want:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A PAN client gives up its address and takes a lease on `dev`:
/// (address, router, DNS server) as the DHCP server sent them.
fn lease(
    world: &Topology,
    dir: &Path,
    role: &str,
    dev: &str,
) -> anyhow::Result<(String, String, String)> {
    world.ip(role, &["addr", "flush", "dev", dev])?;
    let file = dir.join(format!("lease-{role}"));
    let out = world
        .exec(role, "busybox")
        .args([
            "udhcpc", "-i", dev, "-n", "-q", "-f", "-t", "5", "-T", "2", "-s",
        ])
        .arg(apps_dir().join("udhcpc.sh"))
        .env("LEASE_FILE", &file)
        .output()
        .context("busybox udhcpc (apt-get install busybox)")?;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let f: Vec<&str> = text.split_whitespace().collect();
    let [ip, router, dns, ..] = f[..] else {
        bail!(
            "the {role} got no DHCP lease: {}",
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
