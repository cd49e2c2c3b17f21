//! Scene files (TOML or JSON) and the meshes they reference (glTF 2.0 `.gltf`/`.glb`, OBJ).
//! Materials are named; spheres, quads, boxes and meshes refer to them by name. Paths of
//! meshes are relative to the scene file. Sizes are checked before anything large is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use ifx_protocols::render::RenderError;
use ifx_protocols::render::assets::{self, AssetRef};
use ifx_protocols::render::scene::{
    Camera, Cone, DirectionalLight, MAX_DIRECTIONAL_LIGHTS, MAX_POINT_LIGHTS, MAX_TEXTURE_BYTES, MAX_TEXTURE_SIDE,
    MAX_TEXTURES, MAX_TRIANGLES, Material, Pbr, PointLight, Scene, Shading, Sky, Sphere, Texture, Triangle, Wrap,
    finite,
};

/// Lumens per watt: glTF gives a point light's intensity in candela, ifx in watts per steradian.
pub const LUMENS_PER_WATT: f32 = 683.0;

use crate::builtin;

/// Largest scene or mesh file read (the same as a job's largest asset).
pub const MAX_FILE_BYTES: u64 = ifx_protocols::render::assets::MAX_ASSET_BYTES;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    seed: u32,
    camera: Camera,
    sky: Sky,
    materials: BTreeMap<String, Material>,
    #[serde(default)]
    spheres: Vec<SphereDef>,
    #[serde(default)]
    quads: Vec<QuadDef>,
    #[serde(default)]
    boxes: Vec<BoxDef>,
    #[serde(default)]
    meshes: Vec<MeshDef>,
    #[serde(default)]
    points: Vec<PointDef>,
    #[serde(default)]
    directional: Vec<DirectionalDef>,
}

/// A directional light: the way its light travels (any length) and its irradiance (radiance
/// units: a diffuse surface of albedo `a` facing it reflects `a / pi * irradiance`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectionalDef {
    direction: [f32; 3],
    irradiance: [f32; 3],
}

/// A unit vector along `d`; a zero or non-finite `d` stays non-finite, which validation refuses.
fn unit(d: [f32; 3]) -> [f32; 3] {
    let len = d.iter().map(|x| x * x).sum::<f32>().sqrt();
    d.map(|x| x / len)
}

/// A point light: its intensity in watts per steradian (radiance units times length squared).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointDef {
    position: [f32; 3],
    intensity: [f32; 3],
    /// A spot light: its cone.
    #[serde(default)]
    spot: Option<SpotDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpotDef {
    /// The way it shines (any length).
    axis: [f32; 3],
    inner_deg: f32,
    outer_deg: f32,
}

/// A spot light's cone from its axis (any length) and its half-angles in radians, as glTF
/// gives them (0 <= inner <= outer <= pi / 2; the scene's validation refuses others).
fn cone(axis: [f32; 3], inner: f32, outer: f32) -> Cone {
    let bad = !(0.0..=std::f32::consts::FRAC_PI_2).contains(&outer) || !(0.0..=outer).contains(&inner);
    Cone {
        axis: unit(axis),
        // Out-of-range angles become a cone validation refuses (cos of more than 90 degrees).
        cos_outer: if bad { -1.0 } else { outer.cos() },
        cos_inner: if bad { -1.0 } else { inner.cos() },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SphereDef {
    center: [f32; 3],
    radius: f32,
    material: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuadDef {
    corner: [f32; 3],
    u: [f32; 3],
    v: [f32; 3],
    material: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoxDef {
    min: [f32; 3],
    max: [f32; 3],
    #[serde(default)]
    yaw_deg: f32,
    material: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshDef {
    path: PathBuf,
    material: String,
    #[serde(default)]
    translate: [f32; 3],
    #[serde(default = "one")]
    scale: f32,
}

fn one() -> f32 {
    1.0
}

/// Where a scene's files come from: a folder on disk (a local render, or the artist's side of
/// a submission, which records what was read), or a job's assets in memory (a worker). Names
/// are `/`-separated paths relative to the scene file's folder.
pub trait Files {
    /// The bytes of `name`, at most [`MAX_FILE_BYTES`]; why not as a message.
    fn read(&self, name: &str) -> Result<std::sync::Arc<Vec<u8>>, String>;
}

/// A folder on disk. Every file read is recorded ([`Dir::read_files`]): a submission ships
/// exactly what the loader read, nothing it did not.
pub struct Dir {
    root: PathBuf,
    read: std::sync::Mutex<BTreeMap<String, std::sync::Arc<Vec<u8>>>>,
}

impl Dir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), read: Default::default() }
    }

    /// The files read so far, by name.
    pub fn read_files(&self) -> BTreeMap<String, std::sync::Arc<Vec<u8>>> {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Files for Dir {
    fn read(&self, name: &str) -> Result<std::sync::Arc<Vec<u8>>, String> {
        if let Some(b) = self.read.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(b.clone());
        }
        let path = self.root.join(name);
        if !path.exists() {
            return Err("file not found".into());
        }
        let len = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        if len > MAX_FILE_BYTES {
            return Err(format!("{len} bytes exceed the {MAX_FILE_BYTES}-byte limit"));
        }
        let bytes = std::sync::Arc::new(std::fs::read(&path).map_err(|e| e.to_string())?);
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), bytes.clone());
        Ok(bytes)
    }
}

/// A job's assets in memory, by name (fetched and checked against their hashes).
pub struct Memory(pub BTreeMap<String, std::sync::Arc<Vec<u8>>>);

