//! Policy routing of the uplinks: per uplink `i`, routing table
//! `table_base + i` holding that uplink's default route, and the rule
//! `from <its address> lookup <table>` at priority `rule_priority_base +
//! i`. A tunnel or probe bound to an uplink's address then leaves through
//! that uplink whatever the main table's default route is (which DHCP and
//! the modem manager keep for themselves).
//!
//! [`Planner`] is pure: link, address and gateway changes in, the uplinks
//! whose table and rule must change out. [`spawn`] applies them through
//! rtnetlink on a task of its own — each change as a full reconcile
//! (delete the uplink's rule and table contents, add what is wanted), so a
//! crash or a stale state of an earlier run is repaired by the next change
//! — and removes everything it owns when its channel closes. IPv4 only.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder, new_connection};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::linkmon::LinkEvent;

/// What one uplink's table and rule should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Interface of the default route.
    pub iface: String,
    /// Source address the rule matches.
    pub source: Ipv4Addr,
    /// Next hop; `None` on a point-to-point link (`default dev IFACE`).
    pub gateway: Option<Ipv4Addr>,
}

/// One uplink's slot: its table and rule priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Routing table id.
    pub table: u32,
    /// Rule priority.
    pub priority: u32,
}

/// A change to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Which uplink.
    pub uplink: usize,
    /// Its table and rule.
    pub slot: Slot,
    /// What they should hold; `None`: nothing (removed).
    pub want: Option<Want>,
}

#[derive(Debug, Clone, Default)]
struct UplinkState {
    iface: Option<String>,
    source: Option<Ipv4Addr>,
    gateway_cfg: Option<Ipv4Addr>,
    up: bool,
    address: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    applied: Option<Want>,
}

/// The policy routing the uplinks need, from what the kernel reports.
#[derive(Debug)]
pub struct Planner {
    base: config::Routing,
    uplinks: Vec<UplinkState>,
}

fn v4(ip: Option<IpAddr>) -> Option<Ipv4Addr> {
    match ip {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    }
}

impl Planner {
    /// For the configured uplinks.
    pub fn new(base: config::Routing, uplinks: &[config::Uplink]) -> Self {
        Self {
            base,
            uplinks: uplinks
                .iter()
                .map(|u| UplinkState {
                    iface: u.interface.clone(),
                    source: v4(u.source),
                    gateway_cfg: v4(u.gateway),
                    ..UplinkState::default()
                })
                .collect(),
        }
    }

    /// Uplink `i`'s table and rule priority.
    pub fn slot(&self, i: usize) -> Slot {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        Slot {
            table: self.base.table_base.saturating_add(i),
            priority: self.base.rule_priority_base.saturating_add(i),
        }
    }

    fn wanted(&self, u: &UplinkState) -> Option<Want> {
        if !self.base.enabled || !u.up {
            return None;
        }
        // The configured source counts only while the interface has an
        // address at all.
        let source = u.address.map(|a| u.source.unwrap_or(a))?;
        Some(Want {
            iface: u.iface.clone()?,
            source,
            gateway: u.gateway_cfg.or(u.gateway),
        })
    }

    /// A kernel change; the uplinks whose table and rule must change.
    pub fn observe(&mut self, ev: &LinkEvent) -> Vec<Change> {
        let iface = match ev {
            LinkEvent::Link { iface, .. }
            | LinkEvent::Address { iface, .. }
            | LinkEvent::Gateway { iface, .. } => iface,
        };
        let mut out = Vec::new();
        for i in 0..self.uplinks.len() {
            if self.uplinks[i].iface.as_deref() != Some(iface.as_str()) {
                continue;
            }
            let u = &mut self.uplinks[i];
            match ev {
                LinkEvent::Link { up, .. } => u.up = *up,
                LinkEvent::Address { address, .. } => u.address = v4(*address),
                LinkEvent::Gateway { gateway, .. } => u.gateway = v4(*gateway),
            }
            let want = self.wanted(&self.uplinks[i]);
            if want != self.uplinks[i].applied {
                self.uplinks[i].applied = want.clone();
                out.push(Change {
                    uplink: i,
                    slot: self.slot(i),
                    want,
                });
            }
        }
        out
    }

