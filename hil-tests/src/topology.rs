//! Network namespaces of one simulated world, built with `ip` and `nft`, and
//! torn down when the [`Topology`] is dropped (success, failure or panic).
//!
//! ```text
//!  phone ──ph0══pan-ph──[pan0] box ──wlan0══a─[radio-wifi]─b══box0── isp-wifi ──up0══wifi0── internet
//!   198.18.77.23      198.18.77.1     198.18.10.2                   .10.1     198.18.11.2  .11.1  198.18.30.1 (lo)
//!                                 └──wwan0══a─[radio-lte]──b══box0── isp-lte (NAT) ──up0══lte0──┘
//!                                    198.18.20.2                   .20.1     198.18.21.2  .21.1
//!                                 └──eth1═══box0── isp-cable ──up0══cable0──┘   (wired WAN, optional)
//!                                    198.18.40.2   .40.1       198.18.41.2  .41.1
//!
//! The radios are namespaces where `radio::Radio` forwards frames between
//! `a` and `b` with delay, jitter, loss, rate and outages.
//! ```

use std::process::Command;

use anyhow::{Context, bail};

/// Addresses of the world (all inside 198.18.0.0/15).
pub mod addr {
    /// The box's PAN address (CBoxIP): what the phone talks to.
    pub const CBOX_IP: &str = "198.18.77.1";
    /// The phone.
    pub const PHONE: &str = "198.18.77.23";
    /// The box on its Wi-Fi uplink.
    pub const BOX_WIFI: &str = "198.18.10.2";
    /// The box on its LTE uplink.
    pub const BOX_LTE: &str = "198.18.20.2";
    /// The box on its wired WAN (when the world has one).
    pub const BOX_CABLE: &str = "198.18.40.2";
    /// The internet host running snaptd and the application servers.
    pub const INTERNET: &str = "198.18.30.1";
    /// The second box's wired address (fleet scenarios).
    pub const BOX2: &str = "198.18.50.2";
    /// The box's client-service address at the SNAPT (on the internet
    /// host): what servers push to.
    pub const PUSH: &str = "198.18.30.10";
}

