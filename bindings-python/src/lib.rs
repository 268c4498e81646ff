//! Python bindings (pyo3) for the video-llava engine: `import video_llava`.
//!
//! The native module is `video_llava._native`; `video_llava/__init__.py` re-exports it. Every
//! module here only converts: Python arguments into the Rust API's types, results into Python
//! objects (numpy arrays without copying the buffers), Rust errors into the exception hierarchy.
//!
//! - [`errors`]: the exception classes and the mapping of every Rust error variant.
//! - [`call`]: running long calls without the GIL, panics caught.
//! - [`source`], [`arrays`]: paths/bytes and numpy arrays in and out.
//! - [`sampler`]: probe, sample_frames, thumbnail, storyboard.
//! - [`preprocess`]: the CLIP processor.
//! - [`model`], [`request`], [`stream`]: `VideoLlava` and its results.
//! - [`analyze`]: `VideoLlava.analyze`/`analyze_many` and `Analysis`.
//! - [`conversation`]: `Conversation`, many questions from one cached prefix.
//! - [`chat`]: `ChatCompletions`, the OpenAI chat completion endpoint for Python servers.

mod analyze;
mod arrays;
mod call;
mod chat;
mod conversation;
mod errors;
mod model;
mod preprocess;
mod request;
mod sampler;
mod source;
mod stream;

use pyo3::prelude::*;

/// The native extension module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_QUESTION", video_llava::analyze::DEFAULT_QUESTION)?;
    errors::register(m)?;
    m.add_class::<sampler::PyVideoInfo>()?;
    m.add_class::<sampler::PyFrameBatch>()?;
    m.add_class::<sampler::PyThumbnail>()?;
    m.add_class::<sampler::PyVideo>()?;
    m.add_class::<model::PyVideoLlava>()?;
    m.add_class::<model::PyGeneration>()?;
    m.add_class::<model::PyTimings>()?;
    m.add_class::<analyze::PyAnalysis>()?;
    m.add_class::<stream::PyTextStream>()?;
    m.add_class::<conversation::PyConversation>()?;
    chat::register(m)?;
    m.add_function(wrap_pyfunction!(sampler::probe, m)?)?;
    m.add_function(wrap_pyfunction!(sampler::sample_frames, m)?)?;
    m.add_function(wrap_pyfunction!(sampler::thumbnail, m)?)?;
    m.add_function(wrap_pyfunction!(sampler::storyboard, m)?)?;
    m.add_function(wrap_pyfunction!(preprocess::preprocess_frames, m)?)?;
    m.add_function(wrap_pyfunction!(preprocess::preprocess_image, m)?)?;
    Ok(())
}
