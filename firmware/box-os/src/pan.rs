//! The PAN side of the box: the bridge phones and laptops join (Ethernet
//! ports enslaved, clients listed — [`bridge`]) and the Bluetooth network
//! access point with its pairing agent ([`bluetooth`]). cnaptd's box driver
//! holds a [`PanHandle`]: the status model reads it, `cboxctl pan …`, the
//! page, MQTT and the button reach it through control requests.

mod agent;
mod bluetooth;
mod bridge;
mod nap;
mod shared;

use status::{BluetoothView, PanClient};
use tokio::sync::{mpsc, oneshot, watch};

use control::{Call, Reply, Request};

/// The running PAN side.
#[derive(Debug, Clone)]
pub struct PanHandle {
    bluetooth: Option<(mpsc::UnboundedSender<Call>, watch::Receiver<BluetoothView>)>,
    clients: watch::Receiver<Vec<PanClient>>,
}

/// What a `Pan*` request gets when the box has no Bluetooth NAP.
pub const NO_BLUETOOTH: &str =
    "this box has no Bluetooth PAN configured ([pan.bluetooth] in cnapt.toml)";

impl PanHandle {
    /// Starts the bridge task and, when configured, the Bluetooth NAP.
    pub fn start(cfg: &config::Pan) -> Self {
        let clients = bridge::spawn(cfg.bridge.clone(), cfg.ethernet.clone());
        let bluetooth = cfg.bluetooth.as_ref().map(|b| {
            bluetooth::spawn(bluetooth::Settings {
                adapter: b.adapter.clone(),
                alias: b.alias.clone(),
                bridge: cfg.bridge.clone(),
                policy: b.pairing,
                default_secs: b.pairing_seconds,
                max_secs: b.max_pairing_seconds,
                trusted_file: b.trusted_file.clone(),
            })
        });
        PanHandle { bluetooth, clients }
    }

    /// The NAP's state, if there is one.
    pub fn bluetooth(&self) -> Option<BluetoothView> {
        self.bluetooth.as_ref().map(|(_, v)| v.borrow().clone())
    }

    /// Who is on the bridge.
    pub fn clients(&self) -> Vec<PanClient> {
        self.clients.borrow().clone()
    }

    /// Hands a `Pan*` request to the Bluetooth task, which replies.
    pub fn call(&self, req: Request, reply: oneshot::Sender<Reply>) {
        match &self.bluetooth {
            Some((tx, _)) => {
                if let Err(mpsc::error::SendError((_, reply))) = tx.send((req, reply)) {
                    let _ = reply.send(Reply::err("the Bluetooth task has stopped"));
                }
            }
            None => {
                let _ = reply.send(Reply::err(NO_BLUETOOTH));
            }
        }
    }
}
