//! Economic parameters (`[network.economics]`) and genesis allocations (`[[network.genesis]]`).
//! Every parameter is an integer with a name, so governance can change it by name and every
//! node applies the change with the same arithmetic. Amounts are in micro-IFX (1 IFX =
//! 1,000,000 units); shares are basis points (1/10,000).

use serde::{Deserialize, Serialize};

use crate::invalid::InvalidValue;
pub use crate::ledger::body::StakeRole;

/// Units per IFX.
pub const UNITS_PER_IFX: u64 = 1_000_000;
/// Basis points in a whole.
pub const BPS: u64 = 10_000;
/// Longest vesting or unbonding period: 100 years.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// Parameters of minting, weights, stake and governance. Defaults follow the whitepaper where
/// it gives a number (see `docs/ECONOMICS.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EconParams {
    /// Minted in epoch 0 (E_p of the emission plan).
    pub mint_per_epoch: u64,
    /// The mint halves every this many epochs (0: never).
    pub halving_epochs: u64,
    /// Share of the mint paid to workers, in basis points.
    pub workers_bps: u64,
    /// Share of the mint paid to verifiers (the rest after workers, verifiers and artists goes
    /// to governance participants).
    pub verifiers_bps: u64,
    /// Share of the mint paid to artists for the paid work they consumed (whitepaper: "based
    /// on the volume and frequency of each individual's IBM consumption").
    pub artists_bps: u64,
    /// Most an artist gets back of what its delivered work cost it, in basis points: what keeps
    /// the artists' reward from paying for self-dealing (`docs/ECONOMICS.md`).
    pub artist_rebate_bps: u64,
    /// Epochs of consumption history the frequency bonus looks back over (at most 64).
    pub artist_window_epochs: u64,
    /// W_PoD x 1000: weight of a verified delivery minute against an uptime minute.
    pub w_pod_milli: u64,
    /// Render work units that count as one delivery minute.
    pub render_units_per_minute: u64,
    /// FL work units that count as one delivery minute.
    pub fl_units_per_minute: u64,
    /// IB x 1000 assumed for a worker no verifier has benchmarked yet.
    pub default_ib_milli: u64,
    /// P: units per IB-hour; a worker's required stake is 2 x epoch hours x IB x P.
    pub price_per_ib_hour: u64,
    /// Stake a verifier must have bonded to count in quorums and be paid.
    pub min_verifier_stake: u64,
    /// Share of its bonded and unbonding stake a caught cheater loses per epoch it is caught.
    pub slash_bps: u64,
    /// Share of each payout that is liquid at once; the rest vests linearly.
    pub liquid_bps: u64,
    /// How long the vesting part takes to vest, in seconds (whitepaper: 180 days).
    pub vesting_secs: u64,
    /// Delay between an unbond and the stake becoming liquid, in seconds (whitepaper: 90 days).
    pub unbonding_secs: u64,
    /// Votes (share of all bonded stake) a proposal needs to be decided.
    pub gov_quorum_bps: u64,
    /// A proposal passes when its yes stake exceeds this share of the votes cast.
    pub gov_threshold_bps: u64,
    /// A proposal names an epoch at least this many epochs after the one it is sealed in.
    pub gov_min_delay_epochs: u64,
    /// The burn: units a job owner pays per delivery minute it buys (a delivery minute is
    /// `render_units_per_minute` render units or `fl_units_per_minute` FL units). It keeps
    /// self-dealing below honest work (`docs/ECONOMICS.md`, the wash-trading inequality).
    pub job_price_per_minute: u64,
    /// Entries an author may write per epoch that settlement reads, before stake adds more
    /// (receipts that spend a paid job's credit do not count: the payment bounds them).
    pub entry_quota_base: u64,
    /// Bonded units per further entry of the quota (1 IFX: a verifier at the minimum stake
    /// gets 1,000 more entries an epoch).
    pub entry_quota_stake: u64,
    /// Epochs after the one it was found guilty in that a worker caught delivering a bad job
    /// tile earns nothing from the worker pool (besides the slash): faking a tile must cost more
    /// than the work it saves, and the 20% slash alone is small beside a worker's pay in a
    /// network whose epochs pay a lot (at most 1,000).
    pub jail_epochs: u64,
}

