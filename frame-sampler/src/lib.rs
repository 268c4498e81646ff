//! Exact, fast frame sampling, probing and thumbnails on FFmpeg.
//!
//! Each free function opens the source, does its work and forgets what it read; a [`Video`]
//! opens it once and keeps the container, the packet index and the decoder between calls
//! (probe, sample and thumbnail one file through one `Video`).
//!
//! ```no_run
//! use frame_sampler::{probe, sample_frames, SampleOptions, Sampling, SeekMode, Source};
//! let source = Source::from("clip.mp4");
//! let info = probe(&source)?;
//! println!("{}x{} {:.1}s {} frames", info.width, info.height, info.duration, info.frame_count);
//! let batch = sample_frames(&source, &SampleOptions::new(Sampling::Uniform(8)).seek(SeekMode::Exact))?;
//! assert_eq!(batch.len(), 8);
//! # Ok::<(), frame_sampler::Error>(())
//! ```
//!
//! # Conventions
//!
//! - Frame indices count frames in presentation order from 0, over the frames that really exist
//!   (counted from the packets, not taken from a header).
//! - Timestamps are seconds from the first frame (an MPEG-TS file that starts at 1.4 s reports its
//!   first frame at 0.0). With variable frame rate, `Timestamps`/`Every` pick the frame on screen at
//!   that time: the last frame that starts at or before it.
//! - An index past the frames that exist is an [`Error::InvalidRequest`], except when the
//!   container's header promised that frame (a truncated file): then it is clamped to the last
//!   frame and [`FrameBatch::clamped`] is set. `clamped` is also set whenever the header's frame
//!   count was larger than the frames the file holds, or frames listed in the index failed to
//!   decode at the end of the file.
//! - A timestamp past the end of the last frame is an [`Error::InvalidRequest`].
//! - [`SeekMode::Exact`] reads the packets once without decoding (an index: exact frame count,
//!   pts of every frame, keyframes), then decodes from the keyframe at or before each target
//!   (by pts, so open GOPs' leading frames get the GOP they need), forward only as far as the
//!   target, letting H.264/HEVC decoders drop pictures nothing references on the way. Streams
//!   whose timestamps are missing or duplicated (MPEG-4 part 2 in AVI) are decoded sequentially
//!   from the start and counted instead. [`sample_frames_with_stats`] reports the work done.
//! - [`SeekMode::Fast`] returns keyframes only. On MP4/MOV with a constant frame rate it skips
//!   the index pass: FFmpeg's copy of the sample table gives the frame count and times, and only
//!   the keyframes returned are read (each checked against the table) and decoded, one decoder
//!   per core. The same path serves [`Sampling::Keyframes`] and exact requests whose targets are
//!   all keyframes (a keyframe decodes alone to the picture a sequential decode shows). Anything
//!   the table cannot vouch for (edit lists that drop frames, variable frame rate, fragmented or
//!   truncated files) takes the indexed path instead.
//! - Memory: a request whose output (`N x H x W x 3`) exceeds [`SampleOptions::max_bytes`] is
//!   refused with [`Error::TooLarge`] before anything is decoded, and so are frames larger than
//!   [`MAX_FRAME_SIDE`] / [`MAX_FRAME_PIXELS`] unless a [`Resize`] is requested.
//! - Limits: every [`Video`] (and each free function's) has [`Limits`]: the largest input, a
//!   wall-clock budget per call (FFmpeg's interrupt callback and the packet loop stop a file
//!   that would decode forever) and a cap on decoder threads. The defaults apply unless
//!   [`Video::open_with`] sets others; a refusal is [`Error::Limit`] naming the limit.

mod convert;
mod decode;
mod error;
mod fast;
mod index;
mod limits;
mod media;
mod plan;
mod probe;
mod sample;
mod source;
mod thumbnail;
mod types;
mod video;

pub use decode::SampleStats;
pub use error::{Error, Result};
pub use limits::{Limit, Limits};
pub use sample::{MAX_FRAME_PIXELS, MAX_FRAME_SIDE};
pub use source::{ReadSeek, SharedReader, Source};
pub use types::*;
pub use video::Video;

/// Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`; not a public API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::plan::fuzz_plan;
}

/// Opens `source` and reports the facts of its best video stream.
pub fn probe(source: &Source) -> Result<VideoInfo> {
    Video::open(source.clone())?.info()
}

/// Decodes the frames `options` asks for and returns them as one contiguous RGB8 batch.
pub fn sample_frames(source: &Source, options: &SampleOptions) -> Result<FrameBatch> {
    options.validate()?;
    Video::open(source.clone())?.sample(options)
}

/// Like [`sample_frames`], also reporting how much decoding it took (for benchmarks and tests).
pub fn sample_frames_with_stats(
    source: &Source,
    options: &SampleOptions,
) -> Result<(FrameBatch, SampleStats)> {
    options.validate()?;
    Video::open(source.clone())?.sample_with_stats(options)
}

/// One representative frame of the whole video, encoded.
///
/// Keyframes spread over the whole duration (exact frames at evenly spread times when the clip
/// has too few keyframes) are decoded small and scored: black, blank and blurry frames are set
/// aside, then the frame whose colour histograms are nearest the average wins, as in FFmpeg's
/// `thumbnail` filter. A black or blank frame comes back only when every frame looked at is one.
/// The result is at most `options.max_size` pixels on its longest side (aspect kept, never
/// upscaled), rotated upright unless `options.rotate` is false.
///
/// Errors: [`Error::InvalidRequest`] for `max_size` 0 or `quality` outside 1-100, the
/// sampler's errors for sources it cannot read, [`Error::Encode`] when encoding fails.
pub fn thumbnail(source: &Source, options: &ThumbnailOptions) -> Result<Thumbnail> {
    thumbnail::validate(options)?;
    Video::open(source.clone())?.thumbnail(options)
}

/// Encodes `width x height` RGB8 pixels (row-major, 3 bytes per pixel) as the thumbnails are:
/// JPEG at `quality` (1-100), PNG, or lossless WebP (`quality` ignored for those two).
///
/// Errors: [`Error::Encode`] for a buffer that is not `width x height x 3` bytes, a zero side,
/// or an encoder failure; [`Error::InvalidRequest`] for `quality` outside 1-100.
pub fn encode_image(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>> {
    thumbnail::check_quality("image", quality)?;
    thumbnail::encode(rgb, width, height, format, quality)
}

/// `n` distinct representative frames in time order, each encoded like a [`thumbnail`].
///
/// The timeline is cut into `n` equal segments and each gives its most representative frame
/// that is neither black, blank, blurry nor a near-copy of the previous pick; segments with no
/// such frame (a black section) are made up for by good frames from elsewhere. Timestamps are
/// distinct and strictly increasing. Fewer than `n` frames come back only when the video has
/// fewer than `n` frames.
///
/// Errors: [`Error::InvalidRequest`] for `n` 0, otherwise as [`thumbnail`].
pub fn storyboard(source: &Source, n: usize, options: &ThumbnailOptions) -> Result<Vec<Thumbnail>> {
    thumbnail::validate_storyboard(n, options)?;
    Video::open(source.clone())?.storyboard(n, options)
}
