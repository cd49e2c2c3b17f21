//! Image output: the 8-bit sRGB PNG everyone opens, and beside it the linear HDR OpenEXR a
//! compositor wants (issue #18: radiance as rendered, unclamped, 32-bit float).

use std::path::{Path, PathBuf};

use ifx_protocols::render::{Image, RenderError};

fn output_error(path: &Path, e: impl std::fmt::Display) -> RenderError {
    RenderError::Output { path: path.display().to_string(), message: e.to_string() }
}

/// Writes `img` as an 8-bit sRGB PNG at `path` (`Image::to_rgb8`) and as a linear 32-bit float
/// OpenEXR beside it (the same name with `.exr`, [`exr_path`]).
pub fn save(img: &Image, path: &Path) -> Result<(), RenderError> {
    image::save_buffer(path, &img.to_rgb8(), img.width, img.height, image::ExtendedColorType::Rgb8)
        .map_err(|e| output_error(path, e))?;
    save_exr(img, &exr_path(path))
}

/// Where [`save`] writes the linear image of a PNG at `png`.
pub fn exr_path(png: &Path) -> PathBuf {
    png.with_extension("exr")
}

/// Writes `img`'s linear radiance, as rendered, as an RGB 32-bit float OpenEXR.
pub fn save_exr(img: &Image, path: &Path) -> Result<(), RenderError> {
    let data: Vec<f32> = img.rgb.iter().flatten().copied().collect();
    let buf = image::Rgb32FImage::from_raw(img.width, img.height, data)
        .ok_or_else(|| output_error(path, "the pixels do not fill the image"))?;
    buf.save_with_format(path, image::ImageFormat::OpenExr).map_err(|e| output_error(path, e))
}
