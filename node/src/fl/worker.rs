//! The worker side: training for task owners on this node's shard, and the poison modes a
//! test worker corrupts its updates with.

use std::time::Duration;

use ifx_learn::data::Rng;
use ifx_learn::model::{self, TrainConfig};
use ifx_protocols::fl::FlError;
use ifx_protocols::fl::poison::Poison;
use ifx_protocols::fl::wire::{FlResponse, TaskSpec, from_safetensors, to_safetensors};
use libp2p::PeerId;
use tracing::debug;

use super::transfer::fetch;
use super::{Fl, TaskError, lock};

/// A worker's local result: the update, its gradient (tasks with `scaffold`), the loss and the
/// examples.
type Local = (Vec<f32>, Option<Vec<f32>>, f32, u64);

impl Fl {
    /// Fetches the weights, trains on this node's shard and keeps the (possibly poisoned) update.
    pub(super) async fn train(
        &self,
        owner: PeerId,
        task: [u8; 16],
        round: u32,
        spec: TaskSpec,
        (global, len): ([u8; 32], u32),
        control: Option<([u8; 32], u32)>,
    ) -> Result<FlResponse, TaskError> {
        let c = &self.inner;
        // Only the owner of a task this node joined may make it train (issue #16: any peer
        // could order unbounded training).
        if lock(&c.my_joins).get(&task) != Some(&owner) {
            return Err(TaskError::task("not asked by the owner of a task this node joined"));
        }
        if c.pause.is_paused() {
            return Err(TaskError::task("busy: paused by its operator"));
        }
        let (train, _) = c.data.clone().ok_or_else(|| TaskError::task("this node has no [fl] data"))?;
        spec.validate()?;
        let _turn = c.training.acquire().await.map_err(|_| TaskError::task("the node is stopping"))?;
        let weights = values(self, owner, global, len).await?;
        // SCAFFOLD: the round's control, fetched like the weights (none before round 1).
        let control = match control {
            Some((hash, len)) if spec.scaffold > 0.0 => {
                let v = values(self, owner, hash, len).await?;
                if v.len() != weights.len() {
                    return Err(TaskError::task(format!(
                        "the control has {} values, the weights {}",
                        v.len(),
                        weights.len()
                    )));
                }
                Some(v)
            }
            _ => None,
        };
        let shard = c.shard;
        let (poison, faults) = (c.poison, c.faults);
        let deadline = Duration::from_millis(spec.deadline_ms);
        let (delta, grad, loss, examples) = tokio::task::spawn_blocking(move || {
            faults.work(|| -> Result<Local, TaskError> {
                let data = match shard {
                    Some(i) => {
                        let d = &spec.data;
                        if i >= d.shards {
                            return Err(TaskError::task(format!(
                                "fl.shard {i} is beyond the task's {} shards",
                                d.shards
                            )));
                        }
                        train.non_iid(d.shards as usize, d.alpha, d.seed).swap_remove(i as usize)
                    }
                    None => train,
                };
                let cfg = TrainConfig {
                    epochs: spec.local_epochs as usize,
                    batch: spec.batch as usize,
                    lr: spec.lr_at(round),
                    seed: u64::from_le_bytes(task[..8].try_into().expect("8 bytes")) ^ (round as u64) << 32,
                };
                // SCAFFOLD: this shard's gradient at the round's weights goes with the update, and
                // the step is corrected by `scaffold x (control - gradient)`.
                let grad = (spec.scaffold > 0.0).then(|| model::gradient(&weights, &data)).transpose()?;
                let (local, loss) = match (&control, &grad) {
                    (Some(c), Some(g)) => {
                        let s = spec.scaffold as f32;
                        let correction: Vec<f32> = c.iter().zip(g).map(|(c, g)| s * (c - g)).collect();
                        model::train_corrected(&weights, &data, &cfg, &correction)?
                    }
                    _ => model::train(&weights, &data, &cfg)?,
                };
                let mut delta: Vec<f32> = local.iter().zip(&weights).map(|(l, g)| l - g).collect();
                // Differential privacy: clipped and noised before the update leaves this machine.
                if let Some(plan) = spec.dp_plan()? {
                    ifx_protocols::fl::dp::privatize(&mut delta, &plan);
                }
                Ok((delta, grad, loss, data.len() as u64))
            })
        })
        .await
        .map_err(|e| TaskError::task(e.to_string()))??;
        if poison == Poison::Slow {
            tokio::time::sleep(deadline + Duration::from_millis(500)).await;
        }
        let update = poisoned(poison, delta, round)?;
        let len = update.len() as u32;
        let hash = self.put_blob(update)?;
        // A poisoner's gradient is poisoned alike (the control is screened by the update's verdict).
        let grad = match grad {
            Some(g) => {
                let bytes = poisoned(poison, g, round)?;
                let len = bytes.len() as u32;
                Some((self.put_blob(bytes)?, len))
            }
            None => None,
        };
        debug!(task = hex::encode(task), round, loss, examples, "update ready");
        Ok(FlResponse::Trained { update: hash, len, examples, loss, grad })
    }
}
/// Values in the weights' layout (the round's weights, its control) fetched from the task owner.
async fn values(fl: &Fl, owner: PeerId, hash: [u8; 32], len: u32) -> Result<Vec<f32>, TaskError> {
    let bytes = fetch(&fl.inner.net, owner, hash, len as usize).await.map_err(|m| TaskError::Peer(m.reason()))?;
    Ok(from_safetensors(&bytes)?)
}

/// The bytes a worker in `poison` mode sends for an honest `delta`.
pub(super) fn poisoned(poison: Poison, mut delta: Vec<f32>, round: u32) -> Result<Vec<u8>, FlError> {
    match poison {
        Poison::Honest | Poison::Slow => {}
        Poison::SignFlip => delta.iter_mut().for_each(|d| *d *= -4.0),
        Poison::Scale => delta.iter_mut().for_each(|d| *d *= 25.0),
        Poison::Random => {
            let mut rng = Rng(0x9e37_79b9 ^ round as u64);
            delta.iter_mut().for_each(|d| *d = rng.normal() as f32);
        }
        Poison::Nan => delta[7] = f32::NAN,
        Poison::Shape => {
            let w = vec![0u8; 4 * 63 * 64];
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![63, 64], &w)
                .map_err(|e| FlError::invalid(e.to_string()))?;
            return safetensors::serialize([("w1", v)], None).map_err(|e| FlError::invalid(e.to_string()));
        }
    }
    to_safetensors(&delta)
}
