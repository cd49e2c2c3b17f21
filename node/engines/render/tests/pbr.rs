//! glTF's metallic-roughness materials (issue #18 items 2 and 3): a rough conductor in a white
//! furnace, textures where their UVs put them (sRGB decoded, filtered), normal maps that bend
//! the shading normal the way glTF defines, alpha masks, and texture images loaded from glTF
//! files within their limits. Both kernels: the CPU reference, and wgpu within the stated
//! tolerance.

use std::sync::Arc;

use ifx_protocols::render::scene::{
    Camera, Material, Pbr, PointLight, Scene, Shading, Sky, Sphere, Texture, Triangle, Wrap,
};
use ifx_render::{Backend, Image, RenderSettings, Renderer, load};

fn render(scene: &Scene, s: &RenderSettings, backend: Backend) -> Image {
    let r = Renderer::new(scene, s, backend).unwrap();
    ifx_render::render_image(&r, s, |_, _| {}).unwrap()
}

/// The mean of each channel over the pixels where `keep` holds.
fn mean_where(img: &Image, keep: impl Fn(u32, u32) -> bool) -> [f64; 3] {
    let (mut sum, mut n) = ([0.0f64; 3], 0u32);
    for y in 0..img.height {
        for x in 0..img.width {
            if keep(x, y) {
                let p = img.rgb[(y * img.width + x) as usize];
                for k in 0..3 {
                    sum[k] += p[k] as f64;
                }
                n += 1;
            }
        }
    }
    sum.map(|s| s / n.max(1) as f64)
}

/// Share of pixels whose 8-bit sRGB values agree.
fn same8(a: &Image, b: &Image) -> f64 {
    let (a8, b8) = (a.to_rgb8(), b.to_rgb8());
    a8.chunks_exact(3).zip(b8.chunks_exact(3)).filter(|(x, y)| x == y).count() as f64 / (a8.len() / 3) as f64
}

/// Issue #18 item 3: rough conductors of Fresnel 1 (white metal) at roughness 0.2, 0.5 and 1
/// under a uniform sky of radiance 1 neither absorb nor emit, so they render as the sky within
/// noise. GGX alone loses up to a third of the light of a rough metal (its single-scattering
/// albedo at roughness 1 and normal incidence is about 0.6): the multiple-scattering term is
/// what keeps it. On the CPU reference and on wgpu.
#[test]
fn rough_conductors_in_a_white_furnace_render_as_the_sky() {
    let metal = |r: f32| Material::Pbr(Pbr::plain([1.0; 3], 1.0, r));
    let furnace = Scene {
        camera: Camera { position: [0.0, 0.0, 9.0], look_at: [0.0; 3], up: [0.0, 1.0, 0.0], fov_deg: 30.0 },
        sky: Sky { horizon: [1.0; 3], zenith: [1.0; 3] },
        materials: vec![metal(0.2), metal(0.5), metal(1.0)],
        spheres: (0..3)
            .map(|i| Sphere { center: [(i as f32 - 1.0) * 1.6, 0.0, 0.0], radius: 0.75, material: i })
            .collect(),
        triangles: Vec::new(),
        points: Vec::new(),
        directional: Vec::new(),
        textures: Vec::new(),
        shading: Vec::new(),
        seed: 5,
    };
    let s = RenderSettings { width: 96, height: 32, spp: 64, max_bounces: 16, tile: 32 };
    let mut cpu = None;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let img = render(&furnace, &s, backend);
        for (i, r) in [0.2, 0.5, 1.0].iter().enumerate() {
            // The sphere's disc, inside its rim (the rim's pixels are part sky).
            let (cx, cy, rad) = (48.0 + (i as f64 - 1.0) * 1.6 / 0.0827, 16.0, 0.75 / 0.0827 * 0.8);
            let inside = |x: u32, y: u32| (x as f64 + 0.5 - cx).hypot(y as f64 + 0.5 - cy) < rad;
            let m = mean_where(&img, inside);
            eprintln!("{backend:?}: roughness {r}: mean {m:.4?}");
            for k in 0..3 {
                assert!((m[k] - 1.0).abs() < 0.01, "{backend:?}: roughness {r}: mean {m:?}");
            }
        }
        match &cpu {
            None => cpu = Some(img),
            Some(c) => assert!(same8(&img, c) > 0.99, "wgpu and CPU differ: {:.4}", same8(&img, c)),
        }
    }
}

