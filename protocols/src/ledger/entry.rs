//! Ledger entries: each author's entries form an append-only hash chain
//! `(author, seq, prev, epoch, kind, body, sig)`. The id of an entry is the BLAKE3 digest its
//! author signed (domain-separated by network id), and `prev` is the id of the author's entry
//! at `seq - 1` (all zeros at `seq` 0).

use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::net_id::MAX_NET_ID_LEN;

/// Wire version of an encoded entry.
pub const ENTRY_VERSION: u8 = 1;
/// Largest entry body.
pub const MAX_ENTRY_BODY: usize = 32 * 1024;
/// Largest encoded entry (body plus fixed fields and length prefixes).
pub const MAX_ENTRY_BYTES: usize = MAX_ENTRY_BODY + 256;
/// `prev` of an author's first entry.
pub const GENESIS_PREV: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"ifx/ledger-entry/v1";

/// An entry id: the digest the author signed.
pub type EntryId = [u8; 32];

/// What an entry records. The number is the wire value and never changes meaning; new kinds
/// are appended (PoR verdicts, render and FL receipts, stake, votes, epoch seals). Kinds this
/// build does not know are kept as opaque, still verified, entries so that nodes of different
/// versions hold the same set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A verifier's per-epoch liveness attestation ([`super::body::LivenessAttestation`]).
    Liveness,
    /// A job owner's receipt for an accepted render tile ([`super::body::RenderReceipt`]).
    RenderReceipt,
    /// A verifier's per-epoch Proof-of-Rendering verdicts and QoS ([`super::body::PorVerdicts`]).
    PorVerdicts,
    /// A task owner's receipt for an accepted or rejected FL update ([`super::body::FlReceipt`]).
    FlReceipt,
    /// A stake or unstake operation ([`super::body::StakeOp`]).
    Stake,
    /// A verifier's seal of an epoch's entry set ([`super::body::EpochSeal`]).
    Seal,
    /// A governance proposal ([`super::body::Proposal`]).
    Proposal,
    /// A stake-weighted vote on a proposal ([`super::body::Vote`]).
    Vote,
    /// A job owner's payment for a render job or FL task: the burn ([`super::body::JobPayment`]).
    JobPayment,
    /// A job owner's evidence that a worker delivered a bad tile ([`super::body::DeliveryFault`]).
    DeliveryFault,
    /// A verifier's rulings on delivery faults ([`super::body::FaultRulings`]).
    FaultRulings,
    /// A verifier's link measurements of workers ([`super::body::LinkReport`]).
    LinkReport,
    /// A job owner's receipt for a delivered inference batch ([`super::body::InferReceipt`]).
    InferReceipt,
    /// A job owner's evidence that a worker answered a batch wrongly ([`super::body::InferFault`]).
    InferFault,
    /// A kind from a newer version.
    Unknown(u16),
}

impl EntryKind {
    /// Wire value.
    pub fn to_wire(self) -> u16 {
        match self {
            EntryKind::Liveness => 1,
            EntryKind::RenderReceipt => 2,
            EntryKind::PorVerdicts => 3,
            EntryKind::FlReceipt => 4,
            EntryKind::Stake => 5,
            EntryKind::Seal => 6,
            EntryKind::Proposal => 7,
            EntryKind::Vote => 8,
            EntryKind::JobPayment => 9,
            EntryKind::DeliveryFault => 10,
            EntryKind::FaultRulings => 11,
            EntryKind::LinkReport => 12,
            EntryKind::InferReceipt => 13,
            EntryKind::InferFault => 14,
            EntryKind::Unknown(v) => v,
        }
    }

    /// Kind for a wire value.
    pub fn from_wire(v: u16) -> Self {
        match v {
            1 => EntryKind::Liveness,
            2 => EntryKind::RenderReceipt,
            3 => EntryKind::PorVerdicts,
            4 => EntryKind::FlReceipt,
            5 => EntryKind::Stake,
            6 => EntryKind::Seal,
            7 => EntryKind::Proposal,
            8 => EntryKind::Vote,
            9 => EntryKind::JobPayment,
            10 => EntryKind::DeliveryFault,
            11 => EntryKind::FaultRulings,
            12 => EntryKind::LinkReport,
            13 => EntryKind::InferReceipt,
            14 => EntryKind::InferFault,
            v => EntryKind::Unknown(v),
        }
    }

