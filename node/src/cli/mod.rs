//! The `ifx` command line, one module per command; `main.rs` only parses and dispatches here.
//! (This folder belongs to the binary, not to the `ifx_node` library.)

mod doctor;
mod estimate;
mod fl;
mod gov;
mod http;
mod infer;
mod key;
mod ledger;
mod node;
mod render;
mod rewards;
mod service;
mod stake;
mod testnet;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "ifx", version, about = "A peer-to-peer node for a decentralized GPU network")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a headless peer until SIGINT or SIGTERM.
    Node(node::NodeArgs),
    /// Inspect the node key.
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: node::ConfigCommand,
    },
    /// Run a whole network of `ifx node` processes on 127.0.0.1 and write a report.
    Testnet(Box<ifx_testnet::TestnetArgs>),
    /// A hostile peer (test tooling, started by `ifx testnet --attack`): runs one attack
    /// against a network and writes what it sent as JSON.
    #[command(hide = true)]
    Attack(AttackArgs),
    /// Render a scene locally to a PNG with a progress bar, or `render submit` it to a node.
    Render(render::RenderCmd),
    /// A render certificate: checks a job's image tile by tile against its workers' signed
    /// commitments and its receipts in sealed epochs, and re-renders a sample of it here.
    Verify(verify::VerifyArgs),
    /// Federated learning: `fl start` trains a model across the workers a node can reach.
    Fl {
        #[command(subcommand)]
        command: fl::FlCommand,
    },
    /// Inference: `infer train` makes a model to serve, `infer submit` runs a job across the
    /// workers a node can reach, every answer signed and a sample re-executed.
    Infer {
        #[command(subcommand)]
        command: infer::InferCommand,
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
        command: ledger::LedgerCommand,
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
        command: stake::StakeCommand,
    },
    /// Governance: propose a parameter change, vote, list proposals and parameters.
    Gov {
        #[command(subcommand)]
        command: gov::GovCommand,
    },
    /// Pause a running node's work (no tiles, challenges or training) without leaving the
    /// network; its heartbeats say so, and paused time is neither paid nor held against it.
    Pause {
        #[command(flatten)]
        api: http::ApiTarget,
        /// Why (shown in its status and log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused node's work.
    Resume {
        #[command(flatten)]
        api: http::ApiTarget,
    },
    /// A running node on one screen: who it is, whether it works, its peers, how reachable it is.
    Status {
        #[command(flatten)]
        api: http::ApiTarget,
    },
    /// The address of a running node's dashboard, with the API token its buttons need (open
    /// it in a browser on this machine; the token stays in the tab, out of the address bar).
    Dashboard {
        #[command(flatten)]
        api: http::ApiTarget,
    },
    /// What a running node's key would be paid per epoch as a worker (settlement's own rules on
    /// its measured IB and uptime, beside the network's other workers), and the stake it needs.
    Estimate(estimate::EstimateArgs),
    /// Is this node all right? Checks the config, GPU, data dir, disk and key, and asks the
    /// running node about its peers, reachability, clock and stake; each problem with its fix.
    /// Exit status 0: all well; 2: it works, with warnings; 1: something is wrong.
    Doctor(doctor::DoctorArgs),
    /// The GPU adapters of this machine, numbered as `render.gpu` takes them (best first).
    Gpus {
        #[arg(long)]
        json: bool,
    },
    /// Run the node as a systemd service: print or install its unit (logs go to the journal).
    Service {
        #[command(subcommand)]
        command: service::ServiceCommand,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ok = Ok(ExitCode::SUCCESS);
    match cli.command {
        Command::Node(args) => node::run(args).and(ok),
        Command::Key { command } => key::run(command).and(ok),
        Command::Config { command: node::ConfigCommand::Show(args) } => {
            print!("{}", args.load()?.to_toml());
            ok
        }
        Command::Render(render::RenderCmd { submit: Some(sub), .. }) => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(async {
                match sub {
                    render::RenderSub::Submit(a) => render::submit(a).await,
                    render::RenderSub::List(a) => render::list(a).await,
                    render::RenderSub::Status(a) => render::status(a).await,
                    render::RenderSub::Cancel(a) => render::cancel(a).await,
                }
            })
        }
        Command::Render(render::RenderCmd { local, .. }) => {
            init_logs("info", false);
            render::local(local).and(ok)
        }
        Command::Fl { command: fl::FlCommand::Start(a) } => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(fl::start(a))
        }
        Command::Infer { command: infer::InferCommand::Train(a) } => {
            init_logs("info", false);
            infer::train(a).and(ok)
        }
        Command::Infer { command: infer::InferCommand::Submit(a) } => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(infer::submit(a))
        }
        Command::Verify(a) => verify::run(a),
        Command::Ledger { data_dir, json, command } => ledger::run(&data_dir, json, command).and(ok),
        Command::Rewards { data_dir, epoch, json } => rewards::run(&data_dir, epoch, json).and(ok),
        Command::Stake { command } => stake::run(command),
        Command::Gov { command } => gov::run(command),
        Command::Pause { api, reason } => {
            let s: ifx_protocols::api::Status =
                http::api_post_for(&api, "pause", &serde_json::json!({ "reason": reason }))?;
            println!("paused: {}", s.paused.unwrap_or_default());
            ok
        }
        Command::Status { api } => {
            let s: ifx_protocols::api::Status = serde_json::from_value(http::api_get(&api, "status")?)?;
            print!("{}", status_screen(&s));
            ok
        }
        Command::Dashboard { api } => {
            // The node answers (a stale `api.addr` of a stopped node prints nothing to open).
            http::api_get(&api, "status")?;
            println!("http://{}/#token={}", api.addr()?, api.token()?);
            ok
        }
        Command::Resume { api } => {
            let s: ifx_protocols::api::Status = http::api_post_for(&api, "resume", &serde_json::json!({}))?;
            println!("{}", if s.paused.is_none() { "working" } else { "still paused" });
            ok
        }
        Command::Estimate(a) => estimate::run(a).and(ok),
        Command::Doctor(a) => doctor::run(a),
        Command::Gpus { json } => doctor::gpus(json).and(ok),
        Command::Service { command } => service::run(command),
        Command::Testnet(args) => testnet::run(*args),
        Command::Attack(a) => {
            init_logs("warn", false);
            let duration = std::time::Duration::try_from_secs_f64(a.duration)
                .map_err(|_| anyhow::anyhow!("--duration {}: not a number of seconds >= 0", a.duration))?;
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let stats = rt.block_on(ifx_node::attack::run(ifx_node::attack::Plan {
                attack: a.attack,
                config: a.config,
                data_dir: a.data_dir,
                bootnode: a.bootnode,
                targets: a.targets,
                duration,
            }))?;
            let json = serde_json::to_string_pretty(&stats)?;
            std::fs::write(&a.stats, json + "\n").with_context(|| format!("writing {}", a.stats.display()))?;
            ok
        }
    }
}

