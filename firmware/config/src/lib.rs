//! Typed, validated configuration of the daemons: one TOML file each
//! (`cnapt.toml` for the box, `snapt.toml` for the server side).
//!
//! Parsing rejects unknown keys and wrong types with the key's path; a second
//! pass checks values and cross-references and names the offending key
//! (`service[2].snapt: no [[snapt]] named "lab"`). Every field's default and
//! effect is documented here and in `docs/config/*.toml`.
#![warn(missing_docs)]

mod cnapt;
mod common;
mod mqtt;
mod pan;
mod pinmap;
mod policy;
mod qos;
mod routing;
mod snapt;
mod transparent;
mod uplinks;
mod web;

pub use cnapt::{BoxService, ClientTarget, CnaptConfig, SnaptLink};
pub use common::{
    CipherChoice, Compress, ConfigError, Protocol, SessionSection, TlsSection, UdpTimeouts,
};
pub use mqtt::Mqtt;
pub use pan::{Bluetooth, OutsideWindow, Pan, WifiAp};
pub use pinmap::{Line, PinMap};
pub use policy::{BoxPolicy, DestinationRule};
pub use qos::{BoxQos, QosListen, RelayQos};
pub use routing::Routing;
pub use snapt::{ClientServiceListen, ServerService, SnaptConfig};
pub use transparent::Transparent;
pub use uplinks::{ModemSection, Uplink, UplinkKind, WifiNetwork, WifiSection};
pub use web::Web;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn doc(name: &str) -> (std::path::PathBuf, String) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/config")
            .join(name);
        let text = std::fs::read_to_string(&p).unwrap();
        (p, text)
    }

    #[test]
    fn the_access_point_section_has_defaults_and_names_a_bad_key() {
        let (p, t) = doc("cnapt.toml");
        let c = CnaptConfig::parse(&p, &t).unwrap();
        let w = c.pan.unwrap().wifi.unwrap();
        assert_eq!(w.interface, "wlan1");
        assert_eq!(w.ctrl, Path::new("/run/hostapd/wlan1"));
        assert_eq!(w.ssid, format!("cbox-{}", c.box_id));
        assert_eq!(w.outside_window, OutsideWindow::Hidden);
        for (from, to, key) in [
            (
                "security = \"wpa2-wpa3\"",
                "security = \"wep\"",
                "pan.wifi.security",
            ),
            (
                "outside_window = \"hidden\"",
                "outside_window = \"off\"",
                "pan.wifi.outside_window",
            ),
            ("# ssid = \"cbox-box-7\"", "ssid = \"\"", "pan.wifi.ssid"),
            (
                "interface = \"wlan1\"",
                "interface = \"eth0\"",
                "pan.wifi.interface",
            ),
            (
                "passphrase_file = \"/data",
                "passphrase_file = \"data",
                "pan.wifi.passphrase_file",
            ),
        ] {
            let bad = t.replacen(from, to, 1);
            assert_ne!(bad, t, "{from}");
            let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn compression_of_a_udp_service_is_refused_naming_the_key() {
        let (p, t) = doc("snapt.toml");
        let bad = t.replacen(
            "protocol = \"udp\"\ntarget",
            "protocol = \"udp\"\ncompress = \"lz4\"\ntarget",
            1,
        );
        assert_ne!(bad, t);
        let e = SnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("service[1].compress"), "{e}");
        assert!(e.contains("only TCP services are compressed"), "{e}");
        let bad = t.replacen("compress = \"zstd\"", "compress = \"gzip\"", 1);
        let e = SnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("compress"), "{e}");
    }

    #[test]
    fn the_documented_examples_are_valid() {
        let (p, t) = doc("cnapt.toml");
        let c = CnaptConfig::parse(&p, &t).unwrap();
        assert_eq!(c.box_id.as_str(), "box-7");
        assert_eq!(c.services.len(), 4);
        assert_eq!(c.services[2].compress, Compress::Zstd);
        assert_eq!(c.qos_services().len(), 1);
        assert_eq!(
            (c.qos.multicast, c.qos.source),
            (
                Some("239.255.70.1:7301".parse().unwrap()),
                Some("198.18.77.1".parse().unwrap())
            ),
            "the source defaults to the page's address"
        );
        assert_eq!(c.client_services[1].protocol, Protocol::Udp);
        assert_eq!(c.session.switch_timeout.as_secs(), 30);
        assert_eq!(c.udp, UdpTimeouts::default());
        let pan = c.pan.as_ref().unwrap();
        assert_eq!(pan.ethernet, ["eth0"]);
        let bt = pan.bluetooth.as_ref().unwrap();
        assert_eq!((bt.adapter.as_str(), bt.pairing_seconds), ("hci0", 120));
        let (p, t) = doc("snapt.toml");
        let s = SnaptConfig::parse(&p, &t).unwrap();
        assert!(s.services.iter().any(|x| x.compress == Compress::Zstd));
        assert!(
            s.client_services
                .iter()
                .any(|x| x.protocol == Protocol::Udp)
        );
        assert_eq!(s.qos_services().len(), 1);
        assert_eq!(
            s.qos.listen,
            Some(QosListen::Tcp("127.0.0.1:7300".parse().unwrap()))
        );
        assert!(s.allows("box-7", &"198.18.4.4:443".parse().unwrap()));
        assert!(!s.allows("box-7", &"198.18.4.4:22".parse().unwrap()));
        assert!(!s.allows("box-8", &"198.18.4.4:443".parse().unwrap()));
    }

    #[test]
    fn bad_qos_settings_are_refused_naming_the_key() {
        let (p, t) = doc("cnapt.toml");
        for (from, to, key) in [
            ("239.255.70.1:7301", "10.0.0.1:7301", "qos.multicast"),
            ("heartbeat_s = 5", "heartbeat_s = 0", "qos.heartbeat_s"),
        ] {
            let bad = t.replacen(from, to, 1);
            assert_ne!(bad, t);
            let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let (p, t) = doc("snapt.toml");
        for (from, to, key) in [
            ("127.0.0.1:7300", "localhost:7300", "qos.listen"),
            ("127.0.0.1:7300", "unix:run/qos.sock", "qos.listen"),
            (
                "max_subscribers = 64",
                "max_subscribers = 0",
                "qos.max_subscribers",
            ),
        ] {
            let bad = t.replacen(from, to, 1);
            assert_ne!(bad, t);
            let e = SnaptConfig::parse(&p, &bad).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let unix = t.replacen("127.0.0.1:7300", "unix:/run/cbox/qos.sock", 1);
        let s = SnaptConfig::parse(&p, &unix).unwrap();
        assert_eq!(
            s.qos.listen,
            Some(QosListen::Unix("/run/cbox/qos.sock".into()))
        );
    }

    #[test]
    fn no_rule_opens_the_relay_host_link_local_or_another_boxs_client_services() {
        let (p, t) = doc("snapt.toml");
        // A box allowed everything.
        let t = t.replace(
            r#"allow = ["198.18.0.0/16:80", "198.18.0.0/16:443"]"#,
            r#"allow = ["0.0.0.0/0", "[::/0]"]"#,
        );
        let s = SnaptConfig::parse(&p, &t).unwrap();
        let reach = |d: &str| s.allows("box-7", &d.parse().unwrap());
        assert!(reach("198.18.4.4:22"), "the rule itself works");
        // The tunnel listener's port only: the relay's host may serve more.
        let mut on_host = SnaptConfig::parse(&p, &t).unwrap();
        on_host.listen = "198.18.30.1:4433".parse().unwrap();
        assert!(!on_host.allows("box-7", &"198.18.30.1:4433".parse().unwrap()));
        assert!(on_host.allows("box-7", &"198.18.30.1:8000".parse().unwrap()));
        for denied in [
            "127.0.0.1:6379",
            "127.0.0.53:53",
            "[::1]:22",
            "0.0.0.0:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "224.0.0.251:5353",
            "255.255.255.255:67",
            "198.18.9.9:4433",
            "198.18.200.2:9000",
        ] {
            assert!(!reach(denied), "{denied} must stay out of reach");
            assert!(s.always_denied(&denied.parse().unwrap()).is_some());
        }
    }

    #[test]
    fn the_image_default_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../yocto-layer/meta-cbox/recipes-cbox/cbox/files/cnapt.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let c = CnaptConfig::parse(&p, &text).unwrap();
        assert_eq!(c.uplinks.len(), 3);
        let w = c.uplinks[0].wifi.as_ref().unwrap();
        assert!(w.networks.is_empty(), "wpa_supplicant's own networks rule");
    }

    #[test]
    fn errors_name_the_key() {
        let (p, t) = doc("cnapt.toml");
        let bad = t.replace("keepalive_ms = 1000", "keepalive_ms = 0");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("session.keepalive_ms"), "{e}");
        let bad = t.replace("stream_timeout_ms = 120000", "stream_timeout_ms = 2000");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("udp.stream_timeout_ms"), "{e}");
        let bad = t.replace("rtt_warning_ms = 250", "rtt_warning_ms = 900");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("decision.rtt_warning_ms"), "{e}");
        for (from, to, key) in [
            (
                "pairing = \"just-works\"",
                "pairing = \"yes\"",
                "pan.bluetooth.pairing",
            ),
            (
                "pairing_seconds = 120",
                "pairing_seconds = 700",
                "pan.bluetooth.pairing_seconds",
            ),
            (
                "adapter = \"hci0\"",
                "adapter = \"bt0\"",
                "pan.bluetooth.adapter",
            ),
            (
                "ethernet = [\"eth0\"]",
                "ethernet = [\"pan0\"]",
                "pan.ethernet[0]",
            ),
            (
                "trusted_file = \"/var",
                "trusted_file = \"var",
                "pan.bluetooth.trusted_file",
            ),
        ] {
            let bad = t.replace(from, to);
            assert_ne!(bad, t, "{from}");
            let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let bad = t.replace("psk = \"correct horse battery\"", "psk = \"short\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(
            e.contains("uplink[0].wifi.network[0]") && e.contains("8 to 63"),
            "{e}"
        );
        let bad = t.replace(
            "broker = \"mqtt.example.net:8883\"",
            "broker = \"mqtt.example.net\"",
        );
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("mqtt.broker"), "{e}");
        let bad = t.replace("prefix = \"fleet/cbox\"", "prefix = \"fleet/#\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("mqtt.prefix"), "{e}");
        let bad = t.replace("listen = \"198.18.77.1:80\"", "listen = \"0.0.0.0:80\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("web.listen"), "{e}");
        let bad = t.replace("pin = \"47119\"", "pin = \"12ab\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("web.pin"), "{e}");
        let bad = t.replace("interface = \"pan0\"", "interface = \"pan0; drop\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("transparent.interface"), "{e}");
        let bad = t.replace("table_base = 100", "table_base = 254");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("routing.table_base"), "{e}");
        let bad = t.replace("roam_margin_db = 8", "roam_margin_db = 0");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("uplink[0].wifi.roam_margin_db"), "{e}");
        let bad = t.replace("profile = \"auto\"", "profile = \"nokia\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("uplink[1].modem.profile"), "{e}");
        let bad = t.replace("# pin = \"1234\"", "pin = \"12a4\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("uplink[1].modem.pin"), "{e}");
        let bad = t.replace("kind = \"lte\"", "kind = \"satellite\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(
            e.contains("satellite") && e.contains("`wifi`, `lte`, `wired`"),
            "{e}"
        );
        let c = CnaptConfig::parse(&p, &t).unwrap();
        assert_eq!(c.uplinks[1].spec(1).priority, 1);
        assert_eq!(c.uplinks[1].spec(1).cost, 5);
        assert_eq!(c.decision, decision::Policy::default());
        let bad = t.replace("box_id = \"box-7\"", "box_id = \"box 7\"");
        assert!(
            CnaptConfig::parse(&p, &bad)
                .unwrap_err()
                .to_string()
                .contains("box_id")
        );
        let bad = t.replace("protocol = \"udp\"", "protocol = \"sctp\"");
        let e = CnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("sctp") && e.contains("line"), "{e}");
        let (p, t) = doc("snapt.toml");
        let bad = t.replace("198.18.0.0/16:80", "198.18.0.0/40:80");
        let e = SnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(
            e.contains("policy[0].allow[0]") && e.contains("prefix"),
            "{e}"
        );
        let bad = t.replace("max_boxes = 1000", "max_boxes = 0");
        assert!(
            SnaptConfig::parse(&p, &bad)
                .unwrap_err()
                .to_string()
                .contains("max_boxes")
        );
        for (good, bad_value, key) in [
            (
                "new_sessions_per_s = 1000",
                "new_sessions_per_s = 0",
                "new_sessions_per_s",
            ),
            (
                "max_handshakes = 64",
                "max_handshakes = 0",
                "max_handshakes",
            ),
            (
                "max_handshakes = 64",
                "max_handshakes = 5000",
                "max_handshakes",
            ),
        ] {
            assert!(t.contains(good), "the example sets {good}");
            let e = SnaptConfig::parse(&p, &t.replace(good, bad_value))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
        let parsed = SnaptConfig::parse(&p, &t).unwrap();
        assert_eq!(parsed.server.new_sessions_per_s, 1000);
        assert_eq!(parsed.max_handshakes, 64);
        let bad = t.replace("threads = 1 ", "threads = 0 ");
        let e = SnaptConfig::parse(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("threads"), "{e}");
        assert_eq!(SnaptConfig::parse(&p, &t).unwrap().threads, 1);
    }
}
