//! Runs one scenario in a fresh world: builds the namespaces and radios,
//! issues the PKI, starts the web and echo servers, snaptd and cnaptd, runs
//! the phone's applications (curl download + interactive stream) while the
//! timeline plays, and reports what the applications saw.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::radio::{LinkParams, Radio};
use crate::scenario::{Action, Scenario, Uplink};
use crate::topology::{Topology, addr};

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
    /// Largest gap between two echoed records of the interactive stream (ms).
    pub max_stall_ms: f64,
    /// Interactive records sent / echoed intact / damaged (lost, duplicated,
    /// reordered or corrupted).
    pub records_sent: u64,
    /// Records that came back intact.
    pub records_echoed: u64,
    /// Records lost, duplicated, reordered or corrupted.
    pub records_damaged: u64,
    /// Bytes of the download that arrived, and whether their SHA-256 matched.
    pub download_bytes: u64,
    /// Download complete and intact.
    pub download_intact: bool,
    /// Applications that failed (curl exit code, the stream's client).
    pub app_errors: u64,
    /// Payload bytes the box resent after resynchronisations.
    pub bytes_replayed: u64,
    /// CPU seconds used by cnaptd and snaptd during the run.
    pub cnaptd_cpu_s: f64,
    /// See `cnaptd_cpu_s`.
    pub snaptd_cpu_s: f64,
    /// Peak resident memory of cnaptd and snaptd (MiB).
    pub cnaptd_peak_rss_mib: f64,
    /// See `cnaptd_peak_rss_mib`.
    pub snaptd_peak_rss_mib: f64,
    /// Timeline steps the box refused (e.g. a switch to a dead uplink).
    pub notes: Vec<String>,
    /// Everything held: nothing lost or damaged, no app error, handovers in range.
    pub passed: bool,
}

/// Processes of a run, killed by pid when dropped.
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn pid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the workspace binaries are (next to this program).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("exe dir")?.join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build the workspace first (cargo build --workspace)",
            p.display()
        );
    }
    Ok(p)
}

