//! The radio bench, Wi-Fi: cnaptd's Wi-Fi driver against the real stacks in
//! the radio VM (`hil-tests/src/radio_vm.rs`) — Debian's wpa_supplicant with
//! the nl80211 driver on a mac80211_hwsim radio, and three hostapd access
//! points on three more radios: two of the box's network (channels 1 and
//! 6) and one of another network (channel 11). Each access point's signal
//! at the station is set through hwsim's debugfs (`rx_rssi` of the sending
//! radio plus its 20 dBm transmit power); `group` takes one out of range.
//!
//! On the host the test boots the VM and runs itself there (needs the image
//! of `hil-tests/radio-vm/build-image.sh`, which the test command builds).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use box_os::wifi::{WifiCommand, WifiConfig, WifiEvent};
use common::expect;
use hil_tests::radio_vm::{RadioVm, in_vm};
use wpa_ctrl::{Event, NetworkConfig, RoamPolicy};

const SSID: &str = "cbox-field";
const PSK: &str = "field-passphrase-1";
const OTHER: &str = "cafe-guests";

/// The access points: interface (radio), SSID, channel.
const APS: [(&str, &str, u32); 3] = [("wlan0", SSID, 1), ("wlan1", SSID, 6), ("wlan2", OTHER, 11)];
/// The box's station radio.
const STA: &str = "wlan3";

#[test]
fn wifi_driver_against_real_wpa_supplicant_and_hostapd_on_hwsim() {
    if in_vm() {
        guest();
        return;
    }
    let vm = RadioVm::find().unwrap();
    let run = vm
        .run_test(
            "wifi_driver_against_real_wpa_supplicant_and_hostapd_on_hwsim",
            Duration::from_secs(300),
        )
        .unwrap();
    assert_eq!(run.exit, Some(0));
}

