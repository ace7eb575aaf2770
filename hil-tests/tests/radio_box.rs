//! The radio bench, the whole box: the real cnaptd (shipped defaults) in the
//! radio VM with its Wi-Fi uplink on a mac80211_hwsim radio through Debian's
//! wpa_supplicant (nl80211), two hostapd access points of its network
//! bridged in an "ap" namespace, and a wired second uplink; the real snaptd
//! in an "internet" namespace. Both paths have netem on them (Wi-Fi 5 ms
//! ± 1 ms round trip, the second uplink 40 ms ± 5 ms, LTE-like), or with
//! `CBOX_RADIO_LINKS=emulator` the simulated world's userspace link
//! emulator with the same delays. An echo stream runs
//! through the tunnel the whole time while:
//!
//! 1. the access point in use fades (−80 dBm) with the other one strong:
//!    the box roams between them and the stream goes on;
//! 2. both fade below the warning threshold: a planned switch to the
//!    second uplink, by the box's own decision;
//! 3. both are strong again: the box returns to Wi-Fi after its hold-down;
//! 4. both go out of range: wpa_supplicant's disconnect and the radio's
//!    carrier loss make a sudden switch;
//!
//! and every byte comes back, in order. Then cnaptd restarted with a wrong
//! passphrase: `cboxctl status` shows the problem on the Wi-Fi uplink, the
//! box runs on the other uplink, nothing else is affected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hil_tests::radio_vm::{RadioVm, in_vm};
use relay_tests::apps::pattern;
use relay_tests::bed::{Bed, ctl};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSID: &str = "cbox-field";
const PSK: &str = "field-passphrase-1";
const RELAY: &str = "198.18.100.1";
const SERVICE_PORT: u16 = 7100;

#[test]
fn the_box_on_real_wifi_roams_switches_and_keeps_every_byte() {
    if in_vm() {
        guest();
        return;
    }
    let vm = RadioVm::find().unwrap();
    vm.run_test(
        "the_box_on_real_wifi_roams_switches_and_keeps_every_byte",
        Duration::from_secs(420),
    )
    .unwrap();
}

/// The radios and namespaces (the VM is thrown away afterwards, but the
/// processes are still ended on the way out of the test). Both uplinks'
/// paths cross the "lnk" namespace, where netem or the userspace link
/// emulator shapes them.
const NETWORK: &str = r#"
set -e
modprobe mac80211_hwsim radios=3
modprobe sch_netem
ip netns add ap
ip netns add inet
ip netns add lnk
iw phy phy0 set netns name ap
iw phy phy1 set netns name ap
# The access points' network: both radios bridged, the gateway on the bridge.
ip -n ap link add br0 type bridge
ip -n ap addr add 198.18.1.1/24 dev br0
ip -n ap link set br0 up
ip -n ap link set lo up
ip netns exec ap sysctl -qw net.ipv4.ip_forward=1
# Its backhaul to the internet, through lnk.
ip link add v-ap netns ap type veth peer name lw1 netns lnk
ip link add lw2 netns lnk type veth peer name v-inet netns inet
ip -n ap addr add 198.18.9.2/30 dev v-ap
ip -n ap link set v-ap up
ip -n inet addr add 198.18.9.1/30 dev v-inet
ip -n inet link set v-inet up
ip -n ap route add 198.18.100.0/24 via 198.18.9.1
# The internet: the relay on its own address.
ip -n inet link set lo up
ip -n inet addr add 198.18.100.1/32 dev lo
ip -n inet route add 198.18.1.0/24 via 198.18.9.2
ip netns exec inet sysctl -qw net.ipv4.ip_forward=1
# The second uplink, a cable into the internet namespace through lnk.
ip link add eth1 type veth peer name lc1 netns lnk
ip link add lc2 netns lnk type veth peer name v-wired netns inet
ip -n inet addr add 198.18.2.1/24 dev v-wired
ip -n inet link set v-wired up
ip addr add 198.18.2.2/24 dev eth1
ip link set eth1 up
for i in lw1 lw2 lc1 lc2; do ip -n lnk link set "$i" up; done
# The box's station.
ip addr add 198.18.1.2/24 dev wlan2
ip link set wlan2 up
ip route add default via 198.18.2.1 dev eth1 metric 200
ip route add default via 198.18.1.1 dev wlan2 metric 100 onlink
"#;

