//! The ledger as a CRDT: the set of valid entries, merged by union. An entry is valid when its
//! signature verifies and its predecessor (same author, `seq - 1`, id = `prev`) is in the set,
//! so validity depends only on the set, never on arrival order: any order, duplication or
//! partial delivery of the same entries ends in the same set and the same root. Entries whose
//! predecessor has not arrived wait in a bounded, expiring pending pool.
//!
//! Two different entries at one `(author, seq)` are equivocation. The set keeps them as
//! evidence, but bounded (issue #16: one author signing thousands of siblings at one seq made a
//! sync answer no peer could decode): an author's chain is kept up to its *first* forked seq
//! and no further, and at that seq only the two smallest ids. That is still a function of the
//! entries received, whatever their order: the first forked seq only moves down as entries
//! arrive, the linear chain below it never changes, and the two smallest of a growing set of
//! siblings never take back one they displaced. Entries leaving the set are reported in
//! [`IngestOutcome::removed`] so storage deletes them in the same write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ed25519_dalek::SigningKey;

use super::entry::{Entry, EntryError, EntryId, EntryKind, GENESIS_PREV, KeyCache, verify_all};
use super::root::SetHash;
use super::sync::{AuthorSummary, MAX_SUMMARIES, SyncRequest, SyncResponse};

/// Entries waiting for their predecessor, at most (16,384 x 32 KiB is 512 MiB at worst; in
/// practice entries are a few hundred bytes).
pub const MAX_PENDING: usize = 16_384;
/// Entries of one author waiting, at most: gossip reorders a handful and sync sends chains in
/// seq order, so more than this is an author filling the pool for everyone else.
pub const MAX_PENDING_PER_AUTHOR: usize = 256;
/// How long an entry waits for its predecessor: two anti-entropy rounds and then some. A
/// predecessor that never comes (an attacker's orphans) must not hold the slot for ever; an
/// honest orphan comes back with the pull that brings its predecessor.
pub const PENDING_TTL_MS: u64 = 120_000;
/// Entries kept at an author's first forked seq: two are the evidence.
pub const MAX_FORK_SIBLINGS: usize = 2;

#[derive(Debug, Default)]
struct AuthorChain {
    /// Ids at each seq, contiguous from 0. Only the last seq may hold more than one id (the
    /// author's first fork; nothing past it is kept), and at most [`MAX_FORK_SIBLINGS`].
    by_seq: Vec<Vec<EntryId>>,
}

impl AuthorChain {
    /// The seq of the author's fork, if it equivocated.
    fn fork(&self) -> Option<usize> {
        self.by_seq.last().filter(|ids| ids.len() > 1).map(|_| self.by_seq.len() - 1)
    }
}

