#![allow(clippy::print_stdout)] // a command-line program prints
//! cboxctl — talks to cnaptd (and snaptd) over their control sockets, and
//! issues the certificates of a deployment.
//!
//!     cboxctl status [--json]            sessions, uplinks, streams, handovers
//!     cboxctl handovers [--json]         the handover history
//!     cboxctl watch [--interval S]       live status in the terminal
//!     cboxctl switch wifi                planned switch of every SNAPT
//!     cboxctl mode automatic|manual      who switches: the box, or the user
//!     cboxctl approve|decline            answer the box's suggestion
//!     cboxctl disconnect                 end the sessions (DISCONNECT)
//!     cboxctl snapt status|kick BOX      the same for snaptd
//!     cboxctl snapt drain [--deadline S] snaptd: no new sessions, then none
//!     cboxctl snapt upgrade              snaptd: hand over to the binary now installed
//!     cboxctl pan status|pair|close|wifi …  the PAN side (pairing, access point)
//!     cboxctl pki init|server|box|label|revoke|list --dir DIR

mod label;
mod pan;
mod pki;
mod views;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use control::{Reply, Request, call};
use serde_json::Value;
use tls::Pki;

#[derive(Parser, Debug)]
#[command(version, about = "Control cbox daemons and issue their certificates")]
struct Args {
    /// cnaptd's control socket.
    #[arg(long, global = true, default_value = "/run/cbox/cnaptd.sock")]
    socket: PathBuf,
    /// Print the daemon's JSON reply instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Give up on a daemon that has not answered after this many seconds
    /// (a planned switch may take up to the session's switch timeout).
    #[arg(long, global = true, default_value_t = 40)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sessions, uplinks, streams, RTT/loss and the last handovers.
    Status,
    /// The last handovers: kind, from -> to, stall, bytes buffered and
    /// replayed, outcome, reason.
    Handovers,
    /// Live status, redrawn until Ctrl-C.
    Watch {
        /// Seconds between two screens.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        /// Stop after this many screens (default: never).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Planned (make-before-break) switch of every SNAPT to an uplink.
    Switch {
        /// Uplink name from cnapt.toml.
        uplink: String,
    },
    /// End the sessions cleanly; cnaptd then starts new ones.
    Disconnect,
    /// Who switches: the box by itself (automatic) or the user after a
    /// suggestion (manual; the box still leaves a lost or critical path).
    Mode {
        /// automatic or manual.
        #[arg(value_parser = ["automatic", "manual"])]
        mode: String,
    },
    /// Carry out the switch the box suggests (manual mode).
    Approve,
    /// Decline it; it is not suggested again until things get worse.
    Decline,
    /// The PAN side: pairing window, passkey, trusted devices, clients.
    Pan {
        #[command(subcommand)]
        cmd: pan::PanCmd,
    },
    /// Commands for snaptd.
    Snapt {
        /// snaptd's control socket.
        #[arg(long, default_value = "/run/cbox/snaptd.sock")]
        snapt_socket: PathBuf,
        #[command(subcommand)]
        cmd: SnaptCmd,
    },
    /// Certificates: CA, SNAPT servers, boxes, revocation.
    Pki {
        /// The PKI directory (created 0700 by `init`).
        #[arg(long)]
        dir: PathBuf,
        #[command(subcommand)]
        cmd: pki::PkiCmd,
    },
}

#[derive(Subcommand, Debug)]
enum SnaptCmd {
    /// Boxes connected, their sessions and streams.
    Status,
    /// End a box's session.
    Kick {
        /// The box id.
        box_id: String,
    },
    /// Drain for maintenance: no new sessions, idle sessions ended at once
    /// (their boxes move to another relay of the fleet), busy ones when
    /// their streams end, the rest at the deadline.
    Drain {
        /// Seconds until the sessions left are ended.
        #[arg(long = "deadline", default_value_t = 600)]
        deadline_s: u64,
    },
    /// Hand everything to the snaptd binary now installed (after a package
    /// upgrade) without resetting a stream; `systemctl reload snaptd` runs it.
    Upgrade,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cboxctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err("seconds between 0.1 and 3600".into()),
    }
}

/// cnaptd's status as the status model.
async fn snapshot(socket: PathBuf, limit: std::time::Duration) -> anyhow::Result<status::Snapshot> {
    let v = ask(socket, Request::Status, limit).await?;
    serde_json::from_value(v)
        .context("cnaptd's status is not what this cboxctl understands (versions differ?)")
}

async fn ask(socket: PathBuf, req: Request, limit: std::time::Duration) -> anyhow::Result<Value> {
    let reply: Reply = tokio::time::timeout(limit, call(&socket, &req))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the daemon at {} did not answer within {} s",
                socket.display(),
                limit.as_secs()
            )
        })?
        .with_context(|| {
            format!(
                "cannot reach the daemon at {} (is it running?)",
                socket.display()
            )
        })?;
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_else(|| "failed".into()));
    }
    Ok(reply.data)
}