impl Files for Memory {
    fn read(&self, name: &str) -> Result<std::sync::Arc<Vec<u8>>, String> {
        self.0.get(name).cloned().ok_or_else(|| "not among the job's assets".into())
    }
}

/// The name of `rel` (as a file refers to it) relative to the folder of the file `from`.
fn join(from: &str, rel: &str) -> String {
    let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            _ => parts.push(p),
        }
    }
    parts.join("/")
}

/// A scene file ready to submit: the name of the scene file among its assets, and each asset
/// (the scene file and every file its loading read, nothing else) with its bytes.
pub type Package = (String, Vec<(AssetRef, std::sync::Arc<Vec<u8>>)>);

/// Loads the scene file at `path` as a worker will (so a scene that does not load is refused
/// here, on the artist's machine) and packages what was read. A file outside the scene's folder
/// is refused: submitting a stranger's scene must not ship the artist's other files.
pub fn package(path: &Path) -> Result<Package, RenderError> {
    let (root, name) = split(path);
    let dir = Dir::new(root);
    load_from(&dir, &name)?;
    let mut out = Vec::new();
    for (n, bytes) in dir.read_files() {
        assets::check_name(&n).map_err(RenderError::Asset)?;
        let a = AssetRef { name: n, hash: *blake3::hash(&bytes).as_bytes(), len: bytes.len() as u64 };
        out.push((a, bytes));
    }
    assets::check(&out.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(), &name)?;
    Ok((name, out))
}

/// [`scene`] at `time` seconds into a glTF scene's animations (built-ins and TOML scenes do not
/// move).
pub fn scene_at(name_or_path: &str, time: f32) -> Result<Scene, RenderError> {
    if builtin::NAMES.contains(&name_or_path) || time == 0.0 {
        return scene(name_or_path);
    }
    let (root, name) = split(Path::new(name_or_path));
    load_at(&Dir::new(root), &name, time)
}

/// A built-in scene by name, or a scene file by path.
pub fn scene(name_or_path: &str) -> Result<Scene, RenderError> {
    if builtin::NAMES.contains(&name_or_path) {
        return builtin::by_name(name_or_path);
    }
    let path = Path::new(name_or_path);
    if path.extension().is_none() {
        return Err(RenderError::UnknownScene(name_or_path.into()));
    }
    load_file(path)
}

/// The folder of `path` and its file name, to load it through a [`Dir`].
pub fn split(path: &Path) -> (PathBuf, String) {
    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (root, name)
}

/// Loads a `.toml` or `.json` scene file.
pub fn load_file(path: &Path) -> Result<Scene, RenderError> {
    let (root, name) = split(path);
    load_from(&Dir::new(root), &name).map_err(|e| match e {
        // Name the file as the caller wrote it.
        RenderError::SceneFile { message, .. } => RenderError::SceneFile { path: path.display().to_string(), message },
        e => e,
    })
}

/// Loads the scene file `name` from `files`: a `.toml` or `.json` scene and the meshes it refers
/// to, or a whole glTF scene (`.gltf`, `.glb`: its meshes, materials and camera) posed as its
/// animations are at time 0.
pub fn load_from(files: &dyn Files, name: &str) -> Result<Scene, RenderError> {
    load_at(files, name, 0.0)
}

/// [`load_from`] at `time` seconds into the scene's animations (`crate::anim`); a TOML or JSON
/// scene does not move.
pub fn load_at(files: &dyn Files, name: &str, time: f32) -> Result<Scene, RenderError> {
    let err = |message: String| RenderError::SceneFile { path: name.to_string(), message };
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("gltf" | "glb")) {
        let bytes = files.read(name).map_err(err)?;
        return gltf_scene(files, &bytes, name, time);
    }
    let bytes = files.read(name).map_err(err)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| err(e.to_string()))?;
    let f: File = match name.rsplit_once('.').map(|(_, e)| e) {
        Some("toml") => toml::from_str(text).map_err(|e| err(e.to_string()))?,
        Some("json") => serde_json::from_str(text).map_err(|e| err(e.to_string()))?,
        _ => return Err(err("the file name must end in .toml, .json, .gltf or .glb".into())),
    };
    build(f, name, Some(files))
}

/// Parses a TOML scene sent inline (a render job); it may not reference mesh files.
pub fn parse_inline_toml(text: &str) -> Result<Scene, RenderError> {
    let err = |message: String| RenderError::SceneFile { path: "(inline)".into(), message };
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(err("too large".into()));
    }
    let f: File = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    if !f.meshes.is_empty() {
        return Err(err("inline scenes cannot reference mesh files".into()));
    }
    build(f, "(inline)", None)
}

