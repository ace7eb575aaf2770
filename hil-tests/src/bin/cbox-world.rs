//! cbox-world — the simulated box doing live handovers.
//!
//!     sudo cbox-world demo        # build the world, run the demo, tear down
//!     sudo cbox-world clean       # remove namespaces left by a crashed run
//!
//! The demo: a phone downloads 64 MiB with curl from a web server on the
//! internet side, through cnaptd (box) and snaptd (internet). Meanwhile the
//! box walks out of Wi-Fi (planned switch to LTE), comes back, and then loses
//! its Wi-Fi link abruptly. The live view shows the uplink, the phone's
//! progress and each handover; the verdict checks the download's SHA-256.

#![allow(clippy::print_stdout)] // a command-line program prints

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hil_tests::radio::{LinkParams, Radio};
use hil_tests::topology::{Topology, addr, clean_stale};
use sha2::{Digest, Sha256};

const FILE_MIB: usize = 64;

/// One event of the demo's timeline: when (seconds), what, and how.
type Step = (f64, &'static str, Box<dyn Fn() -> anyhow::Result<()>>);

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("exe dir")?.join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build the workspace first (cargo build --release --workspace)",
            p.display()
        );
    }
    Ok(p)
}

/// Processes of the demo, killed (by pid) when dropped.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

