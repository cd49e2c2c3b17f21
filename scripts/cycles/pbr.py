"""glTF's metallic-roughness materials, Blender to glTF to ifx, beside Cycles (issue #18 items 2
and 3): the must-show scene of scripts/fixtures/gltf_scene.py (`showcase.glb`: a tiled floor
with a base colour texture and a normal map, a brushed-metal box of roughness 0.35, white and
coloured rough dielectrics, a glass ball, the lamp and a 20 W point light), as Blender builds it
at frame 1. Cycles renders the Blender scene itself (Principled BSDF, its image textures, its
normal map node); ifx renders Blender's glTF export of it on its CPU reference. Both at the same
size, samples and bounces.

It prints and writes (with --out) the mean radiance per channel of both, their relative
difference, and block means over a grid with each block's difference against its noise;
`--out` also gets the two images and their difference as PNGs (pbr_cycles.png, pbr_ifx.png,
pbr_difference.png). Exit status 0 when every channel's mean is within 3%.

Cycles gets float (linear) copies of the 8-bit sRGB textures, so that it filters them in
linear light as glTF and ifx do (`linear_textures`; `--srgb-filtering` leaves Cycles its own
way). `--variant` changes the scene before export, to take a difference apart (`+` joins several):
`nopoint` (no point light), `plainfloor` (an untextured floor), `floortexture` and
`floornormals` (the floor with only its colour texture, or only its normal map), `boxdiel` (the tall box a
rough dielectric of the same colour), `boxrough` (the metal at roughness 1); its json is
pbr_VARIANT.json (`+` as `_`), and no images are written.

    scripts/cycles/compare.sh builds ifx and installs bpy; then
    ~/.cache/ifx/bpy-venv/bin/python scripts/cycles/pbr.py --ifx ~/.cache/ifx/target/debug/ifx --out docs/cycles
"""

import argparse
import json
import os
import sys
import tempfile

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
import compare  # noqa: E402
import gltf_scene  # noqa: E402


def linear_textures():
    """Gives Cycles float (scene-linear) copies of the scene's 8-bit sRGB textures. Cycles
    filters an 8-bit sRGB texture before it decodes it (`svm_image_texture`: interpolate,
    then `color_srgb_to_linear`); glTF, GPUs' sRGB formats and ifx decode, then filter. On
    the showcase's tiles that alone makes the texture's mean 4.0-4.7% darker in Cycles, most
    of it where grout meets tile. A float texture Cycles filters in linear light, so the two
    renderers see the same texture (the glTF export, already written, keeps the 8-bit one)."""
    for img in list(bpy.data.images):
        if img.is_float or img.colorspace_settings.name != "sRGB" or img.size[0] == 0:
            continue
        w, h = img.size
        px = np.array(img.pixels[:], dtype=np.float64).reshape(-1, 4)
        rgb = px[:, :3]
        px[:, :3] = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        lin = bpy.data.images.new(img.name + " (linear)", w, h, alpha=True, float_buffer=True)
        lin.colorspace_settings.name = "Linear Rec.709"
        lin.pixels = px.ravel().tolist()
        for m in bpy.data.materials:
            if m.node_tree:
                for node in m.node_tree.nodes:
                    if node.type == "TEX_IMAGE" and node.image == img:
                        node.image = lin


