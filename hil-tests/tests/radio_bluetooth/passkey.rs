//! The radio bench, Bluetooth: passkey pairing of a second phone (hci2)
//! against the real bluetoothd, outside and inside the pairing window.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relay_tests::bed::ctl;

use super::{BOX_ADDR, log, pan_status, prop, wait};

/// A bluetoothctl session of the second phone (hci2) with a
/// KeyboardDisplay agent (a phone that shows digits and asks yes/no); its
/// output is kept in a file for the test to read.
struct PhoneB {
    child: Child,
    out: std::path::PathBuf,
}

impl PhoneB {
    fn start(addr: &str) -> Self {
        let out = std::path::PathBuf::from("/tmp/phone-b.out");
        let child = Command::new("bluetoothctl")
            .arg("--agent=KeyboardDisplay")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut p = Self { child, out };
        p.say(&format!("select {addr}\npower on"));
        p
    }

    fn say(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
    }

    /// What it printed, without colours.
    fn output(&self) -> String {
        let raw = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut esc = false;
        for c in raw.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }
}

impl Drop for PhoneB {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The six digits after "passkey" in `text`'s last such line.
fn passkey_in(text: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let rest = &l[l.find("passkey")? + "passkey".len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (digits.len() == 6).then_some(digits)
    })
}

/// cnaptd with the `passkey` policy: the second phone cannot pair while
/// the window is closed; within it the digits match and nothing pairs
/// before the technician confirms.
pub(crate) fn phases(control: &Path, t0: Instant) {
    wait(
        Duration::from_secs(60),
        "the NAP registered (passkey policy)",
        || {
            let b = &pan_status(control)["bluetooth"];
            b["nap_registered"] == true && b["pairing"]["policy"] == "passkey"
        },
    );
    let hci2 = "/org/bluez/hci2";
    let addr = prop(hci2, "org.bluez.Adapter1", "Address");
    let addr = addr.split_whitespace().last().unwrap_or("").to_string();
    let mut phone = PhoneB::start(&addr);
    let dev = format!("{hci2}/dev_{}", BOX_ADDR.replace(':', "_"));
    // It finds the box while a window is open, then the window closes.
    ctl(control, &["pan", "pair", "--seconds", "120"]).unwrap();
    phone.say("scan on");
    wait(
        Duration::from_secs(90),
        "the second phone finds the box",
        || !prop(&dev, "org.bluez.Device1", "Address").is_empty(),
    );
    phone.say("scan off");
    ctl(control, &["pan", "close"]).unwrap();
    wait(Duration::from_secs(20), "hidden again", || {
        prop("/org/bluez/hci0", "org.bluez.Adapter1", "Pairable").ends_with("false")
    });
    // Outside the window: refused (the phone's own agent accepts on its
    // side; the box, neither discoverable nor pairable, does not take the
    // connection — on the bench bluetoothd answers ConnectionAttemptFailed).
    std::thread::sleep(Duration::from_secs(1));
    let tried = Instant::now();
    let mark = phone.output().len();
    phone.say(&format!("pair {BOX_ADDR}"));
    let mut verdict = String::new();
    wait(
        Duration::from_secs(60),
        "the outcome of pairing outside the window",
        || {
            let out = phone.output();
            verdict = out[mark.min(out.len())..]
                .lines()
                .find(|l| l.contains("Failed to pair") || l.contains("Pairing successful"))
                .unwrap_or("")
                .trim()
                .to_string();
            !verdict.is_empty()
        },
    );
    log(
        t0,
        &format!(
            "window closed: the second phone's pairing after {:.1} s: {verdict}",
            tried.elapsed().as_secs_f64()
        ),
    );
    assert!(
        verdict.contains("Failed to pair"),
        "paired outside the window: {verdict}"
    );
    assert!(
        !prop(&dev, "org.bluez.Device1", "Paired").ends_with("true"),
        "paired outside the window"
    );

    // Inside: the digits on the phone and on the box match, the
    // technician confirms, the phone says yes.
    ctl(control, &["pan", "pair", "--seconds", "120"]).unwrap();
    wait(Duration::from_secs(20), "pairable", || {
        prop("/org/bluez/hci0", "org.bluez.Adapter1", "Pairable").ends_with("true")
    });
    phone.say("scan on");
    wait(
        Duration::from_secs(90),
        "the second phone sees the box again",
        || !prop(&dev, "org.bluez.Device1", "Address").is_empty(),
    );
    phone.say("scan off");
    std::thread::sleep(Duration::from_secs(1));
    let pairing = Instant::now();
    phone.say(&format!("pair {BOX_ADDR}"));
    let mut on_phone = None;
    wait(Duration::from_secs(60), "digits on the phone", || {
        on_phone = passkey_in(&phone.output());
        on_phone.is_some()
    });
    let mut on_box = None;
    wait(Duration::from_secs(30), "digits on the box", || {
        on_box = pan_status(control)["bluetooth"]["pairing"]["passkey"]
            .as_str()
            .map(String::from);
        on_box.is_some()
    });
    log(
        t0,
        &format!(
            "passkey pairing: the phone shows {}, the box shows {}",
            on_phone.as_deref().unwrap_or("?"),
            on_box.as_deref().unwrap_or("?")
        ),
    );
    assert_eq!(on_phone, on_box, "the digits differ");
    // Nothing pairs until the technician says so (btvirt's controllers
    // compute the digits as 000000; a board's are random).
    phone.say("yes");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !prop(&dev, "org.bluez.Device1", "Paired").ends_with("true"),
        "paired before the technician confirmed the digits"
    );
    ctl(control, &["pan", "confirm"]).unwrap();
    wait(Duration::from_secs(30), "paired with a passkey", || {
        prop(&dev, "org.bluez.Device1", "Paired").ends_with("true")
    });
    wait(Duration::from_secs(20), "the second phone trusted", || {
        ctl(control, &["pan", "devices"])
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|d| d.iter().any(|x| x["address"] == addr.as_str()))
    });
    log(
        t0,
        &format!(
            "paired with a confirmed passkey in {:.1} s; the box trusts {addr}",
            pairing.elapsed().as_secs_f64()
        ),
    );
}
