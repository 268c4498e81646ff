//! Numpy arrays in and out: RGB8 frames and images, float pixels, token ids.
//!
//! Inputs are borrowed (no copy) when numpy already holds them as C-contiguous arrays of the right
//! dtype; only non-contiguous views are copied, once. Outputs hand the Rust `Vec` to numpy as the
//! array's buffer, then reshape it (a view), so no output byte is copied either.

use numpy::{
    PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::{new_err, Kind};

/// A numpy array of `T`, borrowed read-only, C-contiguous.
pub struct ArrayIn<'py, T: numpy::Element> {
    array: PyReadonlyArrayDyn<'py, T>,
}

impl<'py, T: numpy::Element> ArrayIn<'py, T> {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// The array's elements in C order.
    pub fn as_slice(&self) -> &[T] {
        // `contiguous` guaranteed C order when it built this.
        self.array.as_slice().unwrap_or(&[])
    }
}

/// Borrows `obj` as a C-contiguous numpy array of `T`, copying only when it is a non-contiguous
/// view. `what` names the argument in the error raised for another dtype or a non-array.
pub fn contiguous<'py, T: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    dtype_name: &str,
) -> PyResult<ArrayIn<'py, T>> {
    let py = obj.py();
    let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
        return Err(new_err(
            py,
            Kind::InvalidRequest,
            format!(
                "{what} must be a numpy array of {dtype_name}, got {}",
                type_name(obj)
            ),
        ));
    };
    let Ok(typed) = untyped.cast::<PyArrayDyn<T>>() else {
        return Err(new_err(
            py,
            Kind::InvalidRequest,
            format!(
                "{what} must have dtype {dtype_name}, got {}",
                untyped.dtype()
            ),
        ));
    };
    let array = if typed.is_c_contiguous() {
        typed.clone()
    } else {
        let numpy = py.import("numpy")?;
        numpy
            .call_method1("ascontiguousarray", (typed,))?
            .cast_into::<PyArrayDyn<T>>()?
    };
    let array = array.try_readonly().map_err(|e| {
        new_err(
            py,
            Kind::InvalidRequest,
            format!("{what} cannot be read: {e}"),
        )
    })?;
    Ok(ArrayIn { array })
}

/// Borrows an RGB8 batch `(N, H, W, 3)`; returns it with `(count, height, width)`.
pub fn rgb_frames<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<(ArrayIn<'py, u8>, usize, usize, usize)> {
    let array = contiguous::<u8>(obj, what, "uint8")?;
    match *array.shape() {
        [count, height, width, 3] => Ok((array, count, height, width)),
        ref other => Err(new_err(
            obj.py(),
            Kind::InvalidRequest,
            format!("{what} must have shape (N, H, W, 3), got {other:?}"),
        )),
    }
}

/// Borrows one RGB8 image `(H, W, 3)`; returns it with `(height, width)`.
pub fn rgb_image<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<(ArrayIn<'py, u8>, usize, usize)> {
    let array = contiguous::<u8>(obj, what, "uint8")?;
    match *array.shape() {
        [height, width, 3] => Ok((array, height, width)),
        ref other => Err(new_err(
            obj.py(),
            Kind::InvalidRequest,
            format!("{what} must have shape (H, W, 3), got {other:?}"),
        )),
    }
}

/// Token ids from a 1-D integer array (or `(1, L)`), or a sequence of ints.
pub fn token_ids(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    let py = obj.py();
    let wide: Vec<i64> = if let Ok(untyped) = obj.cast::<PyUntypedArray>() {
        let shape = untyped.shape();
        let flat_ok = shape.len() == 1 || (shape.len() == 2 && shape[0] == 1);
        if !flat_ok {
            return Err(new_err(
                py,
                Kind::InvalidRequest,
                format!("{what} must have shape (L,) or (1, L), got {shape:?}"),
            ));
        }
        let numpy = py.import("numpy")?;
        let kind: String = untyped.dtype().getattr("kind")?.extract()?;
        if kind != "i" && kind != "u" {
            return Err(new_err(
                py,
                Kind::InvalidRequest,
                format!(
                    "{what} must be an integer array, got dtype {}",
                    untyped.dtype()
                ),
            ));
        }
        let as_i64 = numpy.call_method1("ascontiguousarray", (untyped, "int64"))?;
        contiguous::<i64>(&as_i64, what, "int64")?
            .as_slice()
            .to_vec()
    } else {
        obj.extract::<Vec<i64>>().map_err(|_| {
            new_err(
                py,
                Kind::InvalidRequest,
                format!(
                    "{what} must be a 1-D integer array or a list of ints, got {}",
                    type_name(obj)
                ),
            )
        })?
    };
    wide.into_iter()
        .map(|id| {
            u32::try_from(id).map_err(|_| {
                new_err(
                    py,
                    Kind::InvalidRequest,
                    format!("{what}: token id {id} out of range"),
                )
            })
        })
        .collect()
}

/// Hands `data` to numpy as the buffer of an array of `shape` (no copy).
pub fn owned_array<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    PyArray1::from_vec(py, data).reshape(shape)
}

/// The Python type name of `obj`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}
