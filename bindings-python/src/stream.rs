//! `TextStream`: a Python iterator over the text pieces of a generation running on its own thread.
//!
//! The generation runs on a Rust thread and hands pieces through a bounded channel; `__next__`
//! waits on it with the GIL released, polling Python's signal handlers between short waits so
//! Ctrl-C raises `KeyboardInterrupt` and cancels the generation. Dropping the iterator (or
//! `close()`) cancels it too.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use video_llava::{CancelToken, GenerationParams, Request, VideoLlava};

use crate::errors::{new_err, Failure, Kind};
use crate::model::{generate_guarded, PyGeneration};

enum Event {
    Piece(String),
    Done(Result<video_llava::Generation, Failure>),
}

/// Iterator over the text pieces of a generation; `.generation` holds the result once exhausted.
#[pyclass(module = "video_llava", name = "TextStream", frozen)]
pub struct PyTextStream {
    events: Mutex<Receiver<Event>>,
    cancel: CancelToken,
    finished: AtomicBool,
    generation: Mutex<Option<Py<PyGeneration>>>,
}

impl PyTextStream {
    /// Pieces the generation thread may run ahead of the reader.
    const BACKLOG: usize = 1024;
    /// How often a waiting `__next__` looks at Python's signal handlers.
    const POLL: Duration = Duration::from_millis(50);

    /// Starts the generation on its own thread.
    pub fn start(model: VideoLlava, request: Request, params: GenerationParams) -> PyResult<Self> {
        let (tx, rx) = sync_channel(Self::BACKLOG);
        let cancel = CancelToken::new();
        let thread_cancel = cancel.clone();
        std::thread::Builder::new()
            .name("video-llava-stream".into())
            .spawn(move || {
                let mut send_piece = |piece: &str| {
                    // A closed receiver means the iterator is gone: stop generating.
                    match tx.send(Event::Piece(piece.to_owned())) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    }
                };
                let result =
                    generate_guarded(&model, &request, &params, &thread_cancel, &mut send_piece);
                let _ = tx.send(Event::Done(result));
            })
            .map_err(|e| {
                Python::attach(|py| new_err(py, Kind::Base, format!("cannot start a thread: {e}")))
            })?;
        Ok(Self {
            events: Mutex::new(rx),
            cancel,
            finished: AtomicBool::new(false),
            generation: Mutex::new(None),
        })
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}

impl Drop for PyTextStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[pymethods]
impl PyTextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            if self.finished.load(Ordering::SeqCst) {
                return Ok(None);
            }
            // The lock is taken only while detached, so a thread waiting for it never holds the GIL.
            let event = py.detach(|| match self.events.lock() {
                Ok(rx) => rx.recv_timeout(Self::POLL),
                Err(_) => Err(RecvTimeoutError::Disconnected),
            });
            match event {
                Ok(Event::Piece(piece)) => return Ok(Some(piece)),
                Ok(Event::Done(Ok(generation))) => {
                    let generation = Py::new(py, PyGeneration::new(py, generation)?)?;
                    if let Ok(mut slot) = self.generation.lock() {
                        *slot = Some(generation);
                    }
                    self.finish();
                    return Ok(None);
                }
                Ok(Event::Done(Err(failure))) => {
                    self.finish();
                    return Err(failure.into_pyerr(py));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.cancel.cancel();
                        self.finish();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return Err(new_err(py, Kind::Generation, "the generation thread ended without a result"));
                }
            }
        }
    }

    /// The finished generation (text, token ids, stop reason, timings); `None` until exhausted.
    #[getter]
    fn generation(&self, py: Python<'_>) -> Option<Py<PyGeneration>> {
        self.generation.lock().ok().and_then(|g| g.as_ref().map(|g| g.clone_ref(py)))
    }

    /// Stops the generation at the next token; the iterator then ends.
    fn close(&self) {
        self.cancel.cancel();
        self.finish();
    }
}
