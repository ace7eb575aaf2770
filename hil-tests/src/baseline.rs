//! The baselines a user would pick instead of cbox, run on the same
//! scenario: plain TCP from the phone through the box's NAT, and Linux MPTCP
//! between box and internet host with a subflow per uplink (both active, LTE
//! as backup, or an event-driven path manager that removes the endpoint on
//! the link event). Only the interactive stream runs; there is no relay.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::apps::{StreamFigures, apps_dir, port};
use crate::procs::{Procs, log};
use crate::radio::Radio;
use crate::report::{Mode, Report};
use crate::scenario::{Action, Scenario, Uplink};
use crate::timeline::apply;
use crate::topology::{Topology, addr};

/// The MPTCP endpoint id of the box's address on `uplink`.
pub(crate) fn endpoint_id(uplink: Uplink) -> &'static str {
    match uplink {
        Uplink::Wifi => "1",
        Uplink::Lte => "2",
        Uplink::Cable => "3",
    }
}

/// `ip mptcp endpoint add …` for the box's address on `uplink`, as a
/// subflow endpoint (a backup one if `backup`).
pub(crate) fn mptcp_endpoint(uplink: Uplink, backup: bool) -> Vec<&'static str> {
    let ip = uplink.box_address();
    let mut args = vec![
        "ip",
        "mptcp",
        "endpoint",
        "add",
        ip,
        "dev",
        uplink.dev(),
        "id",
        endpoint_id(uplink),
        "subflow",
    ];
    if backup {
        args.push("backup");
    }
    args
}

