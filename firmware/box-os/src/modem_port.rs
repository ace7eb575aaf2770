//! The LTE modem's AT port: opens the serial device (tokio-serial), runs the
//! `modem_at::Modem` state machine over it and reports its events. When the
//! port goes away (the modem resets and re-enumerates on USB) the machine
//! starts over and the port is reopened every two seconds until it is back.

use std::path::PathBuf;
use std::time::Duration;

use modem_at::{Modem, ModemConfig, ModemEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;
use tracing::{debug, info, warn};

/// Where and how to reach the modem.
#[derive(Debug, Clone)]
pub struct ModemPort {
    /// The AT port.
    pub path: PathBuf,
    /// Baud rate.
    pub baud: u32,
    /// The bring-up's configuration.
    pub cfg: ModemConfig,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs the modem until `out` closes; every event goes to `out`.
pub async fn run(port: ModemPort, out: mpsc::UnboundedSender<ModemEvent>) {
    let mut modem = Modem::new(port.cfg.clone());
    let mut announced = false;
    loop {
        let opened = tokio_serial::new(port.path.to_string_lossy(), port.baud).open_native_async();
        match opened {
            Ok(stream) => {
                info!(port = %port.path.display(), "modem port open");
                announced = false;
                modem.port_opened(now());
                let why = drive(&mut modem, stream, &out).await;
                if out.is_closed() {
                    return;
                }
                warn!(port = %port.path.display(), %why, "modem port lost");
                modem.port_closed(&why);
                if forward(&mut modem, &out).is_err() {
                    return;
                }
            }
            Err(e) => {
                if !announced {
                    warn!(port = %port.path.display(), error = %e, "cannot open the modem port; retrying every 2 s");
                    announced = true;
                }
            }
        }
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Passes the machine's events on; `Err` when nobody listens any more.
/// `Ok(true)` when the modem stopped answering: the port is reopened (the
/// device behind the name may have changed).
fn forward(modem: &mut Modem, out: &mpsc::UnboundedSender<ModemEvent>) -> Result<bool, ()> {
    let mut reopen = false;
    while let Some(ev) = modem.poll_event() {
        debug!(?ev, "modem");
        if matches!(&ev, ModemEvent::Restarted(w) if w.contains("stopped answering")) {
            reopen = true;
        }
        out.send(ev).map_err(|_| ())?;
    }
    Ok(reopen)
}

/// Talks to the modem until the port fails; returns why.
async fn drive(
    modem: &mut Modem,
    mut port: tokio_serial::SerialStream,
    out: &mpsc::UnboundedSender<ModemEvent>,
) -> String {
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(bytes) = modem.poll_transmit() {
            if let Err(e) = port.write_all(&bytes).await {
                return format!("write: {e}");
            }
        }
        match forward(modem, out) {
            Err(()) => return "the box driver is gone".into(),
            Ok(true) => return "no answer on the port".into(),
            Ok(false) => {}
        }
        let deadline = modem.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = port.read(&mut buf) => match r {
                Ok(0) => return "end of file".into(),
                Ok(n) => modem.handle_input(&buf[..n], now()),
                Err(e) => return format!("read: {e}"),
            },
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                modem.handle_timeout(now());
            }
        }
    }
}
