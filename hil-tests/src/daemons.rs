//! The relay daemons of a cbox run: the PKI issued by `cboxctl pki`, the
//! configuration files of snaptd (internet namespace) and cnaptd (box
//! namespace) with one service per application, and starting them — snaptd
//! again after a scripted restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::apps::{box_port, port};
use crate::procs::{Procs, bin, cboxctl_pki, log, status};
use crate::topology::{Topology, addr};

/// Timers of both daemons in the world: a lost path is noticed within a
/// second, a session survives 30 s without any path.
const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1000\nswitch_timeout_ms = 30000\n";

/// The box's decision task in the world: the defaults, with hysteresis
/// short enough for scenarios of a dozen seconds (a better uplink must stay
/// good 2 s, switches for betterment at least 4 s apart, a degraded uplink
/// left behind not returned to for 6 s, standby uplinks probed every
/// second).
const DECISION: &str = "[decision]\ndwell_ms = 2000\nmin_interval_ms = 4000\nhold_down_ms = 6000\nprobe_interval_ms = 1000\n";

/// The `[session]` and `[decision]` sections of a scenario's boxes: the
/// test timers, or nothing (the shipped defaults).
pub fn timers(sc: &crate::scenario::Scenario) -> (&'static str, &'static str) {
    if sc.shipped_defaults {
        ("", "")
    } else {
        (SESSION, DECISION)
    }
}

/// The daemons' files under a run's folder.
#[derive(Debug)]
pub struct Daemons {
    dir: PathBuf,
    /// cnaptd's control socket.
    pub box_sock: PathBuf,
    /// The emulated LTE modem's AT port (a symlink to its pty).
    pub modem_port: PathBuf,
    /// The emulated wpa_supplicant's control socket.
    pub wpa_ctrl: PathBuf,
    /// The box's preferred uplink, where every timeline starts.
    preferred: &'static str,
    /// Three relays behind HAProxy instead of one snaptd.
    fleet: bool,
}

/// The fleet's relays: (name on the certificate, port in the internet,
/// process name). The first is "snaptd" so that the report's relay figures
/// are one relay's, as without a fleet.
pub const RELAYS: [(&str, u16, &str); 3] = [
    ("relay-1.cbox.world", 4441, "snaptd"),
    ("relay-2.cbox.world", 4442, "snaptd-2"),
    ("relay-3.cbox.world", 4443, "snaptd-3"),
];

/// Where the world's wpa_supplicant emulator listens.
fn wpa_ctrl_path(dir: &Path) -> PathBuf {
    dir.join("wpa/wlan0")
}

