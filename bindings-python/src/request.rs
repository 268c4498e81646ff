//! Python arguments of `generate`/`stream` -> a `Request` and `GenerationParams`.
//!
//! Everything is read (and copied where the Rust request owns its inputs) while the GIL is held,
//! so the generation itself can run without it.

use frame_sampler::SampleOptions;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use video_llava::{GenerationParams, ImageInput, Request, VideoInput};

use crate::arrays::{rgb_frames, rgb_image, type_name};
use crate::errors::{new_err, Kind};
use crate::sampler::{frame_count, parse_sampling, PyFrameBatch};
use crate::source::FileArg;

/// The arguments `generate` and `stream` share.
pub struct Args<'a, 'py> {
    pub question: String,
    pub video: Option<&'a Bound<'py, PyAny>>,
    pub image: Option<&'a Bound<'py, PyAny>>,
    pub frames: Option<&'a Bound<'py, PyAny>>,
    pub history: Option<&'a Bound<'py, PyAny>>,
    pub num_frames: i64,
    pub sampling: &'a str,
    pub knobs: Knobs<'a, 'py>,
}

/// The generation options every answering call takes (`generate`, `stream`, a conversation's
/// questions, `analyze`), as Python gave them.
pub struct Knobs<'a, 'py> {
    pub max_new_tokens: i64,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: Option<i64>,
    pub repetition_penalty: f64,
    pub seed: Option<i64>,
    pub stop: Option<&'a Bound<'py, PyAny>>,
}

impl Default for Knobs<'_, '_> {
    /// The core's defaults of every generation option, as Python spells them.
    fn default() -> Self {
        let core = GenerationParams::default();
        Self {
            max_new_tokens: i64::try_from(core.max_new_tokens).unwrap_or(i64::MAX),
            temperature: core.temperature,
            top_p: core.top_p,
            top_k: core.top_k.map(|k| i64::try_from(k).unwrap_or(i64::MAX)),
            repetition_penalty: core.repetition_penalty.into(),
            seed: core.seed.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            stop: None,
        }
    }
}

impl Args<'_, '_> {
    /// A question with no media and the Python defaults of every generation option.
    pub fn question(question: String) -> Self {
        Self {
            question,
            video: None,
            image: None,
            frames: None,
            history: None,
            num_frames: 8,
            sampling: "uniform",
            knobs: Knobs::default(),
        }
    }

    /// Builds the request and the sampling parameters.
    pub fn build(&self, py: Python<'_>) -> PyResult<(Request, GenerationParams)> {
        let video = match (self.video, self.frames) {
            (Some(_), Some(_)) => {
                return Err(new_err(
                    py,
                    Kind::InvalidRequest,
                    "give either video or frames, not both",
                ))
            }
            (Some(video), None) => Some(self.video_input(video)?),
            (None, Some(frames)) => Some(frames_input(frames, "frames")?),
            (None, None) => None,
        };
        let images = match self.image {
            None => Vec::new(),
            Some(list) if list.cast::<PyList>().is_ok() || list.cast::<PyTuple>().is_ok() => list
                .try_iter()?
                .map(|item| image_input(&item?))
                .collect::<PyResult<Vec<_>>>()?,
            Some(one) => vec![image_input(one)?],
        };
        let history = match self.history {
            None => Vec::new(),
            Some(h) => h.extract::<Vec<(String, String)>>().map_err(|_| {
                new_err(
                    py,
                    Kind::InvalidRequest,
                    "history must be a list of (question, answer) pairs of str",
                )
            })?,
        };
        let request = Request {
            question: self.question.clone(),
            history,
            video,
            images,
        };
        Ok((request, self.knobs.params(py)?))
    }

    fn video_input(&self, video: &Bound<'_, PyAny>) -> PyResult<VideoInput> {
        let py = video.py();
        if let Ok(batch) = video.cast::<PyFrameBatch>() {
            return frames_input(batch.get().frames_array(py).as_any(), "video");
        }
        if let Some(file) = FileArg::try_from_py(video)? {
            let n = frame_count(py, self.num_frames, "num_frames")?;
            let options = SampleOptions::new(parse_sampling(py, self.sampling, n)?);
            return Ok(VideoInput::Source {
                source: file.into(),
                options,
            });
        }
        if video.cast::<numpy::PyUntypedArray>().is_ok() {
            return frames_input(video, "video");
        }
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "video must be a path, bytes, a FrameBatch or a uint8 array, got {}",
            type_name(video)
        )))
    }
}

