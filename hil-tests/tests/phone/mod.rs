//! What a phone runs through the box on the radio bench, checked byte by
//! byte: a paced download from a server in another namespace (the pattern
//! of `relay_tests::apps::pattern`, so every byte is known at its offset)
//! and an SSH session printing a line every 100 ms. Both record their
//! longest silence; a reset, a wrong byte or a missing line is an error.
//! Each side runs on a thread of its own entered into its namespace.
//! Shared by the radio bench's phone tests (`mod phone;`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Enters the named network namespace (this thread only).
fn enter(ns: &str) -> Result<()> {
    let fd = std::fs::File::open(format!("/run/netns/{ns}")).with_context(|| ns.to_string())?;
    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    Ok(())
}

const PATTERN_LEN: usize = 1 << 20;

/// Serves the pattern on `port` of `ns`'s loopback, `chunk` bytes every
/// `every`, to every connection, for ever (a thread of its own).
pub fn download_server(ns: &str, port: u16, chunk: usize, every: Duration) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let r = (|| -> Result<()> {
            enter(&ns)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
                let _ = tx.send(Ok(()));
                let data = Arc::new(relay_tests::apps::pattern(7, PATTERN_LEN));
                while let Ok((mut s, _)) = l.accept().await {
                    let data = data.clone();
                    tokio::spawn(async move {
                        let _ = s.set_nodelay(true);
                        let mut off = 0usize;
                        let mut tick = tokio::time::interval(every);
                        loop {
                            tick.tick().await;
                            let mut left = chunk;
                            while left > 0 {
                                let at = off % PATTERN_LEN;
                                let n = left.min(PATTERN_LEN - at);
                                if s.write_all(&data[at..at + n]).await.is_err() {
                                    return;
                                }
                                off += n;
                                left -= n;
                            }
                        }
                    });
                }
                Ok::<(), anyhow::Error>(())
            })
        })();
        if let Err(e) = r {
            let _ = tx.send(Err(e));
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .context("the download server did not start")?
}

/// What a running download saw.
#[derive(Debug, Default)]
pub struct Download {
    /// Bytes received and checked.
    pub bytes: AtomicU64,
    /// Longest time without a byte, µs.
    pub max_gap_us: AtomicU64,
    stop: AtomicBool,
    done: std::sync::Mutex<Option<std::result::Result<(), String>>>,
}

impl Download {
    /// Connects from `ns` to `addr` and checks every byte against the
    /// pattern at its offset until [`Download::finish`].
    pub fn start(ns: &str, addr: std::net::SocketAddr) -> Arc<Self> {
        let d = Arc::new(Self::default());
        let (d2, ns) = (d.clone(), ns.to_string());
        std::thread::spawn(move || {
            let r = (|| -> std::result::Result<(), String> {
                enter(&ns).map_err(|e| e.to_string())?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(d2.run(addr))
            })();
            if let Ok(mut g) = d2.done.lock() {
                *g = Some(r);
            }
        });
        d
    }

    async fn run(&self, addr: std::net::SocketAddr) -> std::result::Result<(), String> {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let data = relay_tests::apps::pattern(7, PATTERN_LEN);
        let mut buf = vec![0u8; 65536];
        let mut off = 0usize;
        let mut last = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let n = match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                Err(_) => continue,
                Ok(Ok(0)) => return Err(format!("the download ended at byte {off}")),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("the download failed at byte {off}: {e}")),
            };
            for (i, b) in buf[..n].iter().enumerate() {
                if *b != data[(off + i) % PATTERN_LEN] {
                    return Err(format!("wrong byte at offset {}", off + i));
                }
            }
            off += n;
            let gap = last.elapsed().as_micros() as u64;
            last = Instant::now();
            self.max_gap_us.fetch_max(gap, Ordering::Relaxed);
            self.bytes.store(off as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Stops it and says how it went (within `limit`).
    pub fn finish(&self, limit: Duration) -> std::result::Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let until = Instant::now() + limit;
        loop {
            if let Ok(mut g) = self.done.lock()
                && let Some(r) = g.take()
            {
                return r;
            }
            if Instant::now() > until {
                return Err("the download did not stop".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A real OpenSSH server on `ns`'s loopback port 22, keys made in `dir`
/// (a child process; the caller ends it). Returns the client key's path.
pub fn sshd(ns: &str, dir: &Path) -> Result<(std::process::Child, std::path::PathBuf)> {
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all("/run/sshd")?;
    let host = dir.join("host_key");
    let client = dir.join("client_key");
    for k in [&host, &client] {
        if !k.exists() {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(k)
                .status()?
                .success();
            if !ok {
                bail!("ssh-keygen failed");
            }
        }
    }
    std::fs::copy(client.with_extension("pub"), dir.join("authorized_keys"))?;
    let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-f",
            "/dev/null",
        ])
        .args(["-o", "ListenAddress=127.0.0.1", "-o", "Port=22"])
        .args(["-o", &opt("HostKey", &host)])
        .args([
            "-o",
            &opt("AuthorizedKeysFile", &dir.join("authorized_keys")),
        ])
        .args([
            "-o",
            "StrictModes=no",
            "-o",
            "PermitRootLogin=yes",
            "-o",
            "UsePAM=no",
        ])
        .args(["-o", "PidFile=none"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log"))?)
        .spawn()?;
    Ok((child, client))
}

/// An SSH session from `ns` to `host:port` printing `lines` lines, one
/// every 100 ms; returns the longest silence between two lines, or why it
/// failed (a missing or repeated line, a non-zero exit).
pub fn ssh_ticks(
    ns: &str,
    key: &Path,
    host: &str,
    port: u16,
    lines: u32,
) -> std::thread::JoinHandle<std::result::Result<Duration, String>> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "ssh", "-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-p",
            &port.to_string(),
            &format!("root@{host}"),
            &format!("i=0; while [ $i -lt {lines} ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::thread::spawn(move || {
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut next = 0u32;
        let mut last: Option<Instant> = None;
        let mut max_gap = Duration::ZERO;
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line != format!("tick {next}") {
                let _ = child.kill();
                return Err(format!("expected tick {next}, got {line:?}"));
            }
            if let Some(l) = last {
                max_gap = max_gap.max(l.elapsed());
            }
            last = Some(Instant::now());
            next += 1;
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        if !status.success() || next != lines {
            return Err(format!(
                "ssh ended ({status}) after {next} of {lines} lines: {}",
                err.trim()
            ));
        }
        Ok(max_gap)
    })
}
