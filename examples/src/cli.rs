//! The command line, as clap parses it. Names and flags here are a contract with users' scripts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use video_llava::{DType, DeviceRequest, Quantization};

/// Video understanding from the shell: answers and thumbnails for videos, frames, probes and
/// storyboards.
#[derive(Debug, Parser)]
#[command(name = "video-llava", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Limits on every video this run reads.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Limits on every video read (probing, frames, thumbnails, the model's frames, the server's
/// uploads); a video over one fails with an error naming it. Given before or after the
/// subcommand.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The largest video file (or upload) read, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = 16_384,
          value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub max_input_mb: u64,
    /// Seconds one read of a video (opening it, sampling its frames, a thumbnail) may take; a
    /// file that decodes forever then fails with a timeout. 0: no limit.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 600)]
    pub call_timeout: u64,
    /// The most decoder threads one read may use.
    #[arg(long, global = true, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_decoder_threads: u64,
}

impl LimitArgs {
    /// The frame sampler's limits these flags ask for.
    pub fn limits(&self) -> frame_sampler::Limits {
        frame_sampler::Limits {
            max_input_bytes: self.max_input_mb << 20,
            call_timeout: (self.call_timeout > 0)
                .then(|| std::time::Duration::from_secs(self.call_timeout)),
            max_decoder_threads: self.max_decoder_threads as usize,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask Video-LLaVA about one or many videos (files, folders searched recursively, globs).
    ///
    /// Exit status: 0 when every video was analyzed (or already recorded in --jsonl), 2 when the
    /// input was bad (usage, a missing or unreadable video, an invalid model directory) and
    /// nothing else failed, 1 otherwise. A failing video does not stop a batch: it is reported
    /// on stderr (and recorded in --jsonl) and the next one is analyzed.
    Analyze(AnalyzeArgs),
    /// Print a video's facts: container, codec, size, rotation, frame rate, duration, frame count.
    Probe(ProbeArgs),
    /// Sample frames and write them as PNG images plus an index.json.
    Frames(FramesArgs),
    /// Write one representative frame of a video as an image.
    Thumbnail(ThumbnailArgs),
    /// Write one contact-sheet image: representative frames in a grid, each with its timestamp.
    Storyboard(StoryboardArgs),
    /// Quantize a checkpoint once and save it as GGUF (model.gguf next to config.json and
    /// tokenizer.json); `analyze --model DST` then loads it without quantizing again.
    Quantize(QuantizeArgs),
    /// Serve the model over HTTP: an OpenAI-compatible chat-completions API with video, uploads
    /// and stored analyses (SQLite under --data-dir), and a web page at `/`.
    ///
    /// Prints `listening on http://HOST:PORT` on stdout once the port is bound (`--port 0` picks a
    /// free one); `/health` answers 503 until the model is loaded, 200 after.
    Serve(ServeArgs),
}

/// `video-llava analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Video files, folders (searched recursively for video files) or glob patterns.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// The question asked about each video. Give it several times to ask several: each video's
    /// frames, vision towers and prompt prefix are computed once and every question is answered
    /// from that cache (the same answers as asking one at a time, for a fraction of the time).
    #[arg(
        long = "question",
        value_name = "TEXT",
        default_value = video_llava::analyze::DEFAULT_QUESTION
    )]
    pub questions: Vec<String>,
    /// A local model directory or a Hugging Face Hub repo id (downloaded once into the HF cache;
    /// HF_HOME, HF_HUB_OFFLINE and HF_HUB_DISABLE_PROGRESS_BARS are honoured).
    #[arg(
        long,
        default_value = "LanguageBind/Video-LLaVA-7B-hf",
        value_name = "REPO_OR_DIR"
    )]
    pub model: String,
    /// Device, dtype and quantization.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Frames sampled from each video and shown to the model.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub frames: u16,
    /// The most tokens generated per answer.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_tokens: u32,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0, value_parser = parse_temperature)]
    pub temperature: f64,
    /// Seed for sampling (only matters with --temperature > 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write each video's thumbnail to DIR/<file stem>.jpg (a later video with the same stem replaces it).
    #[arg(long, value_name = "DIR")]
    pub thumbnails: Option<PathBuf>,
    /// Print one JSON document (for a single video; an array of them, one per question, when
    /// several --question are given) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Append one JSON line per video and question to FILE; a rerun with the same question,
    /// model and frame count skips the videos answered there and the bad inputs unchanged since
    /// (same size and mtime), retries the rest, and keeps one record per video and question, so
    /// an interrupted batch resumes where it stopped (asking each video only what is missing).
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,
}

