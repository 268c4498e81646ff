//! The exception hierarchy and the mapping from each Rust error variant to it.
//!
//! Several classes need two Python bases (`InvalidRequestError` is also a `ValueError`, the
//! not-found errors are also `FileNotFoundError`), which `create_exception!` cannot express, so
//! the classes are made once per interpreter with `type(name, bases, namespace)`.

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Every exception class this module defines, in creation order (a base before its subclasses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Base of everything the engine raises.
    Base,
    /// A video could not be opened or decoded.
    VideoDecode,
    /// The container holds no video stream.
    NoVideoStream,
    /// A video, image or model file does not exist (also a `FileNotFoundError`).
    NotFound,
    /// An image could not be decoded or encoded.
    Image,
    /// A request or argument is invalid (also a `ValueError`).
    InvalidRequest,
    /// The prompt does not fit the model's context.
    PromptTooLong,
    /// The output would exceed a memory or size limit.
    TooLarge,
    /// A checkpoint could not be loaded.
    ModelLoad,
    /// A required model file is missing (also a `FileNotFoundError`).
    ModelNotFound,
    /// Downloading a checkpoint failed.
    Download,
    /// The tokenizer failed.
    Tokenizer,
    /// The device or dtype is unavailable.
    Device,
    /// The model failed while computing.
    Generation,
    /// Decoding a video ran past its time budget (also a `TimeoutError`).
    Timeout,
}

struct Spec {
    kind: Kind,
    name: &'static str,
    doc: &'static str,
    /// The engine's kind the class stands for: its `kind` and `is_input` class attributes
    /// (an instance whose error is finer, `image_encode` under `ImageError`, overrides them).
    engine: EK,
}

use video_llava::ErrorKind as EK;

const SPECS: [Spec; 15] = [
    Spec { kind: Kind::Base, name: "VideoLlavaError", doc: "Base class of every error the video_llava engine raises.", engine: EK::Other },
    Spec { kind: Kind::VideoDecode, name: "VideoDecodeError", doc: "A video could not be opened, demuxed or decoded.", engine: EK::VideoDecode },
    Spec { kind: Kind::NoVideoStream, name: "NoVideoStreamError", doc: "The container holds no video stream (an audio-only file, for instance).", engine: EK::NoVideoStream },
    Spec { kind: Kind::NotFound, name: "NotFoundError", doc: "A video or image file does not exist. Also a FileNotFoundError.", engine: EK::NotFound },
    Spec { kind: Kind::Image, name: "ImageError", doc: "An image could not be decoded, or a thumbnail could not be encoded.", engine: EK::ImageDecode },
    Spec { kind: Kind::InvalidRequest, name: "InvalidRequestError", doc: "A request or argument is invalid. Also a ValueError.", engine: EK::InvalidRequest },
    Spec { kind: Kind::PromptTooLong, name: "PromptTooLongError", doc: "The prompt, with placeholders expanded, plus max_new_tokens exceeds the model's context.", engine: EK::PromptTooLong },
    Spec { kind: Kind::TooLarge, name: "TooLargeError", doc: "The decoded frames would exceed the memory budget or the frame size limit.", engine: EK::TooLarge },
    Spec { kind: Kind::ModelLoad, name: "ModelLoadError", doc: "A checkpoint could not be loaded (config, weights, tokenizer).", engine: EK::ModelLoad },
    Spec { kind: Kind::ModelNotFound, name: "ModelNotFoundError", doc: "A model directory or a required file in it is missing. Also a FileNotFoundError.", engine: EK::ModelNotFound },
    Spec { kind: Kind::Download, name: "DownloadError", doc: "Downloading a checkpoint from the Hugging Face Hub failed.", engine: EK::Download },
    Spec { kind: Kind::Tokenizer, name: "TokenizerError", doc: "The tokenizer failed to load or encode.", engine: EK::Tokenizer },
    Spec { kind: Kind::Device, name: "DeviceError", doc: "The device or dtype is not available in this build or on this machine.", engine: EK::Device },
    Spec { kind: Kind::Generation, name: "GenerationError", doc: "The model failed while computing (a tensor operation failed).", engine: EK::Generation },
    Spec { kind: Kind::Timeout, name: "VideoTimeoutError", doc: "Decoding a video ran past its time budget (call_timeout). Also a VideoDecodeError and a TimeoutError.", engine: EK::Timeout },
];

static CLASSES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn bases<'py>(py: Python<'py>, kind: Kind, made: &[Py<PyType>]) -> Vec<Bound<'py, PyType>> {
    let get = |k: Kind| made[k as usize].bind(py).clone();
    match kind {
        Kind::Base => vec![py.get_type::<PyException>()],
        Kind::NoVideoStream => vec![get(Kind::VideoDecode)],
        Kind::NotFound => vec![get(Kind::Base), py.get_type::<PyFileNotFoundError>()],
        Kind::InvalidRequest => vec![get(Kind::Base), py.get_type::<PyValueError>()],
        Kind::PromptTooLong => vec![get(Kind::InvalidRequest)],
        Kind::ModelNotFound => vec![get(Kind::ModelLoad), py.get_type::<PyFileNotFoundError>()],
        Kind::Download => vec![get(Kind::ModelLoad)],
        Kind::Timeout => vec![get(Kind::VideoDecode), py.get_type::<PyTimeoutError>()],
        _ => vec![get(Kind::Base)],
    }
}

