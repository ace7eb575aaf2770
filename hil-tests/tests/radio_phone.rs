//! The radio bench, a phone on the box's own Wi-Fi access point: the real
//! cnaptd drives a real hostapd (the image's base configuration,
//! yocto-layer/…/cbox-ap.conf) on a mac80211_hwsim radio bridged into pan0;
//! the phone is a real wpa_supplicant (nl80211) on another radio in a
//! namespace of its own, joining with what `cboxctl pan wifi` gives (the QR
//! code's content). The box's two uplinks are cables into an internet
//! namespace through netem (5 ms ± 1 ms and 40 ms ± 5 ms round trip), the
//! real snaptd there, with a paced download server and a real OpenSSH
//! server behind it.
//!
//! 1. Outside a pairing window the access point (`outside_window =
//!    "closed"`) is up but hidden (no name in its beacons); `cboxctl pan
//!    pair` makes it visible, closing hides it again — the phone stays
//!    joined.
//! 2. The phone joins with WPA3 (SAE) during the window, gets a DHCP lease
//!    naming router and DNS, and cnaptd lists it. A stranger with the
//!    passphrase who tries outside a window is refused by hostapd.
//! 3. A download (every byte checked) and an SSH session (a line every
//!    100 ms) run through the box while it makes a planned switch and then
//!    loses the uplink in use (a sudden switch): nothing is reset, every
//!    byte and every line arrives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod phone;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hil_tests::radio_vm::{RadioVm, in_vm, workspace_root};
use relay_tests::bed::{Bed, ctl};
use serde_json::Value;

const RELAY: &str = "198.18.100.1";
const DIR: &str = "/tmp/radio-phone";

#[test]
fn a_phone_on_the_box_wifi_keeps_its_download_and_ssh_across_handovers() {
    if in_vm() {
        guest();
        return;
    }
    let vm = RadioVm::find().unwrap();
    vm.run_test(
        "a_phone_on_the_box_wifi_keeps_its_download_and_ssh_across_handovers",
        Duration::from_secs(360),
    )
    .unwrap();
}

/// Radios, namespaces, uplinks through netem, the PAN bridge.
const NETWORK: &str = r#"
set -e
modprobe mac80211_hwsim radios=3
modprobe sch_netem
ip netns add phone
ip netns add stranger
iw phy phy2 set netns name stranger
ip -n stranger link set wlan2 up
ip netns add inet
ip netns add lnk
iw phy phy1 set netns name phone
ip -n phone link set lo up
ip -n phone link set wlan1 up
ip -n inet link set lo up
ip -n inet addr add 198.18.100.1/32 dev lo
ip netns exec inet sysctl -qw net.ipv4.ip_forward=1
# Two uplinks, cables into the internet through lnk, netem on each way.
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
# The PAN bridge with CBoxIP (the image: pan0.netdev/.network).
ip link add pan0 type bridge
ip addr add 10.77.0.1/24 dev pan0
ip link set pan0 up
"#;

fn log(t0: Instant, what: &str) {
    println!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes of the bench, ended on every way out.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(procs: &mut Procs, args: &[&str], log: &str) {
    let out = std::fs::File::create(Path::new(DIR).join(log)).unwrap();
    procs.0.push(
        Command::new(args[0])
            .args(&args[1..])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
}

/// The image's hostapd configuration for the box's access point, on this
/// bench's radio and folders (the `cbox` group does not exist here).
fn hostapd_conf() -> PathBuf {
    let shipped = workspace_root()
        .join("yocto-layer/meta-cbox/recipes-connectivity/cbox-ap/files/cbox-ap.conf");
    let text = std::fs::read_to_string(&shipped).unwrap();
    for key in [
        "interface=wlan1",
        "bridge=pan0",
        "start_disabled=1",
        "ctrl_interface=/run/hostapd",
    ] {
        assert!(
            text.lines().any(|l| l == key),
            "{} lacks {key}",
            shipped.display()
        );
    }
    let text = text
        .replace("interface=wlan1", "interface=wlan0")
        .replace("ctrl_interface_group=cbox", "ctrl_interface_group=0")
        .replace(
            "ctrl_interface=/run/hostapd",
            &format!("ctrl_interface={DIR}/hostapd"),
        );
    let p = Path::new(DIR).join("cbox-ap.conf");
    std::fs::write(&p, text).unwrap();
    p
}

fn status(sock: &Path) -> Value {
    ctl(sock, &["status"]).unwrap_or(Value::Null)
}

/// The SSIDs the phone's radio hears in beacons right now ("" for a
/// hidden one).
fn phone_scan() -> Vec<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", "phone", "iw", "dev", "wlan1", "scan", "freq", "2437",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SSID:").map(|s| s.trim().to_string()))
        .collect()
}

