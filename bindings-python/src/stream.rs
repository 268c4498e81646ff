//! `TextStream`: the Rust `TextStream` (a generation on its own thread) as a Python iterator.
//!
//! `__next__` waits for the next piece with the GIL released, in slices of
//! [`SIGNAL_CHECK_INTERVAL`]; between slices and after each piece it runs Python's signal
//! handlers; when one raises (Ctrl-C), the generation is cancelled and the exception propagates.
//! Dropping the iterator, or `close()`, cancels the generation too.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use video_llava::{CancelToken, GenerationParams, Request, VideoLlava};

use crate::call::guarded;
use crate::errors::Failure;
use crate::model::PyGeneration;

/// How long `__next__` waits without the GIL before it checks for Ctrl-C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What one wait on the Rust stream produced.
enum Step {
    Piece(String),
    /// The stream ended; the generation, unless it had already ended before.
    End(Option<video_llava::Generation>),
}

/// Iterator over the text pieces of a generation; `.generation` holds the result once exhausted.
#[pyclass(module = "video_llava", name = "TextStream", frozen)]
pub struct PyTextStream {
    /// `None` once the stream has ended, failed or been closed.
    inner: Mutex<Option<video_llava::pipeline::TextStream>>,
    cancel: CancelToken,
    generation: Mutex<Option<Py<PyGeneration>>>,
}

impl PyTextStream {
    /// Starts the generation (on the Rust stream's own thread).
    pub fn start(
        model: &VideoLlava,
        request: Request,
        params: GenerationParams,
    ) -> Result<Self, Failure> {
        let stream = guarded(|| Ok(model.stream(request, params)))?;
        Ok(Self::of(stream))
    }

    /// Wraps a running Rust stream (a conversation's, say).
    pub fn of(stream: video_llava::pipeline::TextStream) -> Self {
        let cancel = stream.cancel_token().clone();
        Self {
            inner: Mutex::new(Some(stream)),
            cancel,
            generation: Mutex::new(None),
        }
    }

    /// Waits up to `timeout` for the next step (`None`: nothing yet); runs without the GIL.
    fn step(&self, timeout: Duration) -> Result<Option<Step>, Failure> {
        let mut slot = self
            .inner
            .lock()
            .map_err(|_| Failure::Panic("stream lock poisoned".into()))?;
        let Some(stream) = slot.as_mut() else {
            return Ok(Some(Step::End(None)));
        };
        let next = match guarded(|| Ok(stream.next_timeout(timeout))) {
            Ok(None) => return Ok(None),
            Ok(Some(next)) => Ok(next),
            Err(failure) => Err(failure),
        };
        let step = match next {
            Ok(Some(Ok(piece))) => Ok(Step::Piece(piece)),
            Ok(Some(Err(e))) => {
                *slot = None;
                Err(e.into())
            }
            Ok(None) => {
                let generation = stream.generation().cloned();
                *slot = None;
                Ok(Step::End(generation))
            }
            Err(failure) => {
                *slot = None;
                Err(failure)
            }
        };
        step.map(Some)
    }

    /// Cancels the generation and lets its thread go (Ctrl-C, `close`).
    fn stop(&self, py: Python<'_>) {
        self.cancel.cancel();
        py.detach(|| drop(self.inner.lock().map(|mut slot| slot.take())));
    }
}

#[pymethods]
impl PyTextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        // The lock is only taken without the GIL, so a thread waiting for it never blocks the
        // thread that holds it from re-attaching. Waiting in slices lets Ctrl-C through while the
        // prompt is still being encoded, before the first piece.
        let step = loop {
            let step = py
                .detach(|| self.step(SIGNAL_CHECK_INTERVAL))
                .map_err(|f| f.into_pyerr(py))?;
            if let Err(interrupt) = py.check_signals() {
                self.stop(py);
                return Err(interrupt);
            }
            if let Some(step) = step {
                break step;
            }
        };
        match step {
            Step::Piece(piece) => Ok(Some(piece)),
            Step::End(Some(generation)) => {
                let generation = Py::new(py, PyGeneration::new(py, generation)?)?;
                if let Ok(mut slot) = self.generation.lock() {
                    *slot = Some(generation);
                }
                Ok(None)
            }
            Step::End(None) => Ok(None),
        }
    }

    /// The finished generation (text, token ids, stop reason, timings); `None` until exhausted.
    #[getter]
    fn generation(&self, py: Python<'_>) -> Option<Py<PyGeneration>> {
        self.generation
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|g| g.clone_ref(py)))
    }

    /// Stops the generation at its next token; the iterator then ends.
    fn close(&self, py: Python<'_>) {
        self.stop(py);
    }
}
