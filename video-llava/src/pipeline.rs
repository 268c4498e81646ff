//! The typed API: load a checkpoint once, answer many requests (from several threads at once).
//!
//! A request goes: media -> [`crate::preprocess`] -> prompt ([`crate::prompt`]) -> context-length
//! check -> vision towers and projector -> placeholder merge -> prefill -> decode loop
//! ([`crate::generation`]), streaming text pieces through a callback or a [`TextStream`].

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

use crate::config::VideoLlavaConfig;
use crate::generation::{CancelToken, GenerationParams, LogitsProcessor, OutputText, StopReason};
use crate::model::{KvCache, VideoLlavaModel};
use crate::preprocess::{self, IMAGE_SIZE};
use crate::prompt::{count_placeholders, format_prompt, PlaceholderSpec, PromptTokenizer};
use crate::quantize::{self, Quantization, QuantizeOptions, SaveReport};
use crate::{Error, Result};

/// How [`VideoLlava::from_pretrained_with`] loads a checkpoint: device, compute dtype and
/// quantization.
///
/// ```no_run
/// use video_llava::{DType, Device, LoadOptions, Quantization, VideoLlava};
///
/// # fn main() -> video_llava::Result<()> {
/// let options = LoadOptions::new(&Device::Cpu, DType::F32).quantize(Quantization::Q4K);
/// let model = VideoLlava::from_pretrained_with("LanguageBind/Video-LLaVA-7B-hf", &options)?;
/// model.save_quantized("video-llava-7b-q4k".as_ref())?; // loads later without quantizing
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Where the weights live and the model runs.
    pub device: Device,
    /// The compute dtype (f32, f16 or bf16); norms and unquantized weights use it (the token
    /// embeddings too, except that an f16 or bf16 checkpoint's stay in its dtype under f32).
    pub dtype: DType,
    /// The block type of the Llama's linear weights, quantized while the checkpoint is read.
    pub quantize: Quantization,
    /// Also quantize the vision towers' and projector's linear weights (to Q8_0).
    pub quantize_vision: bool,
    /// The dtype KV caches hold keys and values in (f32, f16 or bf16); `None`: the compute
    /// dtype. See [`VideoLlavaModel::set_kv_cache_dtype`].
    pub kv_cache_dtype: Option<DType>,
}

impl Default for LoadOptions {
    /// The CPU, float32, no quantization.
    fn default() -> Self {
        Self::new(&Device::Cpu, DType::F32)
    }
}

impl LoadOptions {
    /// Full precision on `device` in `dtype`.
    pub fn new(device: &Device, dtype: DType) -> Self {
        Self {
            device: device.clone(),
            dtype,
            quantize: Quantization::None,
            quantize_vision: false,
            kv_cache_dtype: None,
        }
    }

    /// Sets the Llama's quantization.
    pub fn quantize(mut self, quantize: Quantization) -> Self {
        self.quantize = quantize;
        self
    }

    /// Sets whether the vision towers and projector are quantized too.
    pub fn quantize_vision(mut self, yes: bool) -> Self {
        self.quantize_vision = yes;
        self
    }

    /// Sets the dtype of the KV caches' keys and values (f16 halves their memory beside f32
    /// compute).
    pub fn kv_cache_dtype(mut self, dtype: DType) -> Self {
        self.kv_cache_dtype = Some(dtype);
        self
    }

    /// The quantization part.
    pub fn quantize_options(&self) -> QuantizeOptions {
        QuantizeOptions {
            text: self.quantize,
            vision: self.quantize_vision,
        }
    }
}

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
    /// A video file or bytes, sampled with `options` (feature `video`).
    #[cfg(feature = "video")]
    Source {
        /// The video.
        source: frame_sampler::Source,
        /// How to sample it; [`VideoInput::source`] uses 8 frames, `Uniform`, exact seeking.
        options: frame_sampler::SampleOptions,
    },
    /// Preprocessed pixels, `(frames, 3, 224, 224)` or `(1, frames, 3, 224, 224)` float.
    Pixels(Tensor),
}

impl VideoInput {
    /// A video file or bytes sampled as the Hugging Face docs do: 8 frames at
    /// `arange(0, total, total / 8)`, decoded exactly.
    #[cfg(feature = "video")]
    pub fn source(source: frame_sampler::Source) -> Self {
        Self::Source {
            source,
            options: default_sample_options(),
        }
    }

    /// RGB8 frames from `frame-sampler`.
    #[cfg(feature = "video")]
    pub fn from_batch(batch: frame_sampler::FrameBatch) -> Self {
        Self::Frames {
            count: batch.len(),
            height: batch.height as usize,
            width: batch.width as usize,
            data: batch.data,
        }
    }
}

