//! A render job's assets: the files its scene reads (the scene file itself, meshes, glTF
//! buffers, images), each named as the scene refers to it and bound by BLAKE3 hash and length
//! in the job's spec. Workers fetch them as blobs (`crate::blob`) from the owner or any peer
//! that holds them; the spec's hash covers the list, so a tile's commitment binds the bytes.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::RenderError;

/// Most assets in one job: a glTF export is a file, a buffer and an image per texture; 128
/// is a scene with over a hundred textures. The list rides in every tile request (64 KiB).
pub const MAX_ASSETS: usize = 128;
/// Longest asset name in bytes (a relative path as the scene file writes it).
pub const MAX_ASSET_NAME: usize = 200;
/// Largest single asset: the scene-file limit of the loader (`ifx_render::load`).
pub const MAX_ASSET_BYTES: u64 = 256 * 1024 * 1024;
/// Largest sum of a job's assets: what a worker must fetch and hold before its first tile,
/// and half of its blob cache (`node::blob::LIMITS`), so one job never evicts its own assets.
pub const MAX_JOB_ASSET_BYTES: u64 = 512 * 1024 * 1024;

/// One asset: its name, as the scene refers to it, and its bytes' hash and length.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AssetRef {
    pub name: String,
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    pub len: u64,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|e| serde::de::Error::custom(format!("hash: {e}")))?;
        Ok(out)
    }
}

/// Checks an asset name: a relative path inside the scene's folder, `/`-separated, with no
/// `.`, `..` or empty parts, no drive or backslash, at most [`MAX_ASSET_NAME`] bytes. A scene
/// that refers outside its folder (`../../home/me/.ssh/id_ed25519`) is refused at
/// submission, so submitting a stranger's scene cannot ship the artist's other files.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ASSET_NAME {
        return Err(format!("asset name {name:?}: 1 to {MAX_ASSET_NAME} bytes"));
    }
    if name.contains('\\') || name.contains(':') || name.starts_with('/') || name.chars().any(char::is_control) {
        return Err(format!("asset name {name:?}: a relative path with / between parts, no drive, no backslash"));
    }
    if name.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(format!("asset name {name:?}: no empty, . or .. parts (assets stay inside the scene's folder)"));
    }
    Ok(())
}

/// Checks a job's asset list: names, count, sizes, no name twice, and that `scene` (the scene
/// file) is among them.
pub fn check(assets: &[AssetRef], scene: &str) -> Result<(), RenderError> {
    let bad = |m: String| Err(RenderError::Asset(m));
    if assets.len() > MAX_ASSETS {
        return bad(format!("{} assets exceed the limit of {MAX_ASSETS}", assets.len()));
    }
    let mut total = 0u64;
    let mut names = std::collections::BTreeSet::new();
    for a in assets {
        check_name(&a.name).map_err(RenderError::Asset)?;
        if a.len > MAX_ASSET_BYTES {
            return bad(format!("asset {:?}: {} bytes exceed the {MAX_ASSET_BYTES}-byte limit", a.name, a.len));
        }
        total = total.saturating_add(a.len);
        if !names.insert(a.name.as_str()) {
            return bad(format!("asset {:?} is listed twice", a.name));
        }
    }
    if total > MAX_JOB_ASSET_BYTES {
        return bad(format!("the assets total {total} bytes, over the {MAX_JOB_ASSET_BYTES}-byte limit of a job"));
    }
    if !assets.is_empty() && !names.contains(scene) {
        return bad(format!("the scene file {scene:?} is not among the assets"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(name: &str, len: u64) -> AssetRef {
        AssetRef { name: name.into(), hash: [1; 32], len }
    }

    #[test]
    fn names_stay_inside_the_scenes_folder() {
        for ok in ["scene.gltf", "meshes/a b.bin", "textures/wood_albedo.png"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../secret",
            "a/../../b",
            "./a",
            "a//b",
            "C:/x",
            "a\\b",
            "a\nb",
            &"x".repeat(MAX_ASSET_NAME + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_jobs_assets_are_bounded_in_count_size_and_total() {
        assert!(check(&[asset("s.toml", 10), asset("m.glb", MAX_ASSET_BYTES)], "s.toml").is_ok());
        assert!(check(&[], "cornell").is_ok(), "a built-in scene has none");
        let err = |a: &[AssetRef], s: &str| check(a, s).unwrap_err().to_string();
        assert!(err(&[asset("m.glb", MAX_ASSET_BYTES + 1), asset("s.toml", 1)], "s.toml").contains("m.glb"));
        assert!(err(&[asset("s.toml", 1)], "other.toml").contains("not among"));
        assert!(err(&[asset("s.toml", 1), asset("s.toml", 1)], "s.toml").contains("twice"));
        let many: Vec<_> = (0..=MAX_ASSETS).map(|i| asset(&format!("{i}.bin"), 1)).collect();
        assert!(err(&many, "0.bin").contains("129 assets"));
        let big: Vec<_> = (0..3).map(|i| asset(&format!("{i}.bin"), MAX_ASSET_BYTES)).collect();
        assert!(err(&big, "0.bin").contains("total"));
    }
}