/// netem in lnk: each path bridged there, each direction delayed on its
/// way out (Wi-Fi 5 ms ± 1 ms round trip, the other 40 ms ± 5 ms).
const NETEM: &str = r#"
set -e
ip -n lnk link add brw type bridge
ip -n lnk link add brc type bridge
for i in lw1 lw2; do ip -n lnk link set "$i" master brw; done
for i in lc1 lc2; do ip -n lnk link set "$i" master brc; done
ip -n lnk link set brw up
ip -n lnk link set brc up
for i in lw1 lw2; do ip netns exec lnk tc qdisc add dev "$i" root netem delay 2500us 500us; done
for i in lc1 lc2; do ip netns exec lnk tc qdisc add dev "$i" root netem delay 20ms 2500us; done
"#;

/// For the userspace link emulator: finished, MTU-sized frames around it
/// (as in the simulated world).
const NO_OFFLOADS: &str = r#"
set -e
for i in lw1 lw2 lc1 lc2; do ip netns exec lnk ethtool -K "$i" tx off rx off tso off gso off gro off >/dev/null; done
ip netns exec ap ethtool -K v-ap tx off rx off tso off gso off gro off >/dev/null
ip netns exec inet ethtool -K v-inet tx off rx off tso off gso off gro off >/dev/null
ip netns exec inet ethtool -K v-wired tx off rx off tso off gso off gro off >/dev/null
ethtool -K eth1 tx off rx off tso off gso off gro off >/dev/null
"#;

/// What shapes the paths: `CBOX_RADIO_LINKS=emulator` for the simulated
/// world's userspace link emulator (the comparison in docs/performance.md),
/// netem otherwise.
fn use_emulator() -> bool {
    std::env::var("CBOX_RADIO_LINKS").is_ok_and(|v| v == "emulator")
}

struct Radios {
    dir: PathBuf,
    children: Vec<std::process::Child>,
    /// The userspace link emulators, when they shape the paths.
    emulators: Vec<hil_tests::radio::Radio>,
}

