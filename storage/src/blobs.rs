//! Content-addressed blobs (FL weights and updates, models, render jobs' assets): bytes by their
//! BLAKE3 hash, kept up to a byte budget and a count, oldest evicted first, except the pinned
//! ones. Blobs are caches a peer can fetch again, so writes go to RocksDB's log without an fsync
//! each; the index is rebuilt from disk at open. A blob is stored in pieces of
//! [`CHUNK`] bytes under `hash || piece number`, so serving one chunk of a 256 MiB mesh reads
//! 512 KiB, not the whole value.
//!
//! A blob fetched from peers comes in as a *partial* ([`BlobStore::begin`]): its pieces are
//! written as they arrive, with how many bytes are held, so a fetch that a restart, a crash or
//! a lost peer interrupted goes on from there; it becomes a blob once the fetcher has checked
//! its hash ([`BlobStore::commit`]). A partial counts as a blob from the start and its bytes
//! count as they come: room is made for each piece when it is written, so a peer that
//! announces a large blob and sends little evicts little, and a store that holds partials never
//! holds more than its limits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;

use crate::db::{CF_BLOB_ORDER, CF_BLOB_PARTIAL, CF_BLOBS, Db, StorageError};

/// Bytes in one stored piece: the blob protocol's chunk, so a chunk request is one read.
pub const CHUNK: usize = ifx_protocols::blob::CHUNK_BYTES;
/// Partials kept at once. A worker fetches two jobs' assets at once, one blob at a time each
/// (`ifx_node::blob::MAX_FETCHES`); the rest are fetches a restart or a lost peer
/// interrupted, worth going on with. Beginning one more drops the oldest.
pub const MAX_PARTIALS: usize = 8;

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
    /// Total bytes kept (partials count the bytes they hold).
    pub max_bytes: u64,
    /// Blobs kept (partials count).
    pub max_blobs: usize,
    /// Largest single blob.
    pub max_blob: usize,
}

/// A blob on its way in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Partial {
    len: u64,
    have: u64,
    seq: u64,
}

impl Partial {
    fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.len.to_be_bytes());
        v[8..16].copy_from_slice(&self.have.to_be_bytes());
        v[16..].copy_from_slice(&self.seq.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Self> {
        let v: [u8; 24] = v.try_into().ok()?;
        let n = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        let p = Self { len: n(0), have: n(8), seq: n(16) };
        (p.have <= p.len).then_some(p)
    }
}

/// What the store holds, in insertion order: (order key, hash, length); the blobs that are not
/// to be evicted (a running job's assets), with how many holders pin each; and the partials.
/// `bytes` includes the bytes the partials hold, the count the partials.
#[derive(Debug, Default)]
struct Index {
    order: VecDeque<(u64, [u8; 32], u64)>,
    bytes: u64,
    next: u64,
    pinned: BTreeMap<[u8; 32], usize>,
    partials: BTreeMap<[u8; 32], Partial>,
}

impl Index {
    /// Partial `hash`, which the caller expects under way.
    fn partial(&self, hash: &[u8; 32]) -> Result<Partial, StorageError> {
        let p = self.partials.get(hash).copied();
        p.ok_or_else(|| StorageError::Corrupt { cf: CF_BLOB_PARTIAL, reason: format!("no partial {}", hex(hash)) })
    }

    fn count(&self) -> usize {
        self.order.len() + self.partials.len()
    }

    /// Adds to `batch` the eviction of the oldest unpinned blobs that make room for `len` more
    /// bytes and `more` more blobs; returns their positions in `order` (to remove once `batch`
    /// is written) and the bytes after. Refuses when the pinned blobs and partials leave no room.
    fn make_room(
        &self,
        limits: &BlobLimits,
        (len, more): (u64, usize),
        batch: &mut WriteBatch,
        cfs: (&impl rocksdb::AsColumnFamilyRef, &impl rocksdb::AsColumnFamilyRef),
    ) -> Result<(Vec<usize>, u64), StorageError> {
        let (blobs, order) = cfs;
        let mut bytes_after = self.bytes.saturating_add(len);
        let mut count_after = self.count() + more;
        let mut evicted = Vec::new();
        for (i, (s, h, l)) in self.order.iter().enumerate() {
            if bytes_after <= limits.max_bytes && count_after <= limits.max_blobs {
                break;
            }
            if self.pinned.contains_key(h) {
                continue;
            }
            batch.delete_range_cf(blobs, piece(h, 0), piece(h, pieces(*l)));
            batch.delete_cf(order, s.to_be_bytes());
            bytes_after -= l;
            count_after -= 1;
            evicted.push(i);
        }
        if bytes_after > limits.max_bytes || count_after > limits.max_blobs {
            let kept: u64 = self.order.iter().filter(|(_, h, _)| self.pinned.contains_key(h)).map(|(_, _, l)| l).sum();
            let partial: u64 = self.partials.values().map(|p| p.have).sum();
            return Err(StorageError::TooLarge {
                what: "blob beside the pinned ones (running jobs' assets) and the partial fetches",
                len,
                max: limits.max_bytes.saturating_sub(kept + partial),
            });
        }
        Ok((evicted, bytes_after))
    }

