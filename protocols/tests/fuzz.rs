//! Every decoder of peer input, fed mutated valid messages and random bytes (issue #16): none
//! may panic, whatever it is given. `IFX_FUZZ_CASES` sets the inputs per decoder (default
//! 20,000 so that CI stays quick; the figures in docs/SECURITY.md are from 1,000,000):
//!
//! ```text
//! IFX_FUZZ_CASES=1000000 cargo test --release --workspace --test fuzz -- --nocapture
//! ```
//!
//! The mutations are what a hostile peer would try first: flipped bits, bytes set to the
//! varint markers (250..=255) and extremes, insertions and deletions that shift every length
//! prefix, truncations, appended junk, splices of two valid messages, and pure random bytes.

use ed25519_dalek::SigningKey;
use ifx_protocols::heartbeat::{Capacity, Heartbeat};
use ifx_protocols::ledger::body::{
    EntryBody, FlReceipt, PorVerdicts, RenderReceipt, StakeOp, StakeRole, WorkerVerdict,
};
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::{
    AuthorSummary, Entry, EntryKind, LivenessAttestation, PeerLiveness, SyncRequest, SyncResponse,
};
use ifx_protocols::{Kind, Role, SignedEnvelope};

const NET: &str = "fuzz";

/// xorshift64*: deterministic, so a failure names its case and reruns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        const SPECIAL: [u8; 8] = [0, 1, 0x7f, 0x80, 250, 251, 253, 255];
        if self.next().is_multiple_of(3) { SPECIAL[self.below(SPECIAL.len())] } else { self.next() as u8 }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if seeds.is_empty() || rng.next().is_multiple_of(8) {
        let most = if rng.next().is_multiple_of(4) { 70_000 } else { 600 };
        let n = rng.below(most);
        return (0..n).map(|_| rng.byte()).collect();
    }
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(9);
                for _ in 0..n {
                    v.insert(i, rng.byte());
                }
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(9)).min(len - i);
                v.drain(i..i + n);
            }
            4 => v.truncate(rng.below(len + 1)),
            5 => v.extend((0..1 + rng.below(64)).map(|_| rng.byte())),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
        }
    }
    v
}

