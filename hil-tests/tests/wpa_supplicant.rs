//! cnaptd's Wi-Fi driver against Debian's real wpa_supplicant (wired driver
//! on a veth in a namespace of its own; needs root, like the whole world):
//! the box's network is configured through the control socket, association
//! and events are reported, a disconnect and a reconnect are seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;

use box_os::wifi::{WifiCommand, WifiConfig, WifiEvent};
use common::expect;
use wpa_ctrl::{Event, NetworkConfig};

/// The namespace and wpa_supplicant, gone when dropped (also on failure).
struct Bed {
    ns: String,
    dir: PathBuf,
    wpa: Option<Child>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut c) = self.wpa.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

fn bed() -> Bed {
    assert!(
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))),
        "this test needs root (network namespaces); run it through scripts/test.sh"
    );
    assert!(
        Path::new("/usr/sbin/wpa_supplicant").exists(),
        "wpa_supplicant is missing: apt-get install wpasupplicant (scripts/test.sh does)"
    );
    let ns = format!("cbxwpa{}", std::process::id());
    let dir = std::env::temp_dir().join(&ns);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("ctrl")).unwrap();
    sh(&["ip", "netns", "add", &ns]);
    let mut b = Bed { ns, dir, wpa: None };
    sh(&[
        "ip", "-n", &b.ns, "link", "add", "wl0", "type", "veth", "peer", "name", "wl0p",
    ]);
    sh(&["ip", "-n", &b.ns, "link", "set", "wl0", "up"]);
    sh(&["ip", "-n", &b.ns, "link", "set", "wl0p", "up"]);
    let conf = b.dir.join("wpa.conf");
    std::fs::write(
        &conf,
        format!("ctrl_interface={}\n", b.dir.join("ctrl").display()),
    )
    .unwrap();
    let log = std::fs::File::create(b.dir.join("wpa.log")).unwrap();
    b.wpa = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &b.ns,
                "/usr/sbin/wpa_supplicant",
                "-D",
                "wired",
                "-i",
                "wl0",
                "-c",
            ])
            .arg(&conf)
            .stdout(log)
            .spawn()
            .unwrap(),
    );
    let sock = b.dir.join("ctrl/wl0");
    let until = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < until,
            "wpa_supplicant did not open {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b
}

#[test]
fn the_wifi_driver_configures_and_follows_a_real_wpa_supplicant() {
    let b = bed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = WifiConfig {
            ctrl_path: b.dir.join("ctrl/wl0"),
            cli_dir: b.dir.clone(),
            networks: vec![NetworkConfig {
                ssid: b"cbox-hotspot".to_vec(),
                psk: None,
                priority: 5,
                hidden: false,
            }],
            poll_interval: Duration::from_millis(200),
            roam: wpa_ctrl::RoamPolicy::default(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(box_os::wifi::run(cfg, tx, crx));
        let t = Duration::from_secs(10);
        assert_eq!(
            expect(&mut rx, t, "configured", |e| matches!(
                e,
                WifiEvent::Configured(_)
            ))
            .await,
            WifiEvent::Configured(vec![0])
        );
        expect(
            &mut rx,
            t,
            "associated",
            |e| matches!(e, WifiEvent::Association { ssid: Some(s), .. } if s == "cbox-hotspot"),
        )
        .await;
        // Someone else (wpa_cli, say) disconnects: event and status follow.
        let ctl = b.dir.join("ctrl/wl0");
        let own = b.dir.join("other");
        std::fs::create_dir_all(&own).unwrap();
        let mut other = wpactrl::Client::builder()
            .ctrl_path(&ctl)
            .cli_path(&own)
            .open()
            .unwrap();
        assert_eq!(other.request("DISCONNECT").unwrap(), "OK\n");
        expect(&mut rx, t, "disconnected event", |e| {
            matches!(
                e,
                WifiEvent::Event(Event::Disconnected {
                    locally_generated: true,
                    ..
                })
            )
        })
        .await;
        expect(&mut rx, t, "status after disconnect", |e| {
            matches!(e, WifiEvent::Association { ssid: None, .. })
        })
        .await;
        assert_eq!(other.request("RECONNECT").unwrap(), "OK\n");
        expect(&mut rx, t, "connected event", |e| {
            matches!(e, WifiEvent::Event(Event::Connected { id: Some(0), .. }))
        })
        .await;
        // A scan request is carried to wpa_supplicant without a problem.
        ctx.send(WifiCommand::Scan).unwrap();
        expect(&mut rx, t, "still associated", |e| {
            matches!(e, WifiEvent::Association { ssid: Some(_), .. })
        })
        .await;
        drop(rx);
        drop(ctx);
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    });
}
