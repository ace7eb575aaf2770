use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

use super::*;

fn state(f: impl FnOnce(&mut PanelState)) -> PanelState {
    let mut s = PanelState {
        uplink: Some(Uplink::Local),
        ..PanelState::default()
    };
    f(&mut s);
    s
}

/// Levels of the three LEDs at `t` ms.
fn lit(s: &PanelState, t: u64) -> [bool; 3] {
    patterns(s).map(|p| p.level(t))
}

#[test]
fn each_state_has_its_pattern() {
    // On Wi-Fi or cable, good: green steady.
    let ok = state(|_| {});
    assert_eq!(lit(&ok, 0), [true, false, false]);
    assert_eq!(lit(&ok, 777), [true, false, false]);
    // On LTE: green 1 Hz.
    let lte = state(|s| s.uplink = Some(Uplink::Cellular));
    assert!(lit(&lte, 100)[0]);
    assert!(!lit(&lte, 600)[0]);
    // A handover: green 5 Hz, whatever the uplink.
    let ho = state(|s| {
        s.uplink = Some(Uplink::Cellular);
        s.handover = true;
    });
    assert_eq!(
        (lit(&ho, 50)[0], lit(&ho, 150)[0], lit(&ho, 250)[0]),
        (true, false, true)
    );
    // Degraded: amber 1 Hz beside green.
    let deg = state(|s| s.degraded = true);
    assert_eq!(lit(&deg, 100), [true, true, false]);
    assert_eq!(lit(&deg, 600), [true, false, false]);
    // No uplink: amber steady, green dark.
    let none = state(|s| s.uplink = None);
    assert_eq!(lit(&none, 300), [false, true, false]);
    // Fault: amber 5 Hz (over everything else amber would say).
    let fault = state(|s| {
        s.uplink = None;
        s.fault = true;
    });
    assert_eq!((lit(&fault, 50)[1], lit(&fault, 150)[1]), (true, false));
    // Pairing: blue 2 Hz while open, steady with a passkey to confirm.
    let open = state(|s| s.pairing = Pairing::Open);
    assert_eq!((lit(&open, 100)[2], lit(&open, 300)[2]), (true, false));
    let key = state(|s| s.pairing = Pairing::Passkey);
    assert_eq!((lit(&key, 100)[2], lit(&key, 300)[2]), (true, true));
    // Booting: green and amber alternate.
    let boot = state(|s| s.booting = true);
    assert_eq!(lit(&boot, 100)[..2], [true, false]);
    assert_eq!(lit(&boot, 300)[..2], [false, true]);
}

#[test]
fn a_degenerate_blink_is_dark_rather_than_a_division_by_zero() {
    let p = Pattern::Blink {
        on_ms: 0,
        off_ms: 0,
        phase_ms: 0,
    };
    assert!(!p.level(12345));
}

#[test]
fn pins_are_written_only_when_a_level_changes() {
    let green = Mock::new(&[T::set(State::High), T::set(State::Low), T::set(State::High)]);
    let amber = Mock::new(&[T::set(State::Low)]);
    let blue = Mock::new(&[T::set(State::Low)]);
    let mut leds = Leds::new(green, amber, blue);
    let lte = patterns(&state(|s| s.uplink = Some(Uplink::Cellular)));
    leds.show(&lte, 0).unwrap_or_default();
    leds.show(&lte, 100).unwrap_or_default(); // nothing changed
    leds.show(&lte, 600).unwrap_or_default(); // green dark
    leds.show(&lte, 700).unwrap_or_default();
    leds.show(&lte, 1000).unwrap_or_default(); // green lit again
    let (mut g, mut a, mut b) = leds.release();
    g.done();
    a.done();
    b.done();
}

