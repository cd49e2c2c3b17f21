//! Verified delivery (issue #21): the bodies of a job owner's evidence that a worker delivered
//! a bad tile ([`crate::ledger::EntryKind::DeliveryFault`]) and of verifiers' rulings on such
//! evidence ([`crate::ledger::EntryKind::FaultRulings`]). The evidence carries what anyone
//! needs to check it without the owner: the job's spec (scene included), the worker's signed
//! commitment to the tile and one opened sub-tile with its Merkle path. Settlement checks the
//! signature and the path (deterministic); whether the sub-tile is a real render of the spec
//! only a re-render can say, so bonded verifiers judge that, and a worker is slashed when
//! verifiers holding more than half of the verifier stake find it guilty.

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::codec::DecodeError;
use crate::ledger::entry::MAX_ENTRY_BODY;
use crate::render::Tile;
use crate::render::commit::{MAX_SUB_BYTES, PIXEL_BYTES, TileCommitment, depth, sub_tiles, verify_opening};
use crate::render::job::{JobSpec, TileRequest};

/// Most rulings one entry carries (a ruling encodes to 34 bytes).
pub const MAX_RULINGS: usize = 256;

/// A job owner's evidence of a bad tile.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct DeliveryFault {
    #[serde(with = "hex::serde")]
    pub job: [u8; 16],
    /// The job's spec, as the worker was given it (its hash is in the signed commitment).
    pub spec: JobSpec,
    /// The tile's rectangle: x, y, width, height.
    pub tile: [u32; 4],
    #[serde(with = "hex::serde")]
    pub worker: [u8; 32],
    /// The committed root and the worker's signature over the commitment.
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
    #[serde(with = "hex::serde")]
    pub sig: [u8; 64],
    /// The opened sub-tile: its index in the tile, its wire bytes and its Merkle path.
    pub index: u32,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    #[serde(skip)]
    pub proof: Vec<[u8; 32]>,
    /// What the owner saw (for people; nobody's decision reads it).
    pub reason: String,
}

impl DeliveryFault {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body and checks its shape (sizes, the rectangle against the spec). Whether it
    /// proves anything is [`DeliveryFault::check`].
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.bytes.len() > MAX_SUB_BYTES || v.proof.len() > 32 || v.reason.len() > 256 {
            return Err(DecodeError::invalid("evidence larger than one sub-tile"));
        }
        v.rect().map_err(DecodeError::invalid)?;
        Ok(v)
    }

    /// The tile, checked inside the spec's image and tiling.
    pub fn rect(&self) -> Result<Tile, String> {
        TileRequest { job: self.job, spec: self.spec.clone(), tile: self.tile }
            .checked_tile()
            .map_err(|e| e.to_string())
    }

    /// The opened sub-tile, in image coordinates.
    pub fn sub_tile(&self) -> Result<Tile, String> {
        let t = self.rect()?;
        let s = *sub_tiles(t.w, t.h).get(self.index as usize).ok_or("no such sub-tile")?;
        Ok(Tile { x: t.x + s.x, y: t.y + s.y, w: s.w, h: s.h })
    }

    /// Whether `work` (the accuser's payment for the job) is exactly this evidence's job, the
    /// frame of the evidence among the paid ones: what settlement and verifiers require of it.
    pub fn paid_by(&self, work: &crate::ledger::body::PaidWork) -> bool {
        let f = self.spec.frames.first;
        match *work {
            crate::ledger::body::PaidWork::Render { frames: [first, last], .. } => {
                work.settings() == Some(self.spec.settings()) && (first..=last).contains(&f)
            }
            _ => false,
        }
    }

    /// The commitment the worker signed, as this evidence states it.
    pub fn commitment(&self) -> TileCommitment {
        TileCommitment { job: self.job, spec: self.spec.hash(), tile: self.tile, root: self.root }
    }

    /// Checks everything but the pixels themselves: the worker signed the commitment to this
    /// job, spec and tile, and the opened bytes sit at their index under its root. An error says
    /// why the evidence proves nothing.
    pub fn check(&self) -> Result<(), String> {
        let t = self.rect()?;
        let s = self.sub_tile()?;
        if self.bytes.len() != (s.w * s.h) as usize * PIXEL_BYTES {
            return Err(format!("the sub-tile has {} bytes, expected {}", self.bytes.len(), s.w * s.h * 12));
        }
        if !signed_by(&self.commitment(), &self.worker, &self.sig) {
            return Err("the worker did not sign this commitment".into());
        }
        let leaves = sub_tiles(t.w, t.h).len();
        if self.proof.len() != depth(leaves)
            || !verify_opening(&self.root, leaves, self.index, &self.bytes, &self.proof)
        {
            return Err("the sub-tile is not under the committed root".into());
        }
        Ok(())
    }
}

