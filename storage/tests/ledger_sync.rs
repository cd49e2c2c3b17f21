//! Anti-entropy between real stores: 100,000 shared entries, 1,000 more on one side. The pull
//! moves about the bytes of the 1,000 entries (the ratio is printed and bounded), and a
//! stranger with an empty store catches up completely through chunked responses.

use std::time::Instant;

use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::sync::DEFAULT_CHUNK_BYTES;
use ifx_protocols::ledger::{Entry, EntryKind, Pull, SyncRequest, SyncResponse};
use ifx_storage::{Db, LedgerStore};

const NET: &str = "sync";
const AUTHORS: usize = 100;

/// `per_author` more entries for each author, continuing the chains in `heads`.
fn extend(heads: &mut [(u64, [u8; 32])], per_author: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for (a, (seq, prev)) in heads.iter_mut().enumerate() {
        let k = SigningKey::from_bytes(&[a as u8 + 1; 32]);
        for _ in 0..per_author {
            let e = Entry::sign(&k, NET, *seq, *prev, *seq / 250, EntryKind::Liveness, vec![a as u8; 96]).unwrap();
            *prev = e.id();
            *seq += 1;
            out.push(e);
        }
    }
    out
}

fn fill(store: &mut LedgerStore, entries: &[Entry]) {
    for chunk in entries.chunks(5_000) {
        let out = store.ingest(chunk.to_vec(), None).unwrap();
        assert_eq!(out.accepted.len(), chunk.len());
    }
}

/// Pulls from `from` into `to` until complete; returns (request bytes, response bytes, rounds).
fn pull(to: &mut LedgerStore, from: &LedgerStore) -> (usize, usize, usize) {
    let (mut req_bytes, mut resp_bytes, mut rounds) = (0, 0, 0);
    let mut pull = Pull::new();
    while let Some(req) = pull.request(to.ledger(), DEFAULT_CHUNK_BYTES) {
        rounds += 1;
        let req = req.encode();
        req_bytes += req.len();
        let resp = from.ledger().missing_for(&SyncRequest::decode(&req).unwrap()).encode();
        resp_bytes += resp.len();
        let resp = SyncResponse::decode(&resp).unwrap();
        let entries = resp.entries.iter().map(|b| Entry::decode(b, NET).unwrap()).collect();
        to.ingest(entries, None).unwrap();
        pull.advance(resp.next).unwrap();
    }
    (req_bytes, resp_bytes, rounds)
}

#[test]
fn sync_cost_follows_the_difference_and_a_stranger_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let open = |name: &str| LedgerStore::open(Db::open(&tmp.path().join(name)).unwrap(), NET).unwrap();
    let mut heads = vec![(0u64, GENESIS_PREV); AUTHORS];
    let shared = extend(&mut heads, 1_000);
    let extra = extend(&mut heads, 10);
    assert_eq!((shared.len(), extra.len()), (100_000, 1_000));

    let (mut a, mut b) = (open("a"), open("b"));
    let t = Instant::now();
    fill(&mut a, &shared);
    eprintln!("ingested 100,000 entries (verify + merge + synced write) in {:.2?}", t.elapsed());
    fill(&mut b, &shared);
    fill(&mut a, &extra);
    assert_ne!(a.ledger().root(), b.ledger().root());

    let (req, resp, rounds) = pull(&mut b, &a);
    assert_eq!(b.ledger().root(), a.ledger().root(), "b caught up");
    let payload: usize = extra.iter().map(|e| e.encode().len()).sum();
    let ratio = (req + resp) as f64 / payload as f64;
    eprintln!(
        "sync of 1,000 missing entries: request {req} B + response {resp} B = {} B for {payload} B of entries \
         (ratio {ratio:.3}, {rounds} round)",
        req + resp
    );
    assert!(ratio < 1.10, "sync moved {ratio:.3}x the bytes of the difference");

    // Nothing to do when equal: one small round trip.
    let (req, resp, _) = pull(&mut b, &a);
    assert!(resp < 16, "an equal peer sent {resp} bytes");
    eprintln!("sync between equal stores: request {req} B, response {resp} B");

    // A stranger with an empty store catches up completely, in bounded chunks.
    let mut c = open("c");
    let t = Instant::now();
    let (_, resp, rounds) = pull(&mut c, &a);
    assert_eq!(c.ledger().root(), a.ledger().root());
    assert_eq!(c.ledger().len(), 101_000);
    eprintln!("stranger caught up: {resp} B in {rounds} chunks in {:.2?}", t.elapsed());
    assert!(rounds > 1, "responses are chunked");
}