    /// Stable name for logs and APIs.
    pub fn name(self) -> String {
        match self {
            EntryKind::Liveness => "liveness".into(),
            EntryKind::RenderReceipt => "render-receipt".into(),
            EntryKind::PorVerdicts => "por-verdicts".into(),
            EntryKind::FlReceipt => "fl-receipt".into(),
            EntryKind::Stake => "stake".into(),
            EntryKind::Seal => "seal".into(),
            EntryKind::Proposal => "proposal".into(),
            EntryKind::Vote => "vote".into(),
            EntryKind::JobPayment => "job-payment".into(),
            EntryKind::DeliveryFault => "delivery-fault".into(),
            EntryKind::FaultRulings => "fault-rulings".into(),
            EntryKind::LinkReport => "link-report".into(),
            EntryKind::InferReceipt => "infer-receipt".into(),
            EntryKind::InferFault => "infer-fault".into(),
            EntryKind::Unknown(v) => format!("unknown-{v}"),
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry of {0} bytes exceeds the limit")]
    Oversized(usize),
    #[error("unsupported entry version {0}")]
    Version(u8),
    #[error("malformed entry: {0}")]
    Malformed(String),
    #[error("entry body of {0} bytes exceeds {MAX_ENTRY_BODY}")]
    BodyTooLarge(usize),
    #[error("author is not a valid ed25519 key")]
    BadAuthor,
    #[error("signature does not verify")]
    BadSignature,
    #[error("first entry of a chain must have a zero prev hash")]
    BadGenesis,
    #[error("epoch {epoch} goes back from its predecessor's {prev_epoch}")]
    EpochRegression { epoch: u64, prev_epoch: u64 },
    #[error("entry from epoch {epoch} is ahead of the current epoch {current}")]
    FromFuture { epoch: u64, current: u64 },
}

impl EntryError {
    /// Short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EntryError::Oversized(_) => "oversized",
            EntryError::Version(_) => "version",
            EntryError::Malformed(_) => "malformed",
            EntryError::BodyTooLarge(_) => "body_too_large",
            EntryError::BadAuthor => "bad_author",
            EntryError::BadSignature => "bad_signature",
            EntryError::BadGenesis => "bad_genesis",
            EntryError::EpochRegression { .. } => "epoch_regression",
            EntryError::FromFuture { .. } => "future",
        }
    }
}

/// One signed ledger entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub author: [u8; 32],
    pub seq: u64,
    pub prev: EntryId,
    pub epoch: u64,
    pub kind: EntryKind,
    pub body: Vec<u8>,
    pub sig: [u8; 64],
    /// Cached digest (the id); always equal to [`Entry::digest`] of the fields.
    id: EntryId,
}

#[derive(Encode, Decode)]
struct Wire {
    author: [u8; 32],
    seq: u64,
    prev: [u8; 32],
    epoch: u64,
    kind: u16,
    body: Vec<u8>,
    sig: [u8; 64],
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENTRY_BYTES>()
}

impl Entry {
    /// Signs a new entry for network `net_id`.
    pub fn sign(
        key: &SigningKey,
        net_id: &str,
        seq: u64,
        prev: EntryId,
        epoch: u64,
        kind: EntryKind,
        body: Vec<u8>,
    ) -> Result<Self, EntryError> {
        if body.len() > MAX_ENTRY_BODY {
            return Err(EntryError::BodyTooLarge(body.len()));
        }
        let author = key.verifying_key().to_bytes();
        let id = Self::digest(net_id, &author, seq, &prev, epoch, kind, &body);
        let sig = key.sign(&id).to_bytes();
        Ok(Self { author, seq, prev, epoch, kind, body, sig, id })
    }

