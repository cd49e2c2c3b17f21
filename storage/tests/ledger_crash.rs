//! The ledger store under SIGKILL: a child process writes entries at full speed (synced batches
//! of varying size, four authors) and reports each acknowledged batch; the parent kills it at a
//! random moment, many times over. After every kill the store reopens consistently and holds
//! every acknowledged entry.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::{Entry, EntryKind};
use ifx_storage::{Db, LedgerStore};

const NET: &str = "crash";
const AUTHORS: u8 = 4;

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i + 1; 32])
}

/// The writer, run only as the child of the test below.
#[test]
#[ignore = "helper process for ledger_survives_repeated_sigkill"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("IFX_CRASH_DIR") else { return };
    let mut store = LedgerStore::open(Db::open(std::path::Path::new(&dir)).unwrap(), NET).unwrap();
    let mut round = 0u64;
    loop {
        round += 1;
        let a = (round % AUTHORS as u64) as u8;
        let k = key(a);
        let (mut seq, mut prev) = match store.ledger().author_summary(&k.verifying_key().to_bytes()) {
            Some(s) => (s.len, s.tip),
            None => (0, GENESIS_PREV),
        };
        let n = 1 + (round * 7919 % 48);
        let mut batch = Vec::new();
        for _ in 0..n {
            let e = Entry::sign(&k, NET, seq, prev, seq / 100, EntryKind::Liveness, vec![a; 64]).unwrap();
            prev = e.id();
            seq += 1;
            batch.push(e);
        }
        let out = store.ingest(batch, None).unwrap();
        assert_eq!(out.accepted.len() as u64, n);
        // Acknowledged: the batch is durable.
        println!("acked {a} {}", seq - 1);
    }
}

#[test]
fn ledger_survives_repeated_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut acked: BTreeMap<u8, u64> = BTreeMap::new();
    let mut total_acks = 0;
    for round in 0..10u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_writer", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("IFX_CRASH_DIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it write for a while (varying), then kill it without warning.
        let until = Instant::now() + Duration::from_millis(150 + round * 37 % 250);
        let mut first_ack = None;
        while Instant::now() < until || first_ack.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("acked ") {
                        let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                        let (a, seq) = (it.next().unwrap() as u8, it.next().unwrap());
                        acked.insert(a, seq);
                        total_acks += 1;
                        first_ack.get_or_insert(());
                    }
                }
                Err(e) => panic!("writer gave no acknowledgement: {e}"),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks that were already printed before the kill count too.
        drop(rx);
        let _ = reader.join();

        let store = LedgerStore::open(Db::open(&dir).unwrap(), NET)
            .unwrap_or_else(|e| panic!("round {round}: store does not reopen: {e}"));
        let l = store.ledger();
        for (&a, &seq) in &acked {
            let s = l.author_summary(&key(a).verifying_key().to_bytes()).expect("author present");
            assert!(s.len > seq, "round {round}: author {a} acked seq {seq} but only {} stored", s.len);
        }
        // The heads column family and the per-epoch index agree with the entries.
        let heads = store.heads().unwrap();
        assert_eq!(heads.len(), l.author_count());
        for (author, head) in heads {
            let s = l.author_summary(&author).unwrap();
            assert_eq!((head.len, head.tip), (s.len, s.tip), "round {round}: head out of step");
        }
        let indexed: usize = l.epochs().keys().map(|e| store.entries_in_epoch(*e).unwrap().len()).sum();
        assert_eq!(indexed, l.len(), "round {round}: epoch index out of step");
        assert_eq!(l.pending_len(), 0);
    }
    assert!(total_acks >= 10, "the writer acknowledged too little to test anything: {total_acks}");
    eprintln!("10 SIGKILLs, {total_acks} acknowledged batches, all present after each reopen");
}

