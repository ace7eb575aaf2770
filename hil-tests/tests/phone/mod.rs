//! What a phone runs through the box on the radio bench, checked byte by
//! byte: a paced download from a server in another namespace (the pattern
//! of `relay_tests::apps::pattern`, so every byte is known at its offset)
//! and an SSH session printing a line every 100 ms. Both record their
//! longest silence; a reset, a wrong byte or a missing line is an error.
//! Each side runs on a thread of its own entered into its namespace.
//! Also the box's surroundings those tests share: two cable uplinks
//! through netem to an internet namespace with the real snaptd, the
//! servers behind it, and the handovers the phone's traffic must survive.
//! Shared by the radio bench's phone tests (`mod phone;`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use relay_tests::bed::{Bed, ctl};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The relay's address in the internet namespace.
pub const RELAY: &str = "198.18.100.1";

/// The internet namespace with the relay's address, two uplinks (`eth1`
/// 5 ms ± 1 ms and `eth2` 40 ms ± 5 ms round trip, netem in a link
/// namespace on each way) and the PAN bridge `pan0` with CBoxIP (the
/// image: pan0.netdev/.network).
pub const UPLINKS: &str = r#"
set -e
modprobe sch_netem
ip netns add inet
ip netns add lnk
ip -n inet link set lo up
ip -n inet addr add 198.18.100.1/32 dev lo
ip netns exec inet sysctl -qw net.ipv4.ip_forward=1
for u in 1 2; do
  ip link add eth$u type veth peer name l${u}a netns lnk
  ip link add l${u}b netns lnk type veth peer name v$u netns inet
  ip -n lnk link add br$u type bridge
  ip -n lnk link set l${u}a master br$u
  ip -n lnk link set l${u}b master br$u
  for i in l${u}a l${u}b br$u; do ip -n lnk link set $i up; done
  ip -n inet addr add 198.18.$((u+1)).1/24 dev v$u
  ip -n inet link set v$u up
  ip addr add 198.18.$((u+1)).2/24 dev eth$u
  ip link set eth$u up
done
for i in l1a l1b; do ip netns exec lnk tc qdisc add dev $i root netem delay 2500us 500us; done
for i in l2a l2b; do ip netns exec lnk tc qdisc add dev $i root netem delay 20ms 2500us; done
ip route add default via 198.18.2.1 dev eth1 metric 100
ip route add default via 198.18.3.1 dev eth2 metric 200
ip link add pan0 type bridge
ip addr add 10.77.0.1/24 dev pan0
ip link set pan0 up
"#;

/// cnaptd's configuration for those surroundings (before `[pan]`): the
/// relay, the two uplinks (`cable` preferred, `backup`), and the phone's
/// services on CBoxIP: `download` on 7100, `ssh` on 2222.
pub const BOX_BODY: &str = "[[snapt]]\nname = \"relay\"\naddress = \"198.18.100.1:4433\"\nserver_name = \"198.18.100.1\"\n\
     [[uplink]]\nname = \"cable\"\nkind = \"wired\"\ninterface = \"eth1\"\nsource = \"198.18.2.2\"\n\
     [[uplink]]\nname = \"backup\"\nkind = \"wired\"\ninterface = \"eth2\"\nsource = \"198.18.3.2\"\ncost = 5\n\
     [[service]]\nname = \"download\"\nlisten = \"10.77.0.1:7100\"\n\
     [[service]]\nname = \"ssh\"\nlisten = \"10.77.0.1:2222\"\n";