fn classes(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    CLASSES.get_or_try_init(py, || {
        let builtin_type = py.get_type::<PyType>();
        let mut made: Vec<Py<PyType>> = Vec::with_capacity(SPECS.len());
        for (i, spec) in SPECS.iter().enumerate() {
            debug_assert_eq!(spec.kind as usize, i);
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "video_llava")?;
            namespace.set_item("__doc__", spec.doc)?;
            namespace.set_item("kind", spec.engine.as_str())?;
            namespace.set_item("is_input", spec.engine.is_input())?;
            let bases = PyTuple::new(py, bases(py, spec.kind, &made))?;
            let class = builtin_type.call1((spec.name, bases, namespace))?;
            made.push(class.cast_into::<PyType>()?.unbind());
        }
        Ok(made)
    })
}

/// The exception class for `kind`.
pub fn class(py: Python<'_>, kind: Kind) -> PyResult<Bound<'_, PyType>> {
    Ok(classes(py)?[kind as usize].bind(py).clone())
}

/// Adds every exception class to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    for spec in &SPECS {
        module.add(spec.name, class(py, spec.kind)?)?;
    }
    Ok(())
}

/// An exception of class `kind` with `message`.
pub fn new_err(py: Python<'_>, kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match class(py, kind) {
        Ok(ty) if matches!(kind, Kind::NotFound | Kind::ModelNotFound) => {
            // OSError's (errno, strerror) form fills `.errno` and `.strerror` like the builtin does.
            PyErr::from_type(ty, (ENOENT, message))
        }
        Ok(ty) => PyErr::from_type(ty, message),
        Err(e) => e,
    }
}

/// `errno.ENOENT`, 2 on every platform CPython supports.
const ENOENT: i32 = 2;

/// Why a call into the engine failed, before it becomes a Python exception.
///
/// Long calls run without the GIL and cannot build `PyErr`s of the runtime-made classes there,
/// so they return this and the conversion happens once the GIL is held again.
#[derive(Debug)]
pub enum Failure {
    /// From `frame-sampler`.
    Sampler(frame_sampler::Error),
    /// From `video-llava`.
    Model(video_llava::Error),
    /// An argument the binding itself rejects.
    Invalid(String),
    /// The engine panicked; reported as `VideoLlavaError`, never as `PanicException`.
    Panic(String),
    /// A broken promise inside the binding or engine (a bug, not the caller's input);
    /// reported as `VideoLlavaError`.
    Internal(String),
    /// An exception raised by Python code (a signal handler's `KeyboardInterrupt`).
    Python(PyErr),
}

impl From<frame_sampler::Error> for Failure {
    fn from(e: frame_sampler::Error) -> Self {
        Failure::Sampler(e)
    }
}

impl From<video_llava::Error> for Failure {
    fn from(e: video_llava::Error) -> Self {
        Failure::Model(e)
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Python(e)
    }
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> Self {
        Python::attach(|py| failure.into_pyerr(py))
    }
}

impl Failure {
    /// The Python exception for this failure.
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Sampler(e) => sampler_err(py, e),
            Failure::Model(e) => model_err(py, e),
            Failure::Invalid(message) => new_err(py, Kind::InvalidRequest, message),
            Failure::Panic(message) => new_err(
                py,
                Kind::Base,
                format!("internal error in the engine (a Rust panic): {message}"),
            ),
            Failure::Internal(message) => {
                new_err(py, Kind::Base, format!("internal error: {message}"))
            }
            Failure::Python(e) => e,
        }
    }
}

/// The engine's classification ([`video_llava::ErrorKind`]) as an exception class.
fn class_of(kind: video_llava::ErrorKind) -> Kind {
    use video_llava::ErrorKind as K;
    match kind {
        K::NotFound => Kind::NotFound,
        K::VideoDecode => Kind::VideoDecode,
        K::NoVideoStream => Kind::NoVideoStream,
        K::ImageDecode | K::ImageEncode => Kind::Image,
        K::InvalidRequest => Kind::InvalidRequest,
        K::PromptTooLong => Kind::PromptTooLong,
        K::TooLarge => Kind::TooLarge,
        K::Timeout => Kind::Timeout,
        K::ModelNotFound => Kind::ModelNotFound,
        K::ModelLoad => Kind::ModelLoad,
        K::Tokenizer => Kind::Tokenizer,
        K::Download => Kind::Download,
        K::Device => Kind::Device,
        K::Generation => Kind::Generation,
        // Other I/O errors, and kinds added later, still land in the hierarchy.
        _ => Kind::Base,
    }
}

fn sampler_err(py: Python<'_>, e: frame_sampler::Error) -> PyErr {
    engine_err(py, EK::of_video(&e), e.to_string())
}

fn model_err(py: Python<'_>, e: video_llava::Error) -> PyErr {
    engine_err(py, e.kind(), e.to_string())
}

/// The exception for an engine error of `kind`: its class, and its `kind` and `is_input`
/// attributes from the core's classification.
fn engine_err(py: Python<'_>, kind: EK, message: String) -> PyErr {
    let err = new_err(py, class_of(kind), message);
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail short of memory exhaustion;
    // the class attributes stand in if it does.
    let _ = value.setattr("kind", kind.as_str());
    let _ = value.setattr("is_input", kind.is_input());
    err
}
