//! Faults a node injects into its own behaviour (`[faults]`), for tests and the testnet only.
//! A slow node is modelled as slow *work* (as on a weaker GPU): every tile, challenge render,
//! benchmark and training run takes `faults.slow_ms` longer and `faults.slow_factor` times as
//! long, inside the time the node itself measures and reports, so an honest slow node reports
//! honest times (its IB comes out a `slow_factor`-th). Each node carries its own [`Faults`], so
//! the nodes of an in-process testnet can differ.

use std::time::{Duration, Instant};

/// One node's injected work faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Extra time per piece of work, in ms.
    pub slow_ms: u64,
    /// Each piece of work takes this many times as long (0 and 1: as long as it takes).
    pub slow_factor: u32,
}

impl Faults {
    /// Does `work` on the calling (blocking) thread, slowed as configured: the extra ms first,
    /// then `slow_factor - 1` times as long again as the work took.
    pub fn work<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.slow_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.slow_ms));
        }
        let started = Instant::now();
        let out = work();
        if self.slow_factor > 1 {
            std::thread::sleep(started.elapsed() * (self.slow_factor - 1));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A factor of 4 makes 30 ms of work take 120 ms or a little more; slow_ms adds its ms.
    #[test]
    fn slow_work_takes_its_factor_and_its_extra_ms() {
        let time = |f: Faults| {
            let t = Instant::now();
            let out = f.work(|| {
                std::thread::sleep(Duration::from_millis(30));
                7
            });
            assert_eq!(out, 7);
            t.elapsed()
        };
        let x4 = time(Faults { slow_ms: 0, slow_factor: 4 });
        assert!(x4 >= Duration::from_millis(120) && x4 < Duration::from_millis(400), "{x4:?}");
        let plus = time(Faults { slow_ms: 50, slow_factor: 1 });
        assert!(plus >= Duration::from_millis(80) && plus < Duration::from_millis(300), "{plus:?}");
        assert!(time(Faults::default()) < Duration::from_millis(300));
    }
}
