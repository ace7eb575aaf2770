use super::*;

fn snap(active: &str, mode: &str, seqs: &[u64], suggest: Option<&str>) -> Snapshot {
    let uplink = |name: &str| {
        json!({"name": name, "kind": name, "interface": null, "active": name == active,
               "health": "good", "why": "ok", "link": true, "address": null, "signal_dbm": null,
               "rtt_ms": 10.0, "loss": 0.0, "priority": 0, "cost": 0, "auto_connect": true,
               "changed_s_ago": 1.0, "modem": null, "wifi": null})
    };
    let handovers: Vec<Value> = seqs
        .iter()
        .map(|s| {
            json!({"seq": s, "at_unix_ms": 1000 * s, "site": 0, "kind": "sudden",
                   "from_uplink": "wifi", "to_uplink": "lte", "reason": "wifi: link down",
                   "stall_ms": 40.0, "bytes_buffered": 0, "bytes_replayed": 10,
                   "outcome": {"result": "completed"}})
        })
        .collect();
    serde_json::from_value(json!({
        "box_id": "box-7", "mode": mode,
        "suggestion": suggest.map(|u| json!({"uplink": u, "reason": "wifi: rtt 300 ms"})),
        "uplinks": [uplink("wifi"), uplink("lte")],
        "sites": [], "handovers": handovers, "handovers_total": seqs.len()
    }))
    .unwrap_or_else(|e| panic!("fixture: {e}"))
}

fn kinds(o: &mut Outbox) -> Vec<String> {
    std::iter::from_fn(|| o.next_event())
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn the_first_snapshot_is_published_and_starts_no_events() {
    let t = Instant::now();
    let mut o = Outbox::new(Duration::from_secs(30), 8);
    o.observe(snap("wifi", "automatic", &[1, 2], None), t);
    let st = o.status(t).unwrap_or_default();
    assert_eq!(st["box_id"], "box-7");
    assert_eq!(st["events_dropped"], 0);
    assert!(
        kinds(&mut o).is_empty(),
        "history before start is in the status"
    );
    // Nothing changed, period not over: nothing to publish.
    o.observe(
        snap("wifi", "automatic", &[1, 2], None),
        t + Duration::from_secs(1),
    );
    assert!(o.status(t + Duration::from_secs(1)).is_none());
    // The period is over: the status again.
    o.observe(
        snap("wifi", "automatic", &[1, 2], None),
        t + Duration::from_secs(31),
    );
    assert!(o.status(t + Duration::from_secs(31)).is_some());
}

#[test]
fn changes_become_events_in_order_and_the_status_follows_at_once() {
    let t = Instant::now();
    let mut o = Outbox::new(Duration::from_secs(30), 8);
    o.observe(snap("wifi", "automatic", &[], None), t);
    o.status(t);
    o.observe(snap("lte", "automatic", &[1], None), t);
    assert!(o.status(t).is_some(), "a new handover is material");
    o.observe(snap("lte", "manual", &[1], Some("wifi")), t);
    o.observe(snap("wifi", "manual", &[1, 2], None), t);
    assert_eq!(
        kinds(&mut o),
        [
            "handover",
            "uplink",
            "suggestion",
            "mode",
            "handover",
            "uplink"
        ]
    );
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts() {
    let t = Instant::now();
    let mut o = Outbox::new(Duration::from_secs(30), 3);
    o.observe(snap("wifi", "automatic", &[], None), t);
    o.observe(snap("wifi", "automatic", &[1, 2, 3, 4, 5], None), t);
    assert_eq!(o.waiting(), 3);
    assert_eq!(o.dropped(), 2);
    let first = o.next_event().unwrap_or_default();
    assert_eq!(first["handover"]["seq"], 3);
    o.put_back(first);
    assert_eq!(o.next_event().unwrap_or_default()["handover"]["seq"], 3);
    assert_eq!(o.status(t).unwrap_or_default()["events_dropped"], 2);
}
