//! The burn side of Burn-Mint-Work: the body of a [`crate::ledger::EntryKind::JobPayment`]
//! entry, a job owner's payment for one render job or federated task. The payer burns `amount`
//! units of its liquid balance and buys delivery credit at the price in force
//! (`economics.job_price_per_minute`); the work the credit is for is named exactly, so every
//! node derives a tile's or an update's units from it and never from a receipt's claim.

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::codec::DecodeError;
use crate::ledger::entry::MAX_ENTRY_BODY;
use crate::render::RenderSettings;
use crate::render::job::{JobSpec, MAX_JOB_PIXELS, MAX_JOB_TILES, MAX_TILE, MAX_TILE_SAMPLES};

/// Most examples one FL update may be paid for (a client's shard, capped: clients report their
/// examples, so the owner pays for at most this many per update).
pub const FL_EXAMPLE_CAP: u64 = 10_000;
/// Most local epochs an FL update may be paid for (the task spec's own limit).
pub const FL_MAX_LOCAL_EPOCHS: u32 = 100;

/// What a payment pays for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PaidWork {
    /// A render job: its image, sampling and tiling, and its frames (first and last); a
    /// tile's units are [`RenderSettings::work_units`] of the tile the receipt's index names
    /// (frame offset x tiles per frame + tile in the frame).
    Render { width: u32, height: u32, spp: u32, max_bounces: u32, tile: u32, frames: [u32; 2] },
    /// A federated task: each accepted update is worth `fl::wire::work_units(examples,
    /// local_epochs)` with `examples` capped at [`FL_EXAMPLE_CAP`].
    Fl { examples: u64, local_epochs: u32 },
    /// An inference job: `rows` rows of the `arch` model in batches of `batch_rows`; a batch's
    /// units are `arch.work_units` of the rows the receipt's batch index holds.
    Infer { arch: crate::infer::Arch, rows: u64, batch_rows: u32 },
}

impl PaidWork {
    /// The render job `spec`, every frame of it.
    pub fn render(spec: &JobSpec) -> Self {
        let s = spec.settings();
        let frames = [spec.frames.first, spec.frames.last];
        PaidWork::Render {
            width: s.width,
            height: s.height,
            spp: s.spp,
            max_bounces: s.max_bounces,
            tile: s.tile,
            frames,
        }
    }

    /// The settings of a paid render job (one frame's).
    pub fn settings(&self) -> Option<RenderSettings> {
        match *self {
            PaidWork::Render { width, height, spp, max_bounces, tile, .. } => {
                Some(RenderSettings { width, height, spp, max_bounces, tile })
            }
            PaidWork::Fl { .. } | PaidWork::Infer { .. } => None,
        }
    }

    /// Frames of a paid render job (0 for other work or a range that ends before it starts).
    pub fn frame_count(&self) -> u64 {
        match *self {
            PaidWork::Render { frames: [first, last], .. } => {
                crate::render::job::Frames { first, last, fps: 1 }.count()
            }
            _ => 0,
        }
    }

    /// Units of tile `index` of a paid render job, every frame's tiles in turn (`None` past
    /// its last frame or for other work).
    pub fn units_of_tile(&self, index: u64) -> Option<u64> {
        let s = self.settings()?;
        let per_frame = s.tile_count().max(1);
        if index / per_frame >= self.frame_count() {
            return None;
        }
        s.tile_at(index % per_frame).map(|t| s.work_units(t))
    }

    /// Units of one accepted FL update of a paid task.
    pub fn units_per_update(&self) -> Option<u64> {
        match *self {
            PaidWork::Fl { examples, local_epochs } => {
                Some(crate::fl::wire::work_units(examples, local_epochs, FL_EXAMPLE_CAP))
            }
            PaidWork::Render { .. } | PaidWork::Infer { .. } => None,
        }
    }

    /// Units of batch `batch` of a paid inference job (`None` past its end or for other work).
    pub fn units_of_batch(&self, batch: u32) -> Option<u64> {
        match *self {
            PaidWork::Infer { arch, rows, batch_rows } => {
                let n = crate::infer::batch_len(rows, batch_rows, batch);
                (n > 0).then(|| arch.work_units(n))
            }
            _ => None,
        }
    }

    /// Every unit of work the job can deliver: all tiles, or `updates` accepted updates.
    pub fn total_units(&self, updates: u64) -> u64 {
        match (self.settings(), *self) {
            (Some(s), _) => s.total_units().saturating_mul(self.frame_count()),
            (None, PaidWork::Infer { arch, rows, batch_rows }) => {
                let full = rows / batch_rows.max(1) as u64;
                let last = rows % batch_rows.max(1) as u64;
                full.saturating_mul(arch.work_units(batch_rows as u64)) + arch.work_units(last)
            }
            (None, _) => self.units_per_update().unwrap_or(0).saturating_mul(updates),
        }
    }

