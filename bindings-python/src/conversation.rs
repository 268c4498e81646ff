//! `Conversation`: the core's [`video_llava::Conversation`] (one cached KV prefix, many
//! questions) as a Python object. Calls run without the GIL; `chat` turns are taken one at a
//! time, while `generate` and `stream` may run from several threads at once.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use video_llava::{Conversation, GenerationParams};

use crate::call::detached;
use crate::errors::Failure;
use crate::model::{Interrupts, PyGeneration};
use crate::request::Knobs;
use crate::stream::PyTextStream;

/// A video (and/or images, earlier turns) whose prefix is computed once, and the questions
/// asked against it.
#[pyclass(module = "video_llava", name = "Conversation", frozen)]
pub struct PyConversation {
    /// `None` once closed.
    state: Arc<Mutex<Option<Conversation>>>,
    /// Held by `chat` for its whole turn, so turns apply one after the other.
    turn: Arc<Mutex<()>>,
}

impl PyConversation {
    pub fn new(conversation: Conversation) -> Self {
        Self {
            state: Arc::new(Mutex::new(Some(conversation))),
            turn: Arc::new(Mutex::new(())),
        }
    }

    /// The current conversation (a cheap clone: the prefix is shared); an
    /// `InvalidRequestError` once closed. Only called without the GIL.
    fn current(state: &Mutex<Option<Conversation>>) -> Result<Conversation, Failure> {
        state
            .lock()
            .map_err(|_| Failure::Panic("an earlier call on this conversation panicked".into()))?
            .clone()
            .ok_or_else(|| Failure::Invalid("the conversation is closed".into()))
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&Conversation) -> T + Send,
    ) -> PyResult<T> {
        let state = self.state.clone();
        detached(py, move || Ok(work(&Self::current(&state)?)))
    }
}

#[allow(clippy::too_many_arguments)]
fn params<'py>(
    py: Python<'py>,
    max_new_tokens: i64,
    temperature: f64,
    top_p: f64,
    top_k: Option<i64>,
    repetition_penalty: f64,
    seed: Option<i64>,
    stop: Option<&Bound<'py, PyAny>>,
) -> PyResult<GenerationParams> {
    Knobs {
        max_new_tokens,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        seed,
        stop,
    }
    .params(py)
}

#[pymethods]
impl PyConversation {
    /// Answers `question` from the cached prefix: the same answer `VideoLlava.generate` gives
    /// for the conversation's media, turns and this question. The conversation is unchanged.
    #[pyo3(signature = (question, *, max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        question: String,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyGeneration> {
        let params = params(
            py,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            seed,
            stop,
        )?;
        let mut interrupts = Interrupts::new(py)?;
        let state = self.state.clone();
        let generation = detached(py, move || {
            let conversation = Self::current(&state)?;
            let generation =
                conversation.generate(&question, &params, None, &mut |_| interrupts.poll())?;
            interrupts.outcome(generation)
        })?;
        PyGeneration::new(py, generation)
    }

    /// Like `generate`, but returns an iterator over text pieces as they are decoded.
    #[pyo3(signature = (question, *, max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None))]
    #[allow(clippy::too_many_arguments)]
    fn stream<'py>(
        &self,
        py: Python<'py>,
        question: String,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyTextStream> {
        let params = params(
            py,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            seed,
            stop,
        )?;
        let stream = self.with(py, move |c| c.stream(question, params))?;
        Ok(PyTextStream::of(stream))
    }

    /// Answers `question` and appends the turn to the conversation, so the next question sees
    /// it. A cancelled answer (Ctrl-C) is not appended.
    #[pyo3(signature = (question, *, max_new_tokens=256, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0, seed=None, stop=None))]
    #[allow(clippy::too_many_arguments)]
    fn chat<'py>(
        &self,
        py: Python<'py>,
        question: String,
        max_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: Option<i64>,
        repetition_penalty: f64,
        seed: Option<i64>,
        stop: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyGeneration> {
        let params = params(
            py,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            seed,
            stop,
        )?;
        let mut interrupts = Interrupts::new(py)?;
        let (state, turn) = (self.state.clone(), self.turn.clone());
        let generation = detached(py, move || {
            let _turn = turn
                .lock()
                .map_err(|_| Failure::Panic("an earlier turn panicked".into()))?;
            let mut conversation = Self::current(&state)?;
            let generation =
                conversation.chat(&question, &params, None, &mut |_| interrupts.poll())?;
            let generation = interrupts.outcome(generation)?;
            let mut slot = state
                .lock()
                .map_err(|_| Failure::Panic("an earlier call panicked".into()))?;
            // Closed meanwhile: stays closed.
            if slot.is_some() {
                *slot = Some(conversation);
            }
            Ok(generation)
        })?;
        PyGeneration::new(py, generation)
    }

    /// The earlier `(question, answer)` turns, oldest first.
    #[getter]
    fn history(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        self.with(py, |c| c.history().to_vec())
    }

    /// Tokens in the cached prefix.
    #[getter]
    fn prefix_tokens(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.prefix_tokens())
    }

    /// Bytes the cached prefix holds (its keys and values).
    #[getter]
    fn prefix_bytes(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |c| c.prefix_bytes())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.state.lock().map(|c| c.is_none()).unwrap_or(true)
    }

    /// Frees the cached prefix now (answers in progress finish on their own copy); later calls
    /// raise `InvalidRequestError`. Closing twice is fine.
    fn close(&self, py: Python<'_>) {
        let state = self.state.clone();
        py.detach(move || {
            if let Ok(mut c) = state.lock() {
                c.take();
            }
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        match self.state.lock().ok().and_then(|c| c.clone()) {
            Some(c) => format!(
                "<video_llava.Conversation {} turns, {} prefix tokens>",
                c.history().len(),
                c.prefix_tokens()
            ),
            None => "<video_llava.Conversation (closed)>".into(),
        }
    }
}
