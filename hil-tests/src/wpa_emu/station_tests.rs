use super::*;

const A: &str = "02:cb:0a:00:00:01";
const B: &str = "02:cb:0a:00:00:02";
const CAFE: &str = "02:cb:0c:00:00:01";
const PSK: &str = crate::wifi_world::PSK;

fn world() -> Vec<Hotspot> {
    crate::wifi_world::hotspots()
        .into_iter()
        .map(|(_, h)| h)
        .collect()
}

/// Configures the world's network with `psk`, as the box's driver does.
fn configure(st: &mut Station, psk: &str, t: Instant) {
    assert_eq!(st.handle("ADD_NETWORK", t), "0\n");
    for r in [
        format!("SET_NETWORK 0 ssid \"{}\"", crate::wifi_world::SSID),
        format!("SET_NETWORK 0 psk \"{psk}\""),
        "SET_NETWORK 0 priority 5".into(),
        "ENABLE_NETWORK 0".into(),
    ] {
        assert_eq!(st.handle(&r, t), "OK\n", "{r}");
    }
}

fn run(st: &mut Station, from: Instant, ms: u64) -> Instant {
    let mut t = from;
    for _ in 0..ms / 10 {
        t += Duration::from_millis(10);
        st.tick(t);
    }
    t
}

fn links(effects: &[Effect]) -> Vec<LinkChange> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Link(l) => Some(l.clone()),
            Effect::Event(_) => None,
        })
        .collect()
}

#[test]
fn a_configured_network_is_joined_and_reported_like_wpa_supplicant() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    assert!(st.handle("STATUS", t0).contains("wpa_state=DISCONNECTED"));
    assert_eq!(st.handle("SIGNAL_POLL", t0), "FAIL\n");
    configure(&mut st, PSK, t0);
    let t = run(&mut st, t0, 300);
    let fx = st.drain();
    assert_eq!(links(&fx), vec![LinkChange::Associated(A.into())]);
    assert!(fx.contains(&Effect::Event(format!(
        "<3>CTRL-EVENT-CONNECTED - Connection to {A} completed [id=0 id_str=]"
    ))));
    // The box's own parsers read the replies.
    let s = wpa_ctrl::parse_status(&st.handle("STATUS", t)).unwrap();
    assert!(s.connected());
    assert_eq!(s.ssid.as_deref(), Some(crate::wifi_world::SSID));
    assert_eq!(s.key_mgmt.as_deref(), Some("WPA2-PSK"));
    let sig = wpa_ctrl::parse_signal_poll(&st.handle("SIGNAL_POLL", t)).unwrap();
    assert_eq!(sig.rssi_dbm, Some(-52));
    let nets = wpa_ctrl::parse_list_networks(&st.handle("LIST_NETWORKS", t));
    assert_eq!(nets[0].flags, "[CURRENT]");
}

#[test]
fn a_wrong_passphrase_is_refused_and_paused() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    configure(&mut st, "not-the-key", t0);
    let t = run(&mut st, t0, 300);
    let fx = st.drain();
    assert!(links(&fx).is_empty());
    let wrong = fx.iter().find_map(|e| match e {
        Effect::Event(m) => {
            wpa_ctrl::parse_event(m).filter(|e| matches!(e, wpa_ctrl::Event::WrongKey { .. }))
        }
        Effect::Link(_) => None,
    });
    assert_eq!(wrong, Some(wpa_ctrl::Event::WrongKey { id: Some(0) }));
    assert!(st.handle("LIST_NETWORKS", t).contains("[TEMP-DISABLED]"));
}

#[test]
fn scans_list_what_is_in_range_after_the_scan_time() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    assert_eq!(st.handle("SCAN", t0), "OK\n");
    assert_eq!(st.handle("SCAN", t0), "FAIL-BUSY\n");
    let t = run(&mut st, t0, 500);
    assert!(
        st.drain()
            .contains(&Effect::Event("<3>CTRL-EVENT-SCAN-RESULTS ".into()))
    );
    let bss = wpa_ctrl::parse_scan_results(&st.handle("SCAN_RESULTS", t));
    let seen: Vec<&str> = bss.iter().map(|b| b.bssid.as_str()).collect();
    assert_eq!(seen, vec![A, CAFE], "B is out of range");
    assert_eq!(bss[0].security, wpa_ctrl::Security::Psk);
    assert_eq!(bss[1].security, wpa_ctrl::Security::Open);
}

