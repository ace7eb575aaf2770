//! The box's radios as the driver sees them: what the LTE modem driver (AT
//! port) and the Wi-Fi driver (wpa_supplicant) report, kept for `cboxctl
//! status`, and their signal passed to the decision task.

use std::time::{Duration, Instant};

use decision::Observation;
use tracing::{debug, info, warn};

use super::{BoxDriver, now};

/// What the Wi-Fi driver last said (the status model's view).
#[derive(Debug, Default)]
pub(super) struct WifiStatus {
    pub(super) view: status::WifiView,
    /// wpa_supplicant's ids of the configured networks, in the config's
    /// order.
    network_ids: Vec<u32>,
    /// A roam under way: the access point joined, the signal the scan
    /// gave it, and until when the decision task is given that signal
    /// instead of the one being left. Ends with its grace only (also when
    /// the new association came early: the carrier's return may follow).
    roam: Option<RoamUnderWay>,
    /// A roaming scan under way: until its results (or this instant) the
    /// weak readings of the access point in use are not passed on — a
    /// better one of the network may be found, and the box need not leave
    /// the Wi-Fi for the moment it takes.
    scan_hold_until: Option<Instant>,
    /// When the last hold began: one per weak spell (a scan that found
    /// nothing better must not be followed by another hold at once).
    scan_hold_began: Option<Instant>,
}

/// Least time between two holds of weak readings for roaming scans.
const ROAM_SCAN_HOLD_SPACING: Duration = Duration::from_secs(30);

/// See [`WifiStatus::roam`].
#[derive(Debug)]
struct RoamUnderWay {
    /// The access point joined.
    to: String,
    to_signal_dbm: i32,
    started: Instant,
    until: Instant,
    /// Associated with `to`: the roam is done, and a loss of the
    /// sessions' path during it is explained (no hold-down for it).
    joined: bool,
    /// The radio's carrier went down during the roam (a mac80211 station
    /// leaves one access point before it joins the next): held back from
    /// the decision task until the roam's grace ends.
    link_down_held: bool,
}

/// How long a roaming scan may hold the weak readings back (a scan of
/// the network's channels takes well under a second on a board, a full
/// one 2–4 s).
const ROAM_SCAN_HOLD: Duration = Duration::from_secs(4);

/// How long a roam may take before the weak signal of the access point
/// being left counts again (a reassociation takes well under a second;
/// one that fails ends in a disconnect, which is seen by itself).
const ROAM_GRACE: Duration = Duration::from_secs(5);

/// What the modem driver last said.
pub(super) type ModemStatus = status::ModemView;

impl BoxDriver {
    /// What a Wi-Fi driver reported.
    pub(super) fn wifi_event(&mut self, uplink: usize, ev: box_os::wifi::WifiEvent) {
        use box_os::wifi::WifiEvent as W;
        let name = self.cfg.uplinks[uplink].name.clone();
        let Some(Some(st)) = self.up.wifis.get_mut(uplink) else {
            return;
        };
        match ev {
            W::Configured(ids) => {
                info!(uplink = %name, networks = ?ids, "Wi-Fi networks configured");
                st.network_ids = ids;
            }
            W::Association { ssid, bssid, freq } => {
                info!(uplink = %name, ?ssid, ?bssid, ?freq, roaming_to = ?st.roam.as_ref().map(|r| &r.to), "Wi-Fi association");
                if let Some(r) = st.roam.as_mut().filter(|r| bssid.as_ref() == Some(&r.to)) {
                    r.joined = true;
                    let since = r.started;
                    self.up.task.forgive(uplink, since);
                }
                // A problem (a wrong passphrase, wpa_supplicant away) stays
                // shown until the radio is associated again.
                if ssid.is_some() {
                    st.view.problem = None;
                }
                st.view.ssid = ssid;
                st.view.bssid = bssid;
                st.view.freq = freq;
            }
            W::Signal(dbm) => {
                st.view.signal_dbm = dbm;
                // While a roam is under way the uplink's signal is the one
                // of the access point being joined: the box does not leave
                // a Wi-Fi network for the weakness of one access point.
                let t = now();
                if st.roam.as_ref().is_some_and(|r| t >= r.until) {
                    st.roam = None;
                }
                if st.scan_hold_until.is_some_and(|u| t >= u) {
                    st.scan_hold_until = None;
                }
                if st.roam.is_none() && st.scan_hold_until.is_some() {
                    debug!(uplink = %name, signal_dbm = ?dbm, "weak reading held during a roaming scan");
                    return;
                }
                let dbm = match &st.roam {
                    Some(r) => Some(dbm.map_or(r.to_signal_dbm, |d| d.max(r.to_signal_dbm))),
                    None => dbm,
                };
                self.up.task.observe(Observation::Signal { uplink, dbm }, t);
                self.carry_out_decisions();
            }
            W::RoamScan { signal_dbm } => {
                let t = now();
                let spaced = st
                    .scan_hold_began
                    .is_none_or(|b| t.saturating_duration_since(b) >= ROAM_SCAN_HOLD_SPACING);
                debug!(uplink = %name, signal_dbm, hold = spaced, "roaming scan");
                if spaced {
                    st.scan_hold_began = Some(t);
                    st.scan_hold_until = Some(t + ROAM_SCAN_HOLD);
                }
            }
            W::Candidates(bss) => {
                st.scan_hold_until = None;
                st.view.candidates = bss
                    .into_iter()
                    .map(|b| (b.ssid, b.bssid, b.signal_dbm))
                    .collect();
            }
            W::Roaming {
                from,
                to,
                signal_dbm,
                to_signal_dbm,
            } => {
                info!(uplink = %name, %from, %to, signal_dbm, to_signal_dbm, "Wi-Fi roaming");
                st.view.roams += 1;
                st.scan_hold_until = None;
                let t = now();
                st.roam = Some(RoamUnderWay {
                    to,
                    to_signal_dbm,
                    started: t,
                    until: t + ROAM_GRACE,
                    joined: false,
                    link_down_held: false,
                });
                self.up.task.observe(
                    Observation::Signal {
                        uplink,
                        dbm: Some(to_signal_dbm),
                    },
                    t,
                );
                self.carry_out_decisions();
            }
            W::Event(wpa_ctrl::Event::WrongKey { id }) => {
                let ssid = id
                    .and_then(|id| st.network_ids.iter().position(|&n| n == id))
                    .and_then(|i| self.cfg.uplinks[uplink].wifi.as_ref()?.networks.get(i))
                    .map(|n| n.ssid.clone());
                let p = match ssid {
                    Some(s) => format!(
                        "wrong passphrase for \"{s}\": the hotspot refused the key \
                         (check uplink.wifi.network psk); wpa_supplicant retries with growing waits"
                    ),
                    None => "wrong passphrase: a hotspot refused the key".to_string(),
                };
                warn!(uplink = %name, problem = %p, "Wi-Fi");
                st.view.problem = Some(p);
            }
            W::Event(e) => debug!(uplink = %name, event = ?e, "Wi-Fi event"),
            W::Problem(p) => {
                warn!(uplink = %name, problem = %p, "Wi-Fi");
                st.view.problem = Some(p);
            }
        }
    }

