//! The applications of a run and their servers: python's web server and
//! curl (a large download, SHA-256 checked), our echo servers with the
//! interactive record stream and the UDP datagram stream, Debian's sshd and
//! ssh (an SSH session typing records through `cat`); and what each
//! application's summary says.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::procs::{Procs, log, status};
use crate::scenario::Scenario;
use crate::topology::{Topology, addr};

/// Ports in the internet namespace.
pub mod port {
    /// python's http.server.
    pub const WEB: u16 = 8000;
    /// TCP echo.
    pub const ECHO: u16 = 7000;
    /// UDP echo.
    pub const UDP_ECHO: u16 = 7002;
    /// sshd.
    pub const SSH: u16 = 2222;
    /// The MPTCP echo of the baselines.
    pub const MPTCP_ECHO: u16 = 7100;
    /// The MPTCP file server of the baselines' bulk download.
    pub const MPTCP_WEB: u16 = 8100;
}

/// Ports the box listens on (CBoxIP), one per service.
pub mod box_port {
    /// → web.
    pub const WEB: u16 = 8080;
    /// → echo.
    pub const ECHO: u16 = 7001;
    /// → UDP echo.
    pub const UDP_ECHO: u16 = 7003;
    /// → sshd.
    pub const SSH: u16 = 2022;
    /// Redirected connections (transparent mode).
    pub const TRANSPARENT: u16 = 7999;
    /// The UDP client service: the port at the relay's per-box address,
    /// and the phone's echo behind it.
    pub const UDP_PUSH: u16 = 9100;
}

/// The file the fresh-connection check downloads after the timeline.
const SMALL: usize = 1 << 20;

/// Deterministic bytes: the download's content (any prefix of `pattern(n)`
/// is `pattern(m)` for m < n).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Starts the web server, both echo servers and sshd in the internet
/// namespace, with the files and keys they serve under `dir`.
pub fn start_servers(
    world: &Topology,
    dir: &Path,
    sc: &Scenario,
    procs: &mut Procs,
) -> anyhow::Result<()> {
    let i = addr::INTERNET;
    let web = dir.join("www");
    std::fs::create_dir_all(&web)?;
    std::fs::write(web.join("file.bin"), pattern(sc.download_mib << 20))?;
    std::fs::write(web.join("small.bin"), pattern(SMALL))?;
    let apps = apps_dir();
    let web_srv = world
        .exec("internet", "python3")
        .args(["-m", "http.server", &port::WEB.to_string(), "--bind", i])
        .arg("--directory")
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(log(dir, "web")?)
        .spawn()?;
    procs.push("web", web_srv);
    for (name, port, mode) in [
        ("echo", port::ECHO, "tcp"),
        ("udp-echo", port::UDP_ECHO, "udp"),
    ] {
        let c = world
            .exec("internet", "python3")
            .arg(apps.join("echo_server.py"))
            .args([i, &port.to_string(), mode])
            .stderr(log(dir, name)?)
            .spawn()?;
        procs.push(name, c);
    }
    if let Some(mode) = sc.live {
        use crate::live::port as live;
        let c = world
            .exec("internet", "python3")
            .arg(apps.join("live_stream.py"))
            .args(["serve", i, &live::SERVER.to_string(), mode.name()])
            .arg(dir.join("live-sender.json"))
            .args([&format!("{i}:{}", live::FEED), "box-sim", "live"])
            .stderr(log(dir, "live-sender")?)
            .spawn()?;
        procs.push("live-sender", c);
        world.wait_listening("internet", live::SERVER, Duration::from_secs(10))?;
    }
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        bail!("{} is missing: install openssh-server", sshd.display());
    }
    let ssh = ssh_keys(dir)?;
    // sshd insists on its privilege-separation directory.
    std::fs::create_dir_all("/run/sshd")?;
    let s = world
        .exec("internet", "/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(ssh.join("sshd_config"))
        .stderr(log(dir, "sshd")?)
        .spawn()?;
    procs.push("sshd", s);
    for p in [port::WEB, port::ECHO, port::UDP_ECHO, port::SSH] {
        world.wait_listening("internet", p, Duration::from_secs(10))?;
    }
    Ok(())
}