/// A baseline run: the interactive stream without the relay, carried by
/// plain TCP through the box's NAT or by MPTCP between box and internet host.
#[allow(clippy::too_many_arguments)]
pub fn baseline(
    sc: &Scenario,
    dir: &Path,
    mode: Mode,
    zero_delay: bool,
    world: &Topology,
    wifi: &Radio,
    lte: &Radio,
    procs: &mut Procs,
    stop: &AtomicBool,
) -> anyhow::Result<Report> {
    let i = addr::INTERNET;
    let apps = apps_dir();
    let run = |role: &str, args: &[&str]| -> anyhow::Result<()> {
        let st = world.exec(role, args[0]).args(&args[1..]).status()?;
        if !st.success() {
            bail!("{} in {role} failed", args.join(" "));
        }
        Ok(())
    };
    let summary = dir.join("interactive.json");
    let secs = sc.duration_s.to_string();
    let client = if mode == Mode::PlainTcp {
        // The box routes and masquerades like a home router.
        run("box", &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        run(
            "box",
            &[
                "nft",
                "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post oifname { wlan0, wwan0 } masquerade",
            ],
        )?;
        let mut c = world.exec("phone", "python3");
        c.arg(apps.join("interactive.py"))
            .args([i, &port::ECHO.to_string(), &secs])
            .arg(&summary);
        c
    } else {
        for role in ["box", "internet"] {
            run(
                role,
                &[
                    "ip",
                    "mptcp",
                    "limits",
                    "set",
                    "subflows",
                    "2",
                    "add_addr_accepted",
                    "2",
                ],
            )?;
        }
        run("box", &mptcp_endpoint(Uplink::Wifi, false))?;
        run(
            "box",
            &mptcp_endpoint(Uplink::Lte, mode == Mode::MptcpBackup),
        )?;
        let srv = world
            .exec("internet", "python3")
            .arg(apps.join("echo_server.py"))
            .args([i, &port::MPTCP_ECHO.to_string(), "mptcp"])
            .stderr(log(dir, "mptcp-echo")?)
            .spawn()?;
        procs.push("mptcp-echo", srv);
        std::thread::sleep(Duration::from_millis(300));
        let mut c = world.exec("box", "python3");
        c.arg(apps.join("interactive.py"))
            .args([i, &port::MPTCP_ECHO.to_string(), &secs])
            .arg(&summary)
            .arg("mptcp");
        c
    };
    let mut client = client;
    let stream = client.stderr(log(dir, "interactive")?).spawn()?;
    procs.push("interactive", stream);
    // The download beside it: curl through the NAT, or an MPTCP client
    // of an MPTCP file server (curl has no MPTCP here).
    let got = dir.join("got.bin");
    let download = match (sc.bulk, mode) {
        (false, _) => None,
        (true, Mode::PlainTcp) => {
            let url = format!("http://{i}:{}/file.bin", port::WEB);
            let c = crate::apps::curl_download(world, "phone", &url, &got, dir, sc)?;
            procs.push("download", c);
            Some("download")
        }
        (true, _) => {
            let file = dir.join("www").join("file.bin");
            let srv = world
                .exec("internet", "python3")
                .arg(apps.join("bulk.py"))
                .args(["serve", i, &port::MPTCP_WEB.to_string()])
                .arg(&file)
                .arg("mptcp")
                .stderr(log(dir, "mptcp-web")?)
                .spawn()?;
            procs.push("mptcp-web", srv);
            std::thread::sleep(Duration::from_millis(300));
            let c = world
                .exec("box", "python3")
                .arg(apps.join("bulk.py"))
                .args(["get", i, &port::MPTCP_WEB.to_string()])
                .arg(dir.join("bulk.json"))
                .arg("mptcp")
                .stderr(log(dir, "download")?)
                .spawn()?;
            procs.push("download", c);
            Some("download")
        }
    };
    let mut events = sc.events.clone();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut notes = Vec::new();
    let start = Instant::now();
    let limit = sc.duration_s + 60.0;
    while !summary.exists() || download.is_some_and(|d| procs.exited(d).is_none()) {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let t = start.elapsed().as_secs_f64();
        while events.first().is_some_and(|e| t >= e.at) {
            let e = events.remove(0);
            match &e.action {
                // Nothing to command: the baselines have no planned switch
                // and no relay to restart.
                Action::Switch { .. }
                | Action::SnaptRestart { .. }
                | Action::RelayKill
                | Action::Mode { .. }
                | Action::Approve => {}
                // No Wi-Fi driver reads the signal; the hotspot the box
                // stands on going out of range is its link going down.
                Action::Hotspot { hotspot, gone, .. } => {
                    if hotspot == "site-a" && *gone == Some(true) {
                        events.insert(
                            0,
                            crate::scenario::Event {
                                at: e.at,
                                action: Action::LinkDown {
                                    uplink: Uplink::Wifi,
                                },
                            },
                        );
                    }
                }
                a => {
                    // Without a modem driver, the modem's registration is
                    // the LTE link itself.
                    let a = &match a {
                        Action::Modem {
                            registered: Some(r),
                            ..
                        } => {
                            if *r {
                                Action::LinkUp {
                                    uplink: Uplink::Lte,
                                }
                            } else {
                                Action::LinkDown {
                                    uplink: Uplink::Lte,
                                }
                            }
                        }
                        a => a.clone(),
                    };
                    if matches!(a, Action::Modem { .. }) {
                        continue;
                    }
                    if let Err(err) = apply(world, wifi, lte, Path::new("/nonexistent"), a) {
                        notes.push(format!("t={:.1}s: {err}", e.at));
                    }
                    // The event-driven path manager reacts to the link event.
                    if mode == Mode::MptcpEvent {
                        let r = match a {
                            Action::LinkDown { uplink } | Action::AddressLoss { uplink } => run(
                                "box",
                                &[
                                    "ip",
                                    "mptcp",
                                    "endpoint",
                                    "delete",
                                    "id",
                                    endpoint_id(*uplink),
                                ],
                            ),
                            Action::LinkUp { uplink } => {
                                run("box", &mptcp_endpoint(*uplink, false))
                            }
                            _ => Ok(()),
                        };
                        if let Err(err) = r {
                            notes.push(format!("t={:.1}s: {err}", e.at));
                        }
                    }
                }
            }
        }
        if t > limit {
            notes.push(format!("the stream still ran after {limit:.0} s"));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let inter = StreamFigures::read(&summary);
    let download_mbit = crate::apps::download_mbit(dir);
    let (download_bytes, download_intact) = if !sc.bulk {
        (0, true)
    } else if mode == Mode::PlainTcp {
        let (n, whole, _) = crate::apps::download(&got, sc.download_mib);
        (n, whole)
    } else {
        let v: serde_json::Value = std::fs::read(dir.join("bulk.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let n = v["bytes"].as_u64().unwrap_or(0);
        (n, n == (sc.download_mib as u64) << 20)
    };
    Ok(Report {
        scenario: sc.name.clone(),
        mode,
        zero_delay,
        handovers: 0,
        roams: 0,
        max_stall_ms: inter.max_stall_ms,
        records_sent: inter.sent,
        records_echoed: inter.echoed,
        records_damaged: inter.damaged(),
        broken: inter.broken.clone(),
        ssh: None,
        udp: None,
        udp_push: None,
        live: None,
        rtt_p50_ms: inter.rtt_p50_ms,
        rtt_p99_ms: inter.rtt_p99_ms,
        download_mbit,
        download_bytes,
        download_intact,
        download_corrupted: false,
        reconnected: None,
        app_errors: u64::from(inter.broken.is_some()),
        bytes_replayed: 0,
        cnaptd_cpu_s: 0.0,
        snaptd_cpu_s: 0.0,
        cnaptd_peak_rss_mib: 0.0,
        snaptd_peak_rss_mib: 0.0,
        passed: inter.damaged() == 0 && inter.broken.is_none(),
        notes,
    })
}
