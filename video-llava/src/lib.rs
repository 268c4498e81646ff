//! Video-LLaVA inference on candle.
//!
//! Module map (one job each):
//! - [`config`]: the checkpoint's `config.json` in every form it comes in.
//! - [`weights`]: safetensors discovery, sharding, key layouts, dtype conversion.
//! - [`model`]: the math — CLIP vision towers, projector, Llama with a KV cache, the placeholder merge.
//! - [`preprocess`]: the CLIP image processor on RGB8 frames.
//! - [`prompt`]: tokenizer, USER/ASSISTANT template, placeholder expansion.
//! - [`generation`]: sampling parameters, logits processing, incremental detokenizing, stop conditions.
//! - [`pipeline`]: the typed API, [`VideoLlava`].
//! - [`batch`]: several generations decoded together, one forward pass per step.
//! - [`conversation`]: many questions about one video from one cached KV prefix, [`Conversation`].
//! - [`prefix_cache`]: conversations kept for requests about the same media, [`PrefixCache`].
//! - [`quantize`]: which weights are quantized to which GGUF block type; saving GGUF models.
//! - [`openai`]: OpenAI's chat completions protocol, for every front end that serves it.
//! - [`hub`]: resolving a repo id to a local directory through `hf-hub` (feature `hub`).

#[cfg(feature = "video")]
pub mod analyze;
pub mod batch;
pub mod config;
pub mod conversation;
pub mod device;
/// Error type.
pub mod error;
pub mod generation;
#[cfg(feature = "hub")]
pub mod hub;
pub mod model;
#[cfg(feature = "video")]
pub mod openai;
pub mod pipeline;
pub mod prefix_cache;
pub mod preprocess;
pub mod prompt;
pub mod quantize;
pub mod weights;

#[cfg(feature = "video")]
pub use analyze::{Analysis, AnalyzerOptions, VideoAnalyzer};
pub use batch::{BatchOptions, BatchRequest, MAX_BATCH};
pub use candle_core::{DType, Device, Tensor};
pub use config::VideoLlavaConfig;
pub use conversation::Conversation;
pub use device::DeviceRequest;
pub use error::{panic_message, Error, ErrorKind, Result};
#[cfg(feature = "video")]
pub use frame_sampler;
pub use generation::{CancelToken, GenerationParams, StopReason};
pub use pipeline::{
    Generation, ImageInput, LoadOptions, Request, TextStream, Timings, VideoInput, VideoLlava,
};
pub use prefix_cache::{PrefixCache, PrefixCacheStats};
pub use prompt::PromptTokenizer;
pub use quantize::{Quantization, QuantizeOptions};