    /// The signed digest: BLAKE3 over a domain, the network id and every field,
    /// length-prefixed where variable.
    pub fn digest(
        net_id: &str,
        author: &[u8; 32],
        seq: u64,
        prev: &EntryId,
        epoch: u64,
        kind: EntryKind,
        body: &[u8],
    ) -> EntryId {
        let mut h = blake3::Hasher::new();
        h.update(&(DOMAIN.len() as u64).to_le_bytes());
        h.update(DOMAIN);
        h.update(&[ENTRY_VERSION]);
        h.update(&(net_id.len().min(MAX_NET_ID_LEN) as u64).to_le_bytes());
        h.update(net_id.as_bytes());
        h.update(author);
        h.update(&seq.to_le_bytes());
        h.update(prev);
        h.update(&epoch.to_le_bytes());
        h.update(&kind.to_wire().to_le_bytes());
        h.update(&(body.len() as u64).to_le_bytes());
        h.update(body);
        *h.finalize().as_bytes()
    }

    /// The entry id (what the signature covers and what successors point to).
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let w = Wire {
            author: self.author,
            seq: self.seq,
            prev: self.prev,
            epoch: self.epoch,
            kind: self.kind.to_wire(),
            body: self.body.clone(),
            sig: self.sig,
        };
        let mut out = Vec::with_capacity(self.body.len() + 180);
        out.push(ENTRY_VERSION);
        out.extend(bincode::encode_to_vec(w, config()).expect("plain fields within the size limit"));
        out
    }

    /// Decodes wire bytes for network `net_id` (computing the id); checks sizes, not the
    /// signature. Never panics.
    pub fn decode(bytes: &[u8], net_id: &str) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::Oversized(bytes.len()));
        }
        let (&v, rest) = bytes.split_first().ok_or_else(|| EntryError::Malformed("empty".into()))?;
        if v != ENTRY_VERSION {
            return Err(EntryError::Version(v));
        }
        let (w, used): (Wire, usize) =
            bincode::decode_from_slice(rest, config()).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if used != rest.len() {
            return Err(EntryError::Malformed(format!("{} trailing bytes", rest.len() - used)));
        }
        if w.body.len() > MAX_ENTRY_BODY {
            return Err(EntryError::BodyTooLarge(w.body.len()));
        }
        let kind = EntryKind::from_wire(w.kind);
        let id = Self::digest(net_id, &w.author, w.seq, &w.prev, w.epoch, kind, &w.body);
        Ok(Self { author: w.author, seq: w.seq, prev: w.prev, epoch: w.epoch, kind, body: w.body, sig: w.sig, id })
    }

    /// Checks the signature alone, by the one rule batches use too ([`verify_cofactored`]).
    pub fn verify(&self) -> Result<(), EntryError> {
        verify_cofactored(&self.author, &self.id, &self.sig)
    }

    /// Size on the wire.
    pub fn encoded_len(&self) -> usize {
        // bincode's varint: one byte below 251, then a marker byte and 2, 4 or 8 bytes.
        fn varint(v: u64) -> usize {
            match v {
                0..=250 => 1,
                251..=0xffff => 3,
                0x1_0000..=0xffff_ffff => 5,
                _ => 9,
            }
        }
        // version + author + seq + prev + epoch + kind + body length + body + sig
        1 + 32
            + varint(self.seq)
            + 32
            + varint(self.epoch)
            + varint(self.kind.to_wire() as u64)
            + varint(self.body.len() as u64)
            + self.body.len()
            + 64
    }
}

/// The validity rule of an entry's signature, the same alone and in a batch (as Zcash's ZIP 215
/// makes it): the cofactored equation `[8]([S]B - R - [k]A) = 0`, `k = SHA-512(R || A || M)`,
/// with `S` canonical, `A` a valid key of no small order, and `R` of no small order.
///
/// Why cofactored: ed25519-dalek's batch equation multiplies by the cofactor, its single
/// `verify_strict` does not, so an `R` with a torsion component (crafted: `R = [r]B + T`) failed
/// alone and passed in a batch: a node that got the entry by gossip rejected it, a node that got
/// it by sync kept it, and their ledger roots split. Cofactored alone and in a batch, they agree.
pub fn verify_cofactored(author: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), EntryError> {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::traits::IsIdentity;
    use curve25519_dalek::{EdwardsPoint, Scalar};
    use sha2::{Digest, Sha512};
    let a = CompressedEdwardsY(*author).decompress().ok_or(EntryError::BadAuthor)?;
    if a.is_small_order() {
        return Err(EntryError::BadAuthor);
    }
    let r_bytes: [u8; 32] = sig[..32].try_into().expect("64-byte signature");
    let r = CompressedEdwardsY(r_bytes).decompress().ok_or(EntryError::BadSignature)?;
    if r.is_small_order() {
        return Err(EntryError::BadSignature);
    }
    let s_bytes: [u8; 32] = sig[32..].try_into().expect("64-byte signature");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(EntryError::BadSignature)?;
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new().chain_update(r_bytes).chain_update(author).chain_update(msg).finalize().into(),
    );
    let residual = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &(-a), &s) - r;
    if residual.mul_by_cofactor().is_identity() { Ok(()) } else { Err(EntryError::BadSignature) }
}

