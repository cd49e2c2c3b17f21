//! Content-addressed blobs (FL weights and updates today; job assets next): bytes by their
//! BLAKE3 hash, kept up to a byte budget and a count, oldest evicted first. Blobs are caches a
//! peer can fetch again, so writes go to RocksDB's log without an fsync each; the index is
//! rebuilt from disk at open.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;

use crate::db::{CF_BLOB_ORDER, CF_BLOBS, Db, StorageError};

/// Limits of a blob store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLimits {
    /// Total bytes kept.
    pub max_bytes: u64,
    /// Blobs kept.
    pub max_blobs: usize,
    /// Largest single blob.
    pub max_blob: usize,
}

/// What the store holds, in insertion order: (order key, hash, length).
#[derive(Debug, Default)]
struct Index {
    order: VecDeque<(u64, [u8; 32], u64)>,
    bytes: u64,
    next: u64,
}

/// The `blobs` column families.
#[derive(Clone)]
pub struct BlobStore {
    db: Db,
    limits: BlobLimits,
    index: Arc<Mutex<Index>>,
}

impl BlobStore {
    /// Opens the store on `db`, reading its index from disk.
    pub fn open(db: Db, limits: BlobLimits) -> Result<Self, StorageError> {
        let mut index = Index::default();
        {
            let raw = db.raw();
            let order = raw.cf_handle(CF_BLOB_ORDER).expect("column family created at open");
            for item in raw.iterator_cf(&order, rocksdb::IteratorMode::Start) {
                let (k, v) = item?;
                let (Ok(k), Ok(v)) = (<[u8; 8]>::try_from(&k[..]), <[u8; 40]>::try_from(&v[..])) else {
                    return Err(StorageError::Corrupt { cf: CF_BLOB_ORDER, reason: "bad key or value length".into() });
                };
                let seq = u64::from_be_bytes(k);
                let hash: [u8; 32] = v[..32].try_into().expect("32 bytes");
                let len = u64::from_be_bytes(v[32..].try_into().expect("8 bytes"));
                index.order.push_back((seq, hash, len));
                index.bytes = index.bytes.saturating_add(len);
                index.next = seq + 1;
            }
        }
        Ok(Self { db, limits, index: Arc::new(Mutex::new(index)) })
    }

    /// Stores `bytes` under their BLAKE3 hash (once: a blob already held is not written again),
    /// then evicts the oldest blobs beyond the limits; returns the hash.
    pub fn put(&self, bytes: &[u8]) -> Result<[u8; 32], StorageError> {
        if bytes.len() > self.limits.max_blob {
            return Err(StorageError::TooLarge {
                what: "blob",
                len: bytes.len() as u64,
                max: self.limits.max_blob as u64,
            });
        }
        let hash = *blake3::hash(bytes).as_bytes();
        let raw = self.db.raw();
        let (blobs, order) = (
            raw.cf_handle(CF_BLOBS).expect("column family created at open"),
            raw.cf_handle(CF_BLOB_ORDER).expect("column family created at open"),
        );
        let mut idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if idx.order.iter().any(|(_, h, _)| *h == hash) {
            return Ok(hash);
        }
        let mut batch = WriteBatch::default();
        let seq = idx.next;
        let mut v = hash.to_vec();
        v.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        batch.put_cf(&blobs, hash, bytes);
        batch.put_cf(&order, seq.to_be_bytes(), v);
        let mut bytes_after = idx.bytes.saturating_add(bytes.len() as u64);
        let mut count_after = idx.order.len() + 1;
        let mut evicted = 0;
        for (s, h, len) in idx.order.iter() {
            if bytes_after <= self.limits.max_bytes && count_after <= self.limits.max_blobs {
                break;
            }
            batch.delete_cf(&blobs, h);
            batch.delete_cf(&order, s.to_be_bytes());
            bytes_after -= len;
            count_after -= 1;
            evicted += 1;
        }
        raw.write(batch)?;
        idx.order.drain(..evicted);
        idx.order.push_back((seq, hash, bytes.len() as u64));
        idx.bytes = bytes_after;
        idx.next = seq + 1;
        Ok(hash)
    }

    /// The blob `hash`, if held.
    pub fn get(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_BLOBS).expect("column family created at open");
        Ok(raw.get_cf(&cf, hash)?)
    }

    /// Up to `max` bytes of blob `hash` from `offset` (clamped to its length), with its total
    /// length; `None` if not held.
    pub fn chunk(&self, hash: &[u8; 32], offset: usize, max: usize) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_BLOBS).expect("column family created at open");
        Ok(raw.get_pinned_cf(&cf, hash)?.map(|b| {
            let start = offset.min(b.len());
            let end = start.saturating_add(max).min(b.len());
            (b.len() as u64, b[start..end].to_vec())
        }))
    }

    /// Blobs held and their total bytes.
    pub fn usage(&self) -> (usize, u64) {
        let idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        (idx.order.len(), idx.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BlobLimits = BlobLimits { max_bytes: 1000, max_blobs: 3, max_blob: 600 };

    #[test]
    fn blobs_are_content_addressed_evicted_oldest_first_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let s = BlobStore::open(db.clone(), LIMITS).unwrap();
        let a = s.put(&[1u8; 400]).unwrap();
        assert_eq!(a, *blake3::hash(&[1u8; 400]).as_bytes());
        assert_eq!(s.put(&[1u8; 400]).unwrap(), a, "stored once");
        let b = s.put(&[2u8; 400]).unwrap();
        assert_eq!(s.usage(), (2, 800));
        // 400 more would make 1200 > 1000: the oldest goes.
        let c = s.put(&[3u8; 400]).unwrap();
        assert_eq!(s.get(&a).unwrap(), None);
        assert_eq!(s.usage(), (2, 800));
        // Three small ones: the count limit evicts too.
        let (d, e) = (s.put(&[4u8; 10]).unwrap(), s.put(&[5u8; 10]).unwrap());
        assert_eq!(s.usage(), (3, 420));
        assert_eq!(s.get(&b).unwrap(), None);
        assert_eq!(s.chunk(&c, 390, 100).unwrap(), Some((400, vec![3u8; 10])));
        assert_eq!(s.chunk(&c, 5000, 100).unwrap(), Some((400, vec![])));
        assert!(s.put(&[0u8; 601]).unwrap_err().to_string().contains("601"));
        drop(s);
        drop(db);
        let s = BlobStore::open(Db::open(dir.path()).unwrap(), LIMITS).unwrap();
        assert_eq!(s.usage(), (3, 420));
        assert_eq!(s.get(&d).unwrap(), Some(vec![4u8; 10]));
        assert_eq!(s.get(&e).unwrap(), Some(vec![5u8; 10]));
        // The next blob after a reopen continues the order (the oldest, c, goes first).
        s.put(&[6u8; 10]).unwrap();
        assert_eq!(s.get(&c).unwrap(), None);
    }
}
