//! The front panel driven from the box's status: the LEDs show what the
//! status model says (read through the control calls, like `cboxctl`),
//! the pairing button is polled every 10 ms — a short press opens the
//! pairing window (or confirms the passkey on show), a long press forces a switch to the next uplink with
//! link. Generic over embedded-hal pins: the GPIO character device on the
//! box (cnaptd), mocks in tests.

use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};
use panel::{Button, Leds, Pairing, PanelState, Press, next_uplink, patterns};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use control::{Call, Reply, Request};

async fn ask(calls: &mpsc::UnboundedSender<Call>, req: Request) -> Reply {
    let (tx, rx) = oneshot::channel();
    if calls.send((req, tx)).is_err() {
        return Reply::err("cnaptd is stopping");
    }
    match tokio::time::timeout(Duration::from_secs(45), rx).await {
        Ok(Ok(r)) => r,
        _ => Reply::err("cnaptd did not answer"),
    }
}

/// Runs the panel until `calls` closes.
pub async fn run<G, A, B, P>(
    mut leds: Leds<G, A, B>,
    mut button: Button<P>,
    calls: mpsc::UnboundedSender<Call>,
) where
    G: OutputPin,
    A: OutputPin,
    B: OutputPin,
    P: InputPin,
{
    let origin = Instant::now();
    let ms = || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut state = PanelState {
        booting: true,
        ..PanelState::default()
    };
    let mut snapshot: Option<status::Snapshot> = None;
    let mut last_read = None::<Instant>;
    let mut led_error_logged = false;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !calls.is_closed() {
        tick.tick().await;
        let now = ms();
        match button.poll(now) {
            Ok(Some(Press::Short)) => {
                // With a passkey on show the press confirms it; otherwise
                // it opens the pairing window.
                let req = match snapshot.as_ref().map(Pairing::of) {
                    Some(Pairing::Passkey) => Request::PanConfirm { yes: true },
                    _ => Request::PanPair { seconds: None },
                };
                info!(request = ?req, "panel button: short press");
                let r = ask(&calls, req).await;
                if !r.ok {
                    warn!(error = ?r.error, "panel button: pairing refused");
                }
            }
            Ok(Some(Press::Long)) => {
                let target = snapshot.as_ref().and_then(next_uplink);
                match target {
                    Some(uplink) => {
                        info!(%uplink, "panel button: long press, switching");
                        let r = ask(&calls, Request::Switch { uplink }).await;
                        if !r.ok {
                            warn!(error = ?r.error, "panel switch refused");
                        }
                    }
                    None => warn!("panel button: long press, but no other uplink has link"),
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = ?e, "panel button unreadable"),
        }
        if last_read.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            last_read = Some(Instant::now());
            let r = ask(&calls, Request::Status).await;
            if let Ok(s) = serde_json::from_value::<status::Snapshot>(r.data) {
                state = PanelState::from_snapshot(&s, false, Pairing::of(&s));
                snapshot = Some(s);
            }
        }
        if let Err(e) = leds.show(&patterns(&state), now) {
            if !led_error_logged {
                warn!(error = %e, "status LED");
                led_error_logged = true;
            }
        } else {
            led_error_logged = false;
        }
    }
}
