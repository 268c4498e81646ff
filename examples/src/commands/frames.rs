//! `video-llava frames PATH [--count 8] [--sampling uniform|linspace] [--seek exact|fast] [--out DIR] [--json]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use frame_sampler::{SampleOptions, SeekMode, Source};
use image::RgbImage;
use video_llava::analyze::FrameSpacing;

use crate::cli::{FramesArgs, SamplingChoice, SeekChoice};
use crate::failure::Failure;
use crate::image_files;
use crate::records::{FrameEntry, FrameIndex};

/// Samples the frames and writes `frame-NNNN.png` plus `index.json` into the output folder.
pub fn run(args: FramesArgs) -> Result<ExitCode, Failure> {
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-frames", image_files::stem(&args.path))));
    let (spacing, sampling_name) = match args.sampling {
        SamplingChoice::Uniform => (FrameSpacing::Uniform, "uniform"),
        SamplingChoice::Linspace => (FrameSpacing::Linspace, "linspace"),
    };
    let (seek, seek_name) = match args.seek {
        SeekChoice::Exact => (SeekMode::Exact, "exact"),
        SeekChoice::Fast => (SeekMode::Fast, "fast"),
    };
    let name = args.path.display().to_string();
    let options = SampleOptions::new(spacing.sampling(args.count as usize)).seek(seek);
    let batch = frame_sampler::sample_frames(&Source::from(args.path.as_path()), &options)
        .map_err(|e| Failure::from_video(&name, &e))?;

    std::fs::create_dir_all(&out)
        .map_err(|e| Failure::internal(out.display().to_string(), e.to_string()))?;
    let mut frames = Vec::with_capacity(batch.len());
    for i in 0..batch.len() {
        let file = format!("frame-{i:04}.png");
        let img = RgbImage::from_raw(batch.width, batch.height, batch.frame(i).to_vec())
            .ok_or_else(|| Failure::internal(&name, "frame buffer smaller than its size says"))?;
        image_files::write(&out.join(&file), &img)?;
        frames.push(FrameEntry {
            file,
            index: batch.indices[i],
            timestamp: batch.timestamps[i],
        });
    }
    let index = FrameIndex {
        path: name,
        sampling: sampling_name,
        seek: seek_name,
        width: batch.width,
        height: batch.height,
        clamped: batch.clamped,
        frames,
    };
    let json = serde_json::to_string_pretty(&index).expect("plain data serializes") + "\n";
    image_files::write_bytes(&out.join("index.json"), json.as_bytes())?;

    let text = if args.json {
        json
    } else {
        let mut text = format!(
            "{} frames ({}x{}) -> {}\n",
            index.frames.len(),
            index.width,
            index.height,
            out.display()
        );
        for f in &index.frames {
            text += &format!(
                "  {}  frame {:>7}  {:>10.3} s\n",
                f.file, f.index, f.timestamp
            );
        }
        text
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
