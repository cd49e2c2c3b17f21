//! The render jobs a node owns, so that a restart resumes them: each job's spec (written once),
//! its latest status, and the tiles it has kept so far. The records are opaque bytes here (the
//! node encodes them); what this store guarantees is that a tile and the status that counts it
//! land together, durably, before the job's owner writes the tile's receipt.

use rocksdb::{IteratorMode, WriteBatch};

use crate::db::{CF_JOB_SPECS, CF_JOB_STATUS, CF_JOB_TILES, Db, StorageError};

/// Largest spec kept, in bytes: a job's spec arrives in one API request, bounded below this.
pub const MAX_SPEC_BYTES: usize = 4 << 20;
/// Largest status kept, in bytes (a status names its workers: a few KiB).
pub const MAX_STATUS_BYTES: usize = 1 << 20;
/// Largest tile kept, in bytes: a tile response (at most `MAX_TILE_RESPONSE`) and a few hundred
/// bytes saying who sent it.
pub const MAX_TILE_BYTES: usize = ifx_protocols::render::job::MAX_TILE_RESPONSE + 1024;

/// One job as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJob {
    pub id: [u8; 16],
    pub spec: Vec<u8>,
    pub status: Vec<u8>,
}

/// The render-job column families.
#[derive(Clone)]
pub struct JobStore {
    db: Db,
}

fn tile_key(job: &[u8; 16], tile: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(job);
    k[16..].copy_from_slice(&tile.to_be_bytes());
    k
}

fn too_large(what: &'static str, len: usize, max: usize) -> Result<(), StorageError> {
    if len > max {
        return Err(StorageError::TooLarge { what, len: len as u64, max: max as u64 });
    }
    Ok(())
}

