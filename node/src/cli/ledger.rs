//! `ifx ledger`: read a node's ledger store, while it runs or stopped.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum LedgerCommand {
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

/// Runs one ledger command on the store in `data_dir`.
pub fn run(data_dir: &std::path::Path, json: bool, command: LedgerCommand) -> anyhow::Result<()> {
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

/// An entry's body as JSON, decoded by its kind (a seal shows its frontier as `[author, seq]`).
fn entry_body_json(e: &ifx_protocols::ledger::Entry) -> anyhow::Result<serde_json::Value> {
    use ifx_protocols::ledger::EntryBody;
    Ok(match EntryBody::of(e) {
        Ok(EntryBody::Unknown { bytes, .. }) => serde_json::json!({ "bytes": bytes }),
        Ok(EntryBody::Seal(seal)) => {
            let mut v = serde_json::to_value(&seal)?;
            v["frontier"] = seal.frontier.iter().map(|(a, seq)| serde_json::json!([hex::encode(a), seq])).collect();
            v
        }
        Ok(body) => serde_json::to_value(body)?,
        Err(err) => serde_json::json!({ "undecodable": err.to_string() }),
    })
}
