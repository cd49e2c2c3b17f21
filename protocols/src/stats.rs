//! Small order statistics shared by settlement, link attestations and scheduling: integers and
//! sorting only, so every node computes the same figure.

/// The lower median (the lower middle one of an even count); `None` for an empty list.
pub fn lower_median<T: Ord>(mut v: Vec<T>) -> Option<T> {
    v.sort_unstable();
    let mid = v.len().checked_sub(1)? / 2;
    Some(v.swap_remove(mid))
}

/// The nearest-rank `pct` percentile of `sorted` (ascending; 0 for an empty list).
pub fn percentile(sorted: &[f64], pct: u32) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n - 1) * pct.min(100) as usize).div_ceil(100)],
    }
}

#[cfg(test)]
mod tests {
    use super::{lower_median, percentile};

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50), 51.0);
        assert_eq!(percentile(&v, 99), 100.0);
        assert_eq!(percentile(&v, 0), 1.0);
        assert_eq!(percentile(&[7.0], 99), 7.0);
        assert_eq!(percentile(&[], 50), 0.0);
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(lower_median(vec![5]), Some(5));
        assert_eq!(lower_median(vec![9, 1, 5, 3]), Some(3));
        assert_eq!(lower_median(vec![9, 1, 5]), Some(5));
        assert_eq!(lower_median(Vec::<u64>::new()), None);
    }
}
