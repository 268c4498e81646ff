//! `video-llava storyboard PATH [--count N] [--out FILE]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use frame_sampler::{Source, Video};

use crate::cli::StoryboardArgs;
use crate::contact_sheet::{self, StoryboardError};
use crate::failure::Failure;
use crate::image_files;

/// Writes the contact sheet.
pub fn run(args: StoryboardArgs) -> Result<ExitCode, Failure> {
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(format!("{}-storyboard.jpg", image_files::stem(&args.path)))
    });
    image_files::format_for(&out)?;
    let name = args.path.display().to_string();
    let mut video = Video::open(Source::from(args.path.as_path()))
        .map_err(|e| Failure::from_video(&name, &e))?;
    let (sheet, frames) =
        contact_sheet::storyboard(&mut video, args.count as usize).map_err(|e| match e {
            StoryboardError::Video(e) => Failure::from_video(&name, &e),
            StoryboardError::Tile(m) => Failure::internal(&name, m),
        })?;
    image_files::write(&out, &sheet)?;
    // A closed pipe is not worth a failure: the image is written.
    let _ = writeln!(
        std::io::stdout(),
        "{} ({} frames, {}x{})",
        out.display(),
        frames,
        sheet.width(),
        sheet.height()
    );
    Ok(ExitCode::SUCCESS)
}
