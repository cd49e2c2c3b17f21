//! Faults a node injects into its own behaviour (`[faults]`), for tests and the testnet only.
//! A slow node is modelled as slow *work* (as on a weaker GPU): every tile, challenge render,
//! benchmark and training run takes `faults.slow_ms` longer, inside the time the node itself
//! measures and reports, so an honest slow node reports honest times. Each node carries its
//! own [`Faults`], so the nodes of an in-process testnet can differ.

use std::time::Duration;

/// One node's injected work faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Extra time per piece of work, in ms.
    pub slow_ms: u64,
}

impl Faults {
    /// Blocks the calling (blocking) thread for the configured extra time; nothing normally.
    pub fn slow_work(&self) {
        if self.slow_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.slow_ms));
        }
    }
}