/// Parses the fields of a `WIFI:` URI (unescaping `\x`).
fn wifi_uri(uri: &str) -> std::collections::HashMap<char, String> {
    let body = uri.strip_prefix("WIFI:").unwrap();
    let mut out = std::collections::HashMap::new();
    let (mut key, mut val, mut esc, mut in_val) = (' ', String::new(), false, false);
    for c in body.chars() {
        if esc {
            val.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if !in_val {
            if c == ':' {
                in_val = true;
            } else {
                key = c;
            }
        } else if c == ';' {
            out.insert(key, std::mem::take(&mut val));
            in_val = false;
        } else {
            val.push(c);
        }
    }
    out
}

fn guest() {
    let t0 = Instant::now();
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(Path::new(DIR).join("hostapd")).unwrap();
    sh(NETWORK);
    let mut procs = Procs(Vec::new());
    let conf = hostapd_conf();
    spawn(
        &mut procs,
        &["hostapd", conf.to_str().unwrap()],
        "hostapd.log",
    );
    // The box's DHCP server on the bridge (the image: networkd's
    // DHCPServer= with EmitRouter and EmitDNS; here dnsmasq, same options).
    spawn(
        &mut procs,
        &[
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--interface=pan0",
            "--bind-dynamic",
            "--dhcp-range=10.77.0.16,10.77.0.215,1h",
            "--dhcp-option=option:router,10.77.0.1",
            "--dhcp-option=option:dns-server,10.77.0.1",
            "--dhcp-leasefile=/tmp/radio-phone/leases",
        ],
        "dnsmasq.log",
    );
    phone::download_server("inet", 7001, 8 * 1024, Duration::from_millis(20)).unwrap();
    let (sshd, key) = phone::sshd("inet", &Path::new(DIR).join("ssh")).unwrap();
    procs.0.push(sshd);
    log(
        t0,
        "radios, netem uplinks, hostapd (BSS disabled), pan0, download and SSH servers up",
    );

    let mut bed = Bed::new("radio-phone");
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
    wait(Duration::from_secs(30), "snaptd", || relay_sock.exists());
    // The box's passphrase: made by `cboxctl pki box` (Bed issues the box's
    // certificate with it), as at provisioning.
    let pass_file = bed.path("pki/boxes/box-phone.ap-passphrase");
    let sock = bed.cnaptd(
        "box-phone",
        &format!(
            "[[snapt]]\nname = \"relay\"\naddress = \"{RELAY}:4433\"\nserver_name = \"{RELAY}\"\n\
             [[uplink]]\nname = \"cable\"\nkind = \"wired\"\ninterface = \"eth1\"\nsource = \"198.18.2.2\"\n\
             [[uplink]]\nname = \"backup\"\nkind = \"wired\"\ninterface = \"eth2\"\nsource = \"198.18.3.2\"\ncost = 5\n\
             [pan]\nbridge = \"pan0\"\nethernet = []\n\
             [pan.wifi]\ninterface = \"wlan0\"\nctrl = \"{DIR}/hostapd/wlan0\"\n\
             passphrase_file = \"{}\"\nstations_file = \"{DIR}/ap-stations.json\"\noutside_window = \"closed\"\n\
             [[service]]\nname = \"download\"\nlisten = \"10.77.0.1:7100\"\n\
             [[service]]\nname = \"ssh\"\nlisten = \"10.77.0.1:2222\"\n",
            pass_file.display()
        ),
    );
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        phases(&mut procs, &sock, &key, t0);
    }));
    if let Err(e) = outcome {
        for (name, text) in [
            (
                "cnaptd",
                bed.log("box-phone")
                    .lines()
                    .filter(|l| !l.contains("routing"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            ("snaptd", bed.log("relay")),
            (
                "hostapd",
                std::fs::read_to_string(Path::new(DIR).join("hostapd.log")).unwrap_or_default(),
            ),
            (
                "phone's wpa_supplicant",
                std::fs::read_to_string(Path::new(DIR).join("phone-wpa.log")).unwrap_or_default(),
            ),
            (
                "sshd",
                std::fs::read_to_string(Path::new(DIR).join("ssh/sshd.log")).unwrap_or_default(),
            ),
        ] {
            let lines: Vec<&str> = text.lines().collect();
            println!("--- {name} (last 40 lines)");
            for l in &lines[lines.len().saturating_sub(40)..] {
                println!("{l}");
            }
        }
        std::panic::resume_unwind(e);
    }
}

fn phases(procs: &mut Procs, sock: &Path, key: &Path, t0: Instant) {
    // 1. The access point: up, hidden outside a pairing window.
    let s = wait_ap(sock, "the access point up", |a| a["state"] == "enabled");
    log(t0, &format!("access point up: {}", s["wifi_ap"]));
    assert_eq!(s["wifi_ap"]["visible"], false, "outside a window: hidden");
    let heard = phone_scan();
    log(t0, &format!("outside a window the phone hears {heard:?}"));
    assert!(!heard.is_empty(), "the phone hears no access point at all");
    assert!(
        !heard.iter().any(|x| x.starts_with("cbox-")),
        "a hidden access point's name in its beacons: {heard:?}"
    );
    ctl(sock, &["pan", "pair", "--seconds", "60"]).unwrap();
    wait_ap(sock, "visible in the window", |a| a["visible"] == true);
    let heard = phone_scan();
    log(
        t0,
        &format!("pairing window open: the phone hears {heard:?}"),
    );
    assert!(heard.contains(&"cbox-box-phone".to_string()), "{heard:?}");

    // 2. The phone joins with what the join code says.
    let join = ctl(sock, &["pan", "wifi"]).unwrap();
    let f = wifi_uri(join["uri"].as_str().unwrap());
    assert_eq!(f[&'S'], "cbox-box-phone");
    assert_eq!(f.get(&'H').map(String::as_str), Some("true"));
    let pconf = Path::new(DIR).join("phone-wpa.conf");
    std::fs::write(
        &pconf,
        format!(
            "ctrl_interface={DIR}/phone-wpa\nnetwork={{\n ssid=\"{}\"\n psk=\"{}\"\n sae_password=\"{}\"\n \
             key_mgmt=SAE WPA-PSK\n ieee80211w=1\n scan_ssid=1\n}}\n",
            f[&'S'], f[&'P'], f[&'P']
        ),
    )
    .unwrap();
    let joining = Instant::now();
    spawn(
        procs,
        &[
            "ip",
            "netns",
            "exec",
            "phone",
            "wpa_supplicant",
            "-D",
            "nl80211",
            "-i",
            "wlan1",
            "-c",
            pconf.to_str().unwrap(),
        ],
        "phone-wpa.log",
    );
    let s = wait_ap(sock, "the phone joined", |a| {
        a["stations"].as_array().is_some_and(|l| !l.is_empty())
    });
    let wpa = sh(&format!(
        "ip netns exec phone wpa_cli -p {DIR}/phone-wpa -i wlan1 status"
    ));
    let mgmt = wpa
        .lines()
        .find(|l| l.starts_with("key_mgmt="))
        .unwrap_or("?")
        .to_string();
    log(
        t0,
        &format!(
            "the phone joined in {:.1} s ({mgmt}); cnaptd lists {}",
            joining.elapsed().as_secs_f64(),
            s["wifi_ap"]["stations"]
        ),
    );
    assert_eq!(mgmt, "key_mgmt=SAE", "a WPA3 phone uses WPA3");
    ctl(sock, &["pan", "close"]).unwrap();
    wait_ap(sock, "hidden again", |a| a["visible"] == false);
    let still = sh(&format!(
        "ip netns exec phone wpa_cli -p {DIR}/phone-wpa -i wlan1 status"
    ));
    assert!(
        still.contains("wpa_state=COMPLETED"),
        "closing the window dropped the phone: {still}"
    );
    log(t0, "window closed: hidden again, the phone stays joined");

    // A stranger with the passphrase (a photo of the label), outside a
    // window: refused.
    let sconf = Path::new(DIR).join("stranger-wpa.conf");
    std::fs::write(
        &sconf,
        std::fs::read_to_string(&pconf)
            .unwrap()
            .replace("phone-wpa", "stranger-wpa"),
    )
    .unwrap();
    spawn(
        procs,
        &[
            "ip",
            "netns",
            "exec",
            "stranger",
            "wpa_supplicant",
            "-D",
            "nl80211",
            "-i",
            "wlan2",
            "-c",
            sconf.to_str().unwrap(),
        ],
        "stranger-wpa.log",
    );
    let s = wait_ap(sock, "the stranger refused", |a| {
        a["strangers_refused"].as_u64() >= Some(1)
    });
    std::thread::sleep(Duration::from_secs(4));
    let st = sh(&format!(
        "ip netns exec stranger wpa_cli -p {DIR}/stranger-wpa -i wlan2 status"
    ));
    let state = st
        .lines()
        .find(|l| l.starts_with("wpa_state="))
        .unwrap_or("?")
        .to_string();
    let s2 = status(sock);
    log(
        t0,
        &format!(
            "a stranger outside the window: refused {} time(s), 4 s later {state}; phones joined {}",
            s2["wifi_ap"]["strangers_refused"], s2["wifi_ap"]["stations"]
        ),
    );
    assert_ne!(state, "wpa_state=COMPLETED", "the stranger got on");
    assert_eq!(s["wifi_ap"]["known_phones"], 1, "{}", s["wifi_ap"]);
    assert_eq!(
        s2["wifi_ap"]["stations"].as_array().map(Vec::len),
        Some(1),
        "only the phone: {}",
        s2["wifi_ap"]
    );

    let script = workspace_root().join("hil-tests/apps/udhcpc.sh");
    let lease = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns", "exec", "phone", "busybox", "udhcpc", "-i", "wlan1", "-n", "-q", "-t", "10",
            "-s",
        ])
        .arg(&script)
        .env("LEASE_FILE", Path::new(DIR).join("phone.lease"))
        .output()
        .unwrap();
    let leased = std::fs::read_to_string(Path::new(DIR).join("phone.lease")).unwrap_or_default();
    assert!(
        !leased.is_empty(),
        "no lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l: Vec<&str> = leased.split_whitespace().collect();
    log(
        t0,
        &format!(
            "DHCP over the box's Wi-Fi in {:.1} s: {leased}",
            lease.elapsed().as_secs_f64()
        ),
    );
    assert!(l[0].starts_with("10.77.0."), "{leased}");
    assert_eq!(l.get(1), Some(&"10.77.0.1"), "router: {leased}");
    assert_eq!(l.get(2), Some(&"10.77.0.1"), "DNS: {leased}");

    // 3. Download and SSH through the box across a planned and a sudden switch.
    wait(Duration::from_secs(60), "the session on the cable", || {
        on(sock, "cable")
    });
    let dl = phone::Download::start("phone", "10.77.0.1:7100".parse().unwrap());
    let ssh = phone::ssh_ticks("phone", key, "10.77.0.1", 2222, 250);
    wait(Duration::from_secs(30), "download bytes", || {
        dl.bytes.load(Ordering::Relaxed) > 100_000
    });
    log(t0, "download and SSH running through the box");
    ctl(sock, &["mode", "manual"]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let planned = Instant::now();
    ctl(sock, &["switch", "backup"]).unwrap();
    wait(Duration::from_secs(30), "the planned switch", || {
        on(sock, "backup")
    });
    log(
        t0,
        &format!(
            "planned switch to the backup uplink in {:.2} s",
            planned.elapsed().as_secs_f64()
        ),
    );
    std::thread::sleep(Duration::from_secs(5));
    let cut = Instant::now();
    sh("ip link set eth2 down");
    wait(Duration::from_secs(30), "the sudden switch", || {
        on(sock, "cable")
    });
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
            "download: {bytes} bytes, every one right, longest gap {gap:.0} ms: {r:?}; SSH: 250 lines, longest gap {:?}",
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
}

fn on(sock: &Path, uplink: &str) -> bool {
    let s = status(sock);
    s["sites"][0]["state"] == "Established" && s["sites"][0]["uplink"] == uplink
}

fn wait_ap(sock: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(sock);
        if f(&s["wifi_ap"]) {
            return s;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {}",
            s["wifi_ap"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
