//! The faults the harness injected, and the `restarts` and `partitions` sections: did a killed
//! node come back with its own entries and catch up; did a partition heal and converge.

use serde::Serialize;

use crate::watch::{PartitionRun, Restart, View};

/// A fault the harness injected.
#[derive(Debug, Serialize)]
pub struct Fault {
    pub node: usize,
    pub kind: &'static str,
    pub at_secs: f64,
}

/// A node killed and started again.
#[derive(Debug, Serialize)]
pub struct RestartReport {
    pub node: usize,
    pub killed_at_secs: Option<f64>,
    pub restarted_at_secs: f64,
    /// Entries it authored: at the last poll before the kill, and at the end.
    pub own_entries_before: usize,
    pub own_entries_after: usize,
    /// Its ledger root at the end equals the common root.
    pub caught_up: bool,
    /// It was running at the end.
    pub alive: bool,
    /// How its process ended, if it did.
    pub exited: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
}

impl RestartReport {
    /// A restart the harness did, with the node's last view, whether it ran at the end, when it
    /// was killed, how it ended and the common ledger root (if the ledger converged).
    pub fn of(
        r: &Restart,
        view: Option<&View>,
        alive: bool,
        killed_at_secs: Option<f64>,
        exited: Option<String>,
        common_root: Option<&str>,
    ) -> Self {
        let own_after = view.map_or(0, |v| v.own_entries);
        let caught_up = alive && view.is_some_and(|v| common_root == Some(v.ledger_root.as_str()));
        RestartReport {
            node: r.node,
            killed_at_secs,
            restarted_at_secs: r.at_secs,
            own_entries_before: r.own_before,
            own_entries_after: own_after,
            caught_up,
            alive,
            exited,
            ok: r.error.is_none() && caught_up && own_after >= r.own_before,
            error: r.error.clone(),
        }
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if let Some(e) = &self.error {
            f.push(format!("node {} could not restart: {e}", self.node));
        } else if !self.alive {
            f.push(format!(
                "node {} died after its restart: {}",
                self.node,
                self.exited.as_deref().unwrap_or_default()
            ));
        } else if !self.caught_up {
            f.push(format!("node {} did not catch up to the common ledger root after its restart", self.node));
        }
        if self.own_entries_after < self.own_entries_before {
            f.push(format!(
                "node {} lost entries of its own across its restart: {} before the kill, {} after",
                self.node, self.own_entries_before, self.own_entries_after
            ));
        }
        f
    }
}

/// A partition applied and healed.
#[derive(Debug, Serialize)]
pub struct PartitionReport {
    /// The nodes cut off from the rest.
    pub group: Vec<usize>,
    pub cut_at_secs: f64,
    pub healed_at_secs: Option<f64>,
    /// The running nodes' roots differed at some poll during the partition.
    pub diverged: bool,
    /// Seconds from the heal until every running node had the same ledger root.
    pub converged_after_secs: Option<f64>,
    /// Nodes whose API refused the block or unblock.
    pub unreachable: Vec<usize>,
    pub ok: bool,
}

impl PartitionReport {
    pub fn of(p: &PartitionRun) -> Self {
        PartitionReport {
            group: p.group.clone(),
            cut_at_secs: p.cut_at_secs,
            healed_at_secs: p.healed_at_secs,
            diverged: p.diverged,
            converged_after_secs: p.converged_after_secs,
            unreachable: p.unreachable.clone(),
            ok: p.unreachable.is_empty() && p.healed_at_secs.is_some() && p.converged_after_secs.is_some(),
        }
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if !self.unreachable.is_empty() {
            f.push(format!("partition {:?}: nodes {:?} refused to block or unblock", self.group, self.unreachable));
        }
        if self.converged_after_secs.is_none() {
            f.push(format!("partition {:?}: the network did not converge after it healed", self.group));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_that_lost_entries_or_fell_behind_fails() {
        let r = Restart { node: 3, at_secs: 12.0, own_before: 5, error: None };
        let v = View { ledger_root: "root".into(), own_entries: 6, ..Default::default() };
        let ok = RestartReport::of(&r, Some(&v), true, Some(8.0), None, Some("root"));
        assert!(ok.ok && ok.failures().is_empty());
        let behind = View { ledger_root: "old".into(), own_entries: 4, ..Default::default() };
        let bad = RestartReport::of(&r, Some(&behind), true, Some(8.0), None, Some("root"));
        let f = bad.failures();
        assert!(!bad.ok);
        assert!(f[0].contains("did not catch up") && f[1].contains("5 before the kill, 4 after"), "{f:?}");
        let dead = RestartReport::of(&r, Some(&v), false, Some(8.0), Some("signal 9".into()), Some("root"));
        assert!(dead.failures()[0].contains("died after its restart: signal 9"));
    }

    #[test]
    fn a_partition_that_never_converged_fails() {
        let p = PartitionRun { group: vec![2, 5], cut_at_secs: 5.0, healed_at_secs: Some(10.0), ..Default::default() };
        let r = PartitionReport::of(&p);
        assert!(!r.ok);
        assert_eq!(r.failures(), ["partition [2, 5]: the network did not converge after it healed"]);
        let r = PartitionReport::of(&PartitionRun { converged_after_secs: Some(1.5), ..p });
        assert!(r.ok && r.failures().is_empty());
    }
}
