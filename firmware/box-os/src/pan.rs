//! The PAN side of the box: the bridge phones and laptops join (Ethernet
//! ports enslaved, clients listed — [`bridge`]), the Bluetooth network
//! access point with its pairing agent ([`bluetooth`]) and the Wi-Fi access
//! point for phones without Bluetooth PAN ([`access_point`]), both following
//! one pairing window. cnaptd's box driver
//! holds a [`PanHandle`]: the status model reads it, `cboxctl pan …`, the
//! page, MQTT and the button reach it through control requests.

mod access_point;
mod agent;
mod bluetooth;
mod bridge;
mod nap;
mod shared;

use std::path::Path;
use std::sync::Arc;

use pairing::{Policy, Trusted, Window};
use serde_json::json;
use status::{AccessPointView, BluetoothView, PanClient};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use control::{Call, Reply, Request};
use shared::Shared;

/// The running PAN side.
#[derive(Clone)]
pub struct PanHandle {
    bluetooth: Option<(mpsc::UnboundedSender<Call>, watch::Receiver<BluetoothView>)>,
    access_point: Option<(
        watch::Receiver<AccessPointView>,
        watch::Receiver<Option<wpa_ctrl::hostapd::AccessPoint>>,
        config::OutsideWindow,
    )>,
    clients: watch::Receiver<Vec<PanClient>>,
    /// The pairing window (shared by the NAP and the access point).
    shared: Arc<Shared>,
    /// A window opened without a length (no Bluetooth: the default).
    default_secs: u32,
}

impl std::fmt::Debug for PanHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanHandle")
            .field("bluetooth", &self.bluetooth.is_some())
            .field("access_point", &self.access_point.is_some())
            .finish_non_exhaustive()
    }
}

/// What a Bluetooth-only request gets when the box has no Bluetooth NAP.
pub const NO_BLUETOOTH: &str =
    "this box has no Bluetooth PAN configured ([pan.bluetooth] in cnapt.toml)";

/// What `PanWifi` gets when the box has no access point.
pub const NO_ACCESS_POINT: &str =
    "this box has no Wi-Fi access point configured ([pan.wifi] in cnapt.toml)";

/// Without Bluetooth, the window's defaults (the same as `[pan.bluetooth]`'s).
const DEFAULT_WINDOW_SECS: u32 = 120;
const DEFAULT_MAX_WINDOW_SECS: u32 = 600;

impl PanHandle {
    /// Starts the bridge task and, when configured, the Bluetooth NAP and
    /// the Wi-Fi access point; `cli_dir` is where control-socket clients
    /// put their sockets.
    pub fn start(cfg: &config::Pan, cli_dir: &Path) -> Self {
        let clients = bridge::spawn(cfg.bridge.clone(), cfg.ethernet.clone());
        let bt = cfg.bluetooth.as_ref().map(|b| bluetooth::Settings {
            adapter: b.adapter.clone(),
            alias: b.alias.clone(),
            bridge: cfg.bridge.clone(),
            policy: b.pairing,
            default_secs: b.pairing_seconds,
            max_secs: b.max_pairing_seconds,
            trusted_file: b.trusted_file.clone(),
        });
        let shared = match &bt {
            Some(s) => bluetooth::shared_state(s),
            None => Arc::new(Shared::new(
                Window::new(Policy::JustWorks, DEFAULT_MAX_WINDOW_SECS),
                Trusted::default(),
            )),
        };
        let default_secs = bt.as_ref().map_or(DEFAULT_WINDOW_SECS, |s| s.default_secs);
        let bluetooth = bt.map(|s| bluetooth::spawn(s, shared.clone()));
        let access_point = cfg.wifi.as_ref().map(|w| {
            let o = access_point::spawn(
                access_point::Settings {
                    ap: w.clone(),
                    bridge: cfg.bridge.clone(),
                    cli_dir: cli_dir.to_path_buf(),
                },
                shared.clone(),
            );
            (o.view, o.join, w.outside_window)
        });
        PanHandle {
            bluetooth,
            access_point,
            clients,
            shared,
            default_secs,
        }
    }

    /// The NAP's state, if there is one.
    pub fn bluetooth(&self) -> Option<BluetoothView> {
        self.bluetooth.as_ref().map(|(_, v)| v.borrow().clone())
    }

    /// The access point's state, if there is one.
    pub fn access_point(&self) -> Option<AccessPointView> {
        self.access_point
            .as_ref()
            .map(|(v, _, _)| v.borrow().clone())
    }

    /// Who is on the bridge.
    pub fn clients(&self) -> Vec<PanClient> {
        self.clients.borrow().clone()
    }

    /// How a phone joins the access point: name, security, passphrase and
    /// the `WIFI:` URI of its QR code (for `cboxctl pan wifi`, the page
    /// and the label; never in the status, which goes to MQTT).
    pub fn wifi_join(&self) -> Reply {
        let Some((_, join, outside)) = &self.access_point else {
            return Reply::err(NO_ACCESS_POINT);
        };
        let Some(ap) = join.borrow().clone() else {
            return Reply::err(
                "the access point's passphrase has not been read (see cboxctl status)",
            );
        };
        // Hidden outside a window: the QR code says so, and the phone
        // probes for the name afterwards.
        let hidden = *outside != config::OutsideWindow::Visible;
        Reply::ok(json!({
            "ssid": ap.ssid,
            "security": ap.security.as_str(),
            "passphrase": ap.passphrase,
            "hidden": hidden,
            "uri": ap.join_uri(hidden),
        }))
    }

    /// Hands a `Pan*` request to the Bluetooth task, which replies; without
    /// Bluetooth the pairing window (for the access point) is handled here.
    pub fn call(&self, req: Request, reply: oneshot::Sender<Reply>) {
        if let Request::PanWifi = req {
            let _ = reply.send(self.wifi_join());
            return;
        }
        match &self.bluetooth {
            Some((tx, _)) => {
                if let Err(mpsc::error::SendError((_, reply))) = tx.send((req, reply)) {
                    let _ = reply.send(Reply::err("the Bluetooth task has stopped"));
                }
            }
            None => {
                let _ = reply.send(self.window_call(req));
            }
        }
    }

    /// The window's requests on a box without Bluetooth.
    fn window_call(&self, req: Request) -> Reply {
        if self.access_point.is_none() {
            return Reply::err(NO_BLUETOOTH);
        }
        match req {
            Request::PanPair { seconds } => {
                let secs = seconds.unwrap_or(self.default_secs);
                match self.shared.with(|w, now| w.open(now, secs)) {
                    Ok(secs) => {
                        info!(seconds = secs, "pairing window open (Wi-Fi access point)");
                        self.shared.changed();
                        Reply::ok(json!({"seconds": secs, "policy": "wifi"}))
                    }
                    Err(e) => Reply::err(e),
                }
            }
            Request::PanClose => {
                let was = self.shared.with(|w, now| w.close(now));
                info!("pairing window closed");
                self.shared.changed();
                Reply::ok(json!({"was_open": was}))
            }
            _ => Reply::err(NO_BLUETOOTH),
        }
    }
}
