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
pub fn thumbnail(source: &Source, options: &ThumbnailOptions) -> Result<Thumbnail> {
    let _ = (source, options);
    todo!("frame-sampler thumbnail")
}

/// `n` distinct representative frames in time order, each encoded.
pub fn storyboard(source: &Source, n: usize, options: &ThumbnailOptions) -> Result<Vec<Thumbnail>> {
    let _ = (source, n, options);
    todo!("frame-sampler storyboard")
}
