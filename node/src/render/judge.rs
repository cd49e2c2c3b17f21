//! A verifier's side of verified delivery (issue #21): it reads job owners' evidence of bad
//! tiles from the ledger, checks what settlement checks (the worker's signature, the Merkle
//! opening) and that the accuser paid for that job, re-renders the one opened sub-tile on the
//! CPU reference and writes its ruling. Evidence of a wrong inference batch (issue #20) is judged
//! the same way: the verifier fetches the model's weights from the accuser (by hash), runs the
//! batch and compares the logits by `infer::compare`; an accuser that does not serve the
//! weights gets no ruling, and its evidence lapses. Settlement slashes the worker when verifiers holding more
//! than half of the verifier stake rule it guilty (`ifx_protocols::settle::faults`).
//!
//! Limits, so evidence cannot become a way to make verifiers render for free: only evidence
//! whose author has a payment for the job in this node's ledger is judged (its burn paid for
//! the work the sub-tile samples), at most [`PER_AUTHOR_EPOCH`] pieces per author and epoch,
//! and at most [`PER_ROUND`] re-renders every [`EVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ifx_protocols::NetworkConfig;
use ifx_protocols::ledger::body::{DeliveryFault, EntryBody, FaultRulings, InferFault, PaidWork, Ruling};
use ifx_protocols::ledger::{Entry, EntryKind};
use ifx_protocols::render::commit;
use ifx_render::Renderer;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ledger::LedgerHandle;
use crate::network::NetHandle;

/// How often the ledger is read for new evidence.
pub const EVERY: Duration = Duration::from_secs(3);
/// Most pieces of evidence judged per round (each a one-sub-tile re-render).
pub const PER_ROUND: usize = 16;
/// Most pieces of evidence judged per author and epoch: an honest owner files one per bad
/// tile and stops giving the worker tiles, so a handful per job is all it ever needs.
pub const PER_AUTHOR_EPOCH: u32 = 8;

/// What the judge needs.
pub struct Judge {
    pub ledger: LedgerHandle,
    pub net: NetHandle,
    pub key: SigningKey,
    pub network: NetworkConfig,
    /// Where a job's assets are fetched to (from the accuser, who owns the job).
    pub fetches: crate::blob::AssetFetches,
}

/// A piece of evidence: a bad tile or a wrong inference batch.
#[derive(Clone, Debug)]
pub(crate) enum Evidence {
    Tile(Box<DeliveryFault>),
    Batch(Box<InferFault>),
}

impl Evidence {
    fn worker(&self) -> [u8; 32] {
        match self {
            Evidence::Tile(f) => f.worker,
            Evidence::Batch(f) => f.worker,
        }
    }
}

/// Why a piece of evidence is not judged (no ruling is written: settlement refuses it too, or
/// it was not paid for).
fn admissible(e: &Entry, ledger: &ifx_protocols::ledger::Ledger) -> Result<Evidence, String> {
    let (ev, job) = match EntryBody::of(e) {
        Ok(EntryBody::DeliveryFault(f)) => {
            f.check()?;
            let job = f.job;
            (Evidence::Tile(f), job)
        }
        Ok(EntryBody::InferFault(f)) => {
            f.check()?;
            let job = f.job;
            (Evidence::Batch(f), job)
        }
        _ => return Err("does not decode".into()),
    };
    if ev.worker() == e.author {
        return Err("an owner accusing itself".into());
    }
    // Paid for exactly the work the evidence shows (settlement's rule, `settle::faults`).
    let fits = |work: &PaidWork| match &ev {
        Evidence::Tile(f) => f.paid_by(work),
        Evidence::Batch(f) => f.paid_by(work),
    };
    let paid = ledger.chain(&e.author).iter().any(|p| {
        p.kind == EntryKind::JobPayment
            && matches!(EntryBody::of(p), Ok(EntryBody::JobPayment(pay)) if pay.job == job && fits(&pay.work))
    });
    if !paid {
        return Err("its author has no payment for that job".into());
    }
    Ok(ev)
}

