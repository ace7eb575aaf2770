//! Hotspot-to-hotspot roaming: when the access point the box is associated
//! with fades below a threshold and the last scan shows another access
//! point of the same network (SSID) clearly stronger, the driver asks
//! wpa_supplicant to `ROAM` to it — the address is kept (one network, one
//! subnet), so the uplink stays usable through the reassociation.

use crate::Bss;

/// When to roam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoamPolicy {
    /// Below this signal (dBm) of the current access point the driver scans
    /// more often and looks for a better one.
    pub threshold_dbm: i32,
    /// A candidate must be this many dB stronger than the current one.
    pub margin_db: i32,
}

impl Default for RoamPolicy {
    fn default() -> Self {
        Self {
            threshold_dbm: -70,
            margin_db: 8,
        }
    }
}

impl RoamPolicy {
    /// The current access point is weak enough to look for another.
    pub fn wants_candidates(&self, signal_dbm: i32) -> bool {
        signal_dbm < self.threshold_dbm
    }

    /// The access point to roam to, if any: the strongest one of the same
    /// SSID other than `bssid`, at least `margin_db` above `signal_dbm`,
    /// and only while `signal_dbm` is under the threshold.
    pub fn target<'a>(
        &self,
        ssid: &str,
        bssid: &str,
        signal_dbm: i32,
        candidates: &'a [Bss],
    ) -> Option<&'a Bss> {
        if !self.wants_candidates(signal_dbm) {
            return None;
        }
        candidates
            .iter()
            .filter(|b| b.ssid == ssid && !b.bssid.eq_ignore_ascii_case(bssid))
            .filter(|b| b.signal_dbm >= signal_dbm.saturating_add(self.margin_db))
            .max_by_key(|b| b.signal_dbm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Security;

    fn bss(bssid: &str, ssid: &str, signal_dbm: i32) -> Bss {
        Bss {
            bssid: bssid.into(),
            freq: 2412,
            signal_dbm,
            flags: "[ESS]".into(),
            security: Security::Open,
            ssid: ssid.into(),
        }
    }

    const A: &str = "02:cb:0a:00:00:01";
    const B: &str = "02:cb:0a:00:00:02";
    const C: &str = "02:cb:0a:00:00:03";

    #[test]
    fn a_strong_current_access_point_is_kept() {
        let p = RoamPolicy::default();
        let c = [bss(B, "site", -40)];
        assert_eq!(p.target("site", A, -60, &c), None);
        assert_eq!(p.target("site", A, -70, &c), None, "threshold is exclusive");
    }

    #[test]
    fn the_strongest_same_network_access_point_beyond_the_margin_wins() {
        let p = RoamPolicy::default();
        let c = [
            bss(A, "site", -74),
            bss(B, "site", -60),
            bss(C, "site", -55),
            bss("02:cb:0c:00:00:01", "cafe", -30),
        ];
        assert_eq!(
            p.target("site", A, -74, &c).map(|b| b.bssid.as_str()),
            Some(C)
        );
    }

    #[test]
    fn a_candidate_within_the_margin_is_not_worth_a_reassociation() {
        let p = RoamPolicy::default();
        let c = [bss(B, "site", -68)];
        assert_eq!(p.target("site", A, -75, &c), None);
        let c = [bss(B, "site", -67)];
        assert!(p.target("site", A, -75, &c).is_some());
    }

    #[test]
    fn the_current_access_point_in_the_scan_is_no_target_whatever_its_case() {
        let p = RoamPolicy::default();
        let c = [bss(&A.to_uppercase(), "site", -40)];
        assert_eq!(p.target("site", A, -80, &c), None);
    }
}
