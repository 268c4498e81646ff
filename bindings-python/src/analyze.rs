//! `VideoLlava.analyze` and `analyze_many`: the core's [`VideoAnalyzer`] (facts, frames,
//! thumbnail and answer from one opened video), and its result class `Analysis`.

use frame_sampler::{Sampling, SeekMode, ThumbnailOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use video_llava::analyze::{
    Analysis, AnalysisTimings, AnalyzerOptions, FrameSpacing, VideoAnalyzer, DEFAULT_QUESTION,
};

use crate::call::detached;
use crate::errors::{new_err, Failure, Kind};
use crate::model::Interrupts;
use crate::request::Knobs;
use crate::sampler::{parse_sampling, parse_seek, thumbnail_options, PyThumbnail, PyVideoInfo};
use crate::source::video_source;

/// What one video's analysis produced: its facts, the frames the model saw, a thumbnail and
/// the answer.
#[pyclass(module = "video_llava", name = "Analysis", frozen)]
pub struct PyAnalysis {
    info: Py<PyVideoInfo>,
    thumbnail: Option<Py<PyThumbnail>>,
    frame_indices: Vec<u64>,
    frame_timestamps: Vec<f64>,
    question: String,
    answer: String,
    prompt_tokens: usize,
    cached_tokens: usize,
    generated_tokens: usize,
    stop_reason: &'static str,
    timings: AnalysisTimings,
}

impl PyAnalysis {
    fn new(py: Python<'_>, a: Analysis) -> PyResult<Self> {
        Ok(Self {
            info: Py::new(py, PyVideoInfo::from(a.info))?,
            thumbnail: match a.thumbnail {
                Some(t) => Some(Py::new(py, PyThumbnail::new(py, t))?),
                None => None,
            },
            frame_indices: a.frame_indices,
            frame_timestamps: a.frame_timestamps,
            question: a.question,
            answer: a.answer,
            prompt_tokens: a.prompt_tokens,
            cached_tokens: a.cached_tokens,
            generated_tokens: a.generated_tokens,
            stop_reason: a.stop_reason.as_str(),
            timings: a.timings,
        })
    }
}

#[pymethods]
impl PyAnalysis {
    /// The video's facts.
    #[getter]
    fn info(&self, py: Python<'_>) -> Py<PyVideoInfo> {
        self.info.clone_ref(py)
    }
    /// A representative frame of the whole video, encoded; `None` with `thumbnail=False`.
    #[getter]
    fn thumbnail(&self, py: Python<'_>) -> Option<Py<PyThumbnail>> {
        self.thumbnail.as_ref().map(|t| t.clone_ref(py))
    }
    /// Index (presentation order) of each frame given to the model.
    #[getter]
    fn frame_indices(&self) -> Vec<u64> {
        self.frame_indices.clone()
    }
    /// Presentation time of each frame given to the model, in seconds.
    #[getter]
    fn frame_timestamps(&self) -> Vec<f64> {
        self.frame_timestamps.clone()
    }
    /// The question asked.
    #[getter]
    fn question(&self) -> String {
        self.question.clone()
    }
    /// The model's answer.
    #[getter]
    fn answer(&self) -> String {
        self.answer.clone()
    }
    /// Prompt length in tokens, placeholders expanded.
    #[getter]
    fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }
    /// Prompt tokens taken from a cached prefix instead of computed.
    #[getter]
    fn cached_tokens(&self) -> usize {
        self.cached_tokens
    }
    /// Tokens generated (EOS excluded).
    #[getter]
    fn generated_tokens(&self) -> usize {
        self.generated_tokens
    }
    /// "eos", "stop_string", "max_tokens" or "cancelled".
    #[getter]
    fn stop_reason(&self) -> &'static str {
        self.stop_reason
    }
    /// Seconds per stage: probe, sampling, thumbnail, preprocess, vision, prefill, decode, and
    /// their total.
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = &self.timings;
        let d = PyDict::new(py);
        for (name, value) in [
            ("probe", t.probe),
            ("sampling", t.sampling),
            ("thumbnail", t.thumbnail),
            ("preprocess", t.preprocess),
            ("vision", t.vision),
            ("prefill", t.prefill),
            ("decode", t.decode),
            ("total", t.total()),
        ] {
            d.set_item(name, value.as_secs_f64())?;
        }
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "Analysis(answer={:?}, frames={}, generated_tokens={}, stop_reason={:?})",
            self.answer,
            self.frame_indices.len(),
            self.generated_tokens,
            self.stop_reason
        )
    }
}

/// `analyze`'s keyword arguments, read while the GIL is held.
pub struct AnalyzeArgs<'a, 'py> {
    pub question: Option<String>,
    pub num_frames: i64,
    pub sampling: &'a str,
    pub seek: &'a str,
    pub knobs: Knobs<'a, 'py>,
    pub thumbnail_size: i64,
    pub thumbnail_format: &'a str,
    pub thumbnail: bool,
}

