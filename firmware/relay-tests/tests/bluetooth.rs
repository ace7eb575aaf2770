//! cnaptd's Bluetooth NAP against a D-Bus test double of bluetoothd: a
//! private dbus-daemon as the system bus and python-dbusmock's `bluez5`
//! template, extended in `tests/bluez/cbox_bluez.py` (NetworkServer1 bound
//! to the caller's connection, agents called back, phones simulated).
//!
//! Covered: adapter set-up (powered, alias, hidden and not pairable until
//! the window opens), the pairing window opened and closed by `cboxctl pan`
//! and by itself, the agent refusing outside the window and accepting
//! within, the passkey policy waiting for the technician, trusted devices
//! kept across a cnaptd restart and forgotten (here and in BlueZ), NAP
//! connections authorized for trusted devices only, and the NAP registered
//! again after bluetoothd restarts and after the adapter comes back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use relay_tests::bed::{Bed, ctl, free_port, wait_until};
use serde_json::Value;

const PHONE: &str = "00:1A:7D:DA:71:13";
const STRANGER: &str = "AA:BB:CC:DD:EE:01";
const PDA: &str = "AA:BB:CC:DD:EE:02";

fn python() -> String {
    std::env::var("CBOX_DBUSMOCK_PYTHON").unwrap_or_else(|_| {
        panic!("CBOX_DBUSMOCK_PYTHON is not set: run through scripts/test.sh (python-dbusmock in a venv)")
    })
}

struct Bus {
    address: String,
}