impl Drop for Radios {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Radios {
    fn start() -> Self {
        let dir = PathBuf::from("/tmp/radio-box");
        std::fs::create_dir_all(dir.join("hostapd")).unwrap();
        std::fs::create_dir_all(dir.join("wpa")).unwrap();
        let emulate = use_emulator();
        let script = format!("{NETWORK}{}", if emulate { NO_OFFLOADS } else { NETEM });
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "network set-up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r = Self {
            dir,
            children: Vec::new(),
            emulators: Vec::new(),
        };
        if emulate {
            use hil_tests::radio::{LinkParams, Radio};
            // The same delays as netem's: uniform within ± the jitter.
            let link = |delay_us: u64, jitter_us: u64| LinkParams {
                delay: Duration::from_micros(delay_us - jitter_us),
                jitter: Duration::from_micros(2 * jitter_us),
                loss: 0.0,
                rate_bps: 0,
                down: false,
            };
            r.emulators
                .push(Radio::start("lnk", "lw1", "lw2", link(2_500, 500)).unwrap());
            r.emulators
                .push(Radio::start("lnk", "lc1", "lc2", link(20_000, 2_500)).unwrap());
        }
        r.signal(0, -35);
        r.signal(1, -45);
        for (i, channel) in [(0, 1), (1, 6)] {
            let conf = r.dir.join(format!("ap{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "interface=wlan{i}\ndriver=nl80211\nbridge=br0\nctrl_interface={}\nssid={SSID}\n\
                     hw_mode=g\nchannel={channel}\nwpa=2\nwpa_key_mgmt=WPA-PSK\n\
                     rsn_pairwise=CCMP\nwpa_passphrase={PSK}\n",
                    r.dir.join("hostapd").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(r.dir.join(format!("ap{i}.log"))).unwrap();
            r.children.push(
                Command::new("ip")
                    .args(["netns", "exec", "ap", "hostapd"])
                    .arg(&conf)
                    .stdout(log)
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        let conf = r.dir.join("wpa.conf");
        // Scans limited to the bench's channels: a full scan of every band
        // takes some 20 s under emulation (2–4 s on a board), and the
        // radio would be scanning most of the time.
        std::fs::write(
            &conf,
            format!(
                "ctrl_interface={}\nfreq_list=2412 2437 2462\n",
                r.dir.join("wpa").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(r.dir.join("wpa.log")).unwrap();
        r.children.push(
            Command::new("wpa_supplicant")
                .args(["-D", "nl80211", "-i", "wlan2", "-c"])
                .arg(&conf)
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        r
    }

    /// Access point `ap`'s signal at the station (its radio's rx_rssi plus
    /// its 20 dBm; the radios are in the "ap" namespace, debugfs is not).
    fn signal(&self, ap: usize, dbm: i32) {
        let raw = i64::from(dbm - 20) as u64;
        std::fs::write(
            format!("/sys/kernel/debug/ieee80211/phy{ap}/hwsim/rx_rssi"),
            format!("{raw}\n"),
        )
        .unwrap();
    }

    fn in_range(&self, ap: usize, yes: bool) {
        std::fs::write(
            format!("/sys/kernel/debug/ieee80211/phy{ap}/hwsim/group"),
            if yes { "1\n" } else { "2\n" },
        )
        .unwrap();
    }

    fn ctrl(&self) -> PathBuf {
        self.dir.join("wpa/wlan2")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["wpa.log", "ap0.log", "ap1.log"] {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- {f} (last 12 lines)\n"));
            for l in &lines[lines.len().saturating_sub(12)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// An echo server in the internet namespace (a thread of its own, entered
/// into it, serving forever).
fn echo_server_in_inet() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let fd = std::fs::File::open("/run/netns/inet").unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", 7000))
                .await
                .unwrap();
            tx.send(()).unwrap();
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// What the echo stream saw.
#[derive(Debug, Default)]
struct Stream {
    sent: AtomicU64,
    echoed: AtomicU64,
    /// Longest time without an echoed byte, µs.
    max_gap_us: AtomicU64,
    stop: AtomicBool,
}

/// Writes 4 KiB every 20 ms (about 1.6 Mbit/s) until told to stop, reads
/// the echo and checks every byte against the pattern at its offset.
async fn echo_stream(addr: SocketAddr, st: Arc<Stream>) -> Result<(), String> {
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let data = Arc::new(pattern(42, 1 << 20));
    let (mut r, mut w) = s.into_split();
    let (d, st2) = (data.clone(), st.clone());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut off = 0usize;
        let mut last = Instant::now();
        loop {
            let n = r
                .read(&mut buf)
                .await
                .map_err(|e| format!("read at {off}: {e}"))?;
            if n == 0 {
                return Ok::<usize, String>(off);
            }
            for (i, b) in buf[..n].iter().enumerate() {
                if *b != d[(off + i) % d.len()] {
                    return Err(format!("byte {} differs", off + i));
                }
            }
            off += n;
            st2.echoed.store(off as u64, Ordering::Relaxed);
            let gap = last.elapsed().as_micros() as u64;
            st2.max_gap_us.fetch_max(gap, Ordering::Relaxed);
            last = Instant::now();
        }
    });
    let mut off = 0usize;
    while !st.stop.load(Ordering::Relaxed) {
        let start = off % data.len();
        let end = (start + 4096).min(data.len());
        w.write_all(&data[start..end])
            .await
            .map_err(|e| format!("write at {off}: {e}"))?;
        off += end - start;
        st.sent.store(off as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.shutdown().await.map_err(|e| e.to_string())?;
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .map_err(|_| "the echo did not end within 60 s".to_string())?
        .map_err(|e| e.to_string())??;
    if got != off {
        return Err(format!("{got} bytes came back of {off}"));
    }
    Ok(())
}

fn log(t0: Instant, what: &str) {
    println!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
}

fn status(sock: &Path) -> Value {
    ctl(sock, &["status"]).unwrap_or_else(|e| Value::String(format!("cboxctl status failed: {e}")))
}

/// Polls the box's status (each cboxctl run costs a few hundred ms under
/// emulation) until `f` holds, at most `limit`.
fn wait_status(sock: &Path, limit: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + limit;
    loop {
        let s = status(sock);
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < until,
            "{what}: not within {limit:?}; status {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn on(s: &Value, uplink: &str) -> bool {
    s["sites"][0]["state"] == "Established" && s["sites"][0]["uplink"] == uplink
}

fn records(s: &Value) -> Vec<String> {
    s["handovers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    format!(
                        "{} {}→{} ({}) stall {:.0} ms",
                        h["kind"].as_str().unwrap_or("?"),
                        h["from_uplink"].as_str().unwrap_or("none"),
                        h["to_uplink"].as_str().unwrap_or("?"),
                        h["reason"].as_str().unwrap_or(""),
                        h["stall_ms"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cnapt_body(radios: &Radios, psk: &str) -> String {
    format!(
        "[[snapt]]\nname = \"relay\"\naddress = \"{RELAY}:4433\"\nserver_name = \"{RELAY}\"\n\
         [[uplink]]\nname = \"wifi\"\nkind = \"wifi\"\ninterface = \"wlan2\"\nsource = \"198.18.1.2\"\n\
         [uplink.wifi]\nctrl = \"{}\"\n[[uplink.wifi.network]]\nssid = \"{SSID}\"\npsk = \"{psk}\"\n\
         [[uplink]]\nname = \"cable\"\nkind = \"wired\"\ninterface = \"eth1\"\nsource = \"198.18.2.2\"\ncost = 5\n\
         [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{SERVICE_PORT}\"\n",
        radios.ctrl().display()
    )
}

fn guest() {
    let t0 = Instant::now();
    let radios = Radios::start();
    log(
        t0,
        if use_emulator() {
            "radios, access points, namespaces and the userspace link emulator up"
        } else {
            "radios, access points, namespaces and netem up"
        },
    );
    echo_server_in_inet();
    let mut bed = Bed::new("radio-box");
    bed.pki(&["server", "relay", "--san", RELAY]);
    let p = bed.path("pki");
    let relay_sock = bed.path("relay.sock");
    let relay_conf = format!(
        "listen = \"{RELAY}:4433\"\ncontrol_socket = \"{}\"\n\
         [tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/relay.pem\"\nkey = \"{p}/servers/relay.key\"\ncrl = \"{p}/crl.pem\"\n\
         [[service]]\nname = \"echo\"\ntarget = \"127.0.0.1:7000\"\n",
        relay_sock.display(),
        p = p.display()
    );
    bed.wrapper = ["ip", "netns", "exec", "inet"].map(String::from).to_vec();
    bed.start("snaptd", "relay", &relay_conf);
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
    bed.env.push((
        "RUST_LOG".into(),
        std::env::var("CBOX_RADIO_LOG")
            .unwrap_or_else(|_| "info,box_os::wifi=debug,box_driver::radios=debug".into()),
    ));
    let sock = bed.cnaptd("box-radio", &cnapt_body(&radios, PSK));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        phases(&mut bed, &radios, &sock, t0);
    }));
    if let Err(e) = outcome {
        // What cnaptd is doing, if it is still there (a hang shows here).
        if let Some(d) = bed.daemons.iter().find(|d| d.name == "box-radio") {
            let pid = d.pid().to_string();
            if let Ok(o) = Command::new("gdb")
                .args(["-p", &pid, "-batch", "-ex", "thread apply all bt 30"])
                .output()
            {
                println!(
                    "--- cnaptd's threads\n{}",
                    String::from_utf8_lossy(&o.stdout)
                );
            }
        }
        println!("{}", radios.logs());
        println!("--- cnaptd (last 150 lines)");
        let l = bed.log("box-radio");
        let lines: Vec<&str> = l.lines().collect();
        for x in &lines[lines.len().saturating_sub(150)..] {
            println!("{x}");
        }
        std::panic::resume_unwind(e);
    }
}

fn phases(bed: &mut Bed, radios: &Radios, sock: &Path, t0: Instant) {
    let s = wait_status(sock, Duration::from_secs(90), "established on Wi-Fi", |s| {
        on(s, "wifi")
    });
    let first = s["uplinks"][0]["wifi"]["bssid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    log(
        t0,
        &format!("established over Wi-Fi (access point {first})"),
    );
    // The paths as shaped, measured.
    for dev in ["wlan2", "eth1"] {
        let o = Command::new("ping")
            .args(["-I", dev, "-c", "20", "-i", "0.05", "-q", RELAY])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let rtt = text
            .lines()
            .find(|l| l.contains("min/avg"))
            .unwrap_or("no answer");
        log(t0, &format!("path over {dev}: {rtt}"));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let st = Arc::new(Stream::default());
    let stream = rt.spawn(echo_stream(
        SocketAddr::from(([127, 0, 0, 1], SERVICE_PORT)),
        st.clone(),
    ));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        st.echoed.load(Ordering::Relaxed) > 0,
        "nothing echoed through the tunnel"
    );

    // 1. The access point in use fades, the other one is strong: a roam.
    let (cur, other) = if first.ends_with(":00:00:00") {
        (0, 1)
    } else {
        (1, 0)
    };
    radios.signal(other, -40);
    radios.signal(cur, -80);
    let fade = Instant::now();
    let s = wait_status(sock, Duration::from_secs(90), "roamed", |s| {
        s["uplinks"][0]["wifi"]["bssid"]
            .as_str()
            .is_some_and(|b| b != first)
    });
    log(
        t0,
        &format!(
            "access point {first} faded to -80 dBm: roamed to {} after {:.1} s",
            s["uplinks"][0]["wifi"]["bssid"],
            fade.elapsed().as_secs_f64(),
        ),
    );
    let s = wait_status(
        sock,
        Duration::from_secs(90),
        "on Wi-Fi after the roam",
        |s| on(s, "wifi"),
    );
    log(
        t0,
        &format!(
            "on Wi-Fi at {} {:.1} s after the fade, roams {}, records {:?}",
            s["uplinks"][0]["wifi"]["bssid"],
            fade.elapsed().as_secs_f64(),
            s["uplinks"][0]["wifi"]["roams"],
            records(&s)
        ),
    );
    let before = s["handovers"].as_array().map_or(0, Vec::len);

    // 2. Both fade below the warning threshold: a planned switch.
    radios.signal(0, -80);
    radios.signal(1, -80);
    let fade = Instant::now();
    let s = wait_status(
        sock,
        Duration::from_secs(90),
        "planned switch to the cable",
        |s| on(s, "cable"),
    );
    let recs = records(&s);
    log(
        t0,
        &format!(
            "both at -80 dBm: on the cable after {:.1} s: {:?}",
            fade.elapsed().as_secs_f64(),
            &recs[before..]
        ),
    );
    let h = s["handovers"].as_array().unwrap().last().unwrap().clone();
    assert_ne!(
        h["kind"], "sudden",
        "a fading signal is left by a planned switch: {h}"
    );
    assert!(h["reason"].as_str().unwrap_or("").contains("signal"), "{h}");

    // 3. Strong again: back on Wi-Fi, after the hold-down.
    let left = Instant::now();
    radios.signal(0, -35);
    radios.signal(1, -40);
    let s = wait_status(sock, Duration::from_secs(120), "back on Wi-Fi", |s| {
        on(s, "wifi")
    });
    let back = left.elapsed();
    log(
        t0,
        &format!(
            "strong again: back on Wi-Fi after {:.1} s: {:?}",
            back.as_secs_f64(),
            records(&s).last()
        ),
    );
    assert!(
        back >= Duration::from_secs(25),
        "returned after {back:?}, within the hold-down"
    );

    // 4. Out of range: a sudden switch.
    std::thread::sleep(Duration::from_secs(3));
    radios.in_range(0, false);
    radios.in_range(1, false);
    let gone = Instant::now();
    let s = wait_status(
        sock,
        Duration::from_secs(60),
        "sudden switch to the cable",
        |s| on(s, "cable"),
    );
    log(
        t0,
        &format!(
            "out of range: on the cable after {:.1} s: {:?}",
            gone.elapsed().as_secs_f64(),
            records(&s).last()
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    st.stop.store(true, Ordering::Relaxed);
    let r = rt.block_on(stream).unwrap();
    let sent = st.sent.load(Ordering::Relaxed);
    log(
        t0,
        &format!(
            "echo stream: {sent} bytes sent, {} back, largest gap {:.0} ms: {r:?}",
            st.echoed.load(Ordering::Relaxed),
            st.max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0
        ),
    );
    r.unwrap();
    // CBOX_RADIO_DEBUG=1: cnaptd's radio and decision lines as well.
    if std::env::var_os("CBOX_RADIO_DEBUG").is_some() {
        for l in bed
            .log("box-radio")
            .lines()
            .filter(|l| l.contains("scan") || l.contains("roam") || l.contains("decision"))
        {
            println!("    {l}");
        }
    }
    let s = status(sock);
    for h in s["handovers"].as_array().unwrap() {
        assert_eq!(h["outcome"]["result"], "completed", "{h}");
    }
    println!("records:\n  {}", records(&s).join("\n  "));

    // The wrong passphrase: cnaptd restarted with it, the access points in
    // range again.
    radios.in_range(0, true);
    radios.in_range(1, true);
    bed.daemons.retain(|d| d.name != "box-radio");
    let sock = bed.cnaptd("box-radio", &cnapt_body(radios, "not-the-passphrase"));
    let s = wait_status(
        sock.as_path(),
        Duration::from_secs(120),
        "the wrong passphrase shown",
        |s| {
            s["uplinks"][0]["wifi"]["problem"]
                .as_str()
                .is_some_and(|p| p.contains("wrong passphrase"))
        },
    );
    log(
        t0,
        &format!("wrong passphrase: {}", s["uplinks"][0]["wifi"]["problem"]),
    );
    let s = wait_status(
        sock.as_path(),
        Duration::from_secs(60),
        "running on the cable",
        |s| on(s, "cable"),
    );
    assert!(
        s["uplinks"][0]["wifi"]["ssid"].is_null(),
        "associated with a wrong passphrase: {s}"
    );
    let out = Command::new(relay_tests::bed::bin("cboxctl"))
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wrong passphrase"), "cboxctl status:\n{text}");
    log(
        t0,
        "cboxctl status names the wrong passphrase; the box runs on the cable",
    );
}
