//! The box driver under paused time, without namespaces: its tunnels are
//! in-memory pipes to a relay made of the real session core (`Server`),
//! its link events are made up, and what it asks — tunnels over which
//! uplink, policy routes, its status — is checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use box_os::linkmon::LinkEvent;
use box_os::routing::Change;
use control::{Reply, Request};
use session::{Event, Server, ServerConfig, TunnelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use wire::BoxId;

use super::*;

/// The in-memory way out: each tunnel is a pipe whose far end goes to the
/// relay; an interface marked unreachable gives no tunnel (and no probe);
/// one silenced carries nothing in either direction, its tunnels open (a
/// silent blackhole).
#[derive(Clone)]
struct TestNet {
    relay: mpsc::UnboundedSender<DuplexStream>,
    /// Interfaces tunnels were asked over, in order.
    asked: Arc<Mutex<Vec<String>>>,
    unreachable: Arc<Mutex<HashSet<String>>>,
    silenced: Arc<Mutex<HashSet<String>>>,
}

/// Copies `from` to `to` until either ends, dropping what arrives while
/// `iface` is silenced.
async fn gate(
    mut from: tokio::io::ReadHalf<DuplexStream>,
    mut to: tokio::io::WriteHalf<DuplexStream>,
    iface: String,
    silenced: Arc<Mutex<HashSet<String>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if silenced.lock().unwrap().contains(&iface) {
                    continue;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

impl TestNet {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    fn silence(&self, iface: &str, yes: bool) {
        let mut u = self.silenced.lock().unwrap();
        if yes {
            u.insert(iface.to_owned());
        } else {
            u.remove(iface);
        }
    }

    fn set_reachable(&self, iface: &str, yes: bool) {
        let mut u = self.unreachable.lock().unwrap();
        if yes {
            u.remove(iface);
        } else {
            u.insert(iface.to_owned());
        }
    }
}

impl Net for TestNet {
    fn tunnel(
        &self,
        _snapt: &config::SnaptLink,
        via: &relay_io::connect::Egress,
        timeout: Duration,
    ) -> net::Pending<Result<Connected, String>> {
        let iface = via.interface.clone().unwrap_or_default();
        self.asked.lock().unwrap().push(iface.clone());
        let reachable = !self.unreachable.lock().unwrap().contains(&iface);
        let relay = self.relay.clone();
        let silenced = self.silenced.clone();
        Box::pin(async move {
            if !reachable {
                tokio::time::sleep(timeout).await;
                return Err(format!("{iface}: timed out"));
            }
            let (near, mid) = tokio::io::duplex(1 << 20);
            let (relay_end, far) = tokio::io::duplex(1 << 20);
            let (mid_rd, mid_wr) = tokio::io::split(mid);
            let (far_rd, far_wr) = tokio::io::split(far);
            tokio::spawn(gate(mid_rd, far_wr, iface.clone(), silenced.clone()));
            tokio::spawn(gate(far_rd, mid_wr, iface.clone(), silenced));
            relay
                .send(relay_end)
                .map_err(|_| "relay gone".to_string())?;
            Ok(Connected {
                io: Box::new(near),
                tcp: None,
            })
        })
    }

    fn probe(
        &self,
        _address: &str,
        via: &relay_io::connect::Egress,
        timeout: Duration,
    ) -> net::Pending<Option<Duration>> {
        let iface = via.interface.clone().unwrap_or_default();
        let reachable = !self.unreachable.lock().unwrap().contains(&iface)
            && !self.silenced.lock().unwrap().contains(&iface);
        Box::pin(async move {
            if reachable {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some(Duration::from_millis(5))
            } else {
                tokio::time::sleep(timeout).await;
                None
            }
        })
    }
}

/// A SNAPT made of the session core, serving the pipes it is handed;
/// `busy` follows its count of CONNECTs refused `Busy`.
async fn relay(
    mut tunnels: mpsc::UnboundedReceiver<DuplexStream>,
    mut server: Server,
    busy: Arc<AtomicU64>,
) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(TunnelId, Option<Vec<u8>>)>();
    let mut writers: HashMap<TunnelId, WriteHalf<DuplexStream>> = HashMap::new();
    let mut next = 1;
    let box_id = BoxId::new("box-1").unwrap();
    loop {
        busy.store(server.refused_busy(), Ordering::Relaxed);
        while let Some(tx) = server.poll_transmit() {
            if let Some(w) = writers.get_mut(&tx.tunnel) {
                let _ = w.write_all(&tx.bytes).await;
            }
        }
        while let Some(ev) = server.poll_event() {
            if let Event::CloseTunnel { tunnel, .. } = ev.event {
                writers.remove(&tunnel);
            }
        }
        let deadline = server
            .poll_timeout()
            .map(|(d, _)| tokio::time::Instant::from_std(d));
        tokio::select! {
            t = tunnels.recv() => {
                let Some(stream) = t else { return };
                let id = TunnelId(next);
                next += 1;
                let (mut rd, wr) = tokio::io::split(stream);
                writers.insert(id, wr);
                server.handle_tunnel_up(id, box_id.clone(), now());
                let ev_tx = ev_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                let _ = ev_tx.send((id, None));
                                return;
                            }
                            Ok(n) => {
                                if ev_tx.send((id, Some(buf[..n].to_vec()))).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            Some((id, bytes)) = ev_rx.recv() => match bytes {
                Some(b) => server.handle_input(id, &b, now()),
                None => {
                    writers.remove(&id);
                    server.handle_tunnel_lost(id, now());
                }
            },
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                server.handle_timeout(now());
            }
        }
    }
}

/// A box with a Wi-Fi (preferred) and an LTE uplink, running against the
/// relay; `routes` gets its policy-routing commands.
struct World {
    net: TestNet,
    control: mpsc::UnboundedSender<control::Call>,
    os: box_os::adapters::Sink,
    routes: mpsc::UnboundedReceiver<Change>,
    _stop: oneshot::Sender<()>,
}

const CONFIG: &str = r#"
box_id = "box-1"
[tls]
ca = "/nonexistent/ca.pem"
cert = "/nonexistent/box.pem"
key = "/nonexistent/box.key"
[[snapt]]
name = "main"
address = "snapt.invalid:4433"
server_name = "snapt.invalid"
[[uplink]]
name = "wifi"
kind = "wifi"
interface = "wlan0"
[uplink.wifi]
ctrl = "/run/wpa_supplicant/wlan0"
[[uplink.wifi.network]]
ssid = "cbox-field"
psk = "field-passphrase-1"
[[uplink]]
name = "lte"
kind = "lte"
interface = "wwan0"
"#;

impl World {
    async fn start() -> Self {
        let server = Server::new(ServerConfig::default(), 7).unwrap();
        Self::start_with(server, Arc::default()).await
    }

    /// The box against a relay of `server`.
    async fn start_with(server: Server, busy: Arc<AtomicU64>) -> Self {
        let cfg = config::CnaptConfig::parse(std::path::Path::new("test.toml"), CONFIG).unwrap();
        let (relay_tx, relay_rx) = mpsc::unbounded_channel();
        tokio::spawn(relay(relay_rx, server, busy));
        let net = TestNet {
            relay: relay_tx,
            asked: Arc::default(),
            unreachable: Arc::default(),
            silenced: Arc::default(),
        };
        let mut driver = BoxDriver::new(cfg, Arc::new(net.clone()), 1).unwrap();
        let (routes_tx, routes) = mpsc::unbounded_channel();
        driver.attach_os(
            OsCommands {
                routes: Some(routes_tx),
                wifi: vec![None, None],
                pan: None,
            },
            Vec::new(),
        );
        let control = driver.control_handle();
        let os = driver.os_sink();
        let (stop_tx, stop) = oneshot::channel();
        let (ready, _) = oneshot::channel();
        tokio::spawn(driver.run(Lifecycle {
            stop,
            ready,
            heartbeat: Heartbeat::new(),
        }));
        let w = World {
            net,
            control,
            os,
            routes,
            _stop: stop_tx,
        };
        for iface in ["wlan0", "wwan0"] {
            w.link(iface, true);
        }
        w
    }

    /// The kernel reports `iface`'s carrier and, with it, its address.
    fn link(&self, iface: &str, up: bool) {
        let address = up.then(|| {
            if iface == "wlan0" {
                "198.18.1.2".parse().unwrap()
            } else {
                "198.18.2.2".parse().unwrap()
            }
        });
        (self.os)(OsEvent::Link(LinkEvent::Link {
            iface: iface.into(),
            up,
        }));
        (self.os)(OsEvent::Link(LinkEvent::Address {
            iface: iface.into(),
            address,
        }));
    }

    async fn call(&self, req: Request) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.control.send((req, tx)).unwrap();
        rx.await.unwrap()
    }

    async fn status(&self) -> status::Snapshot {
        let r = self.call(Request::Status).await;
        serde_json::from_value(r.data).unwrap()
    }

    /// Waits (virtual time) until the box is established on `uplink`.
    async fn settled_on(&self, uplink: &str, limit: Duration) -> status::Snapshot {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let s = self.status().await;
            if s.connected() && s.sites[0].uplink.as_deref() == Some(uplink) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "not established on {uplink} within {limit:?}: {:?} on {:?}",
                s.sites[0].state,
                s.sites[0].uplink
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (virtual time) until the site's warm standby runs over
    /// `uplink`.
    async fn standby_on(&self, uplink: &str) {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status().await;
            if s.sites[0].standby.as_deref() == Some(uplink) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "no standby on {uplink}: {:?}",
                s.sites[0].standby
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The routing commands received so far: (uplink, added).
    fn routes(&mut self) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        while let Ok(c) = self.routes.try_recv() {
            out.push((c.uplink, c.want.is_some()));
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_link_moves_the_session_to_the_uplink_left_and_routes_follow() {
    let mut w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    w.standby_on("lte").await;
    // The preferred uplink first, then the warm standby over the other.
    assert_eq!(w.net.asked(), ["wlan0", "wwan0"]);
    assert!(w.routes().contains(&(0, true)), "Wi-Fi's policy route set");

    w.link("wlan0", false);
    let s = w.settled_on("lte", Duration::from_secs(10)).await;
    // The session moved over the standby: no tunnel was connected for it.
    assert_eq!(w.net.asked(), ["wlan0", "wwan0"]);
    assert!(
        w.routes().contains(&(0, false)),
        "Wi-Fi's policy route removed"
    );
    let h = s.handovers.last().expect("a handover record");
    assert_eq!(h.kind, status::HandoverKind::Sudden);
    assert_eq!(
        (h.from_uplink.as_deref(), h.to_uplink.as_str()),
        (Some("wifi"), "lte")
    );
    assert!(h.reason.contains("link down"), "{}", h.reason);
    assert!(h.stall_ms < 50.0, "over the standby: {} ms", h.stall_ms);
    assert_eq!(s.sites[0].switches, 1, "resumed, not a new session");
}

#[tokio::test(start_paused = true)]
async fn a_link_lost_during_a_planned_switch_ends_on_the_uplink_left() {
    let w = World::start().await;
    let before = w.settled_on("wifi", Duration::from_secs(10)).await;
    // The user asks for LTE; while its tunnel is being made, the Wi-Fi
    // link goes.
    let control = w.control.clone();
    let switch = tokio::spawn(async move {
        let (tx, rx) = oneshot::channel();
        control
            .send((
                Request::Switch {
                    uplink: "lte".into(),
                },
                tx,
            ))
            .unwrap();
        rx.await.unwrap()
    });
    w.link("wlan0", false);
    let reply = tokio::time::timeout(Duration::from_secs(60), switch)
        .await
        .expect("the switch request was answered")
        .unwrap();
    let s = w.settled_on("lte", Duration::from_secs(60)).await;
    assert_eq!(
        s.sites[0].session_id, before.sites[0].session_id,
        "the session survived ({reply:?})"
    );
    let last = s.handovers.last().expect("a handover record");
    assert_eq!(last.to_uplink, "lte");
    assert!(
        s.handovers.iter().all(|h| h.to_uplink == "lte"),
        "{:?}",
        s.handovers
    );
}

#[tokio::test(start_paused = true)]
async fn a_snapt_out_of_reach_is_retried_with_growing_jittered_waits() {
    let w = World::start().await;
    w.net.set_reachable("wlan0", false);
    w.net.set_reachable("wwan0", false);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let attempts = w.net.asked().len();
    // Each attempt tries both uplinks (a 4 s timeout each), then waits
    // 0.2 s doubling to 5 s, jittered: a minute holds a handful.
    assert!(
        (4..=30).contains(&attempts),
        "{attempts} tunnel attempts in 60 s"
    );
    let s = w.status().await;
    assert!(!s.connected());
    assert!(
        s.sites[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{:?}",
        s.sites[0].last_error
    );
    w.net.set_reachable("wwan0", true);
    w.settled_on("lte", Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_relay_is_left_alone_for_the_wait_it_asks() {
    let mut server = Server::new(
        ServerConfig {
            new_sessions_per_s: 1,
            ..ServerConfig::default()
        },
        7,
    )
    .unwrap();
    // Another box has just taken the relay's one new session of this second.
    let other = BoxId::new("box-0").unwrap();
    server.handle_tunnel_up(TunnelId(1000), other.clone(), now());
    let mut connect = Vec::new();
    wire::encode(
        &wire::Frame::Connect {
            version: wire::VERSION,
            window: 65536,
            keepalive_ms: 1000,
            incarnation: 1,
            box_id: other,
        },
        &mut connect,
    );
    server.handle_input(TunnelId(1000), &connect, now());
    let busy = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let w = World::start_with(server, busy.clone()).await;
    for _ in 0..100 {
        if busy.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(busy.load(Ordering::Relaxed), 1, "the box was refused Busy");
    let s = w.status().await;
    let error = s.sites[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("Busy") && error.contains("next attempt in"),
        "{error}"
    );
    // A link coming back during the wait does not make it try early.
    w.link("wwan0", false);
    w.link("wwan0", true);
    w.settled_on("wifi", Duration::from_secs(10)).await;
    let waited = start.elapsed();
    // The relay asked for 1 s; the box adds up to a quarter of jitter.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1400),
        "connected after {waited:?}"
    );
    assert_eq!(busy.load(Ordering::Relaxed), 1, "refused once, not again");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_passphrase_is_shown_until_the_radio_joins_again() {
    use box_os::wifi::WifiEvent as W;
    let w = World::start().await;
    let wifi = |event| (w.os)(OsEvent::Wifi { uplink: 0, event });
    let problem = || async {
        let s = w.status().await;
        s.uplinks[0].wifi.as_ref().and_then(|v| v.problem.clone())
    };
    wifi(W::Configured(vec![4]));
    wifi(W::Event(wpa_ctrl::Event::WrongKey { id: Some(4) }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p = problem().await.unwrap_or_default();
    assert!(
        p.contains("wrong passphrase for \"cbox-field\"") && p.contains("psk"),
        "{p}"
    );
    // Still not associated: the problem stays.
    wifi(W::Association {
        ssid: None,
        bssid: None,
        freq: None,
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(problem().await.as_deref(), Some(p.as_str()));
    // Associated (the passphrase was fixed): gone.
    wifi(W::Association {
        ssid: Some("cbox-field".into()),
        bssid: Some("02:00:00:00:00:00".into()),
        freq: Some(2412),
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(problem().await, None);
}

#[tokio::test(start_paused = true)]
async fn a_roam_to_a_strong_access_point_keeps_the_box_on_wifi() {
    use box_os::wifi::WifiEvent as W;
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    let wifi = |event| (w.os)(OsEvent::Wifi { uplink: 0, event });
    // The access point in use fades; the driver roams to a strong one of
    // the network (reported before the weak reading, as the driver does).
    wifi(W::Roaming {
        from: "02:00:00:00:00:0a".into(),
        to: "02:00:00:00:00:0b".into(),
        signal_dbm: -80,
        to_signal_dbm: -45,
    });
    for _ in 0..3 {
        wifi(W::Signal(Some(-80)));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wifi(W::Association {
        ssid: Some("cbox-field".into()),
        bssid: Some("02:00:00:00:00:0b".into()),
        freq: Some(2437),
    });
    for _ in 0..10 {
        wifi(W::Signal(Some(-45)));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let s = w.status().await;
    assert!(s.handovers.is_empty(), "{:?}", s.handovers);
    assert_eq!(s.uplinks[0].wifi.as_ref().unwrap().roams, 1);
    assert_eq!(s.uplinks[0].signal_dbm, Some(-45));
    // A roam that never completes: after its grace the weak signal
    // counts, and the box leaves the Wi-Fi.
    wifi(W::Roaming {
        from: "02:00:00:00:00:0b".into(),
        to: "02:00:00:00:00:0a".into(),
        signal_dbm: -80,
        to_signal_dbm: -50,
    });
    let start = tokio::time::Instant::now();
    for _ in 0..30 {
        wifi(W::Signal(Some(-80)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        if w.status().await.handovers.len() == 1 {
            break;
        }
    }
    let s = w.status().await;
    assert_eq!(
        s.handovers.len(),
        1,
        "the box stayed on a roam that never came"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "left within the roam's grace"
    );
    assert!(
        s.handovers[0].reason.contains("signal -80"),
        "{}",
        s.handovers[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn the_carrier_blink_of_a_roam_is_not_a_lost_link_but_a_carrier_that_stays_down_is() {
    use box_os::wifi::WifiEvent as W;
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    let wifi = |event| (w.os)(OsEvent::Wifi { uplink: 0, event });
    let roam = |to: &str| {
        wifi(W::Roaming {
            from: "02:00:00:00:00:0a".into(),
            to: to.into(),
            signal_dbm: -80,
            to_signal_dbm: -45,
        })
    };
    // A mac80211 station leaves the old access point before it joins the
    // new one: the carrier blinks for a few hundred ms.
    // (systemd-networkd keeps the address through it: IgnoreCarrierLoss=
    // in the image's 20-uplinks.network.)
    let carrier = |up| {
        (w.os)(OsEvent::Link(LinkEvent::Link {
            iface: "wlan0".into(),
            up,
        }))
    };
    roam("02:00:00:00:00:0b");
    carrier(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    carrier(true);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = w.status().await;
    assert!(s.handovers.is_empty(), "{:?}", s.handovers);
    // A roam whose carrier does not come back: the loss counts when the
    // roam's grace ends.
    roam("02:00:00:00:00:0c");
    let start = tokio::time::Instant::now();
    carrier(false);
    let s = w.settled_on("lte", Duration::from_secs(30)).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(7),
        "left after {waited:?}"
    );
    let h = s.handovers.last().unwrap();
    assert_eq!(h.kind, status::HandoverKind::Sudden, "{h:?}");
}

#[tokio::test(start_paused = true)]
async fn weak_readings_wait_for_the_roaming_scan_then_count() {
    use box_os::wifi::WifiEvent as W;
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    let wifi = |event| (w.os)(OsEvent::Wifi { uplink: 0, event });
    wifi(W::RoamScan { signal_dbm: -80 });
    for _ in 0..3 {
        wifi(W::Signal(Some(-80)));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let s = w.status().await;
    assert!(
        s.handovers.is_empty(),
        "left during the scan: {:?}",
        s.handovers
    );
    assert_eq!(
        s.uplinks[0].wifi.as_ref().unwrap().signal_dbm,
        Some(-80),
        "shown as it is"
    );
    // The scan found nothing better: the weak readings count, also when
    // the driver scans again at once (one hold per weak spell).
    wifi(W::Candidates(vec![]));
    wifi(W::RoamScan { signal_dbm: -80 });
    wifi(W::Signal(Some(-80)));
    let s = w.settled_on("lte", Duration::from_secs(10)).await;
    assert!(
        s.handovers[0].reason.contains("signal -80"),
        "{}",
        s.handovers[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_that_fled_a_roams_gap_returns_without_the_hold_down() {
    use box_os::wifi::WifiEvent as W;
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    w.standby_on("lte").await;
    let wifi = |event| (w.os)(OsEvent::Wifi { uplink: 0, event });
    wifi(W::Roaming {
        from: "02:00:00:00:00:0a".into(),
        to: "02:00:00:00:00:0b".into(),
        signal_dbm: -80,
        to_signal_dbm: -45,
    });
    // The reassociation gap: the Wi-Fi path carries nothing, long enough
    // for the session to leave it.
    w.net.silence("wlan0", true);
    let s = w.settled_on("lte", Duration::from_secs(10)).await;
    let left = tokio::time::Instant::now();
    assert_eq!(
        s.handovers.last().unwrap().kind,
        status::HandoverKind::Sudden
    );
    wifi(W::Association {
        ssid: Some("cbox-field".into()),
        bssid: Some("02:00:00:00:00:0b".into()),
        freq: Some(2437),
    });
    w.net.silence("wlan0", false);
    w.settled_on("wifi", Duration::from_secs(30)).await;
    let back = left.elapsed();
    let hold_down = decision::Policy::default().hold_down;
    assert!(back < hold_down, "back on the Wi-Fi after {back:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fading_wifi_left_by_a_planned_switch_is_held_down_before_the_return() {
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    let signal = |dbm| {
        (w.os)(OsEvent::Wifi {
            uplink: 0,
            event: box_os::wifi::WifiEvent::Signal(Some(dbm)),
        })
    };
    // The hotspot fades below the warning threshold: a planned switch.
    signal(-80);
    let s = w.settled_on("lte", Duration::from_secs(30)).await;
    let h = s.handovers.last().unwrap();
    // Away from a degraded path: promptly, over the warm standby.
    assert_eq!(h.kind, status::HandoverKind::Prompt);
    assert!(h.reason.contains("signal -80"), "{}", h.reason);
    let left = tokio::time::Instant::now();
    // It is strong again at once; the box waits out the hold-down.
    signal(-50);
    let hold_down = decision::Policy::default().hold_down;
    w.settled_on("wifi", hold_down + Duration::from_secs(30))
        .await;
    let back = left.elapsed();
    assert!(back >= hold_down, "back on Wi-Fi after {back:?}");
}

#[tokio::test(start_paused = true)]
async fn an_uplink_left_after_a_loss_is_not_returned_to_before_its_hold_down() {
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    w.link("wlan0", false);
    w.settled_on("lte", Duration::from_secs(10)).await;
    let left = tokio::time::Instant::now();
    // Wi-Fi is back at once and answers its probes.
    w.link("wlan0", true);
    let hold_down = decision::Policy::default().hold_down;
    w.settled_on("wifi", hold_down + Duration::from_secs(30))
        .await;
    let back = left.elapsed();
    assert!(
        back >= hold_down,
        "returned to the Wi-Fi {back:?} after leaving it, within its hold-down of {hold_down:?}"
    );
    let s = w.status().await;
    let h = s.handovers.last().unwrap();
    assert_eq!(h.kind, status::HandoverKind::Planned);
    assert_eq!(h.to_uplink, "wifi");
    assert!(
        h.reason.contains("preferred wifi is good again"),
        "{}",
        h.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_blackhole_moves_the_session_over_the_standby_and_the_record_tells_why() {
    let w = World::start().await;
    w.settled_on("wifi", Duration::from_secs(10)).await;
    w.standby_on("lte").await;
    let asked = w.net.asked().len();
    // The Wi-Fi path drops everything; its link stays up. The session is
    // idle (no stream), so the inactivity timeout notices.
    w.net.silence("wlan0", true);
    let cut = tokio::time::Instant::now();
    let s = w.settled_on("lte", Duration::from_secs(20)).await;
    let took = cut.elapsed();
    let inactivity = session::SessionConfig::default().inactivity_timeout;
    assert!(
        took < inactivity + Duration::from_secs(1),
        "{took:?}: {:?}",
        s.handovers
    );
    assert_eq!(
        w.net.asked().len(),
        asked,
        "no new tunnel in the stall: the standby; {:?}",
        w.net.asked()
    );
    let h = s.handovers.last().unwrap();
    assert_eq!(h.kind, status::HandoverKind::Sudden);
    assert!(h.reason.contains("wifi: silent for"), "{}", h.reason);
    // The stall counts from the path's last sign of life.
    assert!(
        h.stall_ms >= (inactivity.as_millis() as f64) - 1_100.0,
        "{} ms",
        h.stall_ms
    );
    // The Wi-Fi is not chosen again before its hold-down (its samples are
    // void after the loss), though its link never went down.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = w.status().await;
    assert_eq!(s.sites[0].uplink.as_deref(), Some("lte"));
}
