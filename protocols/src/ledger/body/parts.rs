//! A verifier's view of every peer is too big for one entry once the network grows (issue #16:
//! liveness passed the 32 KiB body near 1,000 peers), so such bodies are written in parts: each
//! part says its index and how many parts the view has, and lists its share of the items sorted
//! by key across parts. Writing the view again replaces it: a reader keeps, per part index, the
//! part written last, and only the indices below the last-written part count.

use std::collections::BTreeMap;

use crate::codec::DecodeError;

/// A body written in parts.
pub trait Parted {
    /// One listed item.
    type Item: Clone;
    /// This part's index, below [`Parted::parts`].
    fn part(&self) -> u32;
    /// How many parts the view has.
    fn parts(&self) -> u32;
    /// The items of this part, sorted by key.
    fn items(&self) -> &[Self::Item];
    /// An item's key.
    fn key(item: &Self::Item) -> [u8; 32];
}

/// `items` (sorted by key) in chunks of at most `per`: always at least one chunk, empty when
/// there is nothing to list (so that the view is written even then).
pub fn chunks<T: Clone>(items: &[T], per: usize) -> Vec<Vec<T>> {
    if items.is_empty() { vec![Vec::new()] } else { items.chunks(per.max(1)).map(<[T]>::to_vec).collect() }
}

/// The parts one author wrote, given in ledger order, merged: the last-written part and the
/// items of the parts below its count (a part written again replaces the earlier one), in part
/// order, an item listed twice kept once (the first). `None` without parts.
pub fn merge<'a, P: Parted + 'a>(written: impl IntoIterator<Item = &'a P>) -> Option<(&'a P, Vec<P::Item>)> {
    let mut by_part: BTreeMap<u32, &P> = BTreeMap::new();
    let mut last = None;
    for p in written {
        by_part.insert(p.part(), p);
        last = Some(p);
    }
    let last = last?;
    let mut items: BTreeMap<[u8; 32], P::Item> = BTreeMap::new();
    for p in by_part.range(..last.parts()).map(|(_, p)| p) {
        for i in p.items() {
            items.entry(P::key(i)).or_insert_with(|| i.clone());
        }
    }
    Some((last, items.into_values().collect()))
}

/// What a decoded part must hold: items sorted by key and distinct, the index below the count.
pub fn check<P: Parted>(p: &P) -> Result<(), DecodeError> {
    if !p.items().windows(2).all(|w| P::key(&w[0]) < P::key(&w[1])) {
        return Err(DecodeError::invalid("items are not sorted by key and distinct"));
    }
    if p.part() >= p.parts() {
        return Err(DecodeError::invalid("part index not below the part count"));
    }
    Ok(())
}
