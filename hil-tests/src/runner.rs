//! Runs one scenario in a fresh world: builds the namespaces and radios,
//! starts the application servers and the relay daemons, runs the phone's
//! applications while the timeline plays (with a live view if asked), checks
//! that a new connection works afterwards, and reports what the applications
//! saw. Baseline modes hand over to [`crate::baseline`].

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::apps::{self, PhoneApps, StreamFigures, UdpFigures};
use crate::baseline::baseline;
use crate::daemons::Daemons;
use crate::live_view::LiveView;
use crate::modem_emu::ModemEmu;
use crate::procs::{self, Procs, bin, status};
use crate::radio::{LinkParams, Radio};
use crate::scenario::{Action, Scenario, Uplink};
use crate::topology::Topology;
use crate::wifi_world::{HotspotChange, WifiWorld};

/// What carries the phone's traffic in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// cnaptd + snaptd (the product).
    Cbox,
    /// Plain TCP from the phone through the box's NAT, no relay.
    PlainTcp,
    /// Linux MPTCP between box and internet host, a subflow per uplink,
    /// the kernel's path manager.
    MptcpActive,
    /// The same with the LTE endpoint as backup.
    MptcpBackup,
    /// MPTCP whose endpoint is removed on the link event (as mptcpd or
    /// NetworkManager do): the strongest baseline.
    MptcpEvent,
}

impl Mode {
    /// Every mode, the product first.
    pub const ALL: [Mode; 5] = [
        Mode::Cbox,
        Mode::PlainTcp,
        Mode::MptcpActive,
        Mode::MptcpBackup,
        Mode::MptcpEvent,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cbox => "cbox",
            Mode::PlainTcp => "plain-tcp",
            Mode::MptcpActive => "mptcp",
            Mode::MptcpBackup => "mptcp-backup",
            Mode::MptcpEvent => "mptcp-event",
        }
    }
}

/// What one scenario run showed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What carried the traffic.
    pub mode: Mode,
    /// Links without delay or rate limit.
    pub zero_delay: bool,
    /// The interactive stream's connection broke (error and time), if it did.
    pub broken: Option<String>,
    /// Handovers completed by the box.
    pub handovers: u64,
    /// Wi-Fi roams between access points of one network (cbox runs).
    pub roams: u64,
    /// Largest gap between two echoed records of the interactive stream (ms).
    pub max_stall_ms: f64,
    /// Interactive records sent.
    pub records_sent: u64,
    /// Records that came back intact.
    pub records_echoed: u64,
    /// Records lost, duplicated, reordered or corrupted.
    pub records_damaged: u64,
    /// The SSH session typing through the box (cbox runs only).
    pub ssh: Option<StreamFigures>,
    /// The UDP stream (cbox runs only).
    pub udp: Option<UdpFigures>,
    /// Bytes of the download that arrived.
    pub download_bytes: u64,
    /// Download complete and intact (SHA-256).
    pub download_intact: bool,
    /// What arrived of the download differs from the file (not merely cut).
    pub download_corrupted: bool,
    /// After the timeline, the box was connected and a new download through
    /// it arrived intact (cbox runs only).
    pub reconnected: Option<bool>,
    /// Applications that failed (curl, the interactive stream, the SSH
    /// session, the UDP stream).
    pub app_errors: u64,
    /// Payload bytes the box resent after resynchronisations.
    pub bytes_replayed: u64,
    /// CPU seconds used by cnaptd and snaptd during the run.
    pub cnaptd_cpu_s: f64,
    /// See `cnaptd_cpu_s` (the last snaptd if it restarted).
    pub snaptd_cpu_s: f64,
    /// Peak resident memory of cnaptd and snaptd (MiB).
    pub cnaptd_peak_rss_mib: f64,
    /// See `cnaptd_peak_rss_mib`.
    pub snaptd_peak_rss_mib: f64,
    /// Timeline steps that failed or were refused, and expected breakage.
    pub notes: Vec<String>,
    /// Everything held: nothing corrupted, nothing lost where the scenario
    /// expects streams to survive, no app error, handovers in range, new
    /// connections work afterwards.
    pub passed: bool,
}

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
    let daemons = Daemons::configure(dir, sc.wired_wan, sc.transparent, sc.pan_dhcp)?;
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
    let phone = PhoneApps::start(&world, dir, sc, &mut procs)?;

    let mut events = sc.events.clone();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let start = Instant::now();
    let mut view = LiveView::new(live, sc.download_mib);
    // A restarted snaptd comes back at this time.
    let mut snaptd_back: Option<Instant> = None;
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
                    procs.kill("snaptd");
                    snaptd_back = Some(Instant::now() + Duration::from_secs_f64(*down_s));
                    Ok(())
                }
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
            daemons.start_snaptd(&world, &mut procs)?;
            view.event(t, "snaptd is back");
        }
        view.tick(t, box_sock, &phone.got);
        if phone.done(&mut procs) && events.is_empty() && snaptd_back.is_none() {
            break;
        }
        if t > limit {
            notes.push(format!("applications still running after {limit:.0} s"));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    view.end();
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
    let refused = if sc.transparent {
        match apps::transparent_refused(&world) {
            Ok(note) => {
                notes.push(note);
                true
            }
            Err(e) => {
                notes.push(format!("{e:#}"));
                false
            }
        }
    } else {
        true
    };
    let same_history = match crate::fleet::same_history(&world, dir, box_sock, &mqtt_events) {
        Ok(note) => {
            notes.push(note);
            true
        }
        Err(e) => {
            notes.push(format!("{e:#}"));
            false
        }
    };
    let st = status(box_sock).unwrap_or_default();
    let site = &st["sites"][0];
    let (cnaptd_cpu_s, cnaptd_peak_rss_mib) = procs::figures(procs.pid("cnaptd"));
    let (snaptd_cpu_s, snaptd_peak_rss_mib) = procs::figures(procs.pid("snaptd"));
    let curl_ok = procs.exited("curl").is_some_and(|c| c.success());
    let inter = StreamFigures::read(&phone.interactive);
    let ssh = StreamFigures::read(&phone.ssh);
    let udp = UdpFigures::read(&phone.udp);
    let (download_bytes, download_intact, prefix_ok) = apps::download(&phone.got, sc.download_mib);
    let udp_ok = udp.as_ref().is_some_and(UdpFigures::ok);
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
        records_sent: inter.sent,
        records_echoed: inter.echoed,
        records_damaged: inter.damaged(),
        ssh: Some(ssh),
        udp,
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