#[test]
fn roam_moves_to_another_access_point_of_the_same_network_only() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    configure(&mut st, PSK, t0);
    let t = run(&mut st, t0, 300);
    st.drain();
    assert_eq!(
        st.handle(&format!("ROAM {B}"), t),
        "FAIL\n",
        "B out of range"
    );
    assert!(st.set_signal(B, Some(-55), t));
    assert_eq!(
        st.handle(&format!("ROAM {CAFE}"), t),
        "FAIL\n",
        "other network"
    );
    assert_eq!(st.handle(&format!("ROAM {B}"), t), "OK\n");
    let t = run(&mut st, t, 100);
    assert_eq!(
        links(&st.drain()),
        vec![LinkChange::Roaming(B.into()), LinkChange::Roamed(B.into())]
    );
    assert_eq!(st.roams(), 1);
    assert_eq!(st.associated(), Some(B));
    let sig = wpa_ctrl::parse_signal_poll(&st.handle("SIGNAL_POLL", t)).unwrap();
    assert_eq!(sig.rssi_dbm, Some(-55));
}

#[test]
fn fading_out_of_range_disconnects_and_a_hotspot_in_range_is_joined_again() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    configure(&mut st, PSK, t0);
    let t = run(&mut st, t0, 300);
    st.drain();
    st.set_signal(B, Some(-70), t);
    st.set_signal(A, None, t);
    let fx = st.drain();
    assert_eq!(links(&fx), vec![LinkChange::Lost]);
    let ev = fx.iter().find_map(|e| match e {
        Effect::Event(m) => wpa_ctrl::parse_event(m),
        Effect::Link(_) => None,
    });
    assert!(matches!(
        ev,
        Some(wpa_ctrl::Event::Disconnected {
            reason: Some(4),
            ..
        })
    ));
    run(&mut st, t, 700);
    assert_eq!(links(&st.drain()), vec![LinkChange::Associated(B.into())]);
}

#[test]
fn disconnect_holds_until_reconnect_and_bad_requests_fail() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    configure(&mut st, PSK, t0);
    let t = run(&mut st, t0, 300);
    assert_eq!(st.handle("DISCONNECT", t), "OK\n");
    let t = run(&mut st, t, 1000);
    assert_eq!(st.associated(), None);
    assert_eq!(st.handle("RECONNECT", t), "OK\n");
    run(&mut st, t, 300);
    assert_eq!(st.associated(), Some(A));
    for bad in [
        "SET_NETWORK 9 ssid \"x\"",
        "SET_NETWORK 0 psk \"short\"",
        "SET_NETWORK 0 frobnicate 1",
        "SET_NETWORK 0 ssid 4",
        "ENABLE_NETWORK x",
        "SELECT_NETWORK 7",
    ] {
        assert_eq!(st.handle(bad, t), "FAIL\n", "{bad}");
    }
    assert_eq!(st.handle("FROB", t), "UNKNOWN COMMAND\n");
    assert_eq!(
        st.handle("SET_NETWORK 0 ssid 73697465", t),
        "OK\n",
        "hex SSID"
    );
}

#[test]
fn removing_the_current_network_disconnects() {
    let t0 = Instant::now();
    let mut st = Station::new(world());
    configure(&mut st, PSK, t0);
    let t = run(&mut st, t0, 300);
    st.drain();
    assert_eq!(st.handle("REMOVE_NETWORK all", t), "OK\n");
    assert_eq!(links(&st.drain()), vec![LinkChange::Lost]);
    assert_eq!(
        st.handle("LIST_NETWORKS", t),
        "network id / ssid / bssid / flags\n"
    );
}