/// The folder of the python applications.
pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// Host and client keys and an sshd_config of our own under `dir/ssh`
/// (root login by key only, nothing of the machine's sshd configuration).
fn ssh_keys(dir: &Path) -> anyhow::Result<PathBuf> {
    let ssh = dir.join("ssh");
    std::fs::create_dir_all(&ssh)?;
    for key in ["host_key", "id"] {
        let _ = std::fs::remove_file(ssh.join(key));
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cbox-world", "-f"])
            .arg(ssh.join(key))
            .output()
            .context("ssh-keygen (install openssh-client)")?;
        if !out.status.success() {
            bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    std::fs::copy(ssh.join("id.pub"), ssh.join("authorized_keys"))?;
    std::fs::write(
        ssh.join("sshd_config"),
        format!(
            "Port {}\nListenAddress {}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPidFile none\nClientAliveInterval 0\n",
            port::SSH,
            addr::INTERNET,
            d = ssh.display()
        ),
    )?;
    Ok(ssh)
}

/// The phone's applications of a cbox run: where their results land.
#[derive(Debug)]
pub struct PhoneApps {
    /// curl's output file.
    pub got: PathBuf,
    /// The interactive stream's summary.
    pub interactive: PathBuf,
    /// The SSH session's summary.
    pub ssh: PathBuf,
    /// The UDP stream's summary.
    pub udp: PathBuf,
    /// The pushed UDP stream's summary (the server's side), when the
    /// scenario has one.
    pub pushed: Option<PathBuf>,
    /// The live stream's phone side, when the scenario has one.
    pub live: Option<PathBuf>,
}

impl PhoneApps {
    /// Starts curl, the interactive stream, the SSH session and the UDP
    /// stream on the phone, all through the box's services.
    pub fn start(
        world: &Topology,
        dir: &Path,
        sc: &Scenario,
        procs: &mut Procs,
    ) -> anyhow::Result<Self> {
        let c = addr::CBOX_IP;
        let apps = apps_dir();
        let me = Self {
            got: dir.join("got.bin"),
            interactive: dir.join("interactive.json"),
            ssh: dir.join("ssh.json"),
            udp: dir.join("udp.json"),
            pushed: sc.udp_push.then(|| dir.join("pushed.json")),
            live: sc.live.map(|_| dir.join("live.json")),
        };
        // In transparent mode the phone asks the server itself; the box
        // redirects the connection.
        let url = if sc.transparent {
            format!("http://{}:{}/file.bin", addr::INTERNET, port::WEB)
        } else {
            format!("http://{c}:{}/file.bin", box_port::WEB)
        };
        let curl = curl_download(world, "phone", &url, &me.got, dir, sc)?;
        procs.push("curl", curl);
        let secs = sc.duration_s.to_string();
        let stream = world
            .exec("phone", "python3")
            .arg(apps.join("interactive.py"))
            .args([c, &box_port::ECHO.to_string(), &secs])
            .arg(&me.interactive)
            .stderr(log(dir, "interactive")?)
            .spawn()?;
        procs.push("interactive", stream);
        let ssh_dir = dir.join("ssh");
        let ssh = world
            .exec("phone", "python3")
            .arg(apps.join("interactive.py"))
            .args(["-", "-", &secs])
            .arg(&me.ssh)
            .args(["--", "ssh", "-F", "/dev/null", "-i"])
            .arg(ssh_dir.join("id"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=20",
                "-p",
                &box_port::SSH.to_string(),
                &format!("root@{c}"),
                "cat",
            ])
            .stderr(log(dir, "ssh")?)
            .spawn()?;
        procs.push("ssh", ssh);
        // In transparent mode the datagrams, too, go to the server itself
        // (diverted by the box: TPROXY).
        let (udp_host, udp_port) = if sc.transparent {
            (addr::INTERNET, port::UDP_ECHO)
        } else {
            (c, box_port::UDP_ECHO)
        };
        let udp = world
            .exec("phone", "python3")
            .arg(apps.join("udp_stream.py"))
            .args([udp_host, &udp_port.to_string(), &secs])
            .arg(&me.udp)
            .stderr(log(dir, "udp")?)
            .spawn()?;
        procs.push("udp", udp);
        if let Some(out) = &me.pushed {
            // The phone's UDP service, and a server pushing to it through
            // the box's client-service address at the relay.
            let push_port = box_port::UDP_PUSH.to_string();
            let echo = world
                .exec("phone", "python3")
                .arg(apps.join("echo_server.py"))
                .args([addr::PHONE, &push_port, "udp"])
                .stderr(log(dir, "push-echo")?)
                .spawn()?;
            procs.push("push-echo", echo);
            let pusher = world
                .exec("internet", "python3")
                .arg(apps.join("udp_stream.py"))
                .args([addr::PUSH, &push_port, &secs])
                .arg(out)
                .stderr(log(dir, "udp-push")?)
                .spawn()?;
            procs.push("udp-push", pusher);
        }
        if let Some(out) = &me.live {
            use crate::live::port as live;
            let page = format!(
                "http://{c}:{}/qos/events?service=live",
                crate::fleet::WEB_PORT
            );
            let rx = world
                .exec("phone", "python3")
                .arg(apps.join("live_stream.py"))
                .args(["recv", c, &live::BOX.to_string(), &secs])
                .arg(out)
                .args([&page, live::GROUP])
                .stderr(log(dir, "live")?)
                .spawn()?;
            procs.push("live", rx);
        }
        Ok(me)
    }

    /// Every application has finished.
    pub fn done(&self, procs: &mut Procs) -> bool {
        procs.exited("curl").is_some()
            && self.interactive.exists()
            && self.ssh.exists()
            && self.udp.exists()
            && self.pushed.as_ref().is_none_or(|p| p.exists())
            && self.live.as_ref().is_none_or(|p| p.exists())
    }
}

/// What a record stream (the interactive one or the SSH session) saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamFigures {
    /// Records sent.
    pub sent: u64,
    /// Records echoed intact.
    pub echoed: u64,
    /// Echoed records duplicated, reordered or corrupted.
    pub corrupted: u64,
    /// Largest gap between two echoes (ms): the application-visible stall.
    pub max_stall_ms: f64,
    /// How the connection broke, if it did.
    pub broken: Option<String>,
    /// Round trip of the records: median and 99th percentile (ms).
    pub rtt_p50_ms: Option<f64>,
    /// See `rtt_p50_ms`.
    pub rtt_p99_ms: Option<f64>,
}

impl StreamFigures {
    /// Reads the summary `interactive.py` wrote; a missing or unreadable one
    /// is a broken stream.
    pub fn read(path: &Path) -> Self {
        let v: serde_json::Value = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if v.is_null() {
            return Self {
                broken: Some(format!("no summary in {}", path.display())),
                ..Self::default()
            };
        }
        let sent = v["sent"].as_u64().unwrap_or(0);
        Self {
            sent,
            echoed: v["echoed"].as_u64().unwrap_or(0),
            corrupted: v["damaged"].as_u64().unwrap_or(0),
            max_stall_ms: v["max_gap_ms"].as_f64().unwrap_or(0.0),
            rtt_p50_ms: v["rtt_p50_ms"].as_f64(),
            rtt_p99_ms: v["rtt_p99_ms"].as_f64(),
            broken: match v["error"].as_str() {
                Some(e) => Some(format!("{e} at {} s", v["broken_at_s"])),
                None if sent == 0 => Some("nothing was sent".into()),
                None => None,
            },
        }
    }

    /// Records lost, duplicated, reordered or corrupted.
    pub fn damaged(&self) -> u64 {
        self.corrupted + self.sent.saturating_sub(self.echoed)
    }
}

/// What the UDP stream saw. Datagrams are not replayed: losses while no
/// tunnel carries data are expected; duplicates and corruption are not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UdpFigures {
    /// Datagrams sent.
    pub sent: u64,
    /// Distinct datagrams echoed intact.
    pub echoed: u64,
    /// Echoed twice.
    pub duplicated: u64,
    /// Echoed altered.
    pub corrupted: u64,
    /// Largest gap between two echoes (ms).
    pub max_gap_ms: f64,
    /// Echoes still arrived in the stream's last second.
    pub flowing_at_end: bool,
}

