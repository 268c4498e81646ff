//! The `VideoLlava` class: load once, answer many requests, concurrently.

use std::ops::ControlFlow;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Either, Float32Array, PromiseRaw, Uint32Array, Unknown};
use napi::{Env, Task};
use napi_derive::napi;
use video_llava::{
    CancelToken, DType, Device, DeviceRequest, Generation as RsGeneration,
    LoadOptions as RsLoadOptions, Quantization, Tensor, VideoLlava as RsVideoLlava,
};

use crate::args;
use crate::cancel::{AbortListener, TeardownGuard};
use crate::conversation::Shared;
use crate::error::{guarded, JsFailure};
use crate::on_token::PieceSink;
use crate::request::{Call, Prepared};
use crate::stream::TokenStream;

/// Where and in which precision to load the model.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct LoadOptions {
    /// `auto` (default: CUDA, then Metal, when built in and present, else the CPU), `cpu`,
    /// `cuda[:N]` (or `gpu`), `metal[:N]` (or `mps`); GPU ones need a build with that backend.
    pub device: Option<String>,
    /// `float32`, `float16` or `bfloat16` (aliases `f32`, `fp16`, `bf16`, ...); by default
    /// float32 on the CPU, bfloat16 on CUDA, float16 on Metal, as the CLI and Python choose.
    #[napi(ts_type = "'float32' | 'float16' | 'bfloat16'")]
    pub dtype: Option<String>,
    /// Quantize the language model's linear weights while they are read: `q8_0`, `q4k`, `q6k`
    /// or `none` (default). A directory written by `saveQuantized` loads as saved.
    #[napi(ts_type = "'none' | 'q8_0' | 'q4k' | 'q6k'")]
    pub quantize: Option<String>,
    /// Also quantize the vision towers and the projector (to q8_0); default false.
    pub quantize_vision: Option<bool>,
    /// The type the KV cache holds keys and values in (same names as `dtype`); by default the
    /// compute dtype. `float16` beside float32 compute halves the cache's memory.
    #[napi(ts_type = "'float32' | 'float16' | 'bfloat16'")]
    pub kv_cache_dtype: Option<String>,
}

/// What `fromPretrained` loads with, converted on the calling thread.
struct LoadCall {
    path: String,
    device: DeviceRequest,
    dtype: Option<DType>,
    quantize: Quantization,
    quantize_vision: bool,
    kv_cache_dtype: Option<DType>,
}

impl LoadOptions {
    /// The device and dtype names, read by the core's policy on the calling thread (the device
    /// is opened on the worker); `None` dtype: the opened device's default.
    fn parse(&self) -> Result<(DeviceRequest, Option<DType>), JsFailure> {
        let device = match self.device.as_deref() {
            Some(name) => name.parse::<DeviceRequest>().map_err(JsFailure::from)?,
            None => DeviceRequest::default(),
        };
        let dtype = self
            .dtype
            .as_deref()
            .map(video_llava::device::parse_dtype)
            .transpose()
            .map_err(JsFailure::from)?;
        Ok((device, dtype))
    }

    /// The quantization, parsed by the core (so every front end accepts the same names).
    fn quantization(&self) -> Result<(Quantization, bool), JsFailure> {
        let quantize = self
            .quantize
            .as_deref()
            .unwrap_or("none")
            .parse::<Quantization>()
            .map_err(JsFailure::from)?;
        Ok((quantize, self.quantize_vision.unwrap_or(false)))
    }

    /// The KV cache's dtype, by the core's names.
    fn kv_cache_dtype(&self) -> Result<Option<DType>, JsFailure> {
        self.kv_cache_dtype
            .as_deref()
            .map(video_llava::device::parse_dtype)
            .transpose()
            .map_err(JsFailure::from)
    }
}

/// Per-stage timings of a generation, in seconds.
#[napi(object, object_from_js = false)]
pub struct Timings {
    /// Frame decoding and preprocessing.
    pub preprocess: f64,
    /// Vision towers and projector.
    pub vision: f64,
    /// The prompt's forward pass.
    pub prefill: f64,
    /// All decode steps.
    pub decode: f64,
}

