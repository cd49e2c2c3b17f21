//! The body of a [`crate::ledger::EntryKind::LinkReport`] entry: the links one verifier measured
//! to workers in one epoch (issue #17, the whitepaper's "link data collection"): the path the
//! connection took, the round trip and the throughput both ways, over [`crate::link`]. Job
//! owners schedule by them and `GET /peers` shows them; no money moves on them.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::parts::{self, Parted};
use crate::codec::DecodeError;
use crate::ledger::entry::MAX_ENTRY_BODY;
use crate::link::LinkPath;

/// One verifier's measurement of one worker.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct WorkerLink {
    /// The worker's public key.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub worker: [u8; 32],
    /// How the verifier's connection to the worker ran.
    pub path: LinkPath,
    /// One small request's round trip, µs.
    pub rtt_us: u32,
    /// Throughput from the verifier to the worker (the worker's download), kbit/s.
    pub to_worker_kbit: u32,
    /// Throughput from the worker to the verifier (its upload), kbit/s.
    pub from_worker_kbit: u32,
}

/// Links in one part: a [`WorkerLink`] encodes to at most 48 bytes (32 + 1 + three varints of
/// at most 5), so 600 of them (28.1 KiB) and the header fit the 32 KiB entry body.
pub const LINKS_PER_PART: usize = 600;

/// A verifier's link report for one epoch: the workers it measured in that epoch, in `parts`
/// entries of at most [`LINKS_PER_PART`] links each, ascending by worker across parts.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct LinkReport {
    /// The epoch the measurements were taken in.
    pub epoch: u64,
    pub part: u32,
    pub parts: u32,
    /// Links sorted by worker key.
    pub links: Vec<WorkerLink>,
}

impl Parted for LinkReport {
    type Item = WorkerLink;
    fn part(&self) -> u32 {
        self.part
    }
    fn parts(&self) -> u32 {
        self.parts
    }
    fn items(&self) -> &[WorkerLink] {
        &self.links
    }
    fn key(item: &WorkerLink) -> [u8; 32] {
        item.worker
    }
}

impl LinkReport {
    /// The report of `epoch` in parts; `links` in any order (a worker measured twice: the
    /// first listed counts).
    pub fn split(epoch: u64, links: impl IntoIterator<Item = WorkerLink>) -> Vec<Self> {
        let mut links: Vec<WorkerLink> = links.into_iter().collect();
        links.sort_by_key(|l| l.worker);
        links.dedup_by_key(|l| l.worker);
        let chunks = parts::chunks(&links, LINKS_PER_PART);
        let parts = chunks.len() as u32;
        chunks.into_iter().enumerate().map(|(i, links)| Self { epoch, part: i as u32, parts, links }).collect()
    }

    /// Merges the parts one verifier wrote for one epoch, in ledger order (see
    /// [`parts::merge`]). `None` without parts.
    pub fn merge<'a>(written: impl IntoIterator<Item = &'a Self>) -> Option<Self> {
        let (last, links) = parts::merge(written)?;
        Some(Self { epoch: last.epoch, part: 0, parts: 1, links })
    }

    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        parts::check(&v)?;
        Ok(v)
    }
}

/// A worker's link as the verifiers attest it: each verifier's latest measurement of it, then
/// the median of each figure over those verifiers (the lower middle one of an even count), so
/// that a minority of lying verifiers moves none of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedLink {
    /// The newest epoch among the measurements used.
    pub epoch: u64,
    /// Verifiers whose measurement counts.
    pub verifiers: u32,
    pub path: LinkPath,
    pub rtt_us: u32,
    pub to_worker_kbit: u32,
    pub from_worker_kbit: u32,
}

impl AttestedLink {
    /// The slower direction, kbit/s.
    pub fn slowest_kbit(&self) -> u32 {
        self.to_worker_kbit.min(self.from_worker_kbit)
    }
}

