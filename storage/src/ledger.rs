//! The ledger on disk. Every ingest that accepts entries writes them, with their per-epoch
//! index rows, the authors' new heads and any equivocation evidence, in one synced
//! `WriteBatch` (group commit) before it returns: what a caller was told is stored survives a
//! crash, and a crash mid-batch leaves nothing of it. On open, the entries are read back in key
//! order and re-linked; a store that does not re-link completely is reported as corrupt.

use std::sync::Arc;

use bincode::{Decode, Encode};
use ifx_protocols::ledger::entry::EntryId;
use ifx_protocols::ledger::{Entry, IngestOutcome, Ledger};
use rocksdb::{IteratorMode, WriteBatch};

use crate::StorageError;
use crate::db::{CF_ENTRIES, CF_EPOCHS, CF_EVIDENCE, CF_HEADS, CF_META, Db};

const META_NET_ID: &[u8] = b"ledger.net_id";

/// A chain head as stored in `ledger_heads`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StoredHead {
    /// Chain length.
    pub len: u64,
    /// Smallest id at `len - 1`.
    pub tip: EntryId,
}

/// The ledger state of one node together with its RocksDB store.
pub struct LedgerStore {
    db: Db,
    ledger: Ledger,
    poisoned: bool,
}

fn entry_key(e: &Entry) -> Vec<u8> {
    let mut k = Vec::with_capacity(72);
    k.extend_from_slice(&e.author);
    k.extend_from_slice(&e.seq.to_be_bytes());
    k.extend_from_slice(&e.id());
    k
}

fn epoch_key(e: &Entry) -> Vec<u8> {
    let mut k = Vec::with_capacity(80);
    k.extend_from_slice(&e.epoch.to_be_bytes());
    k.extend_from_slice(&entry_key(e));
    k
}

impl LedgerStore {
    /// Opens the ledger of network `net_id` in `db`, re-linking every stored entry.
    pub fn open(db: Db, net_id: &str) -> Result<Self, StorageError> {
        let raw = db.raw();
        let meta = raw.cf_handle(CF_META).expect("column family created at open");
        match raw.get_cf(&meta, META_NET_ID)? {
            Some(found) if found != net_id.as_bytes() => {
                return Err(StorageError::WrongNetwork {
                    expected: net_id.into(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                });
            }
            Some(_) => {}
            None if !db.is_read_only() => raw.put_cf_opt(&meta, META_NET_ID, net_id, &Db::durable())?,
            None => {}
        }
        let entries = Self::read_all(&db, net_id)?;
        let n = entries.len();
        let mut ledger = Ledger::new(net_id);
        let out = ledger.restore(entries);
        if out.accepted.len() + out.duplicates != n || !out.rejected.is_empty() {
            return Err(StorageError::Corrupt {
                cf: CF_ENTRIES,
                reason: format!(
                    "{} of {n} stored entries do not link ({} rejected)",
                    n - out.accepted.len() - out.duplicates,
                    out.rejected.len()
                ),
            });
        }
        Ok(Self { db, ledger, poisoned: false })
    }

    /// Opens the ledger of whatever network the store belongs to (for offline inspection).
    pub fn open_existing(db: Db) -> Result<Self, StorageError> {
        let raw = db.raw();
        let meta = raw.cf_handle(CF_META).expect("column family created at open");
        let net = raw.get_cf(&meta, META_NET_ID)?.ok_or_else(|| StorageError::Corrupt {
            cf: CF_META,
            reason: "no network id: this store never held a ledger".into(),
        })?;
        let net = String::from_utf8(net)
            .map_err(|_| StorageError::Corrupt { cf: CF_META, reason: "network id is not UTF-8".into() })?;
        Self::open(db, &net)
    }

    fn read_all(db: &Db, net_id: &str) -> Result<Vec<Entry>, StorageError> {
        let raw = db.raw();
        let cf = raw.cf_handle(CF_ENTRIES).expect("column family created at open");
        let mut out = Vec::new();
        for item in raw.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            let e = Entry::decode(&v, net_id)
                .map_err(|e| StorageError::Corrupt { cf: CF_ENTRIES, reason: e.to_string() })?;
            if k.as_ref() != entry_key(&e).as_slice() {
                return Err(StorageError::Corrupt { cf: CF_ENTRIES, reason: "key does not match the entry".into() });
            }
            out.push(e);
        }
        Ok(out)
    }

    /// A write failed: memory is ahead of the disk, and the store refuses every further
    /// write. The node must stop (what memory holds beyond the disk is lost with it, by design).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Drops pending entries that waited too long (memory only: pending entries are never
    /// stored); returns how many.
    pub fn expire_pending(&mut self, now_ms: u64) -> usize {
        self.ledger.expire_pending(now_ms)
    }

