//! The box's radios as the driver sees them: what the LTE modem driver (AT
//! port) and the Wi-Fi driver (wpa_supplicant) report, kept for `cboxctl
//! status`, and their signal passed to the decision task.

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
}

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
                info!(uplink = %name, ?ssid, ?bssid, ?freq, "Wi-Fi association");
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
                self.up
                    .task
                    .observe(Observation::Signal { uplink, dbm }, now());
                self.carry_out_decisions();
            }
            W::Candidates(bss) => {
                st.view.candidates = bss
                    .into_iter()
                    .map(|b| (b.ssid, b.bssid, b.signal_dbm))
                    .collect();
            }
            W::Roaming {
                from,
                to,
                signal_dbm,
            } => {
                info!(uplink = %name, %from, %to, signal_dbm, "Wi-Fi roaming");
                st.view.roams += 1;
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
