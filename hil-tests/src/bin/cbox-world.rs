//! cbox-world — the simulated box doing live handovers.
//!
//! ```text
//! sudo cbox-world demo                          # the live demo (scenarios/demo.toml)
//! sudo cbox-world run [--json FILE] SCENARIO…   # a suite: table + JSON report
//! sudo cbox-world compare [--json FILE] SCENARIO…  # cbox vs plain TCP vs MPTCP
//! sudo cbox-world clean                         # remove worlds left by crashed runs
//! ```
//!
//! Each scenario runs in a fresh world of network namespaces with the real
//! cnaptd, snaptd and cboxctl, emulated Wi-Fi and LTE links, and two phone
//! applications: curl downloading a file (SHA-256 checked) and an interactive
//! stream of 100-byte records every 20 ms (its largest gap is the stall).
#![allow(clippy::print_stdout)] // a command-line program prints

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use hil_tests::runner::{self, Report};
use hil_tests::scenario::Scenario;
use hil_tests::topology::clean_stale;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

const USAGE: &str = "usage: cbox-world demo | run [--json FILE] SCENARIO.toml… | compare [--json FILE] [--modes cbox,plain-tcp,…] SCENARIO.toml… | soak [--handovers N] [--seed S] | clean

  demo      the box doing live handovers, with a live view (the README's main job)
  run       scenarios of the test suite (hil-tests/scenarios/*.toml), pass/fail each
  compare   scenarios for cbox and the baselines (plain TCP, MPTCP …), figures as ratios;
            --modes runs only some of cbox, plain-tcp, mptcp, mptcp-backup, mptcp-event
  soak      hours of handovers compressed: --handovers N (default 1000), --seed S
  clean     removes namespaces and directories left by an interrupted run";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return if args.is_empty() {
            std::process::ExitCode::from(2)
        } else {
            std::process::ExitCode::SUCCESS
        };
    }
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cbox-world: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the simulated world needs root (network namespaces): run with sudo");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst)).context("signal handler")?;
    let stale = clean_stale()?;
    if !stale.is_empty() {
        println!(
            "removed {} namespace(s) left by an earlier run",
            stale.len()
        );
    }
    match args.first().map(String::as_str) {
        Some("clean") => Ok(()),
        Some("demo") => demo(&stop),
        Some("run") => suite(&args[1..], &stop),
        Some("compare") => compare(&args[1..], &stop),
        Some("soak") => soak(&args[1..], &stop),
        Some(other) => bail!("no command {other:?}\n{USAGE}"),
        None => bail!("{USAGE}"),
    }
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Removes a passed run's folder, unless CBOX_WORLD_KEEP is set (to read
/// the daemons' logs of a run that passed).
fn forget(dir: &Path) {
    if std::env::var_os("CBOX_WORLD_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        println!("   logs kept in {}", dir.display());
    }
}

fn workdir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cbox-world-{}-{name}", std::process::id()))
}

fn demo(stop: &AtomicBool) -> anyhow::Result<()> {
    let sc = Scenario::load(&scenarios_dir().join("demo.toml"))?;
    println!(
        "the world: phone — box (pan0; wlan0, wwan0) — radios — isp-wifi, isp-lte (carrier NAT) — internet (snaptd, servers)"
    );
    println!("links: Wi-Fi 5 ms ±1 ms, 50 Mbit/s; LTE 40 ms ±5 ms, 20 Mbit/s");
    println!("{}: {}\n", sc.name, sc.description);
    let dir = workdir("demo");
    let r = runner::run(&sc, &dir, true, stop);
    let r = match r {
        Ok(r) => r,
        Err(e) => bail!("{e:#} (logs in {})", dir.display()),
    };
    println!(
        "\ninteractive stream: {} records sent, {} echoed intact, {} damaged; largest gap {:.0} ms (records every 20 ms)",
        r.records_sent, r.records_echoed, r.records_damaged, r.max_stall_ms
    );
    if let Some(s) = &r.ssh {
        println!(
            "ssh session: {} records typed, {} echoed intact; largest gap {:.0} ms",
            s.sent, s.echoed, s.max_stall_ms
        );
    }
    if let Some(u) = &r.udp {
        println!(
            "udp stream: {} datagrams, {} echoed, {} duplicated, {} altered (datagrams are never replayed); largest gap {:.0} ms",
            u.sent, u.echoed, u.duplicated, u.corrupted, u.max_gap_ms
        );
    }
    if let Some(u) = &r.udp_push {
        println!(
            "udp pushed to the phone (client service): {} datagrams, {} echoed, {} duplicated, {} altered; largest gap {:.0} ms",
            u.sent, u.echoed, u.duplicated, u.corrupted, u.max_gap_ms
        );
    }
    println!(
        "download: {} bytes, {}; cnaptd {:.2} CPU-s / {:.1} MiB peak, snaptd {:.2} CPU-s / {:.1} MiB peak",
        r.download_bytes,
        if r.download_intact {
            "SHA-256 intact"
        } else {
            "DATA DAMAGED"
        },
        r.cnaptd_cpu_s,
        r.cnaptd_peak_rss_mib,
        r.snaptd_cpu_s,
        r.snaptd_peak_rss_mib
    );
    for n in &r.notes {
        println!("note: {n}");
    }
    println!(
        "verdict: {} handovers, {} Wi-Fi roams, max stall {:.0} ms, {}",
        r.handovers,
        r.roams,
        r.max_stall_ms,
        if r.passed {
            "0 bytes lost"
        } else {
            "FAILED: bytes lost or damaged, or an application failed"
        }
    );
    if !r.passed {
        bail!("the demo failed (logs in {})", dir.display());
    }
    forget(&dir);
    Ok(())
}

/// `[--json FILE] SCENARIO.toml…` of `run` and `compare`.
fn parse_args(args: &[String]) -> anyhow::Result<(Option<PathBuf>, Vec<PathBuf>)> {
    let mut json_out = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--json" {
            json_out = Some(PathBuf::from(it.next().context("--json needs a file")?));
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        bail!("no scenario given (see {})", scenarios_dir().display());
    }
    Ok((json_out, files))
}

fn suite(args: &[String], stop: &AtomicBool) -> anyhow::Result<()> {
    let (json_out, files) = parse_args(args)?;
    let mut reports: Vec<Report> = Vec::new();
    for f in &files {
        let sc = Scenario::load(f)?;
        println!("== {}: {}", sc.name, sc.description);
        let dir = workdir(&sc.name);
        match runner::run(&sc, &dir, false, stop) {
            Ok(r) => {
                println!(
                    "   {} handovers, {} roams, max stall {:.0} ms (ssh {}), {} records damaged, download {}, udp lost {}, {} app errors -> {}",
                    r.handovers,
                    r.roams,
                    r.max_stall_ms,
                    ssh_word(&r),
                    r.records_damaged,
                    download_word(&r),
                    udp_word(&r),
                    r.app_errors,
                    if r.passed { "ok" } else { "FAILED" }
                );
                for n in &r.notes {
                    println!("   note: {n}");
                }
                if r.passed {
                    forget(&dir);
                } else {
                    println!("   logs kept in {}", dir.display());
                }
                reports.push(r);
            }
            Err(e) => bail!("{}: {e:#} (logs in {})", sc.name, dir.display()),
        }
    }
    println!(
        "\n{:<18} {:>9} {:>5} {:>10} {:>9} {:>8} {:>9} {:>9} {:>10} {:>11} {:>11} {:>7}",
        "scenario",
        "handovers",
        "roams",
        "max stall",
        "ssh stall",
        "damaged",
        "download",
        "udp lost",
        "app errors",
        "cnaptd CPU",
        "cnaptd RSS",
        "result"
    );
    for r in &reports {
        println!(
            "{:<18} {:>9} {:>5} {:>8.0}ms {:>9} {:>8} {:>9} {:>9} {:>10} {:>9.2}s {:>8.1}MiB {:>7}",
            r.scenario,
            r.handovers,
            r.roams,
            r.max_stall_ms,
            ssh_word(r),
            r.records_damaged,
            download_word(r),
            udp_word(r),
            r.app_errors,
            r.cnaptd_cpu_s,
            r.cnaptd_peak_rss_mib,
            if r.passed { "ok" } else { "FAILED" }
        );
    }
    if let Some(p) = json_out {
        std::fs::write(&p, serde_json::to_string_pretty(&reports)?)?;
        println!("report: {}", p.display());
    }
    let failed = reports.iter().filter(|r| !r.passed).count();
    println!("\n{} passed, {} failed", reports.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

/// Every scenario with every mode, on realistic and on zero-delay links: the
/// interactive stream's stall and integrity, as ratios to cbox's.
fn compare(args: &[String], stop: &AtomicBool) -> anyhow::Result<()> {
    use hil_tests::runner::Mode;
    let mut modes = Mode::ALL.to_vec();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--modes" {
            let list = it
                .next()
                .context("--modes needs a list, e.g. cbox,plain-tcp")?;
            modes = list
                .split(',')
                .map(|n| {
                    Mode::from_name(n.trim()).with_context(|| {
                        format!("--modes: unknown mode {n:?} (cbox, plain-tcp, mptcp, mptcp-backup, mptcp-event)")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        } else {
            rest.push(a.clone());
        }
    }
    let (json_out, files) = parse_args(&rest)?;
    let mut all: Vec<Report> = Vec::new();
    println!(
        "{:<18} {:<6} {:<13} {:>10} {:>9} {:>8} {:>9} {:>9} {:>8}  outcome",
        "scenario",
        "links",
        "carrier",
        "max stall",
        "vs cbox",
        "lost",
        "rtt p50",
        "rtt p99",
        "Mbit/s"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}ms"));
    for f in &files {
        let sc = Scenario::load(f)?;
        let links: &[bool] = if sc.compare_zero {
            &[false, true]
        } else {
            &[false]
        };
        for &zero in links {
            let mut cbox_stall = None;
            let mut row: Vec<Report> = Vec::new();
            for &mode in &modes {
                let dir = workdir(&format!("{}-{}-{}", sc.name, mode.name(), zero));
                let r = runner::run_mode(&sc, &dir, mode, zero, false, stop)
                    .with_context(|| format!("{} / {}", sc.name, mode.name()))?;
                if r.broken
                    .as_deref()
                    .is_none_or(|b| !b.contains("did not run"))
                {
                    forget(&dir);
                }
                if mode == Mode::Cbox {
                    cbox_stall = Some(r.max_stall_ms.max(1.0));
                }
                let ratio =
                    cbox_stall.map_or("-".to_string(), |c| format!("{:.2}x", r.max_stall_ms / c));
                let outcome = match &r.broken {
                    Some(b) => format!("BROKEN: {b}"),
                    None if r.records_damaged > 0 => "records lost".to_string(),
                    None => "intact".to_string(),
                };
                println!(
                    "{:<18} {:<6} {:<13} {:>8.0}ms {:>9} {:>8} {:>9} {:>9} {:>8}  {outcome}",
                    sc.name,
                    if zero { "zero" } else { "real" },
                    mode.name(),
                    r.max_stall_ms,
                    ratio,
                    r.records_damaged,
                    ms(r.rtt_p50_ms),
                    ms(r.rtt_p99_ms),
                    r.download_mbit.map_or("-".into(), |v| format!("{v:.1}")),
                );
                row.push(r.clone());
                all.push(r);
            }
            if sc.bulk {
                print_bulk_ratios(&row);
            }
        }
    }
    if let Some(p) = json_out {
        std::fs::write(&p, serde_json::to_string_pretty(&all)?)?;
        println!("report: {}", p.display());
    }
    Ok(())
}

/// cbox's keystroke round trips and download rate against each baseline
/// of the same run (the targets: p50 within 2 ms of plain TCP, p99 within
/// 1.2×, the download at least 0.95×).
fn print_bulk_ratios(row: &[Report]) {
    use hil_tests::runner::Mode;
    let Some(c) = row.iter().find(|r| r.mode == Mode::Cbox) else {
        return;
    };
    for b in row.iter().filter(|r| r.mode != Mode::Cbox) {
        let p50 = c.rtt_p50_ms.zip(b.rtt_p50_ms).map(|(c, b)| c - b);
        let p99 = c.rtt_p99_ms.zip(b.rtt_p99_ms).map(|(c, b)| c / b);
        let rate = c.download_mbit.zip(b.download_mbit).map(|(c, b)| c / b);
        println!(
            "   cbox vs {:<13} rtt p50 {:>9}  rtt p99 {:>7}  download {:>7}{}",
            b.mode.name(),
            p50.map_or("-".into(), |d| format!("{d:+.1} ms")),
            p99.map_or("-".into(), |r| format!("{r:.2}x")),
            rate.map_or("-".into(), |r| format!("{r:.2}x")),
            if b.broken.is_some() {
                "  (baseline broke)"
            } else {
                ""
            },
        );
    }
}

/// How the download ended, for the tables.
fn download_word(r: &Report) -> &'static str {
    if r.download_intact {
        "intact"
    } else if r.download_corrupted {
        "CORRUPT"
    } else {
        "cut"
    }
}

/// The SSH session's largest stall, or how it broke, for the tables.
fn ssh_word(r: &Report) -> String {
    match &r.ssh {
        None => "-".into(),
        Some(s) if s.broken.is_some() => "reset".into(),
        Some(s) => format!("{:.0}ms", s.max_stall_ms),
    }
}

/// UDP datagrams lost of those sent (never replayed), for the tables.
fn udp_word(r: &Report) -> String {
    match &r.udp {
        None => "-".into(),
        Some(u) if u.duplicated + u.corrupted > 0 => "DAMAGED".into(),
        Some(u) => format!("{}/{}", u.sent - u.echoed.min(u.sent), u.sent),
    }
}

/// A randomized soak: at least `--handovers` (default 1,000) switches of
/// mixed causes — the user's planned switches, silent blackholes of the
/// Wi-Fi path (found by the dead-path rule), yanked Wi-Fi links — in an
/// order drawn from `--seed`, with the world's test timers; the usual
/// checks (every byte intact, no app error, no return within a hold-down).
fn soak(args: &[String], stop: &AtomicBool) -> anyhow::Result<()> {
    let mut handovers = 1000usize;
    let mut seed = 1u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().context("a value after each option")?;
        match a.as_str() {
            "--handovers" => handovers = v.parse().context("--handovers")?,
            "--seed" => seed = v.parse().context("--seed")?,
            other => bail!("unknown option {other}"),
        }
    }
    let (toml, duration) = soak_scenario(handovers, seed);
    let path = std::env::temp_dir().join(format!("cbox-soak-{}.toml", std::process::id()));
    std::fs::write(&path, toml)?;
    println!(
        "randomized soak: {handovers} handovers wanted, seed {seed}, {duration:.0} s of timeline"
    );
    let r = suite(&[path.display().to_string()], stop);
    let _ = std::fs::remove_file(&path);
    r
}

/// The soak's scenario text and length: cycles of three blocks (two planned
/// switches; a blackhole and the user's return; a yank and the user's
/// return) in an order drawn from `seed`, six handovers a cycle.
fn soak_scenario(handovers: usize, seed: u64) -> (String, f64) {
    let mut x = seed.max(1);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let blocks: [&[(f64, &str)]; 3] = [
        &[
            (0.0, "action = \"switch\"\nuplink = \"lte\""),
            (0.6, "action = \"switch\"\nuplink = \"wifi\""),
        ],
        &[
            (0.0, "action = \"set_link\"\nuplink = \"wifi\"\ndown = true"),
            (
                1.0,
                "action = \"set_link\"\nuplink = \"wifi\"\ndown = false",
            ),
            (1.8, "action = \"switch\"\nuplink = \"wifi\""),
        ],
        &[
            (0.0, "action = \"link_down\"\nuplink = \"wifi\""),
            (0.6, "action = \"link_up\"\nuplink = \"wifi\""),
            (1.8, "action = \"switch\"\nuplink = \"wifi\""),
        ],
    ];
    let lengths = [1.2, 2.4, 2.4];
    let cycles = handovers.div_ceil(6) + handovers / 60 + 1;
    let mut t = 3.0;
    let mut events = String::new();
    for _ in 0..cycles {
        let mut order = [0usize, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for b in order {
            for (dt, action) in blocks[b] {
                events += &format!("\n[[event]]\nat = {:.2}\n{action}\n", t + dt);
            }
            t += lengths[b];
        }
    }
    let duration = t + 5.0;
    let head = format!(
        "name = \"soak-random\"\ndescription = \"{handovers}+ handovers of mixed causes in random order (seed {seed}): planned switches, silent Wi-Fi blackholes, yanked Wi-Fi links\"\nduration_s = {duration:.1}\ndownload_mib = 256\ndownload_rate_mb = {:.2}\nmin_handovers = {handovers}\n",
        256.0 / duration * 0.95
    );
    (head + &events, duration)
}
