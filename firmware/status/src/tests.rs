use super::*;

fn uplink(name: &str, active: bool) -> UplinkRow {
    UplinkRow {
        name: name.into(),
        kind: name.into(),
        interface: Some(format!("{name}0")),
        active,
        health: "good".into(),
        why: "ok".into(),
        link: true,
        address: None,
        signal_dbm: Some(-60),
        rtt_ms: Some(12.0),
        loss: 0.0,
        priority: 0,
        cost: 0,
        auto_connect: true,
        changed_s_ago: 3.0,
        modem: None,
        wifi: Some(WifiView::default()),
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        box_id: "box-7".into(),
        mode: "automatic".into(),
        suggestion: None,
        uplinks: vec![uplink("wifi", true), uplink("lte", false)],
        sites: vec![SiteRow {
            snapt: "main".into(),
            state: "Established".into(),
            session_id: 9,
            uplink: Some("wifi".into()),
            streams: 3,
            bytes_sent: 100,
            bytes_received: 200,
            bytes_replayed: 0,
            bytes_buffered: 10,
            datagrams_dropped: 0,
            switches: 1,
            rtt_ms: Some(11.0),
            pings_sent: 40,
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
        counters: Counters::default(),
    }
}

#[test]
fn moving_figures_are_not_material_changes() {
    let a = snapshot();
    let mut b = a.clone();
    b.uplinks[0].rtt_ms = Some(30.0);
    b.uplinks[0].changed_s_ago = 9.0;
    b.sites[0].bytes_sent = 1_000_000;
    assert!(!b.differs_materially(&a));
}

#[test]
fn what_a_reader_acts_on_is_material() {
    let a = snapshot();
    let changes: Vec<fn(&mut Snapshot)> = vec![
        |s| s.mode = "manual".into(),
        |s| {
            s.suggestion = Some(Suggestion {
                uplink: "lte".into(),
                reason: Some("wifi: rtt 300 ms".into()),
            })
        },
        |s| s.uplinks[0].health = "warning".into(),
        |s| s.uplinks[1].link = false,
        |s| {
            s.uplinks[0].active = false;
            s.uplinks[1].active = true;
        },
        |s| s.sites[0].state = "Recovering".into(),
        |s| s.handovers_total = 1,
        |s| {
            s.pan_clients.push(PanClient {
                address: "aa:bb:cc:dd:ee:ff".into(),
                interface: "bnep0".into(),
                ip: None,
            })
        },
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut b = a.clone();
        change(&mut b);
        assert!(b.differs_materially(&a), "change {i}");
    }
}

#[test]
fn the_snapshot_reads_back_what_it_wrote_and_knows_its_active_uplink() {
    let a = snapshot();
    assert_eq!(a.active_uplink().map(|u| u.name.as_str()), Some("wifi"));
    assert!(a.connected());
    let text = serde_json::to_string(&a).unwrap_or_default();
    let back: Snapshot = serde_json::from_str(&text).unwrap_or_else(|_| snapshot_other());
    assert_eq!(back, a);
    // Older cnaptd without PAN clients or the handover total still reads.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("pan_clients");
        o.remove("handovers_total");
    }
    assert!(serde_json::from_value::<Snapshot>(v).is_ok());
}

fn snapshot_other() -> Snapshot {
    let mut s = snapshot();
    s.box_id = "other".into();
    s
}
