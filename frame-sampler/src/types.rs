//! The public data types: what a probe reports, what a sample request asks for, what comes back.

/// Facts about a video's best video stream and its container.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct VideoInfo {
    /// Container format name as FFmpeg names it (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, `mpegts`, ...).
    pub container: String,
    /// Codec name (`h264`, `hevc`, `vp9`, `av1`, `mpeg4`, ...).
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
    /// Average frame rate (frames / duration) as the container reports it.
    pub avg_fps: f64,
    /// Real base frame rate (the stream's `r_frame_rate`).
    pub real_fps: f64,
    /// Duration in seconds.
    pub duration: f64,
    /// Number of frames.
    pub frame_count: u64,
    /// How `frame_count` was obtained.
    pub frame_count_source: FrameCountSource,
    /// Whether the container has at least one audio stream.
    pub has_audio: bool,
}

/// Where a frame count comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FrameCountSource {
    /// Counted from the container's index of packets: exact.
    Index,
    /// Counted by reading every packet: exact.
    Counted,
    /// The container's header, unverified.
    Header,
    /// Estimated from duration x frame rate.
    Estimated,
}

impl FrameCountSource {
    /// `"index"`, `"counted"`, `"header"` or `"estimated"`, as the bindings and the CLI report it.
    pub fn as_str(&self) -> &'static str {
        match self {
            FrameCountSource::Index => "index",
            FrameCountSource::Counted => "counted",
            FrameCountSource::Header => "header",
            FrameCountSource::Estimated => "estimated",
        }
    }
}

/// Which frames to sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    /// `n` frames at `floor(i * total / n)` (the Hugging Face docs' `np.arange(0, total, total / n)`).
    Uniform(usize),
    /// `n` frames at `linspace(0, total - 1, n)` rounded down (the original Video-LLaVA code).
    Linspace(usize),
    /// Explicit frame indices in presentation order (duplicates allowed; output keeps the order given).
    Indices(Vec<u64>),
    /// The frame shown at each of these times, in seconds from the first frame: the last frame
    /// that starts at or before the time (so variable frame rate and gaps behave as on screen).
    /// Negative, NaN or past-the-end times are an invalid request.
    Timestamps(Vec<f64>),
    /// One frame every `seconds`, at times 0, `seconds`, `2 * seconds`, ... before the end.
    Every(f64),
    /// Keyframes only, at most `max` of them spread over the video.
    Keyframes {
        /// The most keyframes to return.
        max: usize,
    },
}

impl Sampling {
    /// The one check of what a request may ask for (whatever the video): a count of at least
    /// one, a non-empty list, times that are finite and `>= 0`, a positive interval. Both
    /// [`SampleOptions::validate`] and the planner call it; what depends on the video (past the
    /// end, the memory budget) is the planner's.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            Sampling::Uniform(0) | Sampling::Linspace(0) | Sampling::Keyframes { max: 0 } => {
                Err("num_frames must be at least 1".into())
            }
            Sampling::Indices(v) if v.is_empty() => {
                Err("indices must list at least one frame".into())
            }
            Sampling::Timestamps(times) if times.is_empty() => {
                Err("timestamps must list at least one time".into())
            }
            Sampling::Timestamps(times) => {
                match times.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
                    Some(t) => Err(format!(
                        "timestamps must be finite numbers of seconds >= 0, got {t}"
                    )),
                    None => Ok(()),
                }
            }
            Sampling::Every(every) if !(every.is_finite() && *every > 0.0) => Err(format!(
                "every must be a positive number of seconds, got {every}"
            )),
            _ => Ok(()),
        }
    }
}

/// How to reach each target frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeekMode {
    /// The frame returned for index i is bit-for-bit the i-th frame in presentation order.
    #[default]
    Exact,
    /// The nearest keyframe at or before each target; no decoding forward. The returned
    /// indices and timestamps are the keyframes'. On MP4/MOV files with a constant frame rate
    /// it reads only the keyframes it returns (the container's sample table stands in for the
    /// packet index, checked against the packets it reads) and decodes them on all cores; other
    /// files are indexed packet by packet as in `Exact`.
    Fast,
}

/// An optional resize done in swscale, so full-size frames are never held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Scale so the shortest side is this many pixels, aspect kept.
    ShortestSide(u32),
    /// Scale so the longest side is at most this many pixels, aspect kept (never upscales).
    MaxSide(u32),
    /// Exactly this size.
    Exact {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl Resize {
    /// The one check of a resize: every size at least one pixel (see [`Sampling::check`]).
    pub(crate) fn check(&self) -> Result<(), String> {
        match *self {
            Resize::ShortestSide(0) => Err("resize shortest_side must be at least 1 pixel".into()),
            Resize::MaxSide(0) => Err("resize max_side must be at least 1 pixel".into()),
            Resize::Exact { width, height } if width == 0 || height == 0 => Err(format!(
                "resize width and height must be at least 1 pixel, got {width}x{height}"
            )),
            _ => Ok(()),
        }
    }
}

/// A sampling request.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// Which frames.
    pub sampling: Sampling,
    /// How to reach them.
    pub seek: SeekMode,
    /// Optional resize.
    pub resize: Option<Resize>,
    /// Apply the display matrix's rotation (default true).
    pub rotate: bool,
    /// Decoder threads; 0 = all cores.
    pub threads: usize,
    /// The most bytes the output batch may take; a request over it is refused with [`crate::Error::TooLarge`].
    pub max_bytes: usize,
}

