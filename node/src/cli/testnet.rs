//! `ifx testnet`: a whole network on this machine, as processes or in this process.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ifx_node::Node;

/// Runs the testnet and returns its verdict as the exit code.
pub fn run(mut args: ifx_testnet::TestnetArgs) -> anyhow::Result<ExitCode> {
    if args.in_process {
        // A hundred nodes' warnings would bury the progress bar: in process they all go
        // to one file in the base dir (each node's own log file when it is a process).
        let base = args.base_dir.get_or_insert_with(ifx_testnet::default_base_dir).clone();
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let path = base.join(ifx_testnet::IN_PROCESS_LOG);
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        super::init_logs_to("warn", false, file, false);
    } else {
        super::init_logs("warn", false);
    }
    let binary = std::env::current_exe().context("locating the ifx binary")?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let host: std::sync::Arc<dyn ifx_testnet::Host> = std::sync::Arc::new(InProcessHost::default());
    let report = rt.block_on(ifx_testnet::run_with(binary, args, Some(host)))?;
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Starts `ifx node` inside this process for `ifx testnet --in-process`; its nodes share one
/// set of GPU devices (the machine has one GPU however many nodes it runs).
#[derive(Default)]
struct InProcessHost {
    devices: std::sync::Arc<ifx_node::compute::Devices>,
}

/// `ifx node`'s flags alone.
#[derive(Parser)]
struct NodeOnly {
    #[command(flatten)]
    args: super::node::NodeArgs,
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
    ) -> ifx_testnet::BoxFuture<'static, Result<Box<dyn ifx_testnet::RunningNode>, ifx_testnet::TestnetError>> {
        let devices = self.devices.clone();
        Box::pin(async move {
            let host = |e: &dyn std::fmt::Display| ifx_testnet::TestnetError::Host(e.to_string());
            let parsed =
                NodeOnly::try_parse_from(std::iter::once("node".to_string()).chain(args)).map_err(|e| host(&e))?;
            let cfg = parsed.args.load().map_err(|e| host(&e))?;
            let node = Node::start_on(cfg, devices).await.map_err(|e| host(&e))?;
            Ok(Box::new(InProcessNode(node)) as Box<dyn ifx_testnet::RunningNode>)
        })
    }
}
