//! The radio bench's virtual machine: a throwaway Debian bookworm VM (built
//! by `hil-tests/radio-vm/build-image.sh`) whose stock kernel has what this
//! machine's lacks — mac80211_hwsim, hci_vhci, bnep, sch_netem — booted
//! under QEMU's software emulation to run one job and power off.
//!
//! The host's folders are shared into the VM at their own paths (9p), so a
//! test binary built here (same bookworm glibc) runs there unchanged:
//! [`RadioVm::run_test`] runs the calling test itself inside the VM, where
//! [`in_vm`] is true. Every VM is killed by its pid when its [`RadioVm::run`]
//! returns (timeout, failure or panic included) and its job folder removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Set inside the VM for the job's programs.
pub const IN_VM_ENV: &str = "CBOX_IN_RADIO_VM";

/// True inside the radio VM.
pub fn in_vm() -> bool {
    std::env::var_os(IN_VM_ENV).is_some()
}

/// Where the images are kept (the build script's default).
fn image_base() -> PathBuf {
    if let Some(d) = std::env::var_os("CBOX_RADIO_VM_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/cbox-radio-vm")
}

/// A built image: kernel, initrd and root filesystem.
#[derive(Debug, Clone)]
pub struct RadioVm {
    dir: PathBuf,
}

/// What a job left.
#[derive(Debug)]
pub struct VmRun {
    /// The job's exit status (`None`: it never finished — see `console`).
    pub exit: Option<i32>,
    /// The job's stdout and stderr.
    pub output: String,
    /// The VM's serial console (kernel messages).
    pub console: String,
    /// From QEMU's start to its end.
    pub elapsed: Duration,
}

/// Kills and reaps a QEMU by its pid on every way out.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Removes a job folder on every way out.
struct JobDir(PathBuf);

