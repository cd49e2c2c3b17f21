//! Issue #19, `ifx doctor` on real nodes over 127.0.0.1: a healthy worker, a node on a machine
//! without a GPU (its Vulkan and GL drivers hidden, as on a server without one), a data dir and a
//! key file of wrong permissions, a node whose clock runs 2 minutes ahead (libfaketime moves the
//! whole process's wall clock, as a machine without time sync would), a worker bonded below the
//! required stake, a verifier, and a broken config. Each line says the right thing, and the exit
//! status is 0 only when all is well (2 with warnings, 1 when something is wrong).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ifx_node::{Node, NodeConfig};
use ifx_protocols::Role;
use ifx_protocols::settle::{GenesisAlloc, StakeRole, UNITS_PER_IFX};
use serde_json::Value;

const IFX: &str = env!("CARGO_BIN_EXE_ifx");
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// A machine without GPU drivers: no Vulkan driver, and only Vulkan tried (no GL fallback).
const NO_GPU: [(&str, &str); 2] = [("VK_ICD_FILENAMES", "/nonexistent"), ("WGPU_BACKEND", "vulkan")];

fn key_of(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    hex::encode(ifx_node::identity::Identity::load_or_create(dir).unwrap().public_key())
}

/// A node's config, written beside its data dir for `ifx doctor --config` (and `ifx node`).
fn config(dir: &Path, role: Role, boot: Option<String>, genesis: &[GenesisAlloc], secs: u64) -> (NodeConfig, PathBuf) {
    let mut c = NodeConfig::default();
    c.node.data_dir = dir.into();
    c.node.role = role;
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.api = "127.0.0.1:0".into();
    c.network.id = "doctor".into();
    c.network.genesis_unix_secs = secs;
    // Hour-long epochs: a clock 2 minutes ahead still labels the same epoch, so the skewed node
    // stays in the network and only its clock is wrong.
    c.network.epoch_secs = 3_600;
    c.network.heartbeat_interval_ms = 200;
    c.network.genesis = genesis.to_vec();
    c.network.bootnodes = boot.into_iter().collect();
    c.por.challenge_interval_ms = 86_400_000;
    let file = dir.with_extension("toml");
    std::fs::write(&file, c.to_toml()).unwrap();
    (c, file)
}

/// `ifx doctor --config FILE --json` with extra environment: its checks by name, and its exit status.
fn doctor(file: &Path, env: &[(&str, &str)]) -> (Vec<Value>, i32) {
    let out =
        Command::new(IFX).args(["doctor", "--json", "--config"]).arg(file).envs(env.iter().copied()).output().unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (checks, out.status.code().unwrap())
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["check"] == name).unwrap_or_else(|| panic!("no {name} line in {checks:#?}"))
}

