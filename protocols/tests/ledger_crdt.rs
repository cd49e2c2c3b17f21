//! CRDT laws of the ledger, by proptest: merge is commutative, associative and idempotent; any
//! order, duplication or partial delivery converges to one root; forged and re-chained entries
//! never enter; anti-entropy makes two ledgers equal, forks included.

use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::{Entry, EntryKind, Ledger, SyncRequest, SyncResponse};
use proptest::prelude::*;

const NET: &str = "crdt";

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i + 1; 32])
}

/// Chains for `lens.len()` authors; author i forks at `fork[i]` (if any) with a sibling entry
/// and a short branch on top of it.
fn chains(lens: &[usize], forks: &[Option<usize>]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (a, &len) in lens.iter().enumerate() {
        let k = key(a as u8);
        let mut prev = GENESIS_PREV;
        let mut ids = Vec::new();
        for seq in 0..len {
            let e =
                Entry::sign(&k, NET, seq as u64, prev, seq as u64 / 3, EntryKind::Liveness, vec![a as u8, seq as u8])
                    .unwrap();
            prev = e.id();
            ids.push(e.id());
            out.push(e);
        }
        if let Some(f) = forks.get(a).copied().flatten().filter(|f| *f < len) {
            let prev = if f == 0 { GENESIS_PREV } else { ids[f - 1] };
            let sib = Entry::sign(&k, NET, f as u64, prev, f as u64 / 3, EntryKind::Unknown(77), vec![0xfe]).unwrap();
            let on_top =
                Entry::sign(&k, NET, f as u64 + 1, sib.id(), f as u64 / 3 + 1, EntryKind::Liveness, vec![]).unwrap();
            out.push(sib);
            out.push(on_top);
        }
    }
    out
}

fn ledger_of(entries: &[Entry]) -> Ledger {
    let mut l = Ledger::new(NET);
    let out = l.ingest(entries.to_vec(), None);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    l
}

/// Everything a ledger holds, valid and pending: the state one replica ships to another.
fn export(l: &Ledger, delivered: &[Entry]) -> Vec<Entry> {
    // Valid entries from the ledger itself, plus what was delivered but is still pending.
    let mut v: Vec<Entry> = l.iter_sorted().map(|e| (*e).clone()).collect();
    v.extend(delivered.iter().filter(|e| !l.contains(&e.id())).cloned());
    v
}

fn merged(a: &[Entry], b: &[Entry]) -> Ledger {
    let mut l = ledger_of(a);
    let b_state = export(&ledger_of(b), b);
    l.ingest(b_state, None);
    l
}

/// One anti-entropy pull (chunked, through the wire encodings); returns how many new entries
/// arrived.
fn pull(me: &mut Ledger, other: &Ledger, chunk: u32) -> usize {
    let mut resume = None;
    let mut new = 0;
    loop {
        let req = SyncRequest { summaries: me.summary(), max_bytes: chunk, resume };
        let req = SyncRequest::decode(&req.encode()).unwrap();
        let resp = SyncResponse::decode(&other.missing_for(&req).encode()).unwrap();
        let entries: Vec<Entry> = resp.entries.iter().map(|b| Entry::decode(b, NET).unwrap()).collect();
        let n = entries.len();
        new += n - me.ingest(entries, None).duplicates;
        match resp.next {
            Some(next) => resume = Some(next),
            None => return new,
        }
    }
}

fn state(l: &Ledger) -> ([u8; 32], usize, usize) {
    (l.root(), l.len(), l.pending_len())
}

fn arb_world() -> impl Strategy<Value = Vec<Entry>> {
    (prop::collection::vec(0usize..7, 1..4), prop::collection::vec(prop::option::of(0usize..6), 3))
        .prop_map(|(lens, forks)| chains(&lens, &forks))
}

