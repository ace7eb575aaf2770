//! The box's own services answer only on the PAN side. Binding them to the
//! PAN address is not enough: Linux takes a packet for any of its
//! addresses on any interface (the weak host model, rp_filter or not), so
//! a stranger on the hotspot's network who routes CBoxIP via the box's
//! Wi-Fi address reached the status page, its PIN prompt and the relayed
//! services. cnaptd therefore installs, with its other rules and removed
//! with them, an nftables input rule that drops on every uplink interface
//! what is addressed to the box's PAN-side listeners: every port of a
//! listener's specific address, and the port of a listener bound to every
//! address. The box's own traffic on its uplinks (tunnels, probes, MQTT)
//! uses other addresses and ephemeral ports and is untouched.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The table cnaptd owns for this (and only it).
pub const TABLE: &str = "cbox_guard";

/// The ruleset (an `nft -f` script) that keeps strangers arriving on
/// `uplinks` away from `listeners`; `None` when there is nothing to guard
/// (no uplink interface named, or only loopback listeners).
pub fn ruleset(uplinks: &[String], listeners: &[SocketAddr]) -> Option<String> {
    let ifaces: BTreeSet<&str> = uplinks.iter().map(String::as_str).collect();
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for l in listeners {
        let ip = l.ip();
        if ip.is_loopback() {
            continue;
        }
        if ip.is_unspecified() {
            ports.insert(l.port());
        } else if ip.is_ipv4() {
            v4.insert(ip.to_string());
        } else {
            v6.insert(ip.to_string());
        }
    }
    if ifaces.is_empty() || (v4.is_empty() && v6.is_empty() && ports.is_empty()) {
        return None;
    }
    let set = |items: &BTreeSet<String>| {
        items
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names: BTreeSet<String> = ifaces.iter().map(|i| format!("\"{i}\"")).collect();
    let on_uplink = format!("iifname {{ {} }}", set(&names));
    let mut rules = String::new();
    if !v4.is_empty() {
        rules += &format!("    {on_uplink} ip daddr {{ {} }} drop\n", set(&v4));
    }
    if !v6.is_empty() {
        rules += &format!("    {on_uplink} ip6 daddr {{ {} }} drop\n", set(&v6));
    }
    if !ports.is_empty() {
        let ports: BTreeSet<String> = ports.iter().map(u16::to_string).collect();
        rules += &format!(
            "    {on_uplink} meta l4proto {{ tcp, udp }} th dport {{ {} }} drop\n",
            set(&ports)
        );
    }
    Some(format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\n\
         table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority filter - 10; policy accept;\n{rules}  }}\n}}\n"
    ))
}

/// Removes the table (if it is there).
pub fn teardown() -> String {
    format!("add table inet {TABLE}\ndelete table inet {TABLE}\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pan_listeners_are_dropped_on_every_uplink_and_loopback_is_left_alone() {
        let r = ruleset(
            &["wlan0".into(), "wwan0".into(), "wlan0".into()],
            &[
                a("198.18.77.1:80"),
                a("198.18.77.1:7000"),
                a("127.0.0.1:9000"),
                a("0.0.0.0:53"),
                a("[fd00::1]:80"),
            ],
        )
        .unwrap();
        assert!(r.starts_with("add table inet cbox_guard\ndelete table inet cbox_guard\n"));
        assert!(r.contains("type filter hook input priority filter - 10; policy accept;"));
        assert!(
            r.contains("iifname { \"wlan0\", \"wwan0\" } ip daddr { 198.18.77.1 } drop"),
            "{r}"
        );
        assert!(r.contains("iifname { \"wlan0\", \"wwan0\" } ip6 daddr { fd00::1 } drop"));
        assert!(r.contains(
            "iifname { \"wlan0\", \"wwan0\" } meta l4proto { tcp, udp } th dport { 53 } drop"
        ));
        assert!(!r.contains("127.0.0.1"));
    }

    #[test]
    fn nothing_to_guard_installs_nothing() {
        assert_eq!(ruleset(&[], &[a("198.18.77.1:80")]), None);
        assert_eq!(ruleset(&["wlan0".into()], &[a("127.0.0.1:80")]), None);
        assert_eq!(
            teardown(),
            "add table inet cbox_guard\ndelete table inet cbox_guard\n"
        );
    }
}