impl AnalyzeArgs<'_, '_> {
    /// The analyzer for these options, answering with `model`.
    fn analyzer(&self, py: Python<'_>, model: &video_llava::VideoLlava) -> PyResult<VideoAnalyzer> {
        let question = self
            .question
            .clone()
            .unwrap_or_else(|| DEFAULT_QUESTION.to_string());
        let params = self.knobs.params(py)?;
        let frames = crate::sampler::frame_count(py, self.num_frames, "num_frames")?;
        let spacing = match parse_sampling(py, self.sampling, frames)? {
            Sampling::Uniform(_) => FrameSpacing::Uniform,
            Sampling::Linspace(_) => FrameSpacing::Linspace,
            _ => {
                return Err(new_err(
                    py,
                    Kind::InvalidRequest,
                    format!(
                        "analyze samples 'uniform' or 'linspace' frames, got sampling='{}'",
                        self.sampling
                    ),
                ))
            }
        };
        let seek: SeekMode = parse_seek(py, self.seek)?;
        // The size and format are checked even when no thumbnail is made: a typo is an error.
        let thumbnail: ThumbnailOptions =
            thumbnail_options(py, self.thumbnail_size, self.thumbnail_format, 85, true)?;
        thumbnail_validate(py, &thumbnail)?;
        let options = AnalyzerOptions {
            frames,
            spacing,
            seek,
            questions: vec![question],
            params,
            thumbnail: self.thumbnail.then_some(thumbnail),
        };
        options
            .sample_options()
            .validate()
            .map_err(|e| Failure::Sampler(e).into_pyerr(py))?;
        Ok(VideoAnalyzer::new(model.clone(), options))
    }
}

fn thumbnail_validate(py: Python<'_>, options: &ThumbnailOptions) -> PyResult<()> {
    options
        .validate()
        .map_err(|e| Failure::Sampler(e).into_pyerr(py))
}

/// `VideoLlava.analyze`: one video.
pub fn analyze(
    py: Python<'_>,
    model: &video_llava::VideoLlava,
    video: &Bound<'_, PyAny>,
    args: AnalyzeArgs<'_, '_>,
) -> PyResult<PyAnalysis> {
    let source = video_source(video)?;
    let analyzer = args.analyzer(py, model)?;
    let mut interrupts = Interrupts::new(py)?;
    let analysis = detached(py, || {
        let analysis = analyzer.analyze(&source, None, &mut |_| interrupts.poll())?;
        interrupts.outcome(analysis)
    })?;
    PyAnalysis::new(py, analysis)
}

/// `VideoLlava.analyze_many`: each video in order, the next decoded while the model answers.
pub fn analyze_many(
    py: Python<'_>,
    model: &video_llava::VideoLlava,
    videos: &Bound<'_, PyAny>,
    args: AnalyzeArgs<'_, '_>,
    return_exceptions: bool,
) -> PyResult<Vec<Py<PyAny>>> {
    let sources = videos
        .try_iter()?
        .enumerate()
        .map(|(i, video)| {
            video_source(&video?).map_err(|e| {
                let message = format!("videos[{i}]: {}", e.value(py));
                pyo3::exceptions::PyTypeError::new_err(message)
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let analyzer = args.analyzer(py, model)?;
    let count = sources.len();
    let interrupts = Interrupts::new(py)?;
    let results = detached(py, move || {
        // Both callbacks poll for Ctrl-C; they never run at once.
        let interrupts = std::cell::RefCell::new(interrupts);
        let mut results: Vec<Option<video_llava::Result<Analysis>>> =
            (0..count).map(|_| None).collect();
        analyzer.analyze_many(
            sources,
            &mut |_, _, _| interrupts.borrow_mut().poll(),
            &mut |item| {
                results[item.index] = Some(item.result);
                interrupts.borrow_mut().poll()
            },
        );
        interrupts.into_inner().outcome(results)
    })?;
    let mut out = Vec::with_capacity(count);
    let mut first_error = None;
    for result in results {
        // Every video gets its item unless the batch was interrupted, and then `outcome` has
        // already raised.
        let result = result.ok_or_else(|| {
            Failure::Internal("the batch ended before every video was analyzed".into())
        });
        match result {
            Ok(Ok(analysis)) => out.push(Py::new(py, PyAnalysis::new(py, analysis)?)?.into_any()),
            Ok(Err(e)) => {
                let err = Failure::from(e).into_pyerr(py);
                out.push(err.value(py).clone().into_any().unbind());
                first_error.get_or_insert(err);
            }
            Err(failure) => return Err(failure.into_pyerr(py)),
        }
    }
    match first_error {
        Some(err) if !return_exceptions => Err(err),
        _ => Ok(out),
    }
}