/// The attested link of every worker in `reports` (each verifier's merged report of an epoch,
/// any number of epochs per verifier, in any order). Integers and sorted maps only: every node
/// reading the same reports gets the same links.
pub fn attested<'a>(reports: impl IntoIterator<Item = ([u8; 32], &'a LinkReport)>) -> BTreeMap<[u8; 32], AttestedLink> {
    // worker -> verifier -> (epoch, link) of the verifier's newest report naming the worker.
    type Newest<'a> = BTreeMap<[u8; 32], (u64, &'a WorkerLink)>;
    let mut by_worker: BTreeMap<[u8; 32], Newest> = BTreeMap::new();
    for (verifier, r) in reports {
        for l in &r.links {
            let slot = by_worker.entry(l.worker).or_default().entry(verifier).or_insert((r.epoch, l));
            if r.epoch > slot.0 {
                *slot = (r.epoch, l);
            }
        }
    }
    by_worker
        .into_iter()
        .map(|(worker, by_verifier)| {
            let ms: Vec<(u64, &WorkerLink)> = by_verifier.into_values().collect();
            // Every worker here has a measurement at least.
            fn median<T: Ord + Default>(v: Vec<T>) -> T {
                crate::stats::lower_median(v).unwrap_or_default()
            }
            let link = AttestedLink {
                epoch: ms.iter().map(|(e, _)| *e).max().unwrap_or(0),
                verifiers: ms.len() as u32,
                path: median(ms.iter().map(|(_, l)| l.path).collect()),
                rtt_us: median(ms.iter().map(|(_, l)| l.rtt_us).collect()),
                to_worker_kbit: median(ms.iter().map(|(_, l)| l.to_worker_kbit).collect()),
                from_worker_kbit: median(ms.iter().map(|(_, l)| l.from_worker_kbit).collect()),
            };
            (worker, link)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(i: u32, kbit: u32) -> WorkerLink {
        let mut worker = [0u8; 32];
        worker[..4].copy_from_slice(&i.to_be_bytes());
        WorkerLink {
            worker,
            path: LinkPath::Relayed,
            rtt_us: u32::MAX,
            to_worker_kbit: kbit,
            from_worker_kbit: u32::MAX,
        }
    }

    /// The largest links there are still fit: 10,000 workers (a verifier measures at most a few
    /// dozen an epoch; the body holds far more) in parts that decode and merge back.
    #[test]
    fn reports_of_ten_thousand_links_split_into_parts_that_fit_and_merge_back() {
        let parts = LinkReport::split(4, (0..10_000).rev().map(|i| link(i, u32::MAX)));
        assert_eq!(parts.len(), 10_000usize.div_ceil(LINKS_PER_PART));
        for p in &parts {
            let body = p.encode();
            assert!(body.len() <= MAX_ENTRY_BODY, "part {} is {} bytes", p.part, body.len());
            assert_eq!(&LinkReport::decode(&body).unwrap(), p);
        }
        let merged = LinkReport::merge(&parts).unwrap();
        assert_eq!(merged.links.len(), 10_000);
        assert!(merged.links.windows(2).all(|w| w[0].worker < w[1].worker));
        // Nothing measured is one empty part.
        let none = LinkReport::split(4, []);
        assert_eq!((none.len(), none[0].parts, none[0].links.len()), (1, 1, 0));
    }

    /// Three verifiers, one lying (it says the worker crawls): the median is an honest figure;
    /// an older report of a verifier does not count beside its newer one.
    #[test]
    fn the_median_over_verifiers_ignores_one_liar_and_old_reports() {
        let w = link(1, 0).worker;
        let at = |epoch, kbit, path| LinkReport {
            epoch,
            part: 0,
            parts: 1,
            links: vec![WorkerLink { path, rtt_us: kbit / 10, from_worker_kbit: kbit, ..link(1, kbit) }],
        };
        let (old, a, b, liar) = (
            at(1, 1, LinkPath::Relayed),
            at(3, 20_000, LinkPath::Direct),
            at(2, 18_000, LinkPath::HolePunched),
            at(3, 5, LinkPath::Relayed),
        );
        let got = attested([([1; 32], &a), ([1; 32], &old), ([2; 32], &b), ([3; 32], &liar)]);
        let l = &got[&w];
        assert_eq!((l.epoch, l.verifiers), (3, 3));
        assert_eq!((l.to_worker_kbit, l.from_worker_kbit, l.rtt_us), (18_000, 18_000, 1_800));
        assert_eq!(l.path, LinkPath::HolePunched);
        // Two verifiers: the lower of the two.
        let two = attested([([1; 32], &a), ([3; 32], &liar)]);
        assert_eq!(two[&w].to_worker_kbit, 5);
        assert!(attested([]).is_empty());
    }

    #[test]
    fn hostile_bodies_do_not_decode() {
        let mut unsorted = LinkReport::split(1, [link(1, 5), link(2, 5)]).remove(0);
        unsorted.links.swap(0, 1);
        assert!(LinkReport::decode(&unsorted.encode()).is_err());
        let mut twice = LinkReport::split(1, [link(1, 5)]).remove(0);
        twice.links.push(link(1, 6));
        assert!(LinkReport::decode(&twice.encode()).is_err());
        let mut past = LinkReport::split(1, [link(1, 5)]).remove(0);
        past.part = 1;
        assert!(LinkReport::decode(&past.encode()).is_err());
        // A path this build does not know, and a body past the entry limit.
        let mut bytes = LinkReport::split(1, [link(1, 5)]).remove(0).encode();
        let at = bytes.len() - 12;
        assert_eq!(bytes[at], 2, "the path's wire value sits after the worker key");
        bytes[at] = 9;
        assert!(LinkReport::decode(&bytes).is_err());
        assert!(LinkReport::decode(&vec![0u8; MAX_ENTRY_BODY + 1]).is_err());
    }
}
