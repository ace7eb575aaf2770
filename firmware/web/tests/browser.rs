//! The status page end to end in headless Chromium (`tests/browser.py`,
//! selenium driving Debian's chromium): the page served by this crate's
//! router against a stand-in for cnaptd; login with a wrong and the right
//! PIN, what the cards, suggestion and history show, the buttons' commands
//! reaching the box, live updates, and screenshots of a desktop and a
//! phone viewport checked for size and horizontal overflow. Needs
//! `CBOX_BROWSER_PYTHON` (a Python with selenium; scripts/test.sh sets it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{Call, Reply, Request};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn snapshot(active: &str, suggest: bool) -> Value {
    let uplink = |name: &str, kind: &str, signal: i32, health: &str| {
        json!({"name": name, "kind": kind, "interface": null, "active": name == active,
               "health": health, "why": "ok", "link": true, "address": "198.18.10.2",
               "signal_dbm": signal, "rtt_ms": if name == "wifi" { 12.0 } else { 85.0 },
               "loss": 0.0, "priority": 0, "cost": 0, "auto_connect": true, "changed_s_ago": 3.0,
               "modem": if kind == "lte" { json!({"operator": "Field Telecom",
                        "problem": "the SIM asks for its PIN: set uplink.modem.pin"}) } else { Value::Null },
               "wifi": if kind == "wifi" { json!({"ssid": "site-office", "bssid": null, "freq": 2412,
                        "signal_dbm": signal, "candidates": [], "roams": 0, "problem": null}) } else { Value::Null }})
    };
    json!({"box_id": "box-0042", "mode": "manual",
           "suggestion": if suggest { json!({"uplink": "lte", "reason": "wifi: rtt 310 ms > 250"}) } else { Value::Null },
           "uplinks": [uplink("wifi", "wifi", -58, "warning"), uplink("lte", "lte", -71, "good")],
           "sites": [{"snapt": "main", "state": "Established", "session_id": 7, "uplink": active, "streams": 3,
                      "bytes_sent": 1, "bytes_received": 2, "bytes_replayed": 0, "bytes_buffered": 0,
                      "datagrams_dropped": 0, "switches": 2, "rtt_ms": 12.0, "pings_sent": 10,
                      "pings_lost": 0, "last_error": null}],
           "handovers": [
             {"seq": 1, "at_unix_ms": 1000, "site": 0, "kind": "sudden", "from_uplink": "wifi", "to_uplink": "lte",
              "reason": "wifi: link down", "stall_ms": 241.3, "bytes_buffered": 4096, "bytes_replayed": 1024,
              "outcome": {"result": "completed"}},
             {"seq": 2, "at_unix_ms": 9000, "site": 0, "kind": "planned", "from_uplink": "lte", "to_uplink": "wifi",
              "reason": "preferred wifi is good again", "stall_ms": 20.7, "bytes_buffered": 0, "bytes_replayed": 0,
              "outcome": {"result": "completed"}}],
           "handovers_total": 2,
           "pan_clients": [{"address": "00:1A:7D:DA:71:13", "interface": "bnep0", "ip": "198.18.77.132"}],
           "bluetooth": {"adapter": "hci0", "powered": true, "alias": "cbox box-0042", "nap_registered": true,
                         "bridge": "pan0", "problem": null,
                         "pairing": {"open": suggest, "policy": "passkey", "seconds_left": if suggest { json!(87) } else { Value::Null },
                                     "passkey": if suggest { json!("042517") } else { Value::Null },
                                     "device": if suggest { json!("00:1A:7D:DA:71:13") } else { Value::Null }},
                         "trusted": [{"address": "00:1A:7D:DA:71:13", "name": "Pixel 7", "connected": true}]},
           "wifi_ap": {"interface": "wlan1", "ssid": "cbox-box-0042", "security": "wpa2-wpa3",
                       "outside_window": "hidden", "bridge": "pan0", "state": "enabled", "visible": suggest,
                       "pairing_open": suggest, "stations": ["02:00:00:00:01:00"], "known_phones": 1,
                       "problem": null}})
}

/// The join code the test's box gives.
const JOIN_URI: &str = "WIFI:T:WPA;S:cbox-box-0042;P:ewhmx-a5bgy-t4yfa-6fhpp;H:true;;";

fn seen_has_wifi(seen: &Arc<Mutex<Vec<Request>>>) -> bool {
    seen.lock().unwrap().contains(&Request::PanWifi)
}

