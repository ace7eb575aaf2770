//! cnaptd's Wi-Fi driver against the world's wpa_supplicant emulator over
//! a real control socket: the box's network is joined with its
//! passphrase, signal and scan candidates are reported, and when the
//! access point fades the driver scans by itself and roams to a stronger
//! access point of the same network. (No root needed: a Unix socket.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use box_os::wifi::{WifiCommand, WifiConfig, WifiEvent};
use common::expect;
use hil_tests::wifi_world::{PSK, SSID, hotspots};
use hil_tests::wpa_emu::{LinkChange, WpaEmu};
use wpa_ctrl::{Event, NetworkConfig, RoamPolicy};

const A: &str = "02:cb:0a:00:00:01";
const B: &str = "02:cb:0a:00:00:02";
const CAFE: &str = "02:cb:0c:00:00:01";
const T: Duration = Duration::from_secs(10);

struct Bed {
    dir: std::path::PathBuf,
    emu: WpaEmu,
    links: Arc<Mutex<Vec<LinkChange>>>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bed(name: &str) -> Bed {
    let dir = std::env::temp_dir().join(format!("cbx-wpaemu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let links = Arc::new(Mutex::new(Vec::new()));
    let l = links.clone();
    let emu = WpaEmu::start(
        &dir.join("ctrl/wlan0"),
        hotspots().into_iter().map(|(_, h)| h).collect(),
        Box::new(move |c| l.lock().unwrap().push(c.clone())),
    )
    .unwrap();
    Bed { dir, emu, links }
}

fn config(b: &Bed, psk: &str) -> WifiConfig {
    WifiConfig {
        ctrl_path: b.dir.join("ctrl/wlan0"),
        cli_dir: b.dir.clone(),
        networks: vec![NetworkConfig {
            ssid: SSID.as_bytes().to_vec(),
            psk: Some(psk.into()),
            priority: 5,
            hidden: false,
        }],
        poll_interval: Duration::from_millis(200),
        roam: RoamPolicy::default(),
    }
}

#[test]
fn the_wifi_driver_joins_scans_and_roams_on_the_emulator() {
    let b = bed("roam");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(box_os::wifi::run(config(&b, PSK), tx, crx));
        expect(
            &mut rx,
            T,
            "associated to A",
            |e| matches!(e, WifiEvent::Association { bssid: Some(x), .. } if x == A),
        )
        .await;
        expect(&mut rx, T, "signal", |e| *e == WifiEvent::Signal(Some(-52))).await;
        // The decision task's Search activity: a scan, both networks seen.
        ctx.send(WifiCommand::Scan).unwrap();
        let WifiEvent::Candidates(c) = expect(&mut rx, T, "candidates", |e| {
            matches!(e, WifiEvent::Candidates(_))
        })
        .await
        else {
            unreachable!()
        };
        let mut seen: Vec<&str> = c.iter().map(|b| b.bssid.as_str()).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![A, CAFE]);
        // The technician walks: A fades, B comes into range. The driver
        // scans by itself (no Search command) and roams.
        assert!(b.emu.set_signal(B, Some(-55)));
        assert!(b.emu.set_signal(A, Some(-76)));
        let ev = expect(&mut rx, T, "roaming", |e| {
            matches!(e, WifiEvent::Roaming { .. })
        })
        .await;
        assert_eq!(
            ev,
            WifiEvent::Roaming {
                from: A.into(),
                to: B.into(),
                signal_dbm: -76,
                to_signal_dbm: -55,
            }
        );
        expect(
            &mut rx,
            T,
            "associated to B",
            |e| matches!(e, WifiEvent::Association { bssid: Some(x), .. } if x == B),
        )
        .await;
        assert_eq!(b.emu.roams(), 1);
        assert_eq!(
            *b.links.lock().unwrap(),
            vec![
                LinkChange::Associated(A.into()),
                LinkChange::Roaming(B.into()),
                LinkChange::Roamed(B.into())
            ]
        );
        // B out of range as well: the association is lost, the world's
        // link told so.
        b.emu.set_signal(B, None);
        b.emu.set_signal(A, None);
        expect(&mut rx, T, "disconnected", |e| {
            matches!(
                e,
                WifiEvent::Event(Event::Disconnected {
                    reason: Some(4),
                    ..
                })
            )
        })
        .await;
        assert_eq!(b.links.lock().unwrap().last(), Some(&LinkChange::Lost));
        drop(rx);
        drop(ctx);
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    });
}

#[test]
fn a_wrong_passphrase_is_reported_and_nothing_is_joined() {
    let b = bed("wrongkey");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(box_os::wifi::run(config(&b, "not-the-passphrase"), tx, crx));
        expect(&mut rx, T, "wrong key", |e| {
            matches!(e, WifiEvent::Event(Event::WrongKey { id: Some(0) }))
        })
        .await;
        assert_eq!(b.emu.associated(), None);
        assert!(b.links.lock().unwrap().is_empty());
        drop(rx);
        drop(ctx);
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    });
}