/// Starts, in the internet namespace, the download server (`chunk` bytes
/// every 20 ms), OpenSSH (keys under the bed's `ssh/`) and snaptd with both
/// as services; returns sshd's process for the caller to end.
pub fn start_relay(bed: &mut Bed, chunk: usize) -> std::process::Child {
    download_server("inet", 7001, chunk, Duration::from_millis(20)).unwrap();
    let (sshd, _) = sshd("inet", &bed.path("ssh")).unwrap();
    bed.pki(&["server", "relay", "--san", RELAY]);
    let p = bed.path("pki");
    let relay_sock = bed.path("relay.sock");
    bed.wrapper = ["ip", "netns", "exec", "inet"].map(String::from).to_vec();
    bed.start(
        "snaptd",
        "relay",
        &format!(
            "listen = \"{RELAY}:4433\"\ncontrol_socket = \"{}\"\n\
             [tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/relay.pem\"\nkey = \"{p}/servers/relay.key\"\ncrl = \"{p}/crl.pem\"\n\
             [[service]]\nname = \"download\"\ntarget = \"127.0.0.1:7001\"\n\
             [[service]]\nname = \"ssh\"\ntarget = \"127.0.0.1:22\"\n",
            relay_sock.display(),
            p = p.display()
        ),
    );
    bed.wrapper.clear();
    let until = Instant::now() + Duration::from_secs(30);
    while !relay_sock.exists() {
        assert!(
            Instant::now() < until,
            "snaptd did not start:\n{}",
            bed.log("relay")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sshd
}

/// Lines of the SSH session: 16 s, the switches take about 11.
const SSH_LINES: u32 = 160;

fn status(sock: &Path) -> Value {
    ctl(sock, &["status"]).unwrap_or(Value::Null)
}

fn on(sock: &Path, uplink: &str) -> bool {
    let s = status(sock);
    s["sites"][0]["state"] == "Established" && s["sites"][0]["uplink"] == uplink
}

fn wait_on(sock: &Path, uplink: &str, what: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while !on(sock, uplink) {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log(t0: Instant, what: &str) {
    println!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
}

/// From the phone's namespace `ns`: a download (every byte checked) and an SSH session (160 lines, one
/// per 100 ms) through the box, while the box makes a planned switch to
/// the backup uplink and then loses it (a sudden switch back to the
/// cable). Asserts nothing was lost or reset and both handovers completed.
pub fn across_switches(sock: &Path, ns: &str, key: &Path, t0: Instant) {
    wait_on(sock, "cable", "the session on the cable");
    let dl = Download::start(ns, "10.77.0.1:7100".parse().unwrap());
    let ssh = ssh_ticks(ns, key, "10.77.0.1", 2222, SSH_LINES);
    let until = Instant::now() + Duration::from_secs(30);
    while dl.bytes.load(Ordering::Relaxed) < 100_000 {
        assert!(Instant::now() < until, "no download through the box");
        std::thread::sleep(Duration::from_millis(100));
    }
    log(t0, "download and SSH running through the box");
    ctl(sock, &["mode", "manual"]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let planned = Instant::now();
    ctl(sock, &["switch", "backup"]).unwrap();
    wait_on(sock, "backup", "the planned switch");
    log(
        t0,
        &format!(
            "planned switch to the backup uplink in {:.2} s",
            planned.elapsed().as_secs_f64()
        ),
    );
    std::thread::sleep(Duration::from_secs(5));
    let cut = Instant::now();
    let ok = Command::new("ip")
        .args(["link", "set", "eth2", "down"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    wait_on(sock, "cable", "the sudden switch");
    log(
        t0,
        &format!(
            "backup uplink lost: on the cable after {:.2} s",
            cut.elapsed().as_secs_f64()
        ),
    );
    let ssh = ssh.join().unwrap();
    let bytes = dl.bytes.load(Ordering::Relaxed);
    let gap = dl.max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let r = dl.finish(Duration::from_secs(10));
    log(
        t0,
        &format!(
            "download: {bytes} bytes, every one right, longest gap {gap:.0} ms: {r:?}; SSH: {SSH_LINES} lines, longest gap {:?} ms",
            ssh.as_ref().map(|d| d.as_millis())
        ),
    );
    r.unwrap();
    ssh.unwrap();
    let s = status(sock);
    for h in s["handovers"].as_array().unwrap() {
        println!(
            "  handover {} {}→{} stall {:.0} ms: {}",
            h["kind"],
            h["from_uplink"],
            h["to_uplink"],
            h["stall_ms"].as_f64().unwrap_or(0.0),
            h["outcome"]["result"]
        );
        assert_eq!(h["outcome"]["result"], "completed", "{h}");
    }
    // Back as it was, for whatever the test does next.
    let _ = Command::new("ip")
        .args(["link", "set", "eth2", "up"])
        .status();
    ctl(sock, &["mode", "automatic"]).unwrap();
}

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
