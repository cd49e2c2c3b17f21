//! How a worker can fake a render (for the detection tests and the testnet's cheaters): each
//! mode turns what an honest worker could compute into what a cheater sends instead.

use crate::render::{Image, RenderError, RenderSettings, Scene};

/// A cheat mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheatMode {
    /// One grey for every pixel.
    Constant,
    /// Uniform random bytes.
    WhiteNoise,
    /// The image of an earlier challenge, sent again.
    OldTile,
    /// A quarter-resolution render of the watermarked scene, upscaled.
    QuarterRes,
    /// The scene rendered without the watermark.
    NoWatermark,
    /// An honest render with 25% of its pixels replaced by made-up values.
    Fake25,
}

impl CheatMode {
    /// Every mode.
    pub const ALL: [CheatMode; 6] = [
        CheatMode::Constant,
        CheatMode::WhiteNoise,
        CheatMode::OldTile,
        CheatMode::QuarterRes,
        CheatMode::NoWatermark,
        CheatMode::Fake25,
    ];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            CheatMode::Constant => "constant",
            CheatMode::WhiteNoise => "white-noise",
            CheatMode::OldTile => "old-tile",
            CheatMode::QuarterRes => "quarter-res",
            CheatMode::NoWatermark => "no-watermark",
            CheatMode::Fake25 => "fake-25",
        }
    }
}

crate::named_mode!(CheatMode, "image cheat mode");

/// How a worker answers challenges: honestly, or in a cheat mode (tests and the testnet; set by
/// `por.cheat` / `ifx node --cheat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Behaviour {
    #[default]
    Honest,
    /// Fakes rendered images.
    Image(CheatMode),
    /// Computes benchmarks but claims a tenth of the time it took.
    ForgedTime,
    /// Answers every challenge honestly but too late.
    Late,
}

impl Behaviour {
    /// Every behaviour, honest first.
    pub const ALL: [Behaviour; 9] = [
        Behaviour::Honest,
        Behaviour::Image(CheatMode::Constant),
        Behaviour::Image(CheatMode::WhiteNoise),
        Behaviour::Image(CheatMode::OldTile),
        Behaviour::Image(CheatMode::QuarterRes),
        Behaviour::Image(CheatMode::NoWatermark),
        Behaviour::Image(CheatMode::Fake25),
        Behaviour::ForgedTime,
        Behaviour::Late,
    ];

    /// Its name in config files and flags (`""` is honest).
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "",
            Behaviour::Image(m) => m.name(),
            Behaviour::ForgedTime => "forged-time",
            Behaviour::Late => "late",
        }
    }
}

crate::named_mode!(Behaviour, "cheat mode");

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What a cheater in `mode` sends for a challenge: `watermarked` is the scene it was given,
/// `plain` the scene without imprints (a cheater that ignores the extra geometry), `old` an
/// image it kept from an earlier challenge of the same size; `render` renders a whole image of a
/// scene (the engine's CPU reference, in the tests and on cheating nodes).
pub fn forge(
    mode: CheatMode,
    watermarked: &Scene,
    plain: &Scene,
    s: &RenderSettings,
    old: Option<&[u8]>,
    seed: u64,
    render: impl Fn(&Scene, &RenderSettings) -> Result<Image, RenderError>,
) -> Result<Vec<u8>, RenderError> {
    let n = (s.width * s.height * 3) as usize;
    let cpu = render;
    Ok(match mode {
        CheatMode::Constant => vec![128; n],
        CheatMode::WhiteNoise => noise(seed, n),
        CheatMode::OldTile => old.map(<[u8]>::to_vec).unwrap_or_else(|| vec![0; n]),
        CheatMode::QuarterRes => {
            let q = RenderSettings { width: s.width.div_ceil(4), height: s.height.div_ceil(4), ..*s };
            let small = cpu(watermarked, &q)?.to_rgb8();
            let mut out = Vec::with_capacity(n);
            for y in 0..s.height {
                for x in 0..s.width {
                    let i = (((y / 4) * q.width + x / 4) * 3) as usize;
                    out.extend_from_slice(&small[i..i + 3]);
                }
            }
            out
        }
        CheatMode::NoWatermark => cpu(plain, s)?.to_rgb8(),
        CheatMode::Fake25 => {
            let mut img = cpu(watermarked, s)?.to_rgb8();
            let r = noise(seed, n / 3 * 2);
            for p in 0..n / 3 {
                // A pseudo-random quarter of the pixels get made-up values.
                if r[2 * p] < 64 {
                    img[3 * p..3 * p + 3].fill(r[2 * p + 1]);
                }
            }
            img
        }
    })
}

/// A cheater's guess at the watermark-free scene: the scene without the triangles right in
/// front of the camera (where imprints sit). Used by the no-watermark cheat on a live node,
/// which only receives the watermarked scene.
pub fn strip_near_camera(scene: &Scene) -> Scene {
    let c = &scene.camera;
    let d = |p: [f32; 3]| {
        ((p[0] - c.position[0]).powi(2) + (p[1] - c.position[1]).powi(2) + (p[2] - c.position[2]).powi(2)).sqrt()
    };
    let reach = 0.05 * d(c.look_at);
    let mut out = scene.clone();
    out.triangles.retain(|t| t.v.iter().all(|v| d(*v) > reach));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheat_names_parse() {
        for c in Behaviour::ALL {
            assert_eq!(c.name().parse::<Behaviour>(), Ok(c), "{c}");
        }
        assert_eq!("".parse::<Behaviour>().unwrap(), Behaviour::Honest);
        let e = "sloppy".parse::<Behaviour>().unwrap_err().to_string();
        assert!(e.contains("sloppy") && e.contains("forged-time"), "{e}");
    }
}
