//! `ifx testnet` end to end: eight node processes on 127.0.0.1, one killed with SIGKILL mid-run;
//! the run must end on time with full discovery, heartbeat latency percentiles and the killed
//! node reported as not alive.

use std::process::Command;
use std::sync::Mutex;

use std::time::{Duration, Instant};

/// The testnets of this file run one at a time: each spawns 8-12 processes.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `ifx testnet ARGS --quiet` (ARGS split at spaces) with its base dir and report in `dir`;
/// returns the process output and the report (null when none was written).
fn testnet(args: &str, dir: &std::path::Path) -> (std::process::Output, serde_json::Value) {
    let report_path = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ifx"))
        .arg("testnet")
        .args(args.split_whitespace())
        .args(["--quiet", "--base-dir"])
        .arg(dir)
        .arg("--report")
        .arg(&report_path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&report_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (out, report)
}

#[test]
fn testnet_of_eight_with_a_sigkill_ends_on_time_and_reports() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let (out, report) = testnet(
        "--nodes 8 --verifiers 2 --cheaters 2 --duration 20 --kill 3@5 --render-size 256 --render-spp 64 --fl-rounds 0",
        tmp.path(),
    );
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!report.is_null(), "no report; stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "testnet failed:\n{stdout}\n{stderr}\n{report:#}");
    assert_eq!(report["ok"], true);
    // On time: never a hang. The run is 20 s; after it the harness waits for the render job
    // while it still finishes tiles, then at most two epochs, the seal grace, the roots wait and
    // the shutdown. The job alone took 44 s on this 2-core machine on 2026-12-02 (before and
    // after the hostile-peer work alike), so the bound is what the network was given: the job's
    // own time plus 40 s (it was a fixed 60 s, which a slow render alone came within 11 s of).
    let render_secs = report["render"]["secs"].as_f64().unwrap_or(0.0);
    assert!(
        took < Duration::from_secs_f64(40.0 + render_secs.max(20.0)),
        "took {took:?}, the render job {render_secs} s"
    );

    let discovery = report["discovery_secs"].as_f64().expect("discovery completed");
    assert!(discovery > 0.0 && discovery < 20.0, "{discovery}");
    let lat = &report["heartbeat_latency_ms"];
    let (p50, p99) = (lat["p50"].as_f64().unwrap(), lat["p99"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99, "{lat}");
    assert!(lat["samples"].as_u64().unwrap() > 8 * 7, "{lat}");

    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 8);
    for n in nodes {
        let i = n["index"].as_u64().unwrap();
        assert_eq!(n["alive"], i != 3, "node {i}: {n}");
        assert!(n["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
        assert!(n["peers_known"].as_u64().unwrap() >= 6, "node {i} knew too few peers: {n}");
        assert!(n["heartbeats_received"].as_u64().unwrap() > 0, "node {i}: {n}");
        if i != 3 {
            assert_eq!(n["stop"], "clean", "node {i}: {n}");
        }
    }
    assert_eq!(nodes[7]["role"], "verifier");
    assert_eq!(nodes[6]["role"], "verifier");
    assert_eq!(nodes[5]["role"], "worker");

    // The ledger: both verifiers attested several epochs and every live node holds the same set.
    let ledger = &report["ledger"];
    assert_eq!(ledger["converged"], true, "{ledger}");
    let entries = ledger["entries"].as_u64().unwrap();
    assert!(entries >= 4, "too few attestations: {ledger}");
    assert!(ledger["convergence_secs"].as_f64().unwrap() < 5.0, "{ledger}");
    for n in nodes.iter().filter(|n| n["alive"] == true) {
        assert_eq!(n["ledger_root"], ledger["root"], "{n}");
        assert_eq!(n["ledger_entries"].as_u64().unwrap(), entries);
    }
    // The store is readable offline once the node stopped.
    let out = Command::new(env!("CARGO_BIN_EXE_ifx"))
        .args(["ledger", "--data-dir"])
        .arg(tmp.path().join("node-0"))
        .args(["root", "--json"])
        .output()
        .unwrap();
    let root: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // It holds what the run ended on, or more: the verifiers write attestations and seals every
    // epoch, and one may reach node 0 between the report's last look and its stop (three
    // seconds apart at most; CI saw it once the verifiers also wrote link reports).
    let offline = root["entries"].as_u64().unwrap();
    assert!(offline >= entries, "{root} against {ledger}");
    if offline == entries {
        assert_eq!(root["root"], ledger["root"]);
    }

    // Proof of rendering: nodes 1 and 2 cheated (constant image, white noise) and were caught;
    // no honest worker failed, and checking cost the verifiers a small fraction of the renders.
    let por = &report["por"];
    let peer = |i: usize| nodes[i]["peer_id"].clone();
    let mut cheaters = vec![peer(1), peer(2)];
    cheaters.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(por["cheaters"], serde_json::Value::from(cheaters.clone()), "{por}");
    assert_eq!(por["caught"], serde_json::Value::from(cheaters), "{por}");
    assert_eq!(por["honest_failed"].as_array().unwrap().len(), 0, "{por}");
    assert!(por["passed"].as_u64().unwrap() >= 5, "{por}");
    assert!(por["verify_cost_ratio"].as_f64().unwrap() < 0.02, "{por}");

    // The render job: node 3 was killed while rendering; its tiles went to others and the
    // job completed, with one receipt per tile.
    let render = &report["render"];
    assert_eq!(render["ok"], true, "{render}");
    assert_eq!(render["tiles"], 64);
    assert_eq!(render["receipts"], 64);
    assert!(render["reassigned"].as_u64().unwrap() >= 1, "no tile was re-assigned: {render}");
    let by_worker = render["tiles_by_worker"].as_object().unwrap();
    assert!(by_worker.len() >= 4, "{render}");
    assert_eq!(by_worker.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 64);
    // The assembled PNG is exactly the image rendered whole here as the workers render
    // (`Auto`: a hardware GPU if there is one, else the CPU reference).
    let png = image::open(render["png"].as_str().unwrap()).unwrap().to_rgb8();
    use ifx_render::{Backend, RenderSettings, Renderer, builtin, render_image};
    let s = RenderSettings { width: 256, height: 256, spp: 64, max_bounces: 6, tile: 256 };
    let local = render_image(&Renderer::new(&builtin::cornell(), &s, Backend::Auto).unwrap(), &s, |_, _| {}).unwrap();
    assert!(png.as_raw() == &local.to_rgb8(), "distributed tiles differ from a local render");
    // Beside it, the linear image (OpenEXR) holds the same radiance bit for bit.
    let exr = image::open(ifx_render::png::exr_path(std::path::Path::new(render["png"].as_str().unwrap())))
        .unwrap()
        .into_rgb32f();
    let linear: Vec<f32> = local.rgb.iter().flatten().copied().collect();
    assert!(exr.as_raw() == &linear, "the EXR differs from the local render's radiance");
    assert_eq!(report["faults"][0]["node"], 3);
    assert_eq!(report["faults"][0]["kind"], "sigkill");

    // Settlement: every running node computed the same root for every epoch sealed on all of
    // them; both cheaters were slashed, no honest node was; the governance change proposed at
    // the start (workers_bps = 7000) was in force from exactly the epoch it named.
    let st = &report["settlement"];
    assert_eq!(st["ok"], true, "{st:#}");
    assert_eq!(st["agreed"], true, "{st:#}");
    assert!(st["sealed_epochs"].as_array().unwrap().len() >= 3, "{st:#}");
    let mut slashed: Vec<&str> = st["slashed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    slashed.sort();
    let mut cheaters = vec![peer(1), peer(2)];
    cheaters.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(serde_json::json!(slashed), serde_json::json!(cheaters), "{st:#}");
    assert_eq!(st["honest_slashed"].as_array().unwrap().len(), 0);
    let gov = &st["governance"];
    assert_eq!(gov["reached"], true, "{gov}");
    assert_eq!(gov["applied_at"], gov["from_epoch"], "{gov}");
    // Visible in the payouts: the worker pool paid 81.08% of the mint before, 70% from then on.
    assert_eq!(gov["paid_workers_before"].as_u64(), Some(10_000_000_000 * 8_108 / 10_000), "{gov}");
    assert_eq!(gov["paid_workers_at"].as_u64(), Some(10_000_000_000 * 7_000 / 10_000), "{gov}");
    assert!(st["minted"].as_u64().unwrap() > 0);
    // Every honest worker that stayed up earned something; the roots agree node by node.
    for i in [0, 4, 5] {
        let id = nodes[i]["peer_id"].as_str().unwrap();
        assert!(st["payouts"][id].as_u64().unwrap_or(0) > 0, "node {i} earned nothing: {st:#}");
    }
    // Issue #21: node 0, the artist, paid for its render and inference jobs (the burn as
    // settled equals the prices), workers earned by paid delivery, and node 0 earned the
    // artists' reward for it.
    assert!(report["render"]["paid"].as_u64().unwrap() > 0, "{:#}", report["render"]);
    assert!(report["infer"]["paid"].as_u64().unwrap() > 0, "{:#}", report["infer"]);
    let paid = st["job_paid"].as_u64().unwrap() + st["infer_paid"].as_u64().unwrap();
    assert_eq!(st["artist_burned"].as_u64(), Some(paid), "{st:#}");
    let econ = st["economics"].as_array().unwrap();
    assert!(econ.iter().any(|e| e["delivered"].as_u64().unwrap() > 0), "{st:#}");
    assert!(econ.iter().any(|e| e["paid_artists"].as_u64().unwrap() > 0), "{st:#}");
    assert!(econ.iter().any(|e| e["net_supply"].as_i64().unwrap() < 0), "the job's burn outweighs its epoch's mint");
    // `ifx rewards` reads the same settlement offline from a stopped node's store.
    let first = st["sealed_epochs"][0].as_u64().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ifx"))
        .args(["rewards", "--data-dir"])
        .arg(tmp.path().join("node-0"))
        .args(["--epoch", &first.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["root"], st["roots"]["0"][first.to_string()], "{r:#}");
}

#[test]
fn testnet_federated_task_reaches_the_target_despite_a_poisoner() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet("--nodes 8 --verifiers 2 --poisoners 1 --duration 20 --render-size 0", tmp.path());
    let fl = &report["fl"];
    assert!(out.status.success(), "{}\n{fl:#}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(fl["ok"], true, "{fl:#}");
    assert_eq!(fl["rounds"], 60);
    assert!(fl["final_accuracy"].as_f64().unwrap() >= 0.95, "{fl:#}");
    assert_eq!(fl["poisoners"], fl["poisoners_caught"], "{fl:#}");
    assert!(fl["audits_matched"].as_u64().unwrap() >= 60, "{fl:#}");
    assert_eq!(fl["honest_banned"].as_array().unwrap().len(), 0, "{fl:#}");
    assert_eq!(report["settlement"]["agreed"], true);
}

#[test]
fn testnet_rejects_bad_options() {
    for (args, needle) in [
        (&["--nodes", "1"][..], "at least 2"),
        (&["--nodes", "4", "--kill", "0@1"][..], "bootnode"),
        (&["--nodes", "4", "--kill", "2@30", "--duration", "5"][..], "before --duration"),
        (&["--nodes", "4", "--kill", "2"][..], "IDX@SECS"),
        (&["--nodes", "4", "--poisoners", "2"][..], "no honest federated worker"),
        (&["--nodes", "4", "--restart", "2@5"][..], "not killed before"),
        (&["--nodes", "4", "--partition", "1,2@5"][..], "IDX,IDX"),
        (&["--nodes", "4", "--partition", "9@1-2"][..], "below 4"),
        (
            &["--scenario", "nope"][..],
            "not a built-in scenario (smoke, byzantine, chaos, scale, scale-byzantine, home-nat, capacity, owner-restart)",
        ),
        (&["--scenario", "home-nat", "--in-process"][..], "network namespaces runs node processes"),
        (&["--nodes", "4", "--loss", "101"][..], "percentage"),
        (&["--nodes", "4", "--render-scene", "/no/such/scene.toml"][..], "needs a render job"),
        (&["--nodes", "4", "--owner-restart", "--render-size", "0"][..], "--owner-restart needs a render job"),
        (&["--nodes", "4", "--attack", "nope"][..], "one of hb-overflow"),
        (&["--nodes", "4", "--attack", "all", "--in-process"][..], "cannot be used with --in-process"),
        (&["--nodes", "4", "--attack", "all", "--baseline-report", "/nonexistent.json"][..], "--baseline-report"),
        (&["--nodes", "4", "--fl-rounds", "5", "--fl-data", "/nonexistent.csv"][..], "no such file"),
        (&["--nodes", "4", "--fl-scaffold", "2"][..], "--fl-scaffold: scaffold: 2 is outside [0, 1]"),
        (&["--nodes", "4", "--fl-scaffold", "NaN"][..], "--fl-scaffold: scaffold: NaN"),
        (&["--nodes", "4", "--fl-copiers", "2"][..], "fewer than two unique shards"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ifx")).arg("testnet").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn every_cheat_mode_is_caught_and_no_honest_worker_fails() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Nodes 1..=7 cheat, one mode each: constant, white-noise, old-tile, quarter-res,
    // no-watermark, fake-25 (image challenges) and forged-time (benchmarks); nodes 8 and 9
    // answer inference batches wrongly (infer-random, infer-cheap) and PoR honestly.
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet(
        "--nodes 12 --verifiers 2 --cheaters 7 --infer-cheaters 2 --duration 35 --render-size 0 --fl-rounds 0",
        tmp.path(),
    );
    let por = &report["por"];
    assert!(out.status.success(), "{}\n{por:#}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(por["cheaters"].as_array().unwrap().len(), 7);
    assert_eq!(por["caught"], por["cheaters"], "{por}");
    assert_eq!(por["honest_failed"].as_array().unwrap().len(), 0, "{por}");
    // Honest workers (0, 8, 9) passed challenges.
    for i in [0, 8, 9] {
        let id = report["nodes"][i]["peer_id"].as_str().unwrap();
        assert!(por["per_node"][id]["passed"].as_u64().unwrap() >= 1, "node {i}: {por}");
    }
    // Both inference cheaters caught with evidence (heard before the job went in, so each got
    // batches) and slashed; no honest worker caught; the PoR cheaters served inference.
    let infer = &report["infer"];
    assert_eq!(infer["ok"], true, "{infer:#}");
    for i in [8, 9] {
        let id = report["nodes"][i]["peer_id"].as_str().unwrap();
        assert!(infer["caught"][id].is_string(), "node {i}: {infer:#}");
        assert!(report["settlement"]["slashed"].as_array().unwrap().iter().any(|s| s == id), "node {i} not slashed");
    }
    assert_eq!(infer["idle_cheaters"].as_array().unwrap().len(), 0, "{infer:#}");
    assert!(infer["served_by"].as_u64().unwrap() >= 2, "{infer:#}");
}

/// The CI scenario of issue #8, `--scenario chaos`: a cheater, a poisoner, 2% gossip loss, a slow
/// worker, a verifier killed and restarted, and a partition (an FL worker and the other verifier
/// cut off) that heals; every condition of the verdict must hold.
#[test]
fn ci_scenario_with_a_restart_and_a_healed_partition_passes_the_verdict() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet("--scenario chaos", tmp.path());
    assert!(out.status.success(), "{}\n{:#}", String::from_utf8_lossy(&out.stdout), report["failures"]);
    assert_eq!(report["ok"], true);
    // The restarted verifier caught up to the common root and kept every entry of its own.
    let r = &report["restarts"][0];
    assert_eq!(r["node"], 6);
    assert_eq!(r["caught_up"], true, "{r}");
    assert!(r["own_entries_after"].as_u64().unwrap() >= r["own_entries_before"].as_u64().unwrap(), "{r}");
    assert_eq!(report["nodes"][6]["ledger_root"], report["ledger"]["root"]);
    // The partition split the ledger, then every node converged again (seconds reported).
    let p = &report["partitions"][0];
    assert_eq!(p["diverged"], true, "{p}");
    let secs = p["converged_after_secs"].as_f64().expect("converged after the heal");
    assert!(secs < 10.0, "{p}");
    // The rest of the verdict: cheater slashed, poisoner excluded, FL on target, settlement agreed.
    assert_eq!(report["por"]["caught"], report["por"]["cheaters"]);
    assert_eq!(report["fl"]["ok"], true, "{:#}", report["fl"]);
    assert_eq!(report["settlement"]["ok"], true, "{:#}", report["settlement"]);
    // The visual report renders in a browser: charts and the image.
    check_html_report(tmp.path(), &report);
}

/// Issue #18, `--scenario capacity`: two of four workers do everything four times as slowly.
/// The job handed out by capacity must finish within 1.3x of its ideal (the verdict: its
/// tiles over the workers' summed pace in the job). The same job first come first served is
/// measured beside it, and the slow workers get fewer tiles than the fast ones under both.
#[test]
fn capacity_scenario_finishes_near_its_ideal_beside_first_come_first_served() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet("--scenario capacity --duration 40", tmp.path());
    let r = &report["render"];
    assert!(out.status.success(), "{}\n{:#}\n{r:#}", String::from_utf8_lossy(&out.stdout), report["failures"]);
    let fifo = &r["fifo"];
    assert_eq!((r["schedule"].as_str(), fifo["schedule"].as_str()), (Some("capacity"), Some("fifo")));
    assert_eq!((r["ok"].as_bool(), fifo["ok"].as_bool()), (Some(true), Some(true)), "{r:#}");
    for job in [r, fifo] {
        let ratio = job["makespan_secs"].as_f64().unwrap() / job["ideal_secs"].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio > 0.5, "{job:#}");
        let tiles = |node: usize| {
            let peer = report["nodes"][node]["peer_id"].as_str().unwrap();
            job["workers"][peer]["tiles"].as_u64().unwrap_or(0)
        };
        let (slow, fast) = (tiles(1).max(tiles(2)), tiles(3).min(tiles(4)));
        assert!(slow < fast, "slow workers {slow} tiles, fast {fast}: {job:#}");
    }
    assert!(r["makespan_secs"].as_f64().unwrap() <= 1.3 * r["ideal_secs"].as_f64().unwrap(), "{r:#}");
    // The summary sets the two side by side.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("render schedule capacity: makespan") && stdout.contains("render schedule fifo"),
        "{stdout}"
    );
    // Issue #18 item 7: `ifx verify` passed the artist's image against node 0's ledger (every
    // tile signed, receipts sealed, a sample re-rendered) and named the one tile the harness
    // altered in a copy.
    let c = &report["certificate"];
    assert_eq!((c["honest_ok"].as_bool(), c["altered_named"].as_bool()), (Some(true), Some(true)), "{c:#}");
    assert!(
        c["honest_output"].as_str().unwrap().contains("VERIFIED: every tile signed by its worker (4 workers)"),
        "{c:#}"
    );
    let altered = c["altered_output"].as_str().unwrap();
    let tile = c["altered_tile"].as_u64().unwrap();
    assert!(altered.contains(&format!("tile {tile} (")) && altered.contains("not what worker"), "{altered}");
}

/// Issue #18's must-show, `--scenario owner-restart` with `showcase.glb` (built by
/// `scripts/fixtures/gltf_scene.py` with Blender: a textured, normal-mapped floor, glass, a
/// GGX metal box, a point light, an animated camera; one GLB the owner holds as an asset and
/// the workers fetch by hash), rendered as frames 11 to 13 into a PNG sequence: the job's owner
/// (node 0) is killed with SIGKILL once half its tiles are kept (mid-sequence), and started
/// again. The job resumes and finishes; the frames written and the tiles kept before the kill
/// are not asked for again (the workers' own counters bound every repeat by the copies,
/// re-assignments and tiles in flight at the kill); `ifx verify` passes the last frame, which
/// it would fail for a tile receipted twice; and every frame matches the same frame rendered
/// here on the CPU reference: bit for bit when the workers render on the CPU (no hardware
/// GPU, as in CI), else every 8x8 sub-tile within the spot check's tolerance and the 8-bit
/// PNGs identical but for a rare pixel.
#[test]
fn a_sequence_whose_owner_is_killed_mid_job_resumes_and_renders_each_tile_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let scene = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/gltf/showcase.glb");
    let scene = scene.to_str().unwrap();
    let (out, report) = testnet(
        &format!(
            "--scenario owner-restart --duration 30 --render-scene {scene} --render-frames 11..13 --render-size 192"
        ),
        tmp.path(),
    );
    let r = &report["render"];
    assert!(out.status.success(), "{}\n{:#}\n{r:#}", String::from_utf8_lossy(&out.stdout), report["failures"]);
    assert_eq!((r["scene"].as_str(), r["assets"].as_u64()), (Some("showcase.glb"), Some(1)), "{r:#}");
    assert_eq!(
        (r["frames"][0].as_u64(), r["frames"][1].as_u64(), r["frames_done"].as_u64()),
        (Some(11), Some(13), Some(3)),
        "{r:#}"
    );
    let o = &r["owner_restart"];
    let tiles = r["tiles"].as_u64().unwrap();
    assert_eq!(tiles, 3 * 36, "three frames of 6 x 6 tiles");
    let (restored, rendered, allowance) =
        (o["restored_tiles"].as_u64().unwrap(), o["rendered"].as_u64().unwrap(), o["allowance"].as_u64().unwrap());
    assert_eq!((o["killed"].as_bool(), o["resumed"].as_u64()), (Some(true), Some(1)), "{o:#}");
    assert!(restored * 2 >= tiles - 1 && restored < tiles, "{o:#}");
    assert!(rendered >= tiles && rendered <= tiles + allowance, "{o:#}");
    assert_eq!((r["tiles_done"].as_u64(), r["receipts"].as_u64()), (Some(tiles), Some(tiles)), "{r:#}");
    let c = &report["certificate"];
    assert!(c["honest_ok"].as_bool() == Some(true) || c["honest_pending"].as_bool() == Some(true), "{c:#}");
    assert!(c["honest_output"].as_str().unwrap().contains("frame 13 of 11..=13"), "{c:#}");
    assert!(!c["honest_output"].as_str().unwrap().contains("receipted"), "{c:#}");
    // The same frames (the scenario's 32 spp), rendered here.
    let local = tmp.path().join("local");
    let done = Command::new(env!("CARGO_BIN_EXE_ifx"))
        .args(["render", "--scene", scene, "--width", "192", "--height", "192", "--spp", "32", "--bounces", "6"])
        .args(["--tile", "32", "--backend", "cpu", "--frames", "11..13", "--out"])
        .arg(&local)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let seq = std::path::Path::new(r["sequence"].as_str().unwrap());
    let cpu_only = ifx_render::gpu::adapter_summary("").map_or(true, |a| a.class == "cpu");
    let exr = |p: &std::path::Path| image::open(p.with_extension("exr")).unwrap().into_rgb32f();
    let mut means = Vec::new();
    for f in ["0011.png", "0012.png", "0013.png"] {
        let (png, here_png) = (seq.join(f), local.join(f));
        let (job, here) = (exr(&png), exr(&here_png));
        assert_eq!(job.dimensions(), here.dimensions());
        let (w, h) = job.dimensions();
        let px = |i: &image::Rgb32FImage, t: ifx_protocols::render::Tile| -> Vec<[f32; 3]> {
            (t.y..t.y + t.h)
                .flat_map(|y| (t.x..t.x + t.w).map(move |x| (x, y)))
                .map(|(x, y)| i.get_pixel(x, y).0)
                .collect()
        };
        for sub in ifx_protocols::render::commit::sub_tiles(w, h) {
            let theirs = ifx_protocols::render::commit::encode_pixels(&px(&job, sub));
            let at = ifx_protocols::render::Tile { x: 0, y: 0, w: sub.w, h: sub.h };
            let checked = ifx_protocols::render::commit::compare(at, &theirs, &px(&here, sub));
            assert!(checked.is_ok(), "{f} sub-tile {sub:?}: {checked:?}");
        }
        let (a, b) = (image::open(&png).unwrap().into_rgb8(), image::open(&here_png).unwrap().into_rgb8());
        let differ = a.pixels().zip(b.pixels()).filter(|(x, y)| x != y).count();
        // Without a hardware GPU every worker renders on the CPU reference (`Auto` does not
        // use a software adapter): the frames are then the local ones bit for bit.
        if cpu_only {
            assert_eq!(job.as_raw(), here.as_raw(), "{f}: the workers rendered on the CPU; the frame must be equal");
        }
        assert!(
            differ * 1000 <= (w * h) as usize,
            "{f}: {differ} of {} PNG pixels differ from the local render",
            w * h
        );
        means.push(here.pixels().map(|p| p.0[0] as f64).sum::<f64>());
    }
    assert!(means.windows(2).all(|m| m[0] != m[1]), "the frames differ: the camera moves ({means:?})");
}

/// The verdict can fail: with the only verifier killed at once nothing is challenged or sealed,
/// and the run says so and exits non-zero.
#[test]
fn a_network_without_verifiers_fails_the_verdict_and_names_why() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet(
        "--nodes 4 --verifiers 1 --cheaters 1 --duration 10 --kill 3@0 --render-size 0 --fl-rounds 0",
        tmp.path(),
    );
    assert!(!out.status.success());
    assert_eq!(report["ok"], false);
    let failures = report["failures"].to_string();
    assert!(failures.contains("cheaters"), "{failures}");
    assert!(failures.contains("settlement"), "{failures}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL: "));
}

/// A full-page screenshot of `html` by headless Chromium (installed by scripts/setup.sh).
fn screenshot(html: &std::path::Path, png: &std::path::Path) -> image::RgbImage {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1600"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium is not installed: run scripts/setup.sh");
    assert!(png.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    image::open(png).unwrap().to_rgb8()
}

/// The HTML report opened in headless Chromium shows its charts (pixels in the chart colours)
/// and the rendered image (the page has thousands more colours with it than without it).
fn check_html_report(dir: &std::path::Path, report: &serde_json::Value) {
    let html = std::path::PathBuf::from(report["html"].as_str().expect("an HTML report"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("data:image/png;base64,") && page.matches("<svg").count() >= 5);
    let shot = screenshot(&html, &dir.join("shot.png"));
    let near = |p: &image::Rgb<u8>, hex: &str| {
        let c: Vec<i32> = (0..3).map(|i| i32::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()).collect();
        (0..3).all(|i| (p[i] as i32 - c[i]).abs() <= 24)
    };
    let line = shot.pixels().filter(|p| near(p, "#1f77b4")).count();
    let bars = shot.pixels().filter(|p| near(p, "#2ca02c")).count();
    assert!(line > 300 && bars > 1000, "charts not drawn: {line} line pixels, {bars} bar pixels");
    let colours = |img: &image::RgbImage| img.pixels().map(|p| p.0).collect::<std::collections::HashSet<_>>().len();
    let without = dir.join("no-image.html");
    let stripped = page.replace(r#"<img id="render""#, r#"<img hidden id="render""#);
    std::fs::write(&without, stripped).unwrap();
    let plain = screenshot(&without, &dir.join("shot-no-image.png"));
    let (with_img, without_img) = (colours(&shot), colours(&plain));
    assert!(
        with_img > without_img + 1000,
        "the rendered image is not on the page: {with_img} vs {without_img} colours"
    );
}

/// `--in-process`: the same run and report with every node inside the harness process, over
/// libp2p's memory transport.
#[test]
fn in_process_testnet_runs_the_same_verdict() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) =
        testnet("--in-process --nodes 10 --verifiers 2 --duration 20 --render-size 64 --fl-rounds 0", tmp.path());
    assert!(out.status.success(), "{}\n{:#}", String::from_utf8_lossy(&out.stdout), report["failures"]);
    assert_eq!(report["memory"]["in_process"], true);
    assert!(report["memory"]["harness_peak_rss_mb"].as_f64().unwrap() > 10.0);
    assert_eq!(report["ledger"]["converged"], true);
    assert_eq!(report["settlement"]["agreed"], true);
    assert!(report["nodes"].as_array().unwrap().iter().all(|n| n["alive"] == true && n["stop"] == "clean"));
    // Every node logs to one file in the base dir (not over the progress bar), and the report
    // points there.
    let log = tmp.path().join("nodes.log");
    assert!(log.is_file(), "no {}", log.display());
    assert!(report["nodes"].as_array().unwrap().iter().all(|n| n["log"] == log.display().to_string()), "{report:#}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(" WARN "), "node warnings reached the terminal");
}

/// Issue #16, the CI-sized subset of `--attack` (the whole matrix, `--attack all`, is the
/// documented scenario in docs/SECURITY.md): five attacks in one testnet after a baseline run.
/// The verdict must hold (no honest node failed or slashed, one ledger root, every epoch
/// sealed) and the attacks section must show each attack happened and was contained.
#[test]
fn attacks_in_one_testnet_leave_the_honest_network_whole() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet(
        "--nodes 6 --verifiers 2 --duration 24 --render-size 128 --render-spp 8 --fl-rounds 0 \
         --attack hb-overflow --attack challenge-flood --attack fork-bomb --attack author-flood --attack api-rebind \
         --attack forged-receipt --attack timeout-dodge --attack verifier-copy --attack fake-job-tile",
        tmp.path(),
    );
    let attacks = &report["attacks"];
    assert!(out.status.success(), "{}\n{attacks:#}", String::from_utf8_lossy(&out.stdout));
    let line =
        |name: &str| attacks["attacks"].as_array().unwrap().iter().find(|a| a["attack"] == name).unwrap().clone();
    for name in ["hb-overflow", "challenge-flood", "fork-bomb", "author-flood"] {
        assert!(line(name)["stats"]["sent"].as_u64().unwrap() > 0, "{name}: {attacks:#}");
    }
    // Every challenge of the stranger answered busy (it is not a bonded verifier), or dropped
    // past its rate; none worked on.
    let flood = &line("challenge-flood")["stats"];
    let busy = flood["answers"]["por:busy"].as_u64().unwrap_or(0);
    assert_eq!(flood["answers"].as_object().unwrap().len(), 1, "{flood:#}");
    assert!(busy > 0 && busy + flood["failed"].as_u64().unwrap() == flood["sent"].as_u64().unwrap(), "{flood:#}");
    let api = line("api-rebind");
    assert_eq!(api["api_requests"], 33, "11 write endpoints, 3 ways each");
    assert_eq!(api["api_accepted"].as_array().unwrap().len(), 0, "{api:#}");
    assert!(attacks["panics"].as_array().unwrap().is_empty());
    assert!(attacks["baseline"].is_string(), "the run had a baseline");
    // Each node compared with itself in the baseline.
    assert!(attacks["nodes"].as_array().unwrap().iter().all(|n| n["baseline_peak_rss_mb"].as_f64().is_some()));
    // The epochs sealed as in the baseline (the author flood once stopped sealing).
    let sealed = report["settlement"]["sealed_epochs"].as_array().unwrap().len();
    assert!(sealed >= 4, "{sealed} sealed epochs: {:#}", report["settlement"]);
    assert_eq!(report["settlement"]["honest_slashed"].as_array().unwrap().len(), 0);
    // The fork bomb's author holds two entries at its forked seq, nothing past it: the
    // ledger stayed small.
    assert!(report["ledger"]["converged"].as_bool().unwrap());
    // Issue #21: the funded forger burned for its one-unit jobs and earned nothing for its
    // u64::MAX receipts; the worker that answers no challenge earned less than honest workers.
    let econ =
        |name: &str| attacks["economics"].as_array().unwrap().iter().find(|a| a["attack"] == name).unwrap().clone();
    let forger = econ("forged-receipt");
    assert!(forger["net"].as_i64().unwrap() <= 0 && forger["burned"].as_u64().unwrap() > 0, "{forger:#}");
    let dodger = econ("timeout-dodge");
    assert!(dodger["net"].as_i64().unwrap() < dodger["honest_worker_net"].as_i64().unwrap(), "{dodger:#}");
    // The bonded verifier that copies the quorum's verdict without challenging earns nothing.
    assert!(line("verifier-copy")["stats"]["sent"].as_u64().unwrap() > 0);
    let copier = econ("verifier-copy");
    assert!(copier["net"].as_i64().unwrap() <= 0, "{copier:#}");
    // The worker that fakes job tiles: its first tile failed the artist's spot check, the
    // evidence went to the ledger, both verifiers re-rendered the sub-tile and ruled it guilty,
    // and settlement slashed it: it netted less than an honest worker.
    let faker = line("fake-job-tile");
    assert!(faker["stats"]["answers"]["tile caught (evidence filed)"].as_u64().unwrap() >= 1, "{faker:#}");
    let faker = econ("fake-job-tile");
    assert!(faker["slashed"].as_u64().unwrap() > 0, "{faker:#}");
    assert!(faker["net"].as_i64().unwrap() < faker["honest_worker_net"].as_i64().unwrap(), "{faker:#}");
    // The honest workers' pay per seat is judged against the baseline (the verdict above).
    assert!(attacks["honest_payout"]["ratio"].as_f64().is_some(), "{:#}", attacks["honest_payout"]);
}

/// Namespaces of `ifx testnet` runs that are still there (`ifx<pid>...`).
fn ifx_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("ifx"))
        .map(str::to_owned)
        .collect()
}

