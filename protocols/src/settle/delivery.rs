//! Paid work: the burn and verified delivery. A job owner's [`JobPayment`] burns units of its
//! liquid balance and buys credit for one job, in work units at the price in force; a receipt
//! counts only when its author paid for its job, for the units the job's own spec gives the
//! tile or update (never the number the receipt claims), once per tile or per (round, worker),
//! and only while the credit lasts. Unpaid jobs may run, but earn nobody anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::account::Account;
use super::outcome::{EpochSettlement, JobLine};
use super::params::EconParams;
use crate::ledger::body::{EntryBody, PaidWork};
use crate::ledger::{Entry, EntryKind};

/// A paid job's credit, carried from epoch to epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Credit {
    pub work: PaidWork,
    /// Work units still to be delivered.
    pub remaining: u64,
    /// Tiles (render; the worker is zero) or `(round, worker)` (FL) already counted.
    pub counted: BTreeSet<(u32, [u8; 32])>,
    /// Units burned and work units bought for the job in all: what a delivered unit cost.
    pub burned: u128,
    pub bought: u128,
}

/// Credits by `(payer, job)`.
pub(super) type Credits = BTreeMap<([u8; 32], [u8; 16]), Credit>;

/// Delivered work units per worker, and what each payer consumed.
#[derive(Debug, Default)]
pub(super) struct Delivered {
    pub render: BTreeMap<[u8; 32], u64>,
    /// AI work: FL updates and inference batches (both in MFLOPs).
    pub fl: BTreeMap<[u8; 32], u64>,
    pub consumed: BTreeMap<[u8; 32], Consumed>,
}

/// What one payer's paid work delivered in the epoch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Consumed {
    /// Render and FL work units delivered (summed before any division: a 32 x 32 tile is less
    /// than a delivery milli-minute).
    pub render_units: u128,
    pub fl_units: u128,
    /// The units it burned for exactly that work (each unit at what its job paid per unit).
    pub cost: u128,
}

impl Consumed {
    /// Delivery micro-minutes: render units x 10^6 / render_units_per_minute, and FL alike.
    pub fn micro_minutes(&self, p: &EconParams) -> u128 {
        self.render_units * 1_000_000 / p.render_units_per_minute.max(1) as u128
            + self.fl_units * 1_000_000 / p.fl_units_per_minute.max(1) as u128
    }
}

/// Applies the payments of `set` (admitted, sorted): burns from liquid, adds credit; fills
/// `s.burned` and the job lines. Equivocators' payments are void.
pub(super) fn pay(
    accounts: &mut BTreeMap<[u8; 32], Account>,
    credits: &mut Credits,
    set: &[&Arc<Entry>],
    voided: &impl Fn(&[u8; 32]) -> bool,
    p: &EconParams,
    lines: &mut BTreeMap<([u8; 32], [u8; 16]), JobLine>,
    s: &mut EpochSettlement,
) {
    for e in set.iter().filter(|e| e.kind == EntryKind::JobPayment && !voided(&e.author)) {
        let who = hex::encode(&e.author[..4]);
        let pay = match EntryBody::of(e) {
            Ok(EntryBody::JobPayment(pay)) => pay,
            Ok(_) => continue,
            Err(err) => {
                s.ignored.push(format!("{who}.. payment: {err}"));
                continue;
            }
        };
        let liquid = accounts.get(&e.author).map_or(0, |a| a.liquid);
        if liquid < pay.amount {
            s.ignored.push(format!("{who}.. payment {}: only {liquid} liquid", pay.amount));
            continue;
        }
        let bought = p.credit_of(pay.amount, p.units_per_minute(&pay.work));
        let credit = credits.entry((e.author, pay.job)).or_insert_with(|| Credit {
            work: pay.work,
            remaining: 0,
            counted: BTreeSet::new(),
            burned: 0,
            bought: 0,
        });
        if credit.work != pay.work {
            s.ignored.push(format!("{who}.. payment: job {} was paid for other work", hex::encode(pay.job)));
            continue;
        }
        credit.remaining = credit.remaining.saturating_add(bought);
        credit.burned += pay.amount as u128;
        credit.bought += bought as u128;
        let a = accounts.get_mut(&e.author).expect("it had liquid");
        a.liquid -= pay.amount;
        a.burned = a.burned.saturating_add(pay.amount);
        s.burned = s.burned.saturating_add(pay.amount);
        let l = line(lines, e.author, pay.job);
        l.burned = l.burned.saturating_add(pay.amount);
        l.bought = l.bought.saturating_add(bought);
    }
}