/// Verifies many entries at once with ed25519 batch verification (about four times the rate of
/// one-by-one for large batches); falls back to one-by-one to find the bad ones when the batch
/// fails. `keys` caches decompressed author keys across calls. Returns one result per entry.
pub fn verify_all(entries: &[Entry], keys: &mut KeyCache) -> Vec<Result<(), EntryError>> {
    let mut vks = Vec::with_capacity(entries.len());
    let mut all_keys_ok = true;
    for e in entries {
        match keys.get(&e.author) {
            Some(k) => vks.push(k),
            None => {
                all_keys_ok = false;
                vks.push(VerifyingKey::default());
            }
        }
    }
    if all_keys_ok && !entries.is_empty() {
        let msgs: Vec<&[u8]> = entries.iter().map(|e| e.id.as_slice()).collect();
        let sigs: Vec<Signature> = entries.iter().map(|e| Signature::from_bytes(&e.sig)).collect();
        if ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok() {
            // Batch equations accept small-order R, which verify_strict refuses.
            return entries.iter().map(strict_r).collect();
        }
    }
    entries.iter().map(Entry::verify).collect()
}

/// Decompressed author keys (decompression costs about as much as a batch-verify share).
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: std::collections::HashMap<[u8; 32], Option<VerifyingKey>>,
}

impl KeyCache {
    /// The key of `author`, if it is a valid, non-weak ed25519 key (what verify_strict accepts).
    pub fn get(&mut self, author: &[u8; 32]) -> Option<VerifyingKey> {
        if self.keys.len() > 100_000 {
            self.keys.clear();
        }
        *self.keys.entry(*author).or_insert_with(|| VerifyingKey::from_bytes(author).ok().filter(|k| !k.is_weak()))
    }
}

/// Every 32-byte encoding that decompresses to a point of small order: the eight torsion
/// points, their sign-flipped encodings, and the non-canonical y = p and y = p + 1 forms.
fn small_order_encodings() -> &'static [[u8; 32]] {
    static SET: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let mut candidates = Vec::new();
        for p in curve25519_dalek::constants::EIGHT_TORSION {
            let c = p.compress().to_bytes();
            let mut flipped = c;
            flipped[31] ^= 0x80;
            candidates.extend([c, flipped]);
        }
        // p = 2^255 - 19 and p + 1, little-endian, with either sign bit.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut p1 = p;
        p1[0] = 0xee;
        for y in [p, p1] {
            let mut s = y;
            s[31] |= 0x80;
            candidates.extend([y, s]);
        }
        let mut set: Vec<[u8; 32]> = candidates
            .into_iter()
            .filter(|c| CompressedEdwardsY(*c).decompress().is_some_and(|pt| pt.is_small_order()))
            .collect();
        set.sort();
        set.dedup();
        set
    })
}

