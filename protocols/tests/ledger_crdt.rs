//! CRDT laws of the ledger, by proptest: merge is commutative, associative and idempotent; any
//! order, duplication or partial delivery converges to one root; forged and re-chained entries
//! never enter; anti-entropy makes two ledgers equal, forks included.

use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::{Entry, EntryKind, Ledger, Pull, SyncRequest, SyncResponse};
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
    let mut pull = Pull::new();
    let mut new = 0;
    while let Some(req) = pull.request(me, chunk) {
        let req = SyncRequest::decode(&req.encode()).unwrap();
        let resp = SyncResponse::decode(&other.missing_for(&req).encode()).unwrap();
        let entries: Vec<Entry> = resp.entries.iter().map(|b| Entry::decode(b, NET).unwrap()).collect();
        let n = entries.len();
        new += n - me.ingest(entries, None).duplicates;
        pull.advance(resp.next).unwrap();
    }
    new
}

/// How many entries of a generated world the set keeps: each author's chain up to its first
/// forked seq, and both siblings there.
fn kept(w: &[Entry]) -> usize {
    let mut per: std::collections::BTreeMap<([u8; 32], u64), usize> = Default::default();
    for e in w {
        *per.entry((e.author, e.seq)).or_default() += 1;
    }
    let mut n = 0;
    let mut cut: Option<[u8; 32]> = None;
    for ((author, _), count) in per {
        if cut == Some(author) {
            continue;
        }
        n += count;
        cut = (count > 1).then_some(author);
    }
    n
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
        prop_assert_eq!(canonical.len(), kept(&w), "every generated entry is valid; forks are cut");
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
    let req = empty.sync_request(None, u32::MAX);
    let resp = full.missing_for(&req).into_response();
    let bytes = resp.encode();
    assert!(bytes.len() <= MAX_RESPONSE_BYTES, "{} bytes", bytes.len());
    assert!(resp.entries.iter().map(Vec::len).sum::<usize>() <= MAX_CHUNK_BYTES + 32 * 1024 + 256);
    assert!(resp.next.is_some(), "the rest is left for the next request");
    assert!(SyncResponse::decode(&bytes).is_ok());
    let mut me = Ledger::new(NET);
    assert_eq!(pull(&mut me, &full, u32::MAX), 160);
    assert_eq!(me.root(), full.root());
}

fn linear(k: &SigningKey, len: u64, tag: u8) -> Vec<Entry> {
    let mut prev = GENESIS_PREV;
    (0..len)
        .map(|seq| {
            let e = Entry::sign(k, NET, seq, prev, 0, EntryKind::Unknown(5), vec![tag, seq as u8]).unwrap();
            prev = e.id();
            e
        })
        .collect()
}

/// Issue #16, fork bomb: an author signs 600 siblings at one seq, each with a branch on top.
/// Every node keeps the same two (the smallest ids) and nothing past the fork, whatever the
/// order the siblings arrive in, and the sync answer that carries the evidence stays small.
#[test]
fn a_fork_bomb_keeps_two_siblings_and_nothing_past_them() {
    use rand::seq::SliceRandom;
    let k = key(40);
    let chain = linear(&k, 10, 0);
    let mut bomb = Vec::new();
    for i in 0..600u32 {
        let sib = Entry::sign(&k, NET, 4, chain[3].id(), 0, EntryKind::Unknown(6), i.to_le_bytes().to_vec()).unwrap();
        let top = Entry::sign(&k, NET, 5, sib.id(), 0, EntryKind::Unknown(6), vec![1]).unwrap();
        bomb.push(sib);
        bomb.push(top);
    }
    let mut smallest: Vec<_> = bomb.iter().filter(|e| e.seq == 4).map(Entry::id).chain([chain[4].id()]).collect();
    smallest.sort();
    smallest.truncate(2);

    let mut a = Ledger::new(NET);
    a.ingest(chain.clone(), None);
    let before = a.len();
    let mut removed = 0;
    for piece in bomb.chunks(50) {
        let out = a.ingest(piece.to_vec(), None);
        removed += out.removed.len();
        assert!(out.rejected.is_empty());
    }
    // Seqs 0..4 linear, two siblings at 4, nothing at 5 and beyond.
    assert_eq!(a.len(), 4 + 2);
    assert_eq!(a.forks(&k.verifying_key().to_bytes()), vec![(4, smallest.clone())]);
    assert_eq!(a.pending_len(), 0);
    assert!(removed >= before - 4, "the honest tail past the fork left the set");

    // The same set, shuffled and interleaved with the honest chain. The first 100 siblings fit
    // the pending pool: the same root straight away.
    let mut small: Vec<Entry> = chain.iter().chain(&bomb[..200]).cloned().collect();
    small.shuffle(&mut rand::thread_rng());
    let mut b = Ledger::new(NET);
    for piece in small.chunks(37) {
        b.ingest(piece.to_vec(), None);
    }
    assert_eq!(b.root(), ledger_of(&chain.iter().chain(&bomb[..200]).cloned().collect::<Vec<_>>()).root());
    // All 600 overflow one author's pending slots, so some smallest sibling may be dropped:
    // one pull from a node that kept the right pair repairs it (the fork fingerprint differs).
    let mut all: Vec<Entry> = chain.iter().chain(&bomb).cloned().collect();
    all.shuffle(&mut rand::thread_rng());
    let mut b = Ledger::new(NET);
    for piece in all.chunks(37) {
        b.ingest(piece.to_vec(), None);
    }
    pull(&mut b, &a, 1 << 20);
    assert_eq!(b.root(), a.root());
    assert_eq!(b.len(), a.len());
    assert_eq!(pull(&mut a, &b, 1 << 20), 0, "and nothing flows back");

    // A node with only the honest chain learns the fork from one small answer.
    let mut c = Ledger::new(NET);
    c.ingest(chain, None);
    let req = c.sync_request(None, u32::MAX);
    let bytes = a.missing_for(&req).encode();
    assert!(bytes.len() < 4096, "{} bytes carry the evidence", bytes.len());
    pull(&mut c, &a, 1 << 20);
    assert_eq!(c.root(), a.root());
}