fn print(json: bool, v: &Value, human: impl FnOnce(&Value)) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human(v);
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        Value::Number(n) => n.as_f64().map_or_else(
            || n.to_string(),
            |f| {
                if f.fract() == 0.0 {
                    format!("{f:.0}")
                } else {
                    format!("{f:.1}")
                }
            },
        ),
        other => other.to_string(),
    }
}

/// The uplinks' lookup table of `status`, with the mode and any suggestion.
fn print_uplinks(v: &Value) {
    let opt = |x: &Value, digits: usize| {
        x.as_f64()
            .map_or("-".to_string(), |f| format!("{f:.digits$}"))
    };
    println!("mode {}", s(&v["mode"]));
    if !v["suggestion"].is_null() {
        println!(
            "SUGGESTION: switch to {} ({}): cboxctl approve | decline",
            s(&v["suggestion"]["uplink"]),
            s(&v["suggestion"]["reason"])
        );
    }
    println!(
        "{:<1} {:<8} {:<5} {:<8} {:<8} {:<4} {:<16} {:>6} {:>7} {:>5} {:>4} {:>4} {:>4} {:>8}  WHY",
        "",
        "UPLINK",
        "KIND",
        "IFACE",
        "HEALTH",
        "LINK",
        "ADDRESS",
        "SIGNAL",
        "RTT ms",
        "LOSS",
        "PRIO",
        "COST",
        "AUTO",
        "CHANGED"
    );
    for u in v["uplinks"].as_array().into_iter().flatten() {
        println!(
            "{:<1} {:<8} {:<5} {:<8} {:<8} {:<4} {:<16} {:>6} {:>7} {:>4.0}% {:>4} {:>4} {:>4} {:>7}s  {}",
            if u["active"] == true { "*" } else { " " },
            s(&u["name"]),
            s(&u["kind"]),
            s(&u["interface"]),
            s(&u["health"]),
            if u["link"] == true { "up" } else { "down" },
            s(&u["address"]),
            s(&u["signal_dbm"]),
            opt(&u["rtt_ms"], 1),
            u["loss"].as_f64().unwrap_or(0.0) * 100.0,
            s(&u["priority"]),
            s(&u["cost"]),
            if u["auto_connect"] == true {
                "yes"
            } else {
                "no"
            },
            opt(&u["changed_s_ago"], 0),
            s(&u["why"])
        );
        let w = &u["wifi"];
        if !w.is_null() {
            println!(
                "    wifi {} ({}), {} MHz, signal {} dBm, {} hotspots in the last scan, {} roams{}",
                s(&w["ssid"]),
                s(&w["bssid"]),
                s(&w["freq"]),
                s(&w["signal_dbm"]),
                w["candidates"].as_array().map_or(0, Vec::len),
                w["roams"].as_u64().unwrap_or(0),
                w["problem"]
                    .as_str()
                    .map_or(String::new(), |p| format!("; PROBLEM: {p}"))
            );
        }
        let m = &u["modem"];
        if !m.is_null() {
            println!(
                "    modem {} ({}): {}, {} on {}, RSRP {} dBm, RSSI {} dBm, data {}{}",
                s(&m["model"]),
                s(&m["profile"]),
                s(&m["phase"]),
                s(&m["registration"]),
                s(&m["operator"]),
                s(&m["rsrp_dbm"]),
                s(&m["rssi_dbm"]),
                s(&m["address"]),
                m["problem"]
                    .as_str()
                    .map_or(String::new(), |p| format!("; PROBLEM: {p}"))
            );
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let limit = std::time::Duration::from_secs(args.timeout);
    let ask = |socket: PathBuf, req: Request| ask(socket, req, limit);
    match args.cmd {
        Cmd::Status => {
            let v = ask(args.socket.clone(), Request::Status).await?;
            print(args.json, &v, |v| {
                println!("box {}", s(&v["box_id"]));
                println!(
                    "{:<10} {:<12} {:<8} {:>8} {:>7} {:>12} {:>12} {:>9} {:>8}",
                    "SNAPT",
                    "STATE",
                    "UPLINK",
                    "RTT ms",
                    "STREAMS",
                    "SENT",
                    "RECEIVED",
                    "REPLAYED",
                    "SWITCHES"
                );
                for site in v["sites"].as_array().into_iter().flatten() {
                    println!(
                        "{:<10} {:<12} {:<8} {:>8} {:>7} {:>12} {:>12} {:>9} {:>8}",
                        s(&site["snapt"]),
                        s(&site["state"]),
                        s(&site["uplink"]),
                        s(&site["rtt_ms"]),
                        s(&site["streams"]),
                        s(&site["bytes_sent"]),
                        s(&site["bytes_received"]),
                        s(&site["bytes_replayed"]),
                        s(&site["switches"])
                    );
                }
                print_uplinks(v);
                pan::print_clients(&v["pan_clients"]);
                if !v["bluetooth"].is_null() {
                    pan::print_bluetooth(&v["bluetooth"]);
                }
                pan::print_access_point(&v["wifi_ap"]);
                let hs = v["handovers"].as_array().cloned().unwrap_or_default();
                if !hs.is_empty() {
                    println!("last handovers:");
                    for h in hs.iter().rev().take(10) {
                        println!(
                            "  site {} {:<8} -> {:<8} {:>8.1} ms  {}",
                            s(&h["site"]),
                            s(&h["kind"]),
                            s(&h["to_uplink"]),
                            h["stall_ms"].as_f64().unwrap_or(0.0),
                            s(&h["reason"])
                        );
                    }
                }
            });
        }
        Cmd::Handovers => {
            let snap = snapshot(args.socket.clone(), limit).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&snap.handovers)?);
            } else {
                print!(
                    "{}",
                    views::handovers(&snap.handovers, snap.handovers_total)
                );
            }
        }
        Cmd::Watch { interval, count } => {
            let every = std::time::Duration::from_secs_f64(interval);
            let mut shown = 0u64;
            loop {
                let screen = match snapshot(args.socket.clone(), limit).await {
                    Ok(snap) => views::watch_screen(&snap),
                    Err(e) => format!("{e:#}\n(retrying)\n"),
                };
                // Clear the terminal and draw from the top.
                print!("\x1b[2J\x1b[H{screen}");
                shown += 1;
                if count.is_some_and(|c| shown >= c) {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
        Cmd::Switch { uplink } => {
            let v = ask(args.socket.clone(), Request::Switch { uplink }).await?;
            print(args.json, &v, |v| {
                println!("switched to {} in {} ms", s(&v["uplink"]), s(&v["ms"]))
            });
        }
        Cmd::Mode { mode } => {
            let v = ask(args.socket.clone(), Request::Mode { mode }).await?;
            print(args.json, &v, |v| println!("mode: {}", s(&v["mode"])));
        }
        Cmd::Approve => {
            let v = ask(args.socket.clone(), Request::Approve).await?;
            print(args.json, &v, |v| {
                println!("switched to {} in {} ms", s(&v["uplink"]), s(&v["ms"]))
            });
        }
        Cmd::Decline => {
            let v = ask(args.socket.clone(), Request::Decline).await?;
            print(args.json, &v, |_| println!("suggestion declined"));
        }
        Cmd::Disconnect => {
            let v = ask(args.socket.clone(), Request::Disconnect).await?;
            print(args.json, &v, |v| {
                println!("disconnected {} session(s)", s(&v["disconnected"]))
            });
        }
        Cmd::Pan { cmd } => {
            let v = ask(args.socket.clone(), cmd.request()).await?;
            print(args.json, &v, |v| cmd.print(v));
        }
        Cmd::Snapt { snapt_socket, cmd } => match cmd {
            SnaptCmd::Status => {
                let v = ask(snapt_socket.clone(), Request::Status).await?;
                print(args.json, &v, |v| {
                    println!(
                        "snaptd on {} (up {} s, {} tunnels)",
                        s(&v["listen"]),
                        s(&v["uptime_s"]),
                        s(&v["tunnels"])
                    );
                    println!(
                        "handshakes: {} running, {} waiting, {} shed, {} timed out; new sessions refused busy: {}",
                        s(&v["handshakes_running"]),
                        s(&v["handshakes_waiting"]),
                        s(&v["handshakes_shed"]),
                        s(&v["handshakes_timed_out"]),
                        s(&v["sessions_refused_busy"])
                    );
                    println!(
                        "{:<16} {:<12} {:>7} {:>12} {:>12} {:>8}",
                        "BOX", "STATE", "STREAMS", "SENT", "RECEIVED", "SWITCHES"
                    );
                    for b in v["boxes"].as_array().into_iter().flatten() {
                        println!(
                            "{:<16} {:<12} {:>7} {:>12} {:>12} {:>8}",
                            s(&b["box_id"]),
                            s(&b["state"]),
                            s(&b["streams"]),
                            s(&b["bytes_sent"]),
                            s(&b["bytes_received"]),
                            s(&b["switches"])
                        );
                    }
                });
            }
            SnaptCmd::Drain { deadline_s } => {
                let v = ask(snapt_socket.clone(), Request::Drain { deadline_s }).await?;
                print(args.json, &v, |v| {
                    println!(
                        "draining: no new sessions; {} sessions left, all ended within {} s",
                        s(&v["sessions_left"]),
                        s(&v["deadline_s"])
                    )
                });
            }
            SnaptCmd::Upgrade => {
                let v = ask(snapt_socket.clone(), Request::Upgrade).await?;
                print(args.json, &v, |v| {
                    println!(
                        "upgraded: snaptd {} took over {} sessions, {} connections and {} datagram flows; boxes stalled for the handover ({} ms) and their resumption",
                        s(&v["successor_pid"]),
                        s(&v["sessions"]),
                        s(&v["connections"]),
                        s(&v["flows"]),
                        s(&v["handover_ms"])
                    )
                });
            }
            SnaptCmd::Kick { box_id } => {
                let v = ask(snapt_socket.clone(), Request::Kick { box_id }).await?;
                print(args.json, &v, |v| println!("kicked {}", s(&v["kicked"])));
            }
        },
        Cmd::Pki { dir, cmd } => pki::run(&Pki::new(&dir), cmd, args.json)?,
    }
    Ok(())
}
