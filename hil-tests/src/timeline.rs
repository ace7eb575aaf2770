//! Playing a scenario's timeline steps on the world: links up and down,
//! addresses lost, radio conditions set, and the user's `cboxctl` commands
//! (shared by the product's runs and the baselines').

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::bail;

use crate::procs::bin;
use crate::radio::Radio;
use crate::scenario::{Action, Uplink};
use crate::topology::Topology;

/// Brings the box's interface for `uplink` up (with its default route,
/// which the kernel removed when it went down) or down.
pub(crate) fn set_link(box_ns: &str, uplink: Uplink, up: bool) -> anyhow::Result<()> {
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let st = Command::new("ip")
            .arg("-n")
            .arg(box_ns)
            .args(args)
            .status()?;
        if !st.success() {
            bail!("ip {} failed", args.join(" "));
        }
        Ok(())
    };
    if !up {
        return run(&["link", "set", uplink.dev(), "down"]);
    }
    run(&["link", "set", uplink.dev(), "up"])?;
    let (gw, metric) = uplink.gateway();
    run(&[
        "route",
        "replace",
        "default",
        "via",
        gw,
        "dev",
        uplink.dev(),
        "metric",
        metric,
    ])
}

/// `cboxctl ARGS…` against the box; `Err` carries its complaint.
fn ctl(sock: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(bin("cboxctl")?)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "cboxctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Plays one timeline step on the world (a snaptd restart is the
/// runner's own business).
pub(crate) fn apply(
    world: &Topology,
    wifi: &Radio,
    lte: &Radio,
    sock: &Path,
    a: &Action,
) -> anyhow::Result<()> {
    let ip = |args: &[&str]| world.ip("box", args);
    match a {
        Action::Switch { uplink } => ctl(sock, &["switch", uplink.name()])?,
        Action::Mode { mode } => ctl(sock, &["mode", mode])?,
        Action::Approve => ctl(sock, &["approve"])?,
        Action::SnaptRestart { .. } => bail!("the runner restarts snaptd itself"),
        Action::RelayKill => bail!("the runner kills the relay itself"),
        Action::SnaptUpgrade => bail!("the runner upgrades snaptd itself"),
        Action::RelaysRestart { .. } => bail!("the runner restarts the relays itself"),
        // A pulled cable: the site router's end goes, the box sees its
        // carrier go.
        Action::LinkDown {
            uplink: Uplink::Cable,
        } => world.ip("isp-cable", &["link", "set", "box0", "down"])?,
        Action::LinkUp {
            uplink: Uplink::Cable,
        } => world.ip("isp-cable", &["link", "set", "box0", "up"])?,
        Action::LinkDown { uplink } => set_link(&world.ns("box"), *uplink, false)?,
        Action::LinkUp { uplink } => set_link(&world.ns("box"), *uplink, true)?,
        Action::Modem { .. } => bail!("the runner drives the modem itself"),
        Action::Hotspot { .. } => bail!("hotspots exist only for the box's Wi-Fi driver"),
        Action::AddressLoss { uplink } => {
            let a = format!("{}/24", uplink.box_address());
            ip(&["addr", "del", &a, "dev", uplink.dev()])?;
        }
        Action::SetLink {
            uplink,
            delay_ms,
            jitter_ms,
            loss,
            rate_mbit,
            down,
        } => {
            let radio = match uplink {
                Uplink::Wifi => wifi,
                Uplink::Lte => lte,
                Uplink::Cable => bail!("the cable has no radio to set"),
            };
            radio.set(|p| {
                if let Some(d) = delay_ms {
                    p.delay = Duration::from_millis(*d);
                }
                if let Some(j) = jitter_ms {
                    p.jitter = Duration::from_millis(*j);
                }
                if let Some(l) = loss {
                    p.loss = *l;
                }
                if let Some(r) = rate_mbit {
                    p.rate_bps = (*r * 1e6) as u64;
                }
                if let Some(d) = down {
                    p.down = *d;
                }
            });
        }
    }
    Ok(())
}
