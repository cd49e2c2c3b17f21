//! The ledger as a CRDT: the set of valid entries, merged by union. An entry is valid when its
//! signature verifies and its predecessor (same author, `seq - 1`, id = `prev`) is in the set,
//! so validity depends only on the set, never on arrival order: any order, duplication or
//! partial delivery of the same entries ends in the same set and the same root. Entries whose
//! predecessor has not arrived wait in a bounded pending pool. Two different entries at one
//! `(author, seq)` are equivocation: both stay (as evidence) and the author is flagged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ed25519_dalek::SigningKey;

use super::entry::{Entry, EntryError, EntryId, EntryKind, GENESIS_PREV, KeyCache, verify_all};
use super::root::SetHash;
use super::sync::{AuthorSummary, SyncRequest, SyncResponse};

/// Entries waiting for their predecessor, at most.
pub const MAX_PENDING: usize = 16_384;

#[derive(Debug, Default)]
struct AuthorChain {
    /// Ids at each seq, contiguous from 0 (more than one id at a seq is equivocation).
    by_seq: Vec<Vec<EntryId>>,
    /// Seqs holding more than one id.
    equivocated: u32,
}

/// What one ingest did.
#[derive(Debug, Default)]
pub struct IngestOutcome {
    /// Entries that joined the set, in the order they joined (predecessors first).
    pub accepted: Vec<Arc<Entry>>,
    /// Already in the set or already pending.
    pub duplicates: usize,
    /// Verified, waiting for a predecessor.
    pub pending: usize,
    /// Refused, with the reason (index into the ingested batch).
    pub rejected: Vec<(usize, EntryError)>,
    /// Verified but dropped because the pending pool is full (anti-entropy brings them back).
    pub dropped: usize,
    /// Authors newly caught equivocating.
    pub new_equivocators: Vec<[u8; 32]>,
}

/// Per-epoch part of the ledger.
#[derive(Debug, Default, Clone)]
pub struct EpochPart {
    pub entries: u64,
    root: SetHash,
}

impl EpochPart {
    /// Digest of the entries of this epoch.
    pub fn root(&self) -> [u8; 32] {
        self.root.digest()
    }
}

/// The ledger state of one node (sans I/O: storage persists what `ingest` accepts).
#[derive(Debug)]
pub struct Ledger {
    net_id: String,
    entries: HashMap<EntryId, Arc<Entry>>,
    authors: BTreeMap<[u8; 32], AuthorChain>,
    pending: BTreeMap<([u8; 32], u64), Vec<Entry>>,
    pending_len: usize,
    equivocators: BTreeSet<[u8; 32]>,
    root: SetHash,
    epochs: BTreeMap<u64, EpochPart>,
    keys: KeyCache,
}

impl Ledger {
    /// An empty ledger of network `net_id`.
    pub fn new(net_id: &str) -> Self {
        Self {
            net_id: net_id.to_owned(),
            entries: HashMap::new(),
            authors: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_len: 0,
            equivocators: BTreeSet::new(),
            root: SetHash::default(),
            epochs: BTreeMap::new(),
            keys: KeyCache::default(),
        }
    }

    /// The network these entries belong to.
    pub fn net_id(&self) -> &str {
        &self.net_id
    }

