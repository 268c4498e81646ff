//! Writing images to files, the format taken from the file's extension.

use std::path::Path;

use frame_sampler::ImageFormat;
use image::RgbImage;

use crate::failure::Failure;

/// JPEG quality for the images this command writes.
const JPEG_QUALITY: u8 = 90;

/// The format a file name asks for (`.jpg`/`.jpeg`, `.png`, `.webp`); anything else is an input error.
pub fn format_for(path: &Path) -> Result<ImageFormat, Failure> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    ext.parse().map_err(|_| {
        Failure::input(
            path.display().to_string(),
            "unknown image type: name the file .jpg, .png or .webp",
        )
    })
}

/// Encodes `img` into `path` in the format its extension names, with frame-sampler's encoder.
pub fn write(path: &Path, img: &RgbImage) -> Result<(), Failure> {
    let format = format_for(path)?;
    let bytes = frame_sampler::encode_image(
        img.as_raw(),
        img.width(),
        img.height(),
        format,
        JPEG_QUALITY,
    )
    .map_err(|e| Failure::internal(path.display().to_string(), e.to_string()))?;
    write_bytes(path, &bytes)
}

/// Writes `bytes` to `path`, creating its folder.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::internal(parent.display().to_string(), e.to_string()))?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| Failure::internal(path.display().to_string(), e.to_string()))
}

/// `path`'s file stem, for naming outputs after a video (`clip.mp4` -> `clip`).
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video".to_string())
}