fn build(f: File, name: &str, files: Option<&dyn Files>) -> Result<Scene, RenderError> {
    let err = |message: String| RenderError::SceneFile { path: name.to_string(), message };
    let index: BTreeMap<&str, u32> = f.materials.keys().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
    let mat = |name: &str| index.get(name).copied().ok_or_else(|| err(format!("unknown material {name:?}")));
    let mut scene = Scene {
        camera: f.camera,
        sky: f.sky,
        materials: f.materials.values().cloned().collect(),
        spheres: Vec::new(),
        triangles: Vec::new(),
        points: Vec::new(),
        directional: Vec::new(),
        textures: Vec::new(),
        shading: Vec::new(),
        seed: f.seed,
    };
    scene.points = f
        .points
        .iter()
        .map(|l| PointLight {
            position: l.position,
            intensity: l.intensity,
            cone: l.spot.as_ref().map(|s| cone(s.axis, s.inner_deg.to_radians(), s.outer_deg.to_radians())),
        })
        .collect();
    scene.directional = f
        .directional
        .iter()
        .map(|l| DirectionalLight { direction: unit(l.direction), irradiance: l.irradiance })
        .collect();
    for s in &f.spheres {
        scene.spheres.push(Sphere { center: s.center, radius: s.radius, material: mat(&s.material)? });
    }
    for q in &f.quads {
        scene.quad(q.corner, q.u, q.v, mat(&q.material)?);
    }
    for b in &f.boxes {
        scene.cuboid(b.min, b.max, b.yaw_deg, mat(&b.material)?);
    }
    for m in &f.meshes {
        let material = mat(&m.material)?;
        let files = files.ok_or_else(|| err("this scene cannot reference mesh files".into()))?;
        let rel = m.path.to_str().ok_or_else(|| err(format!("mesh path {:?} is not UTF-8", m.path)))?;
        let tris = mesh_from(files, &join(name, rel))?;
        if scene.triangles.len() + tris.len() > MAX_TRIANGLES {
            return Err(RenderError::TooLarge(format!("meshes bring more than {MAX_TRIANGLES} triangles")));
        }
        scene.triangles.extend(tris.into_iter().map(|v| Triangle {
            v: v.map(|p| {
                [p[0] * m.scale + m.translate[0], p[1] * m.scale + m.translate[1], p[2] * m.scale + m.translate[2]]
            }),
            material,
        }));
    }
    scene.validate()?;
    Ok(scene)
}

/// Loads a mesh's triangles (in world units of the file, node transforms applied for glTF).
pub fn load_mesh(path: &Path) -> Result<Vec<[[f32; 3]; 3]>, RenderError> {
    let (root, name) = split(path);
    mesh_from(&Dir::new(root), &name).map_err(|e| match e {
        RenderError::Mesh { message, .. } => RenderError::Mesh { path: path.display().to_string(), message },
        e => e,
    })
}

/// The mesh file `name` from `files`.
pub fn mesh_from(files: &dyn Files, name: &str) -> Result<Vec<[[f32; 3]; 3]>, RenderError> {
    let err = |message: String| RenderError::Mesh { path: name.to_string(), message };
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if !matches!(ext.as_deref(), Some("gltf" | "glb" | "obj")) {
        return Err(err("unsupported mesh format (use .gltf, .glb or .obj)".into()));
    }
    let bytes = files.read(name).map_err(err)?;
    match ext.as_deref() {
        Some("obj") => load_obj(&bytes, name),
        _ => load_gltf(files, &bytes, name),
    }
}

/// The bytes of glTF buffer `b`: the GLB's own chunk, a base64 `data:` URI, or a file beside
/// the glTF (a relative URI; `file:` and other schemes are refused, so a scene cannot read
/// anything outside its folder).
fn buffer_bytes(
    files: &dyn Files,
    name: &str,
    b: &gltf::Buffer,
    blob: &Option<Vec<u8>>,
) -> Result<std::sync::Arc<Vec<u8>>, String> {
    match b.source() {
        gltf::buffer::Source::Bin => {
            blob.clone().map(std::sync::Arc::new).ok_or_else(|| "no binary chunk for the GLB buffer".to_string())
        }
        gltf::buffer::Source::Uri(uri) => uri_bytes(files, name, uri),
    }
}

/// The bytes a glTF URI names: a base64 `data:` URI (at most [`MAX_FILE_BYTES`] decoded), or a
/// file beside the glTF file `name` (a relative URI; `file:` and other schemes are refused, so
/// a scene cannot read anything outside its folder).
fn uri_bytes(files: &dyn Files, name: &str, uri: &str) -> Result<std::sync::Arc<Vec<u8>>, String> {
    use base64::Engine;
    if let Some(rest) = uri.strip_prefix("data:") {
        let (_, data) = rest.split_once(";base64,").ok_or("a data: URI that is not base64")?;
        if data.len() as u64 > MAX_FILE_BYTES * 4 / 3 + 4 {
            return Err(format!("a data: URI over the {MAX_FILE_BYTES}-byte limit"));
        }
        return base64::engine::general_purpose::STANDARD
            .decode(data)
            .map(std::sync::Arc::new)
            .map_err(|e| format!("a data: URI: {e}"));
    }
    if uri.contains(':') {
        return Err(format!("URI {uri:?}: only relative paths and data: URIs are read"));
    }
    let rel = percent_encoding::percent_decode_str(uri).decode_utf8().map_err(|e| format!("URI {uri:?}: {e}"))?;
    files.read(&join(name, &rel)).map_err(|e| format!("{rel}: {e}"))
}

/// A glTF file parsed, with its buffers' bytes.
struct Opened {
    doc: gltf::Document,
    buffers: Vec<std::sync::Arc<Vec<u8>>>,
}

fn open_gltf(files: &dyn Files, bytes: &[u8], name: &str) -> Result<Opened, RenderError> {
    let err = |message: String| RenderError::Mesh { path: name.to_string(), message };
    let gltf::Gltf { document: doc, blob } = gltf::Gltf::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    // Buffers only, each checked for size before it is read: images are never decoded (no
    // textures yet), so a texture that claims 100k x 100k pixels costs nothing.
    let mut declared = 0u64;
    for b in doc.buffers() {
        declared = declared.saturating_add(b.length() as u64);
        if declared > MAX_FILE_BYTES {
            return Err(err(format!(
                "buffers declare more than the {MAX_FILE_BYTES}-byte limit (at buffer {})",
                b.index()
            )));
        }
    }
    let mut buffers = Vec::new();
    for b in doc.buffers() {
        let data =
            buffer_bytes(files, name, &b, &blob).map_err(|e| err(format!("buffers: buffer {}: {e}", b.index())))?;
        if data.len() < b.length() {
            return Err(err(format!(
                "buffers: buffer {} has {} bytes, {} declared",
                b.index(),
                data.len(),
                b.length()
            )));
        }
        buffers.push(data);
    }
    Ok(Opened { doc, buffers })
}