impl Knobs<'_, '_> {
    /// The sampling parameters alone.
    pub fn params(&self, py: Python<'_>) -> PyResult<GenerationParams> {
        let invalid = |what: &str, v: i64| {
            new_err(
                py,
                Kind::InvalidRequest,
                format!("{what} must be >= 0, got {v}"),
            )
        };
        let stop = match self.stop {
            None => Vec::new(),
            Some(s) if s.cast::<PyString>().is_ok() => vec![s.extract::<String>()?],
            Some(s) => s.extract::<Vec<String>>().map_err(|_| {
                new_err(
                    py,
                    Kind::InvalidRequest,
                    "stop must be a str or a list of str",
                )
            })?,
        };
        Ok(GenerationParams {
            max_new_tokens: usize::try_from(self.max_new_tokens)
                .map_err(|_| invalid("max_new_tokens", self.max_new_tokens))?,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self
                .top_k
                .map(|k| usize::try_from(k).map_err(|_| invalid("top_k", k)))
                .transpose()?,
            repetition_penalty: self.repetition_penalty as f32,
            seed: self
                .seed
                .map(|s| u64::try_from(s).map_err(|_| invalid("seed", s)))
                .transpose()?,
            stop,
        })
    }
}

fn frames_input(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<VideoInput> {
    let (array, count, height, width) = rgb_frames(obj, what)?;
    Ok(VideoInput::Frames {
        data: array.as_slice().to_vec(),
        count,
        height,
        width,
    })
}

fn image_input(obj: &Bound<'_, PyAny>) -> PyResult<ImageInput> {
    if obj.cast::<numpy::PyUntypedArray>().is_ok() {
        let (array, height, width) = rgb_image(obj, "image")?;
        return Ok(ImageInput::Rgb {
            data: array.as_slice().to_vec(),
            height,
            width,
        });
    }
    match FileArg::try_from_py(obj)? {
        Some(FileArg::Path(p)) => Ok(ImageInput::Path(p)),
        Some(FileArg::Bytes(b)) => Ok(ImageInput::Encoded(b)),
        None => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "image must be a path, bytes or a uint8 (H, W, 3) array, got {}",
            type_name(obj)
        ))),
    }
}

/// The keys a `generate_batch` request dict may have: `generate`'s arguments.
const BATCH_KEYS: [&str; 14] = [
    "question",
    "video",
    "image",
    "frames",
    "history",
    "num_frames",
    "sampling",
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
    "stop",
];

/// One `generate_batch` request from its dict (`requests[index]`), with `generate`'s defaults.
pub fn batch_member(
    dict: &Bound<'_, pyo3::types::PyDict>,
    index: usize,
) -> PyResult<video_llava::BatchRequest> {
    let py = dict.py();
    for key in dict.keys() {
        let key: String = key.extract()?;
        if !BATCH_KEYS.contains(&key.as_str()) {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "requests[{index}]: unexpected key '{key}' (the keys are generate's arguments)"
            )));
        }
    }
    let get = |key: &str| dict.get_item(key);
    let question: String = get("question")?
        .ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(format!("requests[{index}] has no 'question'"))
        })?
        .extract()?;
    let (video, image, frames, history, stop) = (
        get("video")?,
        get("image")?,
        get("frames")?,
        get("history")?,
        get("stop")?,
    );
    let sampling: Option<String> = get("sampling")?.map(|v| v.extract()).transpose()?;
    let mut args = Args::question(question);
    args.video = video.as_ref().filter(|v| !v.is_none());
    args.image = image.as_ref().filter(|v| !v.is_none());
    args.frames = frames.as_ref().filter(|v| !v.is_none());
    args.history = history.as_ref().filter(|v| !v.is_none());
    args.knobs.stop = stop.as_ref().filter(|v| !v.is_none());
    if let Some(sampling) = &sampling {
        args.sampling = sampling;
    }
    if let Some(v) = get("num_frames")? {
        args.num_frames = v.extract()?;
    }
    if let Some(v) = get("max_new_tokens")? {
        args.knobs.max_new_tokens = v.extract()?;
    }
    if let Some(v) = get("temperature")? {
        args.knobs.temperature = v.extract()?;
    }
    if let Some(v) = get("top_p")? {
        args.knobs.top_p = v.extract()?;
    }
    if let Some(v) = get("top_k")? {
        args.knobs.top_k = v.extract()?;
    }
    if let Some(v) = get("repetition_penalty")? {
        args.knobs.repetition_penalty = v.extract()?;
    }
    if let Some(v) = get("seed")? {
        args.knobs.seed = v.extract()?;
    }
    let (request, params) = args.build(py)?;
    Ok(video_llava::BatchRequest::new(request, params))
}
