//! Against a real wpa_supplicant session (tests/transcripts: the requests
//! the box renders must be byte for byte what was sent, every reply must
//! parse) and its events; scan and signal formats; quoting; a property that
//! no input panics a parser.

use proptest::prelude::*;

use crate::*;

const SESSION: &str = include_str!("../tests/transcripts/wired-session.txt");
const EVENTS: &str = include_str!("../tests/transcripts/wired-events.txt");

/// (request, reply) pairs of a transcript.
fn exchanges(t: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in t.lines().filter(|l| !l.starts_with('#')) {
        if let Some(req) = line.strip_prefix("> ") {
            out.push((req.to_string(), String::new()));
        } else if let Some((_, reply)) = out.last_mut() {
            reply.push_str(line);
            reply.push('\n');
        }
    }
    out
}

#[test]
fn a_real_session_renders_and_parses() {
    let ex = exchanges(SESSION);
    assert_eq!(ex.len(), 18, "{ex:?}");
    let net = NetworkConfig {
        ssid: b"cbox-hotspot".to_vec(),
        psk: None,
        priority: 5,
        hidden: false,
    };
    let mut ours: Vec<String> = [
        Request::Ping,
        Request::Status,
        Request::ListNetworks,
        Request::AddNetwork,
    ]
    .iter()
    .map(|r| r.render().unwrap())
    .collect();
    ours.extend(net.requests(0).iter().map(|r| r.render().unwrap()));
    ours.push(Request::SelectNetwork(0).render().unwrap());
    let sent: Vec<&str> = ex
        .iter()
        .take(ours.len())
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(ours, sent);

    for (req, reply) in &ex {
        match req.as_str() {
            "PING" => ack(reply).unwrap(),
            "STATUS" => {
                let s = parse_status(reply).unwrap();
                if s.connected() {
                    assert_eq!(s.ssid.as_deref(), Some("cbox-hotspot"));
                    assert_eq!(s.id, Some(0));
                    assert_eq!(s.key_mgmt.as_deref(), Some("NONE"));
                    assert_eq!(s.bssid.as_deref(), Some("01:80:c2:00:00:03"));
                } else {
                    assert_eq!(s.wpa_state, "DISCONNECTED");
                }
            }
            "LIST_NETWORKS" => {
                let n = parse_list_networks(reply);
                assert!(
                    n.is_empty() || n[0].ssid == "cbox-hotspot" && n[0].flags == "[CURRENT]",
                    "{n:?}"
                );
            }
            "ADD_NETWORK" => assert_eq!(parse_add_network(reply), Ok(0)),
            // The wired driver has no radio: no signal, an empty scan.
            "SIGNAL_POLL" => assert_eq!(
                parse_signal_poll(reply),
                Err(ReplyError::Refused("FAIL".into()))
            ),
            "SCAN_RESULTS" => assert!(parse_scan_results(reply).is_empty()),
            _ => ack(reply).unwrap(),
        }
    }
}

#[test]
fn real_events() {
    let evs: Vec<Event> = EVENTS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_event)
        .collect();
    let connected = Event::Connected {
        bssid: "01:80:c2:00:00:03".into(),
        id: Some(0),
    };
    assert_eq!(evs.iter().filter(|e| **e == connected).count(), 3);
    assert!(evs.contains(&Event::Disconnected {
        bssid: Some("01:80:c2:00:00:03".into()),
        reason: Some(3),
        locally_generated: true,
    }));
    assert!(evs.contains(&Event::Other("CTRL-EVENT-NETWORK-ADDED 0".into())));
}

#[test]
fn scan_results_and_signal_of_a_radio() {
    // The format of wpa_supplicant's ctrl_iface.c (a radio, not the wired
    // driver): a header, then bssid, frequency, signal, flags, ssid.
    let text = "bssid / frequency / signal level / flags / ssid\n\
                02:11:22:33:44:55\t2437\t-48\t[WPA2-PSK-CCMP][WPS][ESS]\tsite-office\n\
                02:11:22:33:44:66\t5180\t-71\t[WPA2-EAP-CCMP][ESS]\tcorp\n\
                02:11:22:33:44:77\t2412\t-80\t[ESS]\tcafe free wifi\n\
                garbage line\n";
    let r = parse_scan_results(text);
    assert_eq!(r.len(), 3);
    assert_eq!(
        (r[0].freq, r[0].signal_dbm, r[0].security),
        (2437, -48, Security::Psk)
    );
    assert_eq!(r[1].security, Security::Enterprise);
    assert_eq!(
        (r[2].ssid.as_str(), r[2].security),
        ("cafe free wifi", Security::Open)
    );
    let s = parse_signal_poll("RSSI=-61\nLINKSPEED=65\nNOISE=9999\nFREQUENCY=2437\n").unwrap();
    assert_eq!(
        (s.rssi_dbm, s.link_speed_mbit, s.freq),
        (Some(-61), Some(65), Some(2437))
    );
    assert_eq!(
        parse_event("<3>CTRL-EVENT-SIGNAL-CHANGE above=0 signal=-79 noise=-95 txrate=6500"),
        Some(Event::SignalChange {
            signal_dbm: Some(-79),
            above: false
        })
    );
    assert_eq!(
        parse_event(
            "<3>CTRL-EVENT-SSID-TEMP-DISABLED id=1 ssid=\"site-office\" auth_failures=1 duration=10 reason=WRONG_KEY"
        ),
        Some(Event::WrongKey { id: Some(1) })
    );
}

#[test]
fn quoting_and_validation() {
    let set = |var| Request::SetNetwork { id: 3, var }.render();
    assert_eq!(
        set(NetworkVar::Ssid(b"office".to_vec())).unwrap(),
        "SET_NETWORK 3 ssid \"office\""
    );
    // Not printable, or a quote inside: hex.
    assert_eq!(
        set(NetworkVar::Ssid(b"a\"b".to_vec())).unwrap(),
        "SET_NETWORK 3 ssid 612262"
    );
    assert_eq!(
        set(NetworkVar::Ssid(vec![0xc3, 0xa9])).unwrap(),
        "SET_NETWORK 3 ssid c3a9"
    );
    assert_eq!(set(NetworkVar::Ssid(vec![])), Err(RequestError::BadSsid));
    assert_eq!(
        set(NetworkVar::Psk("short".into())),
        Err(RequestError::BadPsk)
    );
    assert_eq!(
        set(NetworkVar::Psk("has\"quote".into())),
        Err(RequestError::BadPsk)
    );
    assert_eq!(
        set(NetworkVar::Psk("correct horse".into())).unwrap(),
        "SET_NETWORK 3 psk \"correct horse\""
    );
    assert_eq!(
        Request::Roam("02:11:22:33:44:55".into()).render().unwrap(),
        "ROAM 02:11:22:33:44:55"
    );
    assert!(Request::Roam("02:11:22:33:44".into()).render().is_err());
    assert_eq!(
        Request::ScanFreqs(vec![2412, 2437]).render().unwrap(),
        "SCAN freq=2412,2437"
    );
    assert_eq!(Request::ScanFreqs(vec![]).render().unwrap(), "SCAN");
    assert_eq!(
        parse_add_network("FAIL\n"),
        Err(ReplyError::Refused("FAIL".into()))
    );
    assert!(parse_status("garbage").is_err());
}

proptest! {
    #[test]
    fn parsers_never_panic(text in "\\PC{0,400}") {
        let _ = parse_status(&text);
        let _ = parse_scan_results(&text);
        let _ = parse_signal_poll(&text);
        let _ = parse_list_networks(&text);
        let _ = parse_add_network(&text);
        let _ = parse_event(&text);
    }
}