/// Issue #16, author flood: 20,000 authors (one request of all of them passed the 1 MiB
/// request limit near 14,000). A stranger pulls everything in pages; no request is too large.
#[test]
fn sync_pages_through_any_number_of_authors() {
    use ifx_protocols::ledger::sync::{MAX_REQUEST_BYTES, MAX_SUMMARIES};
    let authors = 20_000u32;
    let entries: Vec<Entry> = (0..authors)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Entry::sign(&SigningKey::from_bytes(&seed), NET, 0, GENESIS_PREV, 0, EntryKind::Unknown(1), vec![]).unwrap()
        })
        .collect();
    let full = ledger_of(&entries);
    // A peer that holds them all asks with the largest possible page.
    let req = full.sync_request(None, 1 << 20);
    assert_eq!(req.summaries.len(), MAX_SUMMARIES);
    assert!(req.encode().len() <= MAX_REQUEST_BYTES, "{} bytes", req.encode().len());
    assert!(SyncRequest::decode(&req.encode()).is_ok());
    // And nothing is missing from it within its page.
    assert!(full.missing_for(&req).entries.is_empty());

    // A node holding 12,000 of them: two pages of its summaries.
    let mut me = ledger_of(&entries[..12_000]);
    let mut pages = 0;
    let mut p = Pull::new();
    while let Some(req) = p.request(&me, 1 << 20) {
        assert!(req.encode().len() <= MAX_REQUEST_BYTES);
        pages += (req.resume.is_none()) as usize;
        let resp =
            SyncResponse::decode(&full.missing_for(&SyncRequest::decode(&req.encode()).unwrap()).encode()).unwrap();
        let got: Vec<Entry> = resp.entries.iter().map(|b| Entry::decode(b, NET).unwrap()).collect();
        me.ingest(got, None);
        p.advance(resp.next).unwrap();
    }
    assert!(pages >= 2, "{pages} pages");
    assert_eq!(me.len(), authors as usize);
    assert_eq!(me.root(), full.root());
}

/// A responder whose `next` runs the pull backwards or out of its page ends the pull.
#[test]
fn a_resume_point_that_runs_backwards_ends_the_pull() {
    let me = Ledger::new(NET);
    let mut p = Pull::new();
    p.request(&me, 1000).unwrap();
    p.advance(Some(([5; 32], 3))).unwrap();
    assert!(p.advance(Some(([5; 32], 3))).is_err(), "the same point again");
    assert!(p.request(&me, 1000).is_none());
}

/// Issue #16: the pending pool expires and one author cannot fill it for everyone.
#[test]
fn pending_entries_expire_and_one_author_holds_few_slots() {
    use ifx_protocols::ledger::state::{MAX_PENDING_PER_AUTHOR, PENDING_TTL_MS};
    let k = key(41);
    let chain = linear(&k, MAX_PENDING_PER_AUTHOR as u64 + 20, 1);
    let mut l = Ledger::new(NET);
    l.expire_pending(1_000);
    // Everything but the genesis: all of it waits, up to the per-author cap.
    let out = l.ingest(chain[1..].to_vec(), None);
    assert_eq!(out.pending, MAX_PENDING_PER_AUTHOR);
    assert_eq!(out.dropped, chain.len() - 1 - MAX_PENDING_PER_AUTHOR);
    // Another author still gets a slot.
    let other = linear(&key(42), 2, 2);
    assert_eq!(l.ingest(vec![other[1].clone()], None).pending, 1);
    assert_eq!(l.expire_pending(1_000 + PENDING_TTL_MS), 0, "not yet");
    assert_eq!(l.expire_pending(1_001 + PENDING_TTL_MS), MAX_PENDING_PER_AUTHOR + 1);
    assert_eq!(l.pending_len(), 0);
    // And what expired comes back with its predecessor, as a pull would bring it.
    let out = l.ingest(chain.clone(), None);
    assert_eq!(out.accepted.len(), chain.len());
}

#[test]
fn encoded_len_is_the_length_of_the_encoding() {
    let k = key(43);
    for (seq, epoch, body) in [
        (0, 0, 0),
        (250, 251, 250),
        (251, 65_535, 251),
        (65_536, u32::MAX as u64 + 1, 32 * 1024),
        (u64::MAX, u64::MAX, 1),
    ] {
        let e = Entry::sign(&k, NET, seq, [1; 32], epoch, EntryKind::Unknown(65_000), vec![3; body]).unwrap();
        assert_eq!(e.encoded_len(), e.encode().len(), "seq {seq} epoch {epoch} body {body}");
    }
}
