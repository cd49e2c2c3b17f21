//! The task owner: starts a task, then runs it round by round, asking workers over the `fl`
//! protocol and applying `round.rs`'s rules to what comes back; writes receipts to the ledger,
//! gossips each round's result, and at the end writes the final weights and the accuracy plot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use ifx_learn::model;
use ifx_protocols::fl::aggregate::Aggregator;
use ifx_protocols::fl::wire::{FlGossip, FlRequest, RoundInput, RoundResult, TaskSpec, to_safetensors};
use ifx_protocols::ledger::{EntryKind, PaidWork};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::round::{BAN_STRIKES, BAN_WINDOW, Closed, Collect, Delivered, Miss, Roster, close};
use super::transfer::client;
use super::{Fl, RunState, TaskError, TaskStatus, lock};
use crate::network::author_peer_id;

/// How long a round waits for enough joined workers before the task fails.
const NO_CLIENTS_TIMEOUT: Duration = Duration::from_secs(60);
/// A round with too few valid updates by its deadline is retried this often.
const ROUND_ATTEMPTS: usize = 5;
/// How long round 0 waits for `clients_per_round` workers to join before it starts with fewer.
const JOIN_GRACE: Duration = Duration::from_secs(5);

impl Fl {
    /// Starts a task owned by this node, paying for it first unless it is `unpaid`; returns
    /// its id.
    pub async fn start(&self, spec: TaskSpec) -> Result<String, TaskError> {
        let agg = spec.validate()?;
        let Some((train, _)) = &self.inner.data else {
            return Err(TaskError::task("this node has no [fl] data to score the task on (its test split)"));
        };
        let task: [u8; 16] = rand::random();
        let id = hex::encode(task);
        let mut status = TaskStatus::started(id.clone(), spec.clone(), agg.to_string());
        status.privacy = spec.dp_plan()?;
        if !spec.unpaid {
            // Each update is paid as a shard of the owner's own copy of the data set (clients
            // report their examples; the payment, not the report, sets the units).
            let examples = (train.len() as u64).div_ceil(spec.data.shards.max(1) as u64).max(1);
            let work = PaidWork::Fl { examples, local_epochs: spec.local_epochs };
            let updates = spec.rounds as u64 * spec.clients_per_round as u64;
            let units = work.total_units(updates);
            let i = &self.inner;
            let (paid, _) = crate::settle::pay_for(&i.ledger, &i.net, &i.key, &i.network, task, work, units).await?;
            status.paid = paid;
        }
        lock(&self.inner.tasks).insert(id.clone(), status);
        lock(&self.inner.joined).insert(task, BTreeMap::new());
        let me = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = me.run(task, spec, agg, started).await;
            me.update(&hex::encode(task), |s| {
                s.secs = started.elapsed().as_secs_f64();
                match result {
                    Ok(()) => s.state = RunState::Done,
                    Err(e) => {
                        warn!(task = s.task_id, error = %e, "federated task failed");
                        s.state = RunState::Failed;
                        s.error = Some(e.to_string());
                    }
                }
            });
        });
        Ok(id)
    }

    /// Joined workers that are connected now and not paused by their operators (their
    /// heartbeats say so), in this round's rotation order.
    async fn candidates(&self, task: [u8; 16], round: u32, excluded: &BTreeSet<[u8; 32]>) -> Vec<(PeerId, [u8; 32])> {
        let Ok(snap) = self.inner.net.snapshot().await else { return Vec::new() };
        let working: BTreeSet<PeerId> = {
            let table = lock(&self.inner.heartbeats);
            crate::heartbeat::connected_workers(&table, &snap.connected).into_iter().map(|(p, _)| p).collect()
        };
        let joined = lock(&self.inner.joined).get(&task).cloned().unwrap_or_default();
        let mut c: Vec<([u8; 32], PeerId, [u8; 32])> = joined
            .into_iter()
            .filter(|(p, k)| working.contains(p) && !excluded.contains(k))
            .map(|(p, k)| {
                let mut h = blake3::Hasher::new();
                h.update(&task).update(&round.to_le_bytes()).update(&k);
                (*h.finalize().as_bytes(), p, k)
            })
            .collect();
        c.sort();
        c.into_iter().map(|(_, p, k)| (p, k)).collect()
    }

    async fn run(&self, task: [u8; 16], spec: TaskSpec, agg: Aggregator, started: Instant) -> Result<(), TaskError> {
        let id = hex::encode(task);
        let (_, test) = self.inner.data.clone().ok_or_else(|| TaskError::task("no data"))?;
        let k = spec.clients_per_round as usize;
        let mut roster = Roster::default();
        let mut global = model::init(spec.init_seed);
        // SCAFFOLD's control for the next round: hash and length of its blob (none in round 0).
        let mut control: Option<([u8; 32], u32)> = None;
        let scaffold = spec.scaffold > 0.0;
        let (acc0, _) = model::evaluate(&global, &test)?;
        info!(task = id, rounds = spec.rounds, clients = k, aggregator = %agg, initial_accuracy = acc0,
            "federated task started");
        for round in 0..spec.rounds {
            let excluded = roster.excluded(round);
            let global_bytes = to_safetensors(&global)?;
            let global_len = global_bytes.len() as u32;
            let global_hash = self.put_blob(global_bytes)?;
            let mut collect = Collect::new(k);
            let mut attempt = 0;
            loop {
                if self.inner.shutdown.is_cancelled() {
                    return Err(TaskError::task("the node is shutting down"));
                }
                self.gossip(FlGossip::Task { task, round, spec: spec.clone() }).await;
                let waiting = Instant::now();
                let mut cands = self.candidates(task, round, &excluded).await;
                // Round 0 also gives workers that are still joining a moment to arrive.
                while cands.len() < spec.min_clients as usize
                    || (round == 0 && cands.len() < k && waiting.elapsed() < JOIN_GRACE)
                {
                    if waiting.elapsed() > NO_CLIENTS_TIMEOUT {
                        return Err(TaskError::task(format!(
                            "round {round}: {} joined worker(s) connected, {} needed, after {NO_CLIENTS_TIMEOUT:?}",
                            cands.len(),
                            spec.min_clients
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if waiting.elapsed().as_millis() % 3000 < 300 {
                        self.gossip(FlGossip::Task { task, round, spec: spec.clone() }).await;
                    }
                    cands = self.candidates(task, round, &excluded).await;
                }
                cands.truncate(spec.selected_per_round());
                collect.asked(&cands);
                let mut futs = FuturesUnordered::new();
                for (peer, key) in cands {
                    let req = FlRequest::Train {
                        task,
                        round,
                        spec: spec.clone(),
                        global: global_hash,
                        len: global_len,
                        control,
                    };
                    let net = self.inner.net.clone();
                    futs.push(async move { (peer, key, client(&net, peer, req.encode(), scaffold).await) });
                }
                let deadline = tokio::time::Instant::now() + Duration::from_millis(spec.deadline_ms);
                loop {
                    match tokio::time::timeout_at(deadline, futs.next()).await {
                        Ok(Some((peer, key, answer))) => {
                            // Kept so that auditors can fetch every input from the owner.
                            let answer = answer.and_then(|(bytes, update, loss, grad)| {
                                let keep = |b: Vec<u8>| {
                                    self.put_blob(b)
                                        .map_err(|e| Miss::Dropped(format!("the owner cannot keep the update: {e}")))
                                };
                                let hash = keep(bytes)?;
                                let grad = match grad {
                                    Some((b, g)) => Some((keep(b)?, g)),
                                    None => None,
                                };
                                Ok(Delivered { key, hash, update, loss, grad })
                            });
                            if collect.answered(peer, answer) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            collect.deadline_passed();
                            break;
                        }
                    }
                }
                drop(futs);
                if collect.end_attempt(spec.min_clients as usize) {
                    break;
                }
                attempt += 1;
                warn!(
                    task = id,
                    round,
                    valid = collect.delivered.len(),
                    attempt,
                    "too few valid updates; retrying the round"
                );
                if attempt >= ROUND_ATTEMPTS {
                    return Err(TaskError::task(format!(
                        "round {round}: too few valid updates after {attempt} attempts"
                    )));
                }
            }
            let Collect { mut delivered, misses, late, .. } = collect;
            let Closed { next, screened, receipts, rejected, control: next_control } =
                close(task, round, &spec, agg, &global, &mut delivered, &misses)?;
            control = match next_control {
                Some(c) => {
                    let bytes = to_safetensors(&c)?;
                    let len = bytes.len() as u32;
                    Some((self.put_blob(bytes)?, len))
                }
                None => None,
            };
            let (acc, loss) = model::evaluate(&next, &test)?;
            let next_bytes = to_safetensors(&next)?;
            let next_hash = self.put_blob(next_bytes)?;
            global = next;
            let change = roster.record(round, spec.rounds, &receipts, delivered.iter().map(|d| d.key), &late);
            for (key, sit_out) in &change.benched {
                debug!(task = id, round, worker = hex::encode(&key[..4]), sit_out, "straggler sits out");
            }
            let newly_banned = change.banned;
            let mut wrote = 0;
            for r in receipts {
                let c = &self.inner;
                match c.ledger.append_and_gossip(&c.net, &c.key, &c.network, EntryKind::FlReceipt, r.encode()).await {
                    Ok(_) => wrote += 1,
                    Err(e) => warn!(error = %e, "cannot write an FL receipt"),
                }
            }
            let result = RoundResult {
                task,
                round,
                prev: global_hash,
                global: next_hash,
                inputs: delivered
                    .iter()
                    .zip(&screened.contribution_ppm)
                    .map(|(d, c)| RoundInput {
                        worker: d.key,
                        update: d.hash,
                        examples: d.update.examples,
                        contribution_ppm: *c,
                        grad: d.grad.as_ref().map(|(h, _)| *h),
                    })
                    .collect(),
                rejected: rejected.clone(),
                accuracy_milli: (acc * 1000.0).round() as u32,
                control: control.map(|(h, _)| h),
            };
            self.gossip(FlGossip::Round(result)).await;
            let mean_client_loss = delivered.iter().map(|d| d.loss).sum::<f32>() / delivered.len().max(1) as f32;
            info!(
                task = id,
                round,
                accuracy = acc,
                loss,
                client_loss = mean_client_loss,
                clients = delivered.len(),
                rejected = rejected.len(),
                dropped = misses.iter().filter(|m| matches!(m.2, Miss::Dropped(_))).count(),
                "federated round done"
            );
            self.update(&id, |s| {
                s.rounds_done = round + 1;
                s.accuracy_by_round.push(acc);
                s.loss_by_round.push(loss);
                s.clients_by_round.push(delivered.len());
                s.receipts += wrote;
                s.global_hash = hex::encode(next_hash);
                s.secs = started.elapsed().as_secs_f64();
                for (i, d) in delivered.iter().enumerate() {
                    if !screened.rejected.iter().any(|(r, _)| *r == i)
                        && let Some(p) = author_peer_id(&d.key)
                    {
                        *s.accepted.entry(p.to_string()).or_default() += 1;
                        *s.contribution_ppm.entry(p.to_string()).or_default() +=
                            screened.contribution_ppm.get(i).copied().unwrap_or(0) as u64;
                    }
                }
                for key in &newly_banned {
                    if let Some(p) = author_peer_id(key) {
                        warn!(task = id, round, worker = %p, "worker excluded from the task: rejected {BAN_STRIKES} times in its last {BAN_WINDOW} updates");
                        s.banned.insert(
                            p.to_string(),
                            format!("round {round}: rejected {BAN_STRIKES} times in its last {BAN_WINDOW} updates"),
                        );
                    }
                }
                for (key, why) in &rejected {
                    if let Some(p) = author_peer_id(key) {
                        *s.rejected_count.entry(p.to_string()).or_default() += 1;
                        let v = s.rejected.entry(p.to_string()).or_default();
                        v.push(format!("round {round}: {why}"));
                        if v.len() > 8 {
                            v.remove(0);
                        }
                    }
                }
                for (_, peer, m) in &misses {
                    if matches!(m, Miss::Dropped(_)) {
                        *s.dropped.entry(peer.to_string()).or_default() += 1;
                    }
                }
            });
        }
        // Outputs: final weights and the accuracy plot.
        let dir = self.inner.out_dir.join(&id);
        let bytes = to_safetensors(&global)?;
        let status = self.get(&id).ok_or_else(|| TaskError::task("task vanished"))?;
        let accs = status.accuracy_by_round.clone();
        let final_acc = accs.last().copied();
        let d2 = dir.clone();
        let (weights, plot) = tokio::task::spawn_blocking(move || -> Result<(PathBuf, PathBuf), TaskError> {
            std::fs::create_dir_all(&d2).map_err(|e| TaskError::task(format!("{}: {e}", d2.display())))?;
            let w = d2.join("final.safetensors");
            std::fs::write(&w, &bytes).map_err(|e| TaskError::task(format!("{}: {e}", w.display())))?;
            let p = d2.join("accuracy.png");
            ifx_learn::plot::accuracy_png(&accs, 0.95, &p)?;
            Ok((w, p))
        })
        .await
        .map_err(|e| TaskError::task(e.to_string()))??;
        info!(task = id, final_accuracy = final_acc, weights = %weights.display(), plot = %plot.display(),
            secs = started.elapsed().as_secs_f64(), "federated task done");
        self.update(&id, |s| {
            s.final_accuracy = final_acc;
            s.weights = Some(weights.display().to_string());
            s.plot = Some(plot.display().to_string());
        });
        Ok(())
    }
}