/// Every process of the bench, killed and reaped on the way out.
struct Bench {
    dir: PathBuf,
    children: Vec<Child>,
    bssid: Vec<String>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn log(t0: Instant, what: &str) {
    println!("[{:6.2} s] {what}", t0.elapsed().as_secs_f64());
}

impl Bench {
    fn start() -> Self {
        let dir = PathBuf::from("/tmp/radio-wifi");
        std::fs::create_dir_all(dir.join("hostapd")).unwrap();
        std::fs::create_dir_all(dir.join("wpa")).unwrap();
        sh("modprobe mac80211_hwsim radios=4");
        let mut b = Self {
            dir,
            children: Vec::new(),
            bssid: Vec::new(),
        };
        for (i, (ifname, ssid, channel)) in APS.iter().enumerate() {
            let conf = b.dir.join(format!("ap{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "interface={ifname}\ndriver=nl80211\nctrl_interface={}\nssid={ssid}\n\
                     hw_mode=g\nchannel={channel}\nwpa=2\nwpa_key_mgmt=WPA-PSK\n\
                     rsn_pairwise=CCMP\nwpa_passphrase={}\n",
                    b.dir.join("hostapd").display(),
                    if *ssid == SSID {
                        PSK
                    } else {
                        "another-passphrase"
                    }
                ),
            )
            .unwrap();
            let out = std::fs::File::create(b.dir.join(format!("ap{i}.log"))).unwrap();
            b.children.push(
                Command::new("hostapd")
                    .arg(&conf)
                    .stdout(out)
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            b.bssid.push(
                std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))
                    .unwrap()
                    .trim()
                    .to_string(),
            );
        }
        // The box's network: A and B strong; the other network
        // strongest. Set before wpa_supplicant's first scan.
        b.signal(0, -35);
        b.signal(1, -45);
        b.signal(2, -30);
        let conf = b.dir.join("wpa.conf");
        std::fs::write(
            &conf,
            format!("ctrl_interface={}\n", b.dir.join("wpa").display()),
        )
        .unwrap();
        let out = std::fs::File::create(b.dir.join("wpa.log")).unwrap();
        b.children.push(
            Command::new("wpa_supplicant")
                .args(["-D", "nl80211", "-i", STA, "-c"])
                .arg(&conf)
                .stdout(out)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let sock = b.dir.join("wpa").join(STA);
        let until = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(
                Instant::now() < until,
                "wpa_supplicant did not open {sock:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// Access point `ap`'s signal at the station, dBm.
    fn signal(&self, ap: usize, dbm: i32) {
        let phy = phy_of(APS[ap].0);
        // The receiver hears rx_rssi + the sender's 20 dBm; the file takes
        // the value as an unsigned 64-bit number.
        let raw = i64::from(dbm - 20) as u64;
        std::fs::write(
            format!("/sys/kernel/debug/ieee80211/{phy}/hwsim/rx_rssi"),
            format!("{raw}\n"),
        )
        .unwrap();
    }

    /// Access point `ap` in range of the station (hwsim group 1) or not (2).
    fn in_range(&self, ap: usize, yes: bool) {
        let phy = phy_of(APS[ap].0);
        std::fs::write(
            format!("/sys/kernel/debug/ieee80211/{phy}/hwsim/group"),
            if yes { "1\n" } else { "2\n" },
        )
        .unwrap();
    }

    fn config(&self, psk: &str) -> WifiConfig {
        WifiConfig {
            ctrl_path: self.dir.join("wpa").join(STA),
            cli_dir: self.dir.join("cli"),
            networks: vec![NetworkConfig {
                ssid: SSID.as_bytes().to_vec(),
                psk: Some(psk.into()),
                priority: 5,
                hidden: false,
            }],
            poll_interval: Duration::from_millis(500),
            roam: RoamPolicy::default(),
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(o) = Command::new("wpa_cli")
            .arg("-p")
            .arg(self.dir.join("wpa"))
            .args(["-i", STA, "scan_results"])
            .output()
        {
            s.push_str(&format!(
                "--- scan results\n{}",
                String::from_utf8_lossy(&o.stdout)
            ));
        }
        for f in ["wpa.log", "ap0.log", "ap1.log"] {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- {f} (last 15 lines)\n"));
            for l in &lines[lines.len().saturating_sub(15)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

fn phy_of(ifname: &str) -> String {
    let link = std::fs::read_link(format!("/sys/class/net/{ifname}/phy80211")).unwrap();
    Path::new(&link)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn guest() {
    let t0 = Instant::now();
    let b = Bench::start();
    log(
        t0,
        &format!(
            "hwsim radios, 3 hostapd, wpa_supplicant (nl80211) up; access points {:?}",
            b.bssid
        ),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(phases(&b, t0));
    }));
    if let Err(e) = outcome {
        println!("{}", b.logs());
        std::panic::resume_unwind(e);
    }
}

async fn phases(b: &Bench, t0: Instant) {
    let (a, bb, other) = (&b.bssid[0], &b.bssid[1], &b.bssid[2]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(box_os::wifi::run(b.config(PSK), tx, crx));
    let long = Duration::from_secs(60);

    // Joined: the box's network, never the stronger foreign one. (Which
    // of A and B depends on what wpa_supplicant's first scan caught under
    // emulation; both are well above the roaming threshold.)
    expect(&mut rx, long, "configured", |e| {
        matches!(e, WifiEvent::Configured(_))
    })
    .await;
    let joined = expect(&mut rx, long, "associated", |e| {
        matches!(e, WifiEvent::Association { ssid: Some(_), .. })
    })
    .await;
    log(t0, &format!("associated: {joined:?}"));
    let WifiEvent::Association {
        ssid: Some(ssid),
        bssid: Some(on),
        ..
    } = joined
    else {
        panic!("joined {joined:?}")
    };
    assert_eq!(ssid, SSID, "joined the wrong network");
    let (cur, next) = if on == *a { (0, 1) } else { (1, 0) };
    assert_eq!(on, b.bssid[cur]);
    let set = if cur == 0 { -35 } else { -45 };
    let sig = expect(&mut rx, long, "signal poll", |e| {
        matches!(e, WifiEvent::Signal(Some(_)))
    })
    .await;
    log(t0, &format!("signal_poll: {sig:?} (set {set})"));
    let WifiEvent::Signal(Some(dbm)) = sig else {
        unreachable!()
    };
    assert!(
        (set - 5..=set + 5).contains(&dbm),
        "signal {dbm} dBm, set {set}"
    );

    // A scan the decision task asks for lists all three access points.
    ctx.send(WifiCommand::Scan).unwrap();
    let cands = expect(
        &mut rx,
        long,
        "scan candidates",
        |e| matches!(e, WifiEvent::Candidates(c) if c.len() >= 3),
    )
    .await;
    let WifiEvent::Candidates(c) = cands else {
        unreachable!()
    };
    for x in [a, bb, other] {
        assert!(
            c.iter().any(|s| &s.bssid == x),
            "{x} missing from the scan {c:?}"
        );
    }
    log(
        t0,
        &format!(
            "scan: {}",
            c.iter()
                .map(|s| format!("{} {} {} MHz {} dBm", s.ssid, s.bssid, s.freq, s.signal_dbm))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );

    // The current access point fades below the roaming threshold: the
    // box moves to the other one of its network, not to the stronger
    // foreign network.
    let fade = Instant::now();
    b.signal(cur, -80);
    let moved = expect(
        &mut rx,
        long,
        "moved",
        |e| matches!(e, WifiEvent::Association { bssid: Some(x), .. } if *x != on),
    )
    .await;
    assert!(
        matches!(&moved, WifiEvent::Association { ssid: Some(s), bssid: Some(x), .. } if s == SSID && *x == b.bssid[next]),
        "after the fade: {moved:?}, expected {SSID} at {}",
        b.bssid[next]
    );
    log(
        t0,
        &format!(
            "{} faded to -80 dBm: on {} after {:.1} s",
            b.bssid[cur],
            b.bssid[next],
            fade.elapsed().as_secs_f64()
        ),
    );

    // Both access points of the network go out of range: disconnected.
    b.in_range(0, false);
    let gone = Instant::now();
    b.in_range(1, false);
    expect(&mut rx, long, "disconnected", |e| {
        matches!(e, WifiEvent::Event(Event::Disconnected { .. }))
    })
    .await;
    let disc = gone.elapsed();
    expect(&mut rx, long, "status: not associated", |e| {
        matches!(e, WifiEvent::Association { ssid: None, .. })
    })
    .await;
    log(
        t0,
        &format!(
            "both access points out of range: disconnected after {:.1} s",
            disc.as_secs_f64()
        ),
    );

    // A comes back strong: joined again.
    b.signal(0, -35);
    b.in_range(0, true);
    let back = Instant::now();
    expect(&mut rx, long, "associated again", |e| {
        matches!(e, WifiEvent::Association { ssid: Some(s), bssid: Some(x), .. } if s == SSID && x == a)
    })
    .await;
    log(
        t0,
        &format!(
            "A back in range: associated after {:.1} s",
            back.elapsed().as_secs_f64()
        ),
    );
    drop(ctx);
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;

    // The wrong passphrase: reported as such, nothing joined.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(box_os::wifi::run(b.config("not-the-passphrase"), tx, crx));
    let wrong = Instant::now();
    let joined = std::cell::Cell::new(false);
    let ev = expect(&mut rx, long, "wrong key", |e| {
        if matches!(e, WifiEvent::Association { ssid: Some(_), .. }) {
            joined.set(true);
        }
        matches!(e, WifiEvent::Event(Event::WrongKey { .. }))
    })
    .await;
    assert!(!joined.get(), "joined with a wrong passphrase");
    log(
        t0,
        &format!(
            "wrong passphrase: {ev:?} after {:.1} s",
            wrong.elapsed().as_secs_f64()
        ),
    );
    drop(ctx);
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
}
