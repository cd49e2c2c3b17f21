//! Opening the node database with its column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};
use thiserror::Error;

/// Column family holding known peers and their addresses.
pub const CF_PEERS: &str = "peers";
/// Every column family this build uses; opening creates the missing ones.
pub const COLUMN_FAMILIES: &[&str] = &[CF_PEERS];

/// A storage failure, with the path or record it concerns.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("cannot open database at {path}: {source}")]
    Open { path: String, source: rocksdb::Error },
    #[error("database error: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in column family {cf}: {reason}")]
    Corrupt { cf: &'static str, reason: String },
}

/// Shared handle to the node database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` with every column family.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = COLUMN_FAMILIES.iter().map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StorageError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self { inner: Arc::new(db) })
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