#[test]
fn reopen_restores_exactly_and_other_networks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db");
    let k = key(0);
    let root = {
        let mut store = LedgerStore::open(Db::open(&path).unwrap(), NET).unwrap();
        for epoch in 0..5 {
            store.append(&k, epoch, EntryKind::Liveness, vec![epoch as u8]).unwrap();
        }
        // A fork by another author is kept as evidence and survives the reopen.
        let k2 = key(1);
        let a = Entry::sign(&k2, NET, 0, GENESIS_PREV, 0, EntryKind::Liveness, vec![1]).unwrap();
        let b = Entry::sign(&k2, NET, 0, GENESIS_PREV, 0, EntryKind::Liveness, vec![2]).unwrap();
        let out = store.ingest(vec![a, b], Some(0)).unwrap();
        assert_eq!(out.new_equivocators.len(), 1);
        assert_eq!(store.entries_by_author(&k.verifying_key().to_bytes()).unwrap().len(), 5);
        assert_eq!(store.entries_in_epoch(0).unwrap().len(), 3);
        store.ledger().root()
    };
    let store = LedgerStore::open(Db::open(&path).unwrap(), NET).unwrap();
    assert_eq!(store.ledger().root(), root);
    assert_eq!(store.ledger().len(), 7);
    assert_eq!(store.ledger().equivocators().count(), 1);
    drop(store);
    // Read-only while nothing else holds it, and a wrong network is an error.
    let ro = LedgerStore::open(Db::open_read_only(&path).unwrap(), NET).unwrap();
    assert_eq!(ro.ledger().root(), root);
    drop(ro);
    let err = LedgerStore::open(Db::open(&path).unwrap(), "other").err().unwrap();
    assert!(err.to_string().contains("belongs to network"), "{err}");
}

/// Issue #16, fork bomb: a fork cuts the author's chain at the fork and keeps the two smallest
/// siblings; what left the set leaves the disk in the same write, so a reopen holds exactly
/// the set (the same root, the same evidence, no entry past the fork, no index row left over).
#[test]
fn a_fork_removes_what_lies_past_it_from_the_disk_too() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db");
    let k = key(2);
    let author = k.verifying_key().to_bytes();
    let (root, forks) = {
        let mut store = LedgerStore::open(Db::open(&path).unwrap(), NET).unwrap();
        let chain: Vec<_> = (0..6).map(|e| store.append(&k, e, EntryKind::Liveness, vec![e as u8]).unwrap()).collect();
        // Five siblings at seq 2, one at a time: the chain past seq 2 goes at the first, and
        // every later one either displaces the larger kept sibling or is superseded.
        let mut removed = 0;
        let mut siblings = vec![chain[2].id()];
        for i in 0..5u8 {
            let sib = Entry::sign(&k, NET, 2, chain[1].id(), 2, EntryKind::Liveness, vec![100 + i]).unwrap();
            siblings.push(sib.id());
            let out = store.ingest(vec![sib], None).unwrap();
            removed += out.removed.len() + out.superseded;
        }
        siblings.sort();
        assert_eq!(store.ledger().len(), 2 + 2);
        assert_eq!(removed, 3 + 4, "the tail (seqs 3..6), and of six siblings four are not kept");
        assert_eq!(store.ledger().forks(&author), vec![(2, siblings[..2].to_vec())]);
        assert!(store.entries_in_epoch(5).unwrap().is_empty(), "no index row outlives its entry");
        assert_eq!(store.entries_by_author(&author).unwrap().len(), 4);
        (store.ledger().root(), store.ledger().forks(&author))
    };
    let store = LedgerStore::open(Db::open(&path).unwrap(), NET).unwrap();
    assert_eq!(store.ledger().root(), root);
    assert_eq!(store.ledger().forks(&author), forks);
    assert_eq!(store.heads().unwrap(), vec![(author, ifx_storage::StoredHead { len: 3, tip: forks[0].1[0] })]);
}

/// Issue #16, durable or nothing: a write RocksDB refuses (here: a store opened read-only, a
/// real refusal of the real database) is an error for the caller, poisons the store against
/// every further write, and leaves the disk as it was; a reopen holds exactly what was durable.
#[test]
fn a_failed_write_poisons_the_store_and_the_disk_keeps_what_was_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db");
    let k = key(0);
    let durable_root = {
        let mut store = LedgerStore::open(Db::open(&path).unwrap(), NET).unwrap();
        store.append(&k, 0, EntryKind::Liveness, vec![0]).unwrap();
        store.ledger().root()
    };
    {
        let mut store = LedgerStore::open(Db::open_read_only(&path).unwrap(), NET).unwrap();
        assert!(!store.is_poisoned());
        let e = store.append(&k, 1, EntryKind::Liveness, vec![1]);
        assert!(e.is_err(), "the refused write must be an error: {e:?}");
        assert!(store.is_poisoned());
        let again = Entry::sign(&key(2), NET, 0, GENESIS_PREV, 0, EntryKind::Liveness, vec![]).unwrap();
        assert!(matches!(store.ingest(vec![again], None), Err(ifx_storage::StorageError::Poisoned)));
    }
    let store = LedgerStore::open(Db::open(&path).unwrap(), NET).unwrap();
    assert_eq!(store.ledger().root(), durable_root);
    assert_eq!(store.ledger().len(), 1);
}
