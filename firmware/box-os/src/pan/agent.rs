//! The pairing agent registered with bluetoothd: every request is answered
//! by the pure pairing policy ([`pairing::Window`]) under the shared state's
//! lock; a passkey to confirm waits for the technician, bounded.

use std::sync::Arc;
use std::time::Duration;

use bluer::agent::{Agent, ReqError, ReqResult};
use pairing::{Answer, BdAddr, Window};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::shared::Shared;

/// What the agent tells the Bluetooth task.
#[derive(Debug)]
pub(super) enum AgentEvent {
    /// A pairing with this device was let through: watch it complete.
    Accepted(BdAddr),
    /// Something on show changed (passkey, window).
    Changed,
}

/// Clears the passkey on show when BlueZ drops the request (Cancel).
struct ShownGuard(Arc<Shared>);

impl Drop for ShownGuard {
    fn drop(&mut self) {
        self.0.with(|w, _| w.cancel());
        self.0.changed();
    }
}

fn addr(a: bluer::Address) -> BdAddr {
    BdAddr(a.0)
}

fn answer(
    shared: &Shared,
    events: &mpsc::UnboundedSender<AgentEvent>,
    what: &str,
    device: BdAddr,
    a: &Answer,
) -> ReqResult<()> {
    match a {
        Answer::Accept => {
            info!(%device, what, "pairing request accepted");
            let _ = events.send(AgentEvent::Accepted(device));
            shared.changed();
            Ok(())
        }
        Answer::Reject(why) => {
            warn!(%device, what, reason = why, "pairing request refused");
            Err(ReqError::Rejected)
        }
        Answer::AskTechnician => Err(ReqError::Rejected),
    }
}

/// A request for a device on another adapter than the box's (bluetoothd
/// asks the default agent for every adapter: a second controller — a USB
/// dongle, or the phone's controller on the radio bench — is not ours to
/// pair): refused.
fn foreign(ours: &str, adapter: &str, device: BdAddr, what: &str) -> Option<ReqResult<()>> {
    if adapter == ours {
        return None;
    }
    warn!(%device, adapter, ours, what, "pairing request for another adapter refused");
    Some(Err(ReqError::Rejected))
}

/// The agent for `adapter`; its answers come from `shared`, its news go to
/// `events`.
pub(super) fn agent(
    adapter: &str,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<AgentEvent>,
) -> Agent {
    let ours: Arc<str> = Arc::from(adapter);
    let (o1, o2, o3, o4, o5) = (ours.clone(), ours.clone(), ours.clone(), ours.clone(), ours);
    let (s1, e1) = (shared.clone(), events.clone());
    let (s2, e2) = (shared.clone(), events.clone());
    let (s3, e3) = (shared.clone(), events.clone());
    let (s4, e4) = (shared.clone(), events.clone());
    let (s5, e5) = (shared, events);
    Agent {
        request_default: true,
        request_confirmation: Some(Box::new(move |r| {
            let (s, e, o1) = (s1.clone(), e1.clone(), o1.clone());
            Box::pin(async move {
                let device = addr(r.device);
                if let Some(r) = foreign(&o1, &r.adapter, device, "confirmation") {
                    return r;
                }
                let a = s.with(|w, now| w.confirm(now, device, r.passkey));
                if a != Answer::AskTechnician {
                    return answer(&s, &e, "confirmation", device, &a);
                }
                let _ = e.send(AgentEvent::Changed);
                s.changed();
                let _guard = ShownGuard(s.clone());
                info!(%device, passkey = format!("{:06}", r.passkey), "passkey on show: waiting for the technician");
                let mut changes = s.subscribe();
                let wait = tokio::time::timeout(
                    Duration::from_millis(Window::CONFIRM_TIMEOUT_MS),
                    async {
                        loop {
                            if let Some(yes) = s.with(|w, _| w.technician_says(device)) {
                                return yes;
                            }
                            if changes.changed().await.is_err() {
                                return false;
                            }
                        }
                    },
                )
                .await;
                match wait {
                    Ok(true) => answer(&s, &e, "confirmation", device, &Answer::Accept),
                    Ok(false) => answer(
                        &s,
                        &e,
                        "confirmation",
                        device,
                        &Answer::Reject("the technician declined the passkey"),
                    ),
                    Err(_) => answer(
                        &s,
                        &e,
                        "confirmation",
                        device,
                        &Answer::Reject("nobody confirmed the passkey in time"),
                    ),
                }
            })
        })),
        request_authorization: Some(Box::new(move |r| {
            let (s, e, o2) = (s2.clone(), e2.clone(), o2.clone());
            Box::pin(async move {
                let device = addr(r.device);
                if let Some(r) = foreign(&o2, &r.adapter, device, "just-works authorization") {
                    return r;
                }
                let a = s.with(|w, now| w.authorize(now));
                answer(&s, &e, "just-works authorization", device, &a)
            })
        })),
        display_passkey: Some(Box::new(move |r| {
            let (s, e, o3) = (s3.clone(), e3.clone(), o3.clone());
            Box::pin(async move {
                let device = addr(r.device);
                if let Some(r) = foreign(&o3, &r.adapter, device, "passkey display") {
                    return r;
                }
                let a = s.with(|w, now| w.display(now, device, r.passkey));
                if a == Answer::Accept {
                    info!(%device, passkey = format!("{:06}", r.passkey), "passkey on show: type it on the phone");
                }
                answer(&s, &e, "passkey display", device, &a)
            })
        })),
        display_pin_code: Some(Box::new(move |r| {
            let (s, e, o4) = (s4.clone(), e4.clone(), o4.clone());
            Box::pin(async move {
                let device = addr(r.device);
                if let Some(r) = foreign(&o4, &r.adapter, device, "PIN display") {
                    return r;
                }
                let Ok(pin) = r.pincode.parse::<u32>() else {
                    warn!(%device, "pairing refused: a PIN code that is not six digits");
                    return Err(ReqError::Rejected);
                };
                let a = s.with(|w, now| w.display(now, device, pin));
                answer(&s, &e, "PIN display", device, &a)
            })
        })),
        authorize_service: Some(Box::new(move |r| {
            let (s, e, o5) = (s5.clone(), e5.clone(), o5.clone());
            Box::pin(async move {
                let device = addr(r.device);
                if let Some(r) = foreign(&o5, &r.adapter, device, "service authorization") {
                    return r;
                }
                let uuid = r.service.to_string();
                let a = s.with_trusted(|w, t| w.authorize_service(device, &uuid, t));
                match &a {
                    Answer::Accept => {
                        info!(%device, service = %uuid, "network connection authorized");
                        Ok(())
                    }
                    other => answer(&s, &e, "service authorization", device, other),
                }
            })
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_another_adapters_devices_are_refused() {
        let d = BdAddr([0, 0xaa, 1, 1, 0, 1]);
        assert!(foreign("hci0", "hci0", d, "confirmation").is_none());
        assert!(matches!(
            foreign("hci0", "hci1", d, "confirmation"),
            Some(Err(ReqError::Rejected))
        ));
    }
}
