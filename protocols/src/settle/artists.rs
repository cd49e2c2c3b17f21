//! Step: the artists' reward. The whitepaper's $IFX page pays professional artists who consume
//! IBM "based on the volume and frequency of each individual's IBM consumption". Each epoch's
//! artist pool (`artists_bps` of the mint) is shared by the job owners whose paid work was
//! delivered in it: weight = delivery micro-minutes consumed x (1 + epochs of the last
//! `artist_window_epochs` with consumption), and no owner gets back more than
//! `artist_rebate_bps` of what that work cost it, so the reward never pays for self-dealing
//! (what is left of the pool is unallocated).

use std::collections::BTreeMap;

use super::delivery::Consumed;
use super::params::{BPS, EconParams};

/// Per payer: the last epoch it consumed in, and a bit per epoch back from it (bit 0 = that
/// epoch) in which it consumed.
pub(super) type History = BTreeMap<[u8; 32], (u64, u64)>;

/// The artists' weights and caps of `epoch`; records the epoch's consumers in `history`.
pub(super) fn weights(
    consumed: &BTreeMap<[u8; 32], Consumed>,
    history: &mut History,
    epoch: u64,
    p: &EconParams,
) -> (BTreeMap<[u8; 32], u128>, BTreeMap<[u8; 32], u64>) {
    let (mut weights, mut caps) = (BTreeMap::new(), BTreeMap::new());
    let window = p.artist_window_epochs.min(64);
    for (payer, c) in consumed.iter() {
        let volume = c.micro_minutes(p);
        if volume == 0 {
            continue;
        }
        let (last, mask) = history.get(payer).copied().unwrap_or((epoch, 0));
        // The mask moved to this epoch: bit k = consumed k epochs before it.
        let shift = epoch.saturating_sub(last);
        let moved = if shift >= 64 { 0 } else { mask << shift };
        let in_window = if window == 0 { 0 } else { moved & (u64::MAX >> (64 - window)) << 1 };
        let frequency = in_window.count_ones() as u128;
        weights.insert(*payer, volume * (1 + frequency));
        let cap = c.cost * p.artist_rebate_bps as u128 / BPS as u128;
        caps.insert(*payer, cap.min(u64::MAX as u128) as u64);
        history.insert(*payer, (epoch, moved | 1));
    }
    (weights, caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_and_frequency_weigh_and_the_rebate_caps() {
        let p = EconParams { artist_window_epochs: 3, artist_rebate_bps: 2_500, ..Default::default() };
        let mut h = History::new();
        // 1,000 render units a micro-minute at 10^9 units a minute.
        let p = EconParams { render_units_per_minute: 1_000_000_000, ..p };
        let c = |mm: u128, cost| Consumed { render_units: mm * 1_000, fl_units: 0, cost };
        let one: BTreeMap<[u8; 32], Consumed> = [([1; 32], c(100, 8_000)), ([2; 32], c(300, 0))].into();
        let (w, caps) = weights(&one, &mut h, 10, &p);
        // First epoch: volume alone; the cap is a quarter of the cost.
        assert_eq!((w[&[1; 32]], w[&[2; 32]], caps[&[1; 32]], caps[&[2; 32]]), (100, 300, 2_000, 0));
        // Artist 1 again in epochs 11 and 13: 2 of the last 3 epochs (10, 11, 12 before 13).
        weights(&[([1; 32], c(100, 0))].into(), &mut h, 11, &p);
        let (w, _) = weights(&[([1; 32], c(100, 0))].into(), &mut h, 13, &p);
        assert_eq!(w[&[1; 32]], 100 * 3);
        // Long gaps forget; a zero window counts no frequency.
        let (w, _) = weights(&[([1; 32], c(100, 0))].into(), &mut h, 200, &p);
        assert_eq!(w[&[1; 32]], 100);
        let p0 = EconParams { artist_window_epochs: 0, ..p.clone() };
        // A tile too small for a delivery milli-minute still weighs.
        let tiny = Consumed { render_units: 98, fl_units: 0, cost: 1 };
        let (w, _) = weights(&[([3; 32], tiny)].into(), &mut h, 202, &EconParams::default());
        assert_eq!(w[&[3; 32]], 98 * 1_000_000 / 100_000);
        let (w, _) = weights(&[([1; 32], c(100, 0))].into(), &mut h, 201, &p0);
        assert_eq!(w[&[1; 32]], 100);
    }
}
