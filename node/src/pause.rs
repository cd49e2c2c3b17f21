//! The operator's pause (issue #19): a paused node stays in the network (heartbeats, gossip,
//! ledger, its API) but does no work: its heartbeats say `paused`, so job owners give it no
//! tiles, verifiers neither challenge nor measure it, and its heartbeats fill no liveness slot
//! (settlement pays the slots it worked, and a pause is no QoS failure). A request that raced
//! the pause is answered busy.

use std::sync::{Arc, RwLock};

/// Longest reason kept (a local caller's text, shown in `/status` and the log).
pub const MAX_REASON: usize = 200;

/// Whether this node's work is paused, and why.
#[derive(Clone, Debug, Default)]
pub struct Pause(Arc<RwLock<Option<String>>>);

impl Pause {
    /// Pauses with `reason` (cut to [`MAX_REASON`] bytes at a character boundary), or resumes
    /// with `None`; whether that changed anything.
    pub fn set(&self, reason: Option<String>) -> bool {
        let reason = reason.map(|r| {
            let mut end = r.len().min(MAX_REASON);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r[..end].to_string()
        });
        let mut now = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = now.is_some() != reason.is_some();
        *now = reason;
        changed
    }

    /// Why it is paused, if it is.
    pub fn reason(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether work is paused.
    pub fn is_paused(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_some()
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
}
