//! The pace of DHT random walks, sans I/O: the first walk at once, then the delay doubles from
//! [`DISCOVERY_MIN`] up to [`DISCOVERY_MAX`] while the routing table holds fewer peers than the
//! target, and up to [`DISCOVERY_SETTLED`] once it holds more (each walk dials peers, and in a
//! big network frequent walks would keep connecting everyone to everyone).

use std::time::{Duration, Instant};

/// First delay between two random DHT walks.
pub const DISCOVERY_MIN: Duration = Duration::from_millis(500);
/// Slowest pace while the routing table holds fewer than the target peer count.
pub const DISCOVERY_MAX: Duration = Duration::from_secs(30);
/// Pace once it holds more.
pub const DISCOVERY_SETTLED: Duration = Duration::from_secs(300);

/// When the next walk is due.
#[derive(Debug)]
pub struct Discovery {
    delay: Duration,
    next: Instant,
}

impl Discovery {
    /// The first walk is due at `now`.
    pub fn new(now: Instant) -> Self {
        Self { delay: DISCOVERY_MIN, next: now }
    }

    /// When the next walk is due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// A walk ran at `now` with `table_len` peers in the routing table against `target`.
    pub fn walked(&mut self, now: Instant, table_len: usize, target: usize) {
        let max = if table_len >= target { DISCOVERY_SETTLED } else { DISCOVERY_MAX };
        self.delay = (self.delay * 2).min(max);
        self.next = now + self.delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_double_their_delay_to_a_cap_that_depends_on_the_table() {
        let t0 = Instant::now();
        let mut d = Discovery::new(t0);
        assert_eq!(d.next_due(), t0);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            d.walked(now, 3, 20);
            delays.push((d.next_due() - now).as_millis() as u64);
            now = d.next_due();
        }
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        // The table fills: the pace slows on to the settled cap.
        for _ in 0..4 {
            d.walked(now, 20, 20);
            now = d.next_due();
        }
        d.walked(now, 25, 20);
        assert_eq!(d.next_due() - now, DISCOVERY_SETTLED);
        // It empties again: back under the unsettled cap at the next walk.
        d.walked(now, 0, 20);
        assert_eq!(d.next_due() - now, DISCOVERY_MAX);
    }
}