impl Opened {
    /// Calls `visit` with every node of the default scene and its world transform, each once.
    /// glTF node graphs are trees: a node reached twice is a cycle (which would never end) or a
    /// node with two parents.
    fn walk(
        &self,
        name: &str,
        pose: &BTreeMap<usize, [[f32; 4]; 4]>,
        mut visit: impl FnMut(&gltf::Node, [[f32; 4]; 4]) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        let err = |message: String| RenderError::Mesh { path: name.to_string(), message };
        let doc = &self.doc;
        let scene =
            doc.default_scene().or_else(|| doc.scenes().next()).ok_or_else(|| err("no scene in the file".into()))?;
        let mut stack: Vec<(gltf::Node, [[f32; 4]; 4])> = scene.nodes().map(|n| (n, IDENTITY)).collect();
        let mut seen = vec![false; doc.nodes().len()];
        while let Some((node, parent)) = stack.pop() {
            if std::mem::replace(&mut seen[node.index()], true) {
                return Err(err(format!(
                    "node {} is reached twice: the node graph has a cycle or a node with two parents (glTF nodes form trees)",
                    node.index()
                )));
            }
            let local = pose.get(&node.index()).copied().unwrap_or_else(|| node.transform().matrix());
            let world = mat_mul(parent, local);
            visit(&node, world)?;
            stack.extend(node.children().map(|c| (c, world)));
        }
        Ok(())
    }

    /// The triangles of `mesh` through `world`, each with its primitive's material (`None`:
    /// glTF's default material) and its shading (normals through `world`'s inverse transpose,
    /// the first texture coordinates; zeros where the mesh has none), appended to `out` up to
    /// [`MAX_TRIANGLES`] in all.
    fn triangles(
        &self,
        name: &str,
        mesh: &gltf::Mesh,
        world: [[f32; 4]; 4],
        out: &mut Vec<GltfTriangle>,
    ) -> Result<(), RenderError> {
        let err = |message: String| RenderError::Mesh { path: name.to_string(), message };
        let normal_matrix = normal_matrix(world);
        for prim in mesh.primitives() {
            if prim.mode() != gltf::mesh::Mode::Triangles {
                continue;
            }
            let reader = prim.reader(|b| self.buffers.get(b.index()).map(|d| &d[..]));
            let pos: Vec<[f32; 3]> =
                reader.read_positions().ok_or_else(|| err("a primitive has no positions".into()))?.collect();
            let idx: Vec<u32> = match reader.read_indices() {
                Some(i) => i.into_u32().collect(),
                None => (0..pos.len() as u32).collect(),
            };
            let normals: Vec<[f32; 3]> = reader.read_normals().map(|n| n.collect()).unwrap_or_default();
            let uvs: Vec<[f32; 2]> = reader.read_tex_coords(0).map(|t| t.into_f32().collect()).unwrap_or_default();
            let material = prim.material().index();
            for t in idx.chunks_exact(3) {
                if out.len() >= MAX_TRIANGLES {
                    return Err(err(format!("more than {MAX_TRIANGLES} triangles")));
                }
                let p = |i: u32| pos.get(i as usize).copied().ok_or_else(|| err(format!("index {i} out of range")));
                let v = [transform(world, p(t[0])?), transform(world, p(t[1])?), transform(world, p(t[2])?)];
                // An attribute has as many entries as the positions (gltf checks the accessors'
                // counts), so an index that found a position finds its normal and UV.
                let n = |i: u32| normals.get(i as usize).map_or([0.0; 3], |n| rotate(normal_matrix, *n));
                let uv = |i: u32| uvs.get(i as usize).copied().unwrap_or([0.0; 2]);
                let shading = Shading { normals: [n(t[0]), n(t[1]), n(t[2])], uv: [uv(t[0]), uv(t[1]), uv(t[2])] };
                out.push(GltfTriangle { v, material, shading });
            }
        }
        Ok(())
    }
}

/// The shading of a triangle whose mesh has no normals and no UVs.
const FLAT: Shading = Shading { normals: [[0.0; 3]; 3], uv: [[0.0; 2]; 3] };

/// A triangle of a glTF mesh as loaded: its vertices, its material, its shading.
struct GltfTriangle {
    v: [[f32; 3]; 3],
    material: Option<usize>,
    shading: Shading,
}

/// Where normals go under `m`: the inverse transpose of its upper 3x3, as its cofactors
/// times the sign of its determinant (a mirroring transform keeps normals outward).
fn normal_matrix(m: [[f32; 4]; 4]) -> [[f32; 3]; 3] {
    let a = |r: usize, c: usize| m[c][r];
    let cof = |r0: usize, r1: usize, c0: usize, c1: usize| a(r0, c0) * a(r1, c1) - a(r0, c1) * a(r1, c0);
    // The cofactor matrix, by rows.
    let c = [
        [cof(1, 2, 1, 2), -cof(1, 2, 0, 2), cof(1, 2, 0, 1)],
        [-cof(0, 2, 1, 2), cof(0, 2, 0, 2), -cof(0, 2, 0, 1)],
        [cof(0, 1, 1, 2), -cof(0, 1, 0, 2), cof(0, 1, 0, 1)],
    ];
    let det = a(0, 0) * c[0][0] + a(0, 1) * c[0][1] + a(0, 2) * c[0][2];
    let s = if det < 0.0 { -1.0 } else { 1.0 };
    [
        [c[0][0] * s, c[0][1] * s, c[0][2] * s],
        [c[1][0] * s, c[1][1] * s, c[1][2] * s],
        [c[2][0] * s, c[2][1] * s, c[2][2] * s],
    ]
}

