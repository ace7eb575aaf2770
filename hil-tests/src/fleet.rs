//! The world's fleet side and the technician's page: a Mosquitto broker
//! in the internet namespace (TLS, client certificates from the world's
//! PKI) that cnaptd reports to, an operator subscribed to the box's events
//! (`mosquitto_sub`), and the status page cnaptd serves on CBoxIP, read
//! from the phone. After a run, the handover records of all three —
//! `cboxctl handovers`, MQTT events, the page — must be the same.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::procs::{Procs, bin, cboxctl_pki, log};
use crate::topology::{Topology, addr};

/// The broker's port in the internet namespace.
pub const MQTT_PORT: u16 = 8883;
/// The page's admin PIN in the world.
pub const PIN: &str = "47119";
/// The page's port on CBoxIP.
pub const WEB_PORT: u16 = 8088;

/// The `[mqtt]` and `[web]` sections of the world's cnapt.toml.
pub fn cnapt_sections() -> String {
    format!(
        "[mqtt]\nbroker = \"{}:{MQTT_PORT}\"\nstatus_interval_ms = 5000\nkeepalive_s = 5\n\
         [web]\nlisten = \"{}:{WEB_PORT}\"\npin = \"{PIN}\"\n",
        addr::INTERNET,
        addr::CBOX_IP
    )
}

/// Issues the broker's and the operator's certificates.
pub fn issue(pki: &Path) -> anyhow::Result<()> {
    cboxctl_pki(pki, &["server", "mqtt", "--san", addr::INTERNET])?;
    cboxctl_pki(pki, &["box", "operator"])
}

/// Starts the broker and the operator's subscription (its output goes to
/// `mqtt-events.log`).
pub fn start(world: &Topology, dir: &Path, procs: &mut Procs) -> anyhow::Result<PathBuf> {
    let pki = dir.join("pki");
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        dir.join("mosquitto.acl"),
        "user box-sim\ntopic readwrite cbox/box-sim/#\nuser operator\ntopic readwrite cbox/#\n",
    )?;
    std::fs::write(
        &conf,
        format!(
            "listener {MQTT_PORT} {}\ncafile {p}/ca.pem\ncertfile {p}/servers/mqtt.pem\n\
             keyfile {p}/servers/mqtt.key\nrequire_certificate true\nuse_identity_as_username true\n\
             allow_anonymous false\nacl_file {}\npersistence false\nlog_dest stderr\n\
             # root in the world; its PKI folder is private\nuser root\n",
            addr::INTERNET,
            dir.join("mosquitto.acl").display(),
            p = pki.display()
        ),
    )?;
    let c = world
        .exec("internet", "/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stderr(log(dir, "mosquitto")?)
        .spawn()
        .context("mosquitto (apt-get install mosquitto)")?;
    procs.push("mosquitto", c);
    world.wait_listening("internet", MQTT_PORT, Duration::from_secs(10))?;
    let events = dir.join("mqtt-events.log");
    let out = std::fs::File::create(&events)?;
    let c = world
        .exec("internet", "mosquitto_sub")
        .args([
            "-h",
            addr::INTERNET,
            "-p",
            &MQTT_PORT.to_string(),
            "-q",
            "1",
            "-i",
            "operator",
        ])
        .arg("--cafile")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("boxes/operator.pem"))
        .arg("--key")
        .arg(pki.join("boxes/operator.key"))
        .args(["-t", "cbox/box-sim/events"])
        .stdout(out)
        .stderr(log(dir, "mosquitto_sub")?)
        .spawn()
        .context("mosquitto_sub (apt-get install mosquitto-clients)")?;
    procs.push("mosquitto_sub", c);
    Ok(events)
}

/// (seq, kind, to) of each handover record.
type Key = (u64, String, String);

fn keys<'a>(records: impl Iterator<Item = &'a Value>) -> Vec<Key> {
    let mut k: Vec<Key> = records
        .map(|h| {
            (
                h["seq"].as_u64().unwrap_or(0),
                h["kind"].as_str().unwrap_or("").to_string(),
                h["to_uplink"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    k.sort();
    k.dedup();
    k
}

/// The page's handover records, read from the phone: login with the PIN,
/// then `/api/status`.
fn page_records(world: &Topology, dir: &Path) -> anyhow::Result<Vec<Key>> {
    let jar = dir.join("page-cookies");
    let base = format!("http://{}:{WEB_PORT}", addr::CBOX_IP);
    let login = world
        .exec("phone", "curl")
        .args(["-sS", "-m", "10", "-c"])
        .arg(&jar)
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(format!("{{\"pin\":\"{PIN}\"}}"))
        .arg(format!("{base}/api/login"))
        .output()?;
    let v: Value = serde_json::from_slice(&login.stdout).unwrap_or_default();
    if v["ok"] != true {
        bail!("page login: {}", String::from_utf8_lossy(&login.stdout));
    }
    let st = world
        .exec("phone", "curl")
        .args(["-sS", "-m", "10", "-b"])
        .arg(&jar)
        .arg(format!("{base}/api/status"))
        .output()?;
    let v: Value = serde_json::from_slice(&st.stdout).context("page status")?;
    Ok(keys(
        v["data"]["handovers"].as_array().into_iter().flatten(),
    ))
}

fn mqtt_records(events: &Path) -> Vec<Key> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let hs: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "handover")
        .map(|v| v["handover"].clone())
        .collect();
    keys(hs.iter())
}

/// Compares the three views of the handover history (MQTT given up to 15 s
/// to deliver what a reconnection held back); a note, or the difference.
pub fn same_history(
    world: &Topology,
    dir: &Path,
    box_sock: &Path,
    events: &Path,
) -> anyhow::Result<String> {
    let out = Command::new(bin("cboxctl")?)
        .arg("--socket")
        .arg(box_sock)
        .args(["--json", "handovers"])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout).context("cboxctl handovers")?;
    let ctl = keys(v.as_array().into_iter().flatten());
    let page = page_records(world, dir)?;
    // The box keeps the last 32 records; MQTT has had every one: compare
    // what both still cover.
    let first = ctl.first().map_or(u64::MAX, |k| k.0);
    let window = |all: Vec<Key>| -> Vec<Key> { all.into_iter().filter(|k| k.0 >= first).collect() };
    let until = Instant::now() + Duration::from_secs(15);
    let mut mqtt = window(mqtt_records(events));
    while mqtt != ctl && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        mqtt = window(mqtt_records(events));
    }
    if ctl != page || ctl != mqtt {
        bail!("handover records differ: cboxctl {ctl:?}, page {page:?}, MQTT {mqtt:?}");
    }
    Ok(format!(
        "handover records identical in cboxctl, the status page and MQTT ({} records)",
        ctl.len()
    ))
}