/// A world and three random (overlapping, possibly partial) subsets of it.
fn arb_subsets() -> impl Strategy<Value = (Vec<Entry>, [Vec<Entry>; 3])> {
    arb_world().prop_flat_map(|w| {
        let n = w.len();
        (Just(w), prop::collection::vec(prop::collection::vec(any::<bool>(), n), 3)).prop_map(|(w, masks)| {
            let pick = |m: &Vec<bool>| w.iter().zip(m).filter(|(_, k)| **k).map(|(e, _)| e.clone()).collect::<Vec<_>>();
            let subsets = [pick(&masks[0]), pick(&masks[1]), pick(&masks[2])];
            (w, subsets)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merge_is_commutative_associative_idempotent((_w, [a, b, c]) in arb_subsets()) {
        prop_assert_eq!(state(&merged(&a, &b)), state(&merged(&b, &a)));
        let ab: Vec<Entry> = a.iter().chain(&b).cloned().collect();
        let bc: Vec<Entry> = b.iter().chain(&c).cloned().collect();
        prop_assert_eq!(state(&merged(&ab, &c)), state(&merged(&a, &bc)));
        prop_assert_eq!(state(&merged(&a, &a)), state(&ledger_of(&a)));
    }

    #[test]
    fn any_order_duplication_or_chunking_converges(
        w in arb_world(),
        seed in any::<u64>(),
        chunk in 1usize..5,
    ) {
        let canonical = ledger_of(&w);
        prop_assert_eq!(canonical.len(), w.len(), "every generated entry is valid");
        // Shuffle (deterministic from the seed), duplicate some, deliver in chunks.
        let mut delivery: Vec<Entry> = w.iter().chain(w.iter().step_by(2)).cloned().collect();
        let mut s = seed | 1;
        for i in (1..delivery.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            delivery.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut l = Ledger::new(NET);
        for part in delivery.chunks(chunk) {
            let out = l.ingest(part.to_vec(), None);
            prop_assert!(out.rejected.is_empty());
        }
        prop_assert_eq!(state(&l), state(&canonical));
        prop_assert_eq!(l.pending_len(), 0);
    }

    #[test]
    fn forged_and_rechained_entries_never_enter(w in arb_world(), pick in any::<prop::sample::Index>(), bit in 0usize..8) {
        prop_assume!(!w.is_empty());
        let honest = ledger_of(&w);
        let victim = &w[pick.index(w.len())];
        let mut bad = Vec::new();
        // Bit flips in the signature, the body or the prev link (decoded again, as received).
        let enc = victim.encode();
        for pos in [enc.len() - 1 - bit, enc.len() - 64 - 1, 1 + 32 + 1 + bit] {
            let mut b = enc.clone();
            b[pos] ^= 1 << (bit % 8);
            if let Ok(e) = Entry::decode(&b, NET) { bad.push(e); }
        }
        // Re-chained: same author and seq, prev pointing elsewhere, signed by another key.
        let mut rechained = Entry::sign(&key(9), NET, victim.seq, [7; 32], victim.epoch, victim.kind, victim.body.clone()).unwrap();
        rechained.author = victim.author;
        bad.push(Entry::decode(&rechained.encode(), NET).unwrap());
        // Validly signed by the author but hanging off an entry that does not exist: waits forever.
        let k = (0..3).map(key).find(|k| k.verifying_key().to_bytes() == victim.author).unwrap();
        let dangling = Entry::sign(&k, NET, victim.seq + 1, [9; 32], victim.epoch, EntryKind::Liveness, vec![]).unwrap();
        bad.push(dangling.clone());
        // Another network's entry.
        bad.push(Entry::decode(&Entry::sign(&k, "other", 0, GENESIS_PREV, 0, EntryKind::Liveness, vec![]).unwrap().encode(), NET).unwrap());

        let mut l = ledger_of(&w);
        let out = l.ingest(bad.clone(), None);
        prop_assert!(out.accepted.is_empty(), "a bad entry entered: {:?}", out.accepted);
        prop_assert_eq!(l.root(), honest.root());
        prop_assert_eq!(l.len(), honest.len());
        for b in &bad {
            prop_assert!(!l.contains(&b.id()) || w.iter().any(|e| e.id() == b.id()));
        }
    }

    #[test]
    fn anti_entropy_makes_two_ledgers_equal((_w, [a, b, _c]) in arb_subsets(), chunk in 1u32..2000) {
        let mut x = ledger_of(&a);
        let mut y = ledger_of(&b);
        // Each side pulls from the other until a round brings nothing new.
        for _ in 0..500 {
            let got = pull(&mut x, &y, chunk) + pull(&mut y, &x, chunk);
            if got == 0 { break; }
        }
        prop_assert_eq!(x.root(), y.root());
        prop_assert_eq!(x.len(), y.len());
        // Pending entries are not shipped by sync; both end with the valid union.
        let union = ledger_of(&a.iter().chain(&b).cloned().collect::<Vec<_>>());
        prop_assert_eq!(x.root(), union.root());
    }
}

/// Issue #16: the requester's `max_bytes` was not clamped, so `u32::MAX` made the responder
/// build one answer of every entry, larger than any requester decodes. Now every answer fits,
/// and a pull with that budget still brings everything.
#[test]
fn a_huge_max_bytes_is_clamped_and_the_pull_completes() {
    use ifx_protocols::ledger::sync::{MAX_CHUNK_BYTES, MAX_RESPONSE_BYTES};
    let k = key(9);
    let mut prev = GENESIS_PREV;
    let mut all = Vec::new();
    // 160 entries of 31 KiB: about 5 MiB, more than one response may carry.
    for seq in 0..160u64 {
        let e = Entry::sign(&k, NET, seq, prev, 0, EntryKind::Unknown(9), vec![seq as u8; 31 * 1024]).unwrap();
        prev = e.id();
        all.push(e);
    }
    let full = ledger_of(&all);
    let empty = Ledger::new(NET);
    let req = SyncRequest { summaries: empty.summary(), max_bytes: u32::MAX, resume: None };
    let resp = full.missing_for(&req);
    let bytes = resp.encode();
    assert!(bytes.len() <= MAX_RESPONSE_BYTES, "{} bytes", bytes.len());
    assert!(resp.entries.iter().map(Vec::len).sum::<usize>() <= MAX_CHUNK_BYTES + 32 * 1024 + 256);
    assert!(resp.next.is_some(), "the rest is left for the next request");
    assert!(SyncResponse::decode(&bytes).is_ok());
    let mut me = Ledger::new(NET);
    assert_eq!(pull(&mut me, &full, u32::MAX), 160);
    assert_eq!(me.root(), full.root());
}
