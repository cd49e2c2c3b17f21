//! The one wire container of ifx: every gossiped message is a `SignedEnvelope`.
//!
//! Layout on the wire: one version byte, then the bincode (standard config, varint) encoding of
//! the envelope fields. The signature covers a domain-separated digest of every field, so an
//! envelope signed for one network or one kind can never be accepted as another.

use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::net_id::MAX_NET_ID_LEN;

/// Wire version written as the first byte of every envelope.
pub const WIRE_VERSION: u8 = 1;
/// Largest encoded envelope accepted anywhere (the gossip cap).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Signature domain: changes whenever the signed layout changes.
const SIGNING_DOMAIN: &[u8] = b"ifx/envelope/v1";

/// What an envelope carries; the number is the wire value and never changes meaning.
///
/// New kinds are appended by later protocols (ledger entries, PoR, FL, governance). A node that
/// receives a kind it does not know rejects it with [`EnvelopeError::UnknownKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Kind {
    /// A node's periodic liveness and capacity announcement.
    Heartbeat = 1,
    /// A new ledger entry by the envelope's author (body: an encoded `ledger::Entry`).
    LedgerEntry = 2,
    /// A verifier's announcement of one challenge outcome (body: `por::announce::Announcement`).
    PorAnnouncement = 3,
    /// Federated-learning tasks and round results (body: `fl::wire::FlGossip`).
    Fl = 4,
}

impl Kind {
    /// Every kind this build understands, in wire order.
    pub const ALL: [Kind; 4] = [Kind::Heartbeat, Kind::LedgerEntry, Kind::PorAnnouncement, Kind::Fl];

    /// The kind for a wire value, if this build knows it.
    pub fn from_wire(v: u16) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u16 == v)
    }

    /// Largest body this kind may carry; checked before the signature, so oversized bodies
    /// cost the receiver no verification.
    pub fn max_body_bytes(self) -> usize {
        match self {
            Kind::Heartbeat => 1024,
            Kind::LedgerEntry => crate::ledger::entry::MAX_ENTRY_BYTES,
            Kind::PorAnnouncement => 512,
            Kind::Fl => crate::fl::wire::MAX_GOSSIP_BYTES,
        }
    }

    /// Stable lower-case name, used in logs, metrics and topic names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Heartbeat => "heartbeat",
            Kind::LedgerEntry => "ledger",
            Kind::PorAnnouncement => "por",
            Kind::Fl => "fl",
        }
    }
}

/// Why an envelope was refused. Each variant says what was wrong with the bytes or the sender.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope of {len} bytes exceeds the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("empty input")]
    Empty,
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the envelope")]
    TrailingBytes(usize),
    #[error("unknown envelope kind {0}")]
    UnknownKind(u16),
    #[error("network id of {0} bytes is empty or too long")]
    BadNetId(usize),
    #[error("{kind} body of {len} bytes exceeds the {max}-byte limit")]
    BodyTooLarge { kind: &'static str, len: usize, max: usize },
    #[error("envelope is for network {got:?}, this node is on {expected:?}")]
    WrongNetwork { expected: String, got: String },
    #[error("author is not a valid ed25519 public key")]
    BadAuthor,
    #[error("signature does not verify")]
    BadSignature,
    #[error("envelope already seen (replay)")]
    Replay,
    #[error("envelope from epoch {epoch} is stale (current epoch {current})")]
    Stale { epoch: u64, current: u64 },
    #[error("envelope from epoch {epoch} is in the future (current epoch {current})")]
    FromFuture { epoch: u64, current: u64 },
}

