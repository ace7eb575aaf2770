//! Helpers shared by the Wi-Fi driver tests.

use std::time::Duration;

use box_os::wifi::WifiEvent;

/// The next event of the Wi-Fi driver matching `want`, within `limit`; a
/// reported problem or the driver's end fails the test.
pub async fn expect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<WifiEvent>,
    limit: Duration,
    what: &str,
    want: impl Fn(&WifiEvent) -> bool,
) -> WifiEvent {
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(ev)) if want(&ev) => return ev,
            Ok(Some(WifiEvent::Problem(p))) => panic!("{what}: problem {p}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("{what}: the driver ended"),
            Err(_) => panic!("{what}: not within {limit:?}"),
        }
    }
}
