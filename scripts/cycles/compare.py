"""ifx's CPU reference beside Blender Cycles on a scene built and exported by Blender itself
(issue #18 item 3). Run through scripts/cycles/compare.sh, which installs `bpy` (Blender as a
Python module) and builds ifx.

1. Builds a Cornell box in Blender: diffuse walls (red, green, white), two boxes, an emissive
   quad under the ceiling, a camera. Exports each material's objects as a glTF binary and
   writes the ifx scene (TOML) that names them, with the same camera, materials and a black sky.
2. Renders it with Cycles on the CPU (box pixel filter, no clamping, no denoising, no adaptive
   sampling, the Standard view; the linear EXR is read) and with `ifx render --backend cpu`,
   both on the same threads, at matched bounces.
3. Compares: mean radiance per channel of the two references, block means on a grid (a
   structured difference shows there), and the noise of each at equal time (RMSE against its
   own high-sample reference, and against the other's).
Writes the images (sRGB PNGs and a difference map) and `results.json` into the output folder.
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import bpy
import numpy as np

# Blender is Z-up; glTF (and ifx's scene files) Y-up: (x, y, z) -> (x, z, -y), as the exporter.
def to_yup(v):
    return [v[0], v[2], -v[1]]


WHITE, RED, GREEN = (0.73, 0.73, 0.73), (0.63, 0.065, 0.05), (0.14, 0.45, 0.09)
LIGHT = (12.0, 9.0, 4.5)
CAMERA = {"location": (0.0, -3.6, 1.0), "look_at": (0.0, 0.0, 1.0), "fov_deg": 40.0}


def material(name, diffuse=None, emission=None):
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    nt = m.node_tree
    nt.nodes.clear()
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    if emission is not None:
        e = nt.nodes.new("ShaderNodeEmission")
        e.inputs["Color"].default_value = (emission[0] / 12.0, emission[1] / 12.0, emission[2] / 12.0, 1.0)
        e.inputs["Strength"].default_value = 12.0
        nt.links.new(e.outputs["Emission"], out.inputs["Surface"])
    else:
        d = nt.nodes.new("ShaderNodeBsdfDiffuse")
        d.inputs["Color"].default_value = (*diffuse, 1.0)
        d.inputs["Roughness"].default_value = 0.0  # Lambertian
        nt.links.new(d.outputs["BSDF"], out.inputs["Surface"])
    return m


def plane(name, location, size, rotation, mat):
    bpy.ops.mesh.primitive_plane_add(size=size, location=location, rotation=rotation)
    o = bpy.context.active_object
    o.name = name
    o.data.materials.append(mat)
    return o


def box(name, location, dims, yaw_deg, mat):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=location, rotation=(0.0, 0.0, math.radians(yaw_deg)))
    o = bpy.context.active_object
    o.name = name
    o.scale = dims
    o.data.materials.append(mat)
    return o


def build():
    """The scene in Blender; its objects by ifx material name."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    white, red, green = material("white", WHITE), material("red", RED), material("green", GREEN)
    light = material("light", emission=LIGHT)
    h = math.pi / 2
    groups = {
        "white": [
            plane("floor", (0, 0, 0), 2.0, (0, 0, 0), white),
            plane("ceiling", (0, 0, 2), 2.0, (math.pi, 0, 0), white),
            plane("back", (0, 1, 1), 2.0, (h, 0, 0), white),
            box("tall", (-0.35, 0.3, 0.6), (0.6, 0.6, 1.2), 20.0, white),
            box("short", (0.38, -0.3, 0.3), (0.6, 0.6, 0.6), -18.0, white),
        ],
        "red": [plane("left", (-1, 0, 1), 2.0, (0, h, 0), red)],
        "green": [plane("right", (1, 0, 1), 2.0, (0, -h, 0), green)],
        "light": [plane("lamp", (0, 0, 1.98), 0.5, (math.pi, 0, 0), light)],
    }
    cam = bpy.data.cameras.new("camera")
    cam.sensor_fit = "VERTICAL"
    cam.angle_y = math.radians(CAMERA["fov_deg"])
    co = bpy.data.objects.new("camera", cam)
    bpy.context.scene.collection.objects.link(co)
    co.location = CAMERA["location"]
    co.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looking along +Y, up +Z
    bpy.context.scene.camera = co
    world = bpy.data.worlds.new("black")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    bpy.context.scene.world = world
    return groups