/// The sampling [`VideoInput::source`] uses: `Uniform(8)`, exact seeking.
#[cfg(feature = "video")]
pub fn default_sample_options() -> frame_sampler::SampleOptions {
    frame_sampler::SampleOptions::new(frame_sampler::Sampling::Uniform(8))
        .seek(frame_sampler::SeekMode::Exact)
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
    /// Preprocessed pixels, `(3, 224, 224)` or `(1, 3, 224, 224)` float.
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

impl Request {
    /// A question about nothing but text.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            ..Self::default()
        }
    }

    /// Adds the video.
    pub fn with_video(mut self, video: VideoInput) -> Self {
        self.video = Some(video);
        self
    }

    /// Adds an image (after those already added).
    pub fn with_image(mut self, image: ImageInput) -> Self {
        self.images.push(image);
        self
    }

    /// Adds an earlier `(question, answer)` turn (after those already added).
    pub fn with_turn(mut self, question: impl Into<String>, answer: impl Into<String>) -> Self {
        self.history.push((question.into(), answer.into()));
        self
    }

    /// The checks [`VideoLlava::generate`] makes before any work (an empty question is an
    /// [`Error::InvalidRequest`]), for callers that queue a request and want to refuse it first.
    pub fn validate(&self) -> Result<()> {
        if self.question.trim().is_empty() {
            return Err(Error::InvalidRequest("the question is empty".into()));
        }
        Ok(())
    }

    /// The conversation text with placeholders, as it is tokenized.
    pub fn prompt_text(&self) -> String {
        format_prompt(
            &self.question,
            &self.history,
            self.images.len(),
            self.video.is_some(),
        )
    }
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

impl Timings {
    /// The sum of all stages.
    pub fn total(&self) -> Duration {
        self.preprocess + self.vision + self.prefill + self.decode
    }
}

/// The result of a generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The generated text (stop string and EOS excluded).
    pub text: String,
    /// The generated token ids (EOS excluded; the tokens of a stop string included).
    pub token_ids: Vec<u32>,
    /// Prompt length in tokens after placeholder expansion.
    pub prompt_tokens: usize,
    /// Of those, how many came from a cached prefix ([`crate::Conversation`]) instead of a
    /// prefill; 0 for [`VideoLlava::generate`].
    pub cached_tokens: usize,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Per-stage timings.
    pub timings: Timings,
}

impl Generation {
    /// Decode speed: generated tokens per second of decode time (0 when nothing was timed).
    ///
    /// The first token comes from the prefill, so it is not counted against decode time.
    pub fn tokens_per_second(&self) -> f64 {
        let secs = self.timings.decode.as_secs_f64();
        let steps = self.token_ids.len().saturating_sub(1);
        if secs > 0.0 {
            steps as f64 / secs
        } else {
            0.0
        }
    }
}

struct Inner {
    model: VideoLlavaModel,
    tokenizer: PromptTokenizer,
    dir: PathBuf,
    eos: Vec<u32>,
}

/// A loaded Video-LLaVA checkpoint. Cheap to clone (shared weights); `Send + Sync`.
///
/// ```no_run
/// use std::ops::ControlFlow;
/// use video_llava::{DType, Device, GenerationParams, Request, VideoInput, VideoLlava};
///
/// # fn main() -> video_llava::Result<()> {
/// let model = VideoLlava::from_pretrained("LanguageBind/Video-LLaVA-7B-hf", &Device::Cpu, DType::F32)?;
/// let frames = vec![0u8; 8 * 240 * 320 * 3]; // 8 RGB8 frames, e.g. from frame-sampler
/// let request = Request::new("What happens in this video?").with_video(VideoInput::Frames {
///     data: frames,
///     count: 8,
///     height: 240,
///     width: 320,
/// });
/// let params = GenerationParams { max_new_tokens: 64, ..GenerationParams::default() };
/// let answer = model.generate(&request, &params, None, &mut |piece| {
///     print!("{piece}");
///     ControlFlow::Continue(())
/// })?;
/// println!("\n{} tokens, {:?}", answer.token_ids.len(), answer.stop_reason);
///
/// // The same as an iterator running on a background thread.
/// let mut stream = model.stream(request, params);
/// for piece in stream.by_ref() {
///     print!("{}", piece?);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct VideoLlava {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VideoLlava {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoLlava")
            .field("dir", &self.inner.dir)
            .field("device", self.inner.model.device())
            .field("dtype", &self.inner.model.dtype())
            .finish()
    }
}

/// Media of one request, preprocessed.
pub(crate) struct Pixels {
    /// `(1, F, 3, 224, 224)`.
    pub(crate) video: Option<Tensor>,
    /// `(K, 3, 224, 224)`.
    pub(crate) images: Option<Tensor>,
}

impl Pixels {
    pub(crate) fn num_frames(&self) -> Result<Option<usize>> {
        self.video.as_ref().map(|v| Ok(v.dim(1)?)).transpose()
    }

    pub(crate) fn num_images(&self) -> Result<usize> {
        Ok(self
            .images
            .as_ref()
            .map(|i| i.dim(0))
            .transpose()?
            .unwrap_or(0))
    }
}

impl VideoLlava {
    /// Loads a model from a local directory, or (feature `hub`) a hub repo id, in full
    /// precision (or as saved, for a directory [`VideoLlava::save_quantized`] wrote).
    pub fn from_pretrained(dir_or_repo: &str, device: &Device, dtype: DType) -> Result<Self> {
        Self::from_pretrained_with(dir_or_repo, &LoadOptions::new(device, dtype))
    }