/// A direction through a 3x3 matrix given as rows.
fn rotate(m: [[f32; 3]; 3], n: [f32; 3]) -> [f32; 3] {
    let r = [0, 1, 2].map(|k| m[k][0] * n[0] + m[k][1] * n[1] + m[k][2] * n[2]);
    if r.iter().all(|x| x.is_finite()) { r } else { [0.0; 3] }
}

fn load_gltf(files: &dyn Files, bytes: &[u8], name: &str) -> Result<Vec<[[f32; 3]; 3]>, RenderError> {
    let g = open_gltf(files, bytes, name)?;
    let mut out = Vec::new();
    g.walk(name, &BTreeMap::new(), |node, world| match node.mesh() {
        Some(mesh) => g.triangles(name, &mesh, world, &mut out),
        None => Ok(()),
    })?;
    Ok(out.into_iter().map(|t| t.v).collect())
}

/// The textures a glTF scene's materials use, each image decoded once per wrap mode, within
/// the limits of scene.rs (count, side, decoded bytes; a side too large is refused from the
/// image's header, before its pixels are decoded).
struct Textures<'a> {
    files: &'a dyn Files,
    name: &'a str,
    opened: &'a Opened,
    list: Vec<Texture>,
    by_key: BTreeMap<(usize, [Wrap; 2]), u32>,
    bytes: u64,
}

impl Textures<'_> {
    /// The scene's texture for glTF texture `t` read through UV set `set`.
    fn get(&mut self, t: gltf::Texture, set: u32) -> Result<u32, String> {
        if set != 0 {
            return Err(format!("texture {} reads UV set {set}; ifx reads the first only", t.index()));
        }
        use gltf::texture::WrappingMode;
        let wrap = |w: WrappingMode| match w {
            WrappingMode::Repeat => Wrap::Repeat,
            WrappingMode::ClampToEdge => Wrap::Clamp,
            WrappingMode::MirroredRepeat => Wrap::Mirror,
        };
        let sampler = t.sampler();
        let key = (t.source().index(), [wrap(sampler.wrap_s()), wrap(sampler.wrap_t())]);
        if let Some(i) = self.by_key.get(&key) {
            return Ok(*i);
        }
        if self.list.len() >= MAX_TEXTURES {
            return Err(format!("more than {MAX_TEXTURES} textures"));
        }
        let image = t.source();
        let what = format!("image {}", image.index());
        let (bytes, range) = self.image_bytes(&image).map_err(|e| format!("{what}: {e}"))?;
        let (width, height, texels) = self.decode(&bytes[range]).map_err(|e| format!("{what}: {e}"))?;
        let i = self.list.len() as u32;
        self.list.push(Texture { width, height, wrap: key.1, texels: std::sync::Arc::new(texels) });
        self.by_key.insert(key, i);
        Ok(i)
    }

    /// An image's encoded bytes, as the bytes that hold them and where in them: a buffer view
    /// of the file (its buffer, not a copy), a base64 `data:` URI, or a file beside the glTF
    /// (read through `files`, so a submission ships it).
    fn image_bytes(&self, image: &gltf::Image) -> Result<(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>), String> {
        match image.source() {
            gltf::image::Source::View { view, .. } => {
                let buf = self.opened.buffers.get(view.buffer().index()).ok_or("its buffer is missing")?;
                let end = view.offset().checked_add(view.length()).ok_or("its view overflows")?;
                if end > buf.len() {
                    return Err("its view runs past its buffer".into());
                }
                Ok((buf.clone(), view.offset()..end))
            }
            gltf::image::Source::Uri { uri, .. } => {
                let b = uri_bytes(self.files, self.name, uri)?;
                let n = b.len();
                Ok((b, 0..n))
            }
        }
    }

    /// Decodes a PNG or JPEG to RGBA8: its size is read from its header and checked against
    /// [`MAX_TEXTURE_SIDE`] and what is left of [`MAX_TEXTURE_BYTES`] before its pixels are.
    fn decode(&mut self, bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
        let reader =
            || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string());
        let (w, h) = reader()?.into_dimensions().map_err(|e| format!("not a PNG or JPEG image ({e})"))?;
        if w > MAX_TEXTURE_SIDE || h > MAX_TEXTURE_SIDE || w == 0 || h == 0 {
            return Err(format!("{w}x{h} texels: sides from 1 to {MAX_TEXTURE_SIDE}"));
        }
        let need = w as u64 * h as u64 * 4;
        if self.bytes + need > MAX_TEXTURE_BYTES {
            return Err(format!(
                "{w}x{h} texels take {need} bytes decoded; with the scene's other textures ({} bytes) that is over the {MAX_TEXTURE_BYTES}-byte limit",
                self.bytes
            ));
        }
        let mut r = reader()?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(w);
        limits.max_image_height = Some(h);
        // The decoder's own buffers (at most 16 bits a channel) and the RGBA8 copy.
        limits.max_alloc = Some(need * 3);
        r.limits(limits);
        let img = r.decode().map_err(|e| e.to_string())?.to_rgba8();
        if img.width() != w || img.height() != h {
            return Err(format!("decoded as {}x{}, its header says {w}x{h}", img.width(), img.height()));
        }
        self.bytes += need;
        Ok((w, h, img.into_raw()))
    }
}

