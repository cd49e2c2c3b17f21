//! The `ledger` section: did every running node end with the same root, and how fast after the
//! last append.

use serde::Serialize;

use crate::watch::View;

/// `ledger` section of the report.
#[derive(Debug, Serialize)]
pub struct LedgerSection {
    /// Every running node had the same ledger root at the end.
    pub converged: bool,
    /// Seconds from the last append anywhere until all roots were equal (null if they never
    /// were; 0 when equality was seen no later than the first poll after the append).
    pub convergence_secs: Option<f64>,
    /// Entries in the (converged) ledger, or the most any node held.
    pub entries: usize,
    /// The common root, if converged.
    pub root: Option<String>,
    /// Seconds into the run of the last append by any node.
    pub last_append_secs: Option<f64>,
}

impl LedgerSection {
    /// From the nodes' last views (`None`: never answered), which were running at the end, the
    /// start of the final streak of equal roots, and the run's start (all Unix ms).
    pub fn of(views: &[Option<View>], alive: &[bool], roots_equal_since_ms: Option<u64>, t0_unix_ms: u64) -> Self {
        let answered: Vec<&View> = views.iter().flatten().collect();
        let last_append = answered.iter().map(|v| v.last_append_unix_ms).max().filter(|t| *t > 0);
        let converged = roots_equal_since_ms.is_some();
        let running_root = (0..views.len())
            .find(|&i| alive.get(i).copied().unwrap_or(false))
            .and_then(|i| views[i].as_ref())
            .map(|v| v.ledger_root.clone());
        LedgerSection {
            converged,
            convergence_secs: match (roots_equal_since_ms, last_append) {
                (Some(eq), Some(last)) => Some(eq.saturating_sub(last) as f64 / 1000.0),
                (Some(_), None) => Some(0.0),
                _ => None,
            },
            entries: answered.iter().map(|v| v.ledger_entries).max().unwrap_or(0),
            root: if converged { running_root } else { None },
            last_append_secs: last_append.map(|t| t.saturating_sub(t0_unix_ms) as f64 / 1000.0),
        }
    }

    /// What makes the run fail, given how many verifiers ran (they write entries every epoch).
    pub fn failures(&self, verifiers: usize) -> Vec<String> {
        let mut f = Vec::new();
        if !self.converged {
            f.push("ledger did not converge: running nodes ended with different roots".into());
        }
        if verifiers > 0 && self.entries == 0 {
            f.push(format!("no ledger entries although {verifiers} verifier(s) ran"));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(root: &str, entries: usize, last_append: u64) -> Option<View> {
        Some(View {
            ledger_root: root.into(),
            ledger_entries: entries,
            last_append_unix_ms: last_append,
            ..Default::default()
        })
    }

    #[test]
    fn convergence_is_timed_from_the_last_append() {
        let views = [view("a", 10, 5_000), None, view("a", 10, 7_000)];
        let l = LedgerSection::of(&views, &[true, false, true], Some(9_500), 1_000);
        assert!(l.converged);
        assert_eq!(l.convergence_secs, Some(2.5));
        assert_eq!(l.last_append_secs, Some(6.0));
        assert_eq!(l.root.as_deref(), Some("a"));
        assert!(l.failures(2).is_empty());
        // Roots never equal: no root, a failure; no entries with verifiers: another.
        let l = LedgerSection::of(&[view("a", 0, 0), view("b", 0, 0)], &[true, true], None, 0);
        assert_eq!((l.converged, l.root.as_deref(), l.convergence_secs), (false, None, None));
        assert_eq!(l.failures(1).len(), 2);
    }
}
