//! What a job owner keeps on disk so that a restart resumes its jobs (issue #18): each job's
//! spec and status, and every tile it accepted, as its worker sent it. A kept tile is checked
//! again when it is loaded (its pixels against their root, the root against the worker's
//! signature): a record damaged on disk costs a re-render, never a wrong image.

use bincode::{Decode, Encode};
use ifx_protocols::api::JobStatus;
use ifx_protocols::codec::{self, DecodeError};
use ifx_protocols::ledger::body::fault::signed_by;
use ifx_protocols::render::Tile;
use ifx_protocols::render::job::{Delivered, JobSpec, TileRequest, TileResponse, check_response};
use ifx_storage::StoredJob;
use ifx_storage::jobs::MAX_TILE_BYTES;

/// Jobs running at once on one owner. Each keeps its tiles on disk until its image is written,
/// up to `MAX_JOB_PIXELS` x 12 bytes (96 MiB): eight bound that below 1 GiB.
pub const MAX_RUNNING: usize = 8;
/// Jobs listed, ended ones included (`ifx render list`, and the spec `ifx verify` reads): past
/// this the oldest ended job is forgotten (its PNG and EXR stay on disk).
pub const MAX_KEPT: usize = 256;

/// A tile the owner accepted, as kept on disk.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct KeptTile {
    /// The worker's key, which signed the tile's commitment.
    pub worker: [u8; 32],
    /// Its peer id, for the job's status.
    pub peer: String,
    /// What the worker sent.
    pub response: TileResponse,
}

impl KeptTile {
    /// The tile `d` that `worker` delivered.
    pub fn of(worker: [u8; 32], peer: String, d: &Delivered) -> Self {
        let response =
            TileResponse { pixels: d.pixels.clone(), error: String::new(), root: d.commitment.root, sig: d.sig };
        Self { worker, peer, response }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes at most the store's limit.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        codec::decode::<_, MAX_TILE_BYTES>(b)
    }

    /// Checks it again as tile `t` of `req`'s job: its size and values, its root, and the
    /// worker's signature.
    pub fn check(&self, req: &TileRequest, t: Tile) -> Result<Delivered, String> {
        let d = check_response(self.response.clone(), req, t).map_err(|e| e.to_string())?;
        if !signed_by(&d.commitment, &self.worker, &d.sig) {
            return Err("its commitment is not signed by its worker".into());
        }
        Ok(d)
    }
}

/// A job's spec as stored (written once).
pub fn spec_bytes(spec: &JobSpec) -> Vec<u8> {
    serde_json::to_vec(spec).expect("a spec serializes")
}

/// A job's status as stored: without the scene text, which its spec holds.
pub fn status_bytes(st: &JobStatus) -> Vec<u8> {
    let mut v = serde_json::to_value(st).expect("a status serializes");
    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert("scene_toml".into(), serde_json::Value::Null);
    }
    serde_json::to_vec(&v).expect("a value serializes")
}

/// A stored job read back: its status with its full spec.
pub fn decode_job(j: &StoredJob) -> Result<JobStatus, String> {
    let spec: JobSpec = serde_json::from_slice(&j.spec).map_err(|e| format!("its spec does not decode: {e}"))?;
    let mut st: JobStatus =
        serde_json::from_slice(&j.status).map_err(|e| format!("its status does not decode: {e}"))?;
    if st.job_id != hex::encode(j.id) {
        return Err(format!("its status is of job {}", st.job_id));
    }
    st.spec = spec;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use ifx_protocols::render::commit::{TileCommitment, encode_pixels};

    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            scene: "cornell".into(),
            scene_toml: Some("# a scene".into()),
            assets: Vec::new(),
            width: 64,
            height: 64,
            spp: 4,
            max_bounces: 3,
            tile: 32,
            unpaid: true,
            frames: Default::default(),
        }
    }

    /// A kept tile loads only as it was signed: changed pixels, another tile's place or another
    /// key are each refused, so a damaged record is rendered again.
    #[test]
    fn a_kept_tile_is_checked_again_when_loaded() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let t = Tile { x: 32, y: 0, w: 32, h: 32 };
        let req = TileRequest { job: [3; 16], spec: spec(), tile: [t.x, t.y, t.w, t.h] };
        let pixels = encode_pixels(&vec![[0.25f32, 0.5, 1.0]; 32 * 32]);
        let c = TileCommitment::of(req.job, req.spec.hash(), t, &pixels);
        let response = TileResponse { pixels, error: String::new(), root: c.root, sig: c.sign(&key) };
        let kept = KeptTile { worker: key.verifying_key().to_bytes(), peer: "p".into(), response };
        let back = KeptTile::decode(&kept.encode()).unwrap();
        assert_eq!(back, kept);
        let d = back.check(&req, t).unwrap();
        assert_eq!(d.px[5], [0.25, 0.5, 1.0]);

        let mut bad = kept.clone();
        bad.response.pixels[0] ^= 1;
        assert!(bad.check(&req, t).unwrap_err().contains("root"), "changed pixels");
        let elsewhere = Tile { x: 0, ..t };
        assert!(kept.check(&TileRequest { tile: [0, 0, 32, 32], ..req.clone() }, elsewhere).is_err(), "moved");
        let mut other = kept.clone();
        other.worker = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(other.check(&req, t).unwrap_err().contains("not signed"), "another key");
        assert!(KeptTile::decode(&kept.encode()[..40]).is_err(), "truncated");
    }

    #[test]
    fn a_status_is_stored_without_its_scene_and_read_back_with_it() {
        let id = [9u8; 16];
        let st = JobStatus::started(hex::encode(id), spec(), 4);
        let stored = StoredJob { id, spec: spec_bytes(&spec()), status: status_bytes(&st) };
        assert!(!String::from_utf8_lossy(&stored.status).contains("a scene"));
        let back = decode_job(&stored).unwrap();
        assert_eq!(back.spec, spec());
        assert_eq!(back.job_id, st.job_id);
        let wrong = StoredJob { id: [1; 16], ..stored.clone() };
        assert!(decode_job(&wrong).unwrap_err().contains("of job"));
        let broken = StoredJob { spec: b"{".to_vec(), ..stored };
        assert!(decode_job(&broken).unwrap_err().contains("spec"));
    }
}