impl UdpFigures {
    /// Reads the summary `udp_stream.py` wrote.
    pub fn read(path: &Path) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        Some(Self {
            sent: v["sent"].as_u64()?,
            echoed: v["echoed"].as_u64()?,
            duplicated: v["duplicated"].as_u64()?,
            corrupted: v["corrupted"].as_u64()?,
            max_gap_ms: v["max_gap_ms"].as_f64()?,
            flowing_at_end: v["echoed_last_second"].as_u64()? > 0,
        })
    }

    /// Nothing duplicated or altered, and the stream flows again.
    pub fn ok(&self) -> bool {
        self.duplicated == 0 && self.corrupted == 0 && self.flowing_at_end && self.echoed > 0
    }
}

/// What arrived of the download: its length, whether it is the whole file
/// intact, and whether what arrived is at least an intact prefix of it.
pub fn download(got: &Path, mib: usize) -> (u64, bool, bool) {
    let bytes = std::fs::read(got).unwrap_or_default();
    let prefix_ok = bytes == pattern(bytes.len());
    let whole =
        bytes.len() == mib << 20 && Sha256::digest(&bytes) == Sha256::digest(pattern(mib << 20));
    (bytes.len() as u64, whole, prefix_ok)
}

/// Starts curl in `role` downloading `url` to `out`, rate-limited unless the
/// scenario is a bulk one; its `-w` line (bytes, seconds) goes to
/// `dir/curl.out` for [`download_mbit`].
pub fn curl_download(
    world: &Topology,
    role: &str,
    url: &str,
    out: &Path,
    dir: &Path,
    sc: &Scenario,
) -> anyhow::Result<std::process::Child> {
    let mut c = world.exec(role, "curl");
    c.args(["-sS", "-w", "%{size_download} %{time_total}\n"]);
    if !sc.bulk {
        c.args([
            "--limit-rate",
            &format!("{}K", (sc.download_rate_mb * 1000.0) as u64),
        ]);
    }
    let written = std::fs::File::create(dir.join("curl.out"))?;
    Ok(c.arg("-o")
        .arg(out)
        .arg(url)
        .stdout(written)
        .stderr(log(dir, "curl")?)
        .spawn()?)
}