    /// Checks the work against the job limits: what a distributed job may ask for.
    fn validate(&self) -> Result<(), DecodeError> {
        match self.settings() {
            Some(s) => {
                s.validate().map_err(|e| DecodeError::invalid(e.to_string()))?;
                let frames = self.frame_count();
                if s.width as u64 * s.height as u64 > MAX_JOB_PIXELS
                    || s.tile > MAX_TILE
                    || s.tile as u64 * s.tile as u64 * s.spp as u64 > MAX_TILE_SAMPLES
                    || frames == 0
                    || frames > crate::render::job::MAX_FRAMES as u64
                    || s.tile_count().saturating_mul(frames) > MAX_JOB_TILES
                {
                    return Err(DecodeError::invalid("the render job exceeds the distributed job limits"));
                }
                Ok(())
            }
            None => match *self {
                PaidWork::Infer { rows, batch_rows, .. } => crate::infer::check_job(rows, batch_rows),
                PaidWork::Fl { examples, local_epochs }
                    if examples > 0 && (1..=FL_MAX_LOCAL_EPOCHS).contains(&local_epochs) =>
                {
                    Ok(())
                }
                _ => Err(DecodeError::invalid(format!(
                    "an FL payment needs examples > 0 and 1..={FL_MAX_LOCAL_EPOCHS} local epochs"
                ))),
            },
        }
    }
}

/// A job owner's payment ([`crate::ledger::EntryKind::JobPayment`]): burns `amount` units of
/// the author's liquid balance for delivery credit on job `job` (the render job id, or the FL
/// task id). Receipts for that job written by the same author count until the credit is spent;
/// a second payment for the same job and work adds credit.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct JobPayment {
    #[serde(with = "hex::serde")]
    pub job: [u8; 16],
    pub work: PaidWork,
    /// Units burned.
    pub amount: u64,
}

impl JobPayment {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body and checks it: a positive amount and work within the job limits.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.amount == 0 {
            return Err(DecodeError::invalid("amount is zero"));
        }
        v.work.validate()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_round_trip_and_bad_ones_are_refused() {
        let p = JobPayment {
            job: [1; 16],
            work: PaidWork::Render { width: 64, height: 48, spp: 16, max_bounces: 6, tile: 32, frames: [0, 0] },
            amount: 5,
        };
        assert_eq!(JobPayment::decode(&p.encode()).unwrap(), p);
        assert!(JobPayment::decode(&JobPayment { amount: 0, ..p.clone() }.encode()).is_err());
        let huge = PaidWork::Render { width: 16_384, height: 16_384, spp: 1, max_bounces: 1, tile: 32, frames: [0, 0] };
        assert!(JobPayment::decode(&JobPayment { work: huge, ..p.clone() }.encode()).is_err());
        for frames in [[5, 4], [0, 10_000], [0, 1_000_000]] {
            let w = PaidWork::Render { width: 64, height: 48, spp: 16, max_bounces: 6, tile: 32, frames };
            assert!(JobPayment::decode(&JobPayment { work: w, ..p.clone() }.encode()).is_err(), "{frames:?}");
        }
        let fl = JobPayment { job: [2; 16], work: PaidWork::Fl { examples: 180, local_epochs: 2 }, amount: 9 };
        assert_eq!(JobPayment::decode(&fl.encode()).unwrap(), fl);
        let no_epochs = JobPayment { work: PaidWork::Fl { examples: 180, local_epochs: 0 }, ..fl.clone() };
        assert!(JobPayment::decode(&no_epochs.encode()).is_err());
        for n in 0..p.encode().len() {
            let _ = JobPayment::decode(&p.encode()[..n]);
        }
    }

    #[test]
    fn the_work_says_what_a_tile_and_an_update_are_worth() {
        let w = PaidWork::Render { width: 64, height: 48, spp: 16, max_bounces: 6, tile: 32, frames: [0, 0] };
        let s = w.settings().unwrap();
        // Three frames: every frame's four tiles in turn.
        let three = PaidWork::Render { width: 64, height: 48, spp: 16, max_bounces: 6, tile: 32, frames: [10, 12] };
        assert_eq!(three.total_units(0), 3 * w.total_units(0));
        assert_eq!(
            (three.units_of_tile(4), three.units_of_tile(7), three.units_of_tile(11)),
            (Some(98), Some(49), Some(49))
        );
        assert_eq!((three.units_of_tile(12), w.units_of_tile(4)), (None, None));
        // 64x48 at 16 spp and 6 bounces: 294,912 samples x bounces / 1000 = 294 units in tiles
        // of 98 + 98 + 49 + 49.
        assert_eq!(w.total_units(0), 98 + 98 + 49 + 49);
        assert_eq!(s.tile_at(3), Some(crate::render::Tile { x: 32, y: 32, w: 32, h: 16 }));
        assert_eq!(s.tile_at(4), None);
        // The closed forms agree with the tile list for every shape of image and tile.
        for (width, height, tile) in [(64, 48, 32), (100, 37, 16), (7, 5, 8), (256, 256, 256), (33, 65, 1)] {
            let s = RenderSettings { width, height, spp: 3, max_bounces: 5, tile };
            let tiles = s.tiles();
            assert_eq!(s.tile_count(), tiles.len() as u64);
            assert_eq!(s.total_units(), tiles.iter().map(|t| s.work_units(*t)).sum::<u64>());
            for (i, t) in tiles.iter().enumerate() {
                assert_eq!(s.tile_at(i as u64), Some(*t));
            }
            assert_eq!(s.tile_at(u64::MAX), None);
        }
        let f = PaidWork::Fl { examples: 1_000_000, local_epochs: 2 };
        // Examples are capped at FL_EXAMPLE_CAP.
        assert_eq!(f.units_per_update(), Some(crate::fl::wire::work_units(FL_EXAMPLE_CAP, 2, FL_EXAMPLE_CAP)));
        assert_eq!(f.total_units(3), 3 * f.units_per_update().unwrap());
    }
}
