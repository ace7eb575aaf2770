//! Runs one scenario in a fresh world: builds the namespaces and radios,
//! starts the application servers and the relay daemons, runs the phone's
//! applications while the timeline plays (with a live view if asked), checks
//! that a new connection works afterwards, and reports what the applications
//! saw. Baseline modes hand over to [`crate::baseline`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::apps::{self, PhoneApps, StreamFigures, UdpFigures};
use crate::baseline::baseline;
use crate::daemons::Daemons;
use crate::live_view::LiveView;
use crate::modem_emu::ModemEmu;
use crate::procs::{self, Procs, status};
use crate::radio::{LinkParams, Radio};
pub use crate::report::{Mode, Report};
use crate::scenario::{Action, Scenario, Uplink};
use crate::timeline::{apply, set_link};
use crate::topology::Topology;
use crate::wifi_world::{HotspotChange, WifiWorld};

/// Runs `sc` with the product in a fresh world under `dir`; `live` prints
/// the live view.
pub fn run(sc: &Scenario, dir: &Path, live: bool, stop: &AtomicBool) -> anyhow::Result<Report> {
    run_mode(sc, dir, Mode::Cbox, false, live, stop)
}

/// Runs `sc` in a fresh world under `dir`, carried by `mode`.
pub fn run_mode(
    sc: &Scenario,
    dir: &Path,
    mode: Mode,
    zero_delay: bool,
    live: bool,
    stop: &AtomicBool,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(dir)?;
    let mut world = Topology::build(sc.wired_wan)?;
    if sc.pan_dhcp {
        world.add_laptop()?;
    }
    if sc.second_box {
        world.add_second_box()?;
    }
    let world = world;
    let (mut wp, mut lp) = (LinkParams::wifi(), LinkParams::lte());
    if zero_delay {
        for p in [&mut wp, &mut lp] {
            p.delay = Duration::ZERO;
            p.jitter = Duration::ZERO;
            p.rate_bps = 0;
        }
    }
    let wifi = Radio::start(&world.ns("radio-wifi"), "rad-a", "rad-b", wp)?;
    let lte = Radio::start(&world.ns("radio-lte"), "rad-a", "rad-b", lp)?;
    // Dropped first (declared last): every process before the world goes.
    let mut procs = Procs::default();
    apps::start_servers(&world, dir, sc, &mut procs)?;
    if mode != Mode::Cbox {
        return baseline(
            sc, dir, mode, zero_delay, &world, &wifi, &lte, &mut procs, stop,
        );
    }
    let daemons = Daemons::configure(dir, sc)?;
    // The LTE modem's data call brings wwan0 up; until then it is down.
    let box_ns = world.ns("box");
    set_link(&box_ns, Uplink::Lte, false)?;
    let modem = ModemEmu::start(
        &daemons.modem_port,
        Box::new(move |up| {
            let _ = set_link(&box_ns, Uplink::Lte, up);
        }),
    )?;
    let hotspots = WifiWorld::start(&daemons.wpa_ctrl, &world, &wifi, wp)?;
    let mqtt_events = crate::fleet::start(&world, dir, &mut procs)?;
    daemons.start_snaptd(&world, &mut procs)?;
    let startup_switches =
        daemons.start_cnaptd(&world, &mut procs, || stop.load(Ordering::SeqCst))?;
    let box_sock = &daemons.box_sock;
    let mut notes = Vec::new();
    let mut failed_steps = 0u32;
    let dns_server = if sc.pan_dhcp {
        let (n, dns) = crate::pan::join(&world, dir, &mut procs, box_sock)?;
        notes.extend(n);
        Some(dns)
    } else {
        None
    };
    let second_box = if sc.second_box {
        Some(crate::second_box::SecondBox::start(
            &world, dir, sc, &mut procs,
        )?)
    } else {
        None
    };
    // Relays that lost their state during the run (killed or restarted).
    let mut cut_relays: Vec<String> = Vec::new();
    let box_crowd = match sc.box_crowd {
        Some(n) => Some(crate::box_crowd::BoxCrowd::start(
            &world, dir, sc, n, &mut procs,
        )?),
        None => None,
    };
    let phone = PhoneApps::start(&world, dir, sc, &mut procs)?;
    let crowd = match &sc.crowd {
        Some(spec) => Some(crate::crowd::Crowd::start(
            &world, dir, sc, spec, &mut procs,
        )?),
        None => None,
    };

    let mut events = sc.events.clone();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let start = Instant::now();
    let start_unix_ms = unix_ms();
    let mut view = LiveView::new(live, sc.download_mib);
    // A restarted snaptd comes back at this time.
    let mut snaptd_back: Option<Instant> = None;
    // The box's relay killed (fleet scenarios): when, and which.
    let mut relay_killed: Option<(Instant, String)> = None;
    let limit = sc.duration_s + 120.0;
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let t = start.elapsed().as_secs_f64();
        while events.first().is_some_and(|e| t >= e.at) {
            let e = events.remove(0);
            view.event(t, &describe(&e.action));
            let r = match &e.action {
                Action::Modem {
                    registered,
                    rsrp_dbm,
                    reset,
                } => {
                    if let Some(r) = registered {
                        modem.set_registered(*r);
                    }
                    if let Some(d) = rsrp_dbm {
                        modem.set_rsrp(*d);
                    }
                    if *reset == Some(true) {
                        modem.reset();
                    }
                    Ok(())
                }
                Action::Hotspot {
                    hotspot,
                    signal_dbm,
                    gone,
                    delay_ms,
                    loss,
                    rate_mbit,
                } => hotspots.apply(
                    hotspot,
                    &HotspotChange {
                        signal_dbm: *signal_dbm,
                        gone: *gone,
                        delay_ms: *delay_ms,
                        loss: *loss,
                        rate_mbit: *rate_mbit,
                    },
                ),
                Action::SnaptRestart { down_s } => {
                    cut_relays.extend(daemons.relay_names());
                    procs.kill("snaptd");
                    snaptd_back = Some(Instant::now() + Duration::from_secs_f64(*down_s));
                    Ok(())
                }
                Action::RelaysRestart { down_s } => {
                    cut_relays.extend(daemons.relay_names());
                    for name in daemons.relay_procs() {
                        procs.kill(name);
                    }
                    snaptd_back = Some(Instant::now() + Duration::from_secs_f64(*down_s));
                    Ok(())
                }
                Action::SnaptUpgrade => daemons.upgrade_snaptd(&mut procs).map(|n| notes.push(n)),
                Action::RelayKill => daemons.box_relay().map(|(relay, proc_name)| {
                    cut_relays.push(relay.clone());
                    procs.kill(proc_name);
                    relay_killed = Some((Instant::now(), relay));
                }),
                a => apply(&world, &wifi, &lte, box_sock, a),
            };
            if let Err(err) = r {
                // An approval with nothing suggested is a failed expectation.
                if matches!(e.action, Action::Approve) {
                    failed_steps += 1;
                }
                notes.push(format!("t={:.1}s: {err}", e.at));
            }
        }
        if snaptd_back.is_some_and(|at| Instant::now() >= at) {
            snaptd_back = None;
            daemons.start_relays(&world, &mut procs)?;
            view.event(t, "the relays are back");
        }
        if let Some((at, dead)) = &relay_killed
            && let Some(v) = procs::status(box_sock)
            && v["sites"][0]["state"] == "Established"
            && v["sites"][0]["relay"].as_str().is_some_and(|r| r != dead)
        {
            notes.push(format!(
                "relay {dead} killed: a new session on {} after {} ms",
                v["sites"][0]["relay"].as_str().unwrap_or_default(),
                at.elapsed().as_millis()
            ));
            relay_killed = None;
        }
        view.tick(t, box_sock, &phone.got);
        if phone.done(&mut procs)
            && events.is_empty()
            && snaptd_back.is_none()
            && relay_killed.is_none()
        {
            break;
        }
        if t > limit {
            notes.push(format!("applications still running after {limit:.0} s"));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    view.end();
    if let Some((_, dead)) = relay_killed {
        notes.push(format!(
            "relay {dead} killed: no new session on another relay"
        ));
        failed_steps += 1;
    }
    let reconnected = match apps::fresh_download(&world, dir, box_sock) {
        Ok(()) => true,
        Err(e) => {
            notes.push(format!("{e:#}"));
            false
        }
    };
    if let Some(dns) = &dns_server {
        match crate::pan::resolve(&world, dns) {
            Ok(a) => notes.push(format!(
                "after the timeline {} still resolves to {a}",
                crate::pan::NAME
            )),
            Err(e) => {
                notes.push(format!("{e:#}"));
                failed_steps += 1;
            }
        }
    }
    let refused = !sc.transparent || checked(apps::transparent_refused(&world), &mut notes);
    let guarded = checked(crate::stranger::probe(&world), &mut notes);
    let same_history = checked(
        crate::fleet::same_history(&world, dir, box_sock, &mqtt_events),
        &mut notes,
    );
    let st = status(box_sock).unwrap_or_default();
    for check in [check_records, check_hold_down] {
        if let Err(e) = check(sc, &st, start_unix_ms) {
            notes.push(e);
            failed_steps += 1;
        }
    }
    let site = &st["sites"][0];
    let (cnaptd_cpu_s, cnaptd_peak_rss_mib) = procs::figures(procs.pid("cnaptd"));
    let (snaptd_cpu_s, snaptd_peak_rss_mib) = procs::figures(procs.pid("snaptd"));
    if let Some(b) = second_box {
        let (n, problems) = b.finish(&mut procs, &cut_relays);
        notes.extend(n);
        failed_steps += problems.len() as u32;
        notes.extend(problems);
    }
    if let Some(c) = box_crowd {
        let (n, problems) = c.finish(&mut procs);
        notes.extend(n);
        failed_steps += problems.len() as u32;
        notes.extend(problems);
    }
    if let (Some(c), Some(spec)) = (&crowd, &sc.crowd) {
        let (n, problems) = c.check(spec, &st, (cnaptd_peak_rss_mib, snaptd_peak_rss_mib));
        notes.extend(n);
        failed_steps += problems.len() as u32;
        notes.extend(problems);
    }
    let curl_ok = procs.exited("curl").is_some_and(|c| c.success());
    let inter = StreamFigures::read(&phone.interactive);
    let ssh = StreamFigures::read(&phone.ssh);
    let udp = UdpFigures::read(&phone.udp);
    let (download_bytes, download_intact, prefix_ok) = apps::download(&phone.got, sc.download_mib);
    let udp_push = phone.pushed.as_deref().map(UdpFigures::read);
    let udp_ok = udp.as_ref().is_some_and(UdpFigures::ok)
        && udp_push
            .as_ref()
            .is_none_or(|p| p.as_ref().is_some_and(UdpFigures::ok));
    let udp_push = udp_push.flatten();
    let live = match (sc.live, &phone.live) {
        (Some(mode), Some(out)) => {
            let l = crate::live::LiveFigures::read(
                out,
                &dir.join("live-sender.json"),
                mode,
                sc.duration_s,
            );
            match l.as_ref().map(|l| l.check(sc)) {
                Some(Ok(note)) => notes.push(note),
                Some(Err(problem)) => {
                    notes.push(problem);
                    failed_steps += 1;
                }
                None => {
                    notes.push("live: the phone's side wrote nothing".into());
                    failed_steps += 1;
                }
            }
            l
        }
        _ => None,
    };
    let app_errors = [
        !curl_ok,
        inter.broken.is_some(),
        ssh.broken.is_some(),
        !udp_ok,
    ]
    .iter()
    .filter(|e| **e)
    .count() as u64;
    let handovers = site["switches"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(startup_switches);
    let roams = u64::from(hotspots.roams());
    let in_range = handovers as usize >= sc.min_handovers
        && sc.max_handovers.is_none_or(|m| handovers as usize <= m)
        && roams as usize >= sc.min_roams;
    // Never acceptable: altered, duplicated or reordered bytes anywhere.
    let intact = inter.corrupted == 0 && ssh.corrupted == 0 && prefix_ok && udp_ok;
    let survived = app_errors == 0 && download_intact && inter.damaged() == 0 && ssh.damaged() == 0;
    if !sc.streams_survive && !survived {
        notes.push("open streams were reset, as this scenario expects".into());
    }
    let report = Report {
        scenario: sc.name.clone(),
        mode,
        zero_delay,
        broken: inter.broken.clone(),
        handovers,
        roams,
        max_stall_ms: inter.max_stall_ms,
        rtt_p50_ms: inter.rtt_p50_ms,
        rtt_p99_ms: inter.rtt_p99_ms,
        download_mbit: apps::download_mbit(dir),
        records_sent: inter.sent,
        records_echoed: inter.echoed,
        records_damaged: inter.damaged(),
        ssh: Some(ssh),
        udp,
        udp_push,
        live,
        download_bytes,
        download_intact,
        download_corrupted: !prefix_ok,
        reconnected: Some(reconnected),
        app_errors,
        bytes_replayed: site["bytes_replayed"].as_u64().unwrap_or(0),
        cnaptd_cpu_s,
        snaptd_cpu_s,
        cnaptd_peak_rss_mib,
        snaptd_peak_rss_mib,
        passed: intact
            && reconnected
            && same_history
            && refused
            && guarded
            && in_range
            && failed_steps == 0
            && (survived || !sc.streams_survive),
        notes,
    };
    Ok(report)
}

fn describe(a: &Action) -> String {
    match a {
        Action::Switch { uplink } => format!("user forces a switch to {}", uplink.name()),
        Action::Mode { mode } => format!("user sets {mode} mode"),
        Action::Approve => "user approves the suggested switch".into(),
        Action::SnaptRestart { down_s } => format!("snaptd killed, back in {down_s} s"),
        Action::RelayKill => "the box's relay is killed".into(),
        Action::SnaptUpgrade => "snaptd upgrades: a new process takes over".into(),
        Action::RelaysRestart { down_s } => format!("every relay killed, back in {down_s} s"),
        Action::Modem {
            registered,
            rsrp_dbm,
            reset,
        } => match (registered, rsrp_dbm, reset) {
            (_, _, Some(true)) => "LTE modem resets (its port disappears)".into(),
            (Some(false), ..) => "LTE modem loses its registration".into(),
            (Some(true), ..) => "LTE modem registers again".into(),
            (_, Some(d), _) => format!("LTE signal {d} dBm"),
            _ => "LTE modem: nothing".into(),
        },
        Action::Hotspot {
            hotspot,
            signal_dbm,
            gone,
            ..
        } => match (gone, signal_dbm) {
            (Some(true), _) => format!("hotspot {hotspot} out of range"),
            (_, Some(s)) => format!("hotspot {hotspot}: {s} dBm"),
            _ => format!("hotspot {hotspot}: conditions change"),
        },
        Action::LinkDown { uplink } => format!("{} link down ({})", uplink.name(), uplink.dev()),
        Action::LinkUp { uplink } => format!("{} link up", uplink.name()),
        Action::AddressLoss { uplink } => format!("{} address lost", uplink.name()),
        Action::SetLink {
            uplink,
            down: Some(true),
            ..
        } => format!("{} silently drops everything", uplink.name()),
        Action::SetLink {
            uplink,
            delay_ms,
            loss,
            rate_mbit,
            ..
        } => {
            format!(
                "{} conditions: delay {delay_ms:?} ms, loss {loss:?}, rate {rate_mbit:?} Mbit/s",
                uplink.name()
            )
        }
    }
}

/// Now, milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The scenario's expected handover records, in order, among those the box
/// wrote since `t0` (Unix ms): `Err` says which is missing and what was
/// there.
fn check_records(sc: &Scenario, status: &serde_json::Value, t0: u64) -> Result<(), String> {
    let records: Vec<&serde_json::Value> = status["handovers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["at_unix_ms"].as_u64().is_some_and(|t| t >= t0))
                .collect()
        })
        .unwrap_or_default();
    let at = |r: &serde_json::Value| (r["at_unix_ms"].as_u64().unwrap_or(0) - t0) as f64 / 1e3;
    let mut next = records.iter();
    for e in &sc.expect {
        let found = next.by_ref().any(|r| {
            e.kind.split('|').any(|k| r["kind"] == k)
                && r["to_uplink"] == e.to.as_str()
                && e.reason
                    .as_deref()
                    .is_none_or(|w| r["reason"].as_str().is_some_and(|x| x.contains(w)))
                && e.after_s.is_none_or(|s| at(r) >= s)
                && e.before_s.is_none_or(|s| at(r) <= s)
        });
        if !found {
            let seen: Vec<String> = records
                .iter()
                .map(|r| {
                    format!(
                        "{:.1}s {} → {} ({})",
                        at(r),
                        r["kind"],
                        r["to_uplink"],
                        r["reason"]
                    )
                })
                .collect();
            return Err(format!("expected record {e:?} not found among: {seen:?}"));
        }
    }
    Ok(())
}

/// No switch of the box's own back to an uplink within its hold-down after
/// it left that uplink on a loss or a degradation (a sudden or prompt
/// record from it). The user's forced switches may do what they like.
fn check_hold_down(sc: &Scenario, status: &serde_json::Value, t0: u64) -> Result<(), String> {
    let hold_down_ms = if sc.shipped_defaults { 30_000 } else { 6_000 };
    let records: Vec<&serde_json::Value> = status["handovers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["at_unix_ms"].as_u64().is_some_and(|t| t >= t0))
                .collect()
        })
        .unwrap_or_default();
    for (i, r) in records.iter().enumerate() {
        let forced = r["reason"]
            .as_str()
            .is_some_and(|x| x.contains("forced by the user") || x.contains("approved"));
        if r["kind"] != "planned" || forced {
            continue;
        }
        // Records carry when a switch ended and how long it took from its
        // start (or from the moment the loss was noticed). The hold-down
        // starts when the box judged the uplink lost or bad — at the
        // earliest when the leaving switch started, at the latest when it
        // ended — and the switch back starts once it is over: compared
        // start to start, a return is certainly too early, never wrongly
        // accused (ending times differ by the switches' own durations).
        let started = |x: &serde_json::Value| {
            let end = x["at_unix_ms"].as_u64().unwrap_or(0);
            end.saturating_sub(x["stall_ms"].as_f64().unwrap_or(0.0).max(0.0) as u64)
        };
        let at = started(r);
        // A failed record did not leave the uplink (the box stayed, or the
        // session itself ended — a relay restart — and a new one began
        // wherever the task ranked best): no hold-down follows from it.
        let left = records[..i].iter().rev().find(|p| {
            p["from_uplink"] == r["to_uplink"]
                && (p["kind"] == "sudden" || p["kind"] == "prompt")
                && p["outcome"]["result"] != "failed"
        });
        if let Some(p) = left {
            let gone = started(p);
            if at.saturating_sub(gone) < hold_down_ms {
                return Err(format!(
                    "planned switch back to {} started {} ms after the switch that left it on a loss or degradation started (hold-down {hold_down_ms} ms)",
                    r["to_uplink"],
                    at.saturating_sub(gone)
                ));
            }
        }
    }
    Ok(())
}

/// A check after the timeline: its note (what it saw, or why it failed)
/// goes to `notes`; whether it passed.
fn checked(result: anyhow::Result<String>, notes: &mut Vec<String>) -> bool {
    match result {
        Ok(note) => {
            notes.push(note);
            true
        }
        Err(e) => {
            notes.push(format!("{e:#}"));
            false
        }
    }
}