def export(groups, folder):
    """One glTF binary per material, and the ifx scene naming them."""
    os.makedirs(folder, exist_ok=True)
    for name, objs in groups.items():
        bpy.ops.object.select_all(action="DESELECT")
        for o in objs:
            o.select_set(True)
        bpy.ops.export_scene.gltf(
            filepath=os.path.join(folder, f"{name}.glb"),
            export_format="GLB",
            use_selection=True,
            export_apply=True,
            export_yup=True,
            export_materials="NONE",
            export_cameras=False,
            export_lights=False,
        )
    fmt = lambda v: "[" + ", ".join(f"{x:.6g}" for x in v) + "]"
    lines = [
        "# Built and exported by scripts/cycles/compare.py (Blender's glTF exporter); do not edit.",
        "[camera]",
        f"position = {fmt(to_yup(CAMERA['location']))}",
        f"look_at = {fmt(to_yup(CAMERA['look_at']))}",
        "up = [0.0, 1.0, 0.0]",
        f"fov_deg = {CAMERA['fov_deg']}",
        "[sky]",
        "horizon = [0.0, 0.0, 0.0]",
        "zenith = [0.0, 0.0, 0.0]",
        "[materials]",
        f'white = {{ type = "diffuse", albedo = {fmt(WHITE)} }}',
        f'red = {{ type = "diffuse", albedo = {fmt(RED)} }}',
        f'green = {{ type = "diffuse", albedo = {fmt(GREEN)} }}',
        f'light = {{ type = "emissive", emission = {fmt(LIGHT)} }}',
    ]
    for name in groups:
        lines += ["[[meshes]]", f'path = "{name}.glb"', f'material = "{name}"']
    path = os.path.join(folder, "scene.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def cycles(size, spp, bounces, threads, out, seed):
    """Renders with Cycles; (linear RGB rows top to bottom, seconds)."""
    s = bpy.context.scene
    s.render.engine = "CYCLES"
    c = s.cycles
    c.device = "CPU"
    c.samples = spp
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.pixel_filter_type = "BOX"
    c.filter_width = 1.0
    c.sample_clamp_direct = 0.0
    c.sample_clamp_indirect = 0.0
    # Cycles blurs glossy reflections seen after a diffuse bounce by default (Filter Glossy 1):
    # biased, and ifx does not.
    c.blur_glossy = 0.0
    # ifx's `bounces` counts the surfaces a path meets, the light included; Cycles counts the
    # bounces between them.
    c.max_bounces = c.diffuse_bounces = bounces - 2
    c.seed = seed
    s.render.threads_mode = "FIXED"
    s.render.threads = threads
    s.render.resolution_x = s.render.resolution_y = size
    s.render.resolution_percentage = 100
    s.render.image_settings.file_format = "OPEN_EXR"
    s.render.image_settings.color_depth = "32"
    s.render.filepath = out
    t = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    secs = time.perf_counter() - t
    img = bpy.data.images.load(out)
    px = np.array(img.pixels[:], dtype=np.float64).reshape(size, size, 4)[::-1, :, :3]
    bpy.data.images.remove(img)
    return px, secs


def ifx(binary, scene, size, spp, bounces, out):
    """Renders with ifx's CPU reference; (linear RGB rows top to bottom, seconds)."""
    r = subprocess.run(
        [binary, "render", "--scene", scene, "--width", str(size), "--height", str(size), "--spp", str(spp),
         "--bounces", str(bounces), "--tile", "64", "--backend", "cpu", "--out", out],
        capture_output=True, text=True, check=True, env={**os.environ, "RUST_LOG": "warn"},
    )
    # "wrote A and B (WxH, N spp) in S s with ..."
    secs = float(r.stdout.split(" in ")[1].split(" s ")[0])
    img = bpy.data.images.load(out[:-4] + ".exr")
    px = np.array(img.pixels[:], dtype=np.float64).reshape(size, size, 4)[::-1, :, :3]
    bpy.data.images.remove(img)
    return px, secs


def srgb8(lin):
    lin = np.clip(lin, 0.0, 1.0)
    s = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return np.round(s * 255.0).astype(np.uint8)


def write_png(path, rgb8):
    h, w, _ = rgb8.shape
    raw = b"".join(b"\x00" + rgb8[y].tobytes() for y in range(h))
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def blocks(img, n):
    h = img.shape[0] // n
    return np.array([[img[i * h:(i + 1) * h, j * h:(j + 1) * h].mean(axis=(0, 1)) for j in range(n)] for i in range(n)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ifx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scene-dir", required=True)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--ref-spp", type=int, default=2048)
    ap.add_argument("--bounces", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ifx-cycles-")
    scene = export(build(), a.scene_dir)
    print(f"scene: {scene}", flush=True)
    # The equal-time renders draw other samples than the reference (ifx's samples follow the
    # scene's seed; Cycles', its own).
    reseeded = os.path.join(a.scene_dir, "scene-reseeded.toml")
    with open(scene) as f:
        text = f.read()
    with open(reseeded, "w") as f:
        f.write(text.replace("[camera]", "seed = 7\n[camera]", 1))

    ref_c, t_c = cycles(a.size, a.ref_spp, a.bounces, a.threads, os.path.join(tmp, "cycles_ref.exr"), 0)
    print(f"cycles reference: {a.ref_spp} spp in {t_c:.1f} s", flush=True)
    ref_i, t_i = ifx(a.ifx, scene, a.size, a.ref_spp, a.bounces, os.path.join(tmp, "ifx_ref.png"))
    print(f"ifx reference: {a.ref_spp} spp in {t_i:.1f} s", flush=True)

    mean_c, mean_i = ref_c.mean(axis=(0, 1)), ref_i.mean(axis=(0, 1))
    channel = (mean_i - mean_c) / mean_c
    grid = 6
    bc, bi = blocks(ref_c, grid), blocks(ref_i, grid)
    block_rel = (bi - bc) / np.maximum(bc, 1e-6)
    # The noise of each block's difference of means, from its own pixels' differences between
    # the two renders (independent samples; noise is not the same everywhere, the lamp's
    # surroundings are noisier): the structured difference is judged against it.
    h = a.size // grid
    diff = ref_i - ref_c
    block_sd = np.array([[np.sqrt(np.mean(diff[i * h:(i + 1) * h, j * h:(j + 1) * h] ** 2, axis=(0, 1)) / (h * h))
                          for j in range(grid)] for i in range(grid)])
    block_z = np.abs(bi - bc) / np.maximum(block_sd, 1e-9)

    equal = []
    for spp_c in (4, 16, 64):
        img_c, sc = cycles(a.size, spp_c, a.bounces, a.threads, os.path.join(tmp, f"cycles_{spp_c}.exr"), spp_c)
        # ifx at the samples that take it as long, from its reference's rate.
        spp_i = max(1, round(a.ref_spp * sc / t_i))
        img_i, si = ifx(a.ifx, reseeded, a.size, spp_i, a.bounces, os.path.join(tmp, f"ifx_{spp_i}.png"))
        row = {
            "cycles_spp": spp_c, "cycles_secs": sc, "ifx_spp": spp_i, "ifx_secs": si,
            "cycles_rmse_own_ref": rmse(img_c, ref_c), "ifx_rmse_own_ref": rmse(img_i, ref_i),
            "cycles_rmse_ifx_ref": rmse(img_c, ref_i), "ifx_rmse_cycles_ref": rmse(img_i, ref_c),
        }
        equal.append(row)
        print(json.dumps(row), flush=True)

    write_png(os.path.join(a.out, "cycles.png"), srgb8(ref_c))
    write_png(os.path.join(a.out, "ifx.png"), srgb8(ref_i))
    diff = np.abs(ref_i - ref_c).mean(axis=2)
    scale = max(float(np.percentile(diff, 99.5)), 1e-6)
    heat = np.clip(diff / scale, 0, 1)
    write_png(os.path.join(a.out, "difference.png"),
              np.stack([heat * 255, heat * 128, (1 - heat) * 64], axis=2).astype(np.uint8))
    results = {
        "blender": bpy.app.version_string,
        "size": a.size, "ref_spp": a.ref_spp, "bounces": a.bounces, "threads": a.threads,
        "cycles_ref_secs": t_c, "ifx_ref_secs": t_i,
        "mean_cycles": mean_c.tolist(), "mean_ifx": mean_i.tolist(),
        "channel_rel_diff": channel.tolist(),
        "block_rel_diff_max": float(np.abs(block_rel).max()),
        "block_z_max": float(block_z.max()),
        "grid": grid,
        "difference_png_scale": scale,
        "equal_time": equal,
    }
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    ok = bool(np.all(np.abs(channel) <= 0.03))
    print("mean radiance per channel within 3%:", "yes" if ok else "NO")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
