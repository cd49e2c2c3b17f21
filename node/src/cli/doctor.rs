//! `ifx doctor`: is this node all right? Checks the configuration, the GPU, the data dir, the
//! disk and the key on this machine, then asks the running node (if it runs) about its peers,
//! reachability, clock and stake; each line says what it found and, when something is wrong,
//! what to do. Exit status: 0 all well, 2 it works but something is worse than it could be, 1
//! something is wrong.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

use ifx_node::NodeConfig;
use ifx_protocols::Role;
use ifx_protocols::api::Status;
use ifx_protocols::settle::Estimate;
use serde::Serialize;

use super::estimate::ifx;
use super::http::ApiTarget;

/// `ifx doctor`'s flags: the node's own (`--config`, `--data-dir`, ...).
#[derive(clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub node: super::node::NodeArgs,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub level: Level,
    pub found: String,
    /// What to do about it (only when it is not ok).
    pub fix: Option<String>,
}

fn line(check: &'static str, level: Level, found: impl Into<String>, fix: Option<String>) -> Check {
    Check { check, level, found: found.into(), fix }
}

/// Free space below which the node is in danger: RocksDB needs room to compact and to write its
/// next log, and a full disk stops the ledger (the node then refuses to write, issue #14).
pub const DISK_FAIL_BYTES: u64 = 1 << 30;
/// Free space below which the operator is warned: a busy ledger grows by tens of MB a day.
pub const DISK_WARN_BYTES: u64 = 10 << 30;
/// Clock offsets up to this are fine: NTP keeps clocks within milliseconds.
pub const CLOCK_OK_MS: i64 = 2_000;
/// A clock further off than this (or a tenth of an epoch, if less) is wrong: a node labels its
/// ledger entries with its own clock's epoch, and verifiers judge answers by deadlines.
pub const CLOCK_FAIL_MS: i64 = 10_000;

