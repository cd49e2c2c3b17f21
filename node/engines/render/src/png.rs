//! PNG output of rendered images.

use std::path::Path;

use ifx_protocols::render::{Image, RenderError};

/// Writes `img` as an 8-bit RGB PNG (the protocol's gamma-2 bytes, `Image::to_rgb8`).
pub fn save(img: &Image, path: &Path) -> Result<(), RenderError> {
    image::save_buffer(path, &img.to_rgb8(), img.width, img.height, image::ExtendedColorType::Rgb8)
        .map_err(|e| RenderError::Output { path: path.display().to_string(), message: e.to_string() })
}
