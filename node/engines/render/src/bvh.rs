//! A bounding volume hierarchy over triangles: median split on the longest centroid axis,
//! leaves of at most 4 triangles, flattened depth-first (left child follows its parent, the
//! node stores the right child's index) so both kernels walk it with a small stack.

use bytemuck::{Pod, Zeroable};

use ifx_protocols::render::scene::Triangle;

/// Leaf size.
const LEAF: usize = 4;
/// Deepest the tree gets (the kernels' traversal stack is 64 deep; a depth-d tree needs d).
pub const MAX_DEPTH: usize = 48;

/// One node (32 bytes). A leaf has `count > 0` triangles from `left_or_first`; an inner node has
/// `count == 0`, its left child at the next index and its right child at `left_or_first`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BvhNode {
    pub min: [f32; 3],
    pub left_or_first: u32,
    pub max: [f32; 3],
    pub count: u32,
}

/// The flattened tree and the triangle order its leaves refer to.
pub struct Bvh {
    pub nodes: Vec<BvhNode>,
    pub order: Vec<u32>,
}

fn bounds(tris: &[Triangle], idx: &[u32]) -> ([f32; 3], [f32; 3]) {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for &i in idx {
        for v in &tris[i as usize].v {
            for k in 0..3 {
                lo[k] = lo[k].min(v[k]);
                hi[k] = hi[k].max(v[k]);
            }
        }
    }
    (lo, hi)
}

fn centroid(t: &Triangle, k: usize) -> f32 {
    (t.v[0][k] + t.v[1][k] + t.v[2][k]) / 3.0
}

impl Bvh {
    /// Builds the tree (an empty scene gets one empty leaf).
    pub fn build(tris: &[Triangle]) -> Self {
        let mut order: Vec<u32> = (0..tris.len() as u32).collect();
        let mut nodes = Vec::with_capacity(2 * tris.len() / LEAF + 1);
        Self::node(tris, &mut order, 0, tris.len(), 0, &mut nodes);
        Self { nodes, order }
    }

    fn node(tris: &[Triangle], order: &mut [u32], start: usize, end: usize, depth: usize, nodes: &mut Vec<BvhNode>) {
        let (min, max) = if start == end { ([0.0; 3], [0.0; 3]) } else { bounds(tris, &order[start..end]) };
        let me = nodes.len();
        nodes.push(BvhNode { min, max, left_or_first: start as u32, count: (end - start) as u32 });
        if end - start <= LEAF || depth >= MAX_DEPTH {
            return;
        }
        let axis = (0..3).max_by(|&a, &b| (max[a] - min[a]).total_cmp(&(max[b] - min[b]))).unwrap_or(0);
        let mid = (start + end) / 2;
        order[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
            centroid(&tris[a as usize], axis).total_cmp(&centroid(&tris[b as usize], axis))
        });
        nodes[me].count = 0;
        Self::node(tris, order, start, mid, depth + 1, nodes);
        nodes[me].left_or_first = nodes.len() as u32;
        Self::node(tris, order, mid, end, depth + 1, nodes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_triangle_is_in_exactly_one_leaf_inside_its_bounds() {
        let tris: Vec<Triangle> = (0..1000)
            .map(|i| {
                let x = (i * 37 % 101) as f32;
                let y = (i * 53 % 97) as f32;
                Triangle { v: [[x, y, 0.0], [x + 1.0, y, 0.5], [x, y + 1.0, 1.0]], material: 0 }
            })
            .collect();
        let bvh = Bvh::build(&tris);
        let mut seen = vec![0; tris.len()];
        for n in bvh.nodes.iter().filter(|n| n.count > 0) {
            for &t in &bvh.order[n.left_or_first as usize..(n.left_or_first + n.count) as usize] {
                seen[t as usize] += 1;
                for v in &tris[t as usize].v {
                    for (k, x) in v.iter().enumerate() {
                        assert!(n.min[k] <= *x && *x <= n.max[k]);
                    }
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert!(Bvh::build(&[]).nodes.len() == 1);
    }
}
