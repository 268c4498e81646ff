//! Where a video or image comes from, as JavaScript hands it over: a path or bytes.

use frame_sampler::Source;
use napi::bindgen_prelude::{Either, Uint8Array, Unknown};

use crate::args;
use crate::error::JsFailure;

/// A path (`string`) or the whole file in memory (`Buffer` / `Uint8Array`).
pub type JsSource = Either<String, Uint8Array>;

/// Converts a JS source to an engine source.
///
/// Bytes are copied once: the work runs on another thread while JavaScript keeps the right to
/// mutate (or detach) its buffer.
pub fn to_source(source: &JsSource) -> Source {
    match source {
        Either::A(path) => Source::from(path.as_str()),
        Either::B(bytes) => Source::from(bytes.to_vec()),
    }
}

/// Converts the `source` argument of the frame functions.
pub fn source_arg(value: Unknown<'_>) -> Result<Source, JsFailure> {
    let source: JsSource = args::required("source (a path, Buffer or Uint8Array)", value)?;
    Ok(to_source(&source))
}
