//! `ifx rewards`: an epoch's settlement from a node's ledger store, offline, with the network
//! parameters the node ran with.

use anyhow::Context;

/// The network parameters the node of `data_dir` ran with.
pub fn network_of(data_dir: &std::path::Path) -> anyhow::Result<ifx_protocols::NetworkConfig> {
    let net_file = data_dir.join(ifx_node::node::NETWORK_FILE);
    let text = std::fs::read_to_string(&net_file)
        .with_context(|| format!("reading {} (has a node run with this data dir?)", net_file.display()))?;
    #[derive(serde::Deserialize)]
    struct Only {
        network: ifx_protocols::NetworkConfig,
    }
    let net = toml::from_str::<Only>(&text).with_context(|| format!("parsing {}", net_file.display()))?.network;
    net.validate("network")?;
    Ok(net)
}

/// Prints the settlement of `epoch` (or of every epoch, in short).
pub fn run(data_dir: &std::path::Path, epoch: Option<u64>, json: bool) -> anyhow::Result<()> {
    let net = network_of(data_dir)?;
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
                "epoch {} {:?}: minted {} units, burned {}, net supply {:+}, penalties {}, unallocated {}",
                s.epoch, s.status, s.minted, s.burned, s.net_supply, s.penalties, s.unallocated
            );
            println!("settlement root {}", hex::encode(s.root));
            println!(
                "pools: workers {} verifiers {} artists {} governance {}",
                s.pool_workers, s.pool_verifiers, s.pool_artists, s.pool_governance
            );
            println!(
                "{:<18} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}",
                "key", "total", "as worker", "as artist", "liquid", "vesting", "weight"
            );
            for p in &s.payouts {
                println!(
                    "{:<18} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}",
                    format!("{}..", &hex::encode(p.key)[..16]),
                    p.total,
                    p.workers,
                    p.artists,
                    p.liquid,
                    p.vesting,
                    p.worker_weight.max(p.verifier_weight)
                );
            }
            for j in &s.jobs {
                println!(
                    "job {} paid by {}..: burned {} units for {} work units, {} delivered, {} left",
                    hex::encode(j.job),
                    &hex::encode(j.payer)[..16],
                    j.burned,
                    j.bought,
                    j.delivered,
                    j.remaining
                );
            }
            for f in &s.faults {
                println!(
                    "bad-tile evidence {}.. against {}.. by {}.. (filed in epoch {}): {} (guilty stake {}, innocent {})",
                    &hex::encode(f.fault)[..16],
                    &hex::encode(f.worker)[..16],
                    &hex::encode(f.payer)[..16],
                    f.filed,
                    f.decision,
                    f.guilty_stake,
                    f.innocent_stake
                );
            }
            for (why, n) in &s.refused {
                println!("refused {n} x {why}");
            }
            for x in &s.slashed {
                let vesting =
                    if x.vesting > 0 { format!(" ({} of them vesting pay)", x.vesting) } else { String::new() };
                println!("slashed {}.. {} units{vesting}: {}", &hex::encode(x.key)[..16], x.amount, x.reason);
            }
            for w in s.workers.iter().filter(|w| w.excluded.is_some()) {
                println!("unpaid {}.. {}", &hex::encode(w.key)[..16], w.excluded.as_deref().unwrap_or(""));
            }
        }
        None if json => println!("{}", serde_json::to_string_pretty(&st)?),
        None => {
            for s in &st.epochs {
                println!(
                    "epoch {:>6} {:<10} minted {:>16} burned {:>14} paid {:>4} slashed {:>2} root {}",
                    s.epoch,
                    format!("{:?}", s.status),
                    s.minted,
                    s.burned,
                    s.payouts.len(),
                    s.slashed.len(),
                    hex::encode(s.root)
                );
            }
        }
    }
    Ok(())
}
