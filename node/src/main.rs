//! The `ifx` binary: `ifx node`, `ifx key show|init`, `ifx config show`, `ifx testnet`,
//! `ifx render`, `ifx fl start`, `ifx ledger`, `ifx rewards`, `ifx stake`, `ifx gov`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ifx_node::identity::Identity;
use ifx_node::{Node, NodeConfig, Overrides};
use ifx_protocols::Role;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "ifx", version, about = "A peer-to-peer node for a decentralized GPU network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a headless peer until SIGINT or SIGTERM.
    Node(NodeArgs),
    /// Inspect the node key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a whole network of `ifx node` processes on 127.0.0.1 and write a report.
    Testnet(ifx_testnet::TestnetArgs),
    /// Render a scene locally to a PNG with a progress bar, or `render submit` it to a node.
    Render(RenderCmd),
    /// Federated learning: `fl start` trains a model across the workers a node can reach.
    Fl {
        #[command(subcommand)]
        command: FlCommand,
    },
    /// Read a node's ledger store (works while the node runs, and while it is stopped).
    Ledger {
        /// The node's data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// An epoch's settlement from a node's ledger store: payouts (liquid and vesting), slashes,
    /// the settlement root. Works offline, with the network parameters the node ran with.
    Rewards {
        /// The node's data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// The epoch (default: every epoch settlement reached, in short).
        #[arg(long)]
        epoch: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Bond or unbond the stake of a running node's key (a ledger entry, applied when its epoch
    /// settles).
    Stake {
        #[command(subcommand)]
        command: StakeCommand,
    },
    /// Governance: propose a parameter change, vote, list proposals and parameters.
    Gov {
        #[command(subcommand)]
        command: GovCommand,
    },
}

#[derive(Subcommand)]
enum StakeCommand {
    /// Move liquid units into bonded stake.
    Bond {
        #[arg(long)]
        api: String,
        /// Units (1 IFX = 1,000,000).
        #[arg(long)]
        amount: u64,
        /// worker or verifier.
        #[arg(long, default_value = "worker")]
        role: String,
    },
    /// Start unbonding; the units become liquid after the unbonding delay.
    Unbond {
        #[arg(long)]
        api: String,
        #[arg(long)]
        amount: u64,
    },
}

#[derive(Subcommand)]
enum GovCommand {
    /// Propose `--param` = `--value` from epoch `--from-epoch` on.
    Propose {
        #[arg(long)]
        api: String,
        #[arg(long)]
        param: String,
        #[arg(long)]
        value: u64,
        #[arg(long)]
        from_epoch: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Vote on a proposal (its id is the proposal entry's id).
    Vote {
        #[arg(long)]
        api: String,
        #[arg(long)]
        proposal: String,
        /// Vote no instead of yes.
        #[arg(long)]
        no: bool,
    },
    /// Parameters in force, open proposals with votes, decided proposals.
    List {
        #[arg(long)]
        api: String,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct RenderCmd {
    #[command(subcommand)]
    submit: Option<RenderSub>,
    #[command(flatten)]
    local: RenderArgs,
}

#[derive(Subcommand, Debug)]
enum RenderSub {
    /// Submit a distributed render job to a running node and follow it until the PNG is done.
    Submit(SubmitArgs),
}

#[derive(Subcommand, Debug)]
enum FlCommand {
    /// Start a federated task on a running node (it becomes the task owner) and follow it round
    /// by round until the final weights and the accuracy plot are written.
    Start(FlStartArgs),
}

#[derive(Args, Debug)]
struct FlStartArgs {
    /// The node's API address (see <data-dir>/api.addr).
    #[arg(long)]
    api: String,
    #[arg(long, default_value_t = 30)]
    rounds: u32,
    /// Updates aggregated per round.
    #[arg(long, default_value_t = 5)]
    clients: u32,
    /// fedavg, median, trimmed-mean, krum or multi-krum.
    #[arg(long, default_value = "median")]
    aggregator: String,
    #[arg(long, default_value_t = 3)]
    local_epochs: u32,
    /// Number of non-IID shards the workers' data is split into (each worker trains its
    /// `[fl] shard`).
    #[arg(long, default_value_t = 6)]
    shards: u32,
    /// Dirichlet concentration of the label skew (smaller = more skewed).
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Per-round deadline in ms.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
    /// Print the final status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SubmitArgs {
    /// The node's API address (see <data-dir>/api.addr).
    #[arg(long)]
    api: String,
    /// A built-in scene or a .toml scene file (sent inline; no mesh files).
    #[arg(long, default_value = "cornell")]
    scene: String,
    #[arg(long, default_value_t = 256)]
    width: u32,
    #[arg(long, default_value_t = 256)]
    height: u32,
    #[arg(long, default_value_t = 16)]
    spp: u32,
    #[arg(long, default_value_t = 6)]
    bounces: u32,
    #[arg(long, default_value_t = 32)]
    tile: u32,
}

#[derive(Args, Debug)]
struct RenderArgs {
    /// A built-in scene (cornell, spheres) or a .toml/.json scene file.
    #[arg(long, default_value = "cornell")]
    scene: String,
    #[arg(long, default_value_t = 256)]
    width: u32,
    #[arg(long, default_value_t = 256)]
    height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 16)]
    spp: u32,
    /// Most bounces per path.
    #[arg(long, default_value_t = 6)]
    bounces: u32,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// auto (a GPU, else a software adapter, else the CPU), gpu or cpu.
    #[arg(long, default_value = "auto")]
    backend: ifx_protocols::render::Backend,
    /// Where to write the PNG.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Entry, author and epoch counts, roots, equivocators.
    Stats,
    /// The ledger root (hex).
    Root,
    /// Entries, optionally of one author (hex public key) and/or one epoch.
    Entries {
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        epoch: Option<u64>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the PeerId and public key of the node in a data dir.
    Show {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Create the node key in a data dir if it has none, and print it.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, then the file, then the flags) as TOML.
    Show(NodeArgs),
}

/// Flags of `ifx node`; each one given replaces the config file's value.
#[derive(Args, Debug)]
struct NodeArgs {
    /// TOML config file (see `ifx config show` for every key and its default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for the key, the database and api.addr.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Multiaddr to listen on, e.g. /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1
    /// (repeatable).
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// Bootnode multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long = "bootnode")]
    bootnodes: Vec<String>,
    /// worker or verifier.
    #[arg(long)]
    role: Option<Role>,
    /// Loopback address of the HTTP API (127.0.0.1:0 picks a port, written to <data-dir>/api.addr).
    #[arg(long)]
    api: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long)]
    json_logs: bool,
    /// Log filter, e.g. info or ifx_node=debug (RUST_LOG wins when set).
    #[arg(long)]
    log: Option<String>,
    /// Test mode: answer proof-of-rendering challenges in this cheat mode.
    #[arg(long, hide = true)]
    cheat: Option<String>,
    /// Test mode: poison federated-learning updates (sign-flip, scale, random, nan, shape, slow).
    #[arg(long, hide = true)]
    poison: Option<String>,
    /// Train federated tasks on this data file (digits format: CSV or CSV.gz); sets `fl.data`.
    #[arg(long)]
    fl_data: Option<PathBuf>,
    /// Train only this shard of each task's non-IID split; sets `fl.shard`.
    #[arg(long)]
    fl_shard: Option<u32>,
    /// Test mode: drop this percentage of inbound gossip (`faults.drop_gossip_pct`).
    #[arg(long, hide = true)]
    drop_gossip_pct: Option<u32>,
    /// Test mode: answer every request this many ms late (`faults.slow_ms`).
    #[arg(long, hide = true)]
    slow_ms: Option<u64>,
}

impl NodeArgs {
    fn load(&self) -> Result<NodeConfig, ifx_node::ConfigError> {
        let o = Overrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            bootnodes: self.bootnodes.clone(),
            role: self.role,
            api: self.api.clone(),
            json_logs: self.json_logs,
            log: self.log.clone(),
            cheat: self.cheat.clone(),
            poison: self.poison.clone(),
            fl_data: self.fl_data.clone(),
            fl_shard: self.fl_shard,
            drop_gossip_pct: self.drop_gossip_pct,
            slow_ms: self.slow_ms,
        };
        NodeConfig::load(self.config.as_deref(), &o)
    }
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // `ifx testnet --scenario`: the scenario fills in whatever the command line did not give.
    if let (Command::Testnet(args), Some(sub)) = (&mut cli.command, matches.subcommand_matches("testnet")) {
        let explicit = |id: &str| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        match args.clone().with_scenario(&explicit) {
            Ok(a) => *args = a,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Node(args) => {
            let cfg = args.load()?;
            init_logs(&cfg.node.log, cfg.node.json_logs);
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(run_node(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Key { command } => {
            let id = match command {
                KeyCommand::Show { data_dir } => Identity::load(&data_dir)?,
                KeyCommand::Init { data_dir } => {
                    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
                    Identity::load_or_create(&data_dir)?
                }
            };
            println!("peer_id: {}", id.peer_id());
            println!("public_key: {}", hex::encode(id.public_key()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command: ConfigCommand::Show(args) } => {
            print!("{}", args.load()?.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(RenderCmd { submit: Some(RenderSub::Submit(a)), .. }) => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(submit_command(a))
        }
        Command::Render(RenderCmd { local, .. }) => {
            init_logs("info", false);
            render_command(local)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fl { command: FlCommand::Start(a) } => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(fl_start_command(a))
        }
        Command::Ledger { data_dir, json, command } => {
            ledger_command(&data_dir, json, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rewards { data_dir, epoch, json } => {
            rewards_command(&data_dir, epoch, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stake { command } => {
            let (api, path, body) = match command {
                StakeCommand::Bond { api, amount, role } => {
                    let role: ifx_protocols::settle::StakeRole =
                        serde_json::from_value(serde_json::json!(role)).context("--role must be worker or verifier")?;
                    (api, "stake", serde_json::json!({ "op": "bond", "amount": amount, "role": role }))
                }
                StakeCommand::Unbond { api, amount } => {
                    (api, "stake", serde_json::json!({ "op": "unbond", "amount": amount }))
                }
            };
            api_post(&api, path, &body)
        }
        Command::Gov { command } => match command {
            GovCommand::Propose { api, param, value, from_epoch, note } => api_post(
                &api,
                "gov/proposals",
                &serde_json::json!({ "param": param, "value": value, "from_epoch": from_epoch, "note": note }),
            ),
            GovCommand::Vote { api, proposal, no } => {
                api_post(&api, "gov/votes", &serde_json::json!({ "proposal": proposal, "yes": !no }))
            }
            GovCommand::List { api } => {
                let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
                let v: serde_json::Value = rt.block_on(async {
                    let c = reqwest::Client::builder().no_proxy().build()?;
                    anyhow::Ok(c.get(format!("http://{api}/gov")).send().await?.json().await?)
                })?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Testnet(mut args) => {
            if args.in_process {
                // A hundred nodes' warnings would bury the progress bar: in process they all go
                // to one file in the base dir (each node's own log file when it is a process).
                let base = args.base_dir.get_or_insert_with(ifx_testnet::default_base_dir).clone();
                std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
                let path = base.join(ifx_testnet::IN_PROCESS_LOG);
                let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                init_logs_to("warn", false, file, false);
            } else {
                init_logs("warn", false);
            }
            let binary = std::env::current_exe().context("locating the ifx binary")?;
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let host: std::sync::Arc<dyn ifx_testnet::Host> = std::sync::Arc::new(InProcessHost);
            let report = rt.block_on(ifx_testnet::run_with(binary, args, Some(host)))?;
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

async fn fl_start_command(a: FlStartArgs) -> anyhow::Result<ExitCode> {
    let spec = ifx_protocols::fl::wire::TaskSpec {
        rounds: a.rounds,
        clients_per_round: a.clients,
        min_clients: a.clients.div_ceil(2),
        aggregator: a.aggregator.clone(),
        local_epochs: a.local_epochs,
        data: ifx_protocols::fl::wire::DataRule { shards: a.shards, alpha: a.alpha, ..Default::default() },
        deadline_ms: a.deadline_ms,
        ..Default::default()
    };
    spec.validate().map_err(|e| anyhow::anyhow!("invalid task: {e}"))?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://{}", a.api);
    let body = post_to_node(&client, &a.api, "fl", &spec, "the task").await?;
    let id = body["task_id"].as_str().unwrap_or_default().to_string();
    eprintln!("task {id} started on {base}");
    let bar = indicatif::ProgressBar::new(a.rounds as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] round {pos}/{len} {elapsed} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    loop {
        let t: serde_json::Value = client.get(format!("{base}/fl/{id}")).send().await?.json().await?;
        bar.set_position(t["rounds_done"].as_u64().unwrap_or(0));
        if let Some(acc) = t["accuracy_by_round"].as_array().and_then(|v| v.last()).and_then(|v| v.as_f64()) {
            bar.set_message(format!(
                "test accuracy {acc:.3}, {} rejected",
                t["rejected"].as_object().map_or(0, |m| m.len())
            ));
        }
        match t["state"].as_str() {
            Some("done") => {
                bar.finish_and_clear();
                if a.json {
                    println!("{t}");
                } else {
                    println!(
                        "done in {:.1} s: final test accuracy {:.4} ({} aggregation)",
                        t["secs"].as_f64().unwrap_or(0.0),
                        t["final_accuracy"].as_f64().unwrap_or(0.0),
                        t["aggregator"].as_str().unwrap_or("?")
                    );
                    println!("weights: {}", t["weights"].as_str().unwrap_or(""));
                    println!("accuracy plot: {}", t["plot"].as_str().unwrap_or(""));
                    println!("accepted updates by worker: {}", t["accepted"]);
                    if t["rejected"].as_object().is_some_and(|m| !m.is_empty()) {
                        println!("rejected updates: {}", t["rejected"]);
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some("failed") => {
                bar.finish_and_clear();
                eprintln!("task failed: {}", t["error"].as_str().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

async fn submit_command(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let scene_toml = if a.scene.ends_with(".toml") {
        Some(std::fs::read_to_string(&a.scene).with_context(|| format!("reading {}", a.scene))?)
    } else {
        None
    };
    let spec = ifx_node::render::JobSpec {
        scene: a.scene.clone(),
        scene_toml,
        width: a.width,
        height: a.height,
        spp: a.spp,
        max_bounces: a.bounces,
        tile: a.tile,
    };
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://{}", a.api);
    let body = post_to_node(&client, &a.api, "jobs", &spec, "the job").await?;
    let id = body["job_id"].as_str().unwrap_or_default().to_string();
    println!("job {id} submitted to {base}");
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} tiles {elapsed} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    loop {
        let j: serde_json::Value = client.get(format!("{base}/jobs/{id}")).send().await?.json().await?;
        bar.set_length(j["tiles"].as_u64().unwrap_or(0));
        bar.set_position(j["tiles_done"].as_u64().unwrap_or(0));
        bar.set_message(format!(
            "{} workers, {} re-assigned",
            j["tiles_by_worker"].as_object().map_or(0, |m| m.len()),
            j["reassigned"]
        ));
        match j["state"].as_str() {
            Some("done") => {
                bar.finish_and_clear();
                println!("done in {:.2} s: {}", j["secs"].as_f64().unwrap_or(0.0), j["png"].as_str().unwrap_or(""));
                println!("tiles by worker: {}", j["tiles_by_worker"]);
                return Ok(ExitCode::SUCCESS);
            }
            Some("failed") => {
                bar.finish_and_clear();
                eprintln!("job failed: {}", j["error"].as_str().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

fn render_command(a: RenderArgs) -> anyhow::Result<()> {
    use ifx_protocols::render::{self, RenderSettings, Renderer, load};
    let out = a.out.clone().ok_or_else(|| anyhow::anyhow!("--out FILE.png is required"))?;
    let scene = load::scene(&a.scene)?;
    let s = RenderSettings { width: a.width, height: a.height, spp: a.spp, max_bounces: a.bounces, tile: a.tile };
    let started = std::time::Instant::now();
    let r = Renderer::new(&scene, &s, a.backend)?;
    tracing::info!(
        backend = r.describe(),
        scene = a.scene,
        width = s.width,
        height = s.height,
        spp = s.spp,
        "rendering"
    );
    let bar = indicatif::ProgressBar::new(s.tiles().len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} tiles {elapsed} (eta {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    let img = render::render_image(&r, &s, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    img.save_png(&out)?;
    let secs = started.elapsed().as_secs_f64();
    let samples = s.width as f64 * s.height as f64 * s.spp as f64;
    println!(
        "wrote {} ({}x{}, {} spp) in {secs:.2} s with {}: {:.2} M samples/s",
        out.display(),
        s.width,
        s.height,
        s.spp,
        r.describe(),
        samples / secs / 1e6
    );
    Ok(())
}

fn ledger_command(data_dir: &std::path::Path, json: bool, command: LedgerCommand) -> anyhow::Result<()> {
    use ifx_node::ledger::LedgerStats;
    let path = data_dir.join("db");
    if !path.is_dir() {
        anyhow::bail!("no database in {} (has a node run with this data dir?)", data_dir.display());
    }
    let db = ifx_storage::Db::open_read_only(&path)?;
    let store = ifx_storage::LedgerStore::open_existing(db)?;
    let l = store.ledger();
    match command {
        LedgerCommand::Root => {
            let root = hex::encode(l.root());
            if json {
                println!("{}", serde_json::json!({ "root": root, "entries": l.len() }));
            } else {
                println!("{root}");
            }
        }
        LedgerCommand::Stats => {
            let s = LedgerStats::of(l);
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "network: {}\nroot: {}\nentries: {}\nauthors: {}\nequivocators: {}",
                    s.network,
                    s.root,
                    s.entries,
                    s.authors,
                    s.equivocators.len()
                );
                for e in &s.epochs {
                    println!("epoch {}: {} entries, root {}", e.epoch, e.entries, e.root);
                }
            }
        }
        LedgerCommand::Entries { author, epoch } => {
            let entries: Vec<ifx_protocols::ledger::Entry> = match (&author, epoch) {
                (Some(a), _) => {
                    let key: [u8; 32] = hex::decode(a)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| anyhow::anyhow!("--author {a:?} is not a 64-character hex public key"))?;
                    store.entries_by_author(&key)?.into_iter().filter(|e| epoch.is_none_or(|x| e.epoch == x)).collect()
                }
                (None, Some(x)) => store.entries_in_epoch(x)?,
                (None, None) => l.iter_sorted().map(|e| (*e).clone()).collect(),
            };
            for e in &entries {
                let body = entry_body_json(e)?;
                let v = serde_json::json!({
                    "author": hex::encode(e.author), "seq": e.seq, "epoch": e.epoch, "kind": e.kind.name(),
                    "id": hex::encode(e.id()), "prev": hex::encode(e.prev), "body": body,
                });
                if json {
                    println!("{v}");
                } else {
                    println!(
                        "{} seq {} epoch {} {} {}",
                        &v["author"].as_str().unwrap_or("")[..16],
                        e.seq,
                        e.epoch,
                        e.kind.name(),
                        body
                    );
                }
            }
        }
    }
    Ok(())
}

async fn run_node(cfg: NodeConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers are installed before anything starts, so a signal during start-up is not fatal:
    // the node finishes starting, then stops cleanly.
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let node = Node::start(cfg).await?;
    let stop = node.shutdown_token();
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!(signal, "stopping");
        stop.cancel();
    });
    node.run_until_stopped().await;
    Ok(())
}

fn init_logs(filter: &str, json: bool) {
    use std::io::IsTerminal;
    init_logs_to(filter, json, std::io::stderr, std::io::stderr().is_terminal());
}

/// Logs to `writer` (`RUST_LOG` overrides `filter`), with colours if `ansi`.
fn init_logs_to<W>(filter: &str, json: bool, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// POSTs `body` to a node's `/{path}` and prints the entry id it appended.
fn api_post(api: &str, path: &str, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let v = rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        post_to_node(&c, api, path, body, "the request").await
    })?;
    println!("entry {}", v["entry"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

/// POSTs `body` as JSON to a node's `/{path}`; the answer on success, else the node's reason.
async fn post_to_node(
    client: &reqwest::Client,
    api: &str,
    path: &str,
    body: &impl serde::Serialize,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let base = format!("http://{api}");
    let resp =
        client.post(format!("{base}/{path}")).json(body).send().await.with_context(|| format!("reaching {base}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        anyhow::bail!("the node refused {what}: {}", v["error"].as_str().unwrap_or("?"));
    }
    Ok(v)
}

fn rewards_command(data_dir: &std::path::Path, epoch: Option<u64>, json: bool) -> anyhow::Result<()> {
    let net_file = data_dir.join(ifx_node::node::NETWORK_FILE);
    let text = std::fs::read_to_string(&net_file)
        .with_context(|| format!("reading {} (has a node run with this data dir?)", net_file.display()))?;
    #[derive(serde::Deserialize)]
    struct Only {
        network: ifx_protocols::NetworkConfig,
    }
    let net = toml::from_str::<Only>(&text).with_context(|| format!("parsing {}", net_file.display()))?.network;
    net.validate("network")?;
    let path = data_dir.join("db");
    let db = ifx_storage::Db::open_read_only(&path)?;
    let store = ifx_storage::LedgerStore::open_existing(db)?;
    let now = net.epoch_at(ifx_node::unix_time_us() / 1000);
    let st = ifx_protocols::settle::settle(&net, store.ledger().iter_sorted(), now);
    match epoch {
        Some(e) => {
            let Some(s) = st.epoch(e) else {
                anyhow::bail!(
                    "epoch {e} is not settled here (settled through {:?}; current epoch {now})",
                    st.epochs.last().map(|l| (l.epoch, l.status))
                );
            };
            if json {
                println!("{}", serde_json::to_string_pretty(s)?);
                return Ok(());
            }
            println!(
                "epoch {} {:?}: minted {} units, penalties {}, unallocated {}",
                s.epoch, s.status, s.minted, s.penalties, s.unallocated
            );
            println!("settlement root {}", hex::encode(s.root));
            println!(
                "pools: workers {} verifiers {} governance {}",
                s.pool_workers, s.pool_verifiers, s.pool_governance
            );
            println!("{:<18} {:>14} {:>14} {:>14} {:>14}", "key", "total", "liquid", "vesting", "weight");
            for p in &s.payouts {
                println!(
                    "{:<18} {:>14} {:>14} {:>14} {:>14}",
                    format!("{}..", &hex::encode(p.key)[..16]),
                    p.total,
                    p.liquid,
                    p.vesting,
                    p.worker_weight.max(p.verifier_weight)
                );
            }
            for x in &s.slashed {
                println!("slashed {}.. {} units: {}", &hex::encode(x.key)[..16], x.amount, x.reason);
            }
            for w in s.workers.iter().filter(|w| w.excluded.is_some()) {
                println!("unpaid {}.. {}", &hex::encode(w.key)[..16], w.excluded.as_deref().unwrap_or(""));
            }
        }
        None if json => println!("{}", serde_json::to_string_pretty(&st)?),
        None => {
            for s in &st.epochs {
                println!(
                    "epoch {:>6} {:<10} minted {:>16} paid {:>4} slashed {:>2} root {}",
                    s.epoch,
                    format!("{:?}", s.status),
                    s.minted,
                    s.payouts.len(),
                    s.slashed.len(),
                    hex::encode(s.root)
                );
            }
        }
    }
    Ok(())
}

/// Starts `ifx node` inside this process for `ifx testnet --in-process`.
struct InProcessHost;

/// `ifx node`'s flags alone.
#[derive(Parser)]
struct NodeOnly {
    #[command(flatten)]
    args: NodeArgs,
}

struct InProcessNode(Node);

impl ifx_testnet::RunningNode for InProcessNode {
    fn stop(self: Box<Self>) -> ifx_testnet::BoxFuture<'static, ()> {
        Box::pin(self.0.stop())
    }
}

impl ifx_testnet::Host for InProcessHost {
    fn start(
        &self,
        args: Vec<String>,
    ) -> ifx_testnet::BoxFuture<'static, Result<Box<dyn ifx_testnet::RunningNode>, String>> {
        Box::pin(async move {
            let parsed =
                NodeOnly::try_parse_from(std::iter::once("node".to_string()).chain(args)).map_err(|e| e.to_string())?;
            let cfg = parsed.args.load().map_err(|e| e.to_string())?;
            let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
            Ok(Box::new(InProcessNode(node)) as Box<dyn ifx_testnet::RunningNode>)
        })
    }
}

/// An entry's body as JSON, decoded by its kind (a seal shows its frontier as `[author, seq]`).
fn entry_body_json(e: &ifx_protocols::ledger::Entry) -> anyhow::Result<serde_json::Value> {
    use ifx_protocols::ledger::{self as l, EntryKind as K};
    use ifx_protocols::settle as s;
    fn shown<T: serde::Serialize>(r: Result<T, String>) -> anyhow::Result<serde_json::Value> {
        Ok(match r {
            Ok(v) => serde_json::to_value(v)?,
            Err(err) => serde_json::json!({ "undecodable": err }),
        })
    }
    match e.kind {
        K::Liveness => shown(l::LivenessAttestation::decode(&e.body)),
        K::RenderReceipt => shown(l::RenderReceipt::decode(&e.body)),
        K::PorVerdicts => shown(l::PorVerdicts::decode(&e.body)),
        K::FlReceipt => shown(l::FlReceipt::decode(&e.body)),
        K::Stake => shown(s::StakeOp::decode(&e.body)),
        K::Proposal => shown(s::Proposal::decode(&e.body)),
        K::Vote => shown(s::Vote::decode(&e.body)),
        K::Seal => {
            let mut v = shown(s::EpochSeal::decode(&e.body))?;
            if let Ok(seal) = s::EpochSeal::decode(&e.body) {
                v["frontier"] = seal.frontier.iter().map(|(a, seq)| serde_json::json!([hex::encode(a), seq])).collect();
            }
            Ok(v)
        }
        K::Unknown(_) => Ok(serde_json::json!({ "bytes": e.body.len() })),
    }
}