    /// Verifies (batch) and merges `batch`. With `current_epoch`, entries from later than the
    /// next epoch are refused (a clock check for fresh traffic; leave it `None` when replaying).
    pub fn ingest(&mut self, batch: Vec<Entry>, current_epoch: Option<u64>) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        let mut fresh = Vec::with_capacity(batch.len());
        let mut index = Vec::with_capacity(batch.len());
        for (i, e) in batch.into_iter().enumerate() {
            if self.entries.contains_key(&e.id()) || self.is_pending(&e) {
                out.duplicates += 1;
            } else {
                fresh.push(e);
                index.push(i);
            }
        }
        let verdicts = verify_all(&fresh, &mut self.keys);
        for ((e, verdict), i) in fresh.into_iter().zip(verdicts).zip(index) {
            let checked = verdict.and_then(|()| match current_epoch {
                Some(now) if e.epoch > now.saturating_add(1) => {
                    Err(EntryError::FromFuture { epoch: e.epoch, current: now })
                }
                _ => Ok(()),
            });
            match checked {
                Ok(()) => self.link(e, i, &mut out),
                Err(err) => out.rejected.push((i, err)),
            }
        }
        out
    }

    /// Re-inserts entries read back from this node's own store (verified when first
    /// accepted), in any order.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = Entry>) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        for (i, e) in entries.into_iter().enumerate() {
            if self.entries.contains_key(&e.id()) {
                out.duplicates += 1;
            } else {
                self.link(e, i, &mut out);
            }
        }
        out
    }

    /// Signs this node's next entry (not yet ingested).
    pub fn next_entry(
        &self,
        key: &SigningKey,
        epoch: u64,
        kind: EntryKind,
        body: Vec<u8>,
    ) -> Result<Entry, EntryError> {
        let author = key.verifying_key().to_bytes();
        let (seq, prev) = match self.authors.get(&author) {
            Some(c) if !c.by_seq.is_empty() => {
                let last = c.by_seq.len() - 1;
                (last as u64 + 1, c.by_seq[last][0])
            }
            _ => (0, GENESIS_PREV),
        };
        let epoch =
            match self.authors.get(&author).and_then(|c| c.by_seq.last()).and_then(|ids| self.entries.get(&ids[0])) {
                Some(prev) => epoch.max(prev.epoch),
                None => epoch,
            };
        Entry::sign(key, &self.net_id, seq, prev, epoch, kind, body)
    }

    fn is_pending(&self, e: &Entry) -> bool {
        self.pending.get(&(e.author, e.seq)).is_some_and(|v| v.iter().any(|p| p.id() == e.id()))
    }

    /// Links a verified entry, then whatever was waiting for it.
    fn link(&mut self, e: Entry, index: usize, out: &mut IngestOutcome) {
        let mut work = vec![e];
        while let Some(e) = work.pop() {
            // The same entry twice in one batch.
            if self.entries.contains_key(&e.id()) || self.is_pending(&e) {
                out.duplicates += 1;
                continue;
            }
            match self.check_link(&e) {
                Link::Ok => {
                    let (author, next, id) = (e.author, e.seq + 1, e.id());
                    self.accept(e, out);
                    if let Some(waiting) = self.pending.remove(&(author, next)) {
                        self.pending_len -= waiting.len();
                        let (ready, still): (Vec<Entry>, Vec<Entry>) = waiting.into_iter().partition(|w| w.prev == id);
                        if !still.is_empty() {
                            self.pending_len += still.len();
                            self.pending.insert((author, next), still);
                        }
                        work.extend(ready);
                    }
                }
                Link::Wait => {
                    if self.pending_len >= MAX_PENDING {
                        out.dropped += 1;
                    } else {
                        self.pending_len += 1;
                        out.pending += 1;
                        self.pending.entry((e.author, e.seq)).or_default().push(e);
                    }
                }
                Link::Invalid(err) => out.rejected.push((index, err)),
            }
        }
    }

    fn check_link(&self, e: &Entry) -> Link {
        if e.seq == 0 {
            return if e.prev == GENESIS_PREV { Link::Ok } else { Link::Invalid(EntryError::BadGenesis) };
        }
        let Some(chain) = self.authors.get(&e.author) else { return Link::Wait };
        let Some(ids) = chain.by_seq.get(e.seq as usize - 1) else { return Link::Wait };
        if !ids.contains(&e.prev) {
            return Link::Wait;
        }
        let prev_epoch = self.entries[&e.prev].epoch;
        if e.epoch < prev_epoch {
            return Link::Invalid(EntryError::EpochRegression { epoch: e.epoch, prev_epoch });
        }
        Link::Ok
    }

    fn accept(&mut self, e: Entry, out: &mut IngestOutcome) {
        let id = e.id();
        let chain = self.authors.entry(e.author).or_default();
        let seq = e.seq as usize;
        if chain.by_seq.len() == seq {
            chain.by_seq.push(vec![id]);
        } else {
            chain.by_seq[seq].push(id);
            if chain.by_seq[seq].len() == 2 {
                chain.equivocated += 1;
            }
            if self.equivocators.insert(e.author) {
                out.new_equivocators.push(e.author);
            }
        }
        let lanes = SetHash::expand(&id);
        self.root.add_expanded(&lanes);
        let part = self.epochs.entry(e.epoch).or_default();
        part.entries += 1;
        part.root.add_expanded(&lanes);
        let e = Arc::new(e);
        self.entries.insert(id, e.clone());
        out.accepted.push(e);
    }

    /// Digest of the whole set.
    pub fn root(&self) -> [u8; 32] {
        self.root.digest()
    }

    /// Entries in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries waiting for a predecessor.
    pub fn pending_len(&self) -> usize {
        self.pending_len
    }

    /// Authors with at least one entry.
    pub fn author_count(&self) -> usize {
        self.authors.len()
    }

    /// Authors caught equivocating, sorted.
    pub fn equivocators(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.equivocators.iter()
    }

    /// Per-epoch entry counts and roots, by epoch.
    pub fn epochs(&self) -> &BTreeMap<u64, EpochPart> {
        &self.epochs
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: &EntryId) -> bool {
        self.entries.contains_key(id)
    }

    /// An author's entries in seq order (siblings of an equivocation in id order).
    pub fn chain(&self, author: &[u8; 32]) -> Vec<Arc<Entry>> {
        let Some(c) = self.authors.get(author) else { return Vec::new() };
        c.by_seq
            .iter()
            .flat_map(|ids| {
                let mut ids = ids.clone();
                ids.sort();
                ids
            })
            .map(|id| self.entries[&id].clone())
            .collect()
    }

    /// Every entry, sorted by author, seq and id.
    pub fn iter_sorted(&self) -> impl Iterator<Item = Arc<Entry>> + '_ {
        self.authors.keys().flat_map(|a| self.chain(a))
    }

    /// What this node holds, per author, for anti-entropy.
    pub fn summary(&self) -> Vec<AuthorSummary> {
        self.authors.iter().map(|(author, c)| Self::summarize(author, c)).collect()
    }

    /// One author's summary, if it has entries.
    pub fn author_summary(&self, author: &[u8; 32]) -> Option<AuthorSummary> {
        self.authors.get(author).map(|c| Self::summarize(author, c))
    }

    fn summarize(author: &[u8; 32], c: &AuthorChain) -> AuthorSummary {
        AuthorSummary {
            author: *author,
            len: c.by_seq.len() as u64,
            tip: c.by_seq.last().and_then(|ids| ids.iter().min().copied()).unwrap_or(GENESIS_PREV),
            equivocated: c.equivocated,
        }
    }

    /// The seqs at which `author` equivocated, with the ids held there (sorted).
    pub fn forks(&self, author: &[u8; 32]) -> Vec<(u64, Vec<EntryId>)> {
        let Some(c) = self.authors.get(author) else { return Vec::new() };
        c.by_seq
            .iter()
            .enumerate()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(seq, ids)| {
                let mut ids = ids.clone();
                ids.sort();
                (seq as u64, ids)
            })
            .collect()
    }

    /// The entries a peer that sent `req` lacks, up to about `req.max_bytes`. Per author: if
    /// the peer's tip is in this node's chain and both sides know of as many forked seqs, the
    /// chains agree up to the peer's length (they are hash chains), so only the entries past it
    /// go; otherwise the author's whole chain goes, which makes any fork visible to both sides.
    /// Without forks the cost follows the size of the difference, not of the ledger.
    pub fn missing_for(&self, req: &SyncRequest) -> SyncResponse {
        let theirs: BTreeMap<&[u8; 32], &AuthorSummary> = req.summaries.iter().map(|s| (&s.author, s)).collect();
        // Clamped (issue #16: a requester's u32::MAX made the responder build an answer larger
        // than any requester decodes).
        let budget = (req.max_bytes as usize).min(super::sync::MAX_CHUNK_BYTES);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let (from_author, from_seq) = req.resume.unwrap_or(([0; 32], 0));
        for (author, chain) in self.authors.range(from_author..) {
            let ours = chain.by_seq.len();
            let mut start = match theirs.get(author) {
                None => 0,
                // Forks seen on one side only: send the whole chain so both hold the evidence.
                Some(t) if t.equivocated != chain.equivocated => 0,
                Some(t) if t.len as usize > ours => continue,
                Some(t) if t.len == 0 => 0,
                Some(t) => {
                    let n = t.len as usize;
                    if chain.by_seq[n - 1].contains(&t.tip) { n } else { 0 }
                }
            };
            if *author == from_author {
                start = start.max(from_seq.min(ours as u64) as usize);
            }
            for (seq, ids) in chain.by_seq.iter().enumerate().skip(start) {
                let encoded: Vec<Vec<u8>> = ids.iter().map(|id| self.entries[id].encode()).collect();
                let size: usize = encoded.iter().map(Vec::len).sum();
                if bytes + size > budget && !entries.is_empty() {
                    return SyncResponse { entries, next: Some((*author, seq as u64)) };
                }
                bytes += size;
                entries.extend(encoded);
            }
        }
        SyncResponse { entries, next: None }
    }
}

enum Link {
    Ok,
    Wait,
    Invalid(EntryError),
}
