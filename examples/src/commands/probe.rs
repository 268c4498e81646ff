//! `video-llava probe PATH [--json]`.

use std::io::Write;
use std::process::ExitCode;

use frame_sampler::Source;

use crate::cli::ProbeArgs;
use crate::failure::Failure;
use crate::records::{ProbeRecord, VideoFacts};

/// Prints the video's facts.
pub fn run(args: ProbeArgs) -> Result<ExitCode, Failure> {
    let name = args.path.display().to_string();
    let info = frame_sampler::probe(&Source::from(args.path.as_path()))
        .map_err(|e| Failure::from_video(&name, &e))?;
    let facts = VideoFacts::from(&info);
    let text = if args.json {
        let record = ProbeRecord {
            path: name,
            facts: &facts,
        };
        serde_json::to_string_pretty(&record).expect("plain data serializes") + "\n"
    } else {
        format!(
            "{name}\n  container  {}\n  codec      {}\n  size       {}x{} (stored {}x{}, rotation {})\n  fps        {:.3} (base {:.3})\n  duration   {:.3} s\n  frames     {} ({})\n  audio      {}\n",
            facts.container,
            facts.codec,
            facts.width,
            facts.height,
            facts.coded_width,
            facts.coded_height,
            facts.rotation,
            facts.avg_fps,
            facts.real_fps,
            facts.duration,
            facts.frame_count,
            facts.frame_count_source,
            if facts.has_audio { "yes" } else { "no" },
        )
    };
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
