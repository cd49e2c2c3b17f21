//! `ifx stake`: bond or unbond a running node's stake.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum StakeCommand {
    /// Move liquid units into bonded stake.
    Bond {
        #[command(flatten)]
        api: super::http::ApiTarget,
        /// Units (1 IFX = 1,000,000).
        #[arg(long)]
        amount: u64,
        /// worker or verifier.
        #[arg(long, default_value = "worker")]
        role: String,
    },
    /// Start unbonding; the units become liquid after the unbonding delay.
    Unbond {
        #[command(flatten)]
        api: super::http::ApiTarget,
        #[arg(long)]
        amount: u64,
    },
}

/// Asks the node to append the stake entry.
pub fn run(command: StakeCommand) -> anyhow::Result<ExitCode> {
    let (api, body) = match command {
        StakeCommand::Bond { api, amount, role } => {
            let role: ifx_protocols::settle::StakeRole =
                serde_json::from_value(serde_json::json!(role)).context("--role must be worker or verifier")?;
            (api, serde_json::json!({ "op": "bond", "amount": amount, "role": role }))
        }
        StakeCommand::Unbond { api, amount } => (api, serde_json::json!({ "op": "unbond", "amount": amount })),
    };
    super::http::api_post(&api, "stake", &body)
}
