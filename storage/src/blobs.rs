//! Content-addressed blobs (FL weights and updates, models, render jobs' assets): bytes by their
//! BLAKE3 hash, kept up to a byte budget and a count, oldest evicted first, except the pinned
//! ones. Blobs are caches a peer can fetch again, so writes go to RocksDB's log without an fsync
//! each; the index is rebuilt from disk at open. A blob is stored in pieces of
//! [`CHUNK`] bytes under `hash || piece number`, so serving one chunk of a 256 MiB mesh reads
//! 512 KiB, not the whole value.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;

use crate::db::{CF_BLOB_ORDER, CF_BLOBS, Db, StorageError};

/// Bytes in one stored piece: the blob protocol's chunk, so a chunk request is one read.
pub const CHUNK: usize = ifx_protocols::blob::CHUNK_BYTES;

/// The key of piece `i` of blob `hash`.
fn piece(hash: &[u8; 32], i: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(hash);
    k[32..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Pieces of a blob of `len` bytes (an empty blob has one, empty).
fn pieces(len: u64) -> u64 {
    len.div_ceil(CHUNK as u64).max(1)
}

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

/// What the store holds, in insertion order: (order key, hash, length); and the blobs that
/// are not to be evicted (a running job's assets), with how many holders pin each.
#[derive(Debug, Default)]
struct Index {
    order: VecDeque<(u64, [u8; 32], u64)>,
    bytes: u64,
    next: u64,
    pinned: std::collections::BTreeMap<[u8; 32], usize>,
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
            // Stores written before blobs were kept in pieces hold whole values under 32-byte
            // keys: a cache, so they are dropped (peers serve them again).
            let blobs = raw.cf_handle(CF_BLOBS).expect("column family created at open");
            let old = match raw.iterator_cf(&blobs, rocksdb::IteratorMode::Start).next() {
                Some(item) => item?.0.len() != 40,
                None => false,
            };
            if old {
                let order = raw.cf_handle(CF_BLOB_ORDER).expect("column family created at open");
                let mut batch = WriteBatch::default();
                batch.delete_range_cf(&blobs, &[][..], &[0xffu8; 41][..]);
                batch.delete_range_cf(&order, &[][..], &[0xffu8; 9][..]);
                raw.write(batch)?;
                tracing::info!("blob cache of an older format dropped");
            }
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
        if bytes.is_empty() {
            batch.put_cf(&blobs, piece(&hash, 0), bytes);
        }
        for (i, c) in bytes.chunks(CHUNK).enumerate() {
            batch.put_cf(&blobs, piece(&hash, i as u64), c);
        }
        batch.put_cf(&order, seq.to_be_bytes(), v);
        let mut bytes_after = idx.bytes.saturating_add(bytes.len() as u64);
        let mut count_after = idx.order.len() + 1;
        let mut evicted = Vec::new();
        for (i, (s, h, len)) in idx.order.iter().enumerate() {
            if bytes_after <= self.limits.max_bytes && count_after <= self.limits.max_blobs {
                break;
            }
            if idx.pinned.contains_key(h) {
                continue;
            }
            batch.delete_range_cf(&blobs, piece(h, 0), piece(h, pieces(*len)));
            batch.delete_cf(&order, s.to_be_bytes());
            bytes_after -= len;
            count_after -= 1;
            evicted.push(i);
        }
        if bytes_after > self.limits.max_bytes || count_after > self.limits.max_blobs {
            return Err(StorageError::TooLarge {
                what: "blob beside the pinned ones (running jobs' assets)",
                len: bytes.len() as u64,
                max: self.limits.max_bytes.saturating_sub(
                    idx.order.iter().filter(|(_, h, _)| idx.pinned.contains_key(h)).map(|(_, _, l)| l).sum::<u64>(),
                ),
            });
        }
        raw.write(batch)?;
        for i in evicted.into_iter().rev() {
            idx.order.remove(i);
        }
        idx.order.push_back((seq, hash, bytes.len() as u64));
        idx.bytes = bytes_after;
        idx.next = seq + 1;
        Ok(hash)
    }

    /// Keeps `hash` from eviction until as many [`BlobStore::unpin`]s (a job pins its assets
    /// while it runs, so that other traffic cannot evict what its workers fetch). Pins live in
    /// memory: a restarted job pins again.
    pub fn pin(&self, hash: &[u8; 32]) {
        let mut idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        *idx.pinned.entry(*hash).or_default() += 1;
    }

    /// Undoes one [`BlobStore::pin`].
    pub fn unpin(&self, hash: &[u8; 32]) {
        let mut idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = idx.pinned.get_mut(hash) {
            *n -= 1;
            if *n == 0 {
                idx.pinned.remove(hash);
            }
        }
    }

    /// Whether the blob `hash` is held.
    pub fn has(&self, hash: &[u8; 32]) -> bool {
        self.len_of(hash).is_some()
    }

    /// The length of blob `hash`, if held.
    fn len_of(&self, hash: &[u8; 32]) -> Option<u64> {
        let idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        idx.order.iter().find(|(_, h, _)| h == hash).map(|(_, _, l)| *l)
    }

    /// The blob `hash`, if held.
    pub fn get(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(len) = self.len_of(hash) else { return Ok(None) };
        Ok(self.range(hash, len, 0, len as usize)?.map(|(_, b)| b))
    }

    /// Up to `max` bytes of blob `hash` from `offset` (clamped to its length), with its total
    /// length; `None` if not held. Reads only the pieces that hold them.
    pub fn chunk(&self, hash: &[u8; 32], offset: usize, max: usize) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let Some(len) = self.len_of(hash) else { return Ok(None) };
        self.range(hash, len, offset, max)
    }

    fn range(
        &self,
        hash: &[u8; 32],
        len: u64,
        offset: usize,
        max: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let start = (offset as u64).min(len);
        let end = start.saturating_add(max as u64).min(len);
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_BLOBS).expect("column family created at open");
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut i = start / CHUNK as u64;
        while (out.len() as u64) < end - start {
            // Evicted between the index read and this one: not held.
            let Some(p) = raw.get_pinned_cf(&cf, piece(hash, i))? else { return Ok(None) };
            let at = i * CHUNK as u64;
            let from = (start.max(at) - at) as usize;
            let to = ((end - at) as usize).min(p.len());
            if from >= to {
                return Err(StorageError::Corrupt { cf: CF_BLOBS, reason: format!("piece {i} is short") });
            }
            out.extend_from_slice(&p[from..to]);
            i += 1;
        }
        Ok(Some((len, out)))
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

    #[test]
    fn a_large_blob_is_kept_in_pieces_and_any_range_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BlobLimits { max_bytes: 16 << 20, max_blobs: 8, max_blob: 8 << 20 };
        let s = BlobStore::open(Db::open(dir.path()).unwrap(), limits).unwrap();
        let big: Vec<u8> = (0..CHUNK * 3 + 17).map(|i| (i % 253) as u8).collect();
        let h = s.put(&big).unwrap();
        assert_eq!(s.get(&h).unwrap().unwrap(), big);
        for (off, n) in [(0, CHUNK), (CHUNK - 5, 10), (CHUNK * 3, CHUNK), (CHUNK * 3 + 17, 5), (1, CHUNK * 4)] {
            let want = &big[off.min(big.len())..(off + n).min(big.len())];
            assert_eq!(s.chunk(&h, off, n).unwrap().unwrap(), (big.len() as u64, want.to_vec()), "{off} {n}");
        }
        let empty = s.put(&[]).unwrap();
        assert_eq!(s.get(&empty).unwrap(), Some(vec![]));
        // Evicted whole: no piece stays behind.
        let s = BlobStore { limits: BlobLimits { max_blobs: 1, ..limits }, ..s };
        let small = s.put(&[9u8; 3]).unwrap();
        let raw = s.db.raw();
        let cf = raw.cf_handle(CF_BLOBS).unwrap();
        let keys: Vec<_> = raw.iterator_cf(&cf, rocksdb::IteratorMode::Start).map(|i| i.unwrap().0).collect();
        assert_eq!(keys, vec![piece(&small, 0).to_vec().into_boxed_slice()]);
    }

    #[test]
    fn pinned_blobs_are_not_evicted_and_a_full_pinned_store_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(Db::open(dir.path()).unwrap(), LIMITS).unwrap();
        let a = s.put(&[1u8; 400]).unwrap();
        let b = s.put(&[2u8; 400]).unwrap();
        s.pin(&a);
        s.pin(&a);
        // 400 more: the oldest unpinned one (b) goes, not a.
        let c = s.put(&[3u8; 400]).unwrap();
        assert!(s.has(&a) && !s.has(&b) && s.has(&c));
        s.pin(&c);
        let err = s.put(&[4u8; 400]).unwrap_err().to_string();
        assert!(err.contains("pinned"), "{err}");
        assert_eq!(s.usage(), (2, 800), "nothing written, nothing lost");
        s.unpin(&a);
        assert!(s.put(&[4u8; 400]).is_err(), "a is pinned twice");
        s.unpin(&a);
        let d = s.put(&[4u8; 400]).unwrap();
        assert!(!s.has(&a) && s.has(&c) && s.has(&d));
    }
}