    /// Loads a model from a local directory, or (feature `hub`) a hub repo id, with `options`:
    /// the Llama's linear weights are quantized one tensor at a time as they are read, so the
    /// full-precision model is never resident. A directory written by
    /// [`VideoLlava::save_quantized`] (a `model.gguf`) loads without quantizing again.
    pub fn from_pretrained_with(dir_or_repo: &str, options: &LoadOptions) -> Result<Self> {
        #[cfg(feature = "hub")]
        let dir = crate::hub::resolve(dir_or_repo)?;
        #[cfg(not(feature = "hub"))]
        let dir = {
            let dir = PathBuf::from(dir_or_repo);
            if !dir.is_dir() {
                return Err(Error::MissingFile {
                    dir,
                    what: "the model directory (hub downloads need the `hub` feature)".into(),
                });
            }
            dir
        };
        Self::from_dir_with(&dir, options)
    }

    /// Loads a model from a local directory: `config.json`, the safetensors (or `model.gguf`)
    /// and `tokenizer.json`.
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::from_dir_with(dir, &LoadOptions::new(device, dtype))
    }

    /// [`VideoLlava::from_dir`] with [`LoadOptions`].
    pub fn from_dir_with(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        if dir.is_dir() && !tokenizer_path.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: "tokenizer.json (the checkpoint's tokenizer)".into(),
            });
        }
        let mut model = VideoLlavaModel::load_quantized(
            dir,
            &options.device,
            options.dtype,
            options.quantize_options(),
        )?;
        if let Some(dtype) = options.kv_cache_dtype {
            model.set_kv_cache_dtype(dtype)?;
        }
        let tokenizer = PromptTokenizer::from_file(
            &tokenizer_path,
            PlaceholderSpec::from_config(model.config()),
        )?;
        Ok(Self::from_parts(model, tokenizer, dir.to_path_buf()))
    }

    /// Assembles a model and a tokenizer loaded by the caller.
    pub fn from_parts(model: VideoLlavaModel, tokenizer: PromptTokenizer, dir: PathBuf) -> Self {
        let mut eos = model.config().eos_token_ids().to_vec();
        if eos.is_empty() {
            eos.extend(tokenizer.eos_token_id());
        }
        Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                dir,
                eos,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VideoLlavaConfig {
        self.inner.model.config()
    }

    /// What the weights hold: which parts are quantized, and to what.
    pub fn quantization(&self) -> QuantizeOptions {
        self.inner.model.quantization()
    }

    /// Writes this model, quantized as it was loaded, to the new or empty directory `dst` as
    /// `model.gguf` plus `config.json` and `tokenizer.json` ([`quantize::save_quantized`]);
    /// [`VideoLlava::from_pretrained`] loads `dst` memory-mapped, without quantizing again.
    ///
    /// The tensors are read again from the checkpoint the model was loaded from, one at a time
    /// (the quantization is deterministic, so the blocks are those the model holds). A model
    /// loaded from a GGUF directory is copied. Errors: [`Error::InvalidRequest`] for a model
    /// loaded without quantization or a non-empty `dst`, [`Error::Io`] writing `dst`.
    pub fn save_quantized(&self, dst: &Path) -> Result<SaveReport> {
        let options = self.quantization();
        if options.is_none() {
            return Err(Error::InvalidRequest(
                "this model was loaded without quantization: load it with a quantization (q8_0, q4k, q6k) before saving it quantized".into(),
            ));
        }
        let src = self.dir();
        if crate::weights::ModelFiles::locate(src)?.gguf.is_some() {
            return quantize::copy_model_dir(src, dst);
        }
        quantize::save_quantized(src, dst, options, &mut |_, _| {})
    }

    /// The tokenizer with the prompt template's placeholder expansion.
    pub fn tokenizer(&self) -> &PromptTokenizer {
        &self.inner.tokenizer
    }

    /// The model (towers, projector, language model).
    pub fn model(&self) -> &VideoLlavaModel {
        &self.inner.model
    }

    /// The directory the checkpoint was loaded from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.inner.model.device()
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.inner.model.dtype()
    }

    /// The dtype its KV caches hold keys and values in.
    pub fn kv_cache_dtype(&self) -> DType {
        self.inner.model.kv_cache_dtype()
    }

    /// The end-of-sequence ids generation stops at.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.inner.eos
    }

    /// Expands the placeholders of a full prompt text and tokenizes it (BOS included).
    /// `num_frames` is the video's frame count (used only when the prompt has `<video>`);
    /// each `<image>` takes the model's image token count.
    pub fn tokenize(&self, prompt: &str, num_frames: usize) -> Result<Vec<u32>> {
        let (images, videos) = count_placeholders(prompt);
        self.inner
            .tokenizer
            .encode(prompt, images, (videos > 0).then_some(num_frames))
    }

    /// Decodes token ids to text (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.tokenizer.decode(ids)
    }

    /// Preprocesses a request's video into `(1, F, 3, 224, 224)` f32 pixels (samples the
    /// source first when it is one).
    pub fn video_pixels(&self, video: &VideoInput) -> Result<Tensor> {
        let cpu = Device::Cpu;
        let pixels = match video {
            VideoInput::Frames {
                data,
                count,
                height,
                width,
            } => preprocess::frames_tensor(data, *count, *height, *width, &cpu)?,
            #[cfg(feature = "video")]
            VideoInput::Source { source, options } => {
                let batch = frame_sampler::sample_frames(source, options)?;
                preprocess::frames_tensor(
                    &batch.data,
                    batch.len(),
                    batch.height as usize,
                    batch.width as usize,
                    &cpu,
                )?
            }
            VideoInput::Pixels(t) => match t.dims() {
                [f, 3, IMAGE_SIZE, IMAGE_SIZE] if *f > 0 => t.clone(),
                [1, f, 3, IMAGE_SIZE, IMAGE_SIZE] if *f > 0 => t.squeeze(0)?,
                dims => {
                    return Err(Error::InvalidRequest(format!(
                        "video pixels must be (F, 3, 224, 224) or (1, F, 3, 224, 224), got {dims:?}"
                    )))
                }
            },
        };
        Ok(pixels.unsqueeze(0)?)
    }

    /// Preprocesses one image into `(3, 224, 224)` f32 pixels (decoding it first when encoded).
    pub fn image_pixels(&self, image: &ImageInput) -> Result<Tensor> {
        let cpu = Device::Cpu;
        let rgb = match image {
            ImageInput::Rgb {
                data,
                height,
                width,
            } => return preprocess::image_tensor(data, *height, *width, &cpu),
            ImageInput::Pixels(t) => {
                return match t.dims() {
                    [3, IMAGE_SIZE, IMAGE_SIZE] => Ok(t.clone()),
                    [1, 3, IMAGE_SIZE, IMAGE_SIZE] => Ok(t.squeeze(0)?),
                    dims => Err(Error::InvalidRequest(format!(
                        "image pixels must be (3, 224, 224) or (1, 3, 224, 224), got {dims:?}"
                    ))),
                }
            }
            ImageInput::Path(path) => image::open(path)
                .map_err(|e| match e {
                    image::ImageError::IoError(source) => Error::Io {
                        path: path.clone(),
                        source,
                    },
                    e => Error::Image(format!("{}: {e}", path.display())),
                })?
                .to_rgb8(),
            ImageInput::Encoded(bytes) => image::load_from_memory(bytes)
                .map_err(|e| Error::Image(format!("image bytes: {e}")))?
                .to_rgb8(),
        };
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        preprocess::image_tensor(rgb.as_raw(), height, width, &cpu)
    }

    pub(crate) fn request_pixels(&self, request: &Request) -> Result<Pixels> {
        let video = request
            .video
            .as_ref()
            .map(|v| self.video_pixels(v))
            .transpose()?;
        let images = if request.images.is_empty() {
            None
        } else {
            let each = request
                .images
                .iter()
                .map(|i| self.image_pixels(i))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::stack(&each, 0)?)
        };
        Ok(Pixels { video, images })
    }

    pub(crate) fn check_context(&self, prompt_tokens: usize, max_new_tokens: usize) -> Result<()> {
        let context = self.config().max_position_embeddings();
        if prompt_tokens.saturating_add(max_new_tokens) > context {
            return Err(Error::PromptTooLong {
                tokens: prompt_tokens,
                max_new_tokens,
                context,
            });
        }
        Ok(())
    }

    /// Vision features and merged embeddings `(1, L, hidden)` for expanded ids.
    pub(crate) fn embeddings(
        &self,
        input_ids: &[u32],
        pixel_values_videos: Option<&Tensor>,
        pixel_values_images: Option<&Tensor>,
    ) -> Result<Tensor> {
        let model = &self.inner.model;
        let video = pixel_values_videos
            .map(|p| model.encode_videos(p))
            .transpose()?;
        let images = pixel_values_images
            .map(|p| model.encode_images(p))
            .transpose()?;
        model.embed(input_ids, images.as_ref(), video.as_ref())
    }

    /// Answers a request; `on_piece` receives each decoded text piece as soon as it is whole and
    /// may return `ControlFlow::Break(())` to stop.
    ///
    /// The prompt length is checked against the context before the vision towers run
    /// ([`Error::PromptTooLong`]); `cancel` is polled before every token.
    pub fn generate(
        &self,
        request: &Request,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        params.validate()?;
        let mut ready = match self.prefill(request, params, cancel)? {
            Prefill::Ready(ready) => ready,
            Prefill::Cancelled(generation) => return Ok(generation),
        };
        let start = Instant::now();
        let decoded = self.decode_loop(
            &ready.ids,
            &mut ready.cache,
            ready.logits,
            params,
            cancel,
            on_piece,
        )?;
        ready.timings.decode = start.elapsed();
        Ok(decoded.into_generation(ready.ids.len(), 0, ready.timings))
    }

    /// Everything of [`VideoLlava::generate`] before the first token: media, prompt, vision and
    /// prefill into a cache with room for `max_new_tokens` (the params are validated by the
    /// caller). A cancel seen between the stages ends it with an empty generation.
    pub(crate) fn prefill(
        &self,
        request: &Request,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
    ) -> Result<Prefill> {
        let prepared = self.prepare(request, params)?;
        self.prefill_prepared(prepared, cancel)
    }

    /// The first stage of [`VideoLlava::prefill`]: the media preprocessed and the prompt
    /// tokenized and checked against the context (nothing of the language model has run).
    pub(crate) fn prepare(&self, request: &Request, params: &GenerationParams) -> Result<Prepared> {
        request.validate()?;
        let mut timings = Timings::default();
        let start = Instant::now();
        let pixels = self.request_pixels(request)?;
        timings.preprocess = start.elapsed();
        let prompt = request.prompt_text();
        let ids =
            self.inner
                .tokenizer
                .encode(&prompt, pixels.num_images()?, pixels.num_frames()?)?;
        self.check_context(ids.len(), params.max_new_tokens)?;
        Ok(Prepared {
            positions: ids.len() + params.max_new_tokens,
            ids,
            pixels,
            timings,
        })
    }

    /// The second stage: vision towers and prefill.
    pub(crate) fn prefill_prepared(
        &self,
        prepared: Prepared,
        cancel: Option<&CancelToken>,
    ) -> Result<Prefill> {
        let cancelled = || cancel.is_some_and(CancelToken::is_cancelled);
        let Prepared {
            ids,
            pixels,
            mut timings,
            positions,
        } = prepared;
        let finished_early = |timings| {
            Prefill::Cancelled(Generation {
                text: String::new(),
                token_ids: Vec::new(),
                prompt_tokens: ids.len(),
                cached_tokens: 0,
                stop_reason: StopReason::Cancelled,
                timings,
            })
        };
        if cancelled() {
            return Ok(finished_early(timings));
        }

        let model = &self.inner.model;
        // The layer loops poll `cancel` too; an error out of a stage after a cancel is the cancel.
        let _scope = crate::generation::CancelScope::enter(cancel);
        let start = Instant::now();
        let embeds = self.embeddings(&ids, pixels.video.as_ref(), pixels.images.as_ref());
        drop(pixels);
        timings.vision = start.elapsed();
        let embeds = match embeds {
            Err(_) if cancelled() => return Ok(finished_early(timings)),
            embeds => embeds?,
        };
        if cancelled() {
            return Ok(finished_early(timings));
        }

        let start = Instant::now();
        let mut cache = model.new_cache(positions)?;
        let logits = model.forward_embeds(&embeds, &mut cache);
        drop(embeds);
        timings.prefill = start.elapsed();
        let logits = match logits {
            Err(_) if cancelled() => return Ok(finished_early(timings)),
            logits => logits?,
        };
        Ok(Prefill::Ready(Prefilled {
            ids,
            cached: 0,
            cache,
            logits,
            timings,
        }))
    }

    /// The decode loop every generation shares. `logits` are the prompt's last position (the
    /// prompt, `prompt_ids`, already in `cache`); each sampled token is fed back through
    /// `cache` until EOS, a stop string, `max_new_tokens`, a cancel or `on_piece`'s `Break`.
    pub(crate) fn decode_loop(
        &self,
        prompt_ids: &[u32],
        cache: &mut KvCache,
        mut logits: Tensor,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Decoded> {
        let model = &self.inner.model;
        let mut sequence = self.sequence(prompt_ids, params)?;
        while let Some(next) = sequence.step(&logits, cancel, on_piece)? {
            logits = model.forward_tokens(&[next], cache)?;
        }
        sequence.finish(on_piece)
    }

    /// The decoding state of one answer to `prompt_ids`: what [`VideoLlava::decode_loop`] and
    /// a batch advance one token at a time.
    pub(crate) fn sequence(
        &self,
        prompt_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<Sequence<'_>> {
        let mut processor = LogitsProcessor::new(params)?;
        processor.observe(prompt_ids);
        Ok(Sequence {
            processor,
            output: OutputText::new(self.inner.tokenizer.tokenizer(), &params.stop),
            token_ids: Vec::new(),
            max_new_tokens: params.max_new_tokens,
            eos: &self.inner.eos,
            stop_reason: None,
        })
    }

    /// Runs [`VideoLlava::generate`] on a background thread and returns its text pieces as an
    /// iterator. Dropping the stream cancels the generation; [`TextStream::finish`] gives the
    /// final [`Generation`].
    pub fn stream(&self, request: Request, params: GenerationParams) -> TextStream {
        let model = self.clone();
        spawn_stream(move |cancel, on_piece| {
            model.generate(&request, &params, Some(cancel), on_piece)
        })
    }

    /// Last-position logits `(vocab,)` in f32 for already-expanded `input_ids`, with optional
    /// `(1, F, 3, 224, 224)` video pixels and `(K, 3, 224, 224)` image pixels.
    pub fn logits(
        &self,
        input_ids: &[u32],
        pixel_values_videos: Option<&Tensor>,
        pixel_values_images: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.check_context(input_ids.len(), 0)?;
        let embeds = self.embeddings(input_ids, pixel_values_videos, pixel_values_images)?;
        let model = &self.inner.model;
        let mut cache = model.new_cache(input_ids.len())?;
        model.forward_embeds(&embeds, &mut cache)
    }

    /// Greedy generation from already-expanded ids and pixels; returns the new token ids
    /// (stops at EOS, which is not included).
    pub fn generate_ids(
        &self,
        input_ids: &[u32],
        pixel_values_videos: Option<&Tensor>,
        pixel_values_images: Option<&Tensor>,
        max_new_tokens: usize,
    ) -> Result<Vec<u32>> {
        let params = GenerationParams::greedy(max_new_tokens);
        params.validate()?;
        self.check_context(input_ids.len(), max_new_tokens)?;
        let embeds = self.embeddings(input_ids, pixel_values_videos, pixel_values_images)?;
        let model = &self.inner.model;
        let mut cache = model.new_cache(input_ids.len() + max_new_tokens)?;
        let logits = model.forward_embeds(&embeds, &mut cache)?;
        let decoded =
            self.decode_loop(input_ids, &mut cache, logits, &params, None, &mut |_| {
                ControlFlow::Continue(())
            })?;
        Ok(decoded.token_ids)
    }
}

