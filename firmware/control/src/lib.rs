//! The daemons' control-socket protocol: one JSON [`Request`] per line, one
//! JSON [`Reply`] per line, over a Unix socket; and its client, [`call`]
//! (`cboxctl`, the status page and the MQTT link use it). The server side
//! is `daemon::control_socket`. Nothing here knows a driver.
#![warn(missing_docs)]

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// A command to a daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Sessions, uplinks, streams, handovers (both daemons).
    Status,
    /// cnaptd: planned switch of every site to this uplink.
    Switch {
        /// Uplink name from the config.
        uplink: String,
    },
    /// cnaptd: end the sessions (DISCONNECT) and start afresh.
    Disconnect,
    /// cnaptd: carry out the decision task's suggestion (manual mode).
    Approve,
    /// cnaptd: decline it.
    Decline,
    /// cnaptd: `automatic` or `manual` switching from now on.
    Mode {
        /// The mode.
        mode: String,
    },
    /// cnaptd: open the pairing window (Bluetooth and the Wi-Fi access
    /// point; default length if none).
    PanPair {
        /// How long, in seconds.
        #[serde(default)]
        seconds: Option<u32>,
    },
    /// cnaptd: close the pairing window now.
    PanClose,
    /// cnaptd: the technician's word on the passkey on show.
    PanConfirm {
        /// Matches (true) or not.
        yes: bool,
    },
    /// cnaptd: the trusted devices.
    PanDevices,
    /// cnaptd: forget a trusted device (here and in BlueZ).
    PanForget {
        /// Its Bluetooth address.
        address: String,
    },
    /// cnaptd: how a phone joins the box's Wi-Fi access point (name,
    /// passphrase, the QR code's `WIFI:` URI).
    PanWifi,
    /// snaptd: end a box's session.
    Kick {
        /// The box id.
        box_id: String,
    },
    /// snaptd: drain for maintenance — no new sessions; idle sessions are
    /// ended at once (their boxes start anew on another relay), busy ones
    /// when their streams have ended, the rest at the deadline.
    Drain {
        /// Seconds until every session left is ended.
        deadline_s: u64,
    },
    /// snaptd: start the snaptd binary now installed and hand it the
    /// listeners, the sessions and the connections to the servers; this
    /// process then exits. Boxes resume on the new process; no stream is
    /// reset. Answered once the new process has taken everything over.
    Upgrade,
}

/// A daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// Whether the command succeeded.
    pub ok: bool,
    /// Why not, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Reply {
    /// Success with data.
    pub fn ok(data: serde_json::Value) -> Self {
        Self {
            ok: true,
            error: None,
            data,
        }
    }

    /// Failure with a reason.
    pub fn err(e: impl ToString) -> Self {
        Self {
            ok: false,
            error: Some(e.to_string()),
            data: serde_json::Value::Null,
        }
    }
}

/// A request with the way back to its client.
pub type Call = (Request, oneshot::Sender<Reply>);

/// A sender of control calls that forwards each into a driver's input
/// queue as `wrap(call)`, until the driver is gone.
pub fn forward_calls<I: Send + 'static>(
    inputs: mpsc::UnboundedSender<I>,
    wrap: fn(Call) -> I,
) -> mpsc::UnboundedSender<Call> {
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Call>();
    tokio::spawn(async move {
        while let Some(call) = ctl_rx.recv().await {
            if inputs.send(wrap(call)).is_err() {
                break;
            }
        }
    });
    ctl_tx
}

/// Sends one request to the daemon at `path` and waits for its reply.
pub async fn call(path: &Path, req: &Request) -> std::io::Result<Reply> {
    let sock = UnixStream::connect(path).await?;
    let (rd, mut wr) = sock.into_split();
    let mut text = serde_json::to_string(req).map_err(std::io::Error::other)?;
    text.push('\n');
    wr.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(rd).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no reply"))?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}