/// `video-llava serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A local model directory or a Hugging Face Hub repo id (downloaded once into the HF cache).
    #[arg(long, value_name = "REPO_OR_DIR")]
    pub model: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where uploads, thumbnails and the SQLite database live.
    #[arg(long, default_value = "video-llava-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Require `Authorization: Bearer KEY` on every /v1 route.
    #[arg(
        long,
        env = "VIDEO_LLAVA_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Accept `file://` media URLs naming files under DIR (none are accepted without it).
    #[arg(long, value_name = "DIR")]
    pub allowed_media_dir: Option<PathBuf>,
    /// Accept http(s) media URLs, fetched with the upload size limit and --remote-media-timeout.
    #[arg(long)]
    pub allow_remote_media: bool,
    /// Seconds a remote media download may take.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub remote_media_timeout: u64,
    /// The largest request body (an upload, a chat request with inline media), in MiB.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_upload_mb: u64,
    /// Requests waiting for the model beyond those it runs (up to --max-batch); more get 429.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_queue: u32,
    /// Generations decoded together, one forward pass per token for all of them (continuous
    /// batching: a request that arrives while others decode joins them after its prefill).
    /// 1 runs them one at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=video_llava::MAX_BATCH as i64))]
    pub max_batch: u16,
    /// MiB the running generations' KV caches may take together (each holds its prompt and
    /// max_tokens); a request that does not fit waits for others to finish, one that does not
    /// fit alone is refused (400, code too_large). 0: no bound.
    #[arg(long, default_value_t = 4096, value_name = "MIB", value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    pub max_kv_mb: u64,
    /// MiB of video prefixes kept for repeated questions about the same video or images (the
    /// keys and values of the vision tokens and the prompt before the question, keyed by a hash
    /// of the decoded frames): a later question skips the vision towers and that prefill. The
    /// least recently used prefix goes first; 0 keeps none.
    #[arg(long, default_value_t = 1024, value_name = "MIB", value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    pub prefix_cache_mb: u64,
    /// Seconds a request may wait and run in all; then it ends with a timeout error (504).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Seconds a streamed completion waits for its first piece before it sends its headers
    /// anyway (then SSE keep-alives; a later error is an event in the stream).
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_start_timeout: u64,
    /// Device, dtype and quantization (as for `analyze`).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Frames sampled from each video and shown to the model.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub frames: u16,
    /// The most tokens an answer may have when a request does not say.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_tokens: u32,
}

/// How `analyze` and `serve` load the model.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Where to run the model: auto (CUDA, then Metal, when built in and present, else the CPU),
    /// cpu, cuda[:N] (also gpu), metal[:N] (also mps).
    #[arg(long, default_value = "auto", value_name = "DEVICE", value_parser = parse_device)]
    pub device: DeviceRequest,
    /// Weight and activation type: float32, float16 or bfloat16 (f32, f16, bf16, ...)
    /// [default: float32 on CPU, bfloat16 on CUDA, float16 on Metal].
    #[arg(long, value_name = "DTYPE", value_parser = parse_dtype)]
    pub dtype: Option<DType>,
    /// Quantize the language model's linear weights while loading: q8_0 (8-bit), q4k (4-bit),
    /// q6k (6-bit) or none. A directory written by `video-llava quantize` is loaded as saved.
    #[arg(long, default_value = "none", value_name = "TYPE", value_parser = parse_quantization)]
    pub quantize: Quantization,
    /// Also quantize the vision towers and the projector (to q8_0).
    #[arg(long)]
    pub quantize_vision: bool,
    /// The type the KV cache holds keys and values in: float32, float16 or bfloat16
    /// [default: the compute dtype]. float16 beside float32 compute halves the cache (about
    /// 1 GB for the 7B's 8-frame prompt) and what each decode step reads.
    #[arg(long, value_name = "DTYPE", value_parser = parse_dtype)]
    pub kv_cache_dtype: Option<DType>,
}

/// `video-llava quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The checkpoint: a local model directory of safetensors or a Hugging Face Hub repo id.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// The new (or empty) directory to write the quantized model into.
    #[arg(value_name = "DST")]
    pub dst: PathBuf,
    /// The block type of the language model's linear weights: q8_0, q4k or q6k.
    #[arg(long, value_name = "TYPE", value_parser = parse_quantization)]
    pub quantize: Quantization,
    /// Also quantize the vision towers and the projector (to q8_0).
    #[arg(long)]
    pub quantize_vision: bool,
}

/// `video-llava probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The video.
    pub path: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `video-llava frames`.
#[derive(Debug, Args)]
pub struct FramesArgs {
    /// The video.
    pub path: PathBuf,
    /// How many frames.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// How frames are spread: uniform = floor(i * total / n) (HF docs), linspace = linspace(0, total - 1, n) (original Video-LLaVA).
    #[arg(long, value_enum, default_value_t = SamplingChoice::Uniform)]
    pub sampling: SamplingChoice,
    /// exact = the very frame at each index; fast = the nearest keyframe before it.
    #[arg(long, value_enum, default_value_t = SeekChoice::Exact)]
    pub seek: SeekChoice,
    /// Output directory [default: <file stem>-frames].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the index as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `video-llava thumbnail`.
#[derive(Debug, Args)]
pub struct ThumbnailArgs {
    /// The video.
    pub path: PathBuf,
    /// Output image; .jpg, .png or .webp [default: <file stem>.jpg].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Longest side in pixels (never upscaled).
    #[arg(long, default_value_t = 320, value_parser = clap::value_parser!(u32).range(8..=8192))]
    pub max_size: u32,
}

/// `video-llava storyboard`.
#[derive(Debug, Args)]
pub struct StoryboardArgs {
    /// The video.
    pub path: PathBuf,
    /// How many frames in the grid.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..=400))]
    pub count: u32,
    /// Output image; .jpg, .png or .webp [default: <file stem>-storyboard.jpg].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `--sampling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplingChoice {
    /// floor(i * total / n).
    Uniform,
    /// linspace(0, total - 1, n).
    Linspace,
}

/// `--seek`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeekChoice {
    /// The exact frame.
    Exact,
    /// The keyframe at or before it.
    Fast,
}

/// The core's parser, so the CLI accepts exactly the names every front end does.
fn parse_device(s: &str) -> Result<DeviceRequest, String> {
    s.parse().map_err(|e: video_llava::Error| e.to_string())
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    video_llava::device::parse_dtype(s).map_err(|e| e.to_string())
}

fn parse_quantization(s: &str) -> Result<Quantization, String> {
    s.parse().map_err(|e: video_llava::Error| e.to_string())
}

fn parse_temperature(s: &str) -> Result<f64, String> {
    let t: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if t.is_finite() && t >= 0.0 {
        Ok(t)
    } else {
        Err(format!("{s} must be a finite number >= 0"))
    }
}
