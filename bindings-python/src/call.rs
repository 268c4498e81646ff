//! The one way long calls run: without the GIL, with panics turned into `VideoLlavaError`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;

use crate::errors::Failure;

/// Runs `work` with the GIL released (other Python threads go on meanwhile) and converts its
/// failure, or a panic inside it, into a Python exception once the GIL is back.
pub fn detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, Failure> + Send,
{
    py.detach(|| guarded(work))
        .map_err(|failure| failure.into_pyerr(py))
}

/// Runs `work`, turning a panic into [`Failure::Panic`] so it never reaches Python as a
/// `PanicException` (or unwinds through a thread boundary).
pub fn guarded<T, F>(work: F) -> Result<T, Failure>
where
    F: FnOnce() -> Result<T, Failure>,
{
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(Failure::Panic(video_llava::panic_message(&*payload))))
}