impl Drop for JobDir {
    fn drop(&mut self) {
        if std::env::var_os("CBOX_RADIO_VM_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl RadioVm {
    /// The image the build script made (the newest under its folder), or
    /// an error that says how to build it.
    pub fn find() -> Result<Self> {
        let base = image_base();
        let complete = |d: &Path| {
            ["vmlinux", "initrd.cpio.gz", "rootfs.ext4"]
                .iter()
                .all(|f| d.join(f).is_file())
        };
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|d| complete(d))
            .filter_map(|d| Some((d.metadata().ok()?.modified().ok()?, d)))
            .collect();
        found.sort();
        match found.pop() {
            Some((_, dir)) => Ok(Self { dir }),
            None => bail!(
                "no radio VM image under {}: build it with `sudo hil-tests/radio-vm/build-image.sh` \
                 (scripts/test.sh does)",
                base.display()
            ),
        }
    }

    /// The image's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Boots the VM with `shares` (host folders, mounted at the same paths)
    /// and runs `script` (sh) in it as root, at most `limit`.
    pub fn run(&self, script: &str, shares: &[&Path], limit: Duration) -> Result<VmRun> {
        for tool in ["/usr/bin/qemu-system-x86_64"] {
            if !Path::new(tool).exists() {
                bail!("{tool} is missing: apt-get install qemu-system-x86 (scripts/test.sh does)");
            }
        }
        let job = JobDir(std::env::temp_dir().join(format!(
            "cbox-radio-vm-{}-{}",
            std::process::id(),
            next_id()
        )));
        std::fs::create_dir_all(&job.0).with_context(|| job.0.display().to_string())?;
        let script_path = job.0.join("job.sh");
        std::fs::write(&script_path, script)?;
        let mut share_arg = format!("job:{}", job.0.display());
        let mut cmd = Command::new("/usr/bin/qemu-system-x86_64");
        // /dev/kvm here may be a paravirtual variant that boots no stock
        // kernel (docs/testing.md): software emulation always works.
        cmd.args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-machine",
            "q35",
            "-smp",
            "2",
            "-m",
            "1024",
            "-nodefaults",
            "-nic",
            "none",
            "-nographic",
            "-no-reboot",
        ]);
        cmd.arg("-serial")
            .arg(format!("file:{}", job.0.join("console.log").display()));
        cmd.arg("-kernel").arg(self.dir.join("vmlinux"));
        cmd.arg("-initrd").arg(self.dir.join("initrd.cpio.gz"));
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            self.dir.join("rootfs.ext4").display()
        ));
        cmd.arg("-virtfs").arg(format!(
            "local,path={},mount_tag=job,security_model=none",
            job.0.display()
        ));
        for (i, dir) in shares.iter().enumerate() {
            let tag = format!("share{i}");
            let dir = dir
                .canonicalize()
                .with_context(|| format!("share {}", dir.display()))?;
            let text = dir.display().to_string();
            if text.contains([',', ' ', ':']) {
                bail!("cannot share {text}: commas, spaces and colons are not allowed");
            }
            cmd.arg("-virtfs").arg(format!(
                "local,path={text},mount_tag={tag},security_model=none,readonly=on"
            ));
            share_arg.push_str(&format!(",{tag}:{text}"));
        }
        cmd.arg("-append").arg(format!(
            "console=ttyS0 root=/dev/vda rw quiet cryptomgr.notests panic=-1 \
             cbox.share={share_arg} cbox.job={}",
            script_path.display()
        ));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut qemu = Qemu(cmd.spawn().context("starting qemu-system-x86_64")?);
        let mut finished = false;
        while started.elapsed() < limit {
            if qemu.0.try_wait()?.is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let elapsed = started.elapsed();
        let mut qemu_err = String::new();
        if !finished {
            let _ = qemu.0.kill();
        }
        let _ = qemu.0.wait();
        if let Some(mut e) = qemu.0.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut qemu_err);
        }
        drop(qemu);
        let read = |name: &str| std::fs::read_to_string(job.0.join(name)).unwrap_or_default();
        let exit = read("job.sh.exit").trim().parse().ok();
        let mut console = read("console.log");
        if !qemu_err.is_empty() {
            console.push_str("\n[qemu] ");
            console.push_str(&qemu_err);
        }
        if !finished {
            console.push_str(&format!("\n[host] the VM was killed after {limit:?}"));
        }
        Ok(VmRun {
            exit,
            output: read("job.sh.out"),
            console,
            elapsed,
        })
    }

    /// Runs the calling test (`name`, as cargo's test harness names it)
    /// inside the VM with [`IN_VM_ENV`] set, the workspace shared; prints
    /// what it printed there and fails when it failed there.
    pub fn run_test(&self, name: &str, limit: Duration) -> Result<VmRun> {
        let exe = std::env::current_exe()?;
        let root = workspace_root();
        if !exe.starts_with(&root) {
            bail!(
                "{} is outside the workspace {}: the VM sees only the workspace",
                exe.display(),
                root.display()
            );
        }
        // The test's own settings (CBOX_*) go along, shell-quoted.
        let mut env = String::new();
        for (k, v) in std::env::vars() {
            if k.starts_with("CBOX_") && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                env.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
            }
        }
        let script = format!(
            "cd {root}\n{env}export {IN_VM_ENV}=1 RUST_BACKTRACE=1\nexec {exe} --exact {name} --nocapture --test-threads=1\n",
            root = root.display(),
            exe = exe.display(),
        );
        let run = self.run(&script, &[&root], limit)?;
        println!(
            "--- in the radio VM ({:.1} s) ---\n{}--- end of the VM's output ---",
            run.elapsed.as_secs_f64(),
            run.output
        );
        match run.exit {
            Some(0) => Ok(run),
            Some(code) => bail!("the test failed inside the VM (exit {code})"),
            None => bail!(
                "the VM's job did not finish; its console:\n{}",
                tail(&run.console, 40)
            ),
        }
    }
}

/// The workspace's root folder (this crate's parent).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
