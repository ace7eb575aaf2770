//! Transparent mode in the box driver: the redirect rules installed at
//! start (removed at stop), the listener for redirected connections, and
//! each one opened as a stream to its original destination.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};
use wire::{ServiceName, StreamKind};

use super::{BoxDriver, Input};
use crate::transparent::{apply, original_destination, ruleset, teardown};

/// The service name transparent streams carry (the SNAPT connects to their
/// destination instead, if its policy allows).
const SERVICE: &str = "transparent";

impl BoxDriver {
    /// Installs the redirect and starts accepting; problems are logged and
    /// leave the configured services running.
    pub(super) async fn start_transparent(&mut self) {
        let Some(t) = self.cfg.transparent.clone() else {
            return;
        };
        let listener = match TcpListener::bind(t.listen).await {
            Ok(l) => l,
            Err(e) => {
                warn!(listen = %t.listen, error = %e, "transparent mode off: cannot listen");
                return;
            }
        };
        if let Err(e) = apply(&ruleset(&t.interface, t.listen.port())) {
            warn!(interface = %t.interface, error = %e, "transparent mode off: redirect not installed");
            return;
        }
        info!(interface = %t.interface, listen = %t.listen, "transparent mode: PAN clients' TCP is relayed to its destination");
        let tx = self.tx.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                if tx.send(Input::Transparent { stream, peer }).is_err() {
                    break;
                }
            }
        });
        self.listeners.push(accept.abort_handle());
    }

    /// Removes the redirect (at stop).
    pub(super) fn stop_transparent(&self) {
        if self.cfg.transparent.is_some()
            && let Err(e) = apply(&teardown())
        {
            warn!(error = %e, "transparent mode: redirect not removed");
        }
    }

    /// A redirected connection: a stream to where it was going.
    pub(super) fn accepted_transparent(&mut self, stream: TcpStream, peer: SocketAddr) {
        let Some(t) = &self.cfg.transparent else {
            return;
        };
        let dest = match original_destination(&stream) {
            Ok(d) if d != t.listen => d,
            Ok(_) => {
                debug!(%peer, "direct connection to the transparent port refused");
                return;
            }
            Err(e) => {
                warn!(%peer, error = %e, "no original destination");
                return;
            }
        };
        let site = t.snapt;
        let (Some(session), Ok(svc)) = (self.coord.site(site), ServiceName::new(SERVICE)) else {
            return;
        };
        match session.streams().open(StreamKind::Stream, svc, Some(dest)) {
            Ok(sid) => {
                debug!(%peer, %dest, stream = %sid, "transparent connection");
                self.locals.attach((site, sid), stream);
            }
            Err(e) => warn!(%peer, %dest, error = %e, "refusing transparent connection"),
        }
    }
}
