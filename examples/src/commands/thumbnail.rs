//! `video-llava thumbnail PATH [--out FILE] [--max-size N]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use frame_sampler::{Source, ThumbnailOptions};

use crate::cli::ThumbnailArgs;
use crate::failure::Failure;
use crate::image_files;

/// Writes the representative frame.
pub fn run(args: ThumbnailArgs) -> Result<ExitCode, Failure> {
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.jpg", image_files::stem(&args.path))));
    let format = image_files::format_for(&out)?;
    let options = ThumbnailOptions {
        max_size: args.max_size,
        format,
        ..ThumbnailOptions::default()
    };
    let name = args.path.display().to_string();
    let thumb = frame_sampler::thumbnail(&Source::from(args.path.as_path()), &options)
        .map_err(|e| Failure::from_video(&name, &e))?;
    image_files::write_bytes(&out, &thumb.data)?;
    // A closed pipe is not worth a failure: the image is written.
    let _ = writeln!(
        std::io::stdout(),
        "{} ({}x{}, frame at {:.3} s)",
        out.display(),
        thumb.width,
        thumb.height,
        thumb.timestamp
    );
    Ok(ExitCode::SUCCESS)
}
