//! Peers this node has talked to, so that a restarted node finds the network again without
//! its bootnodes.

use bincode::{Decode, Encode};
use rocksdb::WriteBatch;

use crate::db::{CF_PEERS, Db, StorageError};

/// Most addresses stored per peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;
/// Most peers stored; beyond this the least recently seen are dropped.
pub const MAX_PEERS: usize = 512;

/// One stored peer: its libp2p peer id and multiaddrs, all as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StoredPeer {
    /// Peer id bytes (multihash).
    pub peer_id: Vec<u8>,
    /// Multiaddr bytes.
    pub addrs: Vec<Vec<u8>>,
    /// Last time this node was connected to it (Unix ms).
    pub last_seen_unix_ms: u64,
}

/// The `peers` column family.
#[derive(Clone)]
pub struct PeerStore {
    db: Db,
}

impl PeerStore {
    /// A store on an open database.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Replaces the stored set with `peers` (the most recently seen `MAX_PEERS`) in one
    /// synced batch.
    pub fn save(&self, peers: &[StoredPeer]) -> Result<(), StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_PEERS).expect("column family created at open");
        let mut sorted: Vec<&StoredPeer> = peers.iter().collect();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.last_seen_unix_ms));
        let mut batch = WriteBatch::default();
        for item in raw.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            batch.delete_cf(&cf, k);
        }
        for p in sorted.into_iter().take(MAX_PEERS) {
            let mut p = p.clone();
            p.addrs.truncate(MAX_ADDRS_PER_PEER);
            let v = ifx_protocols::codec::encode(&p);
            batch.put_cf(&cf, &p.peer_id, v);
        }
        raw.write_opt(batch, &Db::durable())?;
        Ok(())
    }

    /// Every stored peer, sorted by peer id bytes.
    pub fn load(&self) -> Result<Vec<StoredPeer>, StorageError> {
        let raw = self.db.raw();
        let cf = raw.cf_handle(CF_PEERS).expect("column family created at open");
        let cfg = bincode::config::standard().with_limit::<4096>();
        let mut out = Vec::new();
        for item in raw.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (_, v) = item?;
            let (p, _): (StoredPeer, usize) = bincode::decode_from_slice(&v, cfg)
                .map_err(|e| StorageError::Corrupt { cf: CF_PEERS, reason: e.to_string() })?;
            out.push(p);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8, seen: u64) -> StoredPeer {
        StoredPeer { peer_id: vec![i; 4], addrs: vec![vec![i; 3]; 10], last_seen_unix_ms: seen }
    }

    #[test]
    fn survives_reopen_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = PeerStore::new(Db::open(dir.path()).unwrap());
            let peers: Vec<StoredPeer> = (0..=255u8).chain(0..=255).map(|i| peer(i, i as u64)).collect();
            store.save(&peers).unwrap();
            store.save(&[peer(1, 5), peer(2, 6)]).unwrap();
        }
        let store = PeerStore::new(Db::open(dir.path()).unwrap());
        let loaded = store.load().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].peer_id, vec![1; 4]);
        assert_eq!(loaded[0].addrs.len(), MAX_ADDRS_PER_PEER);
    }

    #[test]
    fn open_on_a_file_is_a_clear_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = Db::open(f.path()).err().unwrap();
        assert!(err.to_string().contains("cannot open database"), "{err}");
    }
}