/// The result of a generation.
#[napi(object, object_from_js = false)]
pub struct Generation {
    /// The generated text (stop string and end-of-sequence excluded).
    pub text: String,
    /// The generated token ids (end-of-sequence excluded).
    pub token_ids: Vec<u32>,
    /// Prompt length in tokens after placeholder expansion.
    pub prompt_tokens: u32,
    /// Of those, how many came from a conversation's cached prefix (0 for `generate`).
    pub cached_tokens: u32,
    /// Why it stopped.
    #[napi(ts_type = "'eos' | 'stop_string' | 'max_tokens' | 'cancelled'")]
    pub stop_reason: String,
    /// Time spent per stage.
    pub timings: Timings,
}

impl From<RsGeneration> for Generation {
    fn from(g: RsGeneration) -> Self {
        Self {
            text: g.text,
            token_ids: g.token_ids,
            prompt_tokens: g.prompt_tokens as u32,
            cached_tokens: g.cached_tokens as u32,
            stop_reason: g.stop_reason.as_str().to_owned(),
            timings: Timings {
                preprocess: g.timings.preprocess.as_secs_f64(),
                vision: g.timings.vision.as_secs_f64(),
                prefill: g.timings.prefill.as_secs_f64(),
                decode: g.timings.decode.as_secs_f64(),
            },
        }
    }
}

/// What answers a generation call: the model itself, or a conversation's cached prefix.
#[derive(Clone)]
pub enum Engine {
    /// `model.generate()` and `model.stream()`.
    Model(RsVideoLlava),
    /// A conversation's `generate`/`stream` or (with `chat`) its `chat`.
    Conversation {
        /// The conversation.
        shared: Arc<Shared>,
        /// Whether the answer is appended as a turn.
        chat: bool,
    },
}