impl Bus {
    /// `dbus-send` to the mock bluetoothd: the literal reply.
    fn send(&self, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new("dbus-send")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .args([
                "--system",
                "--print-reply=literal",
                "--reply-timeout=5000",
                "--dest=org.bluez",
            ])
            .arg(path)
            .arg(method)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn mock(&self, method: &str, args: &[&str]) -> String {
        self.send("/", &format!("org.bluez.Mock.{method}"), args)
            .unwrap_or_else(|e| panic!("Mock.{method}{args:?}: {e}"))
    }

    fn adapter_prop(&self, name: &str) -> String {
        self.send(
            "/org/bluez/hci0",
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.bluez.Adapter1", &format!("string:{name}")],
        )
        .unwrap_or_else(|e| panic!("Adapter1.{name}: {e}"))
    }

    fn device_prop(&self, addr: &str, name: &str) -> String {
        let path = format!("/org/bluez/hci0/dev_{}", addr.replace(':', "_"));
        self.send(
            &path,
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.bluez.Device1", &format!("string:{name}")],
        )
        .unwrap_or_else(|e| panic!("{addr} {name}: {e}"))
    }

    /// A phone pairs: BlueZ asks the agent (`confirm`, `authorize`, `display`).
    fn pair(&self, addr: &str, kind: &str, passkey: u32) {
        self.mock(
            "SimulatePairing",
            &[
                "string:hci0",
                &format!("string:{addr}"),
                &format!("string:{kind}"),
                &format!("uint32:{passkey}"),
            ],
        );
    }

    /// A paired phone connects to the NAP: BlueZ asks the agent first.
    fn nap_connect(&self, addr: &str) {
        self.mock(
            "SimulateNapConnect",
            &["string:hci0", &format!("string:{addr}")],
        );
    }

    fn result(&self, addr: &str) -> String {
        let mut r = String::new();
        wait_until(Duration::from_secs(10), "the agent's answer", || {
            r = self.mock("Result", &[&format!("string:{addr}")]);
            r != "pending"
        });
        r
    }
}

/// Starts the mock bluetoothd with adapter hci0 and three devices in range.
fn start_bluetoothd(bed: &mut Bed, bus: &Bus, n: u32) {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bluez/cbox_bluez.py");
    bed.spawn(
        &format!("bluetoothd-{n}"),
        Command::new(python())
            .args(["-m", "dbusmock", "--system", "-t"])
            .arg(&template),
    );
    wait_until(
        Duration::from_secs(15),
        "the mock bluetoothd on the bus",
        || {
            bus.send("/", "org.freedesktop.DBus.Introspectable.Introspect", &[])
                .is_ok()
        },
    );
    bus.mock("AddAdapter", &["string:hci0", "string:box"]);
    for (a, name) in [
        (PHONE, "Pixel 7"),
        (STRANGER, "Stranger"),
        (PDA, "Zebra TC52"),
    ] {
        bus.mock(
            "AddDevice",
            &[
                "string:hci0",
                &format!("string:{a}"),
                &format!("string:{name}"),
            ],
        );
    }
}

fn config(port: u16, trusted: &Path, policy: &str) -> String {
    format!(
        "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n\
         [[uplink]]\nname = \"a\"\n\
         [pan]\nbridge = \"cbox-bt-test0\"\n\
         [pan.bluetooth]\nalias = \"cbox test\"\npairing = \"{policy}\"\npairing_seconds = 60\n\
         max_pairing_seconds = 300\ntrusted_file = \"{}\"\n",
        trusted.display()
    )
}

fn bluetooth(control: &Path) -> Value {
    ctl(control, &["pan", "status"]).unwrap()["bluetooth"].clone()
}

fn wait_nap(control: &Path, bus: &Bus) {
    wait_until(Duration::from_secs(20), "the NAP registered", || {
        bluetooth(control)["nap_registered"] == true
            && bus
                .mock("NapRegistration", &["string:hci0"])
                .starts_with("cbox-bt-test0 ")
    });
}

fn devices(control: &Path) -> Vec<String> {
    ctl(control, &["pan", "devices"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pairing_trust_and_nap_registration_against_a_bluez_double() {
    let mut bed = Bed::new("bluetooth");
    let socket = bed.path("system_bus");
    let address = format!("unix:path={}", socket.display());
    bed.spawn(
        "dbus-daemon",
        Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}")),
    );
    wait_until(Duration::from_secs(10), "the private bus", || {
        socket.exists()
    });
    bed.env
        .push(("DBUS_SYSTEM_BUS_ADDRESS".into(), address.clone()));
    let bus = Bus { address };
    start_bluetoothd(&mut bed, &bus, 1);

    let trusted: PathBuf = bed.path("state/trusted-devices.json");
    let port = free_port(); // no SNAPT: the PAN side works without one
    let control = bed.cnaptd("box-bt", &config(port, &trusted, "just-works"));
    wait_nap(&control, &bus);

    // Adapter set-up: powered, named, hidden and not pairable.
    assert!(bus.adapter_prop("Powered").ends_with("true"));
    assert!(bus.adapter_prop("Alias").contains("cbox test"));
    assert!(bus.adapter_prop("Discoverable").ends_with("false"));
    assert!(bus.adapter_prop("Pairable").ends_with("false"));
    assert_eq!(bluetooth(&control)["pairing"]["open"], false);

    // Window closed: the agent refuses.
    bus.pair(PHONE, "confirm", 123456);
    let r = bus.result(PHONE);
    assert!(r.contains("org.bluez.Error.Rejected"), "{r}");
    assert!(bus.device_prop(PHONE, "Paired").ends_with("false"));

    // Bad requests get clear errors.
    let e = ctl(&control, &["pan", "pair", "--seconds", "900"]).unwrap_err();
    assert!(e.contains("1 to 300 s"), "{e}");
    let e = ctl(&control, &["pan", "forget", "not-an-address"]).unwrap_err();
    assert!(e.contains("not a Bluetooth address"), "{e}");
    let e = ctl(&control, &["pan", "confirm"]).unwrap_err();
    assert!(e.contains("no passkey"), "{e}");

    // Window open: discoverable and pairable with BlueZ's own timeouts.
    let v = ctl(&control, &["pan", "pair", "--seconds", "30"]).unwrap();
    assert_eq!(v["seconds"], 30);
    wait_until(Duration::from_secs(5), "discoverable", || {
        bus.adapter_prop("Discoverable").ends_with("true")
    });
    assert!(bus.adapter_prop("Pairable").ends_with("true"));
    assert!(bus.adapter_prop("DiscoverableTimeout").ends_with("30"));
    let b = bluetooth(&control);
    assert_eq!(b["pairing"]["open"], true);
    assert!(b["pairing"]["seconds_left"].as_u64().unwrap() <= 30);

    // The phone pairs (just works): trusted, saved, window closed.
    bus.pair(PHONE, "confirm", 123456);
    assert_eq!(bus.result(PHONE), "ok");
    wait_until(Duration::from_secs(10), "the phone trusted", || {
        devices(&control) == [PHONE]
    });
    assert!(bus.device_prop(PHONE, "Trusted").ends_with("true"));
    let saved = std::fs::read_to_string(&trusted).unwrap();
    assert!(
        saved.contains(PHONE) && saved.contains("Pixel 7"),
        "{saved}"
    );
    wait_until(
        Duration::from_secs(5),
        "hidden again after the pairing",
        || {
            bluetooth(&control)["pairing"]["open"] == false
                && bus.adapter_prop("Discoverable").ends_with("false")
        },
    );

    // Network connections: the trusted phone yes, a stranger no.
    bus.nap_connect(PHONE);
    assert_eq!(bus.result(PHONE), "ok");
    bus.nap_connect(STRANGER);
    assert!(bus.result(STRANGER).contains("Rejected"));
    wait_until(Duration::from_secs(10), "the phone shown connected", || {
        bluetooth(&control)["trusted"][0]["connected"] == true
    });

    // The window closes by itself.
    ctl(&control, &["pan", "pair", "--seconds", "1"]).unwrap();
    wait_until(Duration::from_secs(5), "the window timing out", || {
        bluetooth(&control)["pairing"]["open"] == false
    });
    wait_until(Duration::from_secs(5), "the time-up logged", || {
        bed.log("box-bt")
            .contains("pairing window closed (time up)")
    });

    // cnaptd restarts with the passkey policy: the phone is still trusted.
    assert!(
        bed.daemons
            .last_mut()
            .unwrap()
            .terminate(Duration::from_secs(10))
    );
    let control = bed.cnaptd("box-bt", &config(port, &trusted, "passkey"));
    wait_nap(&control, &bus);
    assert_eq!(devices(&control), [PHONE]);

    // Passkey: shown, waits for the technician, who refuses, then confirms.
    ctl(&control, &["pan", "pair"]).unwrap();
    bus.pair(PDA, "confirm", 42);
    wait_until(Duration::from_secs(5), "the passkey on show", || {
        bluetooth(&control)["pairing"]["passkey"] == "000042"
    });
    assert_eq!(bluetooth(&control)["pairing"]["device"], PDA);
    assert_eq!(bus.mock("Result", &[&format!("string:{PDA}")]), "pending");
    ctl(&control, &["pan", "reject"]).unwrap();
    assert!(bus.result(PDA).contains("Rejected"));
    bus.pair(PDA, "confirm", 987654);
    wait_until(Duration::from_secs(5), "the second passkey", || {
        bluetooth(&control)["pairing"]["passkey"] == "987654"
    });
    ctl(&control, &["pan", "confirm"]).unwrap();
    assert_eq!(bus.result(PDA), "ok");
    wait_until(Duration::from_secs(10), "the PDA trusted", || {
        devices(&control) == [PHONE, PDA]
    });

    // bluetoothd restarts: everything is set up again.
    let mock = bed
        .daemons
        .iter()
        .position(|d| d.name == "bluetoothd-1")
        .unwrap();
    assert!(bed.daemons[mock].terminate(Duration::from_secs(5)));
    wait_until(Duration::from_secs(10), "the loss noticed", || {
        bluetooth(&control)["nap_registered"] == false
    });
    start_bluetoothd(&mut bed, &bus, 2);
    wait_nap(&control, &bus);
    assert!(bed.log("box-bt").contains("Bluetooth NAP lost"));
    // The new bluetoothd knows the devices again (its store): our trust
    // is re-applied, and the agent answers on the new connection.
    wait_until(Duration::from_secs(10), "trust re-applied", || {
        bus.device_prop(PHONE, "Trusted").ends_with("true")
    });
    bus.nap_connect(PDA);
    assert_eq!(bus.result(PDA), "ok");

    // Forget: gone from the list, the file and BlueZ.
    let v = ctl(&control, &["pan", "forget", PHONE]).unwrap();
    assert_eq!(
        (v["was_trusted"].clone(), v["bluez"].clone()),
        (Value::Bool(true), Value::from("removed"))
    );
    assert_eq!(devices(&control), [PDA]);
    assert!(!std::fs::read_to_string(&trusted).unwrap().contains(PHONE));
    let path = format!("/org/bluez/hci0/dev_{}", PHONE.replace(':', "_"));
    let gone = bus.send(
        &path,
        "org.freedesktop.DBus.Properties.Get",
        &["string:org.bluez.Device1", "string:Paired"],
    );
    assert!(gone.is_err(), "BlueZ still has the phone: {gone:?}");
    let e = ctl(&control, &["pan", "forget", PHONE]).unwrap_err();
    assert!(e.contains("not a trusted device"), "{e}");

    // A figure, not an assertion: what the NAP costs in memory, against a
    // cnaptd without [pan] started in the same bed.
    let plain = bed.cnaptd(
        "box-plain",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n"
        ),
    );
    ctl(&plain, &["status"]).unwrap();
    let hwm = |name: &str| -> f64 {
        let d = bed.daemons.iter().rev().find(|d| d.name == name).unwrap();
        let text = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let (bt, base) = (hwm("box-bt"), hwm("box-plain"));
    println!(
        "cnaptd peak RSS: with the Bluetooth NAP {bt:.1} MiB, without [pan] {base:.1} MiB ({:.2}x)",
        bt / base.max(0.1)
    );
}