    /// Everything removed (at shutdown, and at start for stale state).
    pub fn clear_all(&self) -> Vec<Change> {
        (0..self.uplinks.len())
            .map(|i| Change {
                uplink: i,
                slot: self.slot(i),
                want: None,
            })
            .collect()
    }
}

/// Why a change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// No netlink socket.
    #[error("netlink: {0}")]
    Netlink(#[from] std::io::Error),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Kernel {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// The interface does not exist (any more).
    #[error("no interface {0}")]
    NoInterface(String),
}

fn kernel(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RoutingError {
    let what = what.into();
    move |source| RoutingError::Kernel { what, source }
}

fn rule_priority(r: &RuleMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    })
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// Makes `slot` hold `want` (or nothing).
pub async fn apply(h: &Handle, slot: Slot, want: Option<&Want>) -> Result<(), RoutingError> {
    let rules: Vec<RuleMessage> = h
        .rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(kernel("listing rules"))?;
    for r in rules
        .into_iter()
        .filter(|r| rule_priority(r) == Some(slot.priority))
    {
        h.rule()
            .del(r)
            .execute()
            .await
            .map_err(kernel(format!("deleting rule {}", slot.priority)))?;
    }
    let routes: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(kernel("listing routes"))?;
    for r in routes.into_iter().filter(|r| route_table(r) == slot.table) {
        h.route()
            .del(r)
            .execute()
            .await
            .map_err(kernel(format!("flushing table {}", slot.table)))?;
    }
    let Some(w) = want else { return Ok(()) };
    let mut links = h.link().get().match_name(w.iface.clone()).execute();
    let index = match links.next().await {
        Some(Ok(l)) => l.header.index,
        _ => return Err(RoutingError::NoInterface(w.iface.clone())),
    };
    let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(slot.table)
        .output_interface(index)
        .pref_source(w.source);
    if let Some(gw) = w.gateway {
        // The gateway sits on the uplink's subnet, which this table does
        // not hold: on-link says so.
        route = route.gateway(gw).onlink();
    }
    h.route()
        .add(route.build())
        .replace()
        .execute()
        .await
        .map_err(kernel(format!("default route in table {}", slot.table)))?;
    h.rule()
        .add()
        .v4()
        .source_prefix(w.source, 32)
        .table_id(slot.table)
        .priority(slot.priority)
        .action(RuleAction::ToTable)
        .execute()
        .await
        .map_err(kernel(format!(
            "rule from {} lookup {}",
            w.source, slot.table
        )))?;
    Ok(())
}

/// Starts the task that applies changes in order; when `changes` closes it
/// applies `last` (everything removed) and ends.
pub fn spawn(
    mut changes: mpsc::UnboundedReceiver<Change>,
    last: Vec<Change>,
) -> Result<tokio::task::JoinHandle<()>, RoutingError> {
    let (conn, handle, _) = new_connection()?;
    let conn = tokio::spawn(conn);
    Ok(tokio::spawn(async move {
        let run = |c: Change| {
            let handle = handle.clone();
            async move {
                match apply(&handle, c.slot, c.want.as_ref()).await {
                    Ok(()) => match &c.want {
                        Some(w) => info!(
                            uplink = c.uplink,
                            table = c.slot.table,
                            source = %w.source,
                            gateway = ?w.gateway,
                            iface = %w.iface,
                            "policy route set"
                        ),
                        None => info!(
                            uplink = c.uplink,
                            table = c.slot.table,
                            "policy route removed"
                        ),
                    },
                    Err(e) => {
                        warn!(uplink = c.uplink, table = c.slot.table, error = %e, "policy routing")
                    }
                }
            }
        };
        while let Some(c) = changes.recv().await {
            run(c).await;
        }
        for c in last {
            run(c).await;
        }
        conn.abort();
    }))
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
