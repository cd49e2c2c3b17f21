//! `ifx estimate`: what a running node's key would be paid per epoch as a worker, by
//! settlement's own rules on its measured IB and uptime (or given ones), and the stake it needs.

use std::fmt::Write;

use ifx_protocols::settle::{Estimate, UNITS_PER_IFX};

/// `ifx estimate`'s flags.
#[derive(clap::Args)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub api: super::http::ApiTarget,
    /// Assume this IB (e.g. 2.5) instead of the verifiers' last measurement.
    #[arg(long)]
    pub ib: Option<f64>,
    /// Assume this uptime, percent of each epoch, instead of the attested one.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub uptime_pct: Option<u64>,
    /// Assume this much paid delivery per epoch, in minutes, instead of the last epoch's.
    #[arg(long)]
    pub delivery_minutes: Option<f64>,
    /// Print the node's JSON.
    #[arg(long)]
    pub json: bool,
}

/// A non-negative decimal `x` in thousandths.
fn milli(flag: &str, x: f64) -> anyhow::Result<u64> {
    anyhow::ensure!(x.is_finite() && (0.0..=1e12).contains(&x), "{flag} {x}: not a number between 0 and 10^12");
    Ok((x * 1000.0).round() as u64)
}

pub fn run(a: EstimateArgs) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if let Some(ib) = a.ib {
        q.push(format!("ib_milli={}", milli("--ib", ib)?));
    }
    if let Some(u) = a.uptime_pct {
        q.push(format!("uptime_pct={u}"));
    }
    if let Some(d) = a.delivery_minutes {
        q.push(format!("delivery_milli_minutes={}", milli("--delivery-minutes", d)?));
    }
    let path = if q.is_empty() { "estimate".to_string() } else { format!("estimate?{}", q.join("&")) };
    let v = super::http::api_get(&a.api, &path)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", screen(&serde_json::from_value(v)?));
    Ok(())
}

/// Units as IFX with six decimals.
pub fn ifx(units: u64) -> String {
    format!("{}.{:06} IFX", units / UNITS_PER_IFX, units % UNITS_PER_IFX)
}

/// The estimate on one screen.
pub fn screen(e: &Estimate) -> String {
    let mut s = String::new();
    let beside = e.based_on.map_or("no epoch sealed yet".to_string(), |b| format!("beside sealed epoch {b}"));
    let _ = writeln!(s, "estimate  epoch {} (epochs of {} s), {beside}", e.epoch, e.epoch_secs);
    let _ = writeln!(
        s,
        "pay       {} per epoch: {} liquid, {} vesting; {} a day",
        ifx(e.total),
        ifx(e.liquid),
        ifx(e.vesting),
        ifx(e.per_day)
    );
    let _ = writeln!(
        s,
        "share     weight {} beside {} of {} other workers, in a worker pool of {} (mint {})",
        e.weight,
        e.others_weight,
        e.other_workers,
        ifx(e.pool_workers),
        ifx(e.minted)
    );
    let ib = format!("{}.{:03}", e.assumed.ib_milli / 1000, e.assumed.ib_milli % 1000);
    let stake = if e.bonded >= e.required_stake {
        format!("bonded {}, required {} at IB {ib}: enough", ifx(e.bonded), ifx(e.required_stake))
    } else {
        format!(
            "bonded {}, required {} at IB {ib}: bond {} more units (ifx stake bond --amount {})",
            ifx(e.bonded),
            ifx(e.required_stake),
            e.required_stake - e.bonded,
            e.required_stake - e.bonded
        )
    };
    let _ = writeln!(s, "stake     {stake}");
    if let Some(why) = &e.excluded {
        let _ = writeln!(s, "unpaid    {why}; bonded and eligible it would earn {} per epoch", ifx(e.if_staked));
    }
    for (i, a) in e.assumptions.iter().enumerate() {
        let _ = writeln!(s, "{}{a}", if i == 0 { "assumes   " } else { "          " });
    }
    s
}
