//! A day of other phones beside a scenario's own applications (issue 14's
//! "day in the field"): the phone also asks DNS from a fresh random port
//! every 100 ms through the box's resolver, makes a short HTTPS-like
//! exchange every 50 ms, and sends a video-call-like UDP stream faster than
//! a thin uplink; the laptop on the Ethernet PAN port opens hundreds of
//! connections and leaves them idle. After the timeline: every short
//! exchange went through (the box kept taking connections), nearly every
//! query was answered, the laptop held no more than its share of the
//! table, datagrams beyond the uplink were dropped and counted, and both
//! daemons stayed under the scenario's memory bounds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::apps::{apps_dir, box_port};
use crate::procs::Procs;
use crate::procs::log;
use crate::scenario::{CrowdSpec, Scenario};
use crate::topology::{Topology, addr};

/// Where the crowd's summaries go.
#[derive(Debug)]
pub struct Crowd {
    phone: PathBuf,
    idle: PathBuf,
}

/// The stream table's share one client may hold (cnaptd's default table).
const SHARE: u64 = 256 * 3 / 4;

impl Crowd {
    /// Starts the crowd for the scenario's duration.
    pub fn start(
        world: &Topology,
        dir: &Path,
        sc: &Scenario,
        spec: &CrowdSpec,
        procs: &mut Procs,
    ) -> anyhow::Result<Self> {
        let me = Self {
            phone: dir.join("crowd.json"),
            idle: dir.join("crowd-idle.json"),
        };
        let secs = sc.duration_s.to_string();
        let script = apps_dir().join("crowd.py");
        let phone = world
            .exec("phone", "python3")
            .arg(&script)
            .args([
                "phone",
                addr::CBOX_IP,
                addr::CBOX_IP,
                &box_port::ECHO.to_string(),
                &box_port::UDP_ECHO.to_string(),
                &secs,
                &spec.video_mbit.to_string(),
            ])
            .arg(&me.phone)
            .stderr(log(dir, "crowd")?)
            .spawn()
            .context("crowd.py on the phone")?;
        procs.push("crowd", phone);
        let idle = world
            .exec("laptop", "python3")
            .arg(&script)
            .args([
                "idle",
                addr::CBOX_IP,
                &box_port::ECHO.to_string(),
                &spec.idle_connections.to_string(),
                &secs,
            ])
            .arg(&me.idle)
            .stderr(log(dir, "crowd-idle")?)
            .spawn()
            .context("crowd.py on the laptop")?;
        procs.push("crowd-idle", idle);
        Ok(me)
    }

    /// Waits (bounded) for both summaries; then what they show against
    /// `spec`: notes, and the problems found.
    pub fn check(
        &self,
        spec: &CrowdSpec,
        status: &Value,
        rss_mib: (f64, f64),
    ) -> (Vec<String>, Vec<String>) {
        let until = Instant::now() + Duration::from_secs(20);
        while !(self.phone.exists() && self.idle.exists()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        let read = |p: &Path| -> Value {
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        };
        let (p, i) = (read(&self.phone), read(&self.idle));
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        let mut problems = Vec::new();
        if p.is_null() || i.is_null() {
            problems.push("the crowd wrote no summary".to_string());
            return (Vec::new(), problems);
        }
        let dropped = status["sites"][0]["datagrams_dropped"]
            .as_u64()
            .unwrap_or(0);
        let notes = vec![format!(
            "crowd: {}/{} DNS queries answered; {} short exchanges, {} failed, slowest {:.2} s; video {} sent, {} echoed, {dropped} datagrams dropped and counted by the box; laptop held {} of {} idle connections; peak RSS cnaptd {:.1} MiB, snaptd {:.1} MiB",
            n(&p, "dns_answered"),
            n(&p, "dns_asked"),
            n(&p, "short_ok"),
            n(&p, "short_failed"),
            p["short_worst_s"].as_f64().unwrap_or(0.0),
            n(&p, "video_sent"),
            n(&p, "video_echoed"),
            n(&i, "idle_held"),
            n(&i, "idle_opened"),
            rss_mib.0,
            rss_mib.1,
        )];
        if n(&p, "short_failed") > 0 || n(&p, "short_ok") == 0 {
            problems.push(format!(
                "the box did not take every short connection: {}",
                p["short_errors"]
            ));
        }
        if n(&p, "dns_answered") * 10 < n(&p, "dns_asked") * 9 {
            problems.push("fewer than 90 % of the DNS queries were answered".into());
        }
        if n(&i, "idle_held") > SHARE || n(&i, "idle_held") == 0 {
            problems.push(format!(
                "the laptop held {} idle connections (its share is {SHARE})",
                n(&i, "idle_held")
            ));
        }
        if n(&p, "video_echoed") >= n(&p, "video_sent") || dropped == 0 {
            problems.push(
                "the video stream faster than the uplink lost nothing, or the box counted no drop"
                    .into(),
            );
        }
        if rss_mib.0 > spec.cnaptd_max_mib || rss_mib.1 > spec.snaptd_max_mib {
            problems.push(format!(
                "memory over its bound: cnaptd {:.1} MiB (≤ {}), snaptd {:.1} MiB (≤ {})",
                rss_mib.0, spec.cnaptd_max_mib, rss_mib.1, spec.snaptd_max_mib
            ));
        }
        (notes, problems)
    }
}