    /// The in-memory state (roots, chains, sync).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Verifies and merges `entries`, then makes the accepted ones durable before returning.
    pub fn ingest(&mut self, entries: Vec<Entry>, current_epoch: Option<u64>) -> Result<IngestOutcome, StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let out = self.ledger.ingest(entries, current_epoch);
        if out.accepted.is_empty() && out.removed.is_empty() {
            return Ok(out);
        }
        if let Err(e) = self.persist(&out) {
            // Memory is now ahead of the disk; refuse further writes rather than diverge.
            self.poisoned = true;
            return Err(e);
        }
        Ok(out)
    }

    fn persist(&self, out: &IngestOutcome) -> Result<(), StorageError> {
        let raw = self.db.raw();
        let cf = |n| raw.cf_handle(n).expect("column family created at open");
        let (entries, epochs, heads, evidence) = (cf(CF_ENTRIES), cf(CF_EPOCHS), cf(CF_HEADS), cf(CF_EVIDENCE));
        let mut batch = WriteBatch::default();
        let mut touched = std::collections::BTreeSet::new();
        // Entries that left the set (past a fork, or a displaced sibling) leave the disk in the
        // same write.
        for e in &out.removed {
            batch.delete_cf(&entries, entry_key(e));
            batch.delete_cf(&epochs, epoch_key(e));
            touched.insert(e.author);
        }
        for e in &out.accepted {
            batch.put_cf(&entries, entry_key(e), e.encode());
            batch.put_cf(&epochs, epoch_key(e), []);
            touched.insert(e.author);
        }
        for author in touched {
            let summary = self.ledger.author_summary(&author).expect("a touched author keeps its genesis");
            let head = StoredHead { len: summary.len, tip: summary.tip };
            batch.put_cf(&heads, author, ifx_protocols::codec::encode(&head));
            // The fork may have moved to a lower seq: the evidence rows are rewritten whole.
            let mut end = author.to_vec();
            end.extend_from_slice(&[0xff; 9]);
            batch.delete_range_cf(&evidence, author.as_slice(), end.as_slice());
            for (seq, ids) in self.ledger.forks(&author) {
                let mut k = author.to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                batch.put_cf(&evidence, k, ids.concat());
            }
        }
        raw.write_opt(batch, &Db::durable())?;
        Ok(())
    }

    /// Signs this node's next entry with `key`, stores it durably and returns it.
    pub fn append(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        epoch: u64,
        kind: ifx_protocols::ledger::EntryKind,
        body: Vec<u8>,
    ) -> Result<Arc<Entry>, StorageError> {
        let e = self
            .ledger
            .next_entry(key, epoch, kind, body)
            .map_err(|e| StorageError::Corrupt { cf: CF_ENTRIES, reason: format!("cannot sign: {e}") })?;
        let id = e.id();
        let out = self.ingest(vec![e], None)?;
        out.accepted
            .into_iter()
            .find(|a| a.id() == id)
            .ok_or_else(|| StorageError::Corrupt { cf: CF_ENTRIES, reason: "own entry did not link".into() })
    }

    /// Stored heads, by author (read from `ledger_heads`).
    pub fn heads(&self) -> Result<Vec<([u8; 32], StoredHead)>, StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_HEADS).expect("column family created at open");
        let mut out = Vec::new();
        for item in raw.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            let author: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StorageError::Corrupt { cf: CF_HEADS, reason: "key length".into() })?;
            let (h, _): (StoredHead, usize) =
                bincode::decode_from_slice(&v, bincode::config::standard().with_limit::<128>())
                    .map_err(|e| StorageError::Corrupt { cf: CF_HEADS, reason: e.to_string() })?;
            out.push((author, h));
        }
        Ok(out)
    }

    /// Stored entries of one author, in seq order (a prefix scan of `ledger_entries`).
    pub fn entries_by_author(&self, author: &[u8; 32]) -> Result<Vec<Entry>, StorageError> {
        self.scan(CF_ENTRIES, author, |_, v| Ok(v.to_vec()))
    }

    /// Stored entries of one epoch, sorted by author and seq (through the `ledger_epochs` index).
    pub fn entries_in_epoch(&self, epoch: u64) -> Result<Vec<Entry>, StorageError> {
        let raw = self.db.raw();
        let entries = raw.cf_handle(CF_ENTRIES).expect("column family created at open");
        self.scan(CF_EPOCHS, &epoch.to_be_bytes(), |k, _| {
            raw.get_cf(&entries, &k[8..])?
                .ok_or_else(|| StorageError::Corrupt { cf: CF_EPOCHS, reason: "index row without its entry".into() })
        })
    }

    fn scan(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
        value: impl Fn(&[u8], &[u8]) -> Result<Vec<u8>, StorageError>,
    ) -> Result<Vec<Entry>, StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(cf_name).expect("column family created at open");
        let mut out = Vec::new();
        for item in raw.iterator_cf(&cf, IteratorMode::From(prefix, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let bytes = value(&k, &v)?;
            out.push(
                Entry::decode(&bytes, self.ledger.net_id())
                    .map_err(|e| StorageError::Corrupt { cf: cf_name, reason: e.to_string() })?,
            );
        }
        Ok(out)
    }
}