impl JobStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records a new job: its spec and first status, durably.
    pub fn create(&self, job: &[u8; 16], spec: &[u8], status: &[u8]) -> Result<(), StorageError> {
        too_large("a job's spec", spec.len(), MAX_SPEC_BYTES)?;
        too_large("a job's status", status.len(), MAX_STATUS_BYTES)?;
        let raw = self.db.raw();
        let mut batch = WriteBatch::default();
        batch.put_cf(&raw.cf_handle(CF_JOB_SPECS).expect("column family created at open"), job, spec);
        batch.put_cf(&raw.cf_handle(CF_JOB_STATUS).expect("column family created at open"), job, status);
        Ok(raw.write_opt(batch, &Db::durable())?)
    }

    /// Replaces a job's status, durably.
    pub fn put_status(&self, job: &[u8; 16], status: &[u8]) -> Result<(), StorageError> {
        too_large("a job's status", status.len(), MAX_STATUS_BYTES)?;
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_JOB_STATUS).expect("column family created at open");
        Ok(raw.put_cf_opt(&cf, job, status, &Db::durable())?)
    }

    /// Keeps tile `tile` of `job` and the status that counts it, in one durable write.
    pub fn put_tile(&self, job: &[u8; 16], tile: u32, bytes: &[u8], status: &[u8]) -> Result<(), StorageError> {
        too_large("a kept tile", bytes.len(), MAX_TILE_BYTES)?;
        too_large("a job's status", status.len(), MAX_STATUS_BYTES)?;
        let raw = self.db.raw();
        let mut batch = WriteBatch::default();
        batch.put_cf(&raw.cf_handle(CF_JOB_TILES).expect("column family created at open"), tile_key(job, tile), bytes);
        batch.put_cf(&raw.cf_handle(CF_JOB_STATUS).expect("column family created at open"), job, status);
        Ok(raw.write_opt(batch, &Db::durable())?)
    }

    /// The tiles `job` kept, by index.
    pub fn tiles(&self, job: &[u8; 16]) -> Result<Vec<(u32, Vec<u8>)>, StorageError> {
        let raw = self.db.raw();
        // A database of an older build opened read-only may lack the column family: no tiles.
        let Some(cf) = raw.cf_handle(CF_JOB_TILES) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in raw.iterator_cf(&cf, IteratorMode::From(job, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(job) {
                break;
            }
            let idx = <[u8; 4]>::try_from(&k[16..])
                .map_err(|_| StorageError::Corrupt { cf: CF_JOB_TILES, reason: "key is not job ‖ tile".into() })?;
            out.push((u32::from_be_bytes(idx), v.to_vec()));
        }
        Ok(out)
    }

    /// Every job, by id.
    pub fn jobs(&self) -> Result<Vec<StoredJob>, StorageError> {
        let raw = self.db.raw();
        let (Some(specs), Some(status)) = (raw.cf_handle(CF_JOB_SPECS), raw.cf_handle(CF_JOB_STATUS)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in raw.iterator_cf(&specs, IteratorMode::Start) {
            let (k, spec) = item?;
            let id = <[u8; 16]>::try_from(&k[..])
                .map_err(|_| StorageError::Corrupt { cf: CF_JOB_SPECS, reason: "key is not a job id".into() })?;
            let st = raw.get_cf(&status, id)?.ok_or_else(|| StorageError::Corrupt {
                cf: CF_JOB_STATUS,
                reason: "a job without its status".into(),
            })?;
            out.push(StoredJob { id, spec: spec.to_vec(), status: st });
        }
        Ok(out)
    }

    /// Forgets the tiles `job` kept (its image is written, or it ended without one).
    pub fn drop_tiles(&self, job: &[u8; 16]) -> Result<(), StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_JOB_TILES).expect("column family created at open");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, tile_key(job, 0), tile_key(job, u32::MAX));
        batch.delete_cf(&cf, tile_key(job, u32::MAX));
        Ok(raw.write_opt(batch, &Db::durable())?)
    }

    /// Drops `job`'s tiles `from..to` (a frame written out) and stores its status, in one
    /// durable write: a restart finds either both or neither.
    pub fn drop_tile_range(&self, job: &[u8; 16], from: u32, to: u32, status: &[u8]) -> Result<(), StorageError> {
        too_large("a job's status", status.len(), MAX_STATUS_BYTES)?;
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_JOB_TILES).expect("column family created at open");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, tile_key(job, from), tile_key(job, to));
        batch.put_cf(&raw.cf_handle(CF_JOB_STATUS).expect("column family created at open"), job, status);
        Ok(raw.write_opt(batch, &Db::durable())?)
    }

    /// Forgets `job` altogether.
    pub fn remove(&self, job: &[u8; 16]) -> Result<(), StorageError> {
        self.drop_tiles(job)?;
        let raw = self.db.raw();
        let mut batch = WriteBatch::default();
        batch.delete_cf(&raw.cf_handle(CF_JOB_SPECS).expect("column family created at open"), job);
        batch.delete_cf(&raw.cf_handle(CF_JOB_STATUS).expect("column family created at open"), job);
        Ok(raw.write_opt(batch, &Db::durable())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_their_tiles_survive_a_reopen_and_are_dropped_per_job() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        {
            let s = JobStore::new(Db::open(dir.path()).unwrap());
            s.create(&a, b"spec a", b"status a0").unwrap();
            s.create(&b, b"spec b", b"status b0").unwrap();
            s.put_tile(&a, 7, b"tile 7", b"status a1").unwrap();
            s.put_tile(&a, 0, b"tile 0", b"status a2").unwrap();
            s.put_tile(&a, u32::MAX, b"last", b"status a3").unwrap();
            s.put_tile(&b, 1, b"b's tile", b"status b1").unwrap();
        }
        let s = JobStore::new(Db::open(dir.path()).unwrap());
        let jobs = s.jobs().unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0], StoredJob { id: a, spec: b"spec a".to_vec(), status: b"status a3".to_vec() });
        assert_eq!(jobs[1].status, b"status b1");
        let tiles = s.tiles(&a).unwrap();
        assert_eq!(tiles.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 7, u32::MAX]);
        assert_eq!(tiles[1].1, b"tile 7");
        // A frame's tiles (0..7) go with the status that says it was written.
        s.drop_tile_range(&a, 0, 7, b"status a4").unwrap();
        assert_eq!(s.tiles(&a).unwrap().iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![7, u32::MAX]);
        assert_eq!(s.jobs().unwrap()[0].status, b"status a4");
        s.drop_tiles(&a).unwrap();
        assert!(s.tiles(&a).unwrap().is_empty());
        assert_eq!(s.tiles(&b).unwrap().len(), 1, "another job's tiles stay");
        s.remove(&b).unwrap();
        assert_eq!(s.jobs().unwrap().len(), 1);
        assert!(s.tiles(&b).unwrap().is_empty());
    }

    #[test]
    fn oversized_records_are_refused_with_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = JobStore::new(Db::open(dir.path()).unwrap());
        let e = s.create(&[0; 16], &vec![0; MAX_SPEC_BYTES + 1], b"s").unwrap_err();
        assert!(e.to_string().contains("a job's spec"), "{e}");
        let e = s.put_tile(&[0; 16], 0, &vec![0; MAX_TILE_BYTES + 1], b"s").unwrap_err();
        assert!(e.to_string().contains("a kept tile"), "{e}");
        assert!(s.jobs().unwrap().is_empty());
    }
}