/// The check `verify_strict` adds to the batch equation beyond weak keys: `R` must not be of
/// small order.
fn strict_r(e: &Entry) -> Result<(), EntryError> {
    let r = Signature::from_bytes(&e.sig).r_bytes().to_owned();
    if small_order_encodings().contains(&r) { Err(EntryError::BadSignature) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_r_is_refused_like_verify_strict() {
        let set = small_order_encodings();
        assert!(set.len() >= 8, "{}", set.len());
        // Each listed encoding really is small order, and a real signature's R is not listed.
        let k = SigningKey::from_bytes(&[3; 32]);
        let e = Entry::sign(&k, "t", 0, GENESIS_PREV, 0, EntryKind::Liveness, vec![]).unwrap();
        assert!(strict_r(&e).is_ok());
        let mut bad = e.clone();
        bad.sig[..32].copy_from_slice(&set[0]);
        assert!(strict_r(&bad).is_err());
        assert!(bad.verify().is_err());
    }

    /// Issue #16: an entry whose `R` carries a torsion component passed in a batch and failed
    /// alone. Now one rule judges both ways, and the same.
    #[test]
    fn a_torsion_component_is_judged_the_same_alone_and_in_a_batch() {
        use curve25519_dalek::Scalar;
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use sha2::{Digest, Sha512};
        let k = SigningKey::from_bytes(&[5; 32]);
        let honest = Entry::sign(&k, "t", 0, GENESIS_PREV, 0, EntryKind::Liveness, vec![1]).unwrap();
        // The same entry signed with R = [r]B + T for a torsion point T of order 8.
        let mut crafted = honest.clone();
        let r = Scalar::from_bytes_mod_order([9; 32]);
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1]).compress().to_bytes();
        let h = Scalar::from_bytes_mod_order_wide(
            &Sha512::new().chain_update(big_r).chain_update(crafted.author).chain_update(crafted.id).finalize().into(),
        );
        let s = r + h * k.to_scalar();
        crafted.sig[..32].copy_from_slice(&big_r);
        crafted.sig[32..].copy_from_slice(s.as_bytes());
        // The old rule disagreed with the batch.
        let vk = VerifyingKey::from_bytes(&crafted.author).unwrap();
        assert!(vk.verify_strict(&crafted.id, &Signature::from_bytes(&crafted.sig)).is_err());
        let mut cache = KeyCache::default();
        for batch in
            [vec![crafted.clone()], vec![honest.clone(), crafted.clone()], vec![crafted.clone(), honest.clone()]]
        {
            for (e, v) in batch.iter().zip(verify_all(&batch, &mut cache)) {
                assert_eq!(v.is_ok(), e.verify().is_ok(), "batch and alone disagree on {:?}", &e.sig[..4]);
            }
        }
        assert!(crafted.verify().is_ok() && honest.verify().is_ok());
        // A non-canonical S (at least 2^252, above the group order) and a wrong S fail both ways.
        let mut noncanon = honest.clone();
        noncanon.sig[63] |= 0xf0;
        let mut wrong = honest.clone();
        wrong.sig[32] ^= 1;
        for bad in [noncanon, wrong] {
            assert!(bad.verify().is_err());
            assert!(verify_all(&[bad.clone(), honest.clone()], &mut cache)[0].is_err());
        }
    }

    proptest::proptest! {
        /// Any single-byte change of a valid entry's signature or author is judged the same
        /// alone and in a batch.
        #[test]
        fn mutated_entries_are_judged_the_same_alone_and_in_a_batch(at in 0usize..96, xor in 1u8..=255) {
            let k = SigningKey::from_bytes(&[6; 32]);
            let good = Entry::sign(&k, "t", 1, [2; 32], 0, EntryKind::Liveness, vec![3]).unwrap();
            let mut e = good.clone();
            if at < 64 { e.sig[at] ^= xor } else { e.author[at - 64] ^= xor }
            let mut cache = KeyCache::default();
            let batch = verify_all(&[good.clone(), e.clone()], &mut cache);
            proptest::prop_assert_eq!(batch[1].is_ok(), e.verify().is_ok());
            proptest::prop_assert!(batch[0].is_ok());
        }
    }

    #[test]
    fn batch_and_single_verification_agree() {
        let k = SigningKey::from_bytes(&[4; 32]);
        let mut entries: Vec<Entry> = (0..8)
            .map(|i| Entry::sign(&k, "t", i, [i as u8; 32], 0, EntryKind::Liveness, vec![i as u8]).unwrap())
            .collect();
        let mut cache = KeyCache::default();
        assert!(verify_all(&entries, &mut cache).iter().all(Result::is_ok));
        entries[3].sig[40] ^= 1;
        entries[5].author = [0; 32];
        let r = verify_all(&entries, &mut cache);
        for (i, v) in r.iter().enumerate() {
            assert_eq!(v.is_ok(), i != 3 && i != 5, "entry {i}: {v:?}");
            assert_eq!(v.is_ok(), entries[i].verify().is_ok());
        }
    }
}