/// A floor of two triangles from (-1, 0, -1) to (1, 0, 1), U along +X and glTF's V along +Z
/// (so the texture's top row is at -Z), normals up, under a camera looking straight down with
/// -Z up on the screen (the texture reads upright), of `material`.
fn floor(material: Material, textures: Vec<Texture>, normal: [f32; 3]) -> Scene {
    let p = |x: f32, z: f32| [x, 0.0, z];
    let uv = |x: f32, z: f32| [(x + 1.0) / 2.0, (z + 1.0) / 2.0];
    let tri = |a: (f32, f32), b: (f32, f32), c: (f32, f32)| {
        (
            Triangle { v: [p(a.0, a.1), p(b.0, b.1), p(c.0, c.1)], material: 0 },
            Shading { normals: [normal; 3], uv: [uv(a.0, a.1), uv(b.0, b.1), uv(c.0, c.1)] },
        )
    };
    let (t0, s0) = tri((-1.0, -1.0), (-1.0, 1.0), (1.0, 1.0));
    let (t1, s1) = tri((-1.0, -1.0), (1.0, 1.0), (1.0, -1.0));
    Scene {
        camera: Camera { position: [0.0, 4.0, 0.0], look_at: [0.0; 3], up: [0.0, 0.0, -1.0], fov_deg: 28.0 },
        sky: Sky { horizon: [1.0; 3], zenith: [1.0; 3] },
        materials: vec![material],
        spheres: Vec::new(),
        triangles: vec![t0, t1],
        points: Vec::new(),
        directional: Vec::new(),
        textures,
        shading: vec![s0, s1],
        seed: 11,
    }
}

/// Where pixel (x, y) of a `size` x `size` render of [`floor`] sees the floor, as UV.
fn uv_of_pixel(x: f64, y: f64, size: f64) -> [f64; 2] {
    let h = (14.0f64).to_radians().tan() * 4.0;
    let (wx, wz) = ((2.0 * x / size - 1.0) * h, (2.0 * y / size - 1.0) * h);
    [(wx + 1.0) / 2.0, (wz + 1.0) / 2.0]
}

fn srgb(c: u8) -> f64 {
    let c = c as f64 / 255.0;
    if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
}

