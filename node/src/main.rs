//! The `ifx` binary: `ifx node`, `ifx key show|init`, `ifx config show`, `ifx testnet`,
//! `ifx render`, `ifx fl start`, `ifx ledger`, `ifx rewards`, `ifx stake`, `ifx gov`. Each
//! command is a module of `cli/`; this file parses and dispatches.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // `ifx testnet --scenario`: the scenario fills in whatever the command line did not give.
    if let (Command::Testnet(args), Some(sub)) = (&mut cli.command, matches.subcommand_matches("testnet")) {
        let explicit = |id: &str| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        match (**args).clone().with_scenario(&explicit) {
            Ok(a) => **args = a,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