/// A prompt in its KV cache, ready for its first token.
pub(crate) struct Prefilled {
    /// The prompt, expanded.
    pub(crate) ids: Vec<u32>,
    /// Positions taken from a cached prefix rather than computed.
    pub(crate) cached: usize,
    /// The prompt's keys and values, with room for the answer.
    pub(crate) cache: KvCache,
    /// The last position's logits.
    pub(crate) logits: Tensor,
    /// Preprocess, vision and prefill time.
    pub(crate) timings: Timings,
}

/// A request's media preprocessed and prompt tokenized, before the language model runs.
pub(crate) struct Prepared {
    ids: Vec<u32>,
    pixels: Pixels,
    timings: Timings,
    /// The KV cache positions it needs: the prompt and the answer's `max_new_tokens`.
    pub(crate) positions: usize,
}

/// What [`VideoLlava::prefill`] ended with.
pub(crate) enum Prefill {
    /// Ready to decode.
    Ready(Prefilled),
    /// Cancelled before the prompt was in the cache.
    Cancelled(Generation),
}

/// One answer being decoded: sampling, stop conditions and the streamed text.
pub(crate) struct Sequence<'a> {
    processor: LogitsProcessor,
    output: OutputText<'a>,
    token_ids: Vec<u32>,
    max_new_tokens: usize,
    eos: &'a [u32],
    stop_reason: Option<StopReason>,
}