/// One glTF material as one of ifx's: glTF's metallic-roughness (`Pbr`) with its base colour,
/// metallic-roughness, normal and emissive textures, emission (its factor times
/// `KHR_materials_emissive_strength`, times the emissive texture) and alpha mask. An untextured
/// emitter whose base colour is black (as Blender exports an Emission shader) is a plain
/// light; a transmissive one (`KHR_materials_transmission` of at least one half) smooth glass
/// of its `KHR_materials_ior`. What is not rendered yet is refused by name rather than drawn
/// wrong: a transmission texture, alpha blending, textures of one material with different
/// `KHR_texture_transform`s. With the material, the UV transform its textures share (see
/// [`uv_transform`]), if any.
fn gltf_material(m: &gltf::Material, tex: &mut Textures) -> Result<(Material, Option<UvTransform>), String> {
    let what = match m.name() {
        Some(n) => format!("material {} ({n:?})", m.index().map_or("default".into(), |i| i.to_string())),
        None => format!("material {}", m.index().map_or("default".into(), |i| i.to_string())),
    };
    let pbr = m.pbr_metallic_roughness();
    let unsupported = [
        (m.alpha_mode() == gltf::material::AlphaMode::Blend, "alpha blending"),
        (m.transmission().is_some_and(|t| t.transmission_texture().is_some()), "a transmission texture"),
    ];
    if let Some((_, feature)) = unsupported.iter().find(|(has, _)| *has) {
        return Err(format!("{what} has {feature}, which ifx does not render yet"));
    }
    let base = pbr.base_color_factor();
    let rgb = [base[0], base[1], base[2]];
    let strength = m.emissive_strength().unwrap_or(1.0);
    let emission = m.emissive_factor().map(|e| e * strength);
    let emits = emission.iter().any(|e| *e > 0.0);
    if emits && rgb == [0.0; 3] && pbr.base_color_texture().is_none() && m.emissive_texture().is_none() {
        return Ok((Material::Emissive { emission }, None));
    }
    if m.transmission().is_some_and(|t| t.transmission_factor() >= 0.5) {
        return Ok((Material::Dielectric { ior: m.ior().unwrap_or(1.5) }, None));
    }
    // Every texture of the material reads the triangle's one UV set, so they must agree on
    // its transform: then the loader moves the UVs once (a slot without one is the identity).
    let slots = [
        pbr.base_color_texture().map(|t| typed_transform(t.texture_transform())),
        pbr.metallic_roughness_texture().map(|t| typed_transform(t.texture_transform())),
        m.normal_texture().map(|t| uv_transform(t.extension_value("KHR_texture_transform"))),
        m.emissive_texture().map(|t| typed_transform(t.texture_transform())),
    ];
    let mut shared: Option<UvTransform> = None;
    for slot in slots.into_iter().flatten() {
        let t = slot.map_err(|e| format!("{what}: KHR_texture_transform: {e}"))?;
        match shared {
            None => shared = Some(t),
            Some(s) if s == t => {}
            Some(_) => {
                return Err(format!(
                    "{what} has textures with different KHR_texture_transforms, which ifx does not render yet \
                     (its textures share one UV set)"
                ));
            }
        }
    }
    let shared = shared.filter(|t| *t != IDENTITY_UV);
    // A normal map's tangent frame follows the mesh's own UVs (glTF's rule, and Blender's
    // normal map node), but ifx derives it from the UVs the triangle carries, moved: the same
    // directions under scale and offset, turned or mirrored under a rotation or a negative
    // scale. Those are refused on a normal-mapped material rather than lit wrong.
    if m.normal_texture().is_some()
        && let Some(t) = shared
        && !(t[0][1] == 0.0 && t[1][0] == 0.0 && t[0][0] > 0.0 && t[1][1] > 0.0)
    {
        return Err(format!(
            "{what} has a normal map under a rotated or mirrored KHR_texture_transform, which ifx does not render yet"
        ));
    }
    let mut p = Pbr::plain(rgb, pbr.metallic_factor(), pbr.roughness_factor());
    p.emission = emission;
    p.alpha = base[3];
    let with = |e: String| format!("{what}: {e}");
    if let Some(t) = pbr.base_color_texture() {
        p.base_texture = Some(tex.get(t.texture(), t.tex_coord()).map_err(with)?);
    }
    if let Some(t) = pbr.metallic_roughness_texture() {
        p.metal_rough_texture = Some(tex.get(t.texture(), t.tex_coord()).map_err(with)?);
    }
    if let Some(t) = m.emissive_texture() {
        p.emissive_texture = Some(tex.get(t.texture(), t.tex_coord()).map_err(with)?);
    }
    if let Some(t) = m.normal_texture() {
        p.normal_texture = Some(tex.get(t.texture(), t.tex_coord()).map_err(with)?);
        p.normal_scale = t.scale();
    }
    if m.alpha_mode() == gltf::material::AlphaMode::Mask {
        p.alpha_cutoff = Some(m.alpha_cutoff().unwrap_or(0.5));
    }
    Ok((Material::Pbr(p), shared))
}

/// A UV transform, `(u', v') = M (u, v, 1)` with `M` two rows of three.
type UvTransform = [[f32; 3]; 2];
const IDENTITY_UV: UvTransform = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];