impl Engine {
    fn generate(
        &self,
        prepared: &Prepared,
        cancel: &CancelToken,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<RsGeneration, JsFailure> {
        match self {
            Engine::Model(model) => model
                .generate(&prepared.request, &prepared.params, Some(cancel), on_piece)
                .map_err(JsFailure::from),
            Engine::Conversation { shared, chat } => {
                shared.generate(prepared, *chat, cancel, on_piece)
            }
        }
    }
}

/// Runs one generation on the calling thread; `also` sees every piece first.
///
/// Cancellation wins over any other outcome: an aborted call rejects with `AbortError` even when
/// the engine got to finish or failed on its way out.
pub fn run_generation(
    engine: &Engine,
    prepared: &Prepared,
    cancel: &CancelToken,
    sink: Option<&PieceSink>,
    mut also: impl FnMut(&str),
) -> Result<RsGeneration, JsFailure> {
    if cancel.is_cancelled() {
        return Err(JsFailure::aborted());
    }
    let result = guarded(|| {
        let mut on_piece = |piece: &str| {
            also(piece);
            if let Some(sink) = sink {
                sink.send(piece);
                if sink.failed() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        };
        engine.generate(prepared, cancel, &mut on_piece)
    });
    if let Some(sink) = sink {
        sink.flush();
    }
    if cancel.is_cancelled() {
        return Err(JsFailure::aborted());
    }
    result
}

/// The promise of [`VideoLlava::from_pretrained`].
pub struct LoadTask {
    /// Taken by the one `compute`.
    call: Option<Result<LoadCall, JsFailure>>,
}

#[napi]
impl Task for LoadTask {
    type Output = Result<RsVideoLlava, JsFailure>;
    type JsValue = VideoLlava;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let call = self
            .call
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        Ok(call.and_then(|call| {
            guarded(|| {
                let (device, dtype) = call
                    .device
                    .open_with_dtype(call.dtype)
                    .map_err(JsFailure::from)?;
                let mut options = RsLoadOptions::new(&device, dtype)
                    .quantize(call.quantize)
                    .quantize_vision(call.quantize_vision);
                options.kv_cache_dtype = call.kv_cache_dtype;
                RsVideoLlava::from_pretrained_with(&call.path, &options).map_err(JsFailure::from)
            })
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output
            .map(|inner| VideoLlava { inner })
            .map_err(|f| f.into_napi(&env))
    }
}

/// The promise of [`VideoLlava::save_quantized`].
pub struct SaveQuantizedTask {
    model: RsVideoLlava,
    /// Taken by the one `compute`.
    dir: Option<Result<String, JsFailure>>,
}

#[napi]
impl Task for SaveQuantizedTask {
    type Output = Result<String, JsFailure>;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let dir = self
            .dir
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        let model = &self.model;
        Ok(dir.and_then(|dir| {
            guarded(|| {
                let report = model
                    .save_quantized(std::path::Path::new(&dir))
                    .map_err(JsFailure::from)?;
                Ok(report.path.display().to_string())
            })
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|f| f.into_napi(&env))
    }
}

/// The promise of [`VideoLlava::generate`].
pub struct GenerateTask {
    engine: Engine,
    /// Taken by the one `compute`.
    call: Option<Call>,
    /// Set by the caller's `AbortSignal` or the environment's teardown.
    cancel: CancelToken,
    /// Moved here from the call by `compute`, so `resolve` (main thread) can see what `onToken` threw.
    sink: Option<PieceSink>,
    /// Removed once the promise has settled.
    teardown: TeardownGuard,
    /// The `abort` listener on the caller's signal, removed once the promise has settled.
    listener: Option<AbortListener>,
}

impl GenerateTask {
    /// The promise of one `generate` call (the model's or a conversation's), tied to the
    /// caller's signal and to the environment's teardown; it runs on an engine thread.
    pub fn start<'env>(
        env: &'env Env,
        engine: Engine,
        mut call: Call,
    ) -> napi::Result<PromiseRaw<'env, Generation>> {
        let cancel = call.cancel.clone();
        let teardown = TeardownGuard::new(env, &cancel);
        let listener = call.listener.take();
        let task = GenerateTask {
            engine,
            call: Some(call),
            cancel,
            sink: None,
            teardown,
            listener,
        };
        crate::engine_thread::spawn(env, "video-llava-generate", task)
    }
}

#[napi]
impl Task for GenerateTask {
    type Output = Result<RsGeneration, JsFailure>;
    type JsValue = Generation;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let Some(call) = self.call.take() else {
            return Ok(Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        };
        self.sink = call.sink;
        Ok(call.prepared.and_then(|prepared| {
            run_generation(
                &self.engine,
                &prepared,
                &self.cancel,
                self.sink.as_ref(),
                |_| (),
            )
        }))
    }

    fn finally(self, env: Env) -> napi::Result<()> {
        self.teardown.release(&env);
        if let Some(listener) = self.listener {
            listener.remove(&env);
        }
        Ok(())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        // An `onToken` that threw stopped the generation: its exception is the rejection.
        if let Some(thrown) = self.sink.as_ref().and_then(PieceSink::take_thrown) {
            return Err(thrown);
        }
        output.map(Generation::from).map_err(|f| f.into_napi(&env))
    }
}

/// Options of `generateIds` and `logits`: pixels already preprocessed by the CLIP processor.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct PixelOptions {
    /// Video pixels `(1, frames, 3, 224, 224)` flattened, CLIP-normalized.
    pub pixel_values_videos: Option<Float32Array>,
    /// Image pixels `(images, 3, 224, 224)` flattened, CLIP-normalized.
    pub pixel_values_images: Option<Float32Array>,
    /// For `generateIds`: the most new tokens (default 16).
    pub max_new_tokens: Option<f64>,
}

const PIXELS_PER_FRAME: usize = 3 * 224 * 224;

fn frames_of(name: &str, data: &[f32]) -> Result<usize, JsFailure> {
    if data.is_empty() || !data.len().is_multiple_of(PIXELS_PER_FRAME) {
        return Err(JsFailure::invalid(format!(
            "{name}: {} values is not a whole number of 3 x 224 x 224 frames",
            data.len()
        )));
    }
    Ok(data.len() / PIXELS_PER_FRAME)
}

/// Input ids, video pixels, image pixels: what `generate_ids` and `logits` take.
type ModelInputs = (Vec<u32>, Option<Tensor>, Option<Tensor>);

/// Raw model inputs owned by the task: ids and pixels copied out of JavaScript's arrays.
pub struct RawInputs {
    ids: Vec<u32>,
    video: Option<(Vec<f32>, usize)>,
    images: Option<(Vec<f32>, usize)>,
}

impl RawInputs {
    fn new(ids: Vec<u32>, options: &PixelOptions) -> Result<Self, JsFailure> {
        if ids.is_empty() {
            return Err(JsFailure::invalid("inputIds must not be empty"));
        }
        let video = match &options.pixel_values_videos {
            Some(v) => Some((v.to_vec(), frames_of("pixelValuesVideos", v)?)),
            None => None,
        };
        let images = match &options.pixel_values_images {
            Some(v) => Some((v.to_vec(), frames_of("pixelValuesImages", v)?)),
            None => None,
        };
        Ok(Self { ids, video, images })
    }

    /// The ids, the video pixels and the image pixels as tensors (moved, not copied).
    fn into_tensors(self) -> Result<ModelInputs, JsFailure> {
        let tensor = |data: Vec<f32>, shape: &[usize]| {
            Tensor::from_vec(data, shape, &Device::Cpu)
                .map_err(|e| JsFailure::new("ERR_COMPUTE", format!("compute: {e}")))
        };
        let video = match self.video {
            Some((data, frames)) => Some(tensor(data, &[1, frames, 3, 224, 224])?),
            None => None,
        };
        let images = match self.images {
            Some((data, count)) => Some(tensor(data, &[count, 3, 224, 224])?),
            None => None,
        };
        Ok((self.ids, video, images))
    }
}

/// The promise of [`VideoLlava::generate_ids`].
pub struct GenerateIdsTask {
    model: RsVideoLlava,
    inputs: Option<Result<(RawInputs, usize), JsFailure>>,
}

#[napi]
impl Task for GenerateIdsTask {
    type Output = Result<Vec<u32>, JsFailure>;
    type JsValue = Vec<u32>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let inputs = self
            .inputs
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        let model = &self.model;
        Ok(inputs.and_then(|(inputs, max_new_tokens)| {
            guarded(|| {
                let (ids, video, images) = inputs.into_tensors()?;
                model
                    .generate_ids(&ids, video.as_ref(), images.as_ref(), max_new_tokens)
                    .map_err(JsFailure::from)
            })
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|f| f.into_napi(&env))
    }
}

/// The promise of [`VideoLlava::logits`].
pub struct LogitsTask {
    model: RsVideoLlava,
    inputs: Option<Result<RawInputs, JsFailure>>,
}

#[napi]
impl Task for LogitsTask {
    type Output = Result<Vec<f32>, JsFailure>;
    type JsValue = Float32Array;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let inputs = self
            .inputs
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        let model = &self.model;
        Ok(inputs.and_then(|inputs| {
            guarded(|| {
                let (ids, video, images) = inputs.into_tensors()?;
                let logits = model.logits(&ids, video.as_ref(), images.as_ref())?;
                Ok(logits.to_vec1::<f32>().map_err(video_llava::Error::from)?)
            })
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map(Float32Array::new).map_err(|f| f.into_napi(&env))
    }
}

/// The promise of [`VideoLlava::tokenize`].
pub struct TokenizeTask {
    model: RsVideoLlava,
    /// The prompt and frame count; taken by the one `compute`.
    request: Option<Result<(String, usize), JsFailure>>,
}

#[napi]
impl Task for TokenizeTask {
    type Output = Result<Vec<u32>, JsFailure>;
    type JsValue = Vec<u32>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let request = self
            .request
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        let model = &self.model;
        Ok(request.and_then(|(prompt, frames)| {
            guarded(|| model.tokenize(&prompt, frames).map_err(JsFailure::from))
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|f| f.into_napi(&env))
    }
}

/// A loaded Video-LLaVA checkpoint. Load it once with `VideoLlava.fromPretrained`; it may run
/// several generations at once (the weights are shared).
#[napi]
pub struct VideoLlava {
    inner: RsVideoLlava,
}

#[napi]
impl VideoLlava {
    /// Loads a model from a local directory or (when not a directory) a Hugging Face repo id.
    #[napi(
        catch_unwind,
        ts_args_type = "pathOrRepoId: string, options?: LoadOptions",
        ts_return_type = "Promise<VideoLlava>"
    )]
    pub fn from_pretrained<'env>(
        env: &'env Env,
        path_or_repo_id: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<PromiseRaw<'env, VideoLlava>> {
        let call = args::required::<String>("pathOrRepoId", path_or_repo_id).and_then(|path| {
            let options = args::options::<LoadOptions>("options", options)?;
            let (device, dtype) = options.parse()?;
            let (quantize, quantize_vision) = options.quantization()?;
            Ok(LoadCall {
                path,
                device,
                dtype,
                quantize,
                quantize_vision,
                kv_cache_dtype: options.kv_cache_dtype()?,
            })
        });
        crate::engine_thread::spawn(env, "video-llava-load", LoadTask { call: Some(call) })
    }

    /// The language model's quantization: `none`, `q8_0`, `q4k` or `q6k`.
    #[napi(getter, ts_return_type = "'none' | 'q8_0' | 'q4k' | 'q6k'")]
    pub fn quantization(&self) -> String {
        self.inner.quantization().text.as_str().to_string()
    }

    /// Whether the vision towers and projector are quantized (to q8_0).
    #[napi(getter)]
    pub fn vision_quantized(&self) -> bool {
        self.inner.quantization().vision
    }

    /// The type the KV cache holds keys and values in.
    #[napi(getter, ts_return_type = "'float32' | 'float16' | 'bfloat16'")]
    pub fn kv_cache_dtype(&self) -> String {
        video_llava::device::dtype_name(self.inner.kv_cache_dtype()).to_string()
    }

    /// The weights kept in another type than asked: one line each, naming the tensor.
    #[napi(getter)]
    pub fn quantization_fallbacks(&self) -> Vec<String> {
        self.inner
            .model()
            .quantization_fallbacks()
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    /// Writes this quantized model to the new or empty directory `dir` as `model.gguf` plus
    /// `config.json` and `tokenizer.json`; `fromPretrained(dir)` loads it without quantizing
    /// again. Resolves to the GGUF file's path.
    #[napi(
        catch_unwind,
        ts_args_type = "dir: string",
        ts_return_type = "Promise<string>"
    )]
    pub fn save_quantized<'env>(
        &self,
        env: &'env Env,
        dir: Unknown<'_>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let task = SaveQuantizedTask {
            model: self.inner.clone(),
            dir: Some(args::required::<String>("dir", dir)),
        };
        crate::engine_thread::spawn(env, "video-llava-save", task)
    }

