//! `probe`, `sampleFrames`, `thumbnail`, `storyboard`: frame-sampler on the libuv pool.

use frame_sampler::{
    FrameBatch as RsFrameBatch, ImageFormat, Resize, SampleOptions, Sampling, SeekMode, Source,
    Thumbnail as RsThumbnail, ThumbnailOptions as RsThumbnailOptions, VideoInfo as RsVideoInfo,
};
use napi::bindgen_prelude::{AsyncTask, Buffer, Unknown};
use napi::{Env, Task};
use napi_derive::napi;

use crate::args;
use crate::error::{guarded, JsFailure};
use crate::source::source_arg;

/// Facts about a video's best video stream and its container.
#[napi(object, object_from_js = false)]
pub struct VideoInfo {
    /// Container format as FFmpeg names it (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, ...).
    pub container: String,
    /// Codec name (`h264`, `hevc`, `vp9`, ...).
    pub codec: String,
    /// Width as displayed (rotation applied).
    pub width: u32,
    /// Height as displayed (rotation applied).
    pub height: u32,
    /// Width as stored in the stream.
    pub coded_width: u32,
    /// Height as stored in the stream.
    pub coded_height: u32,
    /// Clockwise rotation in degrees (0, 90, 180, 270) that displaying the video applies.
    pub rotation: u32,
    /// Average frame rate (frames / duration); the same as `avgFps`.
    pub fps: f64,
    /// Average frame rate as the container reports it.
    pub avg_fps: f64,
    /// Real base frame rate (the stream's `r_frame_rate`).
    pub real_fps: f64,
    /// Duration in seconds.
    pub duration: f64,
    /// Number of frames.
    pub frame_count: i64,
    /// How `frameCount` was obtained.
    #[napi(ts_type = "'index' | 'counted' | 'header' | 'estimated'")]
    pub frame_count_source: String,
    /// Whether the container has at least one audio stream.
    pub has_audio: bool,
}

impl From<RsVideoInfo> for VideoInfo {
    fn from(info: RsVideoInfo) -> Self {
        Self {
            container: info.container,
            codec: info.codec,
            width: info.width,
            height: info.height,
            coded_width: info.coded_width,
            coded_height: info.coded_height,
            rotation: info.rotation,
            fps: info.avg_fps,
            avg_fps: info.avg_fps,
            real_fps: info.real_fps,
            duration: info.duration,
            frame_count: i64::try_from(info.frame_count).unwrap_or(i64::MAX),
            frame_count_source: info.frame_count_source.as_str().to_owned(),
            has_audio: info.has_audio,
        }
    }
}

/// An optional resize done while decoding: give `shortestSide`, `maxSide`, or `width` and `height`.
#[napi(object, object_to_js = false)]
pub struct ResizeOptions {
    /// Scale so the shortest side is this many pixels, aspect kept.
    pub shortest_side: Option<f64>,
    /// Scale so the longest side is at most this many pixels, aspect kept (never upscales).
    pub max_side: Option<f64>,
    /// Exact output width (with `height`).
    pub width: Option<f64>,
    /// Exact output height (with `width`).
    pub height: Option<f64>,
}

/// Which frames `sampleFrames` decodes, and how.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct SampleFramesOptions {
    /// How many frames for `uniform`, `linspace` (default 8) and `keyframes` (the most returned).
    pub num_frames: Option<f64>,
    /// `uniform` (`floor(i * total / n)`, the Hugging Face convention, default), `linspace`
    /// (`linspace(0, total - 1, n)`, the original Video-LLaVA code) or `keyframes`.
    #[napi(ts_type = "'uniform' | 'linspace' | 'keyframes'")]
    pub sampling: Option<String>,
    /// Explicit frame indices in presentation order (overrides `sampling`).
    pub indices: Option<Vec<f64>>,
    /// The frames shown at these times, in seconds (overrides `sampling`).
    pub timestamps: Option<Vec<f64>>,
    /// One frame every this many seconds from 0 (overrides `sampling`).
    pub every: Option<f64>,
    /// `exact` (bit-for-bit the i-th frame, default) or `fast` (nearest keyframe at or before).
    #[napi(ts_type = "'exact' | 'fast'")]
    pub seek: Option<String>,
    /// Resize while decoding.
    pub resize: Option<ResizeOptions>,
    /// Apply the display matrix's rotation (default true).
    pub rotate: Option<bool>,
    /// Decoder threads; 0 = all cores (default).
    pub threads: Option<f64>,
    /// The most bytes the batch may take (default 2 GiB); more is refused with `ERR_TOO_LARGE`.
    pub max_bytes: Option<f64>,
}

