#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use crate::*;

const PHONE: BdAddr = BdAddr([0x00, 0x1A, 0x7D, 0xDA, 0x71, 0x13]);
const OTHER: BdAddr = BdAddr([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x01]);

fn trusted_phone() -> Trusted {
    let mut t = Trusted::default();
    t.add(TrustedDevice {
        address: PHONE,
        name: "Pixel".into(),
        paired_unix_ms: 1,
    });
    t
}

#[test]
fn addresses_parse_and_print() {
    let a: BdAddr = "00:1a:7d:da:71:13".parse().unwrap();
    assert_eq!(a, PHONE);
    assert_eq!(a.to_string(), "00:1A:7D:DA:71:13");
    for bad in [
        "",
        "00:1A:7D:DA:71",
        "00:1A:7D:DA:71:13:00",
        "0:1A:7D:DA:71:13",
        "zz:1A:7D:DA:71:13",
    ] {
        let e = bad.parse::<BdAddr>().unwrap_err().to_string();
        assert!(e.contains("not a Bluetooth address"), "{e}");
    }
}

#[test]
fn nothing_pairs_while_the_window_is_closed() {
    let mut w = Window::new(Policy::JustWorks, 300);
    assert!(matches!(w.confirm(0, PHONE, 123_456), Answer::Reject(_)));
    assert!(matches!(w.authorize(0), Answer::Reject(_)));
    assert!(matches!(w.display(0, PHONE, 1), Answer::Reject(_)));
    assert!(!w.view(0).open);
}

#[test]
fn the_window_opens_counts_down_and_closes_by_itself() {
    let mut w = Window::new(Policy::JustWorks, 300);
    assert_eq!(w.open(1_000, 120).unwrap(), 120);
    assert!(w.is_open(1_000));
    assert_eq!(w.view(1_000).seconds_left, Some(120));
    assert_eq!(w.view(60_500).seconds_left, Some(61));
    assert_eq!(w.confirm(2_000, PHONE, 1), Answer::Accept);
    assert_eq!(w.authorize(2_000), Answer::Accept);
    assert!(!w.tick(120_999));
    assert!(w.tick(121_000));
    assert!(!w.is_open(121_000));
    assert!(!w.tick(130_000), "closes once");
    assert!(matches!(w.confirm(121_000, PHONE, 1), Answer::Reject(_)));
}

#[test]
fn window_durations_are_bounded() {
    let mut w = Window::new(Policy::JustWorks, 300);
    let e = w.open(0, 0).unwrap_err().to_string();
    assert!(e.contains("1 to 300 s"), "{e}");
    assert!(w.open(0, 301).is_err());
    assert!(!w.is_open(0));
}

#[test]
fn a_completed_pairing_closes_the_window() {
    let mut w = Window::new(Policy::JustWorks, 300);
    w.open(0, 60).unwrap();
    w.paired(5_000);
    assert!(!w.is_open(5_000));
}

#[test]
fn passkey_policy_waits_for_the_technician() {
    let mut w = Window::new(Policy::Passkey, 300);
    assert!(w.confirm_passkey(true).is_err(), "nothing to confirm yet");
    w.open(0, 60).unwrap();
    assert_eq!(w.confirm(1_000, PHONE, 42), Answer::AskTechnician);
    let v = w.view(1_000);
    assert_eq!(v.passkey.as_deref(), Some("000042"));
    assert_eq!(v.device.as_deref(), Some("00:1A:7D:DA:71:13"));
    assert_eq!(w.technician_says(PHONE), None);
    w.confirm_passkey(true).unwrap();
    assert_eq!(w.technician_says(PHONE), Some(true));
    assert_eq!(w.technician_says(OTHER), None);
    // Just-works without digits is refused under this policy.
    assert!(matches!(w.authorize(1_000), Answer::Reject(_)));
    w.cancel();
    assert_eq!(w.view(1_000).passkey, None);
    // A keyboard-only phone types what the box shows.
    assert_eq!(w.display(2_000, OTHER, 987_654), Answer::Accept);
    assert_eq!(w.view(2_000).passkey.as_deref(), Some("987654"));
}

#[test]
fn only_trusted_devices_reach_the_access_point() {
    let w = Window::new(Policy::JustWorks, 300);
    let t = trusted_phone();
    assert_eq!(w.authorize_service(PHONE, NAP_UUID, &t), Answer::Accept);
    assert_eq!(
        w.authorize_service(PHONE, &NAP_UUID.to_uppercase(), &t),
        Answer::Accept
    );
    assert!(matches!(
        w.authorize_service(OTHER, NAP_UUID, &t),
        Answer::Reject(_)
    ));
    let a2dp = "0000110d-0000-1000-8000-00805f9b34fb";
    assert!(matches!(
        w.authorize_service(PHONE, a2dp, &t),
        Answer::Reject(_)
    ));
}

#[test]
fn trusted_devices_round_trip_and_forget() {
    let mut t = trusted_phone();
    assert!(
        !t.add(t.get(PHONE).unwrap().clone()),
        "same entry twice is no change"
    );
    let text = t.to_json();
    assert!(text.contains("00:1A:7D:DA:71:13"), "{text}");
    let back = Trusted::from_json(&text).unwrap();
    assert_eq!(back, t);
    assert!(t.remove(PHONE));
    assert!(!t.remove(PHONE));
    assert!(t.is_empty());
    assert!(Trusted::from_json("{\"devices\":[{\"address\":\"nope\"}]}").is_err());
    assert!(Trusted::from_json("garbage").is_err());
}

proptest! {
    /// Whatever happens, an answer is Accept only inside an open window
    /// (pairing) or for a trusted device (service).
    #[test]
    fn accepts_only_inside_the_window(
        ops in proptest::collection::vec((0u8..6, 0u64..400_000, 0u32..400), 1..60)
    ) {
        let mut w = Window::new(Policy::JustWorks, 300);
        let mut now = 0u64;
        for (op, dt, secs) in ops {
            now += dt;
            let open_before = w.is_open(now);
            match op {
                0 => { let _ = w.open(now, secs); }
                1 => { w.close(now); }
                2 => { w.tick(now); }
                3 => {
                    let a = w.confirm(now, PHONE, secs);
                    prop_assert!(a != Answer::Accept || open_before);
                }
                4 => {
                    let a = w.authorize(now);
                    prop_assert!(a != Answer::Accept || open_before);
                }
                _ => {
                    let left = w.view(now).seconds_left;
                    prop_assert_eq!(left.is_some(), w.is_open(now));
                    prop_assert!(left.unwrap_or(0) <= 300);
                }
            }
        }
    }
}
