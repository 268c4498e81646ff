//! `preprocess_frames` and `preprocess_image`: the CLIP processor on uint8 arrays.

use numpy::PyArrayDyn;
use pyo3::prelude::*;

use crate::arrays::{owned_array, rgb_frames, rgb_image};
use crate::call::detached;
use crate::sampler::PyFrameBatch;

const SIDE: usize = video_llava::preprocess::IMAGE_SIZE;

/// uint8 `(N, H, W, 3)` (or a `FrameBatch`) -> float32 `(N, 3, 224, 224)`, CLIP-normalized.
#[pyfunction]
pub fn preprocess_frames<'py>(
    py: Python<'py>,
    frames: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let frames = match frames.cast::<PyFrameBatch>() {
        Ok(batch) => batch.get().frames_array(py).as_any().clone(),
        Err(_) => frames.clone(),
    };
    let (array, count, height, width) = rgb_frames(&frames, "frames")?;
    let data = array.as_slice();
    // The numpy buffer is read in place while the GIL is released; `array` keeps it borrowed.
    let pixels = detached(py, || {
        Ok(video_llava::preprocess::preprocess_frames(
            data, count, height, width,
        )?)
    })?;
    owned_array(py, pixels, &[count, 3, SIDE, SIDE])
}

/// uint8 `(H, W, 3)` -> float32 `(3, 224, 224)`, CLIP-normalized.
#[pyfunction]
pub fn preprocess_image<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (array, height, width) = rgb_image(image, "image")?;
    let data = array.as_slice();
    let pixels = detached(py, || {
        Ok(video_llava::preprocess::preprocess_image(
            data, height, width,
        )?)
    })?;
    owned_array(py, pixels, &[3, SIDE, SIDE])
}