/// Sampled frames: one contiguous `count x height x width x 3` RGB buffer plus each frame's index and time.
#[napi(object, object_from_js = false)]
pub struct FrameBatch {
    /// `count * height * width * 3` bytes, frame-major, rows top to bottom, RGB.
    pub frames: Buffer,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Number of frames.
    pub count: u32,
    /// Each frame's index in presentation order.
    pub indices: Vec<i64>,
    /// Each frame's presentation time in seconds.
    pub timestamps: Vec<f64>,
    /// Set when the container's frame count was wrong and targets were clamped to the frames that exist.
    pub clamped: bool,
}

impl From<RsFrameBatch> for FrameBatch {
    fn from(batch: RsFrameBatch) -> Self {
        let count = batch.len() as u32;
        Self {
            width: batch.width,
            height: batch.height,
            count,
            indices: batch
                .indices
                .iter()
                .map(|&i| i64::try_from(i).unwrap_or(i64::MAX))
                .collect(),
            timestamps: batch.timestamps,
            clamped: batch.clamped,
            // Hands the Vec's allocation to V8 as an external buffer: no copy.
            frames: Buffer::from(batch.data),
        }
    }
}

/// Thumbnail options.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct ThumbnailOptions {
    /// Longest side of the output, in pixels (aspect kept, never upscaled; default 320).
    pub max_size: Option<f64>,
    /// `jpeg` (default), `png` or `webp`.
    #[napi(ts_type = "'jpeg' | 'png' | 'webp'")]
    pub format: Option<String>,
    /// JPEG quality, 1-100 (default 85).
    pub quality: Option<f64>,
    /// Apply rotation (default true).
    pub rotate: Option<bool>,
}

/// An encoded thumbnail.
#[napi(object, object_from_js = false)]
pub struct Thumbnail {
    /// The encoded image.
    pub data: Buffer,
    /// Its format.
    #[napi(ts_type = "'jpeg' | 'png' | 'webp'")]
    pub format: String,
    /// Presentation time of the chosen frame, in seconds.
    pub timestamp: f64,
    /// Width of the encoded image.
    pub width: u32,
    /// Height of the encoded image.
    pub height: u32,
}

impl From<RsThumbnail> for Thumbnail {
    fn from(thumb: RsThumbnail) -> Self {
        Self {
            format: match thumb.format {
                ImageFormat::Jpeg => "jpeg",
                ImageFormat::Png => "png",
                ImageFormat::WebP => "webp",
            }
            .to_owned(),
            timestamp: thumb.timestamp,
            width: thumb.width,
            height: thumb.height,
            data: Buffer::from(thumb.data),
        }
    }
}

impl ResizeOptions {
    /// The one shape given; the sizes are checked by the core ([`SampleOptions::validate`]).
    fn to_resize(&self) -> Result<Resize, JsFailure> {
        let side = |what, v| args::whole_u32(what, v);
        match (self.shortest_side, self.max_side, self.width, self.height) {
            (Some(s), None, None, None) => Ok(Resize::ShortestSide(side("shortestSide", s)?)),
            (None, Some(m), None, None) => Ok(Resize::MaxSide(side("maxSide", m)?)),
            (None, None, Some(width), Some(height)) => Ok(Resize::Exact {
                width: side("width", width)?,
                height: side("height", height)?,
            }),
            _ => Err(JsFailure::invalid(
                "resize: give exactly one of { shortestSide }, { maxSide } or { width, height }",
            )),
        }
    }
}