impl Sequence<'_> {
    /// Takes the logits `(vocab,)` after the last token and picks the next: `Some(token)` to
    /// feed the model, `None` once the answer has ended (cancelled, EOS, a stop string, the
    /// token limit), when it must not be called again.
    pub(crate) fn step(
        &mut self,
        logits: &Tensor,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Option<u32>> {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Ok(self.stop(StopReason::Cancelled));
        }
        let mut scores = logits.to_vec1::<f32>()?;
        let next = self.processor.sample(&mut scores)?;
        if self.eos.contains(&next) {
            return Ok(self.stop(StopReason::Eos));
        }
        self.token_ids.push(next);
        self.processor.observe(&[next]);
        let step = self.output.push(next)?;
        if let Some(piece) = step.piece {
            if on_piece(&piece).is_break() {
                return Ok(self.stop(StopReason::Cancelled));
            }
        }
        if step.stopped {
            return Ok(self.stop(StopReason::StopString));
        }
        if self.token_ids.len() == self.max_new_tokens {
            return Ok(self.stop(StopReason::MaxTokens));
        }
        Ok(Some(next))
    }

    fn stop(&mut self, reason: StopReason) -> Option<u32> {
        self.stop_reason = Some(reason);
        None
    }

    /// Flushes held-back text and returns the answer.
    pub(crate) fn finish(
        mut self,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Decoded> {
        let stop_reason = self.stop_reason.unwrap_or(StopReason::Cancelled);
        if stop_reason != StopReason::StopString {
            if let Some(piece) = self.output.finish()? {
                // Held-back text (an incomplete character, a would-be stop string) goes out
                // even after a cancel, so the pieces always add up to the returned text.
                let _ = on_piece(&piece);
            }
        }
        Ok(Decoded {
            text: self.output.text().to_string(),
            token_ids: self.token_ids,
            stop_reason,
        })
    }
}