/// The download's rate (Mbit/s) from curl's `-w` line or `bulk.py`'s
/// summary under `dir`, if it finished.
pub fn download_mbit(dir: &Path) -> Option<f64> {
    if let Ok(v) = std::fs::read(dir.join("bulk.json"))
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&v)
    {
        return v["mbit_s"].as_f64();
    }
    let text = std::fs::read_to_string(dir.join("curl.out")).ok()?;
    let mut it = text.split_whitespace();
    let bytes: f64 = it.next()?.parse().ok()?;
    let secs: f64 = it.next()?.parse().ok()?;
    (bytes > 0.0 && secs > 0.0).then(|| bytes * 8.0 / secs / 1e6)
}

/// After the timeline: the box is (again) connected and a new connection
/// through it works — a 1 MiB download arrives intact.
pub fn fresh_download(world: &Topology, dir: &Path, box_sock: &Path) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    while !status(box_sock).is_some_and(|v| v["sites"][0]["state"] == "Established") {
        if Instant::now() > until {
            bail!("the box was not connected 30 s after the timeline");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out_file = dir.join("fresh.bin");
    let url = format!("http://{}:{}/small.bin", addr::CBOX_IP, box_port::WEB);
    let out = world
        .exec("phone", "curl")
        .args(["-sS", "-m", "30", "-o"])
        .arg(&out_file)
        .arg(&url)
        .output()?;
    if !out.status.success() {
        bail!(
            "a new download after the timeline failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if std::fs::read(&out_file)? != pattern(SMALL) {
        bail!("a new download after the timeline arrived damaged");
    }
    Ok(())
}

/// Transparent mode's refusal: a destination outside the SNAPT's policy
/// (the internet host's sshd) must not be reached; `Err` if it was.
pub fn transparent_refused(world: &Topology) -> anyhow::Result<String> {
    let url = format!("http://{}:{}/", addr::INTERNET, port::SSH);
    let out = world
        .exec("phone", "curl")
        .args(["-sS", "-m", "15", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(&url)
        .output()?;
    if out.status.success() {
        bail!("transparent mode let the phone reach {url}, which the policy does not allow");
    }
    Ok(format!(
        "transparent mode refused {url} (outside the policy): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}
