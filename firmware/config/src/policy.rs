//! Where a box may ask the SNAPT to connect on its behalf (transparent mode:
//! the destination comes from the box). Default deny: a box with no rule
//! reaches nothing this way, so the SNAPT is never an open relay.

use std::net::{IpAddr, SocketAddr};

/// One allowed destination range: `ADDR[/PREFIX][:PORT[-PORT]]`, IPv6 in
/// brackets (`[2001:db8::/32]:443`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRule {
    net: IpAddr,
    prefix: u8,
    ports: (u16, u16),
}

impl DestinationRule {
    /// Parses a rule; `Err` says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr_part, port_part) = if let Some(rest) = s.strip_prefix('[') {
            let (a, p) = rest
                .split_once(']')
                .ok_or("missing ']' after an IPv6 network")?;
            (a, p.strip_prefix(':'))
        } else {
            match s.split_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (s, None),
            }
        };
        let (ip, prefix) = match addr_part.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (addr_part, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(format!("bad prefix length {p:?}"))?,
            None => max,
        };
        let ports = match port_part {
            None | Some("") => (1, u16::MAX),
            Some(p) => {
                let (a, b) = p.split_once('-').unwrap_or((p, p));
                let a: u16 = a.parse().map_err(|_| format!("bad port {a:?}"))?;
                let b: u16 = b.parse().map_err(|_| format!("bad port {b:?}"))?;
                if a == 0 || a > b {
                    return Err(format!("bad port range {p:?}"));
                }
                (a, b)
            }
        };
        Ok(Self { net, prefix, ports })
    }

    /// Whether `dest` lies in this range.
    pub fn matches(&self, dest: &SocketAddr) -> bool {
        let port_ok = (self.ports.0..=self.ports.1).contains(&dest.port());
        let net_ok = match (self.net, dest.ip()) {
            (IpAddr::V4(n), IpAddr::V4(d)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(n) & mask == u32::from(d) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(d)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(n) & mask == u128::from(d) & mask
            }
            _ => false,
        };
        port_ok && net_ok
    }
}

/// The rules of one box (or of every box, `*`).
#[derive(Debug, Clone)]
pub struct BoxPolicy {
    /// Box id, or `*`.
    pub box_id: String,
    /// Allowed destinations.
    pub allow: Vec<DestinationRule>,
}

/// Whether `box_id` may reach `dest` under `policies`.
pub fn allows(policies: &[BoxPolicy], box_id: &str, dest: &SocketAddr) -> bool {
    policies
        .iter()
        .filter(|p| p.box_id == "*" || p.box_id == box_id)
        .any(|p| p.allow.iter().any(|r| r.matches(dest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_match_networks_and_port_ranges() {
        let r = DestinationRule::parse("198.18.0.0/16:80").unwrap();
        assert!(r.matches(&a("198.18.4.5:80")));
        assert!(!r.matches(&a("198.18.4.5:81")));
        assert!(!r.matches(&a("198.19.0.1:80")));
        let r = DestinationRule::parse("198.18.1.1:8000-8010").unwrap();
        assert!(r.matches(&a("198.18.1.1:8005")) && !r.matches(&a("198.18.1.1:8011")));
        let r = DestinationRule::parse("0.0.0.0/0").unwrap();
        assert!(r.matches(&a("203.0.113.9:1")));
        let r = DestinationRule::parse("[2001:db8::/32]:443").unwrap();
        assert!(r.matches(&a("[2001:db8:1::5]:443")) && !r.matches(&a("198.18.0.1:443")));
    }

    #[test]
    fn bad_rules_say_why() {
        assert!(
            DestinationRule::parse("example.com:80")
                .unwrap_err()
                .contains("not an IP")
        );
        assert!(
            DestinationRule::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("prefix")
        );
        assert!(
            DestinationRule::parse("10.0.0.1:90-80")
                .unwrap_err()
                .contains("range")
        );
        assert!(DestinationRule::parse("[::1:80").unwrap_err().contains("]"));
    }

    #[test]
    fn default_is_deny_and_star_applies_to_every_box() {
        let pol = vec![
            BoxPolicy {
                box_id: "box-1".into(),
                allow: vec![DestinationRule::parse("198.18.0.0/24:22").unwrap()],
            },
            BoxPolicy {
                box_id: "*".into(),
                allow: vec![DestinationRule::parse("198.18.9.9:443").unwrap()],
            },
        ];
        assert!(allows(&pol, "box-1", &a("198.18.0.7:22")));
        assert!(!allows(&pol, "box-2", &a("198.18.0.7:22")));
        assert!(allows(&pol, "box-2", &a("198.18.9.9:443")));
        assert!(!allows(&[], "box-1", &a("198.18.0.7:22")));
    }
}