/// A texture's linear colour at `uv`, filtered bilinearly between texel centres, repeating:
/// glTF's sampling, written here from its definition.
fn bilinear(tex: &Texture, uv: [f64; 2]) -> [f64; 3] {
    let (w, h) = (tex.width as i64, tex.height as i64);
    let (x, y) = (uv[0].rem_euclid(1.0) * w as f64 - 0.5, uv[1].rem_euclid(1.0) * h as f64 - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |i: i64, j: i64, k: usize| srgb(tex.texels[((j.rem_euclid(h) * w + i.rem_euclid(w)) * 4) as usize + k]);
    let (i, j) = (x0 as i64, y0 as i64);
    [0, 1, 2].map(|k| {
        (at(i, j, k) * (1.0 - fx) + at(i + 1, j, k) * fx) * (1.0 - fy)
            + (at(i, j + 1, k) * (1.0 - fx) + at(i + 1, j + 1, k) * fx) * fy
    })
}

/// Over 4x4 pixel blocks of `img` (a render of [`floor`]), the largest relative difference of
/// a block's mean from what `expect(pixel index, texel colour)` predicts with `tex` sampled
/// where glTF puts each pixel (`uv_of_pixel`, `bilinear`); and the same with the texture
/// upside down, which a test must tell apart.
fn block_errors(img: &Image, tex: &Texture, expect: impl Fn(usize, [f64; 3]) -> [f64; 3]) -> (f64, f64) {
    let size = img.width;
    let (mut worst, mut flipped_worst) = (0.0f64, 0.0f64);
    for by in 0..size / 4 {
        for bx in 0..size / 4 {
            let (mut got, mut want, mut flipped) = ([0.0f64; 3], [0.0f64; 3], [0.0f64; 3]);
            for y in by * 4..by * 4 + 4 {
                for x in bx * 4..bx * 4 + 4 {
                    let i = (y * size + x) as usize;
                    let uv = uv_of_pixel(x as f64 + 0.5, y as f64 + 0.5, size as f64);
                    let (e, e_flipped) = (expect(i, bilinear(tex, uv)), expect(i, bilinear(tex, [uv[0], 1.0 - uv[1]])));
                    for k in 0..3 {
                        got[k] += img.rgb[i][k] as f64;
                        want[k] += e[k];
                        flipped[k] += e_flipped[k];
                    }
                }
            }
            for k in 0..3 {
                worst = worst.max((got[k] / want[k] - 1.0).abs());
                flipped_worst = flipped_worst.max((got[k] / flipped[k] - 1.0).abs());
            }
        }
    }
    (worst, flipped_worst)
}

/// Issue #18 item 2: a base colour texture lands where its UVs put it, upright, sRGB decoded and
/// filtered between texel centres. Under a uniform sky a rough dielectric's radiance is linear
/// in its base colour (`black + (white - black) * base`, from renders of the untextured floor
/// in black and white), so the textured floor must be that with the base read from the
/// texture as glTF defines it: every 4x4 block within 3%. An upside-down or mirrored texture,
/// or one read without the sRGB curve, fails by far more. On wgpu too.
#[test]
fn a_base_colour_texture_lands_where_its_uvs_put_it() {
    // 4 x 4 texels, every one a different colour.
    let texels: Vec<u8> =
        (0..16u8).flat_map(|i| [20 + 15 * i, 240 - 14 * i, if i % 3 == 0 { 30 } else { 200 }, 255]).collect();
    let tex = Texture { width: 4, height: 4, wrap: [Wrap::Repeat; 2], texels: Arc::new(texels) };
    let mut m = Pbr::plain([1.0; 3], 0.0, 1.0);
    m.base_texture = Some(0);
    let up = [0.0, 1.0, 0.0];
    let textured = floor(Material::Pbr(m), vec![tex.clone()], up);
    let plain = |c: f32| floor(Material::Pbr(Pbr::plain([c; 3], 0.0, 1.0)), Vec::new(), up);
    let size = 48u32;
    let s = RenderSettings { width: size, height: size, spp: 256, max_bounces: 4, tile: 48 };
    let (black, white) = (render(&plain(0.0), &s, Backend::Cpu), render(&plain(1.0), &s, Backend::Cpu));
    let img = render(&textured, &s, Backend::Cpu);
    // Under a uniform sky the radiance is black + (white - black) * base, per pixel.
    let (worst, flipped_worst) = block_errors(&img, &tex, |i, base| {
        [0, 1, 2].map(|k| {
            let (b, w) = (black.rgb[i][k] as f64, white.rgb[i][k] as f64);
            b + (w - b) * base[k]
        })
    });
    eprintln!(
        "worst block {:.2}% off glTF's sampling; {:.0}% off the same texture upside down",
        worst * 100.0,
        flipped_worst * 100.0
    );
    assert!(worst < 0.03, "a block differs {:.2}%", worst * 100.0);
    assert!(flipped_worst > 0.2, "the test cannot tell a flipped texture");
    let gpu = render(&textured, &s, Backend::Gpu);
    assert!(same8(&gpu, &img) > 0.99, "wgpu and CPU differ: {:.4}", same8(&gpu, &img));
}

/// Issue #18 item 2: a normal map bends the shading normal as glTF defines it (tangent along
/// +U, bitangent the normal cross the tangent, towards the image's up, which is -V): a floor
/// whose normal map holds one tilted normal renders as the same floor whose vertex normals are
/// that normal, worked out here from the definition. The map tilts towards +X and -Z at once,
/// so swapping or flipping either axis fails; and the tilt changes the image (a floor with a
/// flat map renders differently). On wgpu too.
#[test]
fn a_normal_map_bends_the_normal_as_gltf_defines() {
    let (r, g, b) = (200u8, 80u8, 230u8);
    let map = Texture { width: 1, height: 1, wrap: [Wrap::Repeat; 2], texels: Arc::new(vec![r, g, b, 255]) };
    let flat = Texture { width: 1, height: 1, wrap: [Wrap::Repeat; 2], texels: Arc::new(vec![128, 128, 255, 255]) };
    let unit = |x: u8| 2.0 * x as f32 / 255.0 - 1.0;
    // T = +X, B = N x T = (0, 1, 0) x (1, 0, 0) = -Z, N = +Y.
    let n = [unit(r), unit(b), -unit(g)];
    let len = n.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = n.map(|x| x / len);
    // A metal: its highlights show the normal's direction sharply, and it has no diffuse lobe
    // for Cycles' bump shadowing to fade (that is the next test's).
    let mut mapped = Pbr::plain([0.8, 0.7, 0.6], 1.0, 0.4);
    mapped.normal_texture = Some(0);
    let lit = |mut sc: Scene| {
        sc.sky = Sky { horizon: [0.05; 3], zenith: [0.1; 3] };
        sc.points = vec![PointLight { position: [0.6, 1.2, 0.4], intensity: [3.0; 3], cone: None }];
        sc
    };
    let by_map = lit(floor(Material::Pbr(mapped.clone()), vec![map], [0.0, 1.0, 0.0]));
    let by_normals = lit(floor(Material::Pbr(Pbr::plain([0.8, 0.7, 0.6], 1.0, 0.4)), Vec::new(), n));
    let untilted = lit(floor(Material::Pbr(mapped), vec![flat], [0.0, 1.0, 0.0]));
    let s = RenderSettings { width: 48, height: 48, spp: 16, max_bounces: 4, tile: 48 };
    let (a, b, c) =
        (render(&by_map, &s, Backend::Cpu), render(&by_normals, &s, Backend::Cpu), render(&untilted, &s, Backend::Cpu));
    let all = |_: u32, _: u32| true;
    let (ma, mb, mc) = (mean_where(&a, all), mean_where(&b, all), mean_where(&c, all));
    let diff = |x: &Image, y: &Image| {
        x.rgb.iter().zip(&y.rgb).map(|(p, q)| (0..3).map(|k| (p[k] - q[k]).abs() as f64).sum::<f64>()).sum::<f64>()
            / x.rgb.iter().map(|p| (p[0] + p[1] + p[2]) as f64).sum::<f64>()
    };
    eprintln!(
        "mapped {ma:.4?}, vertex normals {mb:.4?}, flat map {mc:.4?}; differ {:.4}% and {:.1}%",
        diff(&a, &b) * 100.0,
        diff(&a, &c) * 100.0
    );
    assert!(diff(&a, &b) < 0.002, "the map and the normals differ by {:.3}%", diff(&a, &b) * 100.0);
    assert!(diff(&a, &c) > 0.05, "the tilt changes little: {:.3}%", diff(&a, &c) * 100.0);
    let gpu = render(&by_map, &s, Backend::Gpu);
    assert!(same8(&gpu, &a) > 0.99, "wgpu and CPU differ: {:.4}", same8(&gpu, &a));
}

/// Issue #18 item 2: an alpha mask cuts its surface out where the base texture's alpha is below
/// the cutoff: the floor's left half (alpha 0.2) lets the sky through exactly, its right half
/// (alpha 0.8) is there, and shadow rays pass the cut-out half too.
#[test]
fn an_alpha_mask_cuts_its_surface_out() {
    let texels: Vec<u8> = [[255, 255, 255, 51], [255, 255, 255, 204]].concat();
    let tex = Texture { width: 2, height: 1, wrap: [Wrap::Clamp; 2], texels: Arc::new(texels) };
    let mut m = Pbr::plain([0.5; 3], 0.0, 1.0);
    m.base_texture = Some(0);
    m.alpha_cutoff = Some(0.5);
    let mut sc = floor(Material::Pbr(m), vec![tex], [0.0, 1.0, 0.0]);
    sc.sky = Sky { horizon: [0.25; 3], zenith: [0.25; 3] };
    let s = RenderSettings { width: 32, height: 32, spp: 8, max_bounces: 4, tile: 32 };
    for backend in [Backend::Cpu, Backend::Gpu] {
        let img = render(&sc, &s, backend);
        // Columns well inside each half of the floor (it spans the middle 28 pixels).
        let left = mean_where(&img, |x, y| (4..13).contains(&x) && (4..28).contains(&y));
        let right = mean_where(&img, |x, y| (19..28).contains(&x) && (4..28).contains(&y));
        eprintln!("{backend:?}: left {left:.4?}, right {right:.4?}");
        assert!(left.iter().all(|v| (v - 0.25).abs() < 1e-6), "{backend:?}: the cut-out half is {left:?}");
        assert!(right.iter().all(|v| (v - 0.25).abs() > 0.02), "{backend:?}: the solid half is {right:?}");
    }
}

/// An RGBA PNG of `w` x `h`.
fn png(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(rgba, w, h, image::ExtendedColorType::Rgba8).unwrap();
    out
}

/// CRC-32 (ISO 3309, as PNG chunks carry it), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for b in bytes {
        c ^= *b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A PNG claiming `w` x `h` RGBA pixels: its header, with valid checksums, and two bytes of
/// image data (the start of a zlib stream; the rest never comes).
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[0x78, 0x9c]), (b"IEND", &[])] {
        out.extend((data.len() as u32).to_be_bytes());
        let chunk = [kind, data].concat();
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

/// A glTF quad (-1..1 in X and Y, facing +Z) with normals and UVs, a camera 3 units out, and
/// `material` (JSON) with `images` (JSON) as texture 0's source.
fn textured_gltf(material: &str, images: &str) -> String {
    let pos: [[f32; 3]; 4] = [[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]];
    let nrm = [[0.0f32, 0.0, 1.0]; 4];
    let uv: [[f32; 2]; 4] = [[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]];
    let idx: [u16; 6] = [0, 1, 2, 0, 2, 3];
    let mut bin: Vec<u8> = pos
        .iter()
        .flatten()
        .chain(nrm.iter().flatten())
        .chain(uv.iter().flatten())
        .flat_map(|f| f.to_le_bytes())
        .collect();
    bin.extend(idx.iter().flat_map(|i| i.to_le_bytes()));
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(&bin);
    format!(
        r#"{{"asset":{{"version":"2.0"}},"scene":0,"scenes":[{{"nodes":[0,1]}}],
        "nodes":[{{"mesh":0}},{{"camera":0,"translation":[0,0,3]}}],
        "cameras":[{{"type":"perspective","perspective":{{"yfov":0.8,"znear":0.1}}}}],
        "meshes":[{{"primitives":[{{"attributes":{{"POSITION":0,"NORMAL":1,"TEXCOORD_0":2}},"indices":3,"material":0}}]}}],
        "materials":[{material}],"textures":[{{"source":0}}],"images":[{images}],
        "buffers":[{{"byteLength":{len},"uri":"data:application/octet-stream;base64,{data}"}}],
        "bufferViews":[{{"buffer":0,"byteOffset":0,"byteLength":48}},{{"buffer":0,"byteOffset":48,"byteLength":48}},
                       {{"buffer":0,"byteOffset":96,"byteLength":32}},{{"buffer":0,"byteOffset":128,"byteLength":12}}],
        "accessors":[{{"bufferView":0,"componentType":5126,"count":4,"type":"VEC3","min":[-1,-1,0],"max":[1,1,0]}},
                     {{"bufferView":1,"componentType":5126,"count":4,"type":"VEC3"}},
                     {{"bufferView":2,"componentType":5126,"count":4,"type":"VEC2"}},
                     {{"bufferView":3,"componentType":5123,"count":6,"type":"SCALAR"}}]}}"#,
        len = bin.len()
    )
}

