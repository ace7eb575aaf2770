//! The live terminal view of a scenario run (`cbox-world run`, the demo).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::procs::status;

/// The live terminal view of a run: the uplink and session line (redrawn
/// in place on a terminal, once a second otherwise), timeline events and
/// handovers as they happen.
pub(crate) struct LiveView {
    on: bool,
    tty: bool,
    mib: usize,
    last_line: Instant,
    seen: usize,
}

impl LiveView {
    pub(crate) fn new(on: bool, mib: usize) -> Self {
        Self {
            on,
            tty: on && std::io::stdout().is_terminal(),
            mib,
            last_line: Instant::now() - Duration::from_secs(1),
            seen: 0,
        }
    }

    pub(crate) fn clear(&self) {
        if self.tty {
            print!("\r{:<110}\r", "");
        }
    }

    pub(crate) fn event(&self, t: f64, what: &str) {
        if self.on {
            self.clear();
            println!("  t={t:5.1}s  >> {what}");
        }
    }

    pub(crate) fn tick(&mut self, t: f64, box_sock: &Path, got: &Path) {
        if !self.on {
            return;
        }
        let st = status(box_sock).unwrap_or_default();
        let site = &st["sites"][0];
        let hs = st["handovers"].as_array().cloned().unwrap_or_default();
        for h in hs.iter().skip(self.seen) {
            self.clear();
            println!(
                "  t={t:5.1}s  handover: {} to {} in {:.1} ms, {} bytes resent",
                h["kind"].as_str().unwrap_or("?"),
                h["to_uplink"].as_str().unwrap_or("?"),
                h["stall_ms"].as_f64().unwrap_or(0.0),
                h["bytes_replayed"]
            );
        }
        self.seen = hs.len();
        let size = std::fs::metadata(got).map(|m| m.len()).unwrap_or(0);
        let line = format!(
            "  t={t:5.1}s  uplink {:<5} {:<12} rtt {:>6} ms  phone {:5.1}/{} MiB  handovers {}",
            site["uplink"].as_str().unwrap_or("-"),
            site["state"].as_str().unwrap_or("-"),
            site["rtt_ms"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.1}")),
            size as f64 / (1 << 20) as f64,
            self.mib,
            site["switches"]
        );
        if self.tty {
            print!("\r{line}   ");
            let _ = std::io::stdout().flush();
        } else if self.last_line.elapsed() >= Duration::from_secs(1) {
            println!("{line}");
            self.last_line = Instant::now();
        }
    }

    pub(crate) fn end(&self) {
        if self.tty {
            println!();
        }
    }
}
