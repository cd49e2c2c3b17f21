// The IB benchmark kernel: a fixed-point (Q19.12 in i32) escape-time render, integer
// arithmetic only, so every backend computes the same bits as ib.rs. One invocation per pixel;
// the output is the iteration count.

struct Params {
    width: u32,
    height: u32,
    max_iter: u32,
    _pad: u32,
    x0: i32,
    y0: i32,
    step: i32,
    _pad2: i32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.width || gid.y >= params.height) {
        return;
    }
    let cr = params.x0 + i32(gid.x) * params.step;
    let ci = params.y0 + i32(gid.y) * params.step;
    var zr = 0;
    var zi = 0;
    var n = 0u;
    loop {
        if (n >= params.max_iter) {
            break;
        }
        let zr2 = (zr * zr) >> 12u;
        let zi2 = (zi * zi) >> 12u;
        if (zr2 + zi2 > (4 << 12u)) {
            break;
        }
        zi = ((2 * zr * zi) >> 12u) + ci;
        zr = zr2 - zi2 + cr;
        n = n + 1u;
    }
    counts[gid.y * params.width + gid.x] = n;
}