/// Issue #18 items 1 and 2: a glTF's textures load from image files beside it (which a
/// submission then ships, since the loader read them), with their texels and the material's
/// slots; and hostile images get clear errors with nothing large allocated: a PNG whose header
/// claims 100,000 x 100,000 pixels is refused from the header at once, as are textures whose
/// decoded size passes the scene's limit, a missing image, and bytes that are no image.
#[test]
fn gltf_textures_load_and_hostile_images_are_refused_from_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    let rgba: Vec<u8> = (0..16u8).flat_map(|i| [i * 16, 255 - i * 16, 7, 255]).collect();
    put("wood.png", &png(4, 4, &rgba));
    put("normal.png", &png(1, 1, &[128, 128, 255, 255]));
    let material = r#"{"pbrMetallicRoughness":{"baseColorTexture":{"index":0},"metallicRoughnessTexture":{"index":0},"roughnessFactor":0.7},
        "normalTexture":{"index":1,"scale":0.5},"alphaMode":"MASK","alphaCutoff":0.25}"#;
    let json = textured_gltf(material, r#"{"uri":"wood.png"},{"uri":"normal.png"}"#)
        .replace(r#""textures":[{"source":0}]"#, r#""textures":[{"source":0},{"source":1}]"#);
    put("quad.gltf", json.as_bytes());
    let files = load::Dir::new(dir.path());
    let s = load::load_from(&files, "quad.gltf").unwrap();
    assert_eq!(s.textures.len(), 2);
    assert_eq!((s.textures[0].width, s.textures[0].height, &s.textures[0].texels[..]), (4, 4, &rgba[..]));
    let Material::Pbr(p) = &s.materials[0] else { panic!("{:?}", s.materials[0]) };
    assert_eq!(
        (p.base_texture, p.metal_rough_texture, p.normal_texture, p.normal_scale, p.alpha_cutoff, p.roughness),
        (Some(0), Some(0), Some(1), 0.5, Some(0.25), 0.7)
    );
    assert_eq!(s.shading.len(), 2);
    assert_eq!(s.shading[0].normals, [[0.0, 0.0, 1.0]; 3]);
    // The images are among what a submission ships.
    let read: Vec<String> = files.read_files().into_keys().collect();
    assert_eq!(read, ["normal.png", "quad.gltf", "wood.png"]);
    let s8 = RenderSettings { width: 16, height: 16, spp: 2, max_bounces: 2, tile: 16 };
    assert!(render(&s, &s8, Backend::Cpu).rgb.iter().flatten().all(|v| v.is_finite()));

    put("huge.png", &png_header(100_000, 100_000));
    put("big.png", &png_header(16_000, 16_000));
    put("noise.png", b"this is not an image");
    let base = |img: &str| {
        let name = format!("{img}.gltf");
        let json = textured_gltf(
            r#"{"pbrMetallicRoughness":{"baseColorTexture":{"index":0}}}"#,
            &format!(r#"{{"uri":"{img}"}}"#),
        );
        put(&name, json.as_bytes());
        let t = std::time::Instant::now();
        let e = load::load_from(&load::Dir::new(dir.path()), &name).err().map(|e| e.to_string());
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{img}: {:?}", t.elapsed());
        e.unwrap_or_else(|| panic!("{img} loaded"))
    };
    for (img, needle) in [
        ("huge.png", "100000x100000 texels: sides from 1 to 16384"),
        ("big.png", "over the 536870912-byte limit"),
        ("noise.png", "not a PNG or JPEG"),
        ("gone.png", "gone.png: file not found"),
    ] {
        let e = base(img);
        assert!(e.contains(needle) && e.contains("image 0"), "{img}: {e}");
    }
}

/// Issue #18's must-show scene (`testdata/gltf/showcase.glb`, built by
/// `scripts/fixtures/gltf_scene.py`: textures, a normal map, glass, GGX metal, a point light)
/// on wgpu against the CPU reference: every 8x8 sub-tile passes the spot check an honest
/// worker's tiles meet, and the 8-bit images agree but for rare pixels.
#[test]
fn wgpu_matches_the_cpu_reference_on_the_showcase() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../testdata/gltf");
    let mut scene = load::load_at(&load::Dir::new(&root), "showcase.glb", 12.0 / 24.0).unwrap();
    // lavapipe's SIMD lanes disagree with themselves under the point light (gpu.rs,
    // `on_hardware`): 12% of pixels off. On a software adapter the point light is left out
    // (`Auto` never renders there); on a hardware GPU the whole scene is compared.
    if ifx_render::gpu::adapter_summary("").is_ok_and(|a| a.class == "cpu") {
        scene.points.clear();
    }
    let s = RenderSettings { width: 64, height: 64, spp: 16, max_bounces: 6, tile: 32 };
    let (gpu, cpu) = (render(&scene, &s, Backend::Gpu), render(&scene, &s, Backend::Cpu));
    let mut failed = Vec::new();
    for sub in ifx_protocols::render::commit::sub_tiles(s.width, s.height) {
        let theirs = ifx_protocols::render::commit::encode_pixels(&gpu.crop(sub));
        let at = ifx_render::Tile { x: 0, y: 0, w: sub.w, h: sub.h };
        if let Err(e) = ifx_protocols::render::commit::compare(at, &theirs, &cpu.crop(sub)) {
            failed.push(format!("{sub:?}: {e}"));
        }
    }
    let equal = gpu.rgb.iter().zip(&cpu.rgb).filter(|(a, b)| a == b).count() as f64 / gpu.rgb.len() as f64;
    eprintln!(
        "showcase: {:.2}% of pixels identical in 8 bits, {:.2}% bit for bit",
        same8(&gpu, &cpu) * 100.0,
        equal * 100.0
    );
    assert!(failed.is_empty(), "{} sub-tiles fail the spot check: {failed:#?}", failed.len());
    assert!(same8(&gpu, &cpu) > 0.99, "{:.4}", same8(&gpu, &cpu));
}

/// A TOML scene names the same material: `type = "pbr"` with its factors (textures come from
/// glTF files only); an unknown field or a roughness past 1 is refused by name.
#[test]
fn a_toml_scene_takes_a_pbr_material() {
    let scene = |m: &str| {
        load::parse_inline_toml(&format!(
            "[camera]\nposition = [0.0, 1.0, 4.0]\nlook_at = [0.0, 0.0, 0.0]\nfov_deg = 40.0\n\
             [sky]\nhorizon = [1.0, 1.0, 1.0]\nzenith = [1.0, 1.0, 1.0]\n[materials]\ngold = {m}\n\
             [[spheres]]\ncenter = [0.0, 0.0, 0.0]\nradius = 1.0\nmaterial = \"gold\"\n"
        ))
    };
    let s = scene(r#"{ type = "pbr", base_color = [0.9, 0.6, 0.2], metallic = 1.0, roughness = 0.3 }"#).unwrap();
    assert_eq!(s.materials, [Material::Pbr(Pbr::plain([0.9, 0.6, 0.2], 1.0, 0.3))]);
    let e = scene(r#"{ type = "pbr", base_color = [1.0, 1.0, 1.0], shiny = 1.0 }"#).unwrap_err().to_string();
    assert!(e.contains("shiny"), "{e}");
    let e = scene(r#"{ type = "pbr", base_color = [1.0, 1.0, 1.0], roughness = 1.5 }"#).unwrap_err().to_string();
    assert!(e.contains("out-of-range"), "{e}");
}

/// Issue #18 item 2: `KHR_texture_transform` moves a material's UVs as glTF defines it, scale
/// then rotation then offset. The extension's own example (offset `[0, 1]`, rotation pi/2,
/// scale 1/2) shows "only the lower left quadrant of the source image, rotated clockwise 90
/// degrees": the quad's top-left corner (UV 0, 0) reads the image at (0, 1), its top-right
/// (1, 0) at (0, 0.5), so the quarter's left edge runs along the quad's top. The same
/// transform on all of a material's textures is applied once; different ones, a rotation
/// under a normal map (its tangent frame would turn), a UV set other than the first, or a
/// transform that is not numbers are refused by name.
#[test]
fn a_texture_transform_moves_the_uvs_as_gltf_defines() {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    put("wood.png", &png(1, 1, &[200, 100, 50, 255]));
    let load = |material: &str| {
        let json = textured_gltf(material, r#"{"uri":"wood.png"}"#);
        put("t.gltf", json.as_bytes());
        load::load_from(&load::Dir::new(dir.path()), "t.gltf").map_err(|e| e.to_string())
    };
    let spec_example =
        r#""extensions":{"KHR_texture_transform":{"offset":[0,1],"rotation":1.5707963,"scale":[0.5,0.5]}}"#;
    let s = load(&format!(
        r#"{{"pbrMetallicRoughness":{{"baseColorTexture":{{"index":0,{spec_example}}},"metallicRoughnessTexture":{{"index":0,{spec_example}}}}}}}"#
    ))
    .unwrap();
    // The quad's corners: (-1,-1) has UV (0, 1), (1,-1) (1, 1), (1, 1) (1, 0), (-1, 1) (0, 0).
    let want = |u: f32, v: f32| [0.5 * v, 1.0 - 0.5 * u];
    let mut seen = 0;
    for (t, sh) in s.triangles.iter().zip(&s.shading) {
        for k in 0..3 {
            let (x, y) = (t.v[k][0], t.v[k][1]);
            let uv = [(x + 1.0) / 2.0, (1.0 - y) / 2.0];
            let w = want(uv[0], uv[1]);
            assert!(
                (sh.uv[k][0] - w[0]).abs() < 1e-6 && (sh.uv[k][1] - w[1]).abs() < 1e-6,
                "{:?} at {uv:?}: {w:?}",
                sh.uv[k]
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    // Scale and offset alone, on a normal map too (read from the extension's JSON, which
    // gltf does not type): (u, v) -> (2u + 0.25, 3v - 0.5).
    let tiling = r#""extensions":{"KHR_texture_transform":{"offset":[0.25,-0.5],"scale":[2,3]}}"#;
    let s = load(&format!(
        r#"{{"pbrMetallicRoughness":{{"baseColorTexture":{{"index":0,{tiling}}}}},"normalTexture":{{"index":0,{tiling}}}}}"#
    ))
    .unwrap();
    let uvs: Vec<[f32; 2]> = s.shading.iter().flat_map(|sh| sh.uv).collect();
    assert!(uvs.contains(&[0.25, 2.5]) && uvs.contains(&[2.25, -0.5]), "{uvs:?}");
    for (material, needle) in [
        (
            format!(r#"{{"pbrMetallicRoughness":{{"baseColorTexture":{{"index":0,{spec_example}}}}},"normalTexture":{{"index":0}}}}"#),
            "different KHR_texture_transforms",
        ),
        (
            format!(r#"{{"pbrMetallicRoughness":{{"baseColorTexture":{{"index":0,{spec_example}}}}},"normalTexture":{{"index":0,{spec_example}}}}}"#),
            "a normal map under a rotated or mirrored KHR_texture_transform",
        ),
        (
            r#"{"pbrMetallicRoughness":{"baseColorTexture":{"index":0,"extensions":{"KHR_texture_transform":{"texCoord":1}}}}}"#.into(),
            "a UV set other than the first",
        ),
        (
            r#"{"normalTexture":{"index":0,"extensions":{"KHR_texture_transform":{"scale":[1]}}}}"#.into(),
            "not a number of the right shape",
        ),
        (
            r#"{"normalTexture":{"index":0,"extensions":{"KHR_texture_transform":{"rotation":"half"}}}}"#.into(),
            "not a number of the right shape",
        ),
    ] {
        let e = load(&material).err().unwrap_or_else(|| panic!("{material} loaded"));
        assert!(e.contains(needle), "{material}: {e}");
    }
}

/// Issue #18 item 2: an emissive texture multiplies the emissive factor where glTF's sampling
/// puts it. (1) A floor that only emits, seen under a black sky, is its emission times the
/// texture (sRGB decoded, filtered), every 4x4 block within 2% of the prediction; upside down
/// it would be far off. (2) Light sampling reads it too: a diffuse floor lit by a small
/// emitter whose 1x1 texture is `c` renders as the same floor under an untextured emitter of
/// the emission times `c` (one emitter, so the light table's densities are the
/// same; equal but for the filter's rounding). (3) wgpu agrees with the CPU reference.
#[test]
fn an_emissive_texture_emits_where_its_uvs_put_it_and_light_sampling_sees_it() {
    let texels: Vec<u8> =
        (0..16u8).flat_map(|i| [20 + 15 * i, 240 - 14 * i, if i % 3 == 0 { 30 } else { 200 }, 255]).collect();
    let tex = Texture { width: 4, height: 4, wrap: [Wrap::Repeat; 2], texels: Arc::new(texels) };
    let mut glow = Pbr::plain([0.0; 3], 0.0, 1.0);
    glow.emission = [2.0, 2.0, 2.0];
    glow.emissive_texture = Some(0);
    let mut lit = floor(Material::Pbr(glow.clone()), vec![tex.clone()], [0.0, 1.0, 0.0]);
    lit.sky = Sky { horizon: [0.0; 3], zenith: [0.0; 3] };
    let size = 48u32;
    let s = RenderSettings { width: size, height: size, spp: 64, max_bounces: 2, tile: 48 };
    let img = render(&lit, &s, Backend::Cpu);
    let (worst, flipped_worst) = block_errors(&img, &tex, |_, t| t.map(|v| 2.0 * v));
    eprintln!(
        "emissive texture: worst block {:.2}% off glTF's sampling ({:.0}% upside down)",
        worst * 100.0,
        flipped_worst * 100.0
    );
    assert!(worst < 0.02 && flipped_worst > 0.2, "worst {worst}, upside down {flipped_worst}");
    let gpu = render(&lit, &s, Backend::Gpu);
    assert!(same8(&gpu, &img) > 0.99, "wgpu and CPU differ: {:.4}", same8(&gpu, &img));

    // (2) A diffuse floor under a small emitter facing down, textured or not.
    let c = [230u8, 140, 60];
    let lamp = |textured: bool| {
        let mut sc = floor(Material::Diffuse { albedo: [0.6; 3] }, Vec::new(), [0.0; 3]);
        sc.sky = Sky { horizon: [0.0; 3], zenith: [0.0; 3] };
        let mut m = Pbr::plain([0.0; 3], 0.0, 1.0);
        if textured {
            m.emission = [3.0; 3];
            m.emissive_texture = Some(0);
            sc.textures = vec![Texture {
                width: 1,
                height: 1,
                wrap: [Wrap::Repeat; 2],
                texels: Arc::new(vec![c[0], c[1], c[2], 255]),
            }];
        } else {
            // What the kernels compute: the factor times the texel through the sRGB table.
            m.emission = c.map(|v| 3.0 * (srgb(v) as f32));
        }
        sc.materials.push(Material::Pbr(m));
        let y = 1.2;
        let p = |x: f32, z: f32| [x, y, z];
        for v in [[p(-0.3, -0.3), p(0.3, -0.3), p(0.3, 0.3)], [p(-0.3, -0.3), p(0.3, 0.3), p(-0.3, 0.3)]] {
            sc.triangles.push(Triangle { v, material: 1 });
            sc.shading.push(Shading { normals: [[0.0, -1.0, 0.0]; 3], uv: [[0.5, 0.5]; 3] });
        }
        sc
    };
    let s = RenderSettings { width: 32, height: 32, spp: 16, max_bounces: 3, tile: 32 };
    let (a, b) = (render(&lamp(true), &s, Backend::Cpu), render(&lamp(false), &s, Backend::Cpu));
    let floor_mean = mean_where(&a, |x, y| !(10..22).contains(&x) || !(10..22).contains(&y));
    assert!(floor_mean.iter().all(|v| *v > 0.001), "the floor is lit: {floor_mean:?}");
    // Equal but for the rounding of the filter (four equal texels blended in f32).
    let worst = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .flat_map(|(p, q)| (0..3).map(move |k| (p[k] - q[k]).abs() / q[k].max(1e-6)))
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "an emitter's texture changes what light sampling finds: {worst}");
}

/// Issue #18 item 3, as Cycles renders normal maps: a diffuse lobe whose normal a map turns
/// away from the surface's fades light that arrives low over the surface (Chiang et al.'s bump
/// shadowing, `-g^3 + g^2 + g` with `g = (n.l) / ((n_map.l)(n.n_map))`), and is unchanged for
/// light from where the term is 1. A floor under one directional light and nothing else
/// (so every pixel is exact): with the map tilted 30 degrees towards +X, it equals the floor
/// whose vertex normals are so tilted (no map, no fading) under light from straight above, and
/// under light 60 degrees off the vertical towards +X its diffuse part (from a black-based
/// twin, which has the same specular part) is that floor's times the term, at every pixel.
#[test]
fn a_normal_map_fades_light_from_low_over_the_surface_as_cycles_does() {
    use ifx_protocols::render::scene::DirectionalLight;
    let tilt = 30.0f32.to_radians();
    let nt = [tilt.sin(), tilt.cos(), 0.0];
    // T = +X, B = -Z, N = +Y: a map texel of (sin, 0, cos) in tangent space, as 8 bits.
    let enc = |x: f32| ((x + 1.0) / 2.0 * 255.0).round() as u8;
    let map = Texture {
        width: 1,
        height: 1,
        wrap: [Wrap::Repeat; 2],
        texels: Arc::new(vec![enc(tilt.sin()), enc(0.0), enc(tilt.cos()), 255]),
    };
    // What the map encodes after 8-bit rounding, as `surface` decodes it.
    let dec = |c: u8| 2.0 * c as f32 / 255.0 - 1.0;
    let k = [dec(enc(tilt.sin())), dec(enc(tilt.cos())), -dec(enc(0.0))];
    let len = k.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = k.map(|x| x / len);
    assert!((n[0] - nt[0]).abs() < 0.01 && (n[1] - nt[1]).abs() < 0.01);
    let scene = |base: f32, mapped: bool, from: f32| {
        let mut m = Pbr::plain([base; 3], 0.0, 0.5);
        let (textures, normal) = if mapped {
            m.normal_texture = Some(0);
            (vec![map.clone()], [0.0, 1.0, 0.0])
        } else {
            (Vec::new(), n)
        };
        let mut sc = floor(Material::Pbr(m), textures, normal);
        sc.sky = Sky { horizon: [0.0; 3], zenith: [0.0; 3] };
        let a = from.to_radians();
        sc.directional = vec![DirectionalLight { direction: [-a.sin(), -a.cos(), 0.0], irradiance: [2.0; 3] }];
        sc
    };
    let s = RenderSettings { width: 24, height: 24, spp: 4, max_bounces: 2, tile: 24 };
    let img = |base: f32, mapped: bool, from: f32| render(&scene(base, mapped, from), &s, Backend::Cpu);
    // From straight above: g = 1 / cos^2(30 deg) > 1, no fading.
    let (a, b) = (img(0.8, true, 0.0), img(0.8, false, 0.0));
    let same = a.rgb.iter().zip(&b.rgb).all(|(p, q)| (p[0] - q[0]).abs() <= 1e-5 * q[0]);
    assert!(same && a.rgb[0][0] > 0.0, "{:?} against {:?}", a.rgb[0], b.rgb[0]);
    // From 60 degrees towards +X: l = (sin 60, cos 60, 0).
    let from = 60.0f32.to_radians();
    let l = [from.sin(), from.cos(), 0.0];
    let dot = |u: [f32; 3], v: [f32; 3]| u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    let g = dot([0.0, 1.0, 0.0], l) / (dot(n, l) * n[1]);
    let term = -g * g * g + g * g + g;
    assert!(g < 1.0 && term < 0.99, "g {g}, term {term}");
    let (map_w, map_k, tilted_w, tilted_k) =
        (img(0.8, true, 60.0), img(0.0, true, 60.0), img(0.8, false, 60.0), img(0.0, false, 60.0));
    let mut worst = 0.0f32;
    for i in 0..map_w.rgb.len() {
        let diffuse_map = map_w.rgb[i][0] - map_k.rgb[i][0];
        let diffuse_tilted = tilted_w.rgb[i][0] - tilted_k.rgb[i][0];
        assert!(
            (map_k.rgb[i][0] - tilted_k.rgb[i][0]).abs() <= 1e-5 * tilted_k.rgb[i][0].max(1e-6),
            "specular parts differ"
        );
        worst = worst.max((diffuse_map / (diffuse_tilted * term) - 1.0).abs());
    }
    eprintln!("bump shadowing: g {g:.4}, term {term:.4}; worst pixel {:.5}% off", worst * 100.0);
    assert!(worst < 1e-4, "the diffuse part is {:.4}% off the term", worst * 100.0);
    let gpu = render(&scene(0.8, true, 60.0), &s, Backend::Gpu);
    assert!(same8(&gpu, &map_w) > 0.99, "wgpu and CPU differ: {:.4}", same8(&gpu, &map_w));
}
