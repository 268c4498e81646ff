//! Python values that name a video or an image: `str`, `os.PathLike`, or the file's bytes.

use std::path::PathBuf;
use std::sync::Arc;

use frame_sampler::Source;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

use crate::arrays::type_name;

/// A path or in-memory file contents, as given from Python.
pub enum FileArg {
    /// `str` or `os.PathLike`.
    Path(PathBuf),
    /// `bytes`, `bytearray` or `memoryview`: the whole file.
    Bytes(Vec<u8>),
}

impl FileArg {
    /// Reads `obj` as a path or file contents; `None` when it is neither.
    pub fn try_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Option<Self>> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Some(FileArg::Bytes(bytes.as_bytes().to_vec())));
        }
        if let Ok(array) = obj.cast::<PyByteArray>() {
            return Ok(Some(FileArg::Bytes(array.to_vec())));
        }
        if obj.cast::<PyMemoryView>().is_ok() {
            let bytes = obj.py().get_type::<PyBytes>().call1((obj,))?;
            return Ok(Some(FileArg::Bytes(
                bytes.cast::<PyBytes>()?.as_bytes().to_vec(),
            )));
        }
        if obj.cast::<PyString>().is_ok() || obj.hasattr("__fspath__")? {
            return Ok(Some(FileArg::Path(obj.extract::<PathBuf>()?)));
        }
        Ok(None)
    }

    /// Like [`FileArg::try_from_py`], raising `TypeError` for anything else.
    pub fn from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        Self::try_from_py(obj)?.ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{what} must be a str, an os.PathLike or bytes, got {}",
                type_name(obj)
            ))
        })
    }
}

impl From<FileArg> for Source {
    fn from(arg: FileArg) -> Self {
        match arg {
            FileArg::Path(p) => Source::Path(p),
            FileArg::Bytes(b) => Source::Bytes(Arc::from(b)),
        }
    }
}

/// Reads a video `source` argument.
pub fn video_source(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
    Ok(FileArg::from_py(obj, "source")?.into())
}
