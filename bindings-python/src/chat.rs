//! `ChatCompletions`: the core's OpenAI chat completion endpoint ([`video_llava::openai`]) for
//! Python front ends without a server of their own (the Ray Serve application).
//!
//! Bodies go in as the JSON a client sent; answers come out as the JSON `video-llava serve`
//! answers with, and failures as `ChatCompletionError` carrying the HTTP status and the error
//! body. Parsing, the media policy, sampling and the chunk format are the core's; this module
//! only converts, and runs the work without the GIL.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple, PyType};
use video_llava::analyze::AnalyzerOptions;
use video_llava::openai::{ChatEndpoint, ChatError, ChatStream, MediaPolicy, SettingNames};
use video_llava::GenerationParams;

use crate::call::{detached, guarded};
use crate::errors::{class, Failure, Kind};
use crate::model::{Interrupts, PyVideoLlava};
use crate::sampler::frame_count;

/// How long a stream waits without the GIL before it checks for Ctrl-C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

static ERROR_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `ChatCompletionError`, a `VideoLlavaError` made once per interpreter.
fn error_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    ERROR_CLASS
        .get_or_try_init(py, || {
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "video_llava")?;
            namespace.set_item(
                "__doc__",
                "A chat completion request failed. `status` is the HTTP status to answer with, \
                 `body` the OpenAI-shaped error body ({\"error\": {...}}), `code`, `type` and \
                 `param` its fields.",
            )?;
            let bases = PyTuple::new(py, [class(py, Kind::Base)?])?;
            let made = py
                .get_type::<PyType>()
                .call1(("ChatCompletionError", bases, namespace))?;
            Ok(made.cast_into::<PyType>()?.unbind())
        })
        .map(|c| c.bind(py))
}

/// Adds `ChatCompletions` and `ChatCompletionError` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ChatCompletionError", error_class(m.py())?)?;
    m.add_class::<PyChatCompletions>()?;
    m.add_class::<PyChatCompletionStream>()?;
    Ok(())
}

/// Why a chat call failed, before it becomes a Python exception.
enum ChatFailure {
    Chat(ChatError),
    Other(Failure),
}

impl From<ChatError> for ChatFailure {
    fn from(e: ChatError) -> Self {
        ChatFailure::Chat(e)
    }
}

impl From<Failure> for ChatFailure {
    fn from(e: Failure) -> Self {
        ChatFailure::Other(e)
    }
}

impl ChatFailure {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            ChatFailure::Chat(e) => chat_err(py, &e),
            ChatFailure::Other(f) => f.into_pyerr(py),
        }
    }
}

/// The `ChatCompletionError` for `e`, its fields as attributes.
fn chat_err(py: Python<'_>, e: &ChatError) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let err = PyErr::from_type(error_class(py)?.clone(), e.message.clone());
        let value = err.value(py);
        value.setattr("status", e.status)?;
        value.setattr("code", e.code.as_str())?;
        value.setattr("type", e.error_type)?;
        value.setattr("param", e.param.as_deref())?;
        value.setattr("body", json_to_py(py, &e.body())?)?;
        value.setattr("kind", e.code.as_str())?;
        value.setattr("is_input", e.status < 500)?;
        Ok(err)
    })();
    made.unwrap_or_else(|err| err)
}

fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?
        .call_method1("loads", (value.to_string(),))
}

/// A request body as bytes: `bytes`, `str` (JSON text) or a `dict` (serialized here).
fn body_bytes(body: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = body.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = body.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if body.cast::<PyDict>().is_ok() {
        let text: String = body
            .py()
            .import("json")?
            .call_method1("dumps", (body,))?
            .extract()?;
        return Ok(text.into_bytes());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "body must be bytes, str or dict, got {}",
        crate::arrays::type_name(body)
    )))
}

/// OpenAI's `POST /v1/chat/completions` answered by a loaded model, as `video-llava serve`
/// answers it: text, `image_url` and `video_url` parts, the same media policy, errors and
/// chunks.
#[pyclass(module = "video_llava", name = "ChatCompletions", frozen)]
pub struct PyChatCompletions {
    model: video_llava::VideoLlava,
    endpoint: ChatEndpoint,
}