/// The exit status the levels call for.
fn status_of(checks: &[Value]) -> i32 {
    let levels: Vec<&str> = checks.iter().map(|c| c["level"].as_str().unwrap()).collect();
    if levels.contains(&"fail") {
        1
    } else if levels.contains(&"warn") {
        2
    } else {
        0
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ifx node --config FILE` with extra environment, once its API answers with `peers` heard.
fn spawn(file: &Path, dir: &Path, env: &[(&str, &str)], log: &Path) -> Proc {
    let p = Proc(
        Command::new(IFX)
            .args(["node", "--config"])
            .arg(file)
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !dir.join(ifx_node::node::API_ADDR_FILE).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} did not start: {}",
            file.display(),
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn wait_heard(file: &Path, env: &[(&str, &str)], peers: usize) {
    let t0 = Instant::now();
    loop {
        let (c, _) = doctor(file, env);
        let clock = check(&c, "clock");
        if clock["found"].as_str().is_some_and(|f| f.contains(&format!("of {peers} peers"))) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{} never heard {peers} peers: {c:#?}", file.display());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn doctor_finds_what_is_wrong_and_says_how_to_fix_it() {
    assert!(Path::new(FAKETIME).exists(), "libfaketime is not installed: run scripts/setup.sh");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n);
    let worker = |n: &str, stake: u64| GenesisAlloc {
        key: key_of(&dir(n)),
        role: StakeRole::Worker,
        stake,
        liquid: 5 * UNITS_PER_IFX,
    };
    // Required at IB 1.0 and hour-long epochs: 2 x 1 h x 1.0 x 1 IFX = 2 IFX.
    let genesis = vec![
        GenesisAlloc {
            key: key_of(&dir("verifier")),
            role: StakeRole::Verifier,
            stake: 2_000 * UNITS_PER_IFX,
            liquid: 0,
        },
        worker("healthy", 100 * UNITS_PER_IFX),
        worker("short", UNITS_PER_IFX),
        worker("skewed", 100 * UNITS_PER_IFX),
        worker("nogpu", 100 * UNITS_PER_IFX),
    ];
    let secs = ifx_node::unix_time_us() / 1_000_000 - 10;
    let (vc, vfile) = config(&dir("verifier"), Role::Verifier, None, &genesis, secs);
    let v = rt.block_on(Node::start(vc)).unwrap();
    let boot = format!("{}/p2p/{}", v.listen_addrs[0], v.peer_id);
    let cfg = |n: &str| config(&dir(n), Role::Worker, Some(boot.clone()), &genesis, secs);
    let (hc, hfile) = cfg("healthy");
    let (sc, sfile) = cfg("short");
    let (_, kfile) = cfg("skewed");
    let (_, gfile) = cfg("nogpu");
    let healthy = rt.block_on(Node::start(hc)).unwrap();
    let short = rt.block_on(Node::start(sc)).unwrap();
    let skew = [("LD_PRELOAD", FAKETIME), ("FAKETIME", "+120s"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")];
    let _skewed = spawn(&kfile, &dir("skewed"), &skew, &tmp.path().join("skewed.log"));
    let _nogpu = spawn(&gfile, &dir("nogpu"), &NO_GPU, &tmp.path().join("nogpu.log"));
    wait_heard(&hfile, &[], 4);
    wait_heard(&kfile, &[], 4);

    // Healthy: every line ok but what this machine lacks (a GPU, disk space), and the exit
    // status says exactly that.
    let (c, code) = doctor(&hfile, &[]);
    eprintln!("healthy: {c:#?}");
    for name in ["config", "data dir", "key", "node", "peers", "clock", "stake"] {
        assert_eq!(check(&c, name)["level"], "ok", "{name}: {c:#?}");
    }
    let gpu = ifx_render::gpu::adapter_summaries();
    let want_gpu = if gpu.first().is_some_and(|a| a.class != "cpu") { "ok" } else { "warn" };
    assert_eq!(check(&c, "gpu")["level"], want_gpu, "{c:#?}");
    assert!(
        check(&c, "stake")["found"]
            .as_str()
            .unwrap()
            .contains("bonded 100.000000 IFX, required 2.000000 IFX at IB 1.000")
    );
    assert_eq!(code, status_of(&c));
    // The skewed node's heartbeats are one of four: the median is not moved.
    let clock = check(&c, "clock")["found"].as_str().unwrap().to_string();
    assert!(clock.starts_with("0."), "{clock}");
    let text = Command::new(IFX).args(["doctor", "--config"]).arg(&hfile).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("ok    stake") && text.contains("ok    clock"), "{text}");

    // No GPU: the node renders on the CPU and is told how to get a GPU driver.
    let (c, code) = doctor(&gfile, &NO_GPU);
    let g = check(&c, "gpu");
    assert_eq!(g["level"], "warn", "{c:#?}");
    assert!(g["found"].as_str().unwrap().starts_with("no GPU adapter"), "{g}");
    assert!(g["fix"].as_str().unwrap().contains("Vulkan driver"), "{g}");
    assert_eq!(check(&c, "peers")["level"], "ok", "{c:#?}");
    assert_eq!(code, status_of(&c));
    assert_ne!(code, 0);

    // Wrong permissions: a data dir others may write, then a key file others may read.
    let hdir = dir("healthy");
    std::fs::set_permissions(&hdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (c, code) = doctor(&hfile, &[]);
    let d = check(&c, "data dir");
    assert_eq!(d["level"], "fail", "{d}");
    assert!(d["found"].as_str().unwrap().contains("writable by other users (mode 0777)"), "{d}");
    assert_eq!(d["fix"], format!("chmod 700 {}", hdir.display()));
    assert_eq!(code, 1);
    std::fs::set_permissions(&hdir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = hdir.join(ifx_node::identity::KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (c, code) = doctor(&hfile, &[]);
    let k = check(&c, "key");
    assert_eq!(k["level"], "fail", "{k}");
    assert!(k["found"].as_str().unwrap().contains("accessible to other users (mode 644)"), "{k}");
    assert!(k["found"].as_str().unwrap().contains("chmod 600"), "{k}");
    assert_eq!(code, 1);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(doctor(&hfile, &[]).1, status_of(&doctor(&hfile, &[]).0));

    // A clock 2 minutes ahead: measured against the peers' heartbeats, with the fix.
    let (c, code) = doctor(&kfile, &[]);
    let k = check(&c, "clock");
    eprintln!("skewed: {k}");
    assert_eq!(k["level"], "fail", "{k}");
    let found = k["found"].as_str().unwrap();
    let secs_off: f64 = found.split(' ').next().unwrap().parse().unwrap();
    assert!((119.0..=121.0).contains(&secs_off) && found.contains("ahead of"), "{found}");
    assert!(k["fix"].as_str().unwrap().contains("timedatectl set-ntp true"), "{k}");
    assert_eq!(code, 1);

    // Too little stake: paid nothing, what it would earn, and the command that fixes it.
    let (c, code) = doctor(&sfile, &[]);
    let s = check(&c, "stake");
    assert_eq!(s["level"], "fail", "{s}");
    assert!(
        s["found"].as_str().unwrap().contains("bonded 1.000000 IFX, below the 2.000000 IFX required at IB 1.000"),
        "{s}"
    );
    assert!(s["fix"].as_str().unwrap().starts_with("ifx stake bond --amount 1000000"), "{s}");
    assert_eq!(code, 1);

    // The verifier: its stake against the verifier minimum.
    let (c, _) = doctor(&vfile, &[]);
    assert_eq!(check(&c, "stake")["level"], "ok", "{c:#?}");

    // A config that does not parse: the line names the key, nothing runs on defaults.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[node]\nrole = \"wizard\"\n").unwrap();
    let (c, code) = doctor(&bad, &[]);
    assert_eq!(check(&c, "config")["level"], "fail", "{c:#?}");
    assert!(check(&c, "config")["found"].as_str().unwrap().contains("role"), "{c:#?}");
    assert_eq!(code, 1);

    // A node not running: the local checks, and the advice to start it.
    rt.block_on(short.stop());
    let (c, _) = doctor(&sfile, &[]);
    assert_eq!(check(&c, "node")["level"], "warn", "{c:#?}");
    assert!(check(&c, "node")["fix"].as_str().unwrap().contains("ifx node"));
    rt.block_on(healthy.stop());
    rt.block_on(v.stop());
}