impl Daemons {
    /// Issues the PKI and writes both configuration files under `dir`.
    /// With `wired`, the box's first (preferred) uplink is the cable.
    /// With `transparent`, PAN clients' TCP is redirected and the SNAPT
    /// allows the box the internet host's web server only.
    /// With `pan`, the box also relays DNS for its PAN clients.
    /// With `shipped_defaults`, no test timers: the daemons' own defaults.
    pub fn configure(dir: &Path, sc: &crate::scenario::Scenario) -> anyhow::Result<Self> {
        let (wired, transparent, pan) = (sc.wired_wan, sc.transparent, sc.pan_dhcp);
        let (session, decision) = timers(sc);
        let pki = dir.join("pki");
        for args in [
            &["init"][..],
            &["server", "snapt", "--san", addr::INTERNET],
            &["box", "box-sim"],
        ] {
            cboxctl_pki(&pki, args)?;
        }
        crate::fleet::issue(&pki)?;
        if sc.relay_fleet {
            for (i, (name, ..)) in RELAYS.iter().enumerate() {
                cboxctl_pki(
                    &pki,
                    &["server", &format!("relay-{}", i + 1), "--san", name],
                )?;
            }
        }
        let box_sock = dir.join("cnaptd.sock");
        let modem_port = dir.join("ttyLTE");
        let (i, c, p) = (addr::INTERNET, addr::CBOX_IP, pki.display());
        // (name, port in the internet, port on the box, protocol)
        let services = [
            ("web", port::WEB, box_port::WEB, "tcp"),
            ("echo", port::ECHO, box_port::ECHO, "tcp"),
            ("ssh", port::SSH, box_port::SSH, "tcp"),
            ("udp-echo", port::UDP_ECHO, box_port::UDP_ECHO, "udp"),
        ];
        let push = if sc.udp_push {
            format!("client_service_addresses = [\"{}\"]\n", addr::PUSH)
        } else {
            String::new()
        };
        let head = |port: u16, sock: &str, cert: &str| {
            format!(
                "listen = \"{i}:{port}\"\ncontrol_socket = \"{}\"\n{push}\
                 [tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/{cert}.pem\"\nkey = \"{p}/servers/{cert}.key\"\ncrl = \"{p}/crl.pem\"\n",
                dir.join(sock).display()
            )
        };
        let mut snapt = String::new();
        let relay_line = if sc.relay_fleet {
            let names: Vec<String> = RELAYS.iter().map(|(n, ..)| format!("\"{n}\"")).collect();
            format!("relays = [{}]", names.join(", "))
        } else {
            format!("server_name = \"{i}\"")
        };
        let mut cnapt = format!(
            "box_id = \"box-sim\"\ncontrol_socket = \"{}\"\n\
             [tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/boxes/box-sim.pem\"\nkey = \"{p}/boxes/box-sim.key\"\n\
             [[snapt]]\nname = \"internet\"\naddress = \"{i}:4433\"\n{relay_line}\n{}\
             [[uplink]]\nname = \"wifi\"\nkind = \"wifi\"\ninterface = \"wlan0\"\nsource = \"{}\"\n\
             [uplink.wifi]\nctrl = \"{}\"\npoll_interval_ms = 500\n[[uplink.wifi.network]]\nssid = \"{}\"\npsk = \"{}\"\n\
             [[uplink]]\nname = \"lte\"\nkind = \"lte\"\ninterface = \"wwan0\"\nsource = \"{}\"\ncost = 5\n\
             [uplink.modem]\nport = \"{}\"\napn = \"cbox.world\"\npoll_interval_ms = 1000\n",
            box_sock.display(),
            if wired {
                format!(
                    "[[uplink]]\nname = \"cable\"\nkind = \"wired\"\ninterface = \"eth1\"\nsource = \"{}\"\n",
                    addr::BOX_CABLE
                )
            } else {
                String::new()
            },
            addr::BOX_WIFI,
            wpa_ctrl_path(dir).display(),
            crate::wifi_world::SSID,
            crate::wifi_world::PSK,
            addr::BOX_LTE,
            modem_port.display(),
        );
        for (name, target, listen, proto) in services {
            // Compressed when the scenario says so: the web and echo
            // services (SSH is encrypted; datagrams never are).
            let compress = match sc.compress {
                Some(codec) if proto == "tcp" && name != "ssh" => {
                    format!("compress = \"{}\"\n", codec.name())
                }
                _ => String::new(),
            };
            snapt += &format!(
                "[[service]]\nname = \"{name}\"\ntarget = \"{i}:{target}\"\nprotocol = \"{proto}\"\n{compress}"
            );
            cnapt += &format!(
                "[[service]]\nname = \"{name}\"\nlisten = \"{c}:{listen}\"\nprotocol = \"{proto}\"\n{compress}"
            );
        }
        if sc.live.is_some() {
            // The live stream's service, whose applications are told of
            // the path: the relay's feed for the server, the page's event
            // stream and the PAN announcement for the phone.
            use crate::live::port as live;
            snapt += &format!(
                "[[service]]\nname = \"live\"\ntarget = \"{i}:{}\"\nqos_notify = true\n[qos]\nlisten = \"{i}:{}\"\n",
                live::SERVER,
                live::FEED
            );
            cnapt += &format!(
                "[[service]]\nname = \"live\"\nlisten = \"{c}:{}\"\nqos_notify = true\n[qos]\nmulticast = \"{}\"\n",
                live::BOX,
                live::GROUP
            );
        }
        if pan {
            // DNS for PAN clients: a UDP service to the resolver next to
            // the SNAPT, so names resolve through the tunnel.
            snapt +=
                &format!("[[service]]\nname = \"dns\"\ntarget = \"{i}:53\"\nprotocol = \"udp\"\n");
            cnapt +=
                &format!("[[service]]\nname = \"dns\"\nlisten = \"{c}:53\"\nprotocol = \"udp\"\n");
            // The laptop's Ethernet PAN port: cnaptd puts it in the bridge.
            cnapt += "[pan]\nbridge = \"pan0\"\nethernet = [\"eth0\"]\n";
        }
        if sc.udp_push {
            let port = crate::apps::box_port::UDP_PUSH;
            snapt += &format!(
                "[[client_service]]\nname = \"udp-push\"\nport = {port}\nprotocol = \"udp\"\nboxes = [\"box-sim\"]\n"
            );
            cnapt += &format!(
                "[[client_service]]\nname = \"udp-push\"\nconnect = \"{}:{port}\"\nprotocol = \"udp\"\n",
                addr::PHONE
            );
        }
        if transparent {
            snapt += &format!(
                "[[policy]]\nbox = \"box-sim\"\nallow = [\"{i}/32:{}\", \"{i}/32:{}\"]\n",
                port::WEB,
                port::UDP_ECHO
            );
            cnapt += &format!(
                "[transparent]\nlisten = \"{c}:{}\"\ninterface = \"pan0\"\n",
                box_port::TRANSPARENT
            );
        }
        if sc.relay_fleet {
            for (n, (_, port, _)) in RELAYS.iter().enumerate() {
                let name = format!("relay-{}", n + 1);
                std::fs::write(
                    dir.join(format!("{name}.toml")),
                    head(*port, &format!("{name}.sock"), &name) + &snapt + session,
                )?;
            }
            std::fs::write(dir.join("haproxy.cfg"), haproxy_config(i))?;
        }
        std::fs::write(
            dir.join("snapt.toml"),
            head(4433, "snaptd.sock", "snapt") + &snapt + session,
        )?;
        std::fs::write(
            dir.join("cnapt.toml"),
            cnapt + session + decision + &crate::fleet::cnapt_sections(),
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            box_sock,
            modem_port,
            wpa_ctrl: wpa_ctrl_path(dir),
            preferred: if wired { "cable" } else { "wifi" },
            fleet: sc.relay_fleet,
        })
    }

    /// The relay the box's session is on and its process (fleet
    /// scenarios).
    pub fn box_relay(&self) -> anyhow::Result<(String, &'static str)> {
        let v = status(&self.box_sock).context("no status from cnaptd")?;
        let relay = v["sites"][0]["relay"]
            .as_str()
            .context("the box names no relay (not a relay_fleet scenario?)")?
            .to_owned();
        RELAYS
            .iter()
            .find(|(n, ..)| *n == relay)
            .map(|(.., proc_name)| (relay.clone(), *proc_name))
            .with_context(|| format!("unknown relay {relay}"))
    }

    /// The relays' names (the fleet's three, or the single relay's
    /// address, which is what its boxes name).
    pub fn relay_names(&self) -> Vec<String> {
        if self.fleet {
            RELAYS.iter().map(|(n, ..)| (*n).to_owned()).collect()
        } else {
            vec![addr::INTERNET.to_owned()]
        }
    }

    /// The relays' process names (one, or the fleet's three).
    pub fn relay_procs(&self) -> Vec<&'static str> {
        if self.fleet {
            RELAYS.iter().map(|(.., p)| *p).collect()
        } else {
            vec!["snaptd"]
        }
    }

    /// Starts the relays again after a restart (the fleet's router keeps
    /// running).
    pub fn start_relays(&self, world: &Topology, procs: &mut Procs) -> anyhow::Result<()> {
        if self.fleet {
            self.start_fleet_relays(world, procs)
        } else {
            self.start_snaptd(world, procs)
        }
    }

    /// Starts snaptd in the internet namespace (kept as "snaptd") and waits
    /// until it listens.
    pub fn start_snaptd(&self, world: &Topology, procs: &mut Procs) -> anyhow::Result<()> {
        if self.fleet {
            return self.start_fleet(world, procs);
        }
        // A restarted snaptd appends to the same log.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("snaptd.log"))?;
        let c = world
            .exec("internet", bin("snaptd")?.to_str().context("path")?)
            .arg("-c")
            .arg(self.dir.join("snapt.toml"))
            .stderr(file)
            .spawn()?;
        procs.push("snaptd", c);
        world.wait_listening("internet", 4433, Duration::from_secs(10))
    }

    /// `cboxctl snapt upgrade` on the relay (of a fleet: the box's own):
    /// the new process takes the old one's place in `procs`. Returns the
    /// run's note.
    pub fn upgrade_snaptd(&self, procs: &mut Procs) -> anyhow::Result<String> {
        let (sock, proc_name, relay) = if self.fleet {
            let (relay, proc_name) = self.box_relay()?;
            let n = RELAYS
                .iter()
                .position(|(r, ..)| *r == relay)
                .context("the box's relay is not one of the fleet")?;
            (format!("relay-{}.sock", n + 1), proc_name, relay)
        } else {
            ("snaptd.sock".into(), "snaptd", "the relay".into())
        };
        let out = std::process::Command::new(bin("cboxctl")?)
            .arg("--json")
            .arg("snapt")
            .arg("--snapt-socket")
            .arg(self.dir.join(sock))
            .arg("upgrade")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "snaptd upgrade refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let pid = v["successor_pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .context("no successor pid in the upgrade's answer")?;
        procs.succeeded_by(proc_name, pid);
        Ok(format!(
            "{relay} upgraded: pid {pid} took over {} sessions, {} connections, {} flows; handover {} ms",
            v["sessions"], v["connections"], v["flows"], v["handover_ms"]
        ))
    }

    /// The fleet: three snaptd and HAProxy in front of them, in the
    /// internet namespace.
    fn start_fleet(&self, world: &Topology, procs: &mut Procs) -> anyhow::Result<()> {
        self.start_fleet_relays(world, procs)?;
        let c = world
            .exec("internet", "haproxy")
            .arg("-db")
            .arg("-f")
            .arg(self.dir.join("haproxy.cfg"))
            .stderr(log(&self.dir, "haproxy")?)
            .spawn()
            .context("haproxy (apt-get install haproxy; the test command installs it)")?;
        procs.push("haproxy", c);
        world.wait_listening("internet", 4433, Duration::from_secs(10))
    }

    /// The fleet's three snaptd (a restarted one appends to its log).
    fn start_fleet_relays(&self, world: &Topology, procs: &mut Procs) -> anyhow::Result<()> {
        for (n, (_, port, proc_name)) in RELAYS.iter().enumerate() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{proc_name}.log")))?;
            let c = world
                .exec("internet", bin("snaptd")?.to_str().context("path")?)
                .arg("-c")
                .arg(self.dir.join(format!("relay-{}.toml", n + 1)))
                .stderr(file)
                .spawn()?;
            procs.push(proc_name, c);
            world.wait_listening("internet", *port, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Starts cnaptd in the box namespace and waits (at most 20 s, or until
    /// `stopped` says so) for its session on the preferred uplink (Wi-Fi,
    /// or the cable when there is one) with every uplink measured good:
    /// every timeline starts there. Returns the handovers the box made on
    /// the way (a start over LTE while Wi-Fi was associating), which are
    /// not the scenario's.
    pub fn start_cnaptd(
        &self,
        world: &Topology,
        procs: &mut Procs,
        stopped: impl Fn() -> bool,
    ) -> anyhow::Result<u64> {
        let c = world
            .exec("box", bin("cnaptd")?.to_str().context("path")?)
            .arg("-c")
            .arg(self.dir.join("cnapt.toml"))
            .stderr(log(&self.dir, "cnaptd")?)
            .spawn()?;
        procs.push("cnaptd", c);
        // Settled: on the preferred uplink, every uplink measured good (a
        // slow start — a debug build, a loaded machine — may have lost a
        // first probe and moved the box for a moment), the warm standby
        // bound.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = status(&self.box_sock) {
                let site = &v["sites"][0];
                let all_good = v["uplinks"].as_array().is_some_and(|u| {
                    u.iter()
                        .all(|x| x["health"] == "good" && !x["rtt_ms"].is_null())
                });
                if site["state"] == "Established"
                    && site["uplink"] == self.preferred
                    && all_good
                    && !site["standby"].is_null()
                {
                    return Ok(site["switches"].as_u64().unwrap_or(0));
                }
            }
            if Instant::now() > until || stopped() {
                bail!(
                    "the box did not settle on {} with every uplink good and a standby within 30 s; logs in {}",
                    self.preferred,
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// HAProxy in TCP mode routing on the TLS SNI to the fleet's relays, with
/// the health checks docs/operations.md recommends.
fn haproxy_config(internet: &str) -> String {
    let mut c = format!(
        "global\n    maxconn 4000\n\
         defaults\n    mode tcp\n    timeout connect 500ms\n    timeout client 60s\n    timeout server 60s\n    retries 0\n    default-server check inter 500ms fall 2 rise 2\n\
         frontend relays\n    bind {internet}:4433\n    tcp-request inspect-delay 5s\n    tcp-request content accept if {{ req_ssl_hello_type 1 }}\n"
    );
    for (n, (name, ..)) in RELAYS.iter().enumerate() {
        c += &format!("    use_backend r{n} if {{ req.ssl_sni -i {name} }}\n");
    }
    for (n, (_, port, _)) in RELAYS.iter().enumerate() {
        c += &format!("backend r{n}\n    server s{n} {internet}:{port}\n");
    }
    c
}