#[pymethods]
impl PyChatCompletions {
    #[new]
    #[pyo3(signature = (model, *, model_id=None, allowed_media_dir=None, allow_remote_media=false, max_media_mb=512, remote_media_timeout=30.0, num_frames=8, max_new_tokens=256))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &PyVideoLlava,
        model_id: Option<String>,
        allowed_media_dir: Option<PathBuf>,
        allow_remote_media: bool,
        max_media_mb: u64,
        remote_media_timeout: f64,
        num_frames: i64,
        max_new_tokens: i64,
    ) -> PyResult<Self> {
        let invalid = |m: String| Failure::Invalid(m).into_pyerr(py);
        if max_media_mb == 0 {
            return Err(invalid("max_media_mb must be at least 1".into()));
        }
        let timeout = Duration::try_from_secs_f64(remote_media_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                invalid(format!(
                    "remote_media_timeout must be a positive number of seconds, got {remote_media_timeout}"
                ))
            })?;
        let max_new_tokens = usize::try_from(max_new_tokens)
            .map_err(|_| invalid(format!("max_new_tokens must be >= 0, got {max_new_tokens}")))?;
        let defaults = GenerationParams {
            max_new_tokens,
            ..GenerationParams::default()
        };
        defaults
            .validate()
            .map_err(|e| Failure::Model(e).into_pyerr(py))?;
        // The analyzer's sampling, so an answer here is the one `analyze` and the server give.
        let sample = AnalyzerOptions {
            frames: frame_count(py, num_frames, "num_frames")?,
            ..AnalyzerOptions::default()
        }
        .sample_options();
        sample
            .validate()
            .map_err(|e| Failure::Sampler(e).into_pyerr(py))?;
        let media = MediaPolicy::new(
            allowed_media_dir.as_deref(),
            allow_remote_media,
            timeout,
            max_media_mb.saturating_mul(1024 * 1024),
            SettingNames::PYTHON,
        )
        .map_err(|e| {
            let dir = allowed_media_dir.unwrap_or_default();
            crate::errors::new_err(
                py,
                Kind::NotFound,
                format!("allowed_media_dir {}: {e}", dir.display()),
            )
        })?;
        Ok(Self {
            model: model.inner.clone(),
            endpoint: ChatEndpoint {
                model_id: model_id.unwrap_or_else(|| model.source.clone()),
                media,
                sample,
                defaults,
            },
        })
    }

    /// The id requests must name in `model` (or leave out), and `GET /v1/models` lists.
    #[getter]
    fn model_id(&self) -> &str {
        &self.endpoint.model_id
    }

    /// `GET /v1/models`'s answer, for a server started at `created` (Unix seconds).
    fn models<'py>(&self, py: Python<'py>, created: i64) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(
            py,
            &video_llava::openai::model_list(&self.endpoint.model_id, created),
        )
    }

    /// The 404 `ChatCompletionError` for a route that does not exist (not raised).
    #[staticmethod]
    fn no_route(py: Python<'_>, method: &str, path: &str) -> Py<PyAny> {
        let err = chat_err(py, &ChatError::no_route(method, path));
        err.value(py).clone().into_any().unbind()
    }

    /// Whether `body` asks for a streamed answer (`"stream": true`); a body that does not
    /// parse says `False` (`create` then raises its error).
    fn wants_stream(&self, body: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = body_bytes(body)?;
        Ok(video_llava::openai::ChatRequest::from_json(&bytes)
            .map(|r| r.stream())
            .unwrap_or(false))
    }

    /// Answers `body` (a chat completion request: bytes, str or dict) whole and returns the
    /// `chat.completion` object as a dict. Raises `ChatCompletionError` (with `.status`) for
    /// a bad request or a failed generation. Runs without the GIL; Ctrl-C stops it.
    fn create<'py>(
        &self,
        py: Python<'py>,
        body: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let bytes = body_bytes(body)?;
        let mut interrupts = Interrupts::new(py)?;
        let (endpoint, model) = (&self.endpoint, &self.model);
        let answer = py
            .detach(|| -> Result<serde_json::Value, ChatFailure> {
                let answer = guarded(|| {
                    Ok(endpoint.prepare(&bytes).and_then(|chat| {
                        endpoint.complete(model, &chat, &mut |_| interrupts.poll())
                    }))
                })??;
                Ok(interrupts.outcome(answer)?)
            })
            .map_err(|f| f.into_pyerr(py))?;
        json_to_py(py, &answer)
    }

    /// Starts a streamed answer to `body` and returns an iterator over its server-sent events'
    /// data: the `chat.completion.chunk` objects as JSON text, then `"[DONE]"`. Waits for the
    /// engine's first event, so a request that fails before any text (a bad body, an
    /// undecodable video, a prompt too long) raises `ChatCompletionError` here, while an HTTP
    /// status can still be sent; a failure later is an error event in the stream.
    fn stream(&self, py: Python<'_>, body: &Bound<'_, PyAny>) -> PyResult<PyChatCompletionStream> {
        let bytes = body_bytes(body)?;
        let (endpoint, model) = (&self.endpoint, &self.model);
        let prepared =
            detached(py, || Ok(endpoint.prepare(&bytes)))?.map_err(|e| chat_err(py, &e))?;
        let stream =
            guarded(|| Ok(endpoint.stream(model, prepared))).map_err(|f| f.into_pyerr(py))?;
        let stream = PyChatCompletionStream {
            inner: Mutex::new(Some(stream)),
            first: Mutex::new(None),
        };
        let first = stream.wait(py)?;
        if let Ok(mut slot) = stream.first.lock() {
            *slot = first;
        }
        Ok(stream)
    }

    fn __repr__(&self) -> String {
        format!("ChatCompletions(model_id={:?})", self.endpoint.model_id)
    }
}

