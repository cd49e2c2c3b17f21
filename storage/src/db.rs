//! Opening the node database with its column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteOptions};
use thiserror::Error;

/// Column family holding known peers and their addresses.
pub const CF_PEERS: &str = "peers";
/// Ledger entries by `author ‖ seq (BE) ‖ id`.
pub const CF_ENTRIES: &str = "ledger_entries";
/// Per-epoch index: `epoch (BE) ‖ author ‖ seq (BE) ‖ id` → empty.
pub const CF_EPOCHS: &str = "ledger_epochs";
/// Per-author heads: `author` → chain length and tip.
pub const CF_HEADS: &str = "ledger_heads";
/// Equivocation evidence: `author ‖ seq (BE)` → the ids held at that seq.
pub const CF_EVIDENCE: &str = "ledger_evidence";
/// Store metadata (the network id the ledger belongs to).
pub const CF_META: &str = "meta";
/// Content-addressed blobs: `hash` → bytes.
pub const CF_BLOBS: &str = "blobs";
/// Blob insertion order: `seq (BE)` → `hash ‖ length (BE)`.
pub const CF_BLOB_ORDER: &str = "blob_order";
/// Blobs on their way in (a fetch a restart may interrupt): `hash` → `length ‖ bytes held ‖
/// seq` (BE); their pieces are kept in [`CF_BLOBS`] as a whole blob's are.
pub const CF_BLOB_PARTIAL: &str = "blob_partial";
/// Render jobs this node owns: `job` → its spec (written once, at submission).
pub const CF_JOB_SPECS: &str = "render_job_specs";
/// Render jobs this node owns: `job` → its latest status.
pub const CF_JOB_STATUS: &str = "render_job_status";
/// Tiles a running job kept: `job ‖ tile (BE)` → the tile as its worker delivered it.
pub const CF_JOB_TILES: &str = "render_job_tiles";
/// Every column family this build uses; opening creates the missing ones.
pub const COLUMN_FAMILIES: &[&str] = &[
    CF_PEERS,
    CF_ENTRIES,
    CF_EPOCHS,
    CF_HEADS,
    CF_EVIDENCE,
    CF_META,
    CF_BLOBS,
    CF_BLOB_ORDER,
    CF_BLOB_PARTIAL,
    CF_JOB_SPECS,
    CF_JOB_STATUS,
    CF_JOB_TILES,
];

/// A storage failure, with the path or record it concerns.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("cannot open database at {path}: {source}")]
    Open { path: String, source: rocksdb::Error },
    #[error("database error: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in column family {cf}: {reason}")]
    Corrupt { cf: &'static str, reason: String },
    #[error("the database belongs to network {found:?}, not {expected:?}")]
    WrongNetwork { expected: String, found: String },
    #[error("an earlier write failed; the in-memory ledger is ahead of the disk, restart the node")]
    Poisoned,
    #[error("{what} of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { what: &'static str, len: u64, max: u64 },
    #[error(
        "this node's store holds none of its own entries yet, and its key may have history on \
         peers: it signs nothing before it has fetched its chain from one (try again in a moment)"
    )]
    OwnChainUnknown,
}

/// Shared handle to the node database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
    read_only: bool,
}

impl Db {
    /// Opens (creating if needed) the database at `path` with every column family.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = COLUMN_FAMILIES.iter().map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(|source| StorageError::Open { path: path.display().to_string(), source })?;
        Ok(Self { inner: Arc::new(db), read_only: false })
    }

    /// Opens the database at `path` for reading only; works while a node holds it open
    /// (it sees what was durable when it opened).
    pub fn open_read_only(path: &Path) -> Result<Self, StorageError> {
        let opts = Options::default();
        // A database written by an older build may lack newer column families: open those
        // it has (readers of a missing one see it empty).
        let existing = DB::list_cf(&opts, path).unwrap_or_default();
        let cfs = COLUMN_FAMILIES
            .iter()
            .filter(|n| existing.is_empty() || existing.iter().any(|e| e == *n))
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
            .map_err(|source| StorageError::Open { path: path.display().to_string(), source })?;
        Ok(Self { inner: Arc::new(db), read_only: true })
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn raw(&self) -> &DB {
        &self.inner
    }

    /// Write options for acknowledged writes: synced to disk before returning.
    pub(crate) fn durable() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }
}