fn cases() -> usize {
    std::env::var("IFX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn heartbeat(seq: u64) -> Heartbeat {
    Heartbeat {
        boot_unix_ms: 1,
        seq,
        sent_unix_us: 2,
        role: Role::Worker,
        capacity: Capacity {
            backend: "vulkan".into(),
            adapter: "a".into(),
            device_type: "cpu".into(),
            cores: 2,
            memory_mb: 9,
        },
        uptime_secs: 3,
        version: "0".into(),
        paused: false,
    }
}

fn entry(kind: EntryKind, body: Vec<u8>) -> Entry {
    Entry::sign(&key(), NET, 0, GENESIS_PREV, 0, kind, body).unwrap()
}

/// Runs `decode` on `cases()` inputs grown from `seeds`; returns how many it accepted.
fn fuzz(name: &str, seed: u64, seeds: Vec<Vec<u8>>, decode: impl Fn(&[u8]) -> bool) {
    let mut rng = Rng(seed | 1);
    let n = cases();
    let started = std::time::Instant::now();
    let mut accepted = 0usize;
    for _ in 0..n {
        let input = mutate(&mut rng, &seeds);
        accepted += decode(&input) as usize;
    }
    // The seeds themselves decode: the mutations start from real messages.
    assert!(seeds.iter().all(|s| decode(s)), "{name}: a valid seed does not decode");
    eprintln!("{name}: {n} inputs in {:.1} s, {accepted} accepted, no panic", started.elapsed().as_secs_f64());
}

#[test]
fn envelope_and_heartbeat() {
    let k = key();
    let seeds: Vec<Vec<u8>> = [0, 1, u64::MAX]
        .iter()
        .map(|s| SignedEnvelope::sign(&k, NET, Kind::Heartbeat, 5, heartbeat(*s).encode()).unwrap().encode())
        .collect();
    fuzz("envelope", 1, seeds.clone(), |b| {
        // Decoded envelopes go on to the signature check, as the router's do.
        SignedEnvelope::decode(b).map(|e| drop(e.verify(NET))).is_ok()
    });
    fuzz("heartbeat", 2, vec![heartbeat(0).encode(), heartbeat(u64::MAX).encode()], |b| Heartbeat::decode(b).is_ok());
}

#[test]
fn ledger_entry_and_bodies() {
    let receipt = RenderReceipt { job: [1; 16], tile: 3, worker: [2; 32], work_units: u64::MAX, signed: None };
    let verdicts = PorVerdicts {
        epoch: 4,
        workers: vec![WorkerVerdict {
            worker: [3; 32],
            passed: 1,
            failed: 2,
            timeouts: 3,
            mean_latency_ms: 4,
            benches: 1,
            ib_milli: 5,
            last_failure: "why".into(),
            proof: Some(proof()),
        }],
    };
    let bodies: Vec<(EntryKind, Vec<u8>)> = vec![
        (EntryKind::RenderReceipt, receipt.encode()),
        (EntryKind::PorVerdicts, verdicts.encode()),
        (EntryKind::Stake, StakeOp::Bond { amount: 7, role: StakeRole::Verifier }.encode()),
        (
            EntryKind::JobPayment,
            ifx_protocols::ledger::JobPayment {
                job: [7; 16],
                work: ifx_protocols::ledger::PaidWork::Render {
                    width: 64,
                    height: 64,
                    spp: 4,
                    max_bounces: 4,
                    tile: 32,
                    frames: [0, 0],
                },
                amount: 9,
            }
            .encode(),
        ),
        (
            EntryKind::Liveness,
            LivenessAttestation::split(3, 30, (0..40u8).map(|i| PeerLiveness { peer: [i; 32], seen: i as u64 }))[0]
                .encode(),
        ),
        (
            EntryKind::Seal,
            ifx_protocols::ledger::EpochSeal::split(4, [8; 32], 9, &[([1; 32], 3), ([2; 32], u64::MAX)]).unwrap()[0]
                .encode(),
        ),
        (
            EntryKind::FlReceipt,
            FlReceipt {
                task: [4; 16],
                round: 9,
                worker: [5; 32],
                update: [6; 32],
                accepted: false,
                work_units: 77,
                contribution_ppm: 0,
                reason: "cosine below the floor".into(),
            }
            .encode(),
        ),
    ];
    let seeds: Vec<Vec<u8>> = bodies.iter().map(|(k, b)| entry(*k, b.clone()).encode()).collect();
    fuzz("ledger entry", 3, seeds, |b| Entry::decode(b, NET).is_ok());
    for (i, (kind, body)) in bodies.into_iter().enumerate() {
        let kind_name = kind.name();
        fuzz(&format!("entry body {kind_name}"), 10 + i as u64, vec![body], move |b| {
            EntryBody::decode(kind, b).is_ok()
        });
    }
}

#[test]
fn ledger_sync_messages() {
    let req = SyncRequest {
        after: Some([1; 32]),
        until: None,
        summaries: (0..20u8)
            .map(|i| AuthorSummary { author: [i; 32], len: i as u64 * 1000, tip: [i; 32], fork: i as u32 })
            .collect(),
        max_bytes: u32::MAX,
        resume: Some(([2; 32], u64::MAX)),
    };
    fuzz("sync request", 4, vec![req.encode()], |b| SyncRequest::decode(b).is_ok());
    let resp = SyncResponse {
        entries: (0..5).map(|i| entry(EntryKind::Unknown(i), vec![i as u8; 40]).encode()).collect(),
        next: None,
    };
    fuzz("sync response", 5, vec![resp.encode()], |b| SyncResponse::decode(b).is_ok());
}

#[test]
fn por_render_and_fl_requests() {
    use ifx_protocols::por::wire::{CHALLENGE, Request, Response, settings_wire};
    let por = vec![
        Request::Render { id: [1; 16], scene: vec![1, 2, 3], settings: settings_wire(&CHALLENGE) }.encode(),
        Request::Open { id: [2; 16], indices: vec![0, 1, u32::MAX] }.encode(),
        Request::Bench { seed: u64::MAX }.encode(),
    ];
    fuzz("por request", 6, por, |b| Request::decode(b).is_ok());
    let answers = vec![
        Response::Committed { root: [3; 32], rgb8: vec![0; 300], render_us: 5, proof: proof() }.encode(),
        Response::Opened { openings: vec![(1, vec![2; 30], vec![[4; 32]; 3])] }.encode(),
        Response::Benched { rows: vec![[5; 32]; 4], claimed_us: u64::MAX, proof: proof() }.encode(),
    ];
    fuzz("por response", 7, answers, |b| Response::decode(b).is_ok());

    use ifx_protocols::render::job::{JobSpec, TileRequest, TileResponse};
    let spec = JobSpec {
        scene: "cornell".into(),
        scene_toml: None,
        assets: Vec::new(),
        width: 64,
        height: 64,
        spp: 4,
        max_bounces: 4,
        tile: 32,
        unpaid: false,
        frames: Default::default(),
    };
    let tile = TileRequest { job: [6; 16], spec, tile: [32, 0, 32, 32] };
    fuzz("tile request", 8, vec![tile.encode()], |b| TileRequest::decode(b).map(|t| drop(t.checked_tile())).is_ok());
    fuzz(
        "tile response",
        9,
        vec![TileResponse { pixels: vec![0; 48], error: String::new(), root: [1; 32], sig: [2; 64] }.encode()],
        |b| TileResponse::decode(b).is_ok(),
    );

    use ifx_protocols::fl::wire::FlRequest;
    let fl = vec![
        FlRequest::Join { task: [7; 16] }.encode(),
        FlRequest::Train {
            task: [8; 16],
            round: 2,
            spec: Default::default(),
            global: [9; 32],
            len: 1000,
            control: Some(([3; 32], 77)),
        }
        .encode(),
    ];
    fuzz("fl request", 20, fl, |b| FlRequest::decode(b).is_ok());

    use ifx_protocols::por::announce::Announcement;
    let a = Announcement {
        worker: [1; 32],
        challenge: "image".into(),
        passed: false,
        reason: "x".repeat(40),
        latency_ms: 9,
    };
    fuzz("por announcement", 21, vec![a.encode()], |b| Announcement::decode(b).is_ok());
}

fn proof() -> ifx_protocols::por::proof::AnswerProof {
    ifx_protocols::por::proof::AnswerProof { epoch: 3, challenge: [1; 32], answer: [2; 32], sig: [3; 64] }
}