/// `KHR_texture_transform` as a matrix: scale, then rotation, then offset (`T R S`). The
/// rotation turns the UVs counter-clockwise as glTF's V runs down the image: `u' = cos u +
/// sin v`, `v' = -sin u + cos v`, which is the reading under which the extension's own
/// example (offset `[0, 1]`, rotation pi/2, scale 1/2) shows the image's lower-left quarter
/// (`pbr::a_texture_transform_moves_the_uvs_as_gltf_defines`).
/// A `texCoord` other than 0 is refused: ifx reads the first UV set only.
fn transform_matrix(
    offset: [f32; 2],
    rotation: f32,
    scale: [f32; 2],
    tex_coord: Option<u32>,
) -> Result<UvTransform, String> {
    if tex_coord.is_some_and(|t| t != 0) {
        return Err("a UV set other than the first (texCoord), which ifx does not render yet".into());
    }
    if !(finite(&offset) && rotation.is_finite() && finite(&scale)) {
        return Err("its offset, rotation and scale must be finite".into());
    }
    let (s, c) = rotation.sin_cos();
    Ok([[c * scale[0], s * scale[1], offset[0]], [-s * scale[0], c * scale[1], offset[1]]])
}

/// A texture slot's transform from gltf's typed extension (base colour, metallic-roughness,
/// emissive). With the crate's `KHR_texture_transform` feature (needed for files that
/// require the extension) these slots parse it themselves; the normal texture's JSON is
/// read by [`uv_transform`].
fn typed_transform(t: Option<gltf::texture::TextureTransform>) -> Result<UvTransform, String> {
    match t {
        None => Ok(IDENTITY_UV),
        Some(t) => transform_matrix(t.offset(), t.rotation(), t.scale(), t.tex_coord()),
    }
}

/// A texture slot's transform from the extension's JSON (the normal texture, which gltf does
/// not type).
fn uv_transform(v: Option<&gltf::json::Value>) -> Result<UvTransform, String> {
    let Some(v) = v else { return Ok(IDENTITY_UV) };
    let bad = || "its offset, rotation, scale or texCoord is not a number of the right shape".to_string();
    let pair = |k: &str, d: [f32; 2]| -> Result<[f32; 2], String> {
        match v.get(k) {
            None => Ok(d),
            Some(a) => {
                let a = a.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
                Ok([a[0].as_f64().ok_or_else(bad)? as f32, a[1].as_f64().ok_or_else(bad)? as f32])
            }
        }
    };
    let rotation = match v.get("rotation") {
        None => 0.0,
        Some(r) => r.as_f64().ok_or_else(bad)? as f32,
    };
    let tex_coord = match v.get("texCoord") {
        None => None,
        Some(t) => Some(t.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(bad)?),
    };
    transform_matrix(pair("offset", [0.0, 0.0])?, rotation, pair("scale", [1.0, 1.0])?, tex_coord)
}

