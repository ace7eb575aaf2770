//! The box's radios: the LTE modem driver (AT port) and the Wi-Fi driver
//! (wpa_supplicant) started per uplink, what they report kept for
//! `cboxctl status`, and their signal passed to the decision task.

use std::time::Duration;

use decision::Observation;
use tracing::{debug, info, warn};

use super::{BoxDriver, Input, now};

/// What the Wi-Fi driver last said (the status model's view) and its
/// command queue.
#[derive(Debug, Default)]
pub(super) struct WifiStatus {
    pub(super) view: status::WifiView,
    pub(super) cmds: Option<tokio::sync::mpsc::UnboundedSender<box_os::wifi::WifiCommand>>,
}

/// What the modem driver last said.
pub(super) type ModemStatus = status::ModemView;

impl BoxDriver {
    /// Starts the modem drivers of the uplinks that have one.
    pub(super) fn start_modems(&mut self) {
        for (i, u) in self.cfg.uplinks.iter().enumerate() {
            let Some(m) = &u.modem else { continue };
            let cfg = match m.modem_config() {
                Ok(c) => c,
                Err((key, problem)) => {
                    // The configuration was validated at start.
                    warn!(uplink = %u.name, %key, %problem, "modem not started");
                    continue;
                }
            };
            let port = box_os::modem_port::ModemPort {
                path: m.port.clone(),
                baud: m.baud,
                cfg,
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let inputs = self.tx.clone();
            self.up
                .tasks
                .push(tokio::spawn(box_os::modem_port::run(port, tx)).abort_handle());
            self.up.tasks.push(
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        if inputs.send(Input::Modem { uplink: i, event }).is_err() {
                            break;
                        }
                    }
                })
                .abort_handle(),
            );
        }
    }

    /// Starts the Wi-Fi drivers of the uplinks that have one.
    pub(super) fn start_wifis(&mut self) {
        for (i, u) in self.cfg.uplinks.iter().enumerate() {
            let Some(w) = &u.wifi else { continue };
            let Ok(networks) = w.networks() else {
                // Validated at start.
                continue;
            };
            let cfg = box_os::wifi::WifiConfig {
                ctrl_path: w.ctrl.clone(),
                cli_dir: self
                    .cfg
                    .control_socket
                    .parent()
                    .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf),
                networks,
                poll_interval: Duration::from_millis(w.poll_interval_ms),
                roam: w.roam_policy().unwrap_or_default(),
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
            if let Some(Some(st)) = self.up.wifis.get_mut(i) {
                st.cmds = Some(ctx);
            }
            let inputs = self.tx.clone();
            self.up
                .tasks
                .push(tokio::spawn(box_os::wifi::run(cfg, tx, crx)).abort_handle());
            self.up.tasks.push(
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        if inputs.send(Input::Wifi { uplink: i, event }).is_err() {
                            break;
                        }
                    }
                })
                .abort_handle(),
            );
        }
    }

    /// What a Wi-Fi driver reported.
    pub(super) fn wifi_event(&mut self, uplink: usize, ev: box_os::wifi::WifiEvent) {
        use box_os::wifi::WifiEvent as W;
        let name = self.cfg.uplinks[uplink].name.clone();
        let Some(Some(st)) = self.up.wifis.get_mut(uplink) else {
            return;
        };
        match ev {
            W::Configured(ids) => {
                info!(uplink = %name, networks = ?ids, "Wi-Fi networks configured")
            }
            W::Association { ssid, bssid, freq } => {
                info!(uplink = %name, ?ssid, ?bssid, ?freq, "Wi-Fi association");
                st.view.problem = None;
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
