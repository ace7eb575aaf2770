//! The radio bench, Bluetooth: cnaptd's network access point against the
//! real bluetoothd (BlueZ 5.66) in the radio VM, with three virtual
//! controllers from btvirt — hci0 the box's, hci1 and hci2 two phones' —
//! over the kernel's hci_vhci and bnep; the box's uplinks are two cables
//! through netem to the real snaptd (`tests/phone/`):
//!
//! * cnaptd registers the NAP on its bridge and hides the adapter; with the
//!   pairing window opened by `cboxctl pan pair`, the phone discovers the
//!   box and pairs (just-works; cnaptd's agent accepts within the window),
//!   and cnaptd lists it as trusted;
//! * the phone connects as PANU (`Network1.Connect("nap")`), gets a bnep
//!   interface, and a DHCP lease over it carries a router and a DNS server
//!   (Android keeps a PAN network only then) — the box's DHCP server is
//!   dnsmasq here, standing in for the image's systemd-networkd
//!   `DHCPServer=` with the same options; the phone reaches the box's
//!   address over BNEP;
//! * over BNEP, a download (every byte checked) and a real OpenSSH session
//!   run through the box while it makes a planned switch and loses the
//!   uplink in use: nothing lost, nothing reset;
//! * bluetoothd restarted: cnaptd registers the NAP again by itself;
//! * cnaptd restarted with the `passkey` policy: the second phone cannot
//!   pair while the window is closed; within it, the phone shows six
//!   digits, the box shows the same ones in its status, the technician
//!   confirms (`cboxctl pan confirm`) and the phone is trusted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod passkey;
#[path = "../phone/mod.rs"]
mod phone;

use hil_tests::radio_vm::{RadioVm, in_vm};
use relay_tests::bed::{Bed, ctl};
use serde_json::Value;

const BOX_ADDR: &str = "00:AA:01:00:00:00";

#[test]
fn a_phone_pairs_with_the_box_and_joins_its_pan_over_real_bluez() {
    if in_vm() {
        guest();
        return;
    }
    let vm = RadioVm::find().unwrap();
    vm.run_test(
        "a_phone_pairs_with_the_box_and_joins_its_pan_over_real_bluez",
        Duration::from_secs(300),
    )
    .unwrap();
}

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

