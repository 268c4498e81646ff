//! `VideoLlava`: loading, tokenizing, generating, logits; and the `Generation` result classes.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use video_llava::{DType, Device, LoadOptions, Quantization, Tensor};

use crate::analyze::{AnalyzeArgs, PyAnalysis};
use crate::arrays::{contiguous, owned_array, token_ids, ArrayIn};
use crate::call::detached;
use crate::conversation::PyConversation;
use crate::errors::{new_err, Failure, Kind};
use crate::request::{Args, Knobs};
use crate::stream::PyTextStream;

/// Seconds spent per stage of a generation.
#[pyclass(module = "video_llava", name = "Timings", frozen, get_all)]
pub struct PyTimings {
    /// Frame decoding and preprocessing.
    preprocess: f64,
    /// Vision towers and projector.
    vision: f64,
    /// The prompt's forward pass.
    prefill: f64,
    /// All decode steps.
    decode: f64,
}

#[pymethods]
impl PyTimings {
    /// Sum of all stages.
    #[getter]
    fn total(&self) -> f64 {
        self.preprocess + self.vision + self.prefill + self.decode
    }
    /// The stages as a dict of seconds.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("preprocess", self.preprocess)?;
        d.set_item("vision", self.vision)?;
        d.set_item("prefill", self.prefill)?;
        d.set_item("decode", self.decode)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "Timings(preprocess={:.4}, vision={:.4}, prefill={:.4}, decode={:.4})",
            self.preprocess, self.vision, self.prefill, self.decode
        )
    }
}

/// The result of a generation.
#[pyclass(module = "video_llava", name = "Generation", frozen, get_all)]
pub struct PyGeneration {
    /// The generated text (stop string and EOS excluded).
    text: String,
    /// The generated token ids (EOS excluded).
    token_ids: Vec<u32>,
    /// Prompt length in tokens after placeholder expansion.
    prompt_tokens: usize,
    /// Of those, how many came from a conversation's cached prefix (0 for `generate`).
    cached_tokens: usize,
    /// "eos", "stop_string", "max_tokens" or "cancelled".
    stop_reason: &'static str,
    /// Per-stage timings.
    timings: Py<PyTimings>,
}

impl PyGeneration {
    /// Converts the Rust result.
    pub fn new(py: Python<'_>, g: video_llava::Generation) -> PyResult<Self> {
        let t = g.timings;
        let timings = PyTimings {
            preprocess: t.preprocess.as_secs_f64(),
            vision: t.vision.as_secs_f64(),
            prefill: t.prefill.as_secs_f64(),
            decode: t.decode.as_secs_f64(),
        };
        Ok(Self {
            text: g.text,
            token_ids: g.token_ids,
            prompt_tokens: g.prompt_tokens,
            cached_tokens: g.cached_tokens,
            stop_reason: g.stop_reason.as_str(),
            timings: Py::new(py, timings)?,
        })
    }
}

#[pymethods]
impl PyGeneration {
    fn __repr__(&self) -> String {
        format!(
            "Generation(text={:?}, tokens={}, prompt_tokens={}, stop_reason={:?})",
            self.text,
            self.token_ids.len(),
            self.prompt_tokens,
            self.stop_reason
        )
    }
    fn __str__(&self) -> String {
        self.text.clone()
    }
}

/// Optional float32 pixels, borrowed from numpy.
fn pixels<'py>(obj: Option<&Bound<'py, PyAny>>, what: &str) -> PyResult<Option<ArrayIn<'py, f32>>> {
    obj.map(|o| contiguous::<f32>(o, what, "float32"))
        .transpose()
}

/// Copies borrowed pixels into a CPU tensor (the model moves it to its device).
fn tensor(pixels: Option<(&[f32], Vec<usize>)>) -> Result<Option<Tensor>, Failure> {
    pixels
        .map(|(data, shape)| Tensor::from_slice(data, shape, &Device::Cpu))
        .transpose()
        .map_err(|e| Failure::Model(e.into()))
}