impl EnvelopeError {
    /// Short stable label for metrics (`reason` label of rejected-envelope counters).
    pub fn label(&self) -> &'static str {
        match self {
            EnvelopeError::Oversized { .. } => "oversized",
            EnvelopeError::Empty => "empty",
            EnvelopeError::UnsupportedVersion(_) => "version",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::TrailingBytes(_) => "trailing",
            EnvelopeError::UnknownKind(_) => "unknown_kind",
            EnvelopeError::BadNetId(_) => "net_id",
            EnvelopeError::BodyTooLarge { .. } => "body_too_large",
            EnvelopeError::WrongNetwork { .. } => "wrong_network",
            EnvelopeError::BadAuthor => "bad_author",
            EnvelopeError::BadSignature => "bad_signature",
            EnvelopeError::Replay => "replay",
            EnvelopeError::Stale { .. } => "stale",
            EnvelopeError::FromFuture { .. } => "future",
        }
    }

    /// True when the sender provably misbehaved (as opposed to a message that is merely late or
    /// repeated, which honest relays can produce): gossip rejects these and lowers the score.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(self, EnvelopeError::Replay | EnvelopeError::Stale { .. } | EnvelopeError::FromFuture { .. })
    }
}

/// The fields as they travel, after the version byte.
#[derive(Encode, Decode)]
struct WireFields {
    net_id: String,
    kind: u16,
    epoch: u64,
    author: [u8; 32],
    body: Vec<u8>,
    sig: [u8; 64],
}

/// A signed, versioned message: who said what, on which network, in which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEnvelope {
    /// Network this envelope belongs to; part of the signed digest.
    pub net_id: String,
    /// What the body is; part of the signed digest.
    pub kind: Kind,
    /// Epoch the author was in when signing.
    pub epoch: u64,
    /// The author's ed25519 public key (also its libp2p identity).
    pub author: [u8; 32],
    /// Kind-specific payload, itself bincode.
    pub body: Vec<u8>,
    /// ed25519 signature over [`SignedEnvelope::signing_digest`].
    pub sig: [u8; 64],
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENVELOPE_BYTES>()
}

impl SignedEnvelope {
    /// Signs `body` as `kind` for network `net_id` in `epoch`.
    pub fn sign(key: &SigningKey, net_id: &str, kind: Kind, epoch: u64, body: Vec<u8>) -> Result<Self, EnvelopeError> {
        check_net_id(net_id)?;
        check_body(kind, body.len())?;
        let author = key.verifying_key().to_bytes();
        let digest = Self::signing_digest(net_id, kind, epoch, &author, &body);
        let sig = key.sign(&digest).to_bytes();
        Ok(Self { net_id: net_id.to_owned(), kind, epoch, author, body, sig })
    }