def vary(variant):
    """Changes the built scene for --variant (see the module's doc)."""
    def material(obj, mat):
        o = bpy.data.objects[obj]
        o.data.materials.clear()
        o.data.materials.append(mat)
    for v in variant.split("+"):
        if v == "nopoint":
            bpy.data.objects.remove(bpy.data.objects["point"], do_unlink=True)
        elif v == "plainfloor":
            material("floor", gltf_scene.principled("plain", (0.5, 0.4, 0.3), roughness=0.6))
        elif v in ("floortexture", "floornormals"):
            # The floor with only its colour texture, or only its normal map.
            m = bpy.data.objects["floor"].active_material
            nodes, links = m.node_tree.nodes, m.node_tree.links
            p = nodes["Principled BSDF"]
            if v == "floortexture":
                for link in list(p.inputs["Normal"].links):
                    links.remove(link)
            else:
                for link in list(p.inputs["Base Color"].links):
                    links.remove(link)
                p.inputs["Base Color"].default_value = (0.5, 0.4, 0.3, 1.0)
        elif v == "boxdiel":
            material("tall", gltf_scene.principled("brushed", (0.9, 0.9, 0.92), metallic=0.0, roughness=0.35))
        elif v == "boxrough":
            material("tall", gltf_scene.principled("brushed", (0.9, 0.9, 0.92), metallic=1.0, roughness=1.0))
        else:
            raise SystemExit(f"unknown variant {v!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ifx", required=True)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--spp", type=int, default=512)
    ap.add_argument("--bounces", type=int, default=16)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None, help="write pbr.json and the images here")
    ap.add_argument("--variant", default=None, help="change the scene first (see above)")
    ap.add_argument("--srgb-filtering", action="store_true",
                    help="leave Cycles its 8-bit sRGB textures (it filters them before decoding)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ifx-pbr-")
    # Builds the scene, keys its animation, leaves it at frame 1 and exports showcase.glb.
    gltf_scene.main_anim(tmp, showcase=True)
    glb = os.path.join(tmp, "showcase.glb")
    if a.variant:
        vary(a.variant)
        glb = os.path.join(tmp, "variant.glb")
        gltf_scene.export_glb(glb, export_lights=True)
    if not a.srgb_filtering:
        linear_textures()
    img_c, t_c = compare.cycles(a.size, a.spp, a.bounces, a.threads, os.path.join(tmp, "cycles.exr"), 0)
    print(f"cycles: {a.spp} spp in {t_c:.1f} s", flush=True)
    img_i, t_i = compare.ifx(a.ifx, glb, a.size, a.spp, a.bounces, os.path.join(tmp, "ifx.png"))
    print(f"ifx: {a.spp} spp in {t_i:.1f} s", flush=True)
    mean_c, mean_i = img_c.mean(axis=(0, 1)), img_i.mean(axis=(0, 1))
    rel = (mean_i - mean_c) / mean_c
    g, h = a.grid, a.size // a.grid
    bc, bi = compare.blocks(img_c, g), compare.blocks(img_i, g)
    diff = img_i - img_c
    # Each block's difference of means against the noise of that difference (from its pixels).
    sd = np.array([[np.sqrt(np.mean(diff[i * h:(i + 1) * h, j * h:(j + 1) * h] ** 2, axis=(0, 1)) / (h * h))
                    for j in range(g)] for i in range(g)])
    block_rel = (bi - bc) / np.maximum(bc, 1e-6)
    block_z = np.abs(bi - bc) / np.maximum(sd, 1e-9)
    res = {
        "blender": bpy.app.version_string, "size": a.size, "spp": a.spp, "bounces": a.bounces,
        "threads": a.threads, "cycles_secs": t_c, "ifx_secs": t_i,
        "cycles_textures": "8-bit sRGB, filtered before decoding" if a.srgb_filtering else "float, linear",
        "mean_cycles": mean_c.tolist(), "mean_ifx": mean_i.tolist(), "channel_rel_diff": rel.tolist(),
        "grid": g, "block_rel_diff": np.round(block_rel.mean(axis=2), 4).tolist(),
        "block_rel_diff_max": float(np.abs(block_rel).max()), "block_z_max": float(block_z.max()),
        "block_rel_diff_rgb": np.round(block_rel, 4).tolist(), "block_z": np.round(block_z.max(axis=2), 1).tolist(),
    }
    print(json.dumps(res, indent=1))
    if a.out and a.variant:
        res["variant"] = a.variant
        with open(os.path.join(a.out, f"pbr_{a.variant.replace('+', '_')}.json"), "w") as f:
            json.dump(res, f, indent=1)
    elif a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "pbr.json"), "w") as f:
            json.dump(res, f, indent=1)
        compare.write_png(os.path.join(a.out, "pbr_cycles.png"), compare.srgb8(img_c))
        compare.write_png(os.path.join(a.out, "pbr_ifx.png"), compare.srgb8(img_i))
        d = np.abs(diff).mean(axis=2)
        scale = max(float(np.percentile(d, 99.5)), 1e-6)
        heat = np.clip(d / scale, 0, 1)
        compare.write_png(os.path.join(a.out, "pbr_difference.png"),
                          np.stack([heat * 255, heat * 128, (1 - heat) * 64], axis=2).astype(np.uint8))
    ok = bool(np.all(np.abs(rel) <= 0.03))
    print("mean radiance per channel within 3%:", "yes" if ok else "NO")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