/// What a decode loop produced.
pub(crate) struct Decoded {
    pub(crate) text: String,
    pub(crate) token_ids: Vec<u32>,
    pub(crate) stop_reason: StopReason,
}

impl Decoded {
    pub(crate) fn into_generation(
        self,
        prompt_tokens: usize,
        cached_tokens: usize,
        timings: Timings,
    ) -> Generation {
        Generation {
            text: self.text,
            token_ids: self.token_ids,
            prompt_tokens,
            cached_tokens,
            stop_reason: self.stop_reason,
            timings,
        }
    }
}

/// Runs `job` on a background thread, its pieces and result coming back through a
/// [`TextStream`] (whose drop cancels the job's token).
pub(crate) fn spawn_stream<F>(job: F) -> TextStream
where
    F: FnOnce(&CancelToken, &mut dyn FnMut(&str) -> ControlFlow<()>) -> Result<Generation>
        + Send
        + 'static,
{
    let (tx, rx) = mpsc::sync_channel(STREAM_BUFFER);
    let cancel = CancelToken::new();
    let thread_cancel = cancel.clone();
    let thread_tx: SyncSender<StreamEvent> = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("video-llava-stream".into())
        .spawn(move || {
            let mut on_piece = |piece: &str| {
                if thread_tx
                    .send(StreamEvent::Piece(piece.to_string()))
                    .is_err()
                {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            // A panic is reported as an error with its message, not as a thread that died.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job(&thread_cancel, &mut on_piece)
            }))
            .unwrap_or_else(|panic| {
                Err(Error::Compute(candle_core::Error::Msg(format!(
                    "internal error: the generation panicked: {}",
                    crate::error::panic_message(&*panic)
                ))))
            });
            let _ = thread_tx.send(StreamEvent::Done(result));
        });
    if let Err(source) = spawned {
        let _ = tx.send(StreamEvent::Done(Err(Error::Io {
            path: PathBuf::from("<thread spawn>"),
            source,
        })));
    }
    TextStream {
        rx,
        cancel,
        generation: None,
        failed: None,
        done: false,
    }
}

