//! Scene files (TOML or JSON) and the meshes they reference (glTF 2.0 `.gltf`/`.glb`, OBJ).
//! Materials are named; spheres, quads, boxes and meshes refer to them by name. Paths of
//! meshes are relative to the scene file. Sizes are checked before anything large is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use ifx_protocols::render::RenderError;
use ifx_protocols::render::scene::{Camera, MAX_TRIANGLES, Material, Scene, Sky, Sphere, Triangle};

use crate::builtin;

/// Largest scene or mesh file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

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

/// Refuses files over [`MAX_FILE_BYTES`]; `err` names the file's role in the message.
fn check_size(path: &Path, err: impl Fn(String) -> RenderError) -> Result<(), RenderError> {
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!("{} bytes exceed the {MAX_FILE_BYTES}-byte limit", meta.len())));
    }
    Ok(())
}

/// A mesh file's error.
fn mesh_err(path: &Path) -> impl Fn(String) -> RenderError + '_ {
    move |message| RenderError::Mesh { path: path.display().to_string(), message }
}

/// Loads a `.toml` or `.json` scene file.
pub fn load_file(path: &Path) -> Result<Scene, RenderError> {
    let err = |message: String| RenderError::SceneFile { path: path.display().to_string(), message };
    check_size(path, err)?;
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let f: File = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str(&text).map_err(|e| err(e.to_string()))?,
        Some("json") => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
        _ => return Err(err("the file name must end in .toml or .json".into())),
    };
    build(f, path)
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
    build(f, Path::new("(inline)"))
}

fn build(f: File, path: &Path) -> Result<Scene, RenderError> {
    let err = |message: String| RenderError::SceneFile { path: path.display().to_string(), message };
    let index: BTreeMap<&str, u32> = f.materials.keys().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
    let mat = |name: &str| index.get(name).copied().ok_or_else(|| err(format!("unknown material {name:?}")));
    let mut scene = Scene {
        camera: f.camera,
        sky: f.sky,
        materials: f.materials.values().cloned().collect(),
        spheres: Vec::new(),
        triangles: Vec::new(),
        seed: f.seed,
    };
    for s in &f.spheres {
        scene.spheres.push(Sphere { center: s.center, radius: s.radius, material: mat(&s.material)? });
    }
    for q in &f.quads {
        scene.quad(q.corner, q.u, q.v, mat(&q.material)?);
    }
    for b in &f.boxes {
        scene.cuboid(b.min, b.max, b.yaw_deg, mat(&b.material)?);
    }
    let base = path.parent().unwrap_or(Path::new("."));
    for m in &f.meshes {
        let material = mat(&m.material)?;
        let mesh_path = base.join(&m.path);
        let tris = load_mesh(&mesh_path)?;
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
    let err = mesh_err(path);
    if !path.exists() {
        return Err(err("file not found".into()));
    }
    check_size(path, &err)?;
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("gltf" | "glb") => load_gltf(path),
        Some("obj") => load_obj(path),
        _ => Err(err("unsupported mesh format (use .gltf, .glb or .obj)".into())),
    }
}

fn load_gltf(path: &Path) -> Result<Vec<[[f32; 3]; 3]>, RenderError> {
    let err = mesh_err(path);
    let gltf::Gltf { document: doc, blob } = gltf::Gltf::open(path).map_err(|e| err(e.to_string()))?;
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
        if let gltf::buffer::Source::Uri(uri) = b.source()
            && !uri.starts_with("data:")
            && let Ok(meta) = std::fs::metadata(path.parent().unwrap_or(Path::new(".")).join(uri))
            && meta.len() > MAX_FILE_BYTES
        {
            return Err(err(format!(
                "buffer {} ({uri}): {} bytes exceed the {MAX_FILE_BYTES}-byte limit",
                b.index(),
                meta.len()
            )));
        }
    }
    let buffers = gltf::import_buffers(&doc, path.parent(), blob).map_err(|e| err(format!("buffers: {e}")))?;
    let mut out = Vec::new();
    let scene =
        doc.default_scene().or_else(|| doc.scenes().next()).ok_or_else(|| err("no scene in the file".into()))?;
    let mut stack: Vec<(gltf::Node, [[f32; 4]; 4])> = scene.nodes().map(|n| (n, IDENTITY)).collect();
    // glTF node graphs are trees: a node reached twice is a cycle (which would never end) or a
    // node with two parents.
    let mut seen = vec![false; doc.nodes().len()];
    while let Some((node, parent)) = stack.pop() {
        if std::mem::replace(&mut seen[node.index()], true) {
            return Err(err(format!(
                "node {} is reached twice: the node graph has a cycle or a node with two parents (glTF nodes form trees)",
                node.index()
            )));
        }
        let world = mat_mul(parent, node.transform().matrix());
        if let Some(mesh) = node.mesh() {
            for prim in mesh.primitives() {
                if prim.mode() != gltf::mesh::Mode::Triangles {
                    continue;
                }
                let reader = prim.reader(|b| buffers.get(b.index()).map(|d| &d.0[..]));
                let pos: Vec<[f32; 3]> =
                    reader.read_positions().ok_or_else(|| err("a primitive has no positions".into()))?.collect();
                let idx: Vec<u32> = match reader.read_indices() {
                    Some(i) => i.into_u32().collect(),
                    None => (0..pos.len() as u32).collect(),
                };
                for t in idx.chunks_exact(3) {
                    if out.len() >= MAX_TRIANGLES {
                        return Err(err(format!("more than {MAX_TRIANGLES} triangles")));
                    }
                    let p = |i: u32| pos.get(i as usize).copied().ok_or_else(|| err(format!("index {i} out of range")));
                    out.push([transform(world, p(t[0])?), transform(world, p(t[1])?), transform(world, p(t[2])?)]);
                }
            }
        }
        stack.extend(node.children().map(|c| (c, world)));
    }
    Ok(out)
}

fn load_obj(path: &Path) -> Result<Vec<[[f32; 3]; 3]>, RenderError> {
    let err = mesh_err(path);
    let opts = tobj::LoadOptions { triangulate: true, single_index: true, ..Default::default() };
    let (models, _) = tobj::load_obj(path, &opts).map_err(|e| err(e.to_string()))?;
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

fn transform(m: [[f32; 4]; 4], p: [f32; 3]) -> [f32; 3] {
    let mut o = [0.0; 3];
    for (row, out) in o.iter_mut().enumerate() {
        *out = m[0][row] * p[0] + m[1][row] * p[1] + m[2][row] * p[2] + m[3][row];
    }
    o
}
