//! Small order statistics shared by settlement, link attestations and scheduling: integers and
//! sorting only, so every node computes the same figure.

/// The lower median (the lower middle one of an even count); `None` for an empty list.
pub fn lower_median<T: Ord>(mut v: Vec<T>) -> Option<T> {
    v.sort_unstable();
    let mid = v.len().checked_sub(1)? / 2;
    Some(v.swap_remove(mid))
}

#[cfg(test)]
mod tests {
    use super::lower_median;

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(lower_median(vec![5]), Some(5));
        assert_eq!(lower_median(vec![9, 1, 5, 3]), Some(3));
        assert_eq!(lower_median(vec![9, 1, 5]), Some(5));
        assert_eq!(lower_median(Vec::<u64>::new()), None);
    }
}