    /// The exact bytes that are signed: a BLAKE3 digest of the domain, the version and every
    /// field, each length-prefixed, so no two distinct envelopes share a digest.
    pub fn signing_digest(net_id: &str, kind: Kind, epoch: u64, author: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&(SIGNING_DOMAIN.len() as u64).to_le_bytes());
        h.update(SIGNING_DOMAIN);
        h.update(&[WIRE_VERSION]);
        h.update(&(net_id.len() as u64).to_le_bytes());
        h.update(net_id.as_bytes());
        h.update(&(kind as u16).to_le_bytes());
        h.update(&epoch.to_le_bytes());
        h.update(author);
        h.update(&(body.len() as u64).to_le_bytes());
        h.update(body);
        *h.finalize().as_bytes()
    }

    /// Wire bytes: the version byte followed by the bincode fields.
    pub fn encode(&self) -> Vec<u8> {
        let fields = WireFields {
            net_id: self.net_id.clone(),
            kind: self.kind as u16,
            epoch: self.epoch,
            author: self.author,
            body: self.body.clone(),
            sig: self.sig,
        };
        let mut out = Vec::with_capacity(self.body.len() + 128);
        out.push(WIRE_VERSION);
        // Cannot fail: every field is plain data and sizes were checked when signing.
        let enc = bincode::encode_to_vec(fields, bincode::config::standard())
            .expect("encoding plain fields into a Vec cannot fail");
        out.extend_from_slice(&enc);
        out
    }

    /// Structural decoding with every size limit enforced; does not check the signature.
    /// Never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::Oversized { len: bytes.len(), max: MAX_ENVELOPE_BYTES });
        }
        let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let (f, used): (WireFields, usize) =
            bincode::decode_from_slice(rest, bincode_config()).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if used != rest.len() {
            return Err(EnvelopeError::TrailingBytes(rest.len() - used));
        }
        check_net_id(&f.net_id)?;
        let kind = Kind::from_wire(f.kind).ok_or(EnvelopeError::UnknownKind(f.kind))?;
        check_body(kind, f.body.len())?;
        Ok(Self { net_id: f.net_id, kind, epoch: f.epoch, author: f.author, body: f.body, sig: f.sig })
    }

    /// Checks the network id and the signature (strict ed25519: no malleable or small-order
    /// forms).
    pub fn verify(&self, expected_net_id: &str) -> Result<(), EnvelopeError> {
        if self.net_id != expected_net_id {
            return Err(EnvelopeError::WrongNetwork { expected: expected_net_id.to_owned(), got: self.net_id.clone() });
        }
        let key = VerifyingKey::from_bytes(&self.author).map_err(|_| EnvelopeError::BadAuthor)?;
        let digest = Self::signing_digest(&self.net_id, self.kind, self.epoch, &self.author, &self.body);
        key.verify_strict(&digest, &Signature::from_bytes(&self.sig)).map_err(|_| EnvelopeError::BadSignature)
    }

    /// Decodes and verifies in one step: what a receiver does with untrusted bytes.
    pub fn open(bytes: &[u8], expected_net_id: &str) -> Result<Self, EnvelopeError> {
        let env = Self::decode(bytes)?;
        env.verify(expected_net_id)?;
        Ok(env)
    }

    /// Content id: BLAKE3 of the signed digest and the signature. Equal for byte-identical
    /// envelopes, so it is what replay protection remembers.
    pub fn id(&self) -> [u8; 32] {
        let digest = Self::signing_digest(&self.net_id, self.kind, self.epoch, &self.author, &self.body);
        let mut h = blake3::Hasher::new();
        h.update(&digest);
        h.update(&self.sig);
        *h.finalize().as_bytes()
    }

    /// Author as lower-case hex, for logs and APIs.
    pub fn author_hex(&self) -> String {
        hex::encode(self.author)
    }
}

fn check_net_id(net_id: &str) -> Result<(), EnvelopeError> {
    if net_id.is_empty() || net_id.len() > MAX_NET_ID_LEN {
        return Err(EnvelopeError::BadNetId(net_id.len()));
    }
    Ok(())
}