fn status(sock: &Path) -> Option<serde_json::Value> {
    let out = Command::new(bin("cboxctl").ok()?)
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .arg("status")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn proc_figures(pid: Option<u32>) -> (f64, f64) {
    let Some(pid) = pid else { return (0.0, 0.0) };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
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
    let world = Topology::build()?;
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
    let pki = dir.join("pki");
    for args in [
        vec!["init"],
        vec!["server", "snapt", "--san", addr::INTERNET],
        vec!["box", "box-sim"],
    ] {
        let out = Command::new(bin("cboxctl")?)
            .arg("pki")
            .arg("--dir")
            .arg(&pki)
            .args(&args)
            .output()?;
        if !out.status.success() {
            bail!(
                "cboxctl pki {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let web = dir.join("www");
    std::fs::create_dir_all(&web)?;
    let data = pattern(sc.download_mib << 20);
    std::fs::write(web.join("file.bin"), &data)?;
    let want = Sha256::digest(&data);
    drop(data);

    let snapt_sock = dir.join("snaptd.sock");
    let box_sock = dir.join("cnaptd.sock");
    let session =
        "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1000\nswitch_timeout_ms = 30000\n";
    let (i, p) = (addr::INTERNET, pki.display());
    std::fs::write(
        dir.join("snapt.toml"),
        format!(
            "listen = \"{i}:4433\"\ncontrol_socket = \"{}\"\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/snapt.pem\"\nkey = \"{p}/servers/snapt.key\"\ncrl = \"{p}/crl.pem\"\n\
             [[service]]\nname = \"web\"\ntarget = \"{i}:8000\"\n[[service]]\nname = \"echo\"\ntarget = \"{i}:7000\"\n{session}",
            snapt_sock.display()
        ),
    )?;
    std::fs::write(
        dir.join("cnapt.toml"),
        format!(
            "box_id = \"box-sim\"\ncontrol_socket = \"{}\"\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/boxes/box-sim.pem\"\nkey = \"{p}/boxes/box-sim.key\"\n\
             [[snapt]]\nname = \"internet\"\naddress = \"{i}:4433\"\nserver_name = \"{i}\"\n\
             [[uplink]]\nname = \"wifi\"\ninterface = \"wlan0\"\nsource = \"{w}\"\n[[uplink]]\nname = \"lte\"\ninterface = \"wwan0\"\nsource = \"{l}\"\n\
             [[service]]\nname = \"web\"\nlisten = \"{c}:8080\"\n[[service]]\nname = \"echo\"\nlisten = \"{c}:7001\"\n{session}",
            box_sock.display(),
            w = addr::BOX_WIFI,
            l = addr::BOX_LTE,
            c = addr::CBOX_IP
        ),
    )?;
    let log = |name: &str| -> anyhow::Result<Stdio> {
        Ok(Stdio::from(std::fs::File::create(
            dir.join(format!("{name}.log")),
        )?))
    };
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps");
    let mut procs = Procs(Vec::new());
    let web_srv = world
        .exec("internet", "python3")
        .args(["-m", "http.server", "8000", "--bind", i, "--directory"])
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(log("web")?)
        .spawn()?;
    procs.0.push(("web".into(), web_srv));
    let echo = world
        .exec("internet", "python3")
        .arg(apps.join("echo_server.py"))
        .args([i, "7000"])
        .stderr(log("echo")?)
        .spawn()?;
    procs.0.push(("echo".into(), echo));
    for port in [8000, 7000] {
        world.wait_listening("internet", port, Duration::from_secs(10))?;
    }
    if mode != Mode::Cbox {
        let r = baseline(
            sc, dir, mode, zero_delay, &world, &wifi, &lte, &apps, procs, stop,
        );
        drop(lte);
        drop(wifi);
        drop(world);
        return r;
    }
    let snaptd = world
        .exec("internet", bin("snaptd")?.to_str().context("path")?)
        .arg("-c")
        .arg(dir.join("snapt.toml"))
        .stderr(log("snaptd")?)
        .spawn()?;
    procs.0.push(("snaptd".into(), snaptd));
    std::thread::sleep(Duration::from_millis(300));
    let cnaptd = world
        .exec("box", bin("cnaptd")?.to_str().context("path")?)
        .arg("-c")
        .arg(dir.join("cnapt.toml"))
        .stderr(log("cnaptd")?)
        .spawn()?;
    procs.0.push(("cnaptd".into(), cnaptd));
    let until = Instant::now() + Duration::from_secs(20);
    while !status(&box_sock).is_some_and(|v| v["sites"][0]["state"] == "Established") {
        if Instant::now() > until || stop.load(Ordering::SeqCst) {
            bail!("the box did not connect; logs in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let got = dir.join("got.bin");
    let url = format!("http://{}:8080/file.bin", addr::CBOX_IP);
    let rate = format!("{}K", (sc.download_rate_mb * 1000.0) as u64);
    let curl = world
        .exec("phone", "curl")
        .args(["-sS", "--limit-rate", &rate, "-o"])
        .arg(&got)
        .arg(&url)
        .stderr(log("curl")?)
        .spawn()?;
    procs.0.push(("curl".into(), curl));
    let summary = dir.join("interactive.json");
    let stream = world
        .exec("phone", "python3")
        .arg(apps.join("interactive.py"))
        .args([addr::CBOX_IP, "7001", &sc.duration_s.to_string()])
        .arg(&summary)
        .stderr(log("interactive")?)
        .spawn()?;
    procs.0.push(("interactive".into(), stream));

    let mut events = sc.events.clone();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut notes = Vec::new();
    let start = Instant::now();
    let tty = live && std::io::stdout().is_terminal();
    let mut last_line = Instant::now() - Duration::from_secs(1);
    let mut seen = 0usize;
    let mut curl_code = None;
    let limit = sc.duration_s + 120.0;
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let t = start.elapsed().as_secs_f64();
        while events.first().is_some_and(|e| t >= e.at) {
            let e = events.remove(0);
            if live {
                if tty {
                    print!("\r{:<110}\r", "");
                }
                println!("  t={t:5.1}s  >> {}", describe(&e.action));
            }
            if let Err(err) = apply(&world, &wifi, &lte, &box_sock, &e.action) {
                notes.push(format!("t={:.1}s: {err}", e.at));
            }
        }
        if live {
            let st = status(&box_sock).unwrap_or_default();
            let site = &st["sites"][0];
            let hs = st["handovers"].as_array().cloned().unwrap_or_default();
            for h in hs.iter().skip(seen) {
                if tty {
                    print!("\r{:<110}\r", "");
                }
                println!(
                    "  t={t:5.1}s  handover: {} to {} in {:.1} ms, {} bytes resent",
                    h["kind"].as_str().unwrap_or("?"),
                    h["to_uplink"].as_str().unwrap_or("?"),
                    h["duration_ms"].as_f64().unwrap_or(0.0),
                    h["bytes_replayed"]
                );
            }
            seen = hs.len();
            let size = std::fs::metadata(&got).map(|m| m.len()).unwrap_or(0);
            let line = format!(
                "  t={t:5.1}s  uplink {:<5} {:<12} rtt {:>6} ms  phone {:5.1}/{} MiB  handovers {}",
                site["uplink"].as_str().unwrap_or("-"),
                site["state"].as_str().unwrap_or("-"),
                site["rtt_ms"]
                    .as_f64()
                    .map_or("-".into(), |r| format!("{r:.1}")),
                size as f64 / (1 << 20) as f64,
                sc.download_mib,
                site["switches"]
            );
            if tty {
                print!("\r{line}   ");
                let _ = std::io::stdout().flush();
            } else if last_line.elapsed() >= Duration::from_secs(1) {
                println!("{line}");
                last_line = Instant::now();
            }
        }
        if let Some((_, c)) = procs.0.iter_mut().find(|(n, _)| n == "curl")
            && let Ok(Some(code)) = c.try_wait()
        {
            curl_code = Some(code);
        }
        if curl_code.is_some() && events.is_empty() && summary.exists() {
            break;
        }
        if t > limit {
            notes.push(format!("applications still running after {limit:.0} s"));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if tty {
        println!();
    }
    let st = status(&box_sock).unwrap_or_default();
    let site = &st["sites"][0];
    let (cnaptd_cpu_s, cnaptd_peak_rss_mib) = proc_figures(procs.pid("cnaptd"));
    let (snaptd_cpu_s, snaptd_peak_rss_mib) = proc_figures(procs.pid("snaptd"));
    let inter: serde_json::Value = std::fs::read(&summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let got_bytes = std::fs::read(&got).unwrap_or_default();
    let download_intact = Sha256::digest(&got_bytes) == want;
    let mut app_errors = 0;
    if !curl_code.is_some_and(|c| c.success()) {
        app_errors += 1;
    }
    if inter.is_null() {
        app_errors += 1;
    }
    let handovers = site["switches"].as_u64().unwrap_or(0);
    let records_sent = inter["sent"].as_u64().unwrap_or(0);
    let records_echoed = inter["echoed"].as_u64().unwrap_or(0);
    let records_damaged =
        inter["damaged"].as_u64().unwrap_or(0) + records_sent.saturating_sub(records_echoed);
    let in_range = handovers as usize >= sc.min_handovers
        && sc.max_handovers.is_none_or(|m| handovers as usize <= m);
    let report = Report {
        scenario: sc.name.clone(),
        mode,
        zero_delay,
        broken: inter["error"]
            .as_str()
            .map(|e| format!("{e} at {} s", inter["broken_at_s"])),
        handovers,
        max_stall_ms: inter["max_gap_ms"].as_f64().unwrap_or(0.0),
        records_sent,
        records_echoed,
        records_damaged,
        download_bytes: got_bytes.len() as u64,
        download_intact,
        app_errors,
        bytes_replayed: site["bytes_replayed"].as_u64().unwrap_or(0),
        cnaptd_cpu_s,
        snaptd_cpu_s,
        cnaptd_peak_rss_mib,
        snaptd_peak_rss_mib,
        passed: download_intact
            && records_damaged == 0
            && app_errors == 0
            && in_range
            && inter["error"].is_null(),
        notes,
    };
    drop(procs);
    drop(lte);
    drop(wifi);
    drop(world);
    Ok(report)
}

fn describe(a: &Action) -> String {
    match a {
        Action::Switch { uplink } => format!("planned switch to {}", uplink.name()),
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

fn apply(
    world: &Topology,
    wifi: &Radio,
    lte: &Radio,
    sock: &Path,
    a: &Action,
) -> anyhow::Result<()> {
    let ip = |args: &[&str]| world.ip("box", args);
    match a {
        Action::Switch { uplink } => {
            let out = Command::new(bin("cboxctl")?)
                .arg("--socket")
                .arg(sock)
                .args(["switch", uplink.name()])
                .output()?;
            if !out.status.success() {
                bail!(
                    "switch to {}: {}",
                    uplink.name(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Action::LinkDown { uplink } => ip(&["link", "set", uplink.dev(), "down"])?,
        Action::LinkUp { uplink } => {
            ip(&["link", "set", uplink.dev(), "up"])?;
            // The kernel removed the interface's routes when it went down.
            let (gw, metric) = match uplink {
                Uplink::Wifi => ("198.18.10.1", "100"),
                Uplink::Lte => ("198.18.20.1", "200"),
            };
            ip(&[
                "route",
                "replace",
                "default",
                "via",
                gw,
                "dev",
                uplink.dev(),
                "metric",
                metric,
            ])?;
        }
        Action::AddressLoss { uplink } => {
            let a = match uplink {
                Uplink::Wifi => "198.18.10.2/24",
                Uplink::Lte => "198.18.20.2/24",
            };
            ip(&["addr", "del", a, "dev", uplink.dev()])?;
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

/// The MPTCP endpoint id of the box's address on `uplink`.
fn endpoint_id(uplink: Uplink) -> &'static str {
    match uplink {
        Uplink::Wifi => "1",
        Uplink::Lte => "2",
    }
}

/// `ip mptcp endpoint add …` for the box's address on `uplink`, as a
/// subflow endpoint (a backup one if `backup`).
fn mptcp_endpoint(uplink: Uplink, backup: bool) -> Vec<&'static str> {
    let ip = match uplink {
        Uplink::Wifi => addr::BOX_WIFI,
        Uplink::Lte => addr::BOX_LTE,
    };
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
fn baseline(
    sc: &Scenario,
    dir: &Path,
    mode: Mode,
    zero_delay: bool,
    world: &Topology,
    wifi: &Radio,
    lte: &Radio,
    apps: &Path,
    mut procs: Procs,
    stop: &AtomicBool,
) -> anyhow::Result<Report> {
    let i = addr::INTERNET;
    let log = |name: &str| -> anyhow::Result<Stdio> {
        Ok(Stdio::from(std::fs::File::create(
            dir.join(format!("{name}.log")),
        )?))
    };
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
            .args([i, "7000", &secs])
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
            .args([i, "7100", "mptcp"])
            .stderr(log("mptcp-echo")?)
            .spawn()?;
        procs.0.push(("mptcp-echo".into(), srv));
        std::thread::sleep(Duration::from_millis(300));
        let mut c = world.exec("box", "python3");
        c.arg(apps.join("interactive.py"))
            .args([i, "7100", &secs])
            .arg(&summary)
            .arg("mptcp");
        c
    };
    let mut client = client;
    let stream = client.stderr(log("interactive")?).spawn()?;
    procs.0.push(("interactive".into(), stream));
    let mut events = sc.events.clone();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut notes = Vec::new();
    let start = Instant::now();
    let limit = sc.duration_s + 60.0;
    while !summary.exists() {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let t = start.elapsed().as_secs_f64();
        while events.first().is_some_and(|e| t >= e.at) {
            let e = events.remove(0);
            match &e.action {
                // Nothing to command: the baselines have no planned switch.
                Action::Switch { .. } => {}
                a => {
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
    let inter: serde_json::Value = std::fs::read(&summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let sent = inter["sent"].as_u64().unwrap_or(0);
    let echoed = inter["echoed"].as_u64().unwrap_or(0);
    let damaged = inter["damaged"].as_u64().unwrap_or(0) + sent.saturating_sub(echoed);
    let mut broken = inter["error"]
        .as_str()
        .map(|e| format!("{e} at {} s", inter["broken_at_s"]));
    if inter.is_null() || sent == 0 {
        // No measurement is not a success: say so and keep the logs.
        broken = Some(format!(
            "the stream did not run (logs in {})",
            dir.display()
        ));
    }
    drop(procs);
    Ok(Report {
        scenario: sc.name.clone(),
        mode,
        zero_delay,
        broken: broken.clone(),
        handovers: 0,
        max_stall_ms: inter["max_gap_ms"].as_f64().unwrap_or(0.0),
        records_sent: sent,
        records_echoed: echoed,
        records_damaged: damaged,
        download_bytes: 0,
        download_intact: true,
        app_errors: u64::from(inter.is_null() || broken.is_some()),
        bytes_replayed: 0,
        cnaptd_cpu_s: 0.0,
        snaptd_cpu_s: 0.0,
        cnaptd_peak_rss_mib: 0.0,
        snaptd_peak_rss_mib: 0.0,
        passed: damaged == 0 && broken.is_none() && !inter.is_null(),
        notes,
    })
}