    /// Answers a question about a video and/or images. `onToken` receives the text as it is
    /// generated; aborting `signal` stops the generation and rejects with an `AbortError`.
    #[napi(
        catch_unwind,
        ts_args_type = "options: GenerateOptions",
        ts_return_type = "Promise<Generation>"
    )]
    pub fn generate<'env>(
        &self,
        env: &'env Env,
        options: Unknown<'_>,
    ) -> napi::Result<PromiseRaw<'env, Generation>> {
        GenerateTask::start(
            env,
            Engine::Model(self.inner.clone()),
            Call::from_arg(options),
        )
    }

    /// Answers several requests (each with `generate`'s options, its own `onToken` and `signal`)
    /// together, decoding up to `maxBatch` of them in one forward pass per token; each answer
    /// is the one `generate` gives it alone. Resolves to the generations in order once all have
    /// finished; a request that failed (or was aborted) makes the promise reject with its error.
    #[napi(
        catch_unwind,
        ts_args_type = "requests: GenerateOptions[], options?: BatchOptions",
        ts_return_type = "Promise<Generation[]>"
    )]
    pub fn generate_batch<'env>(
        &self,
        env: &'env Env,
        requests: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<PromiseRaw<'env, Vec<Generation>>> {
        crate::batch::start(env, self.inner.clone(), requests, options)
    }

    /// Starts a conversation about a video and/or images (and earlier turns): the vision towers
    /// and the prefill of everything before the question run once, here; resolves to a
    /// `Conversation` whose questions start from that cache.
    #[napi(
        catch_unwind,
        ts_args_type = "options?: ConversationOptions",
        ts_return_type = "Promise<Conversation>"
    )]
    pub fn conversation<'env>(
        &self,
        env: &'env Env,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<PromiseRaw<'env, crate::conversation::Conversation>> {
        crate::conversation::start(env, self.inner.clone(), options)
    }

    /// The same as `generate`, as an async iterator of text pieces: `for await (const piece of
    /// model.stream({ prompt, video })) {}`. Leaving the loop early stops the generation.
    #[napi(catch_unwind, ts_args_type = "options: GenerateOptions")]
    pub fn stream(&self, options: Unknown<'_>) -> TokenStream {
        TokenStream::new(Engine::Model(self.inner.clone()), Call::from_arg(options))
    }

    /// Expands the `<video>`/`<image>` placeholders of a full prompt text (the whole
    /// `USER: ... ASSISTANT:` template) and tokenizes it, BOS included; `numFrames` defaults to 8.
    #[napi(catch_unwind, ts_args_type = "prompt: string, numFrames?: number")]
    pub fn tokenize(
        &self,
        prompt: Unknown<'_>,
        num_frames: Option<Unknown<'_>>,
    ) -> AsyncTask<TokenizeTask> {
        let request = args::required::<String>("prompt", prompt).and_then(|prompt| {
            let frames = args::optional::<f64>("numFrames", num_frames)?;
            Ok((prompt, args::opt_usize("numFrames", frames)?.unwrap_or(8)))
        });
        AsyncTask::new(TokenizeTask {
            model: self.inner.clone(),
            request: Some(request),
        })
    }

    /// Greedy generation from already-expanded ids and preprocessed pixels; the new token ids
    /// (stops at end-of-sequence).
    #[napi(
        catch_unwind,
        ts_args_type = "inputIds: Uint32Array | number[], options?: PixelOptions",
        ts_return_type = "Promise<Array<number>>"
    )]
    pub fn generate_ids<'env>(
        &self,
        env: &'env Env,
        input_ids: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<PromiseRaw<'env, Vec<u32>>> {
        let inputs =
            // maxNewTokens 0 is refused by the core (`generate_ids` validates its parameters).
            raw_inputs(input_ids, options).map(|(inputs, n)| (inputs, n.unwrap_or(16) as usize));
        let task = GenerateIdsTask {
            model: self.inner.clone(),
            inputs: Some(inputs),
        };
        crate::engine_thread::spawn(env, "video-llava-generate", task)
    }

    /// Last-position logits `(vocab,)` for already-expanded ids and preprocessed pixels.
    #[napi(
        catch_unwind,
        ts_args_type = "inputIds: Uint32Array | number[], options?: PixelOptions",
        ts_return_type = "Promise<Float32Array>"
    )]
    pub fn logits<'env>(
        &self,
        env: &'env Env,
        input_ids: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<PromiseRaw<'env, Float32Array>> {
        let inputs = raw_inputs(input_ids, options).map(|(inputs, _)| inputs);
        let task = LogitsTask {
            model: self.inner.clone(),
            inputs: Some(inputs),
        };
        crate::engine_thread::spawn(env, "video-llava-logits", task)
    }
}

/// Converts the `inputIds` and `options` arguments of `generateIds` and `logits`.
fn raw_inputs(
    input_ids: Unknown<'_>,
    options: Option<Unknown<'_>>,
) -> Result<(RawInputs, Option<u32>), JsFailure> {
    let ids = match args::required::<Either<Uint32Array, Vec<f64>>>("inputIds", input_ids)? {
        Either::A(typed) => typed.to_vec(),
        Either::B(plain) => plain
            .into_iter()
            .map(|id| args::whole_u32("inputIds", id))
            .collect::<Result<_, _>>()?,
    };
    let options = args::options::<PixelOptions>("options", options)?;
    let max_new_tokens = options
        .max_new_tokens
        .map(|n| args::whole_u32("maxNewTokens", n))
        .transpose()?;
    Ok((RawInputs::new(ids, &options)?, max_new_tokens))
}
