//! A stranger on the hotspot's network (the `isp-wifi` namespace, on the
//! box's Wi-Fi link) who routes the box's PAN address through the box's
//! Wi-Fi address and tries its status page and a relayed service. Linux
//! would answer (the weak host model); cnaptd's guard rule must drop it.
//! The phone, on the PAN, reaches both at the same time: the probe itself
//! works.

use anyhow::bail;

use crate::apps::box_port;
use crate::topology::{Topology, addr};

/// Whether a TCP connection from `role` to `ip:port` is taken within 1 s.
fn connects(world: &Topology, role: &str, ip: &str, port: u16) -> anyhow::Result<bool> {
    let code = format!("import socket; socket.create_connection(('{ip}', {port}), 1).close()");
    Ok(world
        .exec(role, "python3")
        .args(["-c", &code])
        .output()?
        .status
        .success())
}

/// Runs the probe; `Ok` says what it saw.
pub fn probe(world: &Topology) -> anyhow::Result<String> {
    let route = world
        .exec("isp-wifi", "ip")
        .args([
            "route",
            "replace",
            &format!("{}/32", addr::CBOX_IP),
            "via",
            addr::BOX_WIFI,
        ])
        .output()?;
    if !route.status.success() {
        // The Wi-Fi side is down at the end of this timeline: no stranger
        // can be there either.
        return Ok(format!(
            "stranger probe skipped (no route to the box over Wi-Fi: {})",
            String::from_utf8_lossy(&route.stderr).trim()
        ));
    }
    let mut reached = Vec::new();
    for (what, port) in [
        ("status page", box_port::WEB),
        ("echo service", box_port::ECHO),
    ] {
        if !connects(world, "phone", addr::CBOX_IP, port)? {
            bail!("stranger probe: the phone itself cannot reach the {what} (port {port})");
        }
        if connects(world, "isp-wifi", addr::CBOX_IP, port)? {
            reached.push(format!("{what} (port {port})"));
        }
    }
    let _ = world
        .exec("isp-wifi", "ip")
        .args(["route", "del", &format!("{}/32", addr::CBOX_IP)])
        .output();
    if !reached.is_empty() {
        bail!(
            "a stranger on the hotspot's network reached the box's {}",
            reached.join(" and ")
        );
    }
    Ok("a stranger on the hotspot's network reached neither the status page nor a service (the phone did)".into())
}