impl Default for EconParams {
    fn default() -> Self {
        Self {
            mint_per_epoch: 10_000 * UNITS_PER_IFX,
            // About a year of 72-hour epochs.
            halving_epochs: 122,
            // Whitepaper pools 37.5% : 7.5% : 1.25% of supply, normalised (30 : 6 : 1).
            workers_bps: 8_108,
            verifiers_bps: 1_622,
            // Half of what was the governance pool (270 bps).
            artists_bps: 135,
            artist_rebate_bps: 2_500,
            artist_window_epochs: 10,
            w_pod_milli: 2_000,
            render_units_per_minute: 100_000,
            fl_units_per_minute: 1_000,
            default_ib_milli: 1_000,
            price_per_ib_hour: UNITS_PER_IFX,
            min_verifier_stake: 1_000 * UNITS_PER_IFX,
            slash_bps: 2_000,
            liquid_bps: 2_500,
            vesting_secs: 180 * 86_400,
            unbonding_secs: 90 * 86_400,
            gov_quorum_bps: 3_334,
            gov_threshold_bps: 5_000,
            gov_min_delay_epochs: 2,
            // Above the most a delivery minute can add to a self-dealer's worker reward at full
            // uptime: pool x W_PoD / (4 x epoch minutes) = 8,108 x 2 / 17,280 = 0.94 IFX.
            job_price_per_minute: 2 * UNITS_PER_IFX,
            entry_quota_base: 256,
            entry_quota_stake: UNITS_PER_IFX,
            jail_epochs: 10,
        }
    }
}

/// The names governance may change, in the order `ifx gov list` shows them.
pub const PARAM_NAMES: [&str; 24] = [
    "mint_per_epoch",
    "halving_epochs",
    "workers_bps",
    "verifiers_bps",
    "artists_bps",
    "artist_rebate_bps",
    "artist_window_epochs",
    "w_pod_milli",
    "render_units_per_minute",
    "fl_units_per_minute",
    "default_ib_milli",
    "price_per_ib_hour",
    "min_verifier_stake",
    "slash_bps",
    "liquid_bps",
    "vesting_secs",
    "unbonding_secs",
    "gov_quorum_bps",
    "gov_threshold_bps",
    "gov_min_delay_epochs",
    "job_price_per_minute",
    "entry_quota_base",
    "entry_quota_stake",
    "jail_epochs",
];