/// PNG width and height from the IHDR chunk.
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[1..4], b"PNG", "{}", p.display());
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_box_and_its_buttons_act_in_headless_chromium() {
    let python = std::env::var("CBOX_BROWSER_PYTHON").unwrap_or_else(|_| {
        panic!("CBOX_BROWSER_PYTHON is not set: run through scripts/test.sh (chromium, chromium-driver, selenium)")
    });
    let state = Arc::new(Mutex::new(snapshot("wifi", true)));
    let seen = Arc::new(Mutex::new(Vec::<Request>::new()));
    let (tx, mut rx) = mpsc::unbounded_channel::<Call>();
    let (st, sn) = (state.clone(), seen.clone());
    tokio::spawn(async move {
        while let Some((req, reply)) = rx.recv().await {
            let r = match &req {
                Request::Status => Reply::ok(st.lock().unwrap().clone()),
                Request::Approve => {
                    // The approved switch happens: the page must follow.
                    *st.lock().unwrap() = snapshot("lte", false);
                    Reply::ok(json!({"uplink": "lte"}))
                }
                Request::PanWifi => Reply::ok(json!({"ssid": "cbox-box-0042", "uri": JOIN_URI})),
                _ => Reply::ok(json!({})),
            };
            sn.lock().unwrap().push(req);
            let _ = reply.send(r);
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = web::router(tx, "4711".into(), Duration::from_secs(600));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}/"))
        .arg("4711")
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let o = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser run took over 2 minutes")
        .unwrap();
    assert!(
        o.status.success(),
        "browser.py failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["wrong_pin"], "wrong PIN");
    assert_eq!(r["cards"][0], "wifi:card warning active", "{r}");
    assert_eq!(r["cards"][1], "lte:card good", "{r}");
    assert_eq!(r["bars_on"], 3, "-58 dBm is three bars");
    // What the radio's driver reports as wrong is on its card.
    assert_eq!(
        r["problems"][0], "lte: the SIM asks for its PIN: set uplink.modem.pin",
        "{r}"
    );
    assert!(
        r["suggestion"].as_str().unwrap().contains("suggests lte"),
        "{r}"
    );
    assert_eq!(r["banner_visible"], true, "{r}");
    assert_eq!(
        r["mobile_banner_visible"], false,
        "no suggestion, no banner: {r}"
    );
    assert_eq!(r["handovers"].as_array().unwrap().len(), 2, "{r}");
    assert!(
        r["handovers"][0].as_str().unwrap().contains("lte → wifi"),
        "{r}"
    );
    assert!(
        r["handovers"][1].as_str().unwrap().contains("241 ms"),
        "{r}"
    );
    assert_eq!(r["connected"], "connected");
    assert_eq!(r["pair"], "done", "{r}");
    assert!(r["passkey"].as_str().unwrap().contains("042517"), "{r}");
    assert!(
        r["passkey"].as_str().unwrap().contains("00:1A:7D:DA:71:13"),
        "{r}"
    );
    assert!(
        r["bluetooth"]
            .as_str()
            .unwrap()
            .contains("pairing open, 87 s left"),
        "{r}"
    );
    assert!(
        r["clients"][0]
            .as_str()
            .unwrap()
            .contains("bnep0 · 198.18.77.132"),
        "{r}"
    );
    assert_eq!(r["live_active"], "lte", "the page followed the box");
    // The Wi-Fi access point: its line, and while pairing is open the QR
    // code, which a real reader (zbar) reads off the browser's pixels.
    assert_eq!(
        r["wifi_ap"], "Wi-Fi \u{201c}cbox-box-0042\u{201d} visible · wpa2-wpa3 · 1 joined",
        "{r}"
    );
    assert_eq!(r["wifi_qr_loaded"], true, "{r}");
    let qr = out.join("wifi-qr.png");
    let z = std::process::Command::new("zbarimg")
        .args(["-q", "--raw"])
        .arg(&qr)
        .output()
        .expect("zbarimg (zbar-tools; scripts/test.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&z.stdout).trim(),
        JOIN_URI,
        "the code on the page, as a camera reads it"
    );
    assert!(seen_has_wifi(&seen), "the page asked for the join code");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&Request::Switch {
            uplink: "lte".into()
        }),
        "{seen:?}"
    );
    assert!(seen.contains(&Request::Approve), "{seen:?}");
    assert!(
        seen.contains(&Request::PanConfirm { yes: true }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&Request::PanPair { seconds: None }),
        "{seen:?}"
    );
    // Screenshots: the phone's is 390 px wide and nothing scrolls sideways.
    let (w, h) = png_size(&out.join("status-phone.png"));
    assert_eq!(w, 390, "phone screenshot {w}x{h}");
    assert!(
        r["mobile_scroll_width"].as_u64().unwrap() <= r["mobile_inner_width"].as_u64().unwrap(),
        "{r}"
    );
    let (w, _) = png_size(&out.join("status-desktop.png"));
    assert_eq!(w, 1280);
    for f in ["status-phone.png", "status-desktop.png"] {
        let len = std::fs::metadata(out.join(f)).unwrap().len();
        assert!(len > 10_000, "{f}: {len} bytes — a blank page?");
    }
}