fn check_body(kind: Kind, len: usize) -> Result<(), EnvelopeError> {
    let max = kind.max_body_bytes();
    if len > max {
        return Err(EnvelopeError::BodyTooLarge { kind: kind.name(), len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample() -> SignedEnvelope {
        SignedEnvelope::sign(&key(7), "ifx-test", Kind::Heartbeat, 42, b"hello".to_vec()).unwrap()
    }

    #[test]
    fn roundtrip_verifies() {
        let env = sample();
        let bytes = env.encode();
        assert_eq!(bytes[0], WIRE_VERSION);
        let back = SignedEnvelope::open(&bytes, "ifx-test").unwrap();
        assert_eq!(back, env);
        assert_eq!(back.id(), env.id());
    }

    #[test]
    fn forged_body_is_rejected() {
        let mut env = sample();
        env.body = b"hellO".to_vec();
        let err = SignedEnvelope::open(&env.encode(), "ifx-test").unwrap_err();
        assert_eq!(err, EnvelopeError::BadSignature);
    }

    #[test]
    fn forged_author_is_rejected() {
        // Someone else's key claims the author's message.
        let mut env = sample();
        env.author = key(8).verifying_key().to_bytes();
        assert_eq!(env.verify("ifx-test"), Err(EnvelopeError::BadSignature));
        // And bytes that are no curve point at all.
        let mut env = sample();
        env.author = [0xff; 32];
        assert!(matches!(env.verify("ifx-test"), Err(EnvelopeError::BadAuthor | EnvelopeError::BadSignature)));
    }

    #[test]
    fn epoch_and_kind_are_signed() {
        let mut env = sample();
        env.epoch += 1;
        assert_eq!(env.verify("ifx-test"), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn wrong_network_is_rejected_even_if_relabelled() {
        let env = sample();
        let err = SignedEnvelope::open(&env.encode(), "ifx-main").unwrap_err();
        assert!(matches!(err, EnvelopeError::WrongNetwork { .. }));
        // Relabelling the network breaks the signature: domain separation by net id.
        let mut relabelled = env.clone();
        relabelled.net_id = "ifx-main".into();
        assert_eq!(relabelled.verify("ifx-main"), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn truncation_at_every_length_is_rejected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            let err = SignedEnvelope::open(&bytes[..n], "ifx-test").unwrap_err();
            assert!(matches!(err, EnvelopeError::Empty | EnvelopeError::Malformed(_)), "prefix {n}: {err:?}");
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(SignedEnvelope::open(&bytes, "ifx-test"), Err(EnvelopeError::TrailingBytes(1)));
    }

    #[test]
    fn oversize_is_rejected_before_decoding() {
        let bytes = vec![WIRE_VERSION; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(SignedEnvelope::decode(&bytes), Err(EnvelopeError::Oversized { .. })));
        // A body over its kind's limit cannot be signed, nor decoded when forged on the wire.
        let big = vec![0u8; Kind::Heartbeat.max_body_bytes() + 1];
        assert!(matches!(
            SignedEnvelope::sign(&key(1), "ifx-test", Kind::Heartbeat, 0, big.clone()),
            Err(EnvelopeError::BodyTooLarge { .. })
        ));
        let mut env = sample();
        env.body = big;
        assert!(matches!(SignedEnvelope::decode(&env.encode()), Err(EnvelopeError::BodyTooLarge { .. })));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // version, then a net id claiming u64::MAX bytes.
        let mut bytes = vec![WIRE_VERSION, 0xff];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(SignedEnvelope::decode(&bytes), Err(EnvelopeError::Malformed(_))));
    }

    #[test]
    fn unknown_kind_and_version_are_typed() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert_eq!(SignedEnvelope::decode(&bytes), Err(EnvelopeError::UnsupportedVersion(9)));
        let env = sample();
        let fields = WireFields {
            net_id: env.net_id.clone(),
            kind: 999,
            epoch: env.epoch,
            author: env.author,
            body: env.body.clone(),
            sig: env.sig,
        };
        let mut bytes = vec![WIRE_VERSION];
        bytes.extend(bincode::encode_to_vec(fields, bincode::config::standard()).unwrap());
        assert_eq!(SignedEnvelope::decode(&bytes), Err(EnvelopeError::UnknownKind(999)));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = SignedEnvelope::open(&bytes, "ifx-test");
        }

        #[test]
        fn random_bytes_after_version_never_verify(mut bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            bytes.insert(0, WIRE_VERSION);
            prop_assert!(SignedEnvelope::open(&bytes, "ifx-test").is_err());
        }

        #[test]
        fn any_single_bit_flip_is_rejected(pos in 0usize..10_000, bit in 0u8..8) {
            let bytes = sample().encode();
            let mut flipped = bytes.clone();
            let i = pos % flipped.len();
            flipped[i] ^= 1 << bit;
            prop_assert!(SignedEnvelope::open(&flipped, "ifx-test").is_err());
        }

        #[test]
        fn sign_then_open_roundtrips(seed in any::<[u8; 32]>(), epoch in any::<u64>(),
                                     body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let k = SigningKey::from_bytes(&seed);
            let env = SignedEnvelope::sign(&k, "net", Kind::Heartbeat, epoch, body).unwrap();
            prop_assert_eq!(SignedEnvelope::open(&env.encode(), "net").unwrap(), env);
        }
    }
}
