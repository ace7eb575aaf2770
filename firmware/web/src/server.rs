//! The page's connections: an accept loop that survives every error, a cap
//! on connections in all and per client address (beyond it a connection is
//! closed at once and counted), and HTTP/1 with a deadline on every
//! request's headers — which also ends a kept-alive connection that stays
//! idle — so that no PAN client can hold the daemon's file descriptors.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use daemon::accept::{AcceptStats, accept_loop};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Connection limits of the page.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, in all.
    pub total: usize,
    /// Connections open at once from one address.
    pub per_client: usize,
    /// Time allowed for a request's headers, and for a kept-alive
    /// connection to start its next request.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total: 128,
            per_client: 16,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct Table {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// A connection's place in the table, given back when it ends.
struct Slot {
    table: Arc<Mutex<Table>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.total = t.total.saturating_sub(1);
            if let Some(n) = t.by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    t.by_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// A place for a connection from `ip`, if the limits allow one.
fn admit(table: &Arc<Mutex<Table>>, limits: &Limits, ip: IpAddr) -> Option<Slot> {
    let mut t = table.lock().ok()?;
    let mine = t.by_ip.get(&ip).copied().unwrap_or(0);
    if t.total >= limits.total || mine >= limits.per_client {
        return None;
    }
    t.total += 1;
    *t.by_ip.entry(ip).or_insert(0) += 1;
    Some(Slot {
        table: table.clone(),
        ip,
    })
}

/// Serves `app` on `listener` under `limits`, for ever; `stats` counts
/// accept errors and connections refused over a limit.
pub async fn run(listener: TcpListener, app: Router, limits: Limits, stats: AcceptStats) {
    let table = Arc::new(Mutex::new(Table::default()));
    let counts = stats.clone();
    accept_loop(listener, "status page", stats, move |(tcp, peer)| {
        let peer: SocketAddr = peer;
        let Some(slot) = admit(&table, &limits, peer.ip()) else {
            let n = counts.refuse();
            if n.is_power_of_two() {
                warn!(%peer, refused = n, "status page: connection over the limit closed");
            }
            return true;
        };
        let svc = TowerToHyperService::new(app.clone().layer(Extension(ConnectInfo(peer))));
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            if let Err(e) = http.serve_connection(TokioIo::new(tcp), svc).await {
                debug!(%peer, error = %e, "status page connection ended");
            }
        });
        true
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_address_and_in_all_and_slots_come_back() {
        let table = Arc::new(Mutex::new(Table::default()));
        let limits = Limits {
            total: 3,
            per_client: 2,
            header_timeout: Duration::from_secs(1),
        };
        let a: IpAddr = [198, 18, 0, 2].into();
        let b: IpAddr = [198, 18, 0, 3].into();
        let c: IpAddr = [198, 18, 0, 4].into();
        let a1 = admit(&table, &limits, a);
        let a2 = admit(&table, &limits, a);
        assert!(a1.is_some() && a2.is_some());
        assert!(admit(&table, &limits, a).is_none(), "per address");
        let b1 = admit(&table, &limits, b);
        assert!(b1.is_some());
        assert!(admit(&table, &limits, c).is_none(), "in all");
        drop(a1);
        assert!(admit(&table, &limits, c).is_some());
        drop((a2, b1));
    }
}