    fn forget(&mut self, mut evicted: Vec<usize>) {
        evicted.sort_unstable();
        for i in evicted.into_iter().rev() {
            self.order.remove(i);
        }
    }
}

/// The `blobs` column families.
#[derive(Clone)]
pub struct BlobStore {
    db: Db,
    limits: BlobLimits,
    index: Arc<Mutex<Index>>,
}

macro_rules! cf {
    ($raw:expr, $name:expr) => {
        $raw.cf_handle($name).expect("column family created at open")
    };
}

impl BlobStore {
    /// Opens the store on `db`, reading its index from disk.
    pub fn open(db: Db, limits: BlobLimits) -> Result<Self, StorageError> {
        let mut index = Index::default();
        {
            let raw = db.raw();
            // Stores written before blobs were kept in pieces hold whole values under 32-byte
            // keys: a cache, so they are dropped (peers serve them again).
            let blobs = cf!(raw, CF_BLOBS);
            let old = match raw.iterator_cf(&blobs, rocksdb::IteratorMode::Start).next() {
                Some(item) => item?.0.len() != 40,
                None => false,
            };
            if old {
                let order = cf!(raw, CF_BLOB_ORDER);
                let mut batch = WriteBatch::default();
                batch.delete_range_cf(&blobs, &[][..], &[0xffu8; 41][..]);
                batch.delete_range_cf(&order, &[][..], &[0xffu8; 9][..]);
                raw.write(batch)?;
                tracing::info!("blob cache of an older format dropped");
            }
            let order = cf!(raw, CF_BLOB_ORDER);
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
            let partial = cf!(raw, CF_BLOB_PARTIAL);
            for item in raw.iterator_cf(&partial, rocksdb::IteratorMode::Start) {
                let (k, v) = item?;
                let (Ok(hash), Some(p)) = (<[u8; 32]>::try_from(&k[..]), Partial::decode(&v)) else {
                    return Err(StorageError::Corrupt { cf: CF_BLOB_PARTIAL, reason: "bad key or value".into() });
                };
                index.bytes = index.bytes.saturating_add(p.have);
                index.next = index.next.max(p.seq + 1);
                index.partials.insert(hash, p);
            }
        }
        Ok(Self { db, limits, index: Arc::new(Mutex::new(index)) })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `bytes` under their BLAKE3 hash (once: a blob already held is not written again;
    /// a partial of it is replaced), then evicts the oldest blobs beyond the limits; returns the
    /// hash.
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
        let (blobs, order, partial) = (cf!(raw, CF_BLOBS), cf!(raw, CF_BLOB_ORDER), cf!(raw, CF_BLOB_PARTIAL));
        let mut idx = self.index();
        if idx.order.iter().any(|(_, h, _)| *h == hash) {
            return Ok(hash);
        }
        let mut batch = WriteBatch::default();
        // A partial of the same hash goes: its pieces are overwritten or dropped below.
        let replaced = idx.partials.remove(&hash);
        if let Some(p) = replaced {
            batch.delete_range_cf(&blobs, piece(&hash, 0), piece(&hash, pieces(p.len)));
            batch.delete_cf(&partial, hash);
            idx.bytes -= p.have;
        }
        let room = idx.make_room(&self.limits, (bytes.len() as u64, 1), &mut batch, (&blobs, &order));
        let (evicted, bytes_after) = match room {
            Ok(r) => r,
            Err(e) => {
                if let Some(p) = replaced {
                    idx.bytes += p.have;
                    idx.partials.insert(hash, p);
                }
                return Err(e);
            }
        };
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
        if let Err(e) = raw.write(batch) {
            if let Some(p) = replaced {
                idx.bytes += p.have;
                idx.partials.insert(hash, p);
            }
            return Err(e.into());
        }
        idx.forget(evicted);
        idx.order.push_back((seq, hash, bytes.len() as u64));
        idx.bytes = bytes_after;
        idx.next = seq + 1;
        Ok(hash)
    }

    /// Starts (or goes on with) fetching blob `hash` of `len` bytes; returns how many of its
    /// bytes are held already (from an earlier fetch: read them back with
    /// [`BlobStore::read_partial`]), `len` when the whole blob is. The partial counts as a blob
    /// (an old one may be evicted for it); its bytes count as they are appended. Drops the
    /// oldest partial beyond [`MAX_PARTIALS`]. A partial of the same hash and another length (a
    /// spec that lied) is started over.
    pub fn begin(&self, hash: &[u8; 32], len: u64) -> Result<u64, StorageError> {
        if len > self.limits.max_blob as u64 {
            return Err(StorageError::TooLarge { what: "blob", len, max: self.limits.max_blob as u64 });
        }
        let raw = self.db.raw();
        let (blobs, order, partial) = (cf!(raw, CF_BLOBS), cf!(raw, CF_BLOB_ORDER), cf!(raw, CF_BLOB_PARTIAL));
        let mut idx = self.index();
        if idx.order.iter().any(|(_, h, _)| h == hash) {
            return Ok(len);
        }
        match idx.partials.get(hash) {
            Some(p) if p.len == len => return Ok(p.have),
            Some(_) => self.drop_partial(&mut idx, hash)?,
            None => {}
        }
        if idx.partials.len() >= MAX_PARTIALS {
            let oldest = idx.partials.iter().min_by_key(|(_, p)| p.seq).map(|(h, _)| *h).expect("partials held");
            tracing::debug!(blob = %hex(&oldest), "an old partial fetch dropped for a new one");
            self.drop_partial(&mut idx, &oldest)?;
        }
        let mut batch = WriteBatch::default();
        let (evicted, bytes_after) = idx.make_room(&self.limits, (0, 1), &mut batch, (&blobs, &order))?;
        let p = Partial { len, have: 0, seq: idx.next };
        batch.put_cf(&partial, hash, p.encode());
        raw.write(batch)?;
        idx.forget(evicted);
        idx.bytes = bytes_after;
        idx.next += 1;
        idx.partials.insert(*hash, p);
        Ok(0)
    }

    /// Writes the next bytes of partial `hash`, which must start where it stands (`offset`
    /// is its bytes held) and be one whole piece, or the last one; evicts old blobs to make
    /// room for them.
    pub fn append(&self, hash: &[u8; 32], offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let raw = self.db.raw();
        let (blobs, partial) = (cf!(raw, CF_BLOBS), cf!(raw, CF_BLOB_PARTIAL));
        let mut idx = self.index();
        let p = idx.partial(hash)?;
        let due = (p.len - p.have).min(CHUNK as u64);
        if offset != p.have || bytes.len() as u64 != due {
            return Err(StorageError::Corrupt {
                cf: CF_BLOB_PARTIAL,
                reason: format!("{} bytes at {offset}: {due} at {} were due", bytes.len(), p.have),
            });
        }
        let next = Partial { have: p.have + due, ..p };
        let mut batch = WriteBatch::default();
        let order = cf!(raw, CF_BLOB_ORDER);
        let (evicted, bytes_after) = idx.make_room(&self.limits, (due, 0), &mut batch, (&blobs, &order))?;
        batch.put_cf(&blobs, piece(hash, p.have / CHUNK as u64), bytes);
        batch.put_cf(&partial, hash, next.encode());
        raw.write(batch)?;
        idx.forget(evicted);
        idx.bytes = bytes_after;
        idx.partials.insert(*hash, next);
        Ok(())
    }

    /// Up to `max` bytes of partial `hash` from `offset`, within what it holds.
    pub fn read_partial(&self, hash: &[u8; 32], offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        let p = self.index().partial(hash)?;
        let held = self.range(hash, p.have, offset.min(usize::MAX as u64) as usize, max)?;
        held.map(|(_, b)| b)
            .ok_or_else(|| StorageError::Corrupt { cf: CF_BLOBS, reason: "a partial's piece is missing".into() })
    }

    /// Makes complete partial `hash` a blob (the caller has checked its bytes hash to it); it
    /// is the newest blob. Its bytes and its place were counted already.
    pub fn commit(&self, hash: &[u8; 32]) -> Result<(), StorageError> {
        let raw = self.db.raw();
        let (blobs, order, partial) = (cf!(raw, CF_BLOBS), cf!(raw, CF_BLOB_ORDER), cf!(raw, CF_BLOB_PARTIAL));
        let mut idx = self.index();
        let p = idx.partial(hash)?;
        if p.have != p.len {
            return Err(StorageError::Corrupt {
                cf: CF_BLOB_PARTIAL,
                reason: format!("{} of {} bytes", p.have, p.len),
            });
        }
        let seq = idx.next;
        let mut v = hash.to_vec();
        v.extend_from_slice(&p.len.to_be_bytes());
        let mut batch = WriteBatch::default();
        if p.len == 0 {
            batch.put_cf(&blobs, piece(hash, 0), []);
        }
        batch.put_cf(&order, seq.to_be_bytes(), v);
        batch.delete_cf(&partial, hash);
        raw.write(batch)?;
        idx.partials.remove(hash);
        idx.order.push_back((seq, *hash, p.len));
        idx.next = seq + 1;
        Ok(())
    }

    /// Drops partial `hash` and what it held (its bytes did not hash to it).
    pub fn abandon(&self, hash: &[u8; 32]) -> Result<(), StorageError> {
        let mut idx = self.index();
        self.drop_partial(&mut idx, hash)
    }

    fn drop_partial(&self, idx: &mut Index, hash: &[u8; 32]) -> Result<(), StorageError> {
        let Some(p) = idx.partials.get(hash).copied() else { return Ok(()) };
        let raw = self.db.raw();
        let (blobs, partial) = (cf!(raw, CF_BLOBS), cf!(raw, CF_BLOB_PARTIAL));
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&blobs, piece(hash, 0), piece(hash, pieces(p.len)));
        batch.delete_cf(&partial, hash);
        raw.write(batch)?;
        idx.partials.remove(hash);
        idx.bytes -= p.have;
        Ok(())
    }

