//! Other boxes beside the scenario's real one (issue 17): `cbox-crowd` runs
//! BOXES hand-driven boxes with real TLS from the LTE carrier's network
//! (behind its NAT, like a city of technicians), each holding a session on
//! the relay the fleet's rendezvous hash gives it and resuming it — or
//! starting a new one — when its tunnel is lost, as cnaptd does. After the
//! timeline: every box had its session at the start; after every loss
//! (a restart of the relays) every box came back, without a storm of
//! refusals; the figures go into the run's notes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::daemons::RELAYS;
use crate::procs::{Procs, bin, log};
use crate::scenario::Scenario;
use crate::topology::{Topology, addr};

/// The crowd of a run.
#[derive(Debug)]
pub struct BoxCrowd {
    out: PathBuf,
    boxes: usize,
}

impl BoxCrowd {
    /// Starts `boxes` boxes for the scenario's duration (their
    /// certificates issued first, from the run's PKI).
    pub fn start(
        world: &Topology,
        dir: &Path,
        sc: &Scenario,
        boxes: usize,
        procs: &mut Procs,
    ) -> anyhow::Result<Self> {
        let out = dir.join("box-crowd.json");
        let mut cmd = world.exec("isp-lte", bin("cbox-crowd")?.to_str().context("path")?);
        cmd.arg("--pki")
            .arg(dir.join("pki"))
            .args(["--boxes", &boxes.to_string()])
            .args(["--addr", &format!("{}:4433", addr::INTERNET)])
            .args(["--secs", &(sc.duration_s + 3.0).to_string()])
            .arg("--out")
            .arg(&out)
            .arg("--issue");
        if sc.relay_fleet {
            let names: Vec<&str> = RELAYS.iter().map(|(n, ..)| *n).collect();
            cmd.args(["--relays", &names.join(",")]);
        } else {
            cmd.args(["--server", addr::INTERNET]);
        }
        let child = cmd
            .stdout(log(dir, "box-crowd-out")?)
            .stderr(log(dir, "box-crowd")?)
            .spawn()
            .context("cbox-crowd (cargo build --workspace builds it)")?;
        procs.push("box-crowd", child);
        Ok(Self { out, boxes })
    }

    /// Waits for the crowd's summary (it ends 3 s after the timeline) and
    /// judges it: notes, and the problems that fail the run.
    pub fn finish(self, procs: &mut Procs) -> (Vec<String>, Vec<String>) {
        let until = Instant::now() + Duration::from_secs(40);
        while procs.exited("box-crowd").is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        let v: Value = match std::fs::read(&self.out)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(v) => v,
            None => return (Vec::new(), vec!["box crowd: no summary written".into()]),
        };
        let n = |k: &str| v[k].as_u64().unwrap_or(0) as usize;
        let s = |k: &str| v[k].as_f64().map_or("-".into(), |x| format!("{x:.2} s"));
        let mut notes = vec![format!(
            "box crowd: {} of {} boxes had a session {} after the start ({} attempts, {} refused)",
            n("arrived"),
            self.boxes,
            s("arrival_all_s"),
            n("arrival_attempts"),
            n("arrival_refused"),
        )];
        if n("losses") > 0 {
            notes.push(format!(
                "box crowd: {} tunnels lost, {} back ({} resumed, {} new sessions): median {}, slowest {}, all back {} after the first loss; {} attempts, {} refused, {} failed, peak {} attempts/s",
                n("losses"),
                n("back"),
                n("resumed"),
                n("new_sessions"),
                s("outage_median_s"),
                s("outage_max_s"),
                s("all_back_after_first_loss_s"),
                n("attempts_after_loss"),
                n("refused_after_loss"),
                n("failed_after_loss"),
                n("peak_attempts_per_s"),
            ));
        }
        let mut problems = Vec::new();
        if n("arrived") < self.boxes {
            problems.push(format!(
                "box crowd: only {} of {} boxes got a session",
                n("arrived"),
                self.boxes
            ));
        }
        if n("not_back") > 0 {
            problems.push(format!(
                "box crowd: {} boxes lost their tunnel and never came back",
                n("not_back")
            ));
        }
        // A storm: boxes refused over and over instead of coming back at
        // their slot.
        if n("refused_after_loss") > n("losses").max(1) {
            problems.push(format!(
                "box crowd: a storm of refusals ({} for {} losses)",
                n("refused_after_loss"),
                n("losses")
            ));
        }
        (notes, problems)
    }
}
