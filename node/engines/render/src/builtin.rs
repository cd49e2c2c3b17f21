//! Built-in scenes, so a demo needs no files: a Cornell box and a field of spheres.

use ifx_protocols::render::RenderError;
use ifx_protocols::render::scene::{Camera, Material, Scene, Sky, Sphere};

/// Names of the built-in scenes.
pub const NAMES: [&str; 2] = ["cornell", "spheres"];

/// A built-in scene by name.
pub fn by_name(name: &str) -> Result<Scene, RenderError> {
    match name {
        "cornell" => Ok(cornell()),
        "spheres" => Ok(spheres()),
        other => Err(RenderError::UnknownScene(other.into())),
    }
}

/// The Cornell box: red and green walls, a ceiling light, two boxes, a glass sphere.
pub fn cornell() -> Scene {
    let mut s = Scene {
        camera: Camera {
            position: [278.0, 278.0, -800.0],
            look_at: [278.0, 278.0, 0.0],
            up: [0.0, 1.0, 0.0],
            fov_deg: 40.0,
        },
        sky: Sky { horizon: [0.0; 3], zenith: [0.0; 3] },
        materials: vec![
            Material::Diffuse { albedo: [0.65, 0.05, 0.05] },
            Material::Diffuse { albedo: [0.73, 0.73, 0.73] },
            Material::Diffuse { albedo: [0.12, 0.45, 0.15] },
            Material::Emissive { emission: [6.0, 6.0, 6.0] },
            Material::Dielectric { ior: 1.5 },
        ],
        spheres: vec![Sphere { center: [190.0, 250.0, 190.0], radius: 60.0, material: 4 }],
        triangles: Vec::new(),
        points: Vec::new(),
        directional: Vec::new(),
        textures: Vec::new(),
        shading: Vec::new(),
        seed: 0x1f2e_3d4c,
    };
    let l = 555.0;
    s.quad([l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l], 2); // green, left
    s.quad([0.0, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l], 0); // red, right
    s.quad([163.0, 554.0, 177.0], [230.0, 0.0, 0.0], [0.0, 0.0, 205.0], 3); // light
    s.quad([0.0, 0.0, 0.0], [l, 0.0, 0.0], [0.0, 0.0, l], 1); // floor
    s.quad([l, l, l], [-l, 0.0, 0.0], [0.0, 0.0, -l], 1); // ceiling
    s.quad([0.0, 0.0, l], [l, 0.0, 0.0], [0.0, l, 0.0], 1); // back
    s.cuboid([265.0, 0.0, 295.0], [430.0, 330.0, 460.0], 15.0, 1);
    s.cuboid([130.0, 0.0, 65.0], [295.0, 165.0, 230.0], -18.0, 1);
    s
}

/// Spheres of every material on a large ground sphere under a blue sky.
pub fn spheres() -> Scene {
    let mut s = Scene {
        camera: Camera { position: [0.0, 1.6, 6.0], look_at: [0.0, 0.6, 0.0], up: [0.0, 1.0, 0.0], fov_deg: 35.0 },
        sky: Sky { horizon: [1.0, 1.0, 1.0], zenith: [0.5, 0.7, 1.0] },
        materials: vec![
            Material::Diffuse { albedo: [0.5, 0.5, 0.45] },
            Material::Diffuse { albedo: [0.1, 0.2, 0.6] },
            Material::Metal { albedo: [0.8, 0.6, 0.2], fuzz: 0.05 },
            Material::Dielectric { ior: 1.5 },
            Material::Emissive { emission: [4.0, 3.0, 2.0] },
            Material::Metal { albedo: [0.7, 0.7, 0.7], fuzz: 0.4 },
        ],
        spheres: vec![
            Sphere { center: [0.0, -1000.0, 0.0], radius: 1000.0, material: 0 },
            Sphere { center: [0.0, 1.0, 0.0], radius: 1.0, material: 3 },
            Sphere { center: [-2.2, 1.0, -0.5], radius: 1.0, material: 1 },
            Sphere { center: [2.2, 1.0, -0.5], radius: 1.0, material: 2 },
            Sphere { center: [1.0, 0.3, 1.6], radius: 0.3, material: 4 },
            Sphere { center: [-1.2, 0.35, 1.5], radius: 0.35, material: 5 },
        ],
        triangles: Vec::new(),
        points: Vec::new(),
        directional: Vec::new(),
        textures: Vec::new(),
        shading: Vec::new(),
        seed: 0x5eed_0001,
    };
    // A tilted box of triangles, so the BVH is exercised in this scene too.
    s.cuboid([-0.4, 0.0, 2.2], [0.2, 0.6, 2.8], 30.0, 1);
    s
}
