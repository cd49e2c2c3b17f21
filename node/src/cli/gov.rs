//! `ifx gov`: propose parameter changes, vote, list proposals and parameters.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum GovCommand {
    /// Propose `--param` = `--value` from epoch `--from-epoch` on.
    Propose {
        #[command(flatten)]
        api: super::http::ApiTarget,
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
        #[command(flatten)]
        api: super::http::ApiTarget,
        #[arg(long)]
        proposal: String,
        /// Vote no instead of yes.
        #[arg(long)]
        no: bool,
    },
    /// Parameters in force, open proposals with votes, decided proposals.
    List {
        #[command(flatten)]
        api: super::http::ApiTarget,
    },
}

/// Runs one governance command against a node's API.
pub fn run(command: GovCommand) -> anyhow::Result<ExitCode> {
    match command {
        GovCommand::Propose { api, param, value, from_epoch, note } => super::http::api_post(
            &api,
            "gov/proposals",
            &serde_json::json!({ "param": param, "value": value, "from_epoch": from_epoch, "note": note }),
        ),
        GovCommand::Vote { api, proposal, no } => {
            super::http::api_post(&api, "gov/votes", &serde_json::json!({ "proposal": proposal, "yes": !no }))
        }
        GovCommand::List { api } => {
            let v = super::http::api_get(&api, "gov")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