impl SampleFramesOptions {
    /// The engine's options; every choice validated here so a typo is an `ERR_INVALID_ARGUMENT`.
    pub fn to_sample_options(&self) -> Result<SampleOptions, JsFailure> {
        let overrides = [
            self.indices.is_some(),
            self.timestamps.is_some(),
            self.every.is_some(),
        ];
        if overrides.iter().filter(|&&set| set).count() > 1 {
            return Err(JsFailure::invalid(
                "give at most one of indices, timestamps and every",
            ));
        }
        let n = args::opt_usize("numFrames", self.num_frames)?.unwrap_or(8);
        let sampling = if let Some(indices) = &self.indices {
            let indices = indices
                .iter()
                .map(|&i| args::whole("indices", i, args::MAX_SAFE_INTEGER))
                .collect::<Result<Vec<_>, _>>()?;
            Sampling::Indices(indices)
        } else if let Some(times) = &self.timestamps {
            Sampling::Timestamps(times.clone())
        } else if let Some(every) = self.every {
            Sampling::Every(every)
        } else {
            match self.sampling.as_deref().unwrap_or("uniform") {
                "uniform" => Sampling::Uniform(n),
                "linspace" => Sampling::Linspace(n),
                "keyframes" => Sampling::Keyframes { max: n },
                other => {
                    return Err(JsFailure::invalid(format!(
                        "unknown sampling {other:?} (expected 'uniform', 'linspace' or 'keyframes')"
                    )))
                }
            }
        };
        let seek = match self.seek.as_deref().unwrap_or("exact") {
            "exact" => SeekMode::Exact,
            "fast" => SeekMode::Fast,
            other => {
                return Err(JsFailure::invalid(format!(
                    "unknown seek {other:?} (expected 'exact' or 'fast')"
                )))
            }
        };
        let resize = self
            .resize
            .as_ref()
            .map(ResizeOptions::to_resize)
            .transpose()?;
        let mut options = SampleOptions::new(sampling)
            .seek(seek)
            .resize(resize)
            .rotate(self.rotate.unwrap_or(true))
            .threads(args::opt_usize("threads", self.threads)?.unwrap_or(0));
        if let Some(max) = self.max_bytes {
            options.max_bytes = args::whole_bytes("maxBytes", max)?;
        }
        options.validate().map_err(JsFailure::from)?;
        Ok(options)
    }
}

impl ThumbnailOptions {
    pub fn to_thumbnail_options(&self) -> Result<RsThumbnailOptions, JsFailure> {
        let defaults = RsThumbnailOptions::default();
        let format = match self.format.as_deref() {
            None => defaults.format,
            Some(f) => f
                .parse::<ImageFormat>()
                .map_err(|e| JsFailure::invalid(e.to_string()))?,
        };
        // A number past a u8 cannot be a quality; within a u8 the core checks 1-100.
        let quality = match self.quality {
            None => defaults.quality,
            Some(q) => args::whole("quality", q, u8::MAX.into()).map_err(|_| {
                JsFailure::invalid(format!("thumbnail quality must be 1-100, got {q}"))
            })? as u8,
        };
        let options = RsThumbnailOptions {
            max_size: match self.max_size {
                None => defaults.max_size,
                Some(m) => args::whole_u32("maxSize", m)?,
            },
            format,
            quality,
            rotate: self.rotate.unwrap_or(defaults.rotate),
        };
        options.validate().map_err(JsFailure::from)?;
        Ok(options)
    }
}

/// Runs one frame-sampler call; holds the arguments' validation error, if any, so it rejects
/// the promise like every other failure instead of throwing synchronously.
pub struct FrameTask<Req, Out> {
    /// Taken by the one `compute`.
    call: Option<Result<(Source, Req), JsFailure>>,
    run: fn(&Source, &Req) -> frame_sampler::Result<Out>,
}

impl<Req: Send, Out: Send + 'static> FrameTask<Req, Out> {
    fn new(
        source: Result<Source, JsFailure>,
        request: Result<Req, JsFailure>,
        run: fn(&Source, &Req) -> frame_sampler::Result<Out>,
    ) -> Self {
        Self {
            call: Some(source.and_then(|s| Ok((s, request?)))),
            run,
        }
    }

    fn compute(&mut self) -> Result<Out, JsFailure> {
        let (source, request) = self
            .call
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")))?;
        let run = self.run;
        guarded(|| run(&source, &request).map_err(JsFailure::from))
    }
}

/// The promise of [`probe`].
pub struct ProbeTask(FrameTask<(), RsVideoInfo>);
/// The promise of [`sample_frames`].
pub struct SampleFramesTask(FrameTask<SampleOptions, RsFrameBatch>);
/// The promise of [`thumbnail`].
pub struct ThumbnailTask(FrameTask<RsThumbnailOptions, RsThumbnail>);
/// The promise of [`storyboard`].
pub struct StoryboardTask(FrameTask<(usize, RsThumbnailOptions), Vec<RsThumbnail>>);

