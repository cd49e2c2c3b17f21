//! `ifx node` and `ifx config show`: the peer itself, and its effective configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ifx_node::{Node, NodeConfig, Overrides};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults, then the file, then the flags) as TOML.
    Show(NodeArgs),
}

/// Flags of `ifx node`; each one given replaces the config file's value.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// TOML config file (see `ifx config show` for every key and its default).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

impl NodeArgs {
    /// Defaults, then the file, then the flags; validated.
    pub fn load(&self) -> Result<NodeConfig, ifx_node::ConfigError> {
        NodeConfig::load(self.config.as_deref(), &self.overrides)
    }

    /// The config file given, if any.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }
}

/// Runs `ifx node` until SIGINT or SIGTERM.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let cfg = args.load()?;
    super::init_logs(&cfg.node.log, cfg.node.json_logs);
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(run_node(cfg))
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
    // A failed service stopped the node: the error names it, and the process exits non-zero.
    node.run_until_stopped().await?;
    Ok(())
}