/// A whole glTF scene: its default scene's meshes, their materials (see [`gltf_material`]),
/// its point lights (`KHR_lights_punctual`), and the camera of the lowest-numbered node that
/// has a perspective one, posed at `time` seconds into its animations. glTF has no sky: the
/// background is black.
fn gltf_scene(files: &dyn Files, bytes: &[u8], name: &str, time: f32) -> Result<Scene, RenderError> {
    let err = |message: String| RenderError::SceneFile { path: name.to_string(), message };
    let g = open_gltf(files, bytes, name)?;
    let pose = crate::anim::poses(&g.doc, &g.buffers, time).map_err(err)?;
    let mut tris = Vec::new();
    let mut points = Vec::new();
    let mut directional = Vec::new();
    let mut camera: Option<(usize, Camera)> = None;
    g.walk(name, &pose, |node, world| {
        if let Some(light) = node.light() {
            use gltf::khr_lights_punctual::Kind;
            match light.kind() {
                Kind::Point => {
                    if points.len() >= MAX_POINT_LIGHTS {
                        return Err(err(format!("more than {MAX_POINT_LIGHTS} point lights")));
                    }
                    // Candela (lumens per steradian) to watts per steradian at 683 lm/W, the
                    // factor Blender's exporter multiplies by (its "standard" lighting mode).
                    let i = light.intensity() / LUMENS_PER_WATT;
                    points.push(PointLight {
                        position: transform(world, [0.0; 3]),
                        intensity: light.color().map(|c| c * i),
                        cone: None,
                    });
                }
                Kind::Spot { inner_cone_angle, outer_cone_angle } => {
                    if points.len() >= MAX_POINT_LIGHTS {
                        return Err(err(format!("more than {MAX_POINT_LIGHTS} point and spot lights")));
                    }
                    // A spot shines down its node's -Z; its intensity is candela, as a point's.
                    let i = light.intensity() / LUMENS_PER_WATT;
                    points.push(PointLight {
                        position: transform(world, [0.0; 3]),
                        intensity: light.color().map(|c| c * i),
                        cone: Some(cone(transform_dir(world, [0.0, 0.0, -1.0]), inner_cone_angle, outer_cone_angle)),
                    });
                }
                Kind::Directional => {
                    if directional.len() >= MAX_DIRECTIONAL_LIGHTS {
                        return Err(err(format!("more than {MAX_DIRECTIONAL_LIGHTS} directional lights")));
                    }
                    // It shines down its node's -Z; its intensity is lux (lumens per square
                    // metre), to watts per square metre at 683 lm/W as Blender's exporter
                    // multiplies a sun's strength by.
                    let e = light.intensity() / LUMENS_PER_WATT;
                    directional.push(DirectionalLight {
                        direction: unit(transform_dir(world, [0.0, 0.0, -1.0])),
                        irradiance: light.color().map(|c| c * e),
                    });
                }
            }
        }
        if let Some(c) = node.camera()
            && camera.as_ref().is_none_or(|(i, _)| node.index() < *i)
        {
            let gltf::camera::Projection::Perspective(p) = c.projection() else {
                return Err(err(format!("node {}: only perspective cameras are rendered", node.index())));
            };
            let position = transform(world, [0.0; 3]);
            let ahead = transform_dir(world, [0.0, 0.0, -1.0]);
            let cam = Camera {
                position,
                look_at: [position[0] + ahead[0], position[1] + ahead[1], position[2] + ahead[2]],
                up: transform_dir(world, [0.0, 1.0, 0.0]),
                fov_deg: p.yfov().to_degrees(),
            };
            camera = Some((node.index(), cam));
        }
        match node.mesh() {
            Some(mesh) => g.triangles(name, &mesh, world, &mut tris),
            None => Ok(()),
        }
    })?;
    let (_, camera) = camera.ok_or_else(|| err("the scene has no perspective camera".into()))?;
    // The materials the triangles use, in glTF order, then glTF's default one if any
    // triangle has none.
    let used: std::collections::BTreeSet<Option<usize>> = tris.iter().map(|t| t.material).collect();
    let mut materials = Vec::new();
    let mut index = BTreeMap::new();
    let mut textures = Textures { files, name, opened: &g, list: Vec::new(), by_key: BTreeMap::new(), bytes: 0 };
    let mut moved = BTreeMap::new();
    for m in &used {
        let material = match m {
            Some(i) => {
                let gm = g.doc.materials().nth(*i).ok_or_else(|| err(format!("material {i} does not exist")))?;
                let (material, uv) = gltf_material(&gm, &mut textures).map_err(err)?;
                if let Some(uv) = uv {
                    moved.insert(*m, uv);
                }
                material
            }
            // glTF's default material: white, fully metallic, fully rough.
            None => Material::Pbr(Pbr::plain([1.0; 3], 1.0, 1.0)),
        };
        index.insert(*m, materials.len() as u32);
        materials.push(material);
    }
    // A material's texture transform, applied to its triangles' UVs once here.
    for t in &mut tris {
        if let Some(m) = moved.get(&t.material) {
            t.shading.uv =
                t.shading.uv.map(|[u, v]| [m[0][0] * u + m[0][1] * v + m[0][2], m[1][0] * u + m[1][1] * v + m[1][2]]);
        }
    }
    let black = [0.0; 3];
    let scene = Scene {
        camera,
        sky: Sky { horizon: black, zenith: black },
        materials,
        spheres: Vec::new(),
        // A scene whose meshes carry neither normals nor UVs is flat: no shading to upload.
        shading: if tris.iter().all(|t| t.shading == FLAT) {
            Vec::new()
        } else {
            tris.iter().map(|t| t.shading).collect()
        },
        triangles: tris.into_iter().map(|t| Triangle { v: t.v, material: index[&t.material] }).collect(),
        points,
        directional,
        textures: textures.list,
        seed: 0,
    };
    scene.validate()?;
    Ok(scene)
}

fn load_obj(bytes: &[u8], name: &str) -> Result<Vec<[[f32; 3]; 3]>, RenderError> {
    let err = |message: String| RenderError::Mesh { path: name.to_string(), message };
    let opts = tobj::LoadOptions { triangulate: true, single_index: true, ..Default::default() };
    // Materials come from the scene file, so an OBJ's material library is never read.
    let (models, _) =
        tobj::load_obj_buf(&mut std::io::Cursor::new(bytes), &opts, |_| Err(tobj::LoadError::OpenFileFailed))
            .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for m in models {
        let p = &m.mesh.positions;
        for t in m.mesh.indices.chunks_exact(3) {
            if out.len() >= MAX_TRIANGLES {
                return Err(err(format!("more than {MAX_TRIANGLES} triangles")));
            }
            let v = |i: u32| -> Result<[f32; 3], RenderError> {
                let i = i as usize * 3;
                p.get(i..i + 3).map(|s| [s[0], s[1], s[2]]).ok_or_else(|| err("index out of range".into()))
            };
            out.push([v(t[0])?, v(t[1])?, v(t[2])?]);
        }
    }
    Ok(out)
}

const IDENTITY: [[f32; 4]; 4] =
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];

/// Column-major 4x4 product (glTF's layout).
fn mat_mul(a: [[f32; 4]; 4], b: [[f32; 4]; 4]) -> [[f32; 4]; 4] {
    let mut r = [[0.0; 4]; 4];
    for (c, col) in r.iter_mut().enumerate() {
        for (row, cell) in col.iter_mut().enumerate() {
            *cell = (0..4).map(|k| a[k][row] * b[c][k]).sum();
        }
    }
    r
}

/// Direction `d` of a node's local frame in the world: where it takes the point `d`, less
/// where it takes its origin (lights' axes, the camera's ahead and up).
fn transform_dir(m: [[f32; 4]; 4], d: [f32; 3]) -> [f32; 3] {
    let (v, o) = (transform(m, d), transform(m, [0.0; 3]));
    [v[0] - o[0], v[1] - o[1], v[2] - o[2]]
}

fn transform(m: [[f32; 4]; 4], p: [f32; 3]) -> [f32; 3] {
    let mut o = [0.0; 3];
    for (row, out) in o.iter_mut().enumerate() {
        *out = m[0][row] * p[0] + m[1][row] * p[1] + m[2][row] * p[2] + m[3][row];
    }
    o
}