/// The error of a generation thread that ended without sending its result.
fn thread_died() -> Error {
    Error::Compute(candle_core::Error::Msg(
        "the generation thread ended without a result".into(),
    ))
}

/// Pieces buffered between the generating thread and a slow reader.
const STREAM_BUFFER: usize = 64;

enum StreamEvent {
    Piece(String),
    Done(Result<Generation>),
}

/// Text pieces of a generation running on a background thread ([`VideoLlava::stream`]).
///
/// Iterating yields each piece as it is decoded; an error ends the iteration. Dropping the
/// stream cancels the generation at its next token.
pub struct TextStream {
    rx: Receiver<StreamEvent>,
    cancel: CancelToken,
    generation: Option<Generation>,
    /// The error the iterator already returned, again (for [`TextStream::finish`]).
    failed: Option<Error>,
    done: bool,
}

impl std::fmt::Debug for TextStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextStream")
            .field("done", &self.done)
            .field("generation", &self.generation)
            .finish()
    }
}

impl TextStream {
    /// Asks the generation to stop at its next token; the stream then ends with
    /// [`StopReason::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel()
    }

    /// The token that cancels this stream (to hand to another thread).
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// The final result, once the iterator has ended without an error.
    pub fn generation(&self) -> Option<&Generation> {
        self.generation.as_ref()
    }

    /// Waits for the end of the generation (dropping pieces not read yet) and returns it.
    pub fn finish(mut self) -> Result<Generation> {
        for item in self.by_ref() {
            item?;
        }
        match self.generation.take() {
            Some(generation) => Ok(generation),
            // The iterator already handed the error out: the same kind and message again.
            None => Err(self.failed.take().unwrap_or_else(thread_died)),
        }
    }
}

impl TextStream {
    /// Like [`Iterator::next`], but waits at most `timeout`: `None` when nothing arrived in time
    /// (the generation goes on), `Some(next)` otherwise. Lets a caller that must stay responsive
    /// (an interpreter checking for Ctrl-C, say) wait in slices, also before the first piece,
    /// which comes only after the whole prompt is encoded.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Option<Result<String>>> {
        if self.done {
            return Some(None);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(event) => Some(self.take(Ok(event))),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(self.take(Err(mpsc::RecvError))),
        }
    }

    fn take(
        &mut self,
        event: std::result::Result<StreamEvent, mpsc::RecvError>,
    ) -> Option<Result<String>> {
        match event {
            Ok(StreamEvent::Piece(piece)) => Some(Ok(piece)),
            Ok(StreamEvent::Done(Ok(generation))) => {
                self.done = true;
                self.generation = Some(generation);
                None
            }
            Ok(StreamEvent::Done(Err(e))) => {
                self.done = true;
                self.failed = Some(e.echo());
                Some(Err(e))
            }
            // The thread died without a result (a panic inside candle).
            Err(mpsc::RecvError) => {
                self.done = true;
                self.failed = Some(thread_died());
                Some(Err(thread_died()))
            }
        }
    }
}

impl Iterator for TextStream {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let event = self.rx.recv();
        self.take(event)
    }
}