#[derive(Debug)]
struct Waiting {
    entry: Entry,
    since_ms: u64,
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
    /// Verified and linked but not kept: past its author's first fork, or a third sibling at
    /// that fork with a larger id than the two kept.
    pub superseded: usize,
    /// Entries that were in the set before this ingest and left it (past a fork that an
    /// arriving entry revealed, or a kept sibling displaced by a smaller id).
    pub removed: Vec<Arc<Entry>>,
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
    pending: BTreeMap<([u8; 32], u64), Vec<Waiting>>,
    pending_len: usize,
    /// The clock pending entries are stamped with ([`Ledger::expire_pending`] sets it).
    now_ms: u64,
    /// No pending entry is older than this (a lower bound: the pool is scanned only when
    /// something may have expired, not on every ingest).
    oldest_pending_ms: u64,
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
            now_ms: 0,
            oldest_pending_ms: u64::MAX,
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
        self.settle_outcome(&mut out);
        out
    }

    /// An entry accepted and removed within one ingest was never in the set for the caller.
    fn settle_outcome(&self, out: &mut IngestOutcome) {
        if out.removed.is_empty() {
            return;
        }
        let joined: BTreeSet<EntryId> = out.accepted.iter().map(|e| e.id()).collect();
        out.removed.retain(|e| !joined.contains(&e.id()));
        out.accepted.retain(|e| self.entries.contains_key(&e.id()));
    }

    /// Sets the clock and drops pending entries that waited longer than [`PENDING_TTL_MS`];
    /// returns how many.
    pub fn expire_pending(&mut self, now_ms: u64) -> usize {
        self.now_ms = self.now_ms.max(now_ms);
        let cutoff = self.now_ms.saturating_sub(PENDING_TTL_MS);
        if self.oldest_pending_ms >= cutoff {
            return 0;
        }
        let before = self.pending_len;
        self.pending.retain(|_, waiting| {
            waiting.retain(|w| w.since_ms >= cutoff);
            !waiting.is_empty()
        });
        self.pending_len = self.pending.values().map(Vec::len).sum();
        self.oldest_pending_ms = self.pending.values().flatten().map(|w| w.since_ms).min().unwrap_or(u64::MAX);
        before - self.pending_len
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
        self.settle_outcome(&mut out);
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
        self.pending.get(&(e.author, e.seq)).is_some_and(|v| v.iter().any(|p| p.entry.id() == e.id()))
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
                        let (ready, still): (Vec<Waiting>, Vec<Waiting>) =
                            waiting.into_iter().partition(|w| w.entry.prev == id);
                        if !still.is_empty() {
                            self.pending_len += still.len();
                            self.pending.insert((author, next), still);
                        }
                        work.extend(ready.into_iter().map(|w| w.entry));
                    }
                }
                Link::Wait => {
                    if self.pending_len >= MAX_PENDING || self.pending_of(&e.author) >= MAX_PENDING_PER_AUTHOR {
                        out.dropped += 1;
                    } else {
                        self.pending_len += 1;
                        out.pending += 1;
                        let since_ms = self.now_ms;
                        self.oldest_pending_ms = self.oldest_pending_ms.min(since_ms);
                        self.pending.entry((e.author, e.seq)).or_default().push(Waiting { entry: e, since_ms });
                    }
                }
                Link::Superseded => out.superseded += 1,
                Link::Invalid(err) => out.rejected.push((index, err)),
            }
        }
    }

    fn pending_of(&self, author: &[u8; 32]) -> usize {
        self.pending.range((*author, 0)..=(*author, u64::MAX)).map(|(_, v)| v.len()).sum()
    }

    fn check_link(&self, e: &Entry) -> Link {
        let chain = self.authors.get(&e.author);
        if e.seq == 0 {
            if e.prev != GENESIS_PREV {
                return Link::Invalid(EntryError::BadGenesis);
            }
        } else {
            // A seq past the chain's end can only wait (its predecessor may come), unless the
            // chain is forked: nothing past a fork is kept.
            let Some(chain) = chain else { return Link::Wait };
            if chain.fork().is_some_and(|f| e.seq as usize > f) {
                return Link::Superseded;
            }
            let Some(ids) = chain.by_seq.get(e.seq as usize - 1) else { return Link::Wait };
            if !ids.contains(&e.prev) {
                return Link::Wait;
            }
            let prev_epoch = self.entries[&e.prev].epoch;
            if e.epoch < prev_epoch {
                return Link::Invalid(EntryError::EpochRegression { epoch: e.epoch, prev_epoch });
            }
        }
        // At the fork itself, a third sibling joins only if it displaces a larger id.
        match chain.and_then(|c| c.by_seq.get(e.seq as usize)) {
            Some(ids) if ids.len() >= MAX_FORK_SIBLINGS && ids.iter().all(|id| *id < e.id()) => Link::Superseded,
            _ => Link::Ok,
        }
    }

    fn accept(&mut self, e: Entry, out: &mut IngestOutcome) {
        let id = e.id();
        let author = e.author;
        let chain = self.authors.entry(author).or_default();
        let seq = e.seq as usize;
        if chain.by_seq.len() == seq {
            chain.by_seq.push(vec![id]);
        } else {
            // A fork at `seq`: what lay past it leaves the set, and at most two siblings stay
            // (check_link let this one in only if it is smaller than one of them).
            let mut leaving: Vec<EntryId> = chain.by_seq.drain(seq + 1..).flatten().collect();
            let ids = &mut chain.by_seq[seq];
            if ids.len() >= MAX_FORK_SIBLINGS {
                let largest = (0..ids.len()).max_by_key(|&i| ids[i]).expect("siblings are not empty");
                leaving.push(ids.swap_remove(largest));
            }
            ids.push(id);
            if self.equivocators.insert(author) {
                out.new_equivocators.push(author);
            }
            for gone in leaving {
                self.remove(&gone, out);
            }
            // Nothing waiting past the fork can ever be kept.
            let stale: Vec<_> = self.pending.range((author, e.seq + 1)..=(author, u64::MAX)).map(|(k, _)| *k).collect();
            for k in stale {
                if let Some(w) = self.pending.remove(&k) {
                    self.pending_len -= w.len();
                    out.superseded += w.len();
                }
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

    fn remove(&mut self, id: &EntryId, out: &mut IngestOutcome) {
        let Some(e) = self.entries.remove(id) else { return };
        let lanes = SetHash::expand(id);
        self.root.remove_expanded(&lanes);
        if let Some(part) = self.epochs.get_mut(&e.epoch) {
            part.entries -= 1;
            part.root.remove_expanded(&lanes);
            if part.entries == 0 {
                self.epochs.remove(&e.epoch);
            }
        }
        out.removed.push(e);
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

    /// What this node holds, per author, for anti-entropy (every author; see
    /// [`Ledger::sync_request`] for one page of them).
    pub fn summary(&self) -> Vec<AuthorSummary> {
        self.authors.iter().map(|(author, c)| Self::summarize(author, c)).collect()
    }

    /// One page of a pull: the summaries of at most [`MAX_SUMMARIES`] authors after `after`.
    /// The page ends at its last author if more follow (`until` is set: ask for the next page
    /// after it), else it covers everything to the end.
    pub fn sync_request(&self, after: Option<[u8; 32]>, max_bytes: u32) -> SyncRequest {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = self.authors.range((lower, Bound::Unbounded));
        let summaries: Vec<AuthorSummary> =
            page.by_ref().take(MAX_SUMMARIES).map(|(a, c)| Self::summarize(a, c)).collect();
        let until = match page.next() {
            Some(_) => summaries.last().map(|s| s.author),
            None => None,
        };
        SyncRequest { after, until, summaries, max_bytes, resume: None }
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
            fork: Self::fork_fingerprint(c),
        }
    }

    fn fork_fingerprint(c: &AuthorChain) -> u32 {
        c.fork().map_or(0, |f| {
            let larger = c.by_seq[f].iter().max().expect("a fork holds two ids");
            u32::from_le_bytes([larger[0], larger[1], larger[2], larger[3]]) | 1
        })
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

    /// The entries a peer that sent `req` lacks among the authors of its range, up to about
    /// `req.max_bytes`. Per author: if the peer's tip is in this node's chain and both sides
    /// know of a fork or both do not, the chains agree up to the peer's length (they are hash
    /// chains), so only the entries past it go; otherwise the author's whole chain goes, which
    /// makes any fork visible to both sides. Without forks the cost follows the size of the
    /// difference, not of the ledger. The plan holds the entries, not their bytes: the caller
    /// encodes them after letting go of the ledger.
    pub fn missing_for(&self, req: &SyncRequest) -> SyncPlan {
        use std::ops::Bound;
        let theirs: BTreeMap<&[u8; 32], &AuthorSummary> =
            req.summaries.iter().filter(|s| req.covers(&s.author)).map(|s| (&s.author, s)).collect();
        // Clamped (issue #16: a requester's u32::MAX made the responder build an answer larger
        // than any requester decodes).
        let budget = (req.max_bytes as usize).min(super::sync::MAX_CHUNK_BYTES);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let lower = match (req.resume, req.after) {
            (Some((a, _)), after) if after.is_none_or(|x| a > x) => Bound::Included(a),
            (_, Some(after)) => Bound::Excluded(after),
            (_, None) => Bound::Unbounded,
        };
        let upper = req.until.map_or(Bound::Unbounded, Bound::Included);
        for (author, chain) in self.authors.range((lower, upper)) {
            let ours = chain.by_seq.len();
            let fork = Self::fork_fingerprint(chain);
            let mut start = match theirs.get(author) {
                None => 0,
                // Forked at the same seq with the same smallest sibling but a different second
                // one: the fork's siblings go (the two smallest of both sides stay).
                Some(t)
                    if t.fork != fork
                        && t.fork != 0
                        && fork != 0
                        && t.len as usize == ours
                        && chain.by_seq[ours - 1].contains(&t.tip) =>
                {
                    ours - 1
                }
                // A fork seen on one side only: send the whole chain so both hold the evidence.
                Some(t) if t.fork != fork => 0,
                Some(t) if t.len as usize > ours => continue,
                Some(t) if t.len == 0 => 0,
                Some(t) => {
                    let n = t.len as usize;
                    if chain.by_seq[n - 1].contains(&t.tip) { n } else { 0 }
                }
            };
            if let Some((a, seq)) = req.resume.filter(|(a, _)| a == author) {
                debug_assert_eq!(a, *author);
                start = start.max(seq.min(ours as u64) as usize);
            }
            for (seq, ids) in chain.by_seq.iter().enumerate().skip(start) {
                let step: Vec<Arc<Entry>> = ids.iter().map(|id| self.entries[id].clone()).collect();
                let size: usize = step.iter().map(|e| e.encoded_len()).sum();
                if bytes + size > budget && !entries.is_empty() {
                    return SyncPlan { entries, next: Some((*author, seq as u64)) };
                }
                bytes += size;
                entries.extend(step);
            }
        }
        SyncPlan { entries, next: None }
    }
}

/// What a sync answer will carry, before encoding.
#[derive(Debug)]
pub struct SyncPlan {
    pub entries: Vec<Arc<Entry>>,
    pub next: Option<([u8; 32], u64)>,
}

impl SyncPlan {
    /// The answer as sent (encode it without holding the ledger).
    pub fn into_response(self) -> SyncResponse {
        SyncResponse { entries: self.entries.iter().map(|e| e.encode()).collect(), next: self.next }
    }

    /// Wire bytes of the answer.
    pub fn encode(self) -> Vec<u8> {
        self.into_response().encode()
    }
}

enum Link {
    Ok,
    Wait,
    Superseded,
    Invalid(EntryError),
}