    /// Partial `hash`'s (bytes held, length), if one is under way.
    pub fn partial(&self, hash: &[u8; 32]) -> Option<(u64, u64)> {
        self.index().partials.get(hash).map(|p| (p.have, p.len))
    }

    /// Keeps `hash` from eviction until as many [`BlobStore::unpin`]s (a job pins its assets
    /// while it runs, so that other traffic cannot evict what its workers fetch). Pins live in
    /// memory: a restarted job pins again.
    pub fn pin(&self, hash: &[u8; 32]) {
        let mut idx = self.index();
        *idx.pinned.entry(*hash).or_default() += 1;
    }

    /// Undoes one [`BlobStore::pin`].
    pub fn unpin(&self, hash: &[u8; 32]) {
        let mut idx = self.index();
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
        let idx = self.index();
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
        let cf = cf!(raw, CF_BLOBS);
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
        let idx = self.index();
        (idx.order.len(), idx.bytes)
    }
}

/// A hash as log text: its first 8 bytes in hex.
fn hex(h: &[u8; 32]) -> String {
    h[..8].iter().map(|b| format!("{b:02x}")).collect()
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

    /// Issue #18 item 1: a fetch's pieces are kept as they come, so a fetch a restart
    /// interrupted goes on from the bytes it held; a partial is not served, not read past what
    /// it holds, and takes only the next piece.
    #[test]
    fn a_partial_fetch_survives_a_reopen_and_becomes_a_blob_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BlobLimits { max_bytes: 16 << 20, max_blobs: 8, max_blob: 8 << 20 };
        let blob: Vec<u8> = (0..CHUNK * 2 + 100).map(|i| (i % 241) as u8).collect();
        let hash = *blake3::hash(&blob).as_bytes();
        let len = blob.len() as u64;
        {
            let s = BlobStore::open(Db::open(dir.path()).unwrap(), limits).unwrap();
            assert_eq!(s.begin(&hash, len).unwrap(), 0);
            s.append(&hash, 0, &blob[..CHUNK]).unwrap();
            // Not the next piece, or not a whole one: refused, nothing written.
            for (off, b) in [(0, &blob[..CHUNK]), (CHUNK as u64, &blob[CHUNK..CHUNK + 5]), (7, &blob[..CHUNK])] {
                assert!(s.append(&hash, off, b).unwrap_err().to_string().contains("were due"), "{off}");
            }
            assert_eq!(s.partial(&hash), Some((CHUNK as u64, len)));
            assert_eq!(s.chunk(&hash, 0, 10).unwrap(), None, "a partial is not served");
            assert!(!s.has(&hash));
            assert_eq!(s.usage(), (0, CHUNK as u64), "no blob held yet; the bytes it holds count");
        }
        let s = BlobStore::open(Db::open(dir.path()).unwrap(), limits).unwrap();
        assert_eq!(s.begin(&hash, len).unwrap(), CHUNK as u64, "goes on from what was held");
        assert_eq!(s.read_partial(&hash, 0, CHUNK * 4).unwrap(), blob[..CHUNK]);
        assert!(s.commit(&hash).unwrap_err().to_string().contains("of"), "not complete");
        s.append(&hash, CHUNK as u64, &blob[CHUNK..CHUNK * 2]).unwrap();
        s.append(&hash, CHUNK as u64 * 2, &blob[CHUNK * 2..]).unwrap();
        s.commit(&hash).unwrap();
        assert_eq!(s.get(&hash).unwrap().unwrap(), blob);
        assert_eq!(s.partial(&hash), None);
        assert_eq!(s.begin(&hash, len).unwrap(), len, "held whole");
        assert_eq!(s.usage(), (1, len));
        // An empty blob has nothing to append.
        let empty = *blake3::hash(&[]).as_bytes();
        assert_eq!(s.begin(&empty, 0).unwrap(), 0);
        s.commit(&empty).unwrap();
        assert_eq!(s.get(&empty).unwrap(), Some(vec![]));
        // A partial of the same hash announced at another length starts over.
        let other = [7u8; 32];
        s.begin(&other, 10).unwrap();
        s.append(&other, 0, &[1; 10]).unwrap();
        assert_eq!(s.begin(&other, 11).unwrap(), 0);
        assert_eq!(s.partial(&other), Some((0, 11)));
        assert!(s.begin(&[8; 32], (8 << 20) + 1).unwrap_err().to_string().contains("limit"));
    }

    /// A partial counts as a blob from the start and its bytes as they come: old blobs make
    /// room for each piece, pinned ones do not (a peer that announces much and sends little
    /// evicts little), and more than [`MAX_PARTIALS`] drop the oldest.
    #[test]
    fn partials_count_what_they_hold_and_the_oldest_goes_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BlobLimits { max_bytes: 3 * CHUNK as u64, max_blobs: 4, max_blob: 4 * CHUNK };
        let s = BlobStore::open(Db::open(dir.path()).unwrap(), limits).unwrap();
        let a = s.put(&vec![1u8; CHUNK]).unwrap();
        let b = s.put(&vec![2u8; CHUNK]).unwrap();
        // A partial of 3 chunks announced: nothing evicted yet.
        let p = [9; 32];
        s.begin(&p, 3 * CHUNK as u64).unwrap();
        assert!(s.has(&a) && s.has(&b));
        assert_eq!(s.usage(), (2, 2 * CHUNK as u64));
        s.append(&p, 0, &vec![0u8; CHUNK]).unwrap();
        assert!(s.has(&a) && s.has(&b), "3 chunks held: within the budget");
        // Its second chunk needs room: the oldest blob goes.
        s.append(&p, CHUNK as u64, &vec![0u8; CHUNK]).unwrap();
        assert!(!s.has(&a) && s.has(&b));
        assert_eq!(s.usage(), (1, 3 * CHUNK as u64));
        // b pinned: no room for the third.
        s.pin(&b);
        let err = s.append(&p, 2 * CHUNK as u64, &vec![0u8; CHUNK]).unwrap_err().to_string();
        assert!(err.contains("partial"), "{err}");
        assert_eq!(s.partial(&p), Some((2 * CHUNK as u64, 3 * CHUNK as u64)), "nothing written");
        s.abandon(&p).unwrap();
        assert_eq!(s.usage(), (1, CHUNK as u64));
        s.unpin(&b);
        // Put of a blob whose partial is under way replaces the partial.
        let c_bytes = [3u8; 50];
        let c = *blake3::hash(&c_bytes).as_bytes();
        s.begin(&c, 50).unwrap();
        s.append(&c, 0, &c_bytes).unwrap();
        assert_eq!(s.put(&c_bytes).unwrap(), c);
        assert_eq!(s.partial(&c), None);
        assert_eq!(s.usage(), (2, CHUNK as u64 + 50));
        assert_eq!(s.get(&c).unwrap().unwrap(), c_bytes);
        // The count: a partial takes a place (4 blobs at most).
        s.put(&[4u8; 10]).unwrap();
        s.begin(&[10; 32], 10).unwrap();
        assert_eq!(s.usage().0, 3, "b, c and the small one, beside one partial");
        s.begin(&[11; 32], 10).unwrap();
        assert!(!s.has(&b), "the oldest blob made place for the second partial");

        let big = BlobLimits { max_bytes: 1 << 20, max_blobs: 100, max_blob: 1000 };
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(Db::open(dir.path()).unwrap(), big).unwrap();
        for i in 0..=MAX_PARTIALS as u8 {
            s.begin(&[i; 32], 10).unwrap();
        }
        assert_eq!(s.partial(&[0; 32]), None, "the oldest went");
        assert!((1..=MAX_PARTIALS as u8).all(|i| s.partial(&[i; 32]).is_some()));
    }
}
