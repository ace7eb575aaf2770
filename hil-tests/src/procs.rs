//! The processes of a run: the workspace binaries found next to this
//! program, children kept by name and killed by pid when the run ends (or
//! one of them restarts), their CPU time and peak memory from `/proc`, and
//! the box's status through `cboxctl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// Processes of a run, killed by pid when dropped.
#[derive(Debug, Default)]
pub struct Procs(Vec<(String, Proc)>);

/// A process of the run: started here, or started by one of ours (an
/// upgraded snaptd: its predecessor started it) and known by pid.
#[derive(Debug)]
enum Proc {
    Child(Child),
    Descendant(u32),
}

impl Proc {
    fn id(&self) -> u32 {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Descendant(pid) => *pid,
        }
    }

    fn kill(&mut self) {
        match self {
            Proc::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Proc::Descendant(pid) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Procs {
    /// Keeps `child` under `name`.
    pub fn push(&mut self, name: &str, child: Child) {
        self.0.push((name.to_string(), Proc::Child(child)));
    }

    /// `pid` (started by one of ours) takes the place of the process kept
    /// under `name`, which is kept as `<name>-old` until the run ends.
    pub fn succeeded_by(&mut self, name: &str, pid: u32) {
        for (n, _) in self.0.iter_mut().filter(|(n, _)| n == name) {
            *n = format!("{name}-old");
        }
        self.0.push((name.to_string(), Proc::Descendant(pid)));
    }

    /// The pid of the process kept under `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    /// Its exit status, if it has ended (a descendant's is not known: its
    /// end is a failure).
    pub fn exited(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        self.0
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| match c {
                Proc::Child(c) => c.try_wait().ok().flatten(),
                Proc::Descendant(pid) => (!Path::new(&format!("/proc/{pid}")).exists())
                    .then(|| std::os::unix::process::ExitStatusExt::from_raw(1 << 8)),
            })
    }

    /// Kills (SIGKILL, by pid) and reaps the process kept under `name`.
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.0.remove(i);
            c.kill();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            c.kill();
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

/// A log file `dir/NAME.log` for a child's output.
pub fn log(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(
        dir.join(format!("{name}.log")),
    )?))
}

/// `cboxctl --json status` of the daemon behind `sock`.
pub fn status(sock: &Path) -> Option<serde_json::Value> {
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

/// CPU seconds and peak resident memory (MiB) of `pid` so far.
pub fn figures(pid: Option<u32>) -> (f64, f64) {
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

/// `cboxctl pki --dir PKI ARGS…`.
pub(crate) fn cboxctl_pki(pki: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(bin("cboxctl")?)
        .arg("pki")
        .arg("--dir")
        .arg(pki)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "cboxctl pki {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