impl EconParams {
    fn slot(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            "mint_per_epoch" => &mut self.mint_per_epoch,
            "halving_epochs" => &mut self.halving_epochs,
            "workers_bps" => &mut self.workers_bps,
            "verifiers_bps" => &mut self.verifiers_bps,
            "artists_bps" => &mut self.artists_bps,
            "artist_rebate_bps" => &mut self.artist_rebate_bps,
            "artist_window_epochs" => &mut self.artist_window_epochs,
            "w_pod_milli" => &mut self.w_pod_milli,
            "render_units_per_minute" => &mut self.render_units_per_minute,
            "fl_units_per_minute" => &mut self.fl_units_per_minute,
            "default_ib_milli" => &mut self.default_ib_milli,
            "price_per_ib_hour" => &mut self.price_per_ib_hour,
            "min_verifier_stake" => &mut self.min_verifier_stake,
            "slash_bps" => &mut self.slash_bps,
            "liquid_bps" => &mut self.liquid_bps,
            "vesting_secs" => &mut self.vesting_secs,
            "unbonding_secs" => &mut self.unbonding_secs,
            "gov_quorum_bps" => &mut self.gov_quorum_bps,
            "gov_threshold_bps" => &mut self.gov_threshold_bps,
            "gov_min_delay_epochs" => &mut self.gov_min_delay_epochs,
            "job_price_per_minute" => &mut self.job_price_per_minute,
            "entry_quota_base" => &mut self.entry_quota_base,
            "entry_quota_stake" => &mut self.entry_quota_stake,
            "jail_epochs" => &mut self.jail_epochs,
            _ => return None,
        })
    }

    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.clone().slot(name).map(|v| *v)
    }

    /// A copy with `name` set to `value`, if the name exists and the result is valid.
    pub fn with(&self, name: &str, value: u64) -> Result<Self, InvalidValue> {
        let mut next = self.clone();
        let slot = next.slot(name).ok_or_else(|| {
            InvalidValue::new(name, format!("no such parameter (one of: {})", PARAM_NAMES.join(", ")))
        })?;
        *slot = value;
        next.validate("economics")?;
        Ok(next)
    }

    /// Checks every value; the error names the key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), InvalidValue> {
        let key = |k: &str| format!("{prefix}.{k}");
        let bps = |k: &str, v: u64| {
            if v > BPS { Err(InvalidValue::new(key(k), format!("{v} exceeds {BPS} basis points"))) } else { Ok(()) }
        };
        for (k, v) in [
            ("workers_bps", self.workers_bps),
            ("verifiers_bps", self.verifiers_bps),
            ("artists_bps", self.artists_bps),
            ("artist_rebate_bps", self.artist_rebate_bps),
            ("slash_bps", self.slash_bps),
            ("liquid_bps", self.liquid_bps),
            ("gov_quorum_bps", self.gov_quorum_bps),
            ("gov_threshold_bps", self.gov_threshold_bps),
        ] {
            bps(k, v)?;
        }
        let shares = self.workers_bps + self.verifiers_bps + self.artists_bps;
        if shares > BPS {
            return Err(InvalidValue::new(
                key("verifiers_bps"),
                format!("workers_bps + verifiers_bps + artists_bps = {shares} exceeds {BPS}"),
            ));
        }
        if self.jail_epochs > 1_000 {
            return Err(InvalidValue::new(key("jail_epochs"), "must be at most 1000"));
        }
        if self.artist_window_epochs > 64 {
            return Err(InvalidValue::new(key("artist_window_epochs"), "must be at most 64"));
        }
        // Bounds that keep every product in settlement inside u128 with room to spare.
        if self.mint_per_epoch > 1 << 60 {
            return Err(InvalidValue::new(key("mint_per_epoch"), "must be at most 2^60 units"));
        }
        for (k, v) in [
            ("render_units_per_minute", self.render_units_per_minute),
            ("fl_units_per_minute", self.fl_units_per_minute),
            ("default_ib_milli", self.default_ib_milli),
            ("job_price_per_minute", self.job_price_per_minute),
            ("entry_quota_stake", self.entry_quota_stake),
        ] {
            if v == 0 {
                return Err(InvalidValue::new(key(k), "must be positive"));
            }
        }
        if self.w_pod_milli > 1_000_000 {
            return Err(InvalidValue::new(key("w_pod_milli"), "must be at most 1000000 (W_PoD 1000)"));
        }
        if self.default_ib_milli > 1 << 32 || self.price_per_ib_hour > 1 << 48 {
            return Err(InvalidValue::new(key("price_per_ib_hour"), "IB and price are too large"));
        }
        // Upper bounds keep every epoch sum in settlement far from overflow.
        for (k, v, most) in [
            ("vesting_secs", self.vesting_secs, MAX_DURATION_SECS),
            ("unbonding_secs", self.unbonding_secs, MAX_DURATION_SECS),
            ("gov_min_delay_epochs", self.gov_min_delay_epochs, 1_000_000),
            ("job_price_per_minute", self.job_price_per_minute, 1 << 60),
            ("entry_quota_base", self.entry_quota_base, 1_000_000),
        ] {
            if v > most {
                return Err(InvalidValue::new(key(k), format!("{v} exceeds {most}")));
            }
        }
        if self.gov_min_delay_epochs < 2 {
            return Err(InvalidValue::new(
                key("gov_min_delay_epochs"),
                "must be at least 2 (votes close one sealed epoch before the change applies)",
            ));
        }
        Ok(())
    }

    /// Units minted in epoch `e`.
    pub fn mint_at(&self, epoch: u64) -> u64 {
        match self.halving_epochs {
            0 => self.mint_per_epoch,
            h => self.mint_per_epoch.checked_shr((epoch / h).min(64) as u32).unwrap_or(0),
        }
    }

    /// A worker's required stake for one epoch of `epoch_secs` at `ib_milli`:
    /// 2 x epoch hours x IB x P.
    pub fn required_stake(&self, epoch_secs: u64, ib_milli: u64) -> u64 {
        let v = 2u128 * epoch_secs as u128 * ib_milli as u128 * self.price_per_ib_hour as u128 / (3_600 * 1_000);
        v.min(u64::MAX as u128) as u64
    }

    /// Work units of `work`'s kind that make one delivery minute.
    pub fn units_per_minute(&self, work: &crate::ledger::body::PaidWork) -> u64 {
        match work {
            crate::ledger::body::PaidWork::Render { .. } => self.render_units_per_minute,
            // Inference units are MFLOPs, as FL units are: one rate for AI work.
            crate::ledger::body::PaidWork::Fl { .. } | crate::ledger::body::PaidWork::Infer { .. } => {
                self.fl_units_per_minute
            }
        }
    }

    /// Delivery credit a payment of `amount` units buys, in work units of a kind worth
    /// `units_per_minute` per delivery minute: `amount x units_per_minute / price`.
    pub fn credit_of(&self, amount: u64, units_per_minute: u64) -> u64 {
        let v = amount as u128 * units_per_minute as u128 / self.job_price_per_minute.max(1) as u128;
        v.min(u64::MAX as u128) as u64
    }

    /// What `units` work units of a kind worth `units_per_minute` per delivery minute cost,
    /// rounded up (the amount a job owner pays so that [`EconParams::credit_of`] covers them).
    pub fn price_of(&self, units: u64, units_per_minute: u64) -> u64 {
        let v = (units as u128 * self.job_price_per_minute as u128).div_ceil(units_per_minute.max(1) as u128);
        v.min(u64::MAX as u128) as u64
    }

    /// Entries `bonded` stake lets an author write per epoch (see `entry_quota_base`).
    pub fn entry_quota(&self, bonded: u64) -> u64 {
        self.entry_quota_base.saturating_add(bonded / self.entry_quota_stake.max(1))
    }

    /// `secs` in whole epochs of `epoch_secs`, rounded up, at least 1.
    pub fn epochs_of(secs: u64, epoch_secs: u64) -> u64 {
        secs.div_ceil(epoch_secs.max(1)).max(1)
    }
}