pub fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let checks = match a.node.load() {
        Ok(cfg) => {
            let mut checks = vec![config_check(&a, &cfg)];
            checks.extend(local_checks(&cfg));
            checks.extend(node_checks(&cfg));
            checks
        }
        Err(e) => vec![
            line("config", Level::Fail, e.to_string(), Some("fix the file (ifx config show prints every key)".into())),
            gpu_check(&NodeConfig::default()),
        ],
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", report(&checks));
    }
    Ok(match checks.iter().map(|c| c.level).max() {
        Some(Level::Fail) => ExitCode::from(1),
        Some(Level::Warn) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

/// The report as text: one line per check, its fix under it.
pub fn report(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let level = match c.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        s += &format!("{level:<5} {:<8} {}\n", c.check, c.found);
        if let Some(fix) = &c.fix {
            s += &format!("{:<14} fix: {fix}\n", "");
        }
    }
    s
}

fn config_check(a: &DoctorArgs, cfg: &NodeConfig) -> Check {
    let from = a.node.config_path().map_or("defaults and flags".to_string(), |p| p.display().to_string());
    let found = format!(
        "{from}: a {} on network {:?}, data dir {}",
        cfg.node.role.as_str(),
        cfg.network.id,
        cfg.node.data_dir.display()
    );
    let api_open = cfg.node.api.parse::<std::net::SocketAddr>().is_ok_and(|a| !a.ip().is_loopback());
    if api_open {
        return line(
            "config",
            Level::Warn,
            format!("{found}; the API listens on {}, beyond this machine", cfg.node.api),
            Some("reads need no token: bind node.api to 127.0.0.1 unless other machines must read it".into()),
        );
    }
    line("config", Level::Ok, found, None)
}

/// What this machine offers, whether or not the node runs.
fn local_checks(cfg: &NodeConfig) -> Vec<Check> {
    let dir = &cfg.node.data_dir;
    vec![gpu_check(cfg), data_dir_check(dir), disk_check(dir), key_check(dir)]
}

fn gpu_check(cfg: &NodeConfig) -> Check {
    use ifx_render::Backend;
    if cfg.render.backend == Backend::Cpu {
        return line("gpu", Level::Ok, "the CPU renderer, as configured (render.backend = \"cpu\")", None);
    }
    let all = ifx_render::gpu::adapter_summaries();
    let others = if all.len() > 1 { format!(" (and {} more: ifx gpus)", all.len() - 1) } else { String::new() };
    let driver_fix = "install the GPU's Vulkan driver (NVIDIA: its proprietary driver; AMD and Intel: \
                      mesa-vulkan-drivers), then check with vulkaninfo --summary";
    let chosen = if cfg.render.gpu.trim().is_empty() {
        all.first().cloned()
    } else {
        match ifx_render::gpu::adapter_summary(&cfg.render.gpu) {
            Ok(a) => Some(a),
            Err(e) => {
                return line(
                    "gpu",
                    Level::Fail,
                    format!("render.gpu = {:?}: {e}", cfg.render.gpu),
                    Some("name one of these (a number or part of its name), or leave render.gpu empty".into()),
                );
            }
        }
    };
    match chosen.as_ref() {
        None if cfg.render.backend == Backend::Gpu => line(
            "gpu",
            Level::Fail,
            "no GPU adapter, and render.backend = \"gpu\" requires one: the node will not start",
            Some(driver_fix.into()),
        ),
        None => line(
            "gpu",
            Level::Warn,
            "no GPU adapter: the node renders on the CPU (far slower, so a low IB and low pay)",
            Some(format!("{driver_fix}; or set render.backend = \"cpu\" to say so")),
        ),
        Some(a) if a.class == "cpu" => line(
            "gpu",
            Level::Warn,
            format!(
                "only a software adapter, {} on {} ({}){others}: it works, many times slower than a GPU",
                a.name, a.backend, a.driver
            ),
            Some(driver_fix.into()),
        ),
        Some(a) => {
            line("gpu", Level::Ok, format!("{} ({}, {}, {}){others}", a.name, a.class, a.backend, a.driver), None)
        }
    }
}

fn data_dir_check(dir: &Path) -> Check {
    let Ok(meta) = std::fs::metadata(dir) else {
        return line(
            "data dir",
            Level::Warn,
            format!("{} does not exist yet", dir.display()),
            Some("ifx node creates it on first start".into()),
        );
    };
    if !meta.is_dir() {
        return line(
            "data dir",
            Level::Fail,
            format!("{} is not a directory", dir.display()),
            Some("give node.data_dir a directory".into()),
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return line(
            "data dir",
            Level::Fail,
            format!(
                "{} is writable by other users (mode {mode:04o}): anyone on this machine can replace its ledger, \
                 its API token or its key",
                dir.display()
            ),
            Some(format!("chmod 700 {}", dir.display())),
        );
    }
    // A file written here now is owned by whoever runs this: the node must own its dir.
    let probe = dir.join(".doctor-probe");
    let me = std::fs::write(&probe, b"").and_then(|_| std::fs::metadata(&probe)).map(|m| m.uid());
    let _ = std::fs::remove_file(&probe);
    match me {
        Err(e) => line(
            "data dir",
            Level::Fail,
            format!("{} is not writable by this user: {e}", dir.display()),
            Some(format!("chown -R $(id -un) {0} && chmod 700 {0}", dir.display())),
        ),
        Ok(uid) if uid != meta.uid() => line(
            "data dir",
            Level::Warn,
            format!("{} belongs to uid {}, not to this user (uid {uid})", dir.display(), meta.uid()),
            Some("run ifx as the user that owns the data dir (the service's user)".into()),
        ),
        Ok(_) => line("data dir", Level::Ok, format!("{} (mode {mode:04o}), writable", dir.display()), None),
    }
}

fn disk_check(dir: &Path) -> Check {
    // The mount holding the data dir (or the nearest existing parent): the longest mount point
    // it lies under.
    let mut at = dir.to_path_buf();
    while !at.exists() && at.pop() {}
    let at = std::fs::canonicalize(&at).unwrap_or(at);
    let disks = match sysinfo::Disks::new_with_refreshed_list() {
        Ok(d) => d,
        Err(e) => return line("disk", Level::Warn, format!("the mounted file systems cannot be listed: {e}"), None),
    };
    let Some(d) =
        disks.iter().filter(|d| at.starts_with(d.mount_point())).max_by_key(|d| d.mount_point().as_os_str().len())
    else {
        return line("disk", Level::Warn, format!("no mounted file system holds {}", at.display()), None);
    };
    let (free, total) = (d.available_space(), d.total_space());
    let found = format!("{} free of {} on {}", bytes(free), bytes(total), d.mount_point().display());
    if free < DISK_FAIL_BYTES {
        line(
            "disk",
            Level::Fail,
            format!("{found}: too little for the ledger to compact"),
            Some("free space, or move node.data_dir to a larger disk".into()),
        )
    } else if free < DISK_WARN_BYTES {
        line(
            "disk",
            Level::Warn,
            format!("{found}: under {}", bytes(DISK_WARN_BYTES)),
            Some("free space before the ledger grows into it".into()),
        )
    } else {
        line("disk", Level::Ok, found, None)
    }
}

fn bytes(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn key_check(dir: &Path) -> Check {
    use ifx_node::identity::{Identity, IdentityError};
    match Identity::load(dir) {
        Ok(id) => {
            let peer = ifx_node::network::author_peer_id(&id.public_key()).map(|p| p.to_string()).unwrap_or_default();
            line("key", Level::Ok, format!("peer id {peer} (mode 0600)"), None)
        }
        Err(IdentityError::Missing(_)) => {
            line("key", Level::Warn, "no key yet", Some("ifx node creates one on first start; back it up then".into()))
        }
        Err(e @ IdentityError::LoosePermissions { .. }) => line("key", Level::Fail, e.to_string(), None),
        Err(e) => line("key", Level::Fail, e.to_string(), Some("restore the key from a backup".into())),
    }
}

/// What the running node says, if one answers at the address its data dir records.
fn node_checks(cfg: &NodeConfig) -> Vec<Check> {
    let target = ApiTarget { addr: None, data_dir: cfg.node.data_dir.clone() };
    let status: Status = match super::http::api_get(&target, "status").and_then(|v| Ok(serde_json::from_value(v)?)) {
        Ok(s) => s,
        Err(e) => {
            return vec![line(
                "node",
                Level::Warn,
                format!("not running, so peers, reachability, clock and stake are not checked ({e:#})"),
                Some("start it: ifx node, or systemctl start ifx".into()),
            )];
        }
    };
    let mut out = vec![running_check(&status), peers_check(&status), reach_check(&status), clock_check(&status, cfg)];
    out.push(stake_check(&target, &status));
    out
}

fn running_check(s: &Status) -> Check {
    let found = format!("{} up {} s, epoch {}, version {}", s.peer_id, s.uptime_secs, s.epoch, s.version);
    match &s.paused {
        Some(why) => line(
            "node",
            Level::Warn,
            format!("{found}; paused: {why}"),
            Some("ifx resume (if no schedule or idle rule paused it)".into()),
        ),
        None => line("node", Level::Ok, found, None),
    }
}

fn peers_check(s: &Status) -> Check {
    if s.connected_peers == 0 {
        return line(
            "peers",
            Level::Fail,
            "no peer connected",
            Some("check [network] bootnodes, and that the firewall lets this node's TCP connections out".into()),
        );
    }
    line(
        "peers",
        Level::Ok,
        format!(
            "{} connected, {} in the routing table, {} heard",
            s.connected_peers, s.routing_table_size, s.heartbeat_peers
        ),
        None,
    )
}

fn reach_check(s: &Status) -> Check {
    let r = &s.reachability;
    match r.nat_status.as_str() {
        "public" => line("reach", Level::Ok, format!("public: {}", r.advice), None),
        "private" => line(
            "reach",
            Level::Warn,
            format!("private (behind NAT or a firewall), {} relay reservations", r.relays.len()),
            Some(r.advice.clone()),
        ),
        other => line("reach", Level::Warn, format!("{other}: not probed yet"), Some(r.advice.clone())),
    }
}

fn clock_check(s: &Status, cfg: &NodeConfig) -> Check {
    let Some(off) = s.clock_offset_ms else {
        return line(
            "clock",
            Level::Warn,
            "no peer's heartbeat yet to compare with",
            Some("wait a heartbeat interval, then run ifx doctor again".into()),
        );
    };
    let fail_ms =
        CLOCK_FAIL_MS.min((cfg.network.epoch_secs.saturating_mul(100)).min(i64::MAX as u64) as i64).max(CLOCK_OK_MS);
    let found = clock_phrase(off, s.clock_peers);
    let fix = Some("turn on time sync: timedatectl set-ntp true (systemd-timesyncd), or install chrony".into());
    if off.abs() > fail_ms {
        line(
            "clock",
            Level::Fail,
            format!("{found}: past {} ms, entries land in the wrong epoch and heartbeats look stale", fail_ms),
            fix,
        )
    } else if off.abs() > CLOCK_OK_MS {
        line("clock", Level::Warn, found, fix)
    } else {
        line("clock", Level::Ok, found, None)
    }
}

fn stake_check(target: &ApiTarget, s: &Status) -> Check {
    if s.role != Role::Worker {
        let v = super::http::api_get(target, "account").ok();
        let bonded = v.as_ref().and_then(|v| v["account"]["bonded"].as_u64()).unwrap_or(0);
        let min = super::http::api_get(target, "gov")
            .ok()
            .and_then(|g| g["params"]["min_verifier_stake"].as_u64())
            .unwrap_or(0);
        return if bonded >= min && bonded > 0 {
            line(
                "stake",
                Level::Ok,
                format!("bonded {}, at least the verifier minimum {}", ifx(bonded), ifx(min)),
                None,
            )
        } else {
            line(
                "stake",
                Level::Fail,
                format!(
                    "bonded {}, below the verifier minimum {}: its seals and verdicts count for nothing",
                    ifx(bonded),
                    ifx(min)
                ),
                Some(format!("ifx stake bond --role verifier --amount {}", min.saturating_sub(bonded).max(1))),
            )
        };
    }
    let e: Estimate = match super::http::api_get(target, "estimate").and_then(|v| Ok(serde_json::from_value(v)?)) {
        Ok(e) => e,
        Err(e) => return line("stake", Level::Warn, format!("the node's estimate is unavailable: {e:#}"), None),
    };
    let ib = format!("{}.{:03}", e.assumed.ib_milli / 1000, e.assumed.ib_milli % 1000);
    if e.bonded < e.required_stake {
        let short = e.required_stake - e.bonded;
        return line(
            "stake",
            Level::Fail,
            format!(
                "bonded {}, below the {} required at IB {ib}: paid nothing; bonded it would earn about {} an epoch",
                ifx(e.bonded),
                ifx(e.required_stake),
                ifx(e.if_staked)
            ),
            Some(format!("ifx stake bond --amount {short} (units; needs that much liquid: see ifx estimate)")),
        );
    }
    match &e.excluded {
        Some(why) => line("stake", Level::Warn, format!("bonded {}, enough, but unpaid: {why}", ifx(e.bonded)), None),
        None => line(
            "stake",
            Level::Ok,
            format!(
                "bonded {}, required {} at IB {ib}; about {} an epoch (ifx estimate)",
                ifx(e.bonded),
                ifx(e.required_stake),
                ifx(e.total)
            ),
            None,
        ),
    }
}

/// How far this clock is from its peers', in words.
pub(super) fn clock_phrase(offset_ms: i64, peers: usize) -> String {
    let side = if offset_ms < 0 { "ahead of" } else { "behind" };
    let ms = offset_ms.unsigned_abs();
    format!("{}.{:03} s {side} the median of {peers} peers' clocks", ms / 1000, ms % 1000)
}

/// `ifx gpus`: the adapters this machine offers, numbered as `render.gpu` takes them.
pub fn gpus(json: bool) -> anyhow::Result<()> {
    let all = ifx_render::gpu::adapter_summaries();
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .enumerate()
            .map(|(i, a)| {
                serde_json::json!({"index": i, "name": a.name, "class": a.class, "backend": a.backend, "driver": a.driver})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no GPU adapter: the node renders on the CPU (ifx doctor says how to install a driver)");
    }
    for (i, a) in all.iter().enumerate() {
        let best = if i == 0 { "  (the default)" } else { "" };
        println!("{i}  {} ({}, {}, {}){best}", a.name, a.class, a.backend, a.driver);
    }
    Ok(())
}
