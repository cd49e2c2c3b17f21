//! `ifx key`: show or create the node key of a data dir.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ifx_node::identity::Identity;

#[derive(Subcommand)]
pub enum KeyCommand {
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

/// Prints the PeerId and public key (creating the key first for `init`).
pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    let id = match command {
        KeyCommand::Show { data_dir } => Identity::load(&data_dir)?,
        KeyCommand::Init { data_dir } => {
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            Identity::load_or_create(&data_dir)?
        }
    };
    println!("peer_id: {}", id.peer_id());
    println!("public_key: {}", hex::encode(id.public_key()));
    Ok(())
}