/// `ifx status`'s screen.
fn status_screen(s: &ifx_protocols::api::Status) -> String {
    let r = &s.reachability;
    let up = s.uptime_secs;
    format!(
        "node      {} ({}, version {})\nnetwork   {}, epoch {}\nuptime    {}h {:02}m {:02}s\nwork      {}\n\
         gpu       {} ({}, {}), {} cores, {} MiB\npeers     {} connected, {} in the routing table, {} heard \
         ({} heartbeats)\nreach     {} (DHT {}, {} relay reservations, {} external addresses)\n          {}\nclock     {}\n",
        s.peer_id,
        s.role.as_str(),
        s.version,
        s.network,
        s.epoch,
        up / 3600,
        up / 60 % 60,
        up % 60,
        s.paused.as_deref().map_or("taking work".to_string(), |r| format!("paused: {r}")),
        s.capacity.adapter,
        s.capacity.backend,
        s.capacity.device_type,
        s.capacity.cores,
        s.capacity.memory_mb,
        s.connected_peers,
        s.routing_table_size,
        s.heartbeat_peers,
        s.heartbeats_received,
        r.nat_status,
        r.dht_mode,
        r.relays.len(),
        r.external_addrs.len(),
        r.advice,
        s.clock_offset_ms.map_or("no peer's heartbeat yet".into(), |ms| doctor::clock_phrase(ms, s.clock_peers))
    )
}

/// `ifx attack`'s flags.
#[derive(clap::Args)]
pub struct AttackArgs {
    /// The attack: hb-overflow, challenge-flood, work-flood, fork-bomb, author-flood,
    /// sync-stall or eclipse.
    #[arg(long)]
    attack: ifx_node::attack::Attack,
    /// The network config the nodes of the run share.
    #[arg(long)]
    config: PathBuf,
    /// Where the attacker keeps its keys.
    #[arg(long)]
    data_dir: PathBuf,
    /// A node to join through.
    #[arg(long)]
    bootnode: String,
    /// Peers attacked directly (`/ip4/.../p2p/<id>`; repeatable).
    #[arg(long = "target")]
    targets: Vec<libp2p::Multiaddr>,
    /// Seconds to attack for.
    #[arg(long)]
    duration: f64,
    /// Where to write what was sent.
    #[arg(long)]
    stats: PathBuf,
}

pub(crate) fn init_logs(filter: &str, json: bool) {
    use std::io::IsTerminal;
    init_logs_to(filter, json, std::io::stderr, std::io::stderr().is_terminal());
}

/// Logs to `writer` (`RUST_LOG` overrides `filter`), with colours if `ansi`.
pub(crate) fn init_logs_to<W>(filter: &str, json: bool, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    // Beside the formatter, the latest warnings for `GET /logs` (the dashboard).
    if json {
        builder.json().finish().with(ifx_node::logs::Layer).init();
    } else {
        builder.finish().with(ifx_node::logs::Layer).init();
    }
}