fn main() -> anyhow::Result<()> {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    if !nix_is_root() {
        bail!("the simulated world needs root (network namespaces): run with sudo");
    }
    match cmd.as_str() {
        "clean" => {
            let removed = clean_stale()?;
            println!("removed {} stale namespace(s)", removed.len());
            Ok(())
        }
        "demo" => demo(),
        _ => bail!("usage: cbox-world demo | clean"),
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn demo() -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst)).context("signal handler")?;
    let stale = clean_stale()?;
    if !stale.is_empty() {
        println!(
            "cleaned {} namespace(s) left by an earlier run",
            stale.len()
        );
    }
    let dir = std::env::temp_dir().join(format!("cbox-world-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_demo(&dir, &stop);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_demo(dir: &Path, stop: &AtomicBool) -> anyhow::Result<()> {
    println!(
        "building the world: phone — box (pan0, wlan0, wwan0) — isp-wifi, isp-lte (CGNAT) — internet"
    );
    let world = Topology::build()?;
    let wifi = Arc::new(Radio::start(
        &world.ns("radio-wifi"),
        "rad-a",
        "rad-b",
        LinkParams::wifi(),
    )?);
    let lte = Radio::start(&world.ns("radio-lte"), "rad-a", "rad-b", LinkParams::lte())?;
    println!(
        "links: Wi-Fi {:?} ±{:?}, 50 Mbit/s; LTE {:?} ±{:?}, 20 Mbit/s, behind carrier NAT",
        LinkParams::wifi().delay,
        LinkParams::wifi().jitter,
        LinkParams::lte().delay,
        LinkParams::lte().jitter
    );
    let pki = dir.join("pki");
    for args in [
        vec!["init"],
        vec!["server", "snapt", "--san", addr::INTERNET],
        vec!["box", "box-demo"],
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
    // The file the phone downloads.
    let web = dir.join("www");
    std::fs::create_dir_all(&web)?;
    let mut data = vec![0u8; FILE_MIB << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    std::fs::write(web.join("big.bin"), &data)?;
    let want = Sha256::digest(&data);
    drop(data);

    let snapt_sock = dir.join("snaptd.sock");
    let box_sock = dir.join("cnaptd.sock");
    let session =
        "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1000\nswitch_timeout_ms = 30000\n";
    std::fs::write(
        dir.join("snapt.toml"),
        format!(
            "listen = \"{i}:4433\"\ncontrol_socket = \"{}\"\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/snapt.pem\"\nkey = \"{p}/servers/snapt.key\"\ncrl = \"{p}/crl.pem\"\n[[service]]\nname = \"web\"\ntarget = \"{i}:8000\"\n[[service]]\nname = \"echo\"\ntarget = \"{i}:7000\"\n{session}",
            snapt_sock.display(),
            i = addr::INTERNET,
            p = pki.display()
        ),
    )?;
    std::fs::write(
        dir.join("cnapt.toml"),
        format!(
            "box_id = \"box-demo\"\ncontrol_socket = \"{}\"\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/boxes/box-demo.pem\"\nkey = \"{p}/boxes/box-demo.key\"\n\
             [[snapt]]\nname = \"internet\"\naddress = \"{i}:4433\"\nserver_name = \"{i}\"\n\
             [[uplink]]\nname = \"wifi\"\ninterface = \"wlan0\"\nsource = \"{w}\"\n[[uplink]]\nname = \"lte\"\ninterface = \"wwan0\"\nsource = \"{l}\"\n\
             [[service]]\nname = \"web\"\nlisten = \"{c}:8080\"\n[[service]]\nname = \"echo\"\nlisten = \"{c}:7001\"\n{session}",
            box_sock.display(),
            p = pki.display(),
            i = addr::INTERNET,
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
    let mut procs = Procs(Vec::new());
    let web_srv = world
        .exec("internet", "python3")
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            addr::INTERNET,
            "--directory",
        ])
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(log("web")?)
        .spawn()?;
    procs.0.push(("web".into(), web_srv));
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps");
    let echo_srv = world
        .exec("internet", "python3")
        .arg(apps.join("echo_server.py"))
        .args([addr::INTERNET, "7000"])
        .stderr(log("echo")?)
        .spawn()?;
    procs.0.push(("echo".into(), echo_srv));
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
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if status(&box_sock).is_some_and(|v| v["sites"][0]["state"] == "Established") {
            break;
        }
        if Instant::now() > until || stop.load(Ordering::SeqCst) {
            bail!("the box did not connect; logs in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("box connected over wifi; the phone starts downloading {FILE_MIB} MiB through it\n");

    let got = dir.join("got.bin");
    let url = format!("http://{}:8080/big.bin", addr::CBOX_IP);
    let curl = world
        .exec("phone", "curl")
        .args(["-sS", "--limit-rate", "5M", "-o"])
        .arg(&got)
        .arg(&url)
        .stderr(log("curl")?)
        .spawn()?;
    procs.0.push(("curl".into(), curl));
    let summary = dir.join("interactive.json");
    let interactive = world
        .exec("phone", "python3")
        .arg(apps.join("interactive.py"))
        .args([addr::CBOX_IP, "7001", "12.5"])
        .arg(&summary)
        .stderr(log("interactive")?)
        .spawn()?;
    procs.0.push(("interactive".into(), interactive));

    // The scenario: (time, what, how).
    let mut timeline: Vec<Step> = Vec::new();
    let radio = wifi.clone();
    timeline.push((
        1.5,
        "walking out of Wi-Fi: signal fading (60 ms, 3% loss)",
        Box::new(move || {
            radio.set(|p| {
                p.delay = Duration::from_millis(60);
                p.loss = 0.03;
            });
            Ok(())
        }),
    ));
    let sock = box_sock.clone();
    timeline.push((
        2.5,
        "planned switch to LTE",
        Box::new(move || switch(&sock, "lte")),
    ));
    let radio = wifi.clone();
    timeline.push((
        5.0,
        "back in Wi-Fi coverage",
        Box::new(move || {
            radio.set(|p| *p = LinkParams::wifi());
            Ok(())
        }),
    ));
    let sock = box_sock.clone();
    timeline.push((
        5.5,
        "planned switch to Wi-Fi",
        Box::new(move || switch(&sock, "wifi")),
    ));
    let w = world.ns("box");
    timeline.push((
        8.5,
        "Wi-Fi cable yanked (wlan0 down)",
        Box::new(move || link(&w, "wlan0", "down")),
    ));
    let w = world.ns("box");
    timeline.push((
        11.5,
        "Wi-Fi link back (wlan0 up)",
        Box::new(move || link(&w, "wlan0", "up")),
    ));

    let start = Instant::now();
    let mut last_size = 0u64;
    let mut seen_handovers = 0usize;
    let total = (FILE_MIB as u64) << 20;
    let mut curl_done = None;
    let tty = std::io::stdout().is_terminal();
    let mut last_line = Instant::now() - Duration::from_secs(1);
    loop {
        if stop.load(Ordering::SeqCst) {
            println!("\ninterrupted: tearing the world down");
            return Ok(());
        }
        let t = start.elapsed().as_secs_f64();
        while timeline.first().is_some_and(|(at, _, _)| t >= *at) {
            let (_, what, act) = timeline.remove(0);
            if tty {
                print!("\r{:<100}\r", "");
            }
            println!("  t={t:5.1}s  >> {what}");
            act()?;
        }
        let size = std::fs::metadata(&got).map(|m| m.len()).unwrap_or(0);
        last_size = last_size.max(size);
        let st = status(&box_sock).unwrap_or_default();
        let site = &st["sites"][0];
        let hs = st["handovers"].as_array().cloned().unwrap_or_default();
        for h in hs.iter().skip(seen_handovers) {
            if tty {
                print!("\r{:<100}\r", "");
            }
            println!(
                "  t={t:5.1}s  handover: {} to {} in {:.1} ms, {} bytes resent",
                h["kind"].as_str().unwrap_or("?"),
                h["to_uplink"].as_str().unwrap_or("?"),
                h["duration_ms"].as_f64().unwrap_or(0.0),
                h["bytes_replayed"]
            );
        }
        seen_handovers = hs.len();
        let line = format!(
            "  t={t:5.1}s  uplink {:<5} {:<12} rtt {:>6} ms  phone {:5.1}/{} MiB  handovers {}",
            site["uplink"].as_str().unwrap_or("-"),
            site["state"].as_str().unwrap_or("-"),
            site["rtt_ms"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.1}")),
            size as f64 / (1 << 20) as f64,
            FILE_MIB,
            seen_handovers
        );
        if tty {
            print!("\r{line}   ");
            let _ = std::io::stdout().flush();
        } else if last_line.elapsed() >= Duration::from_secs(1) {
            println!("{line}");
            last_line = Instant::now();
        }
        if let Some((_, c)) = procs.0.iter_mut().find(|(n, _)| n == "curl")
            && let Ok(Some(code)) = c.try_wait()
        {
            curl_done = Some(code);
        }
        if curl_done.is_some() && timeline.is_empty() && summary.exists() {
            break;
        }
        if t > 90.0 {
            bail!(
                "the download did not finish in 90 s; logs in {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!();
    let ok = curl_done.is_some_and(|c| c.success());
    let got_sum = Sha256::digest(std::fs::read(&got).unwrap_or_default());
    let intact = got_sum == want && last_size == total;
    let inter: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary)?)?;
    let inter_ok = inter["damaged"] == 0 && inter["sent"] == inter["echoed"];
    println!(
        "\ninteractive stream: {} records sent, {} echoed intact, {} damaged; largest gap {:.0} ms (records every 20 ms)",
        inter["sent"],
        inter["echoed"],
        inter["damaged"],
        inter["max_gap_ms"].as_f64().unwrap_or(0.0)
    );
    println!(
        "download: {} of {} bytes, {}, curl {}",
        last_size,
        total,
        if intact {
            "SHA-256 intact"
        } else {
            "DATA DAMAGED"
        },
        if ok { "ok" } else { "failed" }
    );
    println!(
        "verdict: {seen_handovers} handovers, max stall {:.0} ms, {}",
        inter["max_gap_ms"].as_f64().unwrap_or(0.0),
        if intact && inter_ok {
            "0 bytes lost"
        } else {
            "BYTES LOST OR DAMAGED"
        }
    );
    let intact = intact && inter_ok;
    drop(procs);
    drop(lte);
    drop(wifi);
    drop(world);
    if !(intact && ok) {
        bail!("the demo failed; logs were in {}", dir.display());
    }
    Ok(())
}

fn switch(sock: &Path, uplink: &str) -> anyhow::Result<()> {
    let out = Command::new(bin("cboxctl")?)
        .arg("--socket")
        .arg(sock)
        .args(["switch", uplink])
        .output()?;
    if !out.status.success() {
        bail!(
            "switch to {uplink}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn link(ns: &str, dev: &str, state: &str) -> anyhow::Result<()> {
    let st = Command::new("ip")
        .args(["-n", ns, "link", "set", dev, state])
        .status()?;
    if !st.success() {
        bail!("ip link set {dev} {state} failed");
    }
    Ok(())
}