/// Issue #17, `--scenario home-nat`: eleven nodes in network namespaces, workers behind cone
/// NATs (two behind one router), one behind a symmetric NAT, two capped links, a relay killed
/// and restarted. Every worker pair connects, the cone pairs hole-punch, no private address
/// reaches a routing table, every worker renders, passes challenges and earns, and the capped
/// links measure within 20% of their caps. Skipped, saying why, where the machine cannot make
/// namespaces (not root, or no iproute2/nftables).
#[test]
fn home_nat_scenario_reaches_every_worker_behind_its_router() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = ifx_testnet::netns::check_privilege() {
        eprintln!("SKIPPED (this machine cannot build the topology): {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = testnet("--scenario home-nat", tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["ok"], true, "{stdout}");
    let r = &report["reachability"];
    // 9 workers (node 0 included): 36 pairs, all connected.
    assert_eq!((r["pairs_connected"].as_u64(), r["pairs_total"].as_u64()), (Some(36), Some(36)), "{r}");
    let (punched, punch_pairs) = (r["punched"].as_u64().unwrap(), r["punch_pairs"].as_u64().unwrap());
    assert_eq!(punch_pairs, 9, "pairs of workers behind different cone NATs");
    assert!(punched * 10 >= punch_pairs * 9, "{punched} of {punch_pairs} hole-punched");
    assert_eq!(r["private_addr_leaks"].as_array().unwrap().len(), 0, "{r}");
    for n in r["nodes"].as_array().unwrap() {
        let behind = n["placement"] != "public";
        // Behind NAT: AutoNAT says private, a DHT client with two relays; public: a server.
        assert_eq!(n["dht_mode"], if behind { "client" } else { "server" }, "{n}");
        if behind {
            assert_eq!((n["nat_status"].as_str(), n["relays"].as_u64()), (Some("private"), Some(2)), "{n}");
        }
    }
    // Verifier 10, a relay, was killed at 25 s: the nodes holding a reservation on it lost it and
    // reserved elsewhere (each node ranks the 3 relays its own way and holds 2, so all six NATed
    // nodes avoid one given relay with probability (1/3)^6, once in 729 runs).
    let lost: u64 = r["nodes"].as_array().unwrap().iter().map(|n| n["relays_lost"].as_u64().unwrap()).sum();
    assert!(lost >= 1, "the relay's kill moved no reservation: {r}");
    // The symmetric NAT's pairs stay relayed; a same-router pair cannot hairpin: relayed too.
    for p in r["pairs"].as_array().unwrap() {
        if p["class"] == "symmetric" || p["class"] == "same-nat" {
            assert_eq!(p["path"], "relayed", "{p}");
        }
    }
    let links = r["links"].as_array().unwrap();
    assert_eq!(links.iter().filter(|l| l["cap_kbit"].is_u64()).count(), 2, "{r}");
    // 2 MiB each way through a relay, for a pair that stayed relayed.
    let relayed = links.iter().find(|l| l["path"] == "relayed").expect("a link measured over a relay");
    assert!(relayed["error"].is_null() && relayed["down_kbit"].as_u64() > Some(0), "{relayed}");
    for l in links.iter().filter(|l| l["cap_kbit"].is_u64()) {
        let cap = l["cap_kbit"].as_f64().unwrap();
        for dir in ["up_kbit", "down_kbit"] {
            let got = l[dir].as_f64().unwrap();
            assert!((got - cap).abs() <= 0.2 * cap, "{dir} {got} against {cap}: {l}");
        }
    }
    for w in r["work"].as_array().unwrap() {
        assert!(w["tiles"].as_u64() > Some(0) && w["earned"].as_u64() > Some(0), "{w}");
    }
    // Item 4: the verifiers attested every worker's link into the ledger (node 0 reads them),
    // on the path the routers allow (the verifiers are public: direct), the capped ones no
    // faster than their caps and slower than the uncapped workers' median.
    let attested = r["attested"].as_array().unwrap();
    assert_eq!(attested.len(), 9, "{r}");
    let slowest =
        |a: &serde_json::Value| a["to_worker_kbit"].as_u64().unwrap().min(a["from_worker_kbit"].as_u64().unwrap());
    let mut uncapped: Vec<u64> = attested.iter().filter(|a| a["cap_kbit"].is_null()).map(slowest).collect();
    uncapped.sort();
    let median = uncapped[uncapped.len() / 2];
    for a in attested {
        assert!(a["verifiers"].as_u64() >= Some(1) && a["path"] == "direct", "{a}");
        if let Some(cap) = a["cap_kbit"].as_u64() {
            assert!(slowest(a) * 10 <= cap * 12 && slowest(a) < median, "{a} (uncapped median {median})");
        }
    }
    // The job went in at 20 s: node 0 gave the 20 Mbit/s worker one tile at a time.
    let w7 = attested.iter().find(|a| a["index"] == 7).unwrap();
    assert_eq!(w7["one_at_a_time"], true, "{w7}");
    // The HTML report shows it: every node's verdict and the matrix of pairs.
    let html = std::fs::read_to_string(report["html"].as_str().unwrap()).unwrap();
    assert!(html.contains(r#"<h2 id="reachability">"#) && html.contains(r#"<table id="pairs">"#));
    assert!(html.contains(r#"<table id="attested">"#));
    assert!(html.contains("<td>home-a (cone)</td>") && html.contains("<td>H</td>") && html.contains("<td>R</td>"));
    assert!(ifx_namespaces().is_empty(), "namespaces left behind: {:?}", ifx_namespaces());
}

/// A harness stopped with SIGINT removes its namespaces; one killed with SIGKILL leaves them
/// (and its nodes) behind, and the next run sweeps both away before it starts.
#[test]
fn namespaces_go_after_sigint_and_a_killed_harness_is_swept() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = ifx_testnet::netns::check_privilege() {
        eprintln!("SKIPPED (this machine cannot build the topology): {why}");
        return;
    }
    let start = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_ifx"))
            .args(["testnet", "--scenario", "home-nat", "--quiet", "--base-dir"])
            .arg(dir)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Waits until the harness's nodes answer (node 10's API address is written last).
    let wait_up = |dir: &std::path::Path| {
        let t0 = Instant::now();
        while !dir.join("node-10/api.addr").exists() {
            assert!(t0.elapsed() < Duration::from_secs(120), "the run never came up");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = start(a.path());
    wait_up(a.path());
    let tag = format!("ifx{}", first.id());
    first.kill().unwrap();
    first.wait().unwrap();
    let left: Vec<String> = ifx_namespaces().into_iter().filter(|n| n.starts_with(&tag)).collect();
    assert!(left.len() >= 11, "a killed harness leaves its namespaces: {left:?}");
    let mut second = start(b.path());
    wait_up(b.path());
    let now = ifx_namespaces();
    assert!(!now.iter().any(|n| n.starts_with(&tag)), "not swept: {now:?}");
    let tag2 = format!("ifx{}", second.id());
    assert!(now.iter().any(|n| n.starts_with(&tag2)));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(second.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let t0 = Instant::now();
    while second.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(120), "SIGINT did not end the run");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = ifx_namespaces();
    assert!(!after.iter().any(|n| n.starts_with(&tag2)), "left after SIGINT: {after:?}");
}
