//! A PNG line chart of accuracy per round: axes, a grid every 10% and every 5 rounds, the
//! target as a dashed line, one point per round. No text (no font dependency); the JSON status
//! next to it carries the numbers.

use image::{Rgb, RgbImage};

use crate::LearnError;

const W: u32 = 640;
const H: u32 = 400;
const LEFT: u32 = 40;
const BOTTOM: u32 = 30;
const TOP: u32 = 20;
const RIGHT: u32 = 20;

/// Draws `accuracy` (0..1 per round) with a dashed line at `target` and writes a PNG.
pub fn accuracy_png(accuracy: &[f64], target: f64, path: &std::path::Path) -> Result<(), LearnError> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let n = accuracy.len().max(2) - 1;
    let x_of = |i: usize| LEFT as f64 + pw * i as f64 / n as f64;
    let y_of = |a: f64| TOP as f64 + ph * (1.0 - a.clamp(0.0, 1.0));
    let grid = Rgb([225, 225, 225]);
    for tenth in 0..=10 {
        let y = y_of(tenth as f64 / 10.0);
        line(&mut img, (LEFT as f64, y), (x_of(n), y), grid, 1);
    }
    for i in (0..=n).step_by(5) {
        line(&mut img, (x_of(i), TOP as f64), (x_of(i), y_of(0.0)), grid, 1);
    }
    let axis = Rgb([60, 60, 60]);
    line(&mut img, (LEFT as f64, y_of(0.0)), (x_of(n), y_of(0.0)), axis, 1);
    line(&mut img, (LEFT as f64, TOP as f64), (LEFT as f64, y_of(0.0)), axis, 1);
    let ty = y_of(target);
    let mut x = LEFT as f64;
    while x < x_of(n) {
        line(&mut img, (x, ty), ((x + 6.0).min(x_of(n)), ty), Rgb([200, 60, 60]), 1);
        x += 12.0;
    }
    let blue = Rgb([30, 90, 200]);
    for (i, w) in accuracy.windows(2).enumerate() {
        line(&mut img, (x_of(i), y_of(w[0])), (x_of(i + 1), y_of(w[1])), blue, 2);
    }
    for (i, a) in accuracy.iter().enumerate() {
        dot(&mut img, x_of(i), y_of(*a), blue);
    }
    img.save(path).map_err(|e| LearnError::Output(format!("{}: {e}", path.display())))
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), c: Rgb<u8>, width: i64) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = ((a.0 + (b.0 - a.0) * t).round() as i64, (a.1 + (b.1 - a.1) * t).round() as i64);
        for d in 0..width {
            put(img, x, y + d, c);
        }
    }
}

fn dot(img: &mut RgbImage, x: f64, y: f64, c: Rgb<u8>) {
    for dx in -2..=2 {
        for dy in -2..=2 {
            put(img, x.round() as i64 + dx, y.round() as i64 + dy, c);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_the_curve_where_the_values_are() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("acc.png");
        super::accuracy_png(&[0.1, 0.5, 0.9, 0.96], 0.95, &p).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (super::W, super::H));
        // The last point (0.96) sits near the top right, drawn in blue.
        let y = (super::TOP as f64 + (super::H - super::TOP - super::BOTTOM) as f64 * 0.04).round() as u32;
        assert_eq!(img.get_pixel(super::W - super::RIGHT, y).0, [30, 90, 200]);
        assert!(super::accuracy_png(&[0.5], 0.9, std::path::Path::new("/nonexistent/dir/a.png")).is_err());
    }
}