    /// Whether the carrier loss of uplink `uplink`'s interface is part of
    /// a roam under way: then it is held (true) until the roam's grace
    /// ends; the carrier's return clears it.
    pub(super) fn hold_link_change(&mut self, uplink: usize, up: bool, t: Instant) -> bool {
        let Some(Some(st)) = self.up.wifis.get_mut(uplink) else {
            return false;
        };
        let Some(r) = st.roam.as_mut().filter(|r| t < r.until) else {
            return false;
        };
        if up {
            r.link_down_held = false;
            return false;
        }
        info!(uplink = %self.cfg.uplinks[uplink].name, "carrier lost during a roam: held for the roam's grace");
        r.link_down_held = true;
        true
    }

    /// Roams whose grace ended: a carrier loss held for them counts now.
    pub(super) fn end_expired_roams(&mut self, t: Instant) {
        for uplink in 0..self.up.wifis.len() {
            let Some(Some(st)) = self.up.wifis.get_mut(uplink) else {
                continue;
            };
            if st.roam.as_ref().is_none_or(|r| t < r.until) {
                continue;
            }
            let Some(r) = st.roam.take() else { continue };
            if r.joined {
                // The sessions may have fled the reassociation gap after
                // the association was reported.
                self.up.task.forgive(uplink, r.started);
            }
            if r.link_down_held {
                warn!(uplink = %self.cfg.uplinks[uplink].name, "the roam did not bring the carrier back");
                self.up
                    .task
                    .observe(Observation::Link { uplink, up: false }, t);
                self.carry_out_decisions();
            }
        }
    }

    /// What a modem driver reported.
    pub(super) fn modem_event(&mut self, uplink: usize, ev: modem_at::ModemEvent) {
        use modem_at::ModemEvent as E;
        let name = self.cfg.uplinks[uplink].name.clone();
        let Some(Some(st)) = self.up.modems.get_mut(uplink) else {
            return;
        };
        match ev {
            E::Phase(p) => {
                info!(uplink = %name, phase = ?p, "modem");
                st.phase = format!("{p:?}").to_lowercase();
                if p != modem_at::Phase::Failed {
                    st.problem = None;
                }
            }
            E::Identified { model, profile } => {
                info!(uplink = %name, %model, profile = profile.name(), "modem identified");
                st.model = Some(model);
                st.profile = Some(profile.name().into());
            }
            E::Sim(s) => debug!(uplink = %name, sim = ?s, "modem SIM"),
            E::Registration(r) => {
                info!(uplink = %name, registration = ?r, "modem registration");
                st.registration = Some(format!("{r:?}").to_lowercase());
            }
            E::Signal(sig) => {
                if sig.rssi_dbm.is_some() {
                    st.rssi_dbm = sig.rssi_dbm;
                }
                if sig.rsrp_dbm.is_some() || sig.rsrq_db.is_some() {
                    st.rsrp_dbm = sig.rsrp_dbm;
                    st.rsrq_db = sig.rsrq_db;
                }
                // The decision task's signal thresholds are on the RSSI
                // scale (as Wi-Fi's); RSRP reads some 30 dB lower on the
                // same cell, so it is the fallback only.
                let dbm = st.rssi_dbm.or(st.rsrp_dbm);
                self.up
                    .task
                    .observe(Observation::Signal { uplink, dbm }, now());
                self.carry_out_decisions();
            }
            E::Operator(o) => st.operator = o,
            E::Address(a) => {
                info!(uplink = %name, address = ?a, "modem data address");
                st.address = a;
            }
            E::Restarted(why) => warn!(uplink = %name, %why, "modem starts over"),
            E::Retry(why) => warn!(uplink = %name, %why, "modem: retrying"),
            E::Failed(why) => {
                warn!(uplink = %name, %why, "modem needs attention");
                st.problem = Some(why);
            }
        }
    }
}
