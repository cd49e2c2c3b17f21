//! Proof of challenge: a worker's signature on its answer to one verifier's challenge. A
//! verifier's verdict on a worker earns it something in settlement only with such a proof
//! (issue #21: every outcome is gossiped at once, so a verifier could copy the others' outcomes
//! without challenging anyone and be paid for agreeing with the quorum). The worker signs what
//! only that challenge could have asked of it, for that verifier, in its epoch.

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;

const DOMAIN: &[u8] = b"ifx/por/answer/v1";

/// A worker's signed answer to one verifier's challenge.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct AnswerProof {
    /// The worker's epoch when it answered.
    pub epoch: u64,
    /// What was asked ([`render_challenge`] or [`bench_challenge`]).
    #[serde(with = "hex::serde")]
    pub challenge: [u8; 32],
    /// What was answered (the committed root, or [`bench_answer`]).
    #[serde(with = "hex::serde")]
    pub answer: [u8; 32],
    #[serde(with = "hex::serde")]
    pub sig: [u8; 64],
}

/// The signed digest: domain, the verifier asking, the epoch, the challenge, the answer. No
/// network id: a challenge is random per challenge and names the verifier's key, so a proof
/// from elsewhere is still a challenge that verifier really made (and settlement, which checks
/// it, runs on the network's parameters, not its wire id).
fn digest(verifier: &[u8; 32], epoch: u64, challenge: &[u8; 32], answer: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(verifier).update(&epoch.to_le_bytes()).update(challenge).update(answer);
    *h.finalize().as_bytes()
}

/// The challenge of a render request with id `id`.
pub fn render_challenge(id: &[u8; 16]) -> [u8; 32] {
    *blake3::Hasher::new().update(b"render").update(id).finalize().as_bytes()
}

/// The challenge of a benchmark with seed `seed`.
pub fn bench_challenge(seed: u64) -> [u8; 32] {
    *blake3::Hasher::new().update(b"bench").update(&seed.to_le_bytes()).finalize().as_bytes()
}

/// The answer of a benchmark: its rows and claimed time.
pub fn bench_answer(rows: &[[u8; 32]], claimed_us: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for r in rows {
        h.update(r);
    }
    *h.update(&claimed_us.to_le_bytes()).finalize().as_bytes()
}

impl AnswerProof {
    /// The worker `key`'s proof of answering `answer` to `verifier`'s `challenge` in `epoch`.
    pub fn sign(key: &SigningKey, verifier: &[u8; 32], epoch: u64, challenge: [u8; 32], answer: [u8; 32]) -> Self {
        let sig = key.sign(&digest(verifier, epoch, &challenge, &answer)).to_bytes();
        Self { epoch, challenge, answer, sig }
    }

    /// Whether `worker` signed this for `verifier` (the ledger's one signature rule).
    pub fn verify(&self, worker: &[u8; 32], verifier: &[u8; 32]) -> bool {
        let d = digest(verifier, self.epoch, &self.challenge, &self.answer);
        crate::ledger::entry::verify_cofactored(worker, &d, &self.sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_names_its_worker_verifier_and_epoch() {
        let worker = SigningKey::from_bytes(&[1; 32]);
        let w = worker.verifying_key().to_bytes();
        let (v, other) = ([2; 32], [3; 32]);
        let p = AnswerProof::sign(&worker, &v, 7, render_challenge(&[9; 16]), [4; 32]);
        assert!(p.verify(&w, &v));
        assert!(!p.verify(&w, &other), "another verifier cannot use it");
        assert!(!p.verify(&other, &v), "nor is it another worker's");
        assert!(!AnswerProof { epoch: 8, ..p.clone() }.verify(&w, &v), "nor another epoch's");
        assert!(!AnswerProof { answer: [5; 32], ..p }.verify(&w, &v));
        assert_ne!(bench_challenge(1), bench_challenge(2));
        assert_ne!(bench_answer(&[[1; 32]], 5), bench_answer(&[[1; 32]], 6));
    }
}
