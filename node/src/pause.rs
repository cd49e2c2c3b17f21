//! The operator's pause (issue #19): a paused node stays in the network (heartbeats, gossip,
//! ledger, its API) but does no work: its heartbeats say `paused`, so job owners give it no
//! tiles, verifiers neither challenge nor measure it, and its heartbeats fill no liveness slot
//! (settlement pays the slots it worked, and a pause is no QoS failure). A request that raced
//! the pause is answered busy.
//!
//! Three things pause a node, each on its own: the operator (`POST /pause`), the work hours of
//! `[work] hours`, and, with `[work] idle_only`, the machine's other processes keeping the CPUs
//! busy ([`work`]: the rules, sans I/O; [`watch`]: the task that applies them). Work goes on
//! when none of them holds.

pub mod work;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Longest reason kept (a local caller's text, shown in `/status` and the log).
pub const MAX_REASON: usize = 200;

/// What paused the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `POST /pause`, `ifx pause`.
    Operator,
    /// Outside `[work] hours`.
    Schedule,
    /// The machine is busy with other work (`[work] idle_only`).
    Idle,
}

/// Whether this node's work is paused, by what, and why.
#[derive(Clone, Debug, Default)]
pub struct Pause(Arc<RwLock<BTreeMap<Source, String>>>);

impl Pause {
    /// The operator pauses with `reason` (cut to [`MAX_REASON`] bytes at a character boundary),
    /// or resumes with `None`; whether the operator's pause changed.
    pub fn set(&self, reason: Option<String>) -> bool {
        self.set_by(Source::Operator, reason)
    }

    /// `source` pauses with `reason`, or lets go with `None`; whether its pause changed.
    pub fn set_by(&self, source: Source, reason: Option<String>) -> bool {
        let mut now = self.0.write().unwrap_or_else(|e| e.into_inner());
        let was = now.contains_key(&source);
        match reason {
            Some(r) => {
                let mut end = r.len().min(MAX_REASON);
                while !r.is_char_boundary(end) {
                    end -= 1;
                }
                now.insert(source, r[..end].to_string());
            }
            None => {
                now.remove(&source);
            }
        }
        was != now.contains_key(&source)
    }

    /// Why it is paused (every source's reason, operator first), if it is.
    pub fn reason(&self) -> Option<String> {
        let now = self.0.read().unwrap_or_else(|e| e.into_inner());
        (!now.is_empty()).then(|| now.values().cloned().collect::<Vec<_>>().join("; "))
    }

    /// Whether work is paused.
    pub fn is_paused(&self) -> bool {
        !self.0.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Whether `source` holds a pause.
    pub fn is_paused_by(&self, source: Source) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).contains_key(&source)
    }
}

/// How often the work hours and the machine's load are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Applies `[work]` to `pause` every [`WATCH_EVERY`] until `shutdown`: the work hours, and the
/// machine's load when idle-only.
pub async fn watch(pause: Pause, policy: work::Policy, shutdown: CancellationToken) {
    let mut idle = work::IdleState::default();
    let mut cpu = work::CpuSampler::default();
    let mut warned = false;
    loop {
        let now_ms = crate::unix_time_us() / 1000;
        if let Some(hours) = &policy.hours {
            let outside = (!hours.works_at(now_ms)).then(|| format!("outside the work hours {hours}"));
            if pause.set_by(Source::Schedule, outside.clone()) {
                match outside {
                    Some(r) => info!(reason = r, "work paused"),
                    None => info!(hours = %hours, "work resumed: inside the work hours"),
                }
            }
        }
        if let Some(rule) = &policy.idle {
            if let Some(at) = work::last_terminal_input_ms() {
                idle.input(at.min(now_ms));
            }
            let others_pct = match cpu.sample() {
                Ok(p) => p.unwrap_or(0),
                Err(e) => {
                    if !warned {
                        warned = true;
                        warn!(error = %e, "cannot read the machine's load; idle-only mode judges terminal input only");
                    }
                    0
                }
            };
            let reason = idle.observe(rule, others_pct, now_ms).then(|| match idle.why() {
                Some(work::Busy::Terminal) => format!(
                    "someone is using the machine (terminal input in the last {} s; idle-only)",
                    rule.quiet.as_secs()
                ),
                _ => format!(
                    "the machine is busy (other processes used over {}% of its CPUs in the last {} s; idle-only)",
                    rule.busy_pct,
                    rule.quiet.as_secs()
                ),
            });
            if pause.set_by(Source::Idle, reason.clone()) {
                match reason {
                    Some(r) => info!(reason = r, others_pct, "work paused"),
                    None => info!(quiet_secs = rule.quiet.as_secs(), "work resumed: the machine is idle"),
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_resume_say_whether_they_changed_anything_and_reasons_are_cut() {
        let p = Pause::default();
        assert!(!p.is_paused());
        assert!(p.set(Some("gaming".into())));
        assert!(!p.set(Some("still gaming".into())), "already paused");
        assert_eq!(p.reason().as_deref(), Some("still gaming"));
        assert!(p.set(None) && !p.is_paused() && !p.set(None));
        p.set(Some("é".repeat(MAX_REASON)));
        let r = p.reason().unwrap();
        assert!(r.len() <= MAX_REASON && r.chars().all(|c| c == 'é'));
    }

    #[test]
    fn each_source_pauses_on_its_own_and_work_goes_on_when_none_holds() {
        let p = Pause::default();
        p.set_by(Source::Idle, Some("busy".into()));
        p.set(Some("lunch".into()));
        assert_eq!(p.reason().as_deref(), Some("lunch; busy"));
        assert!(p.set(None));
        assert!(p.is_paused(), "the machine is still busy");
        assert!(p.set_by(Source::Idle, None) && !p.is_paused());
    }
}