/// The events of one streamed chat completion: each item is an event's data (JSON text of a
/// `chat.completion.chunk`, an error event's body, or `"[DONE]"` last). Dropping it, or
/// `close()`, stops the generation.
#[pyclass(module = "video_llava", name = "ChatCompletionStream", frozen)]
pub struct PyChatCompletionStream {
    /// `None` once the stream has ended or been closed.
    inner: Mutex<Option<ChatStream>>,
    /// The first event, read by `ChatCompletions.stream` before it returned.
    first: Mutex<Option<String>>,
}

impl PyChatCompletionStream {
    /// Waits for the next event's data, in slices that let Ctrl-C through; `None` at the end.
    fn wait(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            let step = py.detach(|| -> Result<Option<Option<String>>, ChatFailure> {
                let mut slot = self
                    .inner
                    .lock()
                    .map_err(|_| Failure::Panic("stream lock poisoned".into()))?;
                let Some(stream) = slot.as_mut() else {
                    return Ok(Some(None));
                };
                let next = guarded(|| Ok(stream.next_timeout(SIGNAL_CHECK_INTERVAL)));
                match next {
                    Ok(Ok(Some(None))) | Ok(Err(_)) | Err(_) => *slot = None,
                    _ => {}
                }
                Ok(next??)
            });
            let step = step.map_err(|f| f.into_pyerr(py))?;
            if let Err(interrupt) = py.check_signals() {
                self.stop(py);
                return Err(interrupt);
            }
            if let Some(data) = step {
                return Ok(data);
            }
        }
    }

    fn stop(&self, py: Python<'_>) {
        py.detach(|| {
            if let Ok(mut slot) = self.inner.lock() {
                if let Some(stream) = slot.take() {
                    stream.cancel();
                }
            }
        });
    }
}

#[pymethods]
impl PyChatCompletionStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        match first {
            Some(data) => Ok(Some(data)),
            None => self.wait(py),
        }
    }

    /// Stops the generation at its next token; the iterator then ends.
    fn close(&self, py: Python<'_>) {
        self.stop(py);
    }
}
