//! Audits: a verifier that hears a round's result fetches the previous weights and every input
//! from the owner and recomputes the aggregate; it must get the announced hash.

use ifx_protocols::fl::aggregate::next_global;
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
        let agg = spec.validate()?;
        let prev = fetch_any(net, owner, r.prev).await.map_err(miss)?;
        let prev = from_safetensors(&prev)?;
        let mut updates = Vec::with_capacity(r.inputs.len());
        for i in &r.inputs {
            let b = fetch_any(net, owner, i.update).await.map_err(miss)?;
            updates.push(parse_update(&b, i.examples)?);
        }
        let (next, screened) = next_global(&prev, &updates, agg, spec.clip)?;
        let weights = *blake3::hash(&to_safetensors(&next)?).as_bytes() == r.global;
        // The contributions settlement pays by must be the ones the inputs give.
        let announced: Vec<u32> = r.inputs.iter().map(|i| i.contribution_ppm).collect();
        let contributions = screened.contribution_ppm == announced;
        if !contributions {
            tracing::warn!(task = hex::encode(r.task), round = r.round, ?announced, recomputed = ?screened.contribution_ppm,
                "audit: the owner announced other contributions than its inputs give");
        }
        Ok(weights && contributions)
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