/// One genesis allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAlloc {
    /// Public key, 64 hex characters.
    pub key: String,
    /// Role the stake is bonded as.
    pub role: StakeRole,
    /// Bonded at genesis (units).
    #[serde(default)]
    pub stake: u64,
    /// Liquid at genesis (units).
    #[serde(default)]
    pub liquid: u64,
}

impl GenesisAlloc {
    /// The decoded key.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(&self.key, &mut k).ok().map(|()| k)
    }
}

/// Checks the genesis list: keys decode, appear once, totals fit.
pub fn validate_genesis(list: &[GenesisAlloc], prefix: &str) -> Result<(), InvalidValue> {
    let mut seen = std::collections::BTreeSet::new();
    let mut total: u128 = 0;
    for (i, g) in list.iter().enumerate() {
        let key = format!("{prefix}[{i}].key");
        let k =
            g.key_bytes().ok_or_else(|| InvalidValue::new(&key, format!("{:?} is not 64 hex characters", g.key)))?;
        if !seen.insert(k) {
            return Err(InvalidValue::new(key, format!("{} is allocated twice", g.key)));
        }
        total += g.stake as u128 + g.liquid as u128;
    }
    if total > 1 << 62 {
        return Err(InvalidValue::new(prefix, "allocations exceed 2^62 units in total"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_name_resolves() {
        let p = EconParams::default();
        p.validate("economics").unwrap();
        for n in PARAM_NAMES {
            assert!(p.get(n).is_some(), "{n}");
        }
        assert_eq!(p.with("workers_bps", 7_000).unwrap().workers_bps, 7_000);
        assert_eq!(p.with("nope", 1).unwrap_err().key, "nope");
        assert_eq!(p.with("workers_bps", 9_000).unwrap_err().key, "economics.verifiers_bps");
        assert_eq!(p.with("gov_min_delay_epochs", 1).unwrap_err().key, "economics.gov_min_delay_epochs");
        // A vote cannot set a value that would overflow an epoch sum.
        assert_eq!(p.with("gov_min_delay_epochs", u64::MAX).unwrap_err().key, "economics.gov_min_delay_epochs");
        assert_eq!(p.with("unbonding_secs", u64::MAX).unwrap_err().key, "economics.unbonding_secs");
        // Issue #21's parameters: a zero price would buy unbounded credit, a zero stake unit
        // divide by zero; the pools must fit the mint; the frequency window is a 64-bit mask.
        assert_eq!(p.with("job_price_per_minute", 0).unwrap_err().key, "economics.job_price_per_minute");
        assert_eq!(p.with("job_price_per_minute", u64::MAX).unwrap_err().key, "economics.job_price_per_minute");
        assert_eq!(p.with("entry_quota_stake", 0).unwrap_err().key, "economics.entry_quota_stake");
        assert_eq!(p.with("jail_epochs", 1_001).unwrap_err().key, "economics.jail_epochs");
        assert_eq!(p.with("entry_quota_base", u64::MAX).unwrap_err().key, "economics.entry_quota_base");
        assert_eq!(p.with("artists_bps", 1_000).unwrap_err().key, "economics.verifiers_bps");
        assert_eq!(p.with("artist_rebate_bps", 10_001).unwrap_err().key, "economics.artist_rebate_bps");
        assert_eq!(p.with("artist_window_epochs", 65).unwrap_err().key, "economics.artist_window_epochs");
    }

    #[test]
    fn mint_halves_and_stake_follows_the_formula() {
        let p = EconParams { mint_per_epoch: 1_000, halving_epochs: 10, ..Default::default() };
        assert_eq!(p.mint_at(0), 1_000);
        assert_eq!(p.mint_at(9), 1_000);
        assert_eq!(p.mint_at(10), 500);
        assert_eq!(p.mint_at(10 * 70), 0);
        // 72-hour epoch, IB 1, P = 1 IFX: 2 x 72 x 1 x 1 = 144 IFX.
        assert_eq!(EconParams::default().required_stake(72 * 3600, 1_000), 144 * UNITS_PER_IFX);
        assert_eq!(EconParams::epochs_of(180 * 86_400, 72 * 3600), 60);
        assert_eq!(EconParams::epochs_of(1, 30), 1);
    }

    #[test]
    fn genesis_checks_keys() {
        let g = |k: &str| GenesisAlloc { key: k.into(), role: StakeRole::Worker, stake: 1, liquid: 0 };
        let a = "11".repeat(32);
        validate_genesis(&[g(&a)], "network.genesis").unwrap();
        assert_eq!(validate_genesis(&[g("zz")], "network.genesis").unwrap_err().key, "network.genesis[0].key");
        assert_eq!(validate_genesis(&[g(&a), g(&a)], "network.genesis").unwrap_err().key, "network.genesis[1].key");
    }
}