/// Re-executes an evidence's batch with the model its accuser serves: `Ok(true)` when the
/// worker's logits do not match (guilty).
pub(crate) async fn rule_batch(net: &NetHandle, accuser: &[u8; 32], f: &InferFault) -> Result<(bool, String), String> {
    let peer = crate::network::author_peer_id(accuser).ok_or("the accuser has no peer id")?;
    let bytes = crate::fl::fetch_blob(net, peer, f.model.weights).await.map_err(|e| format!("the model: {e}"))?;
    let (arch, inputs) = (f.model.arch, f.inputs.clone());
    let mine = tokio::task::spawn_blocking(move || -> Result<Vec<f32>, String> {
        let params = ifx_protocols::infer::weights_of(arch, &bytes).map_err(|e| e.to_string())?;
        let m = ifx_learn::infer::Model::load(arch, &params).map_err(|e| e.to_string())?;
        m.forward(&inputs).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(match ifx_protocols::infer::compare(&mine, &f.outputs) {
        Ok(a) => (false, format!("agrees with the re-execution ({a:?})")),
        Err(why) => (true, why),
    })
}

/// How long a judge waits for a job's assets from its accuser.
const ASSET_WAIT: Duration = Duration::from_secs(60);

/// Re-renders the opened sub-tile on the CPU reference: `Ok(true)` when it does not match
/// (guilty). A job's assets must be in `blobs` (fetched from the accuser first).
///
/// Not on the node's GPU: one 8 x 8 sub-tile is at most 2^18 paths (64 pixels at the 4,096
/// spp a 64 x 64 tile may have), well under a second on a CPU, while a GPU renderer compiles
/// the kernel for every piece of evidence. On a software adapter (lavapipe) that compile is a
/// JIT of the whole path tracer, which a verifier with nothing to judge never runs: in the
/// attack run (a faker's evidence to judge against a baseline without one) the verifiers
/// peaked at 1.55x their baseline memory, over the 1.5x limit, once point lights made the kernel
/// bigger. The spot check's tolerance covers a GPU worker against the CPU, as it does for owners.
fn rule(f: &DeliveryFault, blobs: Option<&ifx_storage::BlobStore>) -> Result<(bool, String), String> {
    let at = f.sub_tile()?;
    let s = f.spec.settings();
    let scene = super::job_scene(&f.spec, blobs).map_err(|e| e.to_string())?;
    let r = Renderer::new(&scene, &s, ifx_protocols::render::Backend::Cpu).map_err(|e| e.to_string())?;
    let mine = r.render_tile(&s, at).map_err(|e| e.to_string())?;
    let local = ifx_protocols::render::Tile { x: 0, y: 0, w: at.w, h: at.h };
    Ok(match commit::compare(local, &f.bytes, &mine) {
        Ok(()) => (false, "matches the re-render".into()),
        Err(why) => (true, why),
    })
}

/// Evidence waiting for a ruling, in ledger order, with what [`admissible`] said of it.
type Found = Vec<(Arc<Entry>, Result<Evidence, String>)>;

/// What to re-render this round: up to [`PER_ROUND`] admissible pieces, each author's past
/// [`PER_AUTHOR_EPOCH`] in an epoch dropped for good (both marked `ruled`, never looked at
/// again). Inadmissible pieces take no slot (their payment may still arrive by sync): a key
/// that writes many of them must not keep a paying owner's evidence from its ruling.
fn select(
    found: Found,
    judged: &mut BTreeMap<(u64, [u8; 32]), u32>,
    ruled: &mut BTreeSet<[u8; 32]>,
) -> Vec<(Arc<Entry>, Evidence)> {
    let mut out = Vec::new();
    for (e, f) in found {
        if out.len() == PER_ROUND {
            break;
        }
        let f = match f {
            Ok(f) => f,
            Err(why) => {
                debug!(fault = hex::encode(&e.id()[..6]), reason = why, "evidence not judged");
                continue;
            }
        };
        ruled.insert(e.id());
        let n = judged.entry((e.epoch, e.author)).or_default();
        *n += 1;
        if *n > PER_AUTHOR_EPOCH {
            warn!(
                author = hex::encode(&e.author[..6]),
                "evidence past the author's {PER_AUTHOR_EPOCH} per epoch; not judged"
            );
            continue;
        }
        out.push((e, f));
    }
    out
}

impl Judge {
    /// Judges evidence until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let me = self.key.verifying_key().to_bytes();
        // What this verifier already ruled on (its own chain, across restarts).
        let mut ruled: BTreeSet<[u8; 32]> = self
            .ledger
            .with(|s| s.ledger().chain(&me))
            .iter()
            .filter_map(|e| match EntryBody::of(e) {
                Ok(EntryBody::FaultRulings(r)) => Some(r.rulings.into_iter().map(|r| r.fault)),
                _ => None,
            })
            .flatten()
            .collect();
        let mut judged: BTreeMap<(u64, [u8; 32]), u32> = BTreeMap::new();
        let mut read_at: Option<([u8; 32], u64)> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            let now = self.network.epoch_at(crate::unix_time_us() / 1000);
            judged.retain(|(epoch, _), _| *epoch + 1 >= now);
            // Evidence of this epoch and the last (a fault filed late in an epoch is read in the
            // next one), from the ledger in memory, only when it changed.
            let root = self.ledger.with(|s| s.ledger().root());
            if read_at == Some((root, now)) {
                continue;
            }
            let found: Found = self.ledger.with(|s| {
                let l = s.ledger();
                l.iter_sorted()
                    .filter(|e| {
                        matches!(e.kind, EntryKind::DeliveryFault | EntryKind::InferFault)
                            && e.epoch + 1 >= now
                            && !ruled.contains(&e.id())
                    })
                    .map(|e| {
                        let f = admissible(&e, l);
                        (e, f)
                    })
                    .collect()
            });
            // Read again next round while evidence waits (past the round's cap, or its payment
            // not here yet).
            read_at = found.is_empty().then_some((root, now));
            let mut rulings = Vec::new();
            for (e, ev) in select(found, &mut judged, &mut ruled) {
                let worker = ev.worker();
                let ruling = match ev {
                    Evidence::Tile(f) => {
                        // The job's assets come from its owner, the accuser: one that does not
                        // serve them gets no ruling, and its evidence lapses.
                        let fetched = match crate::network::author_peer_id(&e.author) {
                            _ if f.spec.assets.is_empty() => Ok(()),
                            Some(peer) => self.fetches.ensure(&f.spec.assets, peer, ASSET_WAIT).await,
                            None => Err("the accuser has no peer id".into()),
                        };
                        let blobs = self.fetches.store().clone();
                        match fetched {
                            Ok(()) => tokio::task::spawn_blocking(move || rule(&f, Some(&blobs)))
                                .await
                                .unwrap_or_else(|err| Err(format!("the re-render stopped: {err}"))),
                            Err(e) => Err(format!("the job's assets: {e}")),
                        }
                    }
                    Evidence::Batch(f) => rule_batch(&self.net, &e.author, &f).await,
                };
                match ruling {
                    Ok((guilty, why)) => {
                        info!(
                            fault = hex::encode(&e.id()[..6]),
                            worker = hex::encode(&worker[..6]),
                            kind = e.kind.name(),
                            guilty,
                            reason = why,
                            "ruled on evidence of bad delivery"
                        );
                        rulings.push(Ruling { fault: e.id(), guilty });
                    }
                    Err(why) => warn!(kind = e.kind.name(), reason = why, "cannot judge the evidence"),
                }
            }
            if rulings.is_empty() {
                continue;
            }
            let body = FaultRulings { rulings }.encode();
            if let Err(e) =
                self.ledger.append_and_gossip(&self.net, &self.key, &self.network, EntryKind::FaultRulings, body).await
            {
                warn!(error = %e, "cannot write rulings");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ifx_protocols::render::job::JobSpec;
    use ifx_protocols::render::{Backend, Tile};

    /// Inadmissible evidence takes no slot of the round (a key writing many of them ahead of an
    /// honest owner's in ledger order used to fill all 16); one author gets 8 an epoch.
    #[test]
    fn a_round_renders_admissible_evidence_only_and_caps_each_author() {
        let body = fault().encode();
        let entry = |author: u8, seq: u64| {
            let k = SigningKey::from_bytes(&[author; 32]);
            Arc::new(Entry::sign(&k, "j", seq, [seq as u8; 32], 3, EntryKind::DeliveryFault, body.clone()).unwrap())
        };
        let f = Evidence::Tile(Box::new(fault()));
        let mut found: Found = (0..40).map(|i| (entry(1, i), Err("no payment".to_string()))).collect();
        found.push((entry(2, 0), Ok(f.clone())));
        let (mut judged, mut ruled) = (BTreeMap::new(), BTreeSet::new());
        let picked = select(found, &mut judged, &mut ruled);
        assert_eq!(picked.len(), 1, "the honest owner's evidence is judged");
        assert_eq!(ruled.len(), 1, "inadmissible evidence stays to be read again");
        let many: Found = (0..20).map(|i| (entry(3, i), Ok(f.clone()))).collect();
        let picked = select(many.clone(), &mut judged, &mut ruled);
        assert_eq!(picked.len(), PER_AUTHOR_EPOCH as usize);
        assert_eq!(ruled.len(), 1 + 20, "past the cap: dropped for good");
        let (mut judged, mut ruled) = (BTreeMap::new(), BTreeSet::new());
        let spread: Found = (0..40u8).map(|a| (entry(10 + a, 0), Ok(f.clone()))).collect();
        assert_eq!(select(spread, &mut judged, &mut ruled).len(), PER_ROUND);
        assert_eq!(ruled.len(), PER_ROUND, "the rest waits for the next round");
    }

    /// Any well-formed evidence (selection does not look inside it).
    pub(super) fn fault() -> DeliveryFault {
        DeliveryFault {
            job: [1; 16],
            spec: JobSpec {
                scene: "cornell".into(),
                scene_toml: None,
                assets: Vec::new(),
                width: 64,
                height: 64,
                spp: 4,
                max_bounces: 6,
                tile: 32,
                unpaid: false,
                frames: Default::default(),
            },
            tile: [0, 0, 32, 32],
            worker: [5; 32],
            root: [0; 32],
            sig: [0; 64],
            index: 0,
            bytes: vec![0; 768],
            proof: vec![[0; 32]; 4],
            reason: String::new(),
        }
    }

    /// A verifier's ruling re-renders the opened sub-tile with the real path tracer: every
    /// sub-tile of an honest tile is innocent, every sub-tile of the faker's (a sixty-fourth of
    /// the samples, signed as the job's) guilty.
    #[test]
    fn honest_sub_tiles_are_innocent_and_cheap_ones_guilty() {
        let spec = JobSpec {
            scene: "cornell".into(),
            scene_toml: None,
            assets: Vec::new(),
            width: 64,
            height: 64,
            spp: 64,
            max_bounces: 6,
            tile: 32,
            unpaid: false,
            frames: Default::default(),
        };
        let key = SigningKey::from_bytes(&[8; 32]);
        let t = Tile { x: 32, y: 32, w: 32, h: 32 };
        let scene = super::super::job_scene(&spec, None).unwrap();
        let r = Renderer::new(&scene, &spec.settings(), Backend::Cpu).unwrap();
        for (spp, guilty) in [(64, false), (1, true)] {
            let s = ifx_protocols::render::RenderSettings { spp, ..spec.settings() };
            let pixels = commit::encode_pixels(&r.render_tile(&s, t).unwrap());
            let c = commit::TileCommitment::of([1; 16], spec.hash(), t, &pixels);
            let tree = commit::tree(&pixels, t.w, t.h);
            let subs = commit::sub_tiles(t.w, t.h);
            let mut verdicts = Vec::new();
            for (i, sub) in subs.iter().enumerate() {
                let f = DeliveryFault {
                    job: [1; 16],
                    spec: spec.clone(),
                    tile: [t.x, t.y, t.w, t.h],
                    worker: key.verifying_key().to_bytes(),
                    root: c.root,
                    sig: c.sign(&key),
                    index: i as u32,
                    bytes: commit::sub_bytes(&pixels, t.w, *sub),
                    proof: tree.proof(i),
                    reason: String::new(),
                };
                assert_eq!(f.check(), Ok(()));
                verdicts.push(rule(&f, None).unwrap().0);
            }
            assert!(verdicts.iter().all(|g| *g == guilty), "spp {spp}: {verdicts:?}");
        }
    }
}