impl Drop for TextStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_timeout_waits_in_slices_and_then_yields_what_next_would() {
        let (tx, rx) = mpsc::sync_channel(4);
        let mut stream = TextStream {
            rx,
            cancel: CancelToken::new(),
            generation: None,
            failed: None,
            done: false,
        };
        let slice = Duration::from_millis(20);
        let t = Instant::now();
        assert!(stream.next_timeout(slice).is_none(), "nothing sent yet");
        assert!(t.elapsed() >= slice);
        tx.send(StreamEvent::Piece("Hello".into())).unwrap();
        assert_eq!(
            stream.next_timeout(slice).unwrap().unwrap().unwrap(),
            "Hello"
        );
        drop(tx);
        // A generation thread gone without a result is an error, then the end.
        assert!(stream.next_timeout(slice).unwrap().unwrap().is_err());
        assert!(stream.next_timeout(slice).unwrap().is_none());
        assert!(stream.next().is_none());
    }

    #[test]
    fn a_cancelled_stage_stops_the_vision_towers_and_the_prefill_between_layers() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-legacy");
        let api = VideoLlava::from_pretrained(dir, &Device::Cpu, DType::F32).unwrap();
        let ids = api.tokenize("USER: <video>\nHi ASSISTANT:", 8).unwrap();
        let pixels = Tensor::zeros((1, 8, 3, 224, 224), DType::F32, &Device::Cpu).unwrap();
        let model = api.model();
        let embeds = api.embeddings(&ids, Some(&pixels), None).unwrap();

        let cancel = CancelToken::new();
        {
            let _scope = crate::generation::CancelScope::enter(Some(&cancel));
            // Not cancelled: the stages run as without a scope.
            let mut cache = model.new_cache(ids.len()).unwrap();
            model.forward_embeds(&embeds, &mut cache).unwrap();
            assert_eq!(cache.len(), ids.len());
            cancel.cancel();
            let err = api.embeddings(&ids, Some(&pixels), None).unwrap_err();
            assert!(
                err.to_string().contains(crate::generation::STAGE_CANCELLED),
                "{err}"
            );
            let mut cache = model.new_cache(ids.len()).unwrap();
            let err = model.forward_embeds(&embeds, &mut cache).unwrap_err();
            assert!(
                err.to_string().contains(crate::generation::STAGE_CANCELLED),
                "{err}"
            );
            assert_eq!(
                cache.len(),
                0,
                "a cancelled prefill does not advance the cache"
            );
        }
        // The scope ended with the guard: the same (cancelled) token no longer reaches the loops.
        let mut cache = model.new_cache(ids.len()).unwrap();
        model.forward_embeds(&embeds, &mut cache).unwrap();
        // Through the pipeline, a cancel in the middle of the vision tower or of the prefill
        // (at its second layer) is a cancelled generation, not an error.
        let request = Request::new("Hi").with_video(VideoInput::Frames {
            data: vec![0; 8 * 16 * 16 * 3],
            count: 8,
            height: 16,
            width: 16,
        });
        use crate::generation::{test_hook, Stage};
        for stage in [Stage::Vision, Stage::Text] {
            let cancel = CancelToken::new();
            test_hook::cancel_at(stage, 2);
            let generation = api
                .generate(
                    &request,
                    &GenerationParams::greedy(4),
                    Some(&cancel),
                    &mut |_| ControlFlow::Continue(()),
                )
                .unwrap();
            assert!(cancel.is_cancelled(), "{stage:?}: the hook did not fire");
            assert_eq!(generation.stop_reason, StopReason::Cancelled, "{stage:?}");
            assert!(generation.token_ids.is_empty(), "{stage:?}");
            let t = generation.timings;
            match stage {
                Stage::Vision => assert!(t.vision > Duration::ZERO && t.prefill.is_zero()),
                Stage::Text => assert!(t.vision > Duration::ZERO && t.prefill > Duration::ZERO),
            }
        }
        // Without a cancel the same request answers.
        let generation = api
            .generate(&request, &GenerationParams::greedy(4), None, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_ne!(generation.stop_reason, StopReason::Cancelled);
        assert!(!generation.token_ids.is_empty());
    }

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<VideoLlava>();
        send::<TextStream>();
        send::<Request>();
        send::<Generation>();
    }

    #[test]
    fn request_builders_fill_the_template() {
        let request = Request::new("Compare them.")
            .with_image(ImageInput::Encoded(Vec::new()))
            .with_video(VideoInput::Frames {
                data: Vec::new(),
                count: 0,
                height: 0,
                width: 0,
            });
        assert_eq!(
            request.prompt_text(),
            "USER: <image>\n<video>\nCompare them. ASSISTANT:"
        );
        let request = Request::new("And then?").with_turn("What happens?", "A crash.");
        assert_eq!(
            request.prompt_text(),
            "USER: What happens? ASSISTANT: A crash. USER: And then? ASSISTANT:"
        );
    }

    #[test]
    fn tokens_per_second_skips_the_prefill_token() {
        let generation = Generation {
            text: String::new(),
            token_ids: vec![1; 11],
            prompt_tokens: 5,
            cached_tokens: 0,
            stop_reason: StopReason::MaxTokens,
            timings: Timings {
                decode: Duration::from_secs(2),
                ..Timings::default()
            },
        };
        assert_eq!(generation.tokens_per_second(), 5.0);
        assert_eq!(generation.timings.total(), Duration::from_secs(2));
    }
}