#[test]
fn a_failing_led_does_not_stop_the_others_and_is_tried_again() {
    let err = MockError::Io(std::io::ErrorKind::Other);
    let green = Mock::new(&[T::set(State::High).with_error(err), T::set(State::High)]);
    let amber = Mock::new(&[T::set(State::Low)]);
    let blue = Mock::new(&[T::set(State::Low)]);
    let mut leds = Leds::new(green, amber, blue);
    let ok = patterns(&state(|_| {}));
    let e = leds.show(&ok, 0).err().unwrap_or_default();
    assert!(e.starts_with("green LED"), "{e}");
    assert_eq!(leds.show(&ok, 10), Ok(()));
    let (mut g, mut a, mut b) = leds.release();
    g.done();
    a.done();
    b.done();
}

/// Polls `levels` (one per 10 ms from t = 0); the presses and when.
fn presses(levels: &[State]) -> Vec<(u64, Press)> {
    let tx: Vec<T> = levels.iter().map(|l| T::get(*l)).collect();
    let mut b = Button::new(Mock::new(&tx), 0);
    let mut out = Vec::new();
    for i in 0..levels.len() as u64 {
        if let Ok(Some(p)) = b.poll(i * 10) {
            out.push((i * 10, p));
        }
    }
    b.release().done();
    out
}

fn held(ms: u64) -> Vec<State> {
    let mut v = vec![State::Low; 3];
    v.extend(std::iter::repeat_n(State::High, (ms / 10) as usize));
    v.extend(std::iter::repeat_n(State::Low, 10));
    v
}

#[test]
fn a_short_press_counts_on_release() {
    let p = presses(&held(300));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].1, Press::Short);
    assert!(p[0].0 > 300, "on release, after debouncing: {p:?}");
}

#[test]
fn a_long_press_counts_once_while_held_and_its_release_is_no_short_press() {
    let p = presses(&held(3500));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].1, Press::Long);
    assert!((2000..2100).contains(&p[0].0), "{p:?}");
}

#[test]
fn contact_bounce_is_not_a_press() {
    use State::{High, Low};
    // 20 ms blips, each shorter than the debounce time.
    let bounce = [
        Low, High, High, Low, High, Low, Low, High, High, Low, Low, Low, Low,
    ];
    assert!(presses(&bounce).is_empty());
}

#[test]
fn a_pin_error_is_reported_not_swallowed() {
    let err = MockError::Io(std::io::ErrorKind::Other);
    let mut b = Button::new(Mock::new(&[T::get(State::Low).with_error(err)]), 0);
    assert!(b.poll(0).is_err());
    b.release().done();
}

#[test]
fn the_snapshot_decides_uplink_degradation_and_fault() {
    let snap = |kind: &str, health: &str, state: &str, problem: bool| status::Snapshot {
        box_id: "b".into(),
        mode: "automatic".into(),
        suggestion: None,
        uplinks: vec![status::UplinkRow {
            name: kind.into(),
            kind: kind.into(),
            interface: None,
            active: true,
            health: health.into(),
            why: String::new(),
            link: true,
            address: None,
            signal_dbm: None,
            rtt_ms: None,
            loss: 0.0,
            priority: 0,
            cost: 0,
            auto_connect: true,
            changed_s_ago: 0.0,
            modem: Some(status::ModemView {
                problem: problem.then(|| "SIM PIN required".into()),
                ..status::ModemView::default()
            }),
            wifi: None,
        }],
        sites: vec![status::SiteRow {
            snapt: "main".into(),
            state: state.into(),
            session_id: 1,
            uplink: Some(kind.into()),
            streams: 0,
            bytes_sent: 0,
            bytes_received: 0,
            bytes_replayed: 0,
            bytes_buffered: 0,
            datagrams_dropped: 0,
            switches: 0,
            rtt_ms: None,
            pings_sent: 0,
            pings_lost: 0,
            last_error: None,
            standby: None,
            relay: None,
        }],
        pan_clients: Vec::new(),
        bluetooth: None,
        wifi_ap: None,
        handovers: Vec::new(),
        handovers_total: 0,
        counters: status::Counters::default(),
    };
    let p = PanelState::from_snapshot(
        &snap("lte", "warning", "Established", false),
        false,
        Pairing::Closed,
    );
    assert_eq!(
        (p.uplink, p.degraded, p.fault),
        (Some(Uplink::Cellular), true, false)
    );
    let p = PanelState::from_snapshot(
        &snap("wifi", "good", "Established", true),
        true,
        Pairing::Open,
    );
    assert_eq!(
        (p.uplink, p.degraded, p.fault, p.handover, p.pairing),
        (Some(Uplink::Local), false, true, true, Pairing::Open)
    );
    let p = PanelState::from_snapshot(
        &snap("wifi", "good", "Recovering", false),
        false,
        Pairing::Closed,
    );
    assert_eq!(p.uplink, None, "no session: no uplink shown");
}

