//! The typed API: load a checkpoint once, answer many requests (from several threads at once).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};

use crate::generation::{CancelToken, GenerationParams, StopReason};
use crate::Result;

/// Frames, a video source, or pixels already preprocessed.
#[derive(Clone, Debug)]
pub enum VideoInput {
    /// RGB8 frames, `count x height x width x 3`.
    Frames {
        /// The bytes.
        data: Vec<u8>,
        /// Frame count.
        count: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// A video file or bytes, sampled with `sampling` (feature `video`).
    #[cfg(feature = "video")]
    Source {
        /// The video.
        source: frame_sampler::Source,
        /// How to sample it (default: 8 frames, `Uniform`, exact).
        options: frame_sampler::SampleOptions,
    },
    /// Preprocessed pixels, `(frames, 3, 224, 224)` float.
    Pixels(Tensor),
}

/// An image: RGB8 pixels, an encoded file or bytes, or preprocessed pixels.
#[derive(Clone, Debug)]
pub enum ImageInput {
    /// RGB8 pixels, `height x width x 3`.
    Rgb {
        /// The bytes.
        data: Vec<u8>,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// An encoded image file (JPEG, PNG, WebP, ...).
    Path(PathBuf),
    /// An encoded image in memory.
    Encoded(Vec<u8>),
    /// Preprocessed pixels, `(3, 224, 224)` float.
    Pixels(Tensor),
}

/// One question (with optional earlier turns) about a video and/or images.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The user's question. Placeholders are added for the video and images unless the text already has them.
    pub question: String,
    /// Earlier turns, `(question, answer)`, oldest first; the video and images belong to the first turn.
    pub history: Vec<(String, String)>,
    /// The video, if any.
    pub video: Option<VideoInput>,
    /// The images, if any, in prompt order.
    pub images: Vec<ImageInput>,
}

/// Time spent per stage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Frame decoding and preprocessing.
    pub preprocess: Duration,
    /// Vision towers and projector.
    pub vision: Duration,
    /// The prompt's forward pass.
    pub prefill: Duration,
    /// All decode steps.
    pub decode: Duration,
}

/// The result of a generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The generated text (stop string and EOS excluded).
    pub text: String,
    /// The generated token ids (EOS excluded).
    pub token_ids: Vec<u32>,
    /// Prompt length in tokens after placeholder expansion.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Per-stage timings.
    pub timings: Timings,
}

/// A loaded Video-LLaVA checkpoint. Cheap to clone (shared weights); `Send + Sync`.
#[derive(Clone)]
pub struct VideoLlava {
    _private: (),
}

impl VideoLlava {
    /// Loads a model from a local directory, or (feature `hub`) a hub repo id.
    pub fn from_pretrained(dir_or_repo: &str, device: &Device, dtype: DType) -> Result<Self> {
        let _ = (dir_or_repo, device, dtype);
        todo!()
    }

    /// Expands the placeholders of a full prompt text and tokenizes it (BOS included).
    pub fn tokenize(&self, prompt: &str, num_frames: usize) -> Result<Vec<u32>> {
        let _ = (prompt, num_frames);
        todo!()
    }

    /// Answers a request; `on_piece` receives each decoded text piece as soon as it is whole and
    /// may return `ControlFlow::Break(())` to stop.
    pub fn generate(
        &self,
        request: &Request,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let _ = (request, params, cancel, on_piece);
        todo!()
    }

    /// Last-position logits `(vocab,)` in f32 for already-expanded `input_ids`, with optional
    /// `(1, F, 3, 224, 224)` video pixels and `(K, 3, 224, 224)` image pixels.
    pub fn logits(
        &self,
        input_ids: &[u32],
        pixel_values_videos: Option<&Tensor>,
        pixel_values_images: Option<&Tensor>,
    ) -> Result<Tensor> {
        let _ = (input_ids, pixel_values_videos, pixel_values_images);
        todo!()
    }

    /// Greedy generation from already-expanded ids and pixels; returns the new token ids (stops at EOS).
    pub fn generate_ids(
        &self,
        input_ids: &[u32],
        pixel_values_videos: Option<&Tensor>,
        pixel_values_images: Option<&Tensor>,
        max_new_tokens: usize,
    ) -> Result<Vec<u32>> {
        let _ = (input_ids, pixel_values_videos, pixel_values_images, max_new_tokens);
        todo!()
    }
}
