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
//! 4. hostapd killed and started again: cnaptd sets the access point up
//!    again (hidden, outside a window) and the phone, known from its
//!    window, joins again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod phone;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hil_tests::radio_vm::{RadioVm, in_vm, workspace_root};
use relay_tests::bed::{Bed, ctl};
use serde_json::Value;

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

/// Radios and the phones' namespaces (the uplinks, the internet and the
/// PAN bridge: [`phone::UPLINKS`]).
const RADIOS: &str = r#"
set -e
modprobe mac80211_hwsim radios=3
ip netns add phone
ip netns add stranger
iw phy phy1 set netns name phone
iw phy phy2 set netns name stranger
ip -n phone link set lo up
ip -n phone link set wlan1 up
ip -n stranger link set wlan2 up
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

/// The access points the phone's radio hears on the box's channel: their
/// SSIDs as beaconed ("" for a hidden one). Passive scans (the phone does
/// not probe for the name), repeated for up to 10 s until one hears
/// something (under emulation a scan's dwell sometimes catches no beacon).
fn phone_scan() -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args([
                "netns", "exec", "phone", "iw", "dev", "wlan1", "scan", "freq", "2437", "passive",
            ])
            .output()
            .unwrap();
        let heard: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SSID:").map(|s| s.trim().to_string()))
            .collect();
        if !heard.is_empty() || Instant::now() > until {
            if heard.is_empty() {
                println!(
                    "the phone's last scan: {} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            return heard;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
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
    sh(phone::UPLINKS);
    sh(RADIOS);
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
    let mut bed = Bed::new("radio-phone");
    procs.0.push(phone::start_relay(&mut bed, 8 * 1024));
    log(
        t0,
        "radios, netem uplinks, hostapd (BSS disabled), pan0, snaptd, download and SSH servers up",
    );
    // The box's passphrase: made by `cboxctl pki box` (Bed issues the box's
    // certificate with it), as at provisioning.
    let pass_file = bed.path("pki/boxes/box-phone.ap-passphrase");
    let sock = bed.cnaptd(
        "box-phone",
        &format!(
            "{}\
             [pan]\nbridge = \"pan0\"\nethernet = []\n\
             [pan.wifi]\ninterface = \"wlan0\"\nctrl = \"{DIR}/hostapd/wlan0\"\n\
             passphrase_file = \"{}\"\nstations_file = \"{DIR}/ap-stations.json\"\noutside_window = \"closed\"\n",
            phone::BOX_BODY,
            pass_file.display()
        ),
    );
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        phases(&mut procs, &sock, &bed.path("ssh/client_key"), t0);
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
                std::fs::read_to_string(bed.path("ssh/sshd.log")).unwrap_or_default(),
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
    phone::across_switches(sock, "phone", key, t0);

    // 4. hostapd restarts (a crash, an upgrade): cnaptd sets it up again,
    // and the phone — known from its window — joins again outside one.
    let hostapd = &mut procs.0[0];
    let _ = hostapd.kill();
    let _ = hostapd.wait();
    wait_ap(sock, "cnaptd sees hostapd gone", |a| {
        a["problem"].is_string()
    });
    let restarted = Instant::now();
    let conf = Path::new(DIR).join("cbox-ap.conf");
    let out = std::fs::File::create(Path::new(DIR).join("hostapd-2.log")).unwrap();
    procs.0[0] = Command::new("hostapd")
        .arg(&conf)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let s = wait_ap(sock, "the access point set up again", |a| {
        a["state"] == "enabled" && a["problem"].is_null()
    });
    assert_eq!(
        s["wifi_ap"]["visible"], false,
        "hidden again: {}",
        s["wifi_ap"]
    );
    let up = restarted.elapsed();
    wait_ap(sock, "the phone back on the access point", |a| {
        a["stations"].as_array().is_some_and(|l| !l.is_empty())
    });
    log(
        t0,
        &format!(
            "hostapd restarted: the access point set up again after {:.1} s, the phone joined again after {:.1} s (outside a window, known)",
            up.as_secs_f64(),
            restarted.elapsed().as_secs_f64()
        ),
    );
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
