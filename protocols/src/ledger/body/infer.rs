//! Inference (issue #20): the body of an [`crate::ledger::EntryKind::InferReceipt`] (a job
//! owner's statement that a worker delivered one batch of an inference job) and of an
//! [`crate::ledger::EntryKind::InferFault`] (a job owner's evidence that a worker answered a
//! batch with logits that are not the model's). The evidence carries the whole batch, its
//! outputs and the worker's signed commitment, so anyone holding the model's weights (named by
//! hash; the accuser serves them) re-executes it; settlement checks the signature and the
//! shapes, bonded verifiers rule on the logits, exactly as for a bad render tile
//! (`settle::faults`).

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::codec::DecodeError;
use crate::fl::shape::{CLASSES, FEATURES};
use crate::infer::{Commitment, MAX_INPUT, ModelSpec, check_rows};
use crate::ledger::entry::MAX_ENTRY_BODY;

/// One delivered batch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct InferReceipt {
    #[serde(with = "hex::serde")]
    pub job: [u8; 16],
    pub batch: u32,
    #[serde(with = "hex::serde")]
    pub worker: [u8; 32],
    /// BLAKE3 of the delivered logits (`infer::hash_values`).
    #[serde(with = "hex::serde")]
    pub outputs: [u8; 32],
    /// Whether the owner re-executed this batch and it agreed (information: settlement pays a
    /// batch by the job's paid work either way).
    pub verified: bool,
}

impl InferReceipt {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_ENTRY_BODY>(body)
    }
}

/// A job owner's evidence of a wrong batch.
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct InferFault {
    #[serde(with = "hex::serde")]
    pub job: [u8; 16],
    pub batch: u32,
    pub model: ModelSpec,
    #[serde(skip)]
    pub inputs: Vec<f32>,
    /// The logits the worker answered and signed.
    #[serde(skip)]
    pub outputs: Vec<f32>,
    #[serde(with = "hex::serde")]
    pub worker: [u8; 32],
    #[serde(with = "hex::serde")]
    pub sig: [u8; 64],
    /// What the owner saw (for people; nobody's decision reads it).
    pub reason: String,
}

impl InferFault {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body and checks its shape (whole rows, outputs for every input row, the
    /// model's size); whether it proves anything is [`InferFault::check`].
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.reason.len() > 256 {
            return Err(DecodeError::invalid("reason longer than 256 bytes"));
        }
        v.model.validate().map_err(|e| DecodeError::invalid(e.to_string()))?;
        let rows =
            check_rows(&v.inputs, FEATURES, MAX_INPUT, "inputs").map_err(|e| DecodeError::invalid(e.to_string()))?;
        if v.outputs.len() != rows * CLASSES {
            return Err(DecodeError::invalid(format!("{} logits for {rows} rows", v.outputs.len())));
        }
        Ok(v)
    }

    /// The commitment the worker signed, as this evidence states it.
    pub fn commitment(&self) -> Commitment {
        Commitment::of(self.job, self.batch, &self.model, &self.inputs, &self.outputs)
    }

    /// Whether the worker signed these outputs for this batch (all settlement can check
    /// without running the model).
    pub fn check(&self) -> Result<(), String> {
        if signed_by(&self.commitment(), &self.worker, &self.sig) {
            Ok(())
        } else {
            Err("the worker did not sign these outputs for this batch".into())
        }
    }

    /// Whether `work` (the accuser's payment for the job) has this batch, with these rows, of
    /// this architecture: what settlement and verifiers require of the evidence.
    pub fn paid_by(&self, work: &crate::ledger::body::PaidWork) -> bool {
        match *work {
            crate::ledger::body::PaidWork::Infer { arch, rows, batch_rows } => {
                arch == self.model.arch && crate::infer::batch_len(rows, batch_rows, self.batch) == self.rows() as u64
            }
            _ => false,
        }
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.inputs.len() / FEATURES
    }
}

/// Whether `worker` signed the inference commitment `c` (the ledger's one signature rule).
pub fn signed_by(c: &Commitment, worker: &[u8; 32], sig: &[u8; 64]) -> bool {
    crate::ledger::entry::verify_cofactored(worker, &c.digest(), sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{Arch, MAX_BATCH_ROWS, weights_to_bytes};
    use ed25519_dalek::SigningKey;

    pub(crate) fn fault(key: &SigningKey, rows: usize) -> InferFault {
        let w = weights_to_bytes(Arch::Mlp, &vec![0.0; Arch::Mlp.params()]).unwrap();
        let model = ModelSpec::publish(Arch::Mlp, &w).unwrap();
        let inputs = vec![3.0; rows * FEATURES];
        let outputs = vec![0.25; rows * CLASSES];
        let sig = Commitment::of([5; 16], 2, &model, &inputs, &outputs).sign(key);
        InferFault {
            job: [5; 16],
            batch: 2,
            model,
            inputs,
            outputs,
            worker: key.verifying_key().to_bytes(),
            sig,
            reason: "row 0: class 3 where the re-execution gives 1".into(),
        }
    }

    #[test]
    fn a_full_batch_of_evidence_fits_one_entry_and_checks() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let f = fault(&key, MAX_BATCH_ROWS);
        let body = f.encode();
        assert!(body.len() <= MAX_ENTRY_BODY, "{} bytes", body.len());
        let back = InferFault::decode(&body).unwrap();
        assert_eq!(back, f);
        assert!(back.check().is_ok());
        // Another batch, job or output than signed: proves nothing.
        for other in [
            Commitment { batch: 3, ..f.commitment() },
            Commitment { job: [6; 16], ..f.commitment() },
            Commitment { outputs: [0; 32], ..f.commitment() },
        ] {
            assert!(!signed_by(&other, &f.worker, &f.sig));
        }
        // Outputs changed after signing, or another worker named: proves nothing.
        let mut other = f.clone();
        other.outputs[3] = 9.0;
        assert!(other.check().unwrap_err().contains("did not sign"));
        other = f.clone();
        other.worker = [1; 32];
        assert!(other.check().is_err());
    }

    #[test]
    fn misshapen_evidence_does_not_decode() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let mut f = fault(&key, 2);
        f.outputs.pop();
        assert!(InferFault::decode(&f.encode()).unwrap_err().to_string().contains("19 logits for 2 rows"));
        let mut f = fault(&key, 2);
        f.inputs[0] = f32::INFINITY;
        assert!(InferFault::decode(&f.encode()).is_err());
        let mut f = fault(&key, 2);
        f.reason = "x".repeat(300);
        assert!(InferFault::decode(&f.encode()).is_err());
    }
}
