"""A point light, Blender to glTF to ifx, beside Cycles (issue #18 item 2): the Cornell box of
compare.py lit by one point light instead of its lamp, exported by Blender's glTF exporter
with the light (KHR_lights_punctual, its "standard" lighting mode: candela = watts / 4 pi x
683) and loaded by ifx as a whole scene. Cycles renders the same Blender scene. The mean
radiance per channel must agree within 3%: that checks the chain of units (watts, candela,
ifx's watts per steradian), the inverse-square law and the shadow rays.

With --sun the light is a sun instead (glTF's directional light: lux = W/m^2 x 683), of zero
angle, shining in through the box's open front from behind the camera, down and to the side:
the same check of units, cosines and parallel shadows (writes sun_light.json).

    scripts/cycles/compare.sh builds ifx and installs bpy; then
    ~/.cache/ifx/bpy-venv/bin/python scripts/cycles/point_light.py --ifx ~/.cache/ifx/target/debug/ifx
"""

import argparse
import json
import os
import sys
import tempfile

import bpy
import mathutils
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
import compare  # noqa: E402
import gltf_scene  # noqa: E402

WATTS = 60.0
AT = (0.2, 0.1, 1.5)  # Blender's Z-up coordinates
SUN_IRRADIANCE = 3.0  # W/m^2
SUN_DIRECTION = (0.3, 0.8, -0.5)  # the way its light travels, Blender's coordinates


def build(sun=False):
    """The box and the light (a point or a sun); the objects by material name."""
    groups = compare.build()
    mats = {
        "white": gltf_scene.principled("white", compare.WHITE),
        "red": gltf_scene.principled("red", compare.RED),
        "green": gltf_scene.principled("green", compare.GREEN),
    }
    for o in groups.pop("light"):
        bpy.data.objects.remove(o, do_unlink=True)
    for name, objs in groups.items():
        for o in objs:
            o.data.materials.clear()
            o.data.materials.append(mats[name])
    if sun:
        lamp = bpy.data.lights.new("sun", type="SUN")
        lamp.energy = SUN_IRRADIANCE
        lamp.angle = 0.0  # parallel light
        lo = bpy.data.objects.new("sun", lamp)
        # A sun shines down its local -Z.
        lo.rotation_mode = "QUATERNION"
        lo.rotation_quaternion = mathutils.Vector(SUN_DIRECTION).to_track_quat("-Z", "Y")
        lo.location = (0.0, -3.0, 3.0)
    else:
        lamp = bpy.data.lights.new("point", type="POINT")
        lamp.energy = WATTS
        lamp.shadow_soft_size = 0.0  # a true point
        lo = bpy.data.objects.new("point", lamp)
        lo.location = AT
    bpy.context.scene.collection.objects.link(lo)
    return groups


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ifx", required=True)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--spp", type=int, default=1024)
    ap.add_argument("--bounces", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None, help="write point_light.json (sun_light.json) here")
    ap.add_argument("--sun", action="store_true", help="a sun (directional light) instead of the point")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ifx-point-")
    build(a.sun)
    glb = os.path.join(tmp, "point.glb")
    bpy.ops.export_scene.gltf(filepath=glb, export_format="GLB", export_yup=True, export_cameras=True,
                              export_lights=True)
    # Cycles renders the Principled BSDF the glTF was exported from, as ifx renders its export
    # (glTF's metallic-roughness: a rough specular layer over the base colour).
    img_c, t_c = compare.cycles(a.size, a.spp, a.bounces, a.threads, os.path.join(tmp, "cycles.exr"), 0)
    img_i, t_i = compare.ifx(a.ifx, glb, a.size, a.spp, a.bounces, os.path.join(tmp, "ifx.png"))
    mean_c, mean_i = img_c.mean(axis=(0, 1)), img_i.mean(axis=(0, 1))
    rel = (mean_i - mean_c) / mean_c
    light = {"sun_irradiance": SUN_IRRADIANCE, "sun_direction": SUN_DIRECTION} if a.sun else {"watts": WATTS}
    res = {"blender": bpy.app.version_string, **light, "size": a.size, "spp": a.spp,
           "cycles_secs": t_c, "ifx_secs": t_i, "mean_cycles": mean_c.tolist(), "mean_ifx": mean_i.tolist(),
           "channel_rel_diff": rel.tolist()}
    print(json.dumps(res, indent=1))
    if a.out:
        with open(os.path.join(a.out, "sun_light.json" if a.sun else "point_light.json"), "w") as f:
            json.dump(res, f, indent=1)
        name = "sun" if a.sun else "point"
        compare.write_png(os.path.join(a.out, f"{name}_cycles.png"), compare.srgb8(img_c))
        compare.write_png(os.path.join(a.out, f"{name}_ifx.png"), compare.srgb8(img_i))
    ok = bool(np.all(np.abs(rel) <= 0.03))
    print("mean radiance per channel within 3%:", "yes" if ok else "NO")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