/// `impl Task` for a promise wrapping one engine call (`self.0.compute()`), resolved with
/// `$convert`; used here and by the `Video` class.
macro_rules! frame_task {
    ($task:ident, $out:ty, $js:ty, $convert:expr) => {
        #[napi]
        impl Task for $task {
            type Output = Result<$out, JsFailure>;
            type JsValue = $js;

            fn compute(&mut self) -> napi::Result<Self::Output> {
                Ok(self.0.compute())
            }

            fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
                output.map($convert).map_err(|f| f.into_napi(&env))
            }
        }
    };
}

pub(crate) use frame_task;

frame_task!(ProbeTask, RsVideoInfo, VideoInfo, VideoInfo::from);
frame_task!(SampleFramesTask, RsFrameBatch, FrameBatch, FrameBatch::from);
frame_task!(ThumbnailTask, RsThumbnail, Thumbnail, Thumbnail::from);
frame_task!(
    StoryboardTask,
    Vec<RsThumbnail>,
    Vec<Thumbnail>,
    |v: Vec<RsThumbnail>| v.into_iter().map(Thumbnail::from).collect()
);

/// Opens a video (a path, or the whole file as a `Buffer`/`Uint8Array`) and reports the facts of
/// its best video stream.
#[napi(catch_unwind, ts_args_type = "source: string | Buffer | Uint8Array")]
pub fn probe(source: Unknown<'_>) -> AsyncTask<ProbeTask> {
    AsyncTask::new(ProbeTask(FrameTask::new(
        source_arg(source),
        Ok(()),
        |s, ()| frame_sampler::probe(s),
    )))
}

/// `sampleFrames`' options as the sampler's (also `Video.sample`'s).
pub(crate) fn sample_request(options: Option<Unknown<'_>>) -> Result<SampleOptions, JsFailure> {
    args::options::<SampleFramesOptions>("options", options).and_then(|o| o.to_sample_options())
}

/// `thumbnail`'s options as the sampler's (also `Video.thumbnail`'s).
pub(crate) fn thumbnail_request(
    options: Option<Unknown<'_>>,
) -> Result<RsThumbnailOptions, JsFailure> {
    args::options::<ThumbnailOptions>("options", options).and_then(|o| o.to_thumbnail_options())
}

/// `storyboard`'s `n` and options (also `Video.storyboard`'s).
pub(crate) fn storyboard_request(
    n: Unknown<'_>,
    options: Option<Unknown<'_>>,
) -> Result<(usize, RsThumbnailOptions), JsFailure> {
    // n = 0 is refused by the core, before the video is opened.
    let n = args::whole_usize("n", args::required::<f64>("n", n)?)?;
    Ok((n, thumbnail_request(options)?))
}

/// Decodes the frames `options` asks for (default: 8, uniform, exact) into one RGB buffer.
#[napi(
    catch_unwind,
    ts_args_type = "source: string | Buffer | Uint8Array, options?: SampleFramesOptions"
)]
pub fn sample_frames(
    source: Unknown<'_>,
    options: Option<Unknown<'_>>,
) -> AsyncTask<SampleFramesTask> {
    AsyncTask::new(SampleFramesTask(FrameTask::new(
        source_arg(source),
        sample_request(options),
        frame_sampler::sample_frames,
    )))
}

/// One representative frame of the whole video, encoded (default: JPEG, longest side 320).
#[napi(
    catch_unwind,
    ts_args_type = "source: string | Buffer | Uint8Array, options?: ThumbnailOptions"
)]
pub fn thumbnail(source: Unknown<'_>, options: Option<Unknown<'_>>) -> AsyncTask<ThumbnailTask> {
    AsyncTask::new(ThumbnailTask(FrameTask::new(
        source_arg(source),
        thumbnail_request(options),
        frame_sampler::thumbnail,
    )))
}

/// `n` distinct representative frames in time order, each encoded.
#[napi(
    catch_unwind,
    ts_args_type = "source: string | Buffer | Uint8Array, n: number, options?: ThumbnailOptions"
)]
pub fn storyboard(
    source: Unknown<'_>,
    n: Unknown<'_>,
    options: Option<Unknown<'_>>,
) -> AsyncTask<StoryboardTask> {
    AsyncTask::new(StoryboardTask(FrameTask::new(
        source_arg(source),
        storyboard_request(n, options),
        |s, (n, o)| frame_sampler::storyboard(s, *n, o),
    )))
}
