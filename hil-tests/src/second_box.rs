//! A second real box (issue 17, item 5): cnaptd `box-2` in namespace
//! `box2` on a wired site, with an echo service and an interactive record
//! stream through it for the whole timeline. With a relay fleet it has its
//! own relay by the rendezvous hash. After the run: if its relay was
//! killed, or every relay restarted, its stream was cut (reset, never
//! altered); otherwise it must be intact — a relay lost, drained or
//! upgraded under the other box costs this one nothing, and an upgrade of
//! its own relay nothing either.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::apps::{StreamFigures, apps_dir, box_port};
use crate::daemons::{RELAYS, timers};
use crate::procs::{Procs, bin, cboxctl_pki, log, status};
use crate::scenario::Scenario;
use crate::topology::{Topology, addr};

/// The second box of a run.
#[derive(Debug)]
pub struct SecondBox {
    sock: PathBuf,
    stream: PathBuf,
    /// Its relay of the fleet when the timeline started.
    pub relay: Option<String>,
}

impl SecondBox {
    /// Starts its cnaptd (waiting for its session) and its record stream;
    /// its namespace was built with the world (`Topology::add_second_box`).
    pub fn start(
        world: &Topology,
        dir: &Path,
        sc: &Scenario,
        procs: &mut Procs,
    ) -> anyhow::Result<Self> {
        let pki = dir.join("pki");
        cboxctl_pki(&pki, &["box", "box-2"])?;
        let sock = dir.join("box2.sock");
        let relay_line = if sc.relay_fleet {
            let names: Vec<String> = RELAYS.iter().map(|(n, ..)| format!("\"{n}\"")).collect();
            format!("relays = [{}]", names.join(", "))
        } else {
            format!("server_name = \"{}\"", addr::INTERNET)
        };
        let (session, decision) = timers(sc);
        let conf = format!(
            "box_id = \"box-2\"\ncontrol_socket = \"{}\"\n\
             [tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/boxes/box-2.pem\"\nkey = \"{p}/boxes/box-2.key\"\n\
             [[snapt]]\nname = \"internet\"\naddress = \"{i}:4433\"\n{relay_line}\n\
             [[uplink]]\nname = \"cable\"\nkind = \"wired\"\ninterface = \"eth0\"\nsource = \"{b}\"\n\
             [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{e}\"\nprotocol = \"tcp\"\n{session}{decision}",
            sock.display(),
            p = pki.display(),
            i = addr::INTERNET,
            b = addr::BOX2,
            e = box_port::ECHO,
        );
        let path = dir.join("box2.toml");
        std::fs::write(&path, conf)?;
        let c = world
            .exec("box2", bin("cnaptd")?.to_str().context("path")?)
            .arg("-c")
            .arg(&path)
            .stderr(log(dir, "cnaptd-2")?)
            .spawn()?;
        procs.push("cnaptd-2", c);
        let until = Instant::now() + Duration::from_secs(20);
        let relay = loop {
            if let Some(v) = status(&sock)
                && v["sites"][0]["state"] == "Established"
            {
                break v["sites"][0]["relay"].as_str().map(str::to_owned);
            }
            if procs.exited("cnaptd-2").is_some() {
                bail!("box-2's cnaptd exited at start (see cnaptd-2.log)");
            }
            if Instant::now() > until {
                bail!("box-2 had no session after 20 s (see cnaptd-2.log)");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stream = dir.join("box2-interactive.json");
        let child = world
            .exec("box2", "python3")
            .arg(apps_dir().join("interactive.py"))
            .args([
                "127.0.0.1",
                &box_port::ECHO.to_string(),
                &sc.duration_s.to_string(),
            ])
            .arg(&stream)
            .stderr(log(dir, "box2-interactive")?)
            .spawn()?;
        procs.push("interactive-2", child);
        Ok(Self {
            sock,
            stream,
            relay,
        })
    }

    /// Judges its stream: `cut` lists the relays that lost their state
    /// during the run (killed or restarted). Notes, and the problems that
    /// fail the run.
    pub fn finish(self, procs: &mut Procs, cut: &[String]) -> (Vec<String>, Vec<String>) {
        let until = Instant::now() + Duration::from_secs(30);
        while procs.exited("interactive-2").is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let f = StreamFigures::read(&self.stream);
        let relay = self.relay.clone().unwrap_or_else(|| "the relay".into());
        // A single relay is not named by its boxes: any cut is its.
        let lost = match &self.relay {
            Some(r) => cut.contains(r),
            None => !cut.is_empty(),
        };
        let now = status(&self.sock);
        let established = now
            .as_ref()
            .is_some_and(|v| v["sites"][0]["state"] == "Established");
        let mut notes = vec![format!(
            "box-2 (on {relay}): {} of {} records echoed intact, largest gap {:.0} ms{}; {}",
            f.echoed,
            f.sent,
            f.max_stall_ms,
            f.broken
                .as_ref()
                .map_or(String::new(), |b| format!(", cut: {b}")),
            if established {
                "connected at the end"
            } else {
                "NOT connected at the end"
            }
        )];
        let mut problems = Vec::new();
        // Never acceptable: records altered, duplicated or reordered; lost
        // ones only where the stream was cut (its relay lost its state).
        if f.corrupted > 0 {
            problems.push(format!(
                "box-2: {} records altered, duplicated or reordered",
                f.corrupted
            ));
        }
        if !lost && f.damaged() > 0 {
            problems.push(format!("box-2: {} records lost", f.damaged()));
        }
        if !established {
            problems.push("box-2 has no session at the end".into());
        }
        match (&f.broken, lost) {
            (Some(b), false) => problems.push(format!(
                "box-2's stream broke though {relay} kept its state: {b}"
            )),
            (None, true) if !cut.is_empty() => notes.push(format!(
                "box-2: {relay} lost its state, yet the stream survived (it resumed elsewhere?)"
            )),
            _ => {}
        }
        (notes, problems)
    }
}
