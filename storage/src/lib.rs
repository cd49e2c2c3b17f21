//! ifx persistent state in RocksDB.
//!
//! One database per node, one column family per kind of record. Writes are synced to disk
//! before they are acknowledged, so what a caller was told is stored survives a crash.

pub mod blobs;
pub mod db;
pub mod jobs;
pub mod ledger;
pub mod peers;

pub use blobs::{BlobLimits, BlobStore};
pub use db::{Db, StorageError};
pub use jobs::{JobStore, StoredJob};
pub use ledger::{LedgerStore, StoredHead};
pub use peers::{PeerStore, StoredPeer};