/// Polls Python's signal handlers (between tokens, or while waiting on a generation's thread)
/// so Ctrl-C stops a generation running on the main thread. Signals are only delivered there, so other threads never take the GIL for it.
pub struct Interrupts {
    on_main_thread: bool,
    last: Instant,
    raised: Option<PyErr>,
}

impl Interrupts {
    const EVERY: Duration = Duration::from_millis(20);

    /// Watches for signals if the calling Python thread is the main one.
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        let threading = py.import("threading")?;
        let current = threading.call_method0("current_thread")?;
        let main = threading.call_method0("main_thread")?;
        Ok(Self {
            on_main_thread: current.is(&main),
            last: Instant::now(),
            raised: None,
        })
    }

    /// `result`, unless a signal handler raised meanwhile: then its exception.
    pub fn outcome<T>(&mut self, result: T) -> Result<T, Failure> {
        match self.raised.take() {
            Some(e) => Err(Failure::Python(e)),
            None => Ok(result),
        }
    }

    /// Called between tokens (GIL released): `Break` once a handler raised.
    pub fn poll(&mut self) -> ControlFlow<()> {
        if !self.on_main_thread || self.last.elapsed() < Self::EVERY {
            return ControlFlow::Continue(());
        }
        self.last = Instant::now();
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.raised = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// A loaded Video-LLaVA checkpoint; safe to share between threads.
#[pyclass(module = "video_llava", name = "VideoLlava", frozen)]
pub struct PyVideoLlava {
    pub(crate) inner: video_llava::VideoLlava,
    pub(crate) source: String,
    device: String,
    dtype: String,
}

#[pymethods]
impl PyVideoLlava {
    /// Loads a checkpoint from a local directory or a Hugging Face Hub repo id.
    #[staticmethod]
    #[pyo3(signature = (path_or_repo_id, *, device="auto", dtype=None, quantize=None, quantize_vision=false, kv_cache_dtype=None))]
    fn from_pretrained(
        py: Python<'_>,
        path_or_repo_id: &Bound<'_, PyAny>,
        device: &str,
        dtype: Option<&str>,
        quantize: Option<&str>,
        quantize_vision: bool,
        kv_cache_dtype: Option<&str>,
    ) -> PyResult<Self> {
        let source = if path_or_repo_id.cast::<PyString>().is_ok() {
            path_or_repo_id.extract::<String>()?
        } else {
            path_or_repo_id
                .extract::<PathBuf>()?
                .to_string_lossy()
                .into_owned()
        };
        // The core's one policy: names, aliases, `auto`, each device's default dtype.
        let (device_value, dtype_value) = video_llava::device::select(Some(device), dtype)
            .map_err(|e| Failure::Model(e).into_pyerr(py))?;
        let quantize: Quantization = quantize
            .unwrap_or("none")
            .parse()
            .map_err(|e| Failure::Model(e).into_pyerr(py))?;
        let mut options = LoadOptions::new(&device_value, dtype_value)
            .quantize(quantize)
            .quantize_vision(quantize_vision);
        options.kv_cache_dtype = kv_cache_dtype
            .map(video_llava::device::parse_dtype)
            .transpose()
            .map_err(|e| Failure::Model(e).into_pyerr(py))?;
        let dir = source.clone();
        let inner = detached(py, move || {
            Ok(video_llava::VideoLlava::from_pretrained_with(
                &dir, &options,
            )?)
        })?;
        let device = video_llava::device::device_name(&device_value);
        Ok(Self {
            inner,
            source,
            device,
            dtype: video_llava::device::dtype_name(dtype_value).into(),
        })
    }

    /// The device the model runs on ("cpu", "cuda:0", "metal:0").
    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// The compute dtype name.
    #[getter]
    fn dtype(&self) -> String {
        self.dtype.clone()
    }

    /// The dtype name the KV cache holds keys and values in.
    #[getter]
    fn kv_cache_dtype(&self) -> &'static str {
        video_llava::device::dtype_name(self.inner.kv_cache_dtype())
    }

    /// The language model's quantization ("none", "q8_0", "q4k", "q6k").
    #[getter]
    fn quantization(&self) -> &'static str {
        self.inner.quantization().text.as_str()
    }

    /// Whether the vision towers and projector are quantized (to q8_0).
    #[getter]
    fn vision_quantized(&self) -> bool {
        self.inner.quantization().vision
    }

    /// The weights kept in another type than asked: one line each, naming the tensor.
    #[getter]
    fn quantization_fallbacks(&self) -> Vec<String> {
        self.inner
            .model()
            .quantization_fallbacks()
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    /// Writes this quantized model to the new or empty directory ``dir`` as ``model.gguf``
    /// plus ``config.json`` and ``tokenizer.json``; ``from_pretrained(dir)`` loads it without
    /// quantizing again. Returns the GGUF file's path.
    fn save_quantized(&self, py: Python<'_>, dir: PathBuf) -> PyResult<PathBuf> {
        let model = self.inner.clone();
        detached(py, move || Ok(model.save_quantized(&dir)?.path))
    }

    /// Expands the placeholders of a full prompt text and tokenizes it (BOS included).
    #[pyo3(signature = (prompt, num_frames=8))]
    fn tokenize(&self, py: Python<'_>, prompt: String, num_frames: i64) -> PyResult<Vec<u32>> {
        let num_frames = crate::sampler::frame_count(py, num_frames, "num_frames")?;
        let model = self.inner.clone();
        detached(py, move || Ok(model.tokenize(&prompt, num_frames)?))
    }

    /// Answers `question` about a video and/or images.
    #[pyo3(signature = (question, *, video=None, image=None, frames=None, max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None, history=None, num_frames=8, sampling="uniform"))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        question: String,
        video: Option<&Bound<'py, PyAny>>,
        image: Option<&Bound<'py, PyAny>>,
        frames: Option<&Bound<'py, PyAny>>,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        num_frames: i64,
        sampling: &str,
    ) -> PyResult<PyGeneration> {
        let args = Args {
            question,
            video,
            image,
            frames,
            history,
            num_frames,
            sampling,
            knobs: Knobs {
                max_new_tokens,
                temperature,
                top_p,
                top_k,
                repetition_penalty,
                seed,
                stop,
            },
        };
        let (request, params) = args.build(py)?;
        let mut interrupts = Interrupts::new(py)?;
        let model = self.inner.clone();
        let generation = detached(py, move || {
            if !interrupts.on_main_thread {
                // No signal reaches this thread: nothing to listen for.
                let generation =
                    model.generate(&request, &params, None, &mut |_| ControlFlow::Continue(()))?;
                return Ok(generation);
            }
            // On the main thread the generation runs on a thread of its own and this one
            // listens, so Ctrl-C is heard during the vision towers and the prefill too (the
            // cancel stops them at the next layer), not only between tokens.
            let mut stream = model.stream(request, params);
            while !matches!(
                stream.next_timeout(Interrupts::EVERY),
                Some(None | Some(Err(_)))
            ) {
                if interrupts.poll().is_break() {
                    stream.cancel();
                }
            }
            interrupts.outcome(stream.finish()?)
        })?;
        PyGeneration::new(py, generation)
    }

    /// Answers several requests together, decoding up to `max_batch` of them in one forward
    /// pass per token (each answer is the one `generate` gives it alone). Each request is a
    /// dict of `generate`'s arguments (`question` required). Returns the generations in order;
    /// a request that fails raises its exception once all have finished, or, with
    /// `return_exceptions=True`, stands in the list as that exception.
    #[pyo3(signature = (requests, *, max_batch=8, max_kv_bytes=None, return_exceptions=false))]
    fn generate_batch<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
        max_batch: i64,
        max_kv_bytes: Option<i64>,
        return_exceptions: bool,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let mut members = Vec::new();
        for (i, item) in requests.try_iter()?.enumerate() {
            let item = item?;
            let dict = item.cast::<PyDict>().map_err(|_| {
                new_err(
                    py,
                    Kind::InvalidRequest,
                    format!("requests[{i}] must be a dict of generate's arguments"),
                )
            })?;
            members.push(crate::request::batch_member(dict, i)?);
        }
        let options = video_llava::BatchOptions {
            max_batch: usize::try_from(max_batch).unwrap_or(0),
            max_kv_bytes: max_kv_bytes
                .map(|b| {
                    usize::try_from(b)
                        .map_err(|_| new_err(py, Kind::InvalidRequest, "max_kv_bytes must be >= 0"))
                })
                .transpose()?,
        };
        options
            .validate()
            .map_err(|e| Failure::from(e).into_pyerr(py))?;
        let mut interrupts = Interrupts::new(py)?;
        let model = self.inner.clone();
        let results = detached(py, || {
            let results = model.generate_batch(&members, &options, &mut |_, _| interrupts.poll());
            interrupts.outcome(results)
        })?;
        let mut out = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(generation) => {
                    out.push(Py::new(py, PyGeneration::new(py, generation)?)?.into_any())
                }
                Err(e) => {
                    let err = Failure::from(e).into_pyerr(py);
                    out.push(err.value(py).clone().into_any().unbind());
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) if !return_exceptions => Err(err),
            _ => Ok(out),
        }
    }

    /// Analyzes one video: opens it once for its facts, the sampled frames and a thumbnail
    /// (none with `thumbnail=False`), and answers `question` (by default the CLI's "Describe
    /// what happens in this video.").
    #[pyo3(signature = (video, *, question=None, num_frames=8, sampling="uniform", seek="exact", max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None, thumbnail_size=320, thumbnail_format="jpeg", thumbnail=true))]
    #[allow(clippy::too_many_arguments)]
    fn analyze<'py>(
        &self,
        py: Python<'py>,
        video: &Bound<'py, PyAny>,
        question: Option<String>,
        num_frames: i64,
        sampling: &str,
        seek: &str,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
        thumbnail_size: i64,
        thumbnail_format: &str,
        thumbnail: bool,
    ) -> PyResult<PyAnalysis> {
        let args = AnalyzeArgs {
            question,
            num_frames,
            sampling,
            seek,
            knobs: Knobs {
                max_new_tokens,
                temperature,
                top_p,
                top_k,
                repetition_penalty,
                seed,
                stop,
            },
            thumbnail_size,
            thumbnail_format,
            thumbnail,
        };
        crate::analyze::analyze(py, &self.inner, video, args)
    }

    /// Analyzes each video in order (paths or bytes), decoding the next one while the model
    /// answers for the current one; `analyze`'s options apply to all. A video that fails
    /// raises once all are done, or with `return_exceptions=True` stands in the list as its
    /// exception.
    #[pyo3(signature = (videos, *, question=None, num_frames=8, sampling="uniform", seek="exact", max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None, thumbnail_size=320, thumbnail_format="jpeg", thumbnail=true, return_exceptions=false))]
    #[allow(clippy::too_many_arguments)]
    fn analyze_many<'py>(
        &self,
        py: Python<'py>,
        videos: &Bound<'py, PyAny>,
        question: Option<String>,
        num_frames: i64,
        sampling: &str,
        seek: &str,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
        thumbnail_size: i64,
        thumbnail_format: &str,
        thumbnail: bool,
        return_exceptions: bool,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let args = AnalyzeArgs {
            question,
            num_frames,
            sampling,
            seek,
            knobs: Knobs {
                max_new_tokens,
                temperature,
                top_p,
                top_k,
                repetition_penalty,
                seed,
                stop,
            },
            thumbnail_size,
            thumbnail_format,
            thumbnail,
        };
        crate::analyze::analyze_many(py, &self.inner, videos, args, return_exceptions)
    }

    /// Like `generate`, but returns an iterator over text pieces as they are decoded.
    #[pyo3(signature = (question, *, video=None, image=None, frames=None, max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None, history=None, num_frames=8, sampling="uniform"))]
    #[allow(clippy::too_many_arguments)]
    fn stream<'py>(
        &self,
        py: Python<'py>,
        question: String,
        video: Option<&Bound<'py, PyAny>>,
        image: Option<&Bound<'py, PyAny>>,
        frames: Option<&Bound<'py, PyAny>>,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        num_frames: i64,
        sampling: &str,
    ) -> PyResult<PyTextStream> {
        let args = Args {
            question,
            video,
            image,
            frames,
            history,
            num_frames,
            sampling,
            knobs: Knobs {
                max_new_tokens,
                temperature,
                top_p,
                top_k,
                repetition_penalty,
                seed,
                stop,
            },
        };
        let (request, params) = args.build(py)?;
        Ok(PyTextStream::start(&self.inner, request, params)?)
    }

    /// Starts a conversation about a video and/or images (and earlier turns): the vision
    /// towers and the prefix's prefill run once, here; its questions start from that cache.
    #[pyo3(signature = (*, video=None, image=None, frames=None, history=None, num_frames=8, sampling="uniform"))]
    #[allow(clippy::too_many_arguments)]
    fn conversation<'py>(
        &self,
        py: Python<'py>,
        video: Option<&Bound<'py, PyAny>>,
        image: Option<&Bound<'py, PyAny>>,
        frames: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        num_frames: i64,
        sampling: &str,
    ) -> PyResult<PyConversation> {
        let args = Args {
            video,
            image,
            frames,
            history,
            num_frames,
            sampling,
            ..Args::question(String::new())
        };
        let (request, _) = args.build(py)?;
        let model = self.inner.clone();
        let conversation = detached(py, move || Ok(model.conversation(&request)?))?;
        Ok(PyConversation::new(conversation))
    }

    /// Last-position logits, float32 `(vocab,)`, for already-expanded `input_ids`.
    #[pyo3(signature = (input_ids, *, pixel_values_videos=None, pixel_values_images=None))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        pixel_values_videos: Option<&Bound<'py, PyAny>>,
        pixel_values_images: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let ids = token_ids(input_ids, "input_ids")?;
        let videos = pixels(pixel_values_videos, "pixel_values_videos")?;
        let images = pixels(pixel_values_images, "pixel_values_images")?;
        let videos = videos.as_ref().map(|a| (a.as_slice(), a.shape().to_vec()));
        let images = images.as_ref().map(|a| (a.as_slice(), a.shape().to_vec()));
        let model = self.inner.clone();
        let logits = detached(py, move || {
            let (videos, images) = (tensor(videos)?, tensor(images)?);
            let logits = model.logits(&ids, videos.as_ref(), images.as_ref())?;
            let flat = logits
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| Failure::Model(e.into()))?;
            Ok(flat)
        })?;
        let len = logits.len();
        owned_array(py, logits, &[len])
    }

    /// Greedy generation from already-expanded ids and pixels; the new token ids.
    #[pyo3(signature = (input_ids, *, pixel_values_videos=None, pixel_values_images=None, max_new_tokens=16))]
    fn generate_ids<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        pixel_values_videos: Option<&Bound<'py, PyAny>>,
        pixel_values_images: Option<&Bound<'py, PyAny>>,
        max_new_tokens: i64,
    ) -> PyResult<Vec<u32>> {
        let ids = token_ids(input_ids, "input_ids")?;
        let max_new_tokens = usize::try_from(max_new_tokens).map_err(|_| {
            new_err(
                py,
                Kind::InvalidRequest,
                format!("max_new_tokens must be >= 0, got {max_new_tokens}"),
            )
        })?;
        let videos = pixels(pixel_values_videos, "pixel_values_videos")?;
        let images = pixels(pixel_values_images, "pixel_values_images")?;
        let videos = videos.as_ref().map(|a| (a.as_slice(), a.shape().to_vec()));
        let images = images.as_ref().map(|a| (a.as_slice(), a.shape().to_vec()));
        let model = self.inner.clone();
        detached(py, move || {
            let (videos, images) = (tensor(videos)?, tensor(images)?);
            Ok(model.generate_ids(&ids, videos.as_ref(), images.as_ref(), max_new_tokens)?)
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "VideoLlava({:?}, device={:?}, dtype={:?})",
            self.source, self.device, self.dtype
        )
    }
}
