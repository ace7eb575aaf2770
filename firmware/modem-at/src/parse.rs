//! Typed readings of 3GPP TS 27.007 responses and URCs: SIM state
//! (`+CPIN`), registration (`+CREG`/`+CGREG`/`+CEREG`, as answer or URC),
//! signal (`+CSQ`, `+CESQ`), operator (`+COPS`), PDP address (`+CGPADDR`).

use std::net::IpAddr;

/// The SIM's state (`+CPIN:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimState {
    /// Unlocked.
    Ready,
    /// Waiting for the PIN.
    Pin,
    /// Blocked: waiting for the PUK.
    Puk,
    /// Something else (`PH-SIM PIN`, `SIM PIN2`, …).
    Other(String),
}

/// Network registration status (`<stat>` of `+CREG`/`+CEREG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegStatus {
    /// 0: not registered, not searching.
    NotRegistered,
    /// 1: registered, home network.
    Home,
    /// 2: not registered, searching.
    Searching,
    /// 3: registration denied.
    Denied,
    /// 4: unknown (e.g. out of coverage).
    Unknown,
    /// 5: registered, roaming.
    Roaming,
}

impl RegStatus {
    fn from_code(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::NotRegistered,
            1 => Self::Home,
            2 => Self::Searching,
            3 => Self::Denied,
            4 => Self::Unknown,
            5 => Self::Roaming,
            _ => return None,
        })
    }

    /// Registered (home or roaming).
    pub fn registered(self) -> bool {
        matches!(self, Self::Home | Self::Roaming)
    }
}

/// Signal readings; `None` where the modem reports "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signal {
    /// RSSI in dBm (`+CSQ`).
    pub rssi_dbm: Option<i32>,
    /// LTE RSRP in dBm (`+CESQ`).
    pub rsrp_dbm: Option<i32>,
    /// LTE RSRQ in dB (`+CESQ`).
    pub rsrq_db: Option<f32>,
}

impl Signal {
    /// The figure the decision task uses: RSRP on LTE, else RSSI.
    pub fn dbm(&self) -> Option<i32> {
        self.rsrp_dbm.or(self.rssi_dbm)
    }
}

fn fields(line: &str, tag: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix(tag)?.trim();
    Some(
        rest.split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect(),
    )
}

/// `+CPIN: READY`.
pub fn cpin(line: &str) -> Option<SimState> {
    let v = line.strip_prefix("+CPIN:")?.trim();
    Some(match v {
        "READY" => SimState::Ready,
        "SIM PIN" => SimState::Pin,
        "SIM PUK" => SimState::Puk,
        other => SimState::Other(other.to_string()),
    })
}

/// `+CREG:`/`+CGREG:`/`+CEREG:` — both the answer to `?` (`<n>,<stat>[,…]`)
/// and the URC (`<stat>[,<lac>,<ci>[,<act>]]`). `answer` says which: the
/// forms are ambiguous otherwise (`+CEREG: 1,2` is n=1,stat=2 as an answer
/// but stat=1,lac=2 as a URC — which has quoted lac, so we also look at
/// quoting).
pub fn registration(line: &str, answer: bool) -> Option<(&'static str, RegStatus)> {
    let (tech, tag) = ["+CEREG:", "+CGREG:", "+CREG:"]
        .iter()
        .find(|t| line.starts_with(**t))
        .map(|t| {
            let tech = match *t {
                "+CEREG:" => "eps",
                "+CGREG:" => "gprs",
                _ => "cs",
            };
            (tech, *t)
        })?;
    let raw = line.strip_prefix(tag)?.trim();
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    let idx = if answer { 1 } else { 0 };
    let stat: u8 = parts.get(idx)?.parse().ok()?;
    Some((tech, RegStatus::from_code(stat)?))
}

/// `+CSQ: <rssi>,<ber>`: rssi 0..31 → -113..-51 dBm, 99 unknown.
pub fn csq(line: &str) -> Option<Option<i32>> {
    let f = fields(line, "+CSQ:")?;
    let n: i32 = f.first()?.parse().ok()?;
    Some(match n {
        0..=31 => Some(-113 + 2 * n),
        99 => None,
        _ => return None,
    })
}

/// `+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>`: rsrq 0..34 →
/// -19.5..-3 dB, rsrp 0..97 → -140..-44 dBm, 255 unknown.
pub fn cesq(line: &str) -> Option<(Option<f32>, Option<i32>)> {
    let f = fields(line, "+CESQ:")?;
    if f.len() < 6 {
        return None;
    }
    let rsrq: u16 = f[4].parse().ok()?;
    let rsrp: u16 = f[5].parse().ok()?;
    let rsrq = (rsrq <= 34).then(|| -20.0 + f32::from(rsrq) * 0.5);
    let rsrp = (rsrp <= 97).then(|| -141 + i32::from(rsrp));
    Some((rsrq, rsrp))
}

/// `+COPS: <mode>[,<format>,<oper>[,<act>]]` → operator name, if any.
pub fn cops(line: &str) -> Option<Option<String>> {
    let f = fields(line, "+COPS:")?;
    Some(f.get(2).filter(|o| !o.is_empty()).cloned())
}

/// `+CGPADDR: <cid>,<addr>` → the address of context `cid`.
pub fn cgpaddr(line: &str, cid: u8) -> Option<Option<IpAddr>> {
    let f = fields(line, "+CGPADDR:")?;
    if f.first()?.parse::<u8>().ok()? != cid {
        return None;
    }
    Some(f.get(1).and_then(|a| a.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_of_real_responses() {
        assert_eq!(cpin("+CPIN: READY"), Some(SimState::Ready));
        assert_eq!(cpin("+CPIN: SIM PIN"), Some(SimState::Pin));
        assert_eq!(
            registration("+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",7", true),
            Some(("eps", RegStatus::Home))
        );
        assert_eq!(
            registration("+CEREG: 5,\"1A2B\",\"01C3D4E5\",7", false),
            Some(("eps", RegStatus::Roaming))
        );
        assert_eq!(
            registration("+CREG: 0,2", true),
            Some(("cs", RegStatus::Searching))
        );
        assert_eq!(
            registration("+CREG: 3", false),
            Some(("cs", RegStatus::Denied))
        );
        assert_eq!(registration("+CREG: 9", false), None);
        assert_eq!(csq("+CSQ: 18,99"), Some(Some(-77)));
        assert_eq!(csq("+CSQ: 99,99"), Some(None));
        assert_eq!(csq("+CSQ: 42,0"), None);
        // EC25 on a good LTE cell.
        assert_eq!(
            cesq("+CESQ: 99,99,255,255,24,58"),
            Some((Some(-8.0), Some(-83)))
        );
        assert_eq!(cesq("+CESQ: 99,99,255,255,255,255"), Some((None, None)));
        assert_eq!(
            cops("+COPS: 0,0,\"Vodafone.de\",7"),
            Some(Some("Vodafone.de".into()))
        );
        assert_eq!(cops("+COPS: 0"), Some(None));
        assert_eq!(
            cgpaddr("+CGPADDR: 1,\"10.64.12.7\"", 1),
            Some(Some("10.64.12.7".parse().unwrap()))
        );
        assert_eq!(
            cgpaddr("+CGPADDR: 1,\"0.0.0.0\"", 1),
            Some(Some("0.0.0.0".parse().unwrap()))
        );
        assert_eq!(cgpaddr("+CGPADDR: 2,\"10.0.0.1\"", 1), None);
        assert_eq!(cgpaddr("+CGPADDR: 1,", 1), Some(None));
    }
}