/// `dbus-send` to bluetoothd on the system bus: the literal reply or the
/// error text.
fn bluez(path: &str, method: &str, args: &[&str]) -> Result<String, String> {
    let o = Command::new("dbus-send")
        .args([
            "--system",
            "--print-reply=literal",
            "--reply-timeout=60000",
            "--dest=org.bluez",
            path,
            method,
        ])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

fn prop(path: &str, iface: &str, name: &str) -> String {
    bluez(
        path,
        "org.freedesktop.DBus.Properties.Get",
        &[&format!("string:{iface}"), &format!("string:{name}")],
    )
    .unwrap_or_default()
}

fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// bluetoothd and its helpers, ended on the way out.
struct Stack {
    children: Vec<Child>,
    bluetoothd: Option<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for c in self.children.iter_mut().chain(self.bluetoothd.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bluetoothd() -> Child {
    Command::new("/usr/libexec/bluetooth/bluetoothd")
        .arg("-n")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create("/tmp/bluetoothd.log").unwrap())
        .spawn()
        .unwrap()
}

fn box_config(bed: &Bed, policy: &str) -> String {
    format!(
        "{}[pan]\nbridge = \"pan0\"\nethernet = []\n\
         [pan.bluetooth]\nadapter = \"hci0\"\nalias = \"cbox radio bench\"\npairing = \"{policy}\"\n\
         pairing_seconds = 120\ntrusted_file = \"{}\"\n",
        phone::BOX_BODY,
        bed.path("trusted-devices.json").display()
    )
}

fn pan_status(control: &Path) -> Value {
    ctl(control, &["pan", "status"]).unwrap_or(Value::Null)
}

fn guest() {
    let t0 = Instant::now();
    sh("modprobe hci_vhci && modprobe bnep && mkdir -p /run/dbus && dbus-daemon --system --fork");
    let mut stack = Stack {
        children: Vec::new(),
        bluetoothd: None,
    };
    stack.children.push(
        Command::new("btvirt")
            .arg("-l3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait(Duration::from_secs(20), "three virtual controllers", || {
        std::path::Path::new("/sys/class/bluetooth/hci2").exists()
    });
    stack.bluetoothd = Some(bluetoothd());
    wait(Duration::from_secs(30), "bluetoothd on the bus", || {
        bluez(
            "/org/bluez/hci1",
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.bluez.Adapter1", "string:Address"],
        )
        .is_ok()
    });
    // The box's bridge and its DHCP server (the image: systemd-networkd's
    // DHCPServer= with EmitRouter and EmitDNS; here dnsmasq, same options).
    sh(phone::UPLINKS);
    stack.children.push(
        Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--port=0",
                "--interface=pan0",
                "--bind-dynamic",
                "--dhcp-range=10.77.0.16,10.77.0.215,1h",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.1",
                "--dhcp-leasefile=/tmp/pan.leases",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    log(
        t0,
        "btvirt (hci0, hci1, hci2), bluetoothd, netem uplinks, pan0 with its DHCP server up",
    );

    let mut bed = Bed::new("radio-bt");
    // Bluetooth PAN carries 1–2 Mbit/s: a 1.6 Mbit/s download.
    stack.children.push(phone::start_relay(&mut bed, 4 * 1024));
    let control = bed.cnaptd("box-bt", &box_config(&bed, "just-works"));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        phases(&mut stack, &control, t0);
        bed.daemons.retain(|d| d.name != "box-bt");
        let control = bed.cnaptd("box-bt", &box_config(&bed, "passkey"));
        passkey::phases(&control, t0);
    }));
    if let Err(e) = outcome {
        for (name, text) in [
            ("cnaptd", bed.log("box-bt")),
            (
                "bluetoothd",
                std::fs::read_to_string("/tmp/bluetoothd.log").unwrap_or_default(),
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

fn phases(stack: &mut Stack, control: &Path, t0: Instant) {
    wait(Duration::from_secs(60), "the NAP registered", || {
        pan_status(control)["bluetooth"]["nap_registered"] == true
    });
    let hci0 = "/org/bluez/hci0";
    assert!(prop(hci0, "org.bluez.Adapter1", "Powered").ends_with("true"));
    assert!(prop(hci0, "org.bluez.Adapter1", "Alias").contains("cbox radio bench"));
    assert!(
        prop(hci0, "org.bluez.Adapter1", "Discoverable").ends_with("false"),
        "hidden while the pairing window is closed"
    );
    log(
        t0,
        "cnaptd: NAP registered on pan0, adapter powered and hidden",
    );

    // The technician opens the pairing window; the phone looks for the box.
    ctl(control, &["pan", "pair", "--seconds", "120"]).unwrap();
    wait(Duration::from_secs(20), "discoverable", || {
        prop(hci0, "org.bluez.Adapter1", "Discoverable").ends_with("true")
    });
    let phone = "/org/bluez/hci1";
    let phone_addr = prop(phone, "org.bluez.Adapter1", "Address");
    let phone_addr = phone_addr
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_string();
    // The phone's side is a bluetoothctl session: BlueZ ends a discovery
    // when the client that started it leaves, and pairing asks the
    // client's own agent (NoInputNoOutput, as a phone's just-works) on the
    // phone's side and the default agent — cnaptd's — on the box's.
    let mut scan = Command::new("bluetoothctl")
        .arg("--agent=NoInputNoOutput")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = scan.stdin.as_mut().unwrap();
        writeln!(stdin, "select {phone_addr}\nscan on").unwrap();
    }
    let dev = format!("{phone}/dev_{}", BOX_ADDR.replace(':', "_"));
    let found = Instant::now();
    let seen = std::panic::catch_unwind(|| {
        wait(Duration::from_secs(90), "the phone finds the box", || {
            !prop(&dev, "org.bluez.Device1", "Address").is_empty()
        })
    });
    if let Err(e) = seen {
        let _ = scan.kill();
        let _ = scan.wait();
        std::panic::resume_unwind(e);
    }
    log(
        t0,
        &format!(
            "the phone found the box after {:.1} s",
            found.elapsed().as_secs_f64()
        ),
    );

    // Just-works pairing, accepted by cnaptd's agent within the window.
    let pairing = Instant::now();
    {
        use std::io::Write;
        let stdin = scan.stdin.as_mut().unwrap();
        writeln!(stdin, "scan off\npair {BOX_ADDR}").unwrap();
    }
    let paired = std::panic::catch_unwind(|| {
        wait(Duration::from_secs(60), "paired", || {
            prop(&dev, "org.bluez.Device1", "Paired").ends_with("true")
        });
        // The phone browses the box's services after pairing: its NAP
        // (Network1 on the device) appears once that is done.
        wait(
            Duration::from_secs(60),
            "the box's NAP seen by the phone",
            || {
                bluez(
                    &dev,
                    "org.freedesktop.DBus.Properties.Get",
                    &["string:org.bluez.Network1", "string:Connected"],
                )
                .is_ok()
            },
        );
    });
    let _ = scan.kill();
    let _ = scan.wait();
    if let Err(e) = paired {
        std::panic::resume_unwind(e);
    }
    wait(
        Duration::from_secs(20),
        "the phone trusted by the box",
        || {
            ctl(control, &["pan", "devices"])
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|d| d.iter().any(|x| x["address"] == phone_addr.as_str()))
        },
    );
    log(
        t0,
        &format!(
            "paired (just-works) in {:.1} s; the box trusts {phone_addr}",
            pairing.elapsed().as_secs_f64()
        ),
    );

    // PANU: the phone connects to the NAP and gets a bnep interface.
    let connect = Instant::now();
    let iface = bluez(&dev, "org.bluez.Network1.Connect", &["string:nap"]).unwrap();
    let iface = iface.trim().to_string();
    assert!(iface.starts_with("bnep"), "Network1.Connect gave {iface:?}");
    log(
        t0,
        &format!(
            "PANU connected: {iface} after {:.1} s",
            connect.elapsed().as_secs_f64()
        ),
    );
    wait(Duration::from_secs(20), "the box's bnep in pan0", || {
        sh("ls /sys/class/net/pan0/brif/")
            .split_whitespace()
            .any(|x| x.starts_with("bnep"))
    });
    // The phone in a namespace of its own with its bnep interface: its
    // traffic crosses BNEP, not the loopback.
    sh(&format!(
        "ip netns add phone && ip link set {iface} netns phone && ip -n phone link set lo up"
    ));
    let script = hil_tests::radio_vm::workspace_root().join("hil-tests/apps/udhcpc.sh");
    let lease = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns", "exec", "phone", "busybox", "udhcpc", "-i", &iface, "-n", "-q", "-t", "10",
            "-s",
        ])
        .arg(&script)
        .env("LEASE_FILE", "/tmp/phone.lease")
        .output()
        .unwrap();
    let leased = std::fs::read_to_string("/tmp/phone.lease").unwrap_or_default();
    assert!(
        !leased.is_empty(),
        "no lease over BNEP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: Vec<&str> = leased.split_whitespace().collect();
    log(
        t0,
        &format!(
            "DHCP over BNEP in {:.1} s: address {} router {} DNS {}",
            lease.elapsed().as_secs_f64(),
            f[0],
            f.get(1).unwrap_or(&"-"),
            f.get(2).unwrap_or(&"-")
        ),
    );
    assert!(f[0].starts_with("10.77.0."), "{leased}");
    assert_eq!(
        f.get(1),
        Some(&"10.77.0.1"),
        "the lease names no router: {leased}"
    );
    assert_eq!(
        f.get(2),
        Some(&"10.77.0.1"),
        "the lease names no DNS server: {leased}"
    );
    let ping = sh("ip netns exec phone ping -c 5 -i 0.2 -q 10.77.0.1");
    let rtt = ping
        .lines()
        .find(|l| l.contains("min/avg"))
        .unwrap_or("?")
        .to_string();
    log(t0, &format!("the phone reaches the box over BNEP: {rtt}"));
    assert!(ping.contains(" 0% packet loss"), "{ping}");

    // Through the box over BNEP, across a planned and a sudden switch.
    let key = control.parent().unwrap().join("ssh/client_key");
    phone::across_switches(control, "phone", &key, t0);

    // bluetoothd restarted: the NAP comes back by itself.
    if let Some(mut b) = stack.bluetoothd.take() {
        let _ = b.kill();
        let _ = b.wait();
    }
    wait(
        Duration::from_secs(30),
        "cnaptd sees bluetoothd gone",
        || pan_status(control)["bluetooth"]["nap_registered"] != true,
    );
    let restarted = Instant::now();
    stack.bluetoothd = Some(bluetoothd());
    wait(Duration::from_secs(60), "the NAP registered again", || {
        pan_status(control)["bluetooth"]["nap_registered"] == true
    });
    log(
        t0,
        &format!(
            "bluetoothd restarted: NAP registered again after {:.1} s",
            restarted.elapsed().as_secs_f64()
        ),
    );
}