fn line(lines: &mut BTreeMap<([u8; 32], [u8; 16]), JobLine>, payer: [u8; 32], job: [u8; 16]) -> &mut JobLine {
    lines.entry((payer, job)).or_insert_with(|| JobLine { payer, job, ..Default::default() })
}

/// Which work a receipt is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    Render,
    Fl,
    Infer,
}

/// Counts the receipts of `set` (admitted, sorted) against their authors' credit; refusals
/// by reason into `s.refused`.
pub(super) fn count(
    credits: &mut Credits,
    set: &[&Arc<Entry>],
    voided: &impl Fn(&[u8; 32]) -> bool,
    lines: &mut BTreeMap<([u8; 32], [u8; 16]), JobLine>,
    s: &mut EpochSettlement,
) -> Delivered {
    let mut out = Delivered::default();
    let mut refuse = |why: &str| *s.refused.entry(why.to_string()).or_default() += 1;
    for e in set
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::RenderReceipt | EntryKind::FlReceipt | EntryKind::InferReceipt))
    {
        // (job, what was delivered, to whom, which work, the FL contribution)
        let (job, item, worker, kind, contribution) = match EntryBody::of(e) {
            Ok(EntryBody::RenderReceipt(r)) => (r.job, (r.tile, [0u8; 32]), r.worker, Work::Render, 0),
            Ok(EntryBody::FlReceipt(r)) if r.accepted => {
                (r.task, (r.round, r.worker), r.worker, Work::Fl, r.contribution_ppm)
            }
            Ok(EntryBody::InferReceipt(r)) => (r.job, (r.batch, [0u8; 32]), r.worker, Work::Infer, 0),
            Ok(_) => continue,
            Err(_) => {
                refuse("receipt: does not decode");
                continue;
            }
        };
        if voided(&e.author) {
            refuse("receipt: its owner equivocated");
            continue;
        }
        if worker == e.author {
            refuse("receipt: written by its own worker");
            continue;
        }
        let Some(credit) = credits.get_mut(&(e.author, job)) else {
            refuse("receipt: the job was not paid for by its author");
            continue;
        };
        let units = match (credit.work, kind) {
            (PaidWork::Render { .. }, Work::Render) => match credit.work.units_of_tile(item.0 as u64) {
                Some(u) => u,
                None => {
                    refuse("receipt: the tile is outside the paid job");
                    continue;
                }
            },
            // An update earns its contribution's share of what the task paid per update.
            (PaidWork::Fl { .. }, Work::Fl) => {
                crate::fl::wire::contributed(credit.work.units_per_update().unwrap_or(0), contribution)
            }
            // A batch is worth the rows the paid job puts in it, whatever the receipt says.
            (PaidWork::Infer { .. }, Work::Infer) => match credit.work.units_of_batch(item.0) {
                Some(u) => u,
                None => {
                    refuse("receipt: the batch is outside the paid job");
                    continue;
                }
            },
            _ => {
                refuse("receipt: the job was paid for other work");
                continue;
            }
        };
        if credit.counted.contains(&item) {
            refuse("receipt: counted before");
            continue;
        }
        if credit.remaining == 0 {
            refuse("receipt: the job's credit is spent");
            continue;
        }
        credit.counted.insert(item);
        // Each counted receipt takes at least one unit of credit, even a tile worth none (a
        // 1 x 1 tile at 1 spp): receipts are outside the entry quota because the credit bounds
        // them, and the tiles remembered in `counted` must stay bounded by what was paid.
        let charge = units.max(1).min(credit.remaining);
        let units = units.min(credit.remaining);
        credit.remaining -= charge;
        // FL and inference are both AI work, counted in MFLOPs.
        let ai = kind != Work::Render;
        let to = if ai { &mut out.fl } else { &mut out.render };
        let u = to.entry(worker).or_default();
        *u = u.saturating_add(units);
        let c = out.consumed.entry(e.author).or_default();
        if ai {
            c.fl_units += units as u128;
        } else {
            c.render_units += units as u128;
        }
        c.cost += units as u128 * credit.burned / credit.bought.max(1);
        let l = line(lines, e.author, job);
        l.delivered = l.delivered.saturating_add(units);
    }
    for ((payer, job), l) in lines.iter_mut() {
        l.remaining = credits.get(&(*payer, *job)).map_or(0, |c| c.remaining);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::RenderReceipt;
    use crate::settle::outcome::Status;

    /// `bodies` as entries of kind `kind` by `owner`, one chain, in order.
    fn signed(
        owner: &ed25519_dalek::SigningKey,
        kind: EntryKind,
        bodies: impl Iterator<Item = Vec<u8>>,
    ) -> Vec<Arc<Entry>> {
        let mut l = crate::ledger::Ledger::new("d");
        bodies
            .map(|body| {
                let e = l.next_entry(owner, 0, kind, body).unwrap();
                l.ingest(vec![e.clone()], None);
                Arc::new(e)
            })
            .collect()
    }

    /// A job of tiles worth no work units (1 x 1 at 1 spp and 1 bounce) bought with one unit of
    /// credit: one receipt counts, the rest are refused, and `counted` holds one tile, not the
    /// job's million.
    #[test]
    fn receipts_of_tiles_worth_nothing_still_spend_credit() {
        let owner = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let work = PaidWork::Render { width: 1024, height: 1024, spp: 1, max_bounces: 1, tile: 1, frames: [0, 0] };
        let mut credits: Credits = [(
            (owner.verifying_key().to_bytes(), [1; 16]),
            Credit { work, remaining: 1, counted: BTreeSet::new(), burned: 20, bought: 1 },
        )]
        .into();
        let entries = signed(
            &owner,
            EntryKind::RenderReceipt,
            (0..50u32).map(|tile| {
                RenderReceipt { job: [1; 16], tile, worker: [9; 32], work_units: 0, signed: None }.encode()
            }),
        );
        let set: Vec<&Arc<Entry>> = entries.iter().collect();
        let mut s = EpochSettlement::empty(0, Status::Sealed, &EconParams::default());
        let mut lines = BTreeMap::new();
        let out = count(&mut credits, &set, &|_| false, &mut lines, &mut s);
        let credit = credits.values().next().unwrap();
        assert_eq!((credit.counted.len(), credit.remaining), (1, 0));
        assert_eq!(s.refused["receipt: the job's credit is spent"], 49);
        assert_eq!(out.render.get(&[9; 32]), Some(&0));
    }

    /// An FL update earns its contribution's share of the task's units per update: full, half,
    /// nothing; a receipt claiming more than the full share is paid the full share.
    #[test]
    fn fl_updates_are_paid_by_their_contribution() {
        let owner = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let work = PaidWork::Fl { examples: 10_000, local_epochs: 4 };
        let per_update = work.units_per_update().unwrap();
        assert_eq!(per_update, 1154, "10,000 examples x 4 epochs x 6 x 4,810 parameters / 10^6");
        let mut credits: Credits = [(
            (owner.verifying_key().to_bytes(), [1; 16]),
            Credit { work, remaining: 100 * per_update, counted: BTreeSet::new(), burned: 20, bought: 1 },
        )]
        .into();
        let shares = [(1u8, 1_000_000u32), (2, 500_000), (3, 0), (4, u32::MAX)];
        let receipts = shares.iter().map(|(w, ppm)| {
            crate::ledger::FlReceipt {
                task: [1; 16],
                round: 0,
                worker: [*w; 32],
                update: [0; 32],
                accepted: true,
                work_units: u64::MAX,
                contribution_ppm: *ppm,
                reason: String::new(),
            }
            .encode()
        });
        let entries = signed(&owner, EntryKind::FlReceipt, receipts);
        let set: Vec<&Arc<Entry>> = entries.iter().collect();
        let mut s = EpochSettlement::empty(0, Status::Sealed, &EconParams::default());
        let out = count(&mut credits, &set, &|_| false, &mut BTreeMap::new(), &mut s);
        assert_eq!(out.fl[&[1; 32]], per_update);
        assert_eq!(out.fl[&[2; 32]], per_update / 2);
        assert_eq!(out.fl[&[3; 32]], 0);
        assert_eq!(out.fl[&[4; 32]], per_update, "a claim above the full share is capped");
        // Credit is spent only for what was delivered (a zero share still takes one unit).
        let spent = 100 * per_update - credits.values().next().unwrap().remaining;
        assert_eq!(spent, per_update + per_update / 2 + 1 + per_update);
    }
}
