//! Audits: a verifier that hears a round's result fetches the previous weights and every input
//! from the owner and recomputes the aggregate; it must get the announced hash.

use ifx_protocols::fl::aggregate::{Update, control, from_fixed, next_global};
use ifx_protocols::fl::wire::{FlRequest, FlResponse, RoundResult, TaskSpec, from_safetensors, to_safetensors};
use libp2p::PeerId;

use super::round::Miss;
use super::transfer::{fetch_any, parse_update};
use super::{Fl, TaskError};
use crate::network::Proto;

impl Fl {
    /// Recomputes an announced round from the owner's blobs; true if the weights match.
    pub(super) async fn audit(&self, owner: PeerId, r: &RoundResult) -> Result<bool, TaskError> {
        let net = &self.inner.net;
        let miss = |m: Miss| TaskError::Peer(m.reason());
        // The spec is needed for the aggregator: it came with the task announcements, but the
        // owner may have started before we listened; ask for nothing more than the round lists.
        let spec = self.spec_of(owner, r.task).await?;
        spec.validate()?;
        let prev = fetch_any(net, owner, r.prev).await.map_err(miss)?;
        let prev = from_safetensors(&prev)?;
        let mut updates = Vec::with_capacity(r.inputs.len());
        let mut grads = Vec::with_capacity(r.inputs.len());
        for i in &r.inputs {
            let b = fetch_any(net, owner, i.update).await.map_err(miss)?;
            updates.push(parse_update(&b, i.examples)?);
            grads.push(match i.grad {
                Some(h) => Some(parse_update(&fetch_any(net, owner, h).await.map_err(miss)?, i.examples)?),
                None => None,
            });
        }
        recompute(&prev, &updates, &grads, &spec, r)
    }

    async fn spec_of(&self, owner: PeerId, task: [u8; 16]) -> Result<TaskSpec, TaskError> {
        let req = FlRequest::Spec { task }.encode();
        match self.inner.net.request(Proto::Fl, owner, req).await {
            Ok(Ok(b)) => match FlResponse::decode(&b)? {
                FlResponse::Spec(s) => Ok(s),
                FlResponse::Error(e) => Err(TaskError::Peer(e)),
                _ => Err(TaskError::task("unexpected response")),
            },
            Ok(Err(e)) => Err(TaskError::Peer(e.to_string())),
            Err(_) => Err(TaskError::task("the network stopped")),
        }
    }
}

/// Whether round `r` is what its inputs give: the weights `next_global` makes of `prev` and
/// `updates` hash to the announced ones, the contributions settlement pays by are the ones
/// announced, and so is the control the next round trains with (`grads[i]`: update `i`'s
/// gradient, tasks with `scaffold`).
pub(super) fn recompute(
    prev: &[f32],
    updates: &[Update],
    grads: &[Option<Update>],
    spec: &TaskSpec,
    r: &RoundResult,
) -> Result<bool, TaskError> {
    let (next, screened) = next_global(prev, updates, spec.validate()?, spec.clip)?;
    let weights = *blake3::hash(&to_safetensors(&next)?).as_bytes() == r.global;
    let control = match control(grads, &screened.rejected)? {
        Some(c) => Some(*blake3::hash(&to_safetensors(&from_fixed(&c))?).as_bytes()),
        None => None,
    } == r.control;
    if !control {
        tracing::warn!(
            task = hex::encode(r.task),
            round = r.round,
            "audit: the announced control is not what the inputs give"
        );
    }
    let announced: Vec<u32> = r.inputs.iter().map(|i| i.contribution_ppm).collect();
    let contributions = screened.contribution_ppm == announced;
    if !weights {
        tracing::warn!(
            task = hex::encode(r.task),
            round = r.round,
            "audit: the announced weights are not what the inputs give"
        );
    }
    if !contributions {
        tracing::warn!(task = hex::encode(r.task), round = r.round, ?announced, recomputed = ?screened.contribution_ppm,
            "audit: the owner announced other contributions than its inputs give");
    }
    Ok(weights && contributions && control)
}

#[cfg(test)]
mod tests {
    //! The audit's check without the network: an honest round passes; the same round with its
    //! weights swapped, or with one worker's contribution raised, fails.

    use ifx_protocols::fl::aggregate::{Update, to_fixed};
    use ifx_protocols::fl::wire::RoundInput;

    use super::*;

    #[test]
    fn an_audit_catches_other_weights_and_other_contributions() {
        let spec = TaskSpec { aggregator: "trimmed-mean".into(), ..Default::default() };
        let prev = vec![0.5f32; ifx_protocols::fl::shape::PARAMS];
        let dirs: [(f32, f32); 4] = [(0.01, 0.02), (0.02, 0.005), (0.015, 0.015), (0.005, 0.025)];
        let updates: Vec<Update> = dirs
            .iter()
            .map(|(a, b)| {
                let v: Vec<f32> = (0..prev.len()).map(|k| if k % 2 == 0 { *a } else { *b }).collect();
                Update { values: to_fixed(&v).unwrap(), examples: 100 }
            })
            .collect();
        let (next, screened) = next_global(&prev, &updates, spec.validate().unwrap(), spec.clip).unwrap();
        let honest = RoundResult {
            task: [1; 16],
            round: 0,
            prev: [0; 32],
            global: *blake3::hash(&to_safetensors(&next).unwrap()).as_bytes(),
            inputs: (0..4u8)
                .map(|i| RoundInput {
                    worker: [i; 32],
                    update: [i; 32],
                    examples: 100,
                    contribution_ppm: screened.contribution_ppm[i as usize],
                    grad: None,
                })
                .collect(),
            rejected: vec![],
            accuracy_milli: 0,
            control: None,
        };
        let none = vec![None; 4];
        assert!(screened.contribution_ppm.iter().all(|c| *c > 0), "{:?}", screened.contribution_ppm);
        assert!(recompute(&prev, &updates, &none, &spec, &honest).unwrap());
        let mut weights = honest.clone();
        weights.global[0] ^= 1;
        assert!(!recompute(&prev, &updates, &none, &spec, &weights).unwrap());
        let mut raised = honest.clone();
        let low = (0..4).min_by_key(|i| raised.inputs[*i].contribution_ppm).unwrap();
        raised.inputs[low].contribution_ppm = 1_000_000;
        assert!(!recompute(&prev, &updates, &none, &spec, &raised).unwrap(), "a raised contribution passed");
        // SCAFFOLD: the control announced must be the mean of the inputs' gradients, and one
        // must be announced when they came with gradients.
        let grads: Vec<Option<Update>> = updates.iter().map(|u| Some(u.clone())).collect();
        let mean = control(&grads, &[]).unwrap().unwrap();
        let mut with = honest.clone();
        with.control = Some(*blake3::hash(&to_safetensors(&from_fixed(&mean)).unwrap()).as_bytes());
        assert!(recompute(&prev, &updates, &grads, &spec, &with).unwrap());
        assert!(!recompute(&prev, &updates, &grads, &spec, &honest).unwrap(), "a missing control passed");
        let mut other = with.clone();
        other.control = Some([3; 32]);
        assert!(!recompute(&prev, &updates, &grads, &spec, &other).unwrap(), "another control passed");
    }
}
