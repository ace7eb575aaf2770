use super::*;

fn uplinks(text: &str) -> Vec<config::Uplink> {
    #[derive(serde::Deserialize)]
    struct U {
        uplink: Vec<config::Uplink>,
    }
    toml::from_str::<U>(text)
        .map(|u| u.uplink)
        .unwrap_or_default()
}

fn planner(enabled: bool) -> Planner {
    let ups = uplinks(
        r#"
        [[uplink]]
        name = "wifi"
        interface = "wlan0"
        [[uplink]]
        name = "lte"
        interface = "wwan0"
        source = "198.18.20.2"
        [[uplink]]
        name = "cable"
        interface = "eth1"
        gateway = "198.18.40.254"
        "#,
    );
    assert_eq!(ups.len(), 3);
    Planner::new(
        config::Routing {
            enabled,
            table_base: 100,
            rule_priority_base: 1000,
        },
        &ups,
    )
}

fn link(iface: &str, up: bool) -> LinkEvent {
    LinkEvent::Link {
        iface: iface.into(),
        up,
    }
}

fn addr(iface: &str, a: Option<[u8; 4]>) -> LinkEvent {
    LinkEvent::Address {
        iface: iface.into(),
        address: a.map(|a| IpAddr::V4(Ipv4Addr::from(a))),
    }
}

fn gw(iface: &str, a: Option<[u8; 4]>) -> LinkEvent {
    LinkEvent::Gateway {
        iface: iface.into(),
        gateway: a.map(|a| IpAddr::V4(Ipv4Addr::from(a))),
    }
}

#[test]
fn a_table_appears_with_link_and_address_and_follows_the_learnt_gateway() {
    let mut p = planner(true);
    assert!(p.observe(&link("wlan0", true)).is_empty(), "no address yet");
    let c = p.observe(&addr("wlan0", Some([198, 18, 10, 2])));
    assert_eq!(
        c,
        vec![Change {
            uplink: 0,
            slot: Slot {
                table: 100,
                priority: 1000
            },
            want: Some(Want {
                iface: "wlan0".into(),
                source: Ipv4Addr::new(198, 18, 10, 2),
                gateway: None
            })
        }]
    );
    let c = p.observe(&gw("wlan0", Some([198, 18, 10, 1])));
    assert_eq!(
        c[0].want.as_ref().and_then(|w| w.gateway),
        Some(Ipv4Addr::new(198, 18, 10, 1))
    );
    // The same again: nothing to do.
    assert!(p.observe(&gw("wlan0", Some([198, 18, 10, 1]))).is_empty());
    // Carrier lost: removed; back: set again.
    assert_eq!(p.observe(&link("wlan0", false))[0].want, None);
    assert!(p.observe(&link("wlan0", true))[0].want.is_some());
    // Address gone: removed.
    assert_eq!(p.observe(&addr("wlan0", None))[0].want, None);
}

#[test]
fn the_configured_source_and_gateway_win_over_what_is_learnt() {
    let mut p = planner(true);
    p.observe(&link("wwan0", true));
    let c = p.observe(&addr("wwan0", Some([10, 64, 1, 7])));
    let w = c[0].want.clone().unwrap();
    assert_eq!((w.source, w.gateway), (Ipv4Addr::new(198, 18, 20, 2), None));
    assert_eq!(
        c[0].slot,
        Slot {
            table: 101,
            priority: 1001
        }
    );
    p.observe(&link("eth1", true));
    let c = p.observe(&addr("eth1", Some([198, 18, 40, 2])));
    assert_eq!(
        c[0].want.as_ref().and_then(|w| w.gateway),
        Some(Ipv4Addr::new(198, 18, 40, 254))
    );
    assert!(p.observe(&gw("eth1", Some([198, 18, 40, 1]))).is_empty());
}

#[test]
fn disabled_policy_routing_wants_nothing_and_clear_all_covers_every_slot() {
    let mut p = planner(false);
    p.observe(&link("wlan0", true));
    assert!(p.observe(&addr("wlan0", Some([198, 18, 10, 2]))).is_empty());
    let all = p.clear_all();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|c| c.want.is_none()));
    assert_eq!(
        all[2].slot,
        Slot {
            table: 102,
            priority: 1002
        }
    );
}

#[test]
fn ipv6_addresses_are_left_to_the_system() {
    let mut p = planner(true);
    p.observe(&link("wlan0", true));
    let c = p.observe(&LinkEvent::Address {
        iface: "wlan0".into(),
        address: Some(
            "2001:db8::2"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ),
    });
    assert!(c.is_empty());
}