impl SampleOptions {
    /// Default memory budget for one batch: 2 GiB.
    pub const DEFAULT_MAX_BYTES: usize = 2 << 30;

    /// Options with defaults (exact seek, rotation applied, no resize, all cores).
    pub fn new(sampling: Sampling) -> Self {
        Self {
            sampling,
            seek: SeekMode::Exact,
            resize: None,
            rotate: true,
            threads: 0,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
    /// Sets the seek mode.
    pub fn seek(mut self, seek: SeekMode) -> Self {
        self.seek = seek;
        self
    }
    /// Sets the resize.
    pub fn resize(mut self, resize: Option<Resize>) -> Self {
        self.resize = resize;
        self
    }
    /// Sets whether rotation is applied.
    pub fn rotate(mut self, rotate: bool) -> Self {
        self.rotate = rotate;
        self
    }
    /// Sets the decoder thread count (0 = all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Checks everything about the request that does not depend on the video: a frame count of
    /// at least 1 (`num_frames`), timestamps that are finite and `>= 0`, `every` a positive number
    /// of seconds, resize sides of at least 1 pixel, `max_bytes` at least 1. [`crate::sample_frames`]
    /// and [`crate::Video::sample`] call it first; front ends call it to refuse a request before
    /// opening anything. Indices past the end, timestamps past the end and frames over
    /// `max_bytes` depend on the video and are found when sampling.
    ///
    /// Errors: [`crate::Error::InvalidRequest`] naming the field (in snake_case).
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::InvalidRequest(m));
        self.sampling.check().or_else(bad)?;
        if let Some(resize) = &self.resize {
            resize.check().or_else(bad)?;
        }
        if self.max_bytes == 0 {
            return bad("max_bytes must be at least 1".into());
        }
        Ok(())
    }
}

/// Sampled frames: one contiguous `N x H x W x 3` RGB8 buffer plus each frame's index and time.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameBatch {
    /// `count * height * width * 3` bytes, frame-major, rows top to bottom, RGB.
    pub data: Vec<u8>,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Each frame's index in presentation order.
    pub indices: Vec<u64>,
    /// Each frame's presentation time in seconds, measured from the first frame (a stream that
    /// starts at an offset, like most MPEG-TS files, still reports 0.0 for its first frame).
    pub timestamps: Vec<f64>,
    /// Set when the container's frame count was wrong and targets were clamped to the frames that exist:
    /// the header promised more frames than the file holds (indices were then planned over the
    /// frames that exist, and explicit indices between the two counts map to the last frame), or
    /// frames the index lists failed to decode at the end of the file.
    pub clamped: bool,
}

impl FrameBatch {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
    /// Bytes in one frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
    /// The RGB8 bytes of frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.frame_bytes();
        &self.data[i * n..(i + 1) * n]
    }
}

/// Encoded image formats for thumbnails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEG.
    #[default]
    Jpeg,
    /// PNG.
    Png,
    /// WebP (lossless).
    WebP,
}

impl std::str::FromStr for ImageFormat {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            "png" => Ok(Self::Png),
            "webp" => Ok(Self::WebP),
            other => Err(crate::Error::InvalidRequest(format!(
                "unknown image format {other:?} (expected jpeg, png or webp)"
            ))),
        }
    }
}

/// Thumbnail request options.
#[derive(Clone, Debug, PartialEq)]
pub struct ThumbnailOptions {
    /// Longest side of the output, in pixels (aspect kept, never upscaled).
    pub max_size: u32,
    /// Output format.
    pub format: ImageFormat,
    /// JPEG quality, 1-100.
    pub quality: u8,
    /// Apply rotation (default true).
    pub rotate: bool,
}

impl ThumbnailOptions {
    /// Checks the options before anything is opened: `max_size` at least 1 pixel, `quality`
    /// 1-100. [`crate::thumbnail`] and [`crate::storyboard`] call it first.
    ///
    /// Errors: [`crate::Error::InvalidRequest`] naming the field (in snake_case).
    pub fn validate(&self) -> crate::Result<()> {
        crate::thumbnail::validate(self)
    }
}

impl Default for ThumbnailOptions {
    fn default() -> Self {
        Self {
            max_size: 320,
            format: ImageFormat::Jpeg,
            quality: 85,
            rotate: true,
        }
    }
}

/// An encoded thumbnail.
#[derive(Clone, Debug, PartialEq)]
pub struct Thumbnail {
    /// The encoded image.
    pub data: Vec<u8>,
    /// Its format.
    pub format: ImageFormat,
    /// Presentation time of the chosen frame, in seconds.
    pub timestamp: f64,
    /// Width of the encoded image.
    pub width: u32,
    /// Height of the encoded image.
    pub height: u32,
}
