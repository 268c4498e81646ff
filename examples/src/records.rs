//! The JSON the command prints and appends: a video's facts, a frame index, an analysis or the
//! error that stopped it. Field names are part of the CLI's contract.

use std::path::Path;

use serde::Serialize;
use video_llava::analyze::{Analysis, AnalysisTimings};

use crate::failure::Failure;
use crate::jsonl::{file_stamp, RunKey};

/// `probe --json`, and the `video` object of an analysis.
#[derive(Debug, Serialize)]
pub struct VideoFacts {
    /// Container format as FFmpeg names it.
    pub container: String,
    /// Codec name.
    pub codec: String,
    /// Displayed width.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Stored width.
    pub coded_width: u32,
    /// Stored height.
    pub coded_height: u32,
    /// Clockwise rotation in degrees.
    pub rotation: u32,
    /// Average frame rate.
    pub avg_fps: f64,
    /// Base frame rate.
    pub real_fps: f64,
    /// Seconds.
    pub duration: f64,
    /// Number of frames.
    pub frame_count: u64,
    /// `index`, `counted`, `header` or `estimated`.
    pub frame_count_source: &'static str,
    /// Whether there is an audio stream.
    pub has_audio: bool,
}

impl From<&frame_sampler::VideoInfo> for VideoFacts {
    fn from(info: &frame_sampler::VideoInfo) -> Self {
        Self {
            container: info.container.clone(),
            codec: info.codec.clone(),
            width: info.width,
            height: info.height,
            coded_width: info.coded_width,
            coded_height: info.coded_height,
            rotation: info.rotation,
            avg_fps: info.avg_fps,
            real_fps: info.real_fps,
            duration: info.duration,
            frame_count: info.frame_count,
            frame_count_source: info.frame_count_source.as_str(),
            has_audio: info.has_audio,
        }
    }
}

/// `probe --json`: the path plus its facts.
#[derive(Debug, Serialize)]
pub struct ProbeRecord<'a> {
    /// The video as given.
    pub path: String,
    /// Its facts.
    #[serde(flatten)]
    pub facts: &'a VideoFacts,
}

/// One entry of a frame index (`frames`' index.json).
#[derive(Debug, Serialize)]
pub struct FrameEntry {
    /// Image file name, relative to the index.
    pub file: String,
    /// Frame index in presentation order.
    pub index: u64,
    /// Presentation time in seconds.
    pub timestamp: f64,
}

/// `frames`' index.json (and `frames --json`).
#[derive(Debug, Serialize)]
pub struct FrameIndex {
    /// The video as given.
    pub path: String,
    /// `uniform` or `linspace`.
    pub sampling: &'static str,
    /// `exact` or `fast`.
    pub seek: &'static str,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Whether targets were clamped because the container's frame count was wrong.
    pub clamped: bool,
    /// The frames, in the order sampled.
    pub frames: Vec<FrameEntry>,
}

/// Per-stage seconds.
#[derive(Debug, Serialize)]
pub struct TimingRecord {
    /// Probing.
    pub probe: f64,
    /// Decoding the sampled frames.
    pub sampling: f64,
    /// Choosing and encoding the thumbnail.
    pub thumbnail: f64,
    /// Resizing and normalizing frames.
    pub preprocess: f64,
    /// Vision tower and projector.
    pub vision: f64,
    /// Prompt forward pass.
    pub prefill: f64,
    /// Decode steps.
    pub decode: f64,
    /// Everything.
    pub total: f64,
}

impl From<&AnalysisTimings> for TimingRecord {
    fn from(t: &AnalysisTimings) -> Self {
        Self {
            probe: t.probe.as_secs_f64(),
            sampling: t.sampling.as_secs_f64(),
            thumbnail: t.thumbnail.as_secs_f64(),
            preprocess: t.preprocess.as_secs_f64(),
            vision: t.vision.as_secs_f64(),
            prefill: t.prefill.as_secs_f64(),
            decode: t.decode.as_secs_f64(),
            total: t.total().as_secs_f64(),
        }
    }
}

/// `analyze --json`, and one line of `--jsonl` for a video that was analyzed.
#[derive(Debug, Serialize)]
pub struct AnalysisRecord<'a> {
    /// The video as given.
    pub path: String,
    /// Its facts.
    pub video: VideoFacts,
    /// Where the thumbnail was written (`--thumbnails`), else null.
    pub thumbnail: Option<String>,
    /// Presentation time of the thumbnail's frame (`--thumbnails`), else null.
    pub thumbnail_timestamp: Option<f64>,
    /// Indices of the frames shown to the model.
    pub frame_indices: &'a [u64],
    /// Their presentation times in seconds.
    pub frame_timestamps: &'a [f64],
    /// The model as given to `--model`.
    pub model: &'a str,
    /// The question.
    pub question: &'a str,
    /// Frames asked for (with `model` and `question`, what a rerun's resume compares).
    pub frames: u64,
    /// The answer.
    pub answer: &'a str,
    /// Prompt tokens, placeholders expanded.
    pub prompt_tokens: usize,
    /// Of those, the ones taken from the video's cached prefix (several `--question`s).
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// `eos`, `stop_string`, `max_tokens` or `cancelled`.
    pub stop_reason: &'static str,
    /// Per-stage seconds.
    pub timings: TimingRecord,
}

impl<'a> AnalysisRecord<'a> {
    /// The record for `analysis` of `path` in the run `key` (its model and frame count).
    pub fn new(
        path: &Path,
        analysis: &'a Analysis,
        key: &'a RunKey,
        thumbnail: Option<&Path>,
    ) -> Self {
        Self {
            path: path.display().to_string(),
            video: VideoFacts::from(&analysis.info),
            thumbnail: thumbnail.map(|p| p.display().to_string()),
            thumbnail_timestamp: analysis.thumbnail.as_ref().map(|t| t.timestamp),
            frame_indices: &analysis.frame_indices,
            frame_timestamps: &analysis.frame_timestamps,
            model: &key.model,
            question: &analysis.question,
            frames: key.frames,
            answer: &analysis.answer,
            prompt_tokens: analysis.prompt_tokens,
            cached_tokens: analysis.cached_tokens,
            generated_tokens: analysis.generated_tokens,
            stop_reason: analysis.stop_reason.as_str(),
            timings: TimingRecord::from(&analysis.timings),
        }
    }
}

/// One line of `--jsonl` for a video that failed.
#[derive(Debug, Serialize)]
pub struct ErrorRecord {
    /// The video as given.
    pub path: String,
    /// The one-line message.
    pub error: String,
    /// `input` (the video or the request) or `internal`.
    pub error_kind: &'static str,
    /// The run it failed in (a rerun with another question or model tries again).
    pub question: String,
    /// The model as given to `--model`.
    pub model: String,
    /// Frames asked for.
    pub frames: u64,
    /// The file's size when it failed (a rerun retries a bad input once the file changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its modification time then, nanoseconds since the epoch, as a decimal string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<String>,
}

impl ErrorRecord {
    /// The record of `failure` for `path` in the run `key`.
    pub fn new(path: &Path, failure: &Failure, key: &RunKey) -> Self {
        let stamp = file_stamp(path);
        Self {
            path: path.display().to_string(),
            error: failure.to_string(),
            error_kind: failure.kind.as_str(),
            question: key.question.clone(),
            model: key.model.clone(),
            frames: key.frames,
            size: stamp.map(|s| s.0),
            mtime_ns: stamp.map(|s| s.1.to_string()),
        }
    }
}