/// Whether `worker` signed the tile commitment `c` (the ledger's one signature rule).
pub fn signed_by(c: &TileCommitment, worker: &[u8; 32], sig: &[u8; 64]) -> bool {
    crate::ledger::entry::verify_cofactored(worker, &c.digest(), sig).is_ok()
}

/// One verifier's ruling on one piece of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Ruling {
    /// The id of the [`DeliveryFault`] entry.
    #[serde(with = "hex::serde")]
    pub fault: [u8; 32],
    /// Whether the opened sub-tile is not a render of the spec (the worker cheated).
    pub guilty: bool,
}

/// A verifier's rulings, written as it judges evidence.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct FaultRulings {
    pub rulings: Vec<Ruling>,
}

impl FaultRulings {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body of at most [`MAX_RULINGS`] rulings.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.rulings.is_empty() || v.rulings.len() > MAX_RULINGS {
            return Err(DecodeError::invalid(format!("1..={MAX_RULINGS} rulings")));
        }
        Ok(v)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::render::commit::{encode_pixels, sub_bytes, tree};

    fn spec() -> JobSpec {
        JobSpec {
            scene: "cornell".into(),
            scene_toml: None,
            assets: Vec::new(),
            width: 64,
            height: 64,
            spp: 4,
            max_bounces: 6,
            tile: 32,
            unpaid: false,
            frames: Default::default(),
        }
    }

    /// Evidence built from a worker's real commitment checks; evidence with other bytes, another
    /// worker, another spec or a rectangle outside the image does not.
    pub(crate) fn evidence(key: &ed25519_dalek::SigningKey, index: u32) -> DeliveryFault {
        let t = Tile { x: 32, y: 0, w: 32, h: 32 };
        let px = encode_pixels(&vec![[0.5f32, 0.25, 0.125]; 32 * 32]);
        let c = TileCommitment::of([7; 16], spec().hash(), t, &px);
        let tr = tree(&px, t.w, t.h);
        let s = sub_tiles(t.w, t.h)[index as usize];
        DeliveryFault {
            job: [7; 16],
            spec: spec(),
            tile: [32, 0, 32, 32],
            worker: key.verifying_key().to_bytes(),
            root: c.root,
            sig: c.sign(key),
            index,
            bytes: sub_bytes(&px, t.w, s),
            proof: tr.proof(index as usize),
            reason: "test".into(),
        }
    }

    #[test]
    fn evidence_checks_only_what_the_worker_signed() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let f = evidence(&key, 5);
        assert_eq!(f.check(), Ok(()));
        assert_eq!(DeliveryFault::decode(&f.encode()).unwrap(), f);
        assert_eq!(f.sub_tile().unwrap(), Tile { x: 40, y: 8, w: 8, h: 8 });
        let mut forged = f.clone();
        forged.bytes[3] ^= 0x40;
        assert!(forged.check().unwrap_err().contains("not under"));
        let mut other = f.clone();
        other.worker = [9; 32];
        assert!(other.check().unwrap_err().contains("did not sign"));
        let mut respec = f.clone();
        respec.spec.spp = 64;
        assert!(respec.check().unwrap_err().contains("did not sign"));
        let mut short = f.clone();
        short.proof.pop();
        assert!(short.check().is_err());
        let mut outside = f.clone();
        outside.tile = [48, 0, 32, 32];
        assert!(DeliveryFault::decode(&outside.encode()).is_err());
        let mut index = f.clone();
        index.index = 16;
        assert!(index.check().is_err());
        // A frame's evidence is paid by the job's payment only when the frame is among the
        // paid ones and the settings are the job's.
        use crate::ledger::body::PaidWork;
        let mut job = spec();
        job.frames = crate::render::job::Frames { first: 1, last: 24, fps: 24 };
        let mut framed = f.clone();
        framed.spec = job.at_frame(24);
        assert!(framed.paid_by(&PaidWork::render(&job)));
        framed.spec = job.at_frame(25);
        assert!(!framed.paid_by(&PaidWork::render(&job)), "a frame the job did not pay for");
        framed.spec = JobSpec { spp: 8, ..job.at_frame(3) };
        assert!(!framed.paid_by(&PaidWork::render(&job)), "other settings");
        assert!(f.paid_by(&PaidWork::render(&spec())));
    }

    #[test]
    fn rulings_are_bounded() {
        let r = FaultRulings { rulings: vec![Ruling { fault: [1; 32], guilty: true }] };
        assert_eq!(FaultRulings::decode(&r.encode()).unwrap(), r);
        assert!(FaultRulings::decode(&FaultRulings { rulings: vec![] }.encode()).is_err());
        let many = FaultRulings { rulings: vec![Ruling { fault: [1; 32], guilty: false }; MAX_RULINGS + 1] };
        assert!(FaultRulings::decode(&many.encode()).is_err());
    }
}