#[test]
fn active_low_pins_invert_the_level() {
    let out = Mock::new(&[T::set(State::Low), T::set(State::High)]);
    let mut p = Polarity::new(out, true);
    embedded_hal::digital::OutputPin::set_high(&mut p).unwrap_or_default();
    embedded_hal::digital::OutputPin::set_low(&mut p).unwrap_or_default();
    let Polarity::Low(ActiveLow(mut m)) = p else {
        panic!("active low expected")
    };
    m.done();
    let inp = Mock::new(&[T::get(State::Low)]);
    let mut b = Polarity::new(inp, true);
    assert!(
        embedded_hal::digital::InputPin::is_high(&mut b).unwrap_or(false),
        "pressed pulls low"
    );
    let Polarity::Low(ActiveLow(mut m)) = b else {
        panic!("active low expected")
    };
    m.done();
}

#[test]
fn a_long_press_picks_the_next_uplink_with_link() {
    let uplinks: Vec<serde_json::Value> = ["cable", "wifi", "lte"]
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n, "kind": n, "interface": null, "active": *n == "wifi", "health": "good",
                "why": "", "link": true, "address": null, "signal_dbm": null, "rtt_ms": null,
                "loss": 0.0, "priority": 0, "cost": 0, "auto_connect": true, "changed_s_ago": 0.0,
                "modem": null, "wifi": null})
        })
        .collect();
    let mut s: status::Snapshot = serde_json::from_value(serde_json::json!({
        "box_id": "b", "mode": "automatic", "suggestion": null, "sites": [], "handovers": [],
        "uplinks": uplinks
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next_uplink(&s).as_deref(), Some("lte"));
    s.uplinks[2].link = false;
    assert_eq!(
        next_uplink(&s).as_deref(),
        Some("cable"),
        "wraps around, skips no-link"
    );
    s.uplinks[0].link = false;
    assert_eq!(next_uplink(&s), None);
}

#[test]
fn the_blue_led_follows_the_pairing_window_in_the_status() {
    let mut s = snapshot_for_pairing();
    assert_eq!(Pairing::of(&s), Pairing::Closed, "no Bluetooth configured");
    let mut bt = status::BluetoothView::default();
    s.bluetooth = Some(bt.clone());
    assert_eq!(Pairing::of(&s), Pairing::Closed);
    bt.pairing.open = true;
    s.bluetooth = Some(bt.clone());
    assert_eq!(Pairing::of(&s), Pairing::Open);
    bt.pairing.passkey = Some("042517".into());
    s.bluetooth = Some(bt);
    assert_eq!(Pairing::of(&s), Pairing::Passkey);
    // A box with only the Wi-Fi access point: its window blinks the LED.
    s.bluetooth = None;
    let mut ap = status::AccessPointView::default();
    s.wifi_ap = Some(ap.clone());
    assert_eq!(Pairing::of(&s), Pairing::Closed);
    ap.pairing_open = true;
    s.wifi_ap = Some(ap);
    assert_eq!(Pairing::of(&s), Pairing::Open);
}

fn snapshot_for_pairing() -> status::Snapshot {
    serde_json::from_str(
        r#"{"box_id":"b","mode":"automatic","suggestion":null,"uplinks":[],"sites":[],"handovers":[]}"#,
    )
    .unwrap()
}
