//! `[routing]`: the policy routing cnaptd keeps for its uplinks — one
//! routing table and one source rule per uplink, so a tunnel bound to an
//! uplink's address leaves through that uplink whatever the main table's
//! default route says.

use serde::Deserialize;

/// `[routing]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingSection {
    #[serde(default = "yes")]
    policy_routing: bool,
    #[serde(default = "default_table_base")]
    table_base: u32,
    #[serde(default = "default_rule_priority_base")]
    rule_priority_base: u32,
}

fn yes() -> bool {
    true
}

fn default_table_base() -> u32 {
    100
}

fn default_rule_priority_base() -> u32 {
    1000
}

impl Default for RoutingSection {
    fn default() -> Self {
        Self {
            policy_routing: true,
            table_base: default_table_base(),
            rule_priority_base: default_rule_priority_base(),
        }
    }
}

/// Policy routing of the uplinks: uplink `i` gets table `table_base + i`
/// and the rule `from <its address> lookup <table>` at priority
/// `rule_priority_base + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// Keep tables and rules (false: leave routing to the system).
    pub enabled: bool,
    /// First table id.
    pub table_base: u32,
    /// First rule priority.
    pub rule_priority_base: u32,
}

impl RoutingSection {
    /// Checks the values for `uplinks` uplinks; `Err` names the key.
    pub(crate) fn build(&self, uplinks: usize) -> Result<Routing, (&'static str, String)> {
        let n = u32::try_from(uplinks).unwrap_or(u32::MAX);
        // 253..=255 are the kernel's default, main and local tables.
        let last = self.table_base.saturating_add(n);
        if self.table_base == 0 || (self.table_base < 256 && last > 253) {
            return Err((
                "table_base",
                "tables must avoid 0 and the kernel's 253 to 255 (use 1..=240 or 256 and up)"
                    .into(),
            ));
        }
        // The main table's rule sits at 32766.
        if self.rule_priority_base == 0 || self.rule_priority_base.saturating_add(n) >= 32766 {
            return Err((
                "rule_priority_base",
                "rules must come after 0 (local) and before 32766 (main)".into(),
            ));
        }
        Ok(Routing {
            enabled: self.policy_routing,
            table_base: self.table_base,
            rule_priority_base: self.rule_priority_base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let r = RoutingSection::default().build(3).unwrap();
        assert_eq!(
            (r.enabled, r.table_base, r.rule_priority_base),
            (true, 100, 1000)
        );
        let bad = |table_base, rule_priority_base| RoutingSection {
            policy_routing: true,
            table_base,
            rule_priority_base,
        };
        assert_eq!(bad(0, 1000).build(2).unwrap_err().0, "table_base");
        assert_eq!(bad(252, 1000).build(2).unwrap_err().0, "table_base");
        assert!(bad(256, 1000).build(2).is_ok());
        assert_eq!(
            bad(100, 32765).build(2).unwrap_err().0,
            "rule_priority_base"
        );
        assert_eq!(bad(100, 0).build(2).unwrap_err().0, "rule_priority_base");
    }
}
