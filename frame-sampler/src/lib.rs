//! Exact, fast frame sampling, probing and thumbnails on FFmpeg.
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

mod error;
mod source;
mod thumbnail;
mod types;

pub use error::{Error, Result};
pub use source::Source;
pub use types::*;

/// Opens `source` and reports the facts of its best video stream.
pub fn probe(source: &Source) -> Result<VideoInfo> {
    let _ = source;
    todo!("frame-sampler probe")
}

/// Decodes the frames `options` asks for and returns them as one contiguous RGB8 batch.
pub fn sample_frames(source: &Source, options: &SampleOptions) -> Result<FrameBatch> {
    let _ = (source, options);
    todo!("frame-sampler sample_frames")
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
    thumbnail::thumbnail(source, options)
}

/// `n` distinct representative frames in time order, each encoded like a [`thumbnail`].
///
/// The timeline is cut into `n` equal segments and each gives its most representative frame
/// that is neither black, blank, blurry nor a near-copy of the previous pick; segments with no
/// such frame (a black section) are made up for by good frames from elsewhere. Timestamps are
/// distinct and strictly increasing. Fewer than `n` frames come back only when `3 n` evenly
/// spread times land on fewer than `n` distinct frames (a video shorter than `n` frames).
///
/// Errors: [`Error::InvalidRequest`] for `n` 0, otherwise as [`thumbnail`].
pub fn storyboard(source: &Source, n: usize, options: &ThumbnailOptions) -> Result<Vec<Thumbnail>> {
    thumbnail::storyboard(source, n, options)
}
