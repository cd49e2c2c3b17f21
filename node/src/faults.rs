//! Faults a node injects into its own behaviour (`[faults]`), for tests and the testnet only.
//! A slow node is modelled as slow *work* (as on a weaker GPU): every tile, challenge render,
//! benchmark and training run takes `faults.slow_ms` longer, inside the time the node itself
//! measures and reports, so an honest slow node reports honest times. (Process-wide: set once
//! by [`crate::Node::start`]; in-process tests that start several nodes leave it at zero.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static SLOW_MS: AtomicU64 = AtomicU64::new(0);

/// Sets the extra time per piece of work.
pub fn set_slow_ms(ms: u64) {
    SLOW_MS.store(ms, Ordering::Relaxed);
}

/// Blocks the calling (blocking) thread for the configured extra time; nothing normally.
pub fn slow_work() {
    let ms = SLOW_MS.load(Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