/// The namespaces of one run. Names carry the creating process id, so a
/// later run can tell a stale set (its creator is gone) from a live one.
#[derive(Debug)]
pub struct Topology {
    /// Name prefix (`cbx<pid>`).
    pub prefix: String,
    created: Vec<String>,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Deletes namespaces left by earlier runs whose process is gone.
pub fn clean_stale() -> anyhow::Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("cbx") else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let alive = !pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            run(&["ip", "netns", "del", name])?;
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

impl Topology {
    /// Namespace name of `role` (`phone`, `box`, `isp-wifi`, `isp-lte`, `internet`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// `ip netns exec NS` + `cmd` as a ready-to-spawn command.
    pub fn exec(&self, role: &str, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role), cmd]);
        c
    }

    /// Waits (at most `limit`) until something in `role` listens on TCP
    /// `port` or has bound UDP `port`: a server started a moment ago is not
    /// ready at once.
    pub fn wait_listening(
        &self,
        role: &str,
        port: u16,
        limit: std::time::Duration,
    ) -> anyhow::Result<()> {
        let until = std::time::Instant::now() + limit;
        let filter = format!("sport = :{port}");
        loop {
            let out = self.exec(role, "ss").args(["-Hltun", &filter]).output()?;
            if out.status.success() && !out.stdout.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() > until {
                bail!(
                    "nothing listens on port {port} in {} after {limit:?}",
                    self.ns(role)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs `ip -n NS ARGS…`.
    pub fn ip(&self, role: &str, args: &[&str]) -> anyhow::Result<()> {
        let ns = self.ns(role);
        let mut all = vec!["ip", "-n", ns.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Builds the world, with a wired WAN (`eth1` to a site router) if
    /// `wired`. Needs root (CAP_NET_ADMIN) and `ip`, `nft`.
    pub fn build(wired: bool) -> anyhow::Result<Self> {
        let prefix = format!("cbx{}", std::process::id());
        let mut t = Self {
            prefix,
            created: Vec::new(),
        };
        for role in [
            "phone",
            "box",
            "radio-wifi",
            "radio-lte",
            "isp-wifi",
            "isp-lte",
            "internet",
        ] {
            let ns = t.ns(role);
            run(&["ip", "netns", "add", &ns])?;
            t.created.push(ns);
            t.ip(role, &["link", "set", "lo", "up"])?;
        }
        // veth pairs: (ns a, if a, ns b, if b)
        let links = [
            ("phone", "ph0", "box", "pan-ph"),
            // Each uplink passes through its radio (the link emulator).
            ("box", "wlan0", "radio-wifi", "rad-a"),
            ("radio-wifi", "rad-b", "isp-wifi", "box0"),
            ("box", "wwan0", "radio-lte", "rad-a"),
            ("radio-lte", "rad-b", "isp-lte", "box0"),
            ("isp-wifi", "up0", "internet", "wifi0"),
            ("isp-lte", "up0", "internet", "lte0"),
        ];
        for (a, ia, b, ib) in links {
            let (na, nb) = (t.ns(a), t.ns(b));
            run(&[
                "ip", "link", "add", ia, "netns", &na, "type", "veth", "peer", "name", ib, "netns",
                &nb,
            ])?;
            t.ip(a, &["link", "set", ia, "up"])?;
            t.ip(b, &["link", "set", ib, "up"])?;
        }
        // A packet socket sees frames before the kernel fills in offloaded
        // checksums and before segmentation: around the radios, the kernel
        // must hand over finished, MTU-sized frames.
        for (role, dev) in [
            ("box", "wlan0"),
            ("box", "wwan0"),
            ("radio-wifi", "rad-a"),
            ("radio-wifi", "rad-b"),
            ("radio-lte", "rad-a"),
            ("radio-lte", "rad-b"),
            ("isp-wifi", "box0"),
            ("isp-lte", "box0"),
        ] {
            let ns = t.ns(role);
            run(&[
                "ip", "netns", "exec", &ns, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso",
                "off", "gso", "off", "gro", "off",
            ])?;
        }
        // The box: PAN bridge and uplinks.
        t.ip("box", &["link", "add", "pan0", "type", "bridge"])?;
        t.ip("box", &["link", "set", "pan-ph", "master", "pan0"])?;
        t.ip("box", &["link", "set", "pan0", "up"])?;
        t.ip("box", &["addr", "add", "198.18.77.1/24", "dev", "pan0"])?;
        t.ip("phone", &["addr", "add", "198.18.77.23/24", "dev", "ph0"])?;
        t.ip("phone", &["route", "add", "default", "via", addr::CBOX_IP])?;
        t.ip("box", &["addr", "add", "198.18.10.2/24", "dev", "wlan0"])?;
        t.ip("box", &["addr", "add", "198.18.20.2/24", "dev", "wwan0"])?;
        // One default route per uplink; a tunnel bound to an interface
        // (SO_BINDTODEVICE) uses that interface's.
        t.ip(
            "box",
            &[
                "route",
                "add",
                "default",
                "via",
                "198.18.10.1",
                "dev",
                "wlan0",
                "metric",
                "100",
            ],
        )?;
        t.ip(
            "box",
            &[
                "route",
                "add",
                "default",
                "via",
                "198.18.20.1",
                "dev",
                "wwan0",
                "metric",
                "200",
            ],
        )?;
        // ISPs forward between the box and the internet.
        for (isp, net_box, net_up, peer) in [
            (
                "isp-wifi",
                "198.18.10.1/24",
                "198.18.11.2/24",
                "198.18.11.1",
            ),
            ("isp-lte", "198.18.20.1/24", "198.18.21.2/24", "198.18.21.1"),
        ] {
            t.ip(isp, &["addr", "add", net_box, "dev", "box0"])?;
            t.ip(isp, &["addr", "add", net_up, "dev", "up0"])?;
            t.ip(isp, &["route", "add", "default", "via", peer])?;
            run(&[
                "ip",
                "netns",
                "exec",
                &t.ns(isp),
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])?;
        }
        // The LTE carrier translates addresses (CGNAT): the server sees
        // 198.18.21.2, never the box's own LTE address.
        let lte = t.ns("isp-lte");
        run(&[
            "ip",
            "netns",
            "exec",
            &lte,
            "nft",
            "add table ip cgnat; add chain ip cgnat post { type nat hook postrouting priority 100; }; add rule ip cgnat post oifname up0 masquerade",
        ])?;
        if wired {
            t.add_cable()?;
        }
        // The internet host.
        t.ip("internet", &["addr", "add", "198.18.30.1/32", "dev", "lo"])?;
        t.ip("internet", &["addr", "add", "198.18.30.10/32", "dev", "lo"])?;
        t.ip(
            "internet",
            &["addr", "add", "198.18.11.1/24", "dev", "wifi0"],
        )?;
        t.ip(
            "internet",
            &["addr", "add", "198.18.21.1/24", "dev", "lte0"],
        )?;
        t.ip(
            "internet",
            &["route", "add", "198.18.10.0/24", "via", "198.18.11.2"],
        )?;
        Ok(t)
    }
}

impl Topology {
    /// A laptop on the box's Ethernet PAN port: `lap0` in namespace
    /// `laptop` to the box's `eth0`, which stays outside the bridge —
    /// cnaptd (`[pan] ethernet`) puts it in.
    pub fn add_laptop(&mut self) -> anyhow::Result<()> {
        let ns = self.ns("laptop");
        run(&["ip", "netns", "add", &ns])?;
        self.created.push(ns.clone());
        self.ip("laptop", &["link", "set", "lo", "up"])?;
        let bx = self.ns("box");
        run(&[
            "ip", "link", "add", "lap0", "netns", &ns, "type", "veth", "peer", "name", "eth0",
            "netns", &bx,
        ])?;
        self.ip("laptop", &["link", "set", "lap0", "up"])?;
        Ok(())
    }

    /// A second box on a wired site (`box2`: its `eth0` straight to the
    /// internet, 198.18.50.2; no radio, no NAT), for the fleet scenarios'
    /// second real cnaptd.
    pub fn add_second_box(&mut self) -> anyhow::Result<()> {
        let ns = self.ns("box2");
        run(&["ip", "netns", "add", &ns])?;
        self.created.push(ns.clone());
        self.ip("box2", &["link", "set", "lo", "up"])?;
        let internet = self.ns("internet");
        run(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", "box2",
            "netns", &internet,
        ])?;
        self.ip("box2", &["link", "set", "eth0", "up"])?;
        self.ip("internet", &["link", "set", "box2", "up"])?;
        self.ip(
            "box2",
            &["addr", "add", &format!("{}/24", addr::BOX2), "dev", "eth0"],
        )?;
        self.ip(
            "internet",
            &["addr", "add", "198.18.50.1/24", "dev", "box2"],
        )?;
        self.ip("box2", &["route", "add", "default", "via", "198.18.50.1"])?;
        Ok(())
    }

    /// The wired WAN: the box's `eth1` straight to a site router (no radio:
    /// a cable has no fading), which routes to the internet.
    fn add_cable(&mut self) -> anyhow::Result<()> {
        let ns = self.ns("isp-cable");
        run(&["ip", "netns", "add", &ns])?;
        self.created.push(ns.clone());
        self.ip("isp-cable", &["link", "set", "lo", "up"])?;
        for (a, ia, b, ib) in [
            ("box", "eth1", "isp-cable", "box0"),
            ("isp-cable", "up0", "internet", "cable0"),
        ] {
            let (na, nb) = (self.ns(a), self.ns(b));
            run(&[
                "ip", "link", "add", ia, "netns", &na, "type", "veth", "peer", "name", ib, "netns",
                &nb,
            ])?;
            self.ip(a, &["link", "set", ia, "up"])?;
            self.ip(b, &["link", "set", ib, "up"])?;
        }
        self.ip("box", &["addr", "add", "198.18.40.2/24", "dev", "eth1"])?;
        self.ip(
            "box",
            &[
                "route",
                "add",
                "default",
                "via",
                "198.18.40.1",
                "dev",
                "eth1",
                "metric",
                "50",
            ],
        )?;
        self.ip(
            "isp-cable",
            &["addr", "add", "198.18.40.1/24", "dev", "box0"],
        )?;
        self.ip(
            "isp-cable",
            &["addr", "add", "198.18.41.2/24", "dev", "up0"],
        )?;
        self.ip(
            "isp-cable",
            &["route", "add", "default", "via", "198.18.41.1"],
        )?;
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        self.ip(
            "internet",
            &["addr", "add", "198.18.41.1/24", "dev", "cable0"],
        )?;
        self.ip(
            "internet",
            &["route", "add", "198.18.40.0/24", "via", "198.18.41.2"],
        )
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace also removes its veth ends (and their peers).
        for ns in self.created.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}
