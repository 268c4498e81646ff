//! `video-llava storyboard PATH [--count N] [--out FILE]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use frame_sampler::{ImageFormat, Source, ThumbnailOptions};

use crate::cli::StoryboardArgs;
use crate::contact_sheet;
use crate::failure::Failure;
use crate::image_files;

/// Longest side of each frame in the grid.
const TILE_SIZE: u32 = 320;

/// Writes the contact sheet.
pub fn run(args: StoryboardArgs) -> Result<ExitCode, Failure> {
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(format!("{}-storyboard.jpg", image_files::stem(&args.path)))
    });
    image_files::format_for(&out)?;
    let name = args.path.display().to_string();
    // PNG tiles: the sheet is encoded once, at the end, not twice.
    let options = ThumbnailOptions {
        max_size: TILE_SIZE,
        format: ImageFormat::Png,
        ..ThumbnailOptions::default()
    };
    let thumbs = frame_sampler::storyboard(
        &Source::from(args.path.as_path()),
        args.count as usize,
        &options,
    )
    .map_err(|e| Failure::from_video(&name, &e))?;
    let mut tiles = Vec::with_capacity(thumbs.len());
    for thumb in &thumbs {
        let tile = image::load_from_memory(&thumb.data)
            .map_err(|e| Failure::internal(&name, format!("decoding a storyboard frame: {e}")))?
            .to_rgb8();
        tiles.push((tile, thumb.timestamp));
    }
    let sheet = contact_sheet::compose(&tiles);
    image_files::write(&out, &sheet)?;
    // A closed pipe is not worth a failure: the image is written.
    let _ = writeln!(
        std::io::stdout(),
        "{} ({} frames, {}x{})",
        out.display(),
        tiles.len(),
        sheet.width(),
        sheet.height()
    );
    Ok(ExitCode::SUCCESS)
}
