//! `probe`, `sample_frames`, `thumbnail`, `storyboard` and their result classes.

use std::sync::{Arc, Mutex};

use frame_sampler::{
    ImageFormat, Resize, SampleOptions, Sampling, SeekMode, ThumbnailOptions, Video,
};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::arrays::{owned_array, type_name};
use crate::call::detached;
use crate::errors::{new_err, Failure, Kind};
use crate::source::video_source;

/// Facts about a video's best video stream and its container.
#[pyclass(module = "video_llava", name = "VideoInfo", frozen, get_all)]
pub struct PyVideoInfo {
    /// Width as displayed (rotation applied).
    width: u32,
    /// Height as displayed (rotation applied).
    height: u32,
    /// Width as stored.
    coded_width: u32,
    /// Height as stored.
    coded_height: u32,
    /// Clockwise rotation in degrees that displaying applies.
    rotation: u32,
    /// Average frame rate.
    fps: f64,
    /// Average frame rate (same as `fps`).
    avg_fps: f64,
    /// The stream's base frame rate.
    real_fps: f64,
    /// Duration in seconds.
    duration: f64,
    /// Number of frames.
    frame_count: u64,
    /// How `frame_count` was obtained: "index", "counted", "header" or "estimated".
    frame_count_source: &'static str,
    /// Codec name.
    codec: String,
    /// Container format name.
    container: String,
    /// Whether the container has an audio stream.
    has_audio: bool,
}

impl From<frame_sampler::VideoInfo> for PyVideoInfo {
    fn from(info: frame_sampler::VideoInfo) -> Self {
        let frame_count_source = info.frame_count_source.as_str();
        Self {
            width: info.width,
            height: info.height,
            coded_width: info.coded_width,
            coded_height: info.coded_height,
            rotation: info.rotation,
            fps: info.avg_fps,
            avg_fps: info.avg_fps,
            real_fps: info.real_fps,
            duration: info.duration,
            frame_count: info.frame_count,
            frame_count_source,
            codec: info.codec,
            container: info.container,
            has_audio: info.has_audio,
        }
    }
}

#[pymethods]
impl PyVideoInfo {
    fn __repr__(&self) -> String {
        format!(
            "VideoInfo({}x{}, rotation={}, fps={:.3}, duration={:.3}s, frame_count={} ({}), codec={:?}, container={:?}, has_audio={})",
            self.width,
            self.height,
            self.rotation,
            self.fps,
            self.duration,
            self.frame_count,
            self.frame_count_source,
            self.codec,
            self.container,
            if self.has_audio { "True" } else { "False" },
        )
    }

    /// The facts as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("width", self.width)?;
        d.set_item("height", self.height)?;
        d.set_item("coded_width", self.coded_width)?;
        d.set_item("coded_height", self.coded_height)?;
        d.set_item("rotation", self.rotation)?;
        d.set_item("fps", self.fps)?;
        d.set_item("avg_fps", self.avg_fps)?;
        d.set_item("real_fps", self.real_fps)?;
        d.set_item("duration", self.duration)?;
        d.set_item("frame_count", self.frame_count)?;
        d.set_item("frame_count_source", self.frame_count_source)?;
        d.set_item("codec", &self.codec)?;
        d.set_item("container", &self.container)?;
        d.set_item("has_audio", self.has_audio)?;
        Ok(d)
    }
}

/// Sampled frames: `frames` is a uint8 numpy array `(N, H, W, 3)` that owns the decoded buffer.
#[pyclass(module = "video_llava", name = "FrameBatch", frozen)]
pub struct PyFrameBatch {
    frames: Py<PyArrayDyn<u8>>,
    indices: Vec<u64>,
    timestamps: Vec<f64>,
    width: u32,
    height: u32,
    clamped: bool,
}

impl PyFrameBatch {
    fn new(py: Python<'_>, batch: frame_sampler::FrameBatch) -> PyResult<Self> {
        let shape = [batch.len(), batch.height as usize, batch.width as usize, 3];
        let frames = owned_array(py, batch.data, &shape)?.unbind();
        Ok(Self {
            frames,
            indices: batch.indices,
            timestamps: batch.timestamps,
            width: batch.width,
            height: batch.height,
            clamped: batch.clamped,
        })
    }

    /// The frames array.
    pub fn frames_array<'py>(&self, py: Python<'py>) -> &Bound<'py, PyArrayDyn<u8>> {
        self.frames.bind(py)
    }
}

#[pymethods]
impl PyFrameBatch {
    /// uint8 array `(N, H, W, 3)`.
    #[getter]
    fn frames(&self, py: Python<'_>) -> Py<PyArrayDyn<u8>> {
        self.frames.clone_ref(py)
    }
    /// Each frame's index in presentation order.
    #[getter]
    fn indices(&self) -> Vec<u64> {
        self.indices.clone()
    }
    /// Each frame's presentation time in seconds.
    #[getter]
    fn timestamps(&self) -> Vec<f64> {
        self.timestamps.clone()
    }
    /// Frame width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.width
    }
    /// Frame height in pixels.
    #[getter]
    fn height(&self) -> u32 {
        self.height
    }
    /// Whether targets were clamped because the container's frame count was wrong.
    #[getter]
    fn clamped(&self) -> bool {
        self.clamped
    }
    fn __len__(&self) -> usize {
        self.indices.len()
    }
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.frames.bind(py).as_any().get_item(key)
    }
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let frames = self.frames.bind(py).as_any().clone();
        if dtype.is_none() && copy != Some(true) {
            return Ok(frames);
        }
        // numpy's own semantics: copy=None copies only if the dtype needs it, copy=False never
        // copies (numpy 2 raises), copy=True always copies.
        let numpy = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", dtype)?;
        match copy {
            None => numpy.call_method("asarray", (frames,), Some(&kwargs)),
            Some(copy) => {
                kwargs.set_item("copy", copy)?;
                numpy.call_method("array", (frames,), Some(&kwargs))
            }
        }
    }
    fn __repr__(&self) -> String {
        format!(
            "FrameBatch(len={}, height={}, width={}, indices={:?})",
            self.indices.len(),
            self.height,
            self.width,
            self.indices
        )
    }
}

/// An encoded thumbnail.
#[pyclass(module = "video_llava", name = "Thumbnail", frozen, get_all)]
pub struct PyThumbnail {
    /// The encoded image.
    data: Py<PyBytes>,
    /// "jpeg", "png" or "webp".
    format: &'static str,
    /// Presentation time of the chosen frame, in seconds.
    timestamp: f64,
    /// Width of the encoded image.
    width: u32,
    /// Height of the encoded image.
    height: u32,
}

impl PyThumbnail {
    pub fn new(py: Python<'_>, t: frame_sampler::Thumbnail) -> Self {
        let format = match t.format {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::WebP => "webp",
        };
        Self {
            data: PyBytes::new(py, &t.data).unbind(),
            format,
            timestamp: t.timestamp,
            width: t.width,
            height: t.height,
        }
    }
}

#[pymethods]
impl PyThumbnail {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Thumbnail(format={:?}, {}x{}, timestamp={:.3}, {} bytes)",
            self.format,
            self.width,
            self.height,
            self.timestamp,
            self.data.bind(py).as_bytes().len()
        )
    }
}

fn non_negative(py: Python<'_>, value: i64, what: &str) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        new_err(
            py,
            Kind::InvalidRequest,
            format!("{what} must be >= 0, got {value}"),
        )
    })
}

fn side(py: Python<'_>, value: i64, what: &str) -> PyResult<u32> {
    u32::try_from(value).map_err(|_| {
        new_err(
            py,
            Kind::InvalidRequest,
            format!("{what} must be a pixel count >= 0, got {value}"),
        )
    })
}

/// Reads `resize`: an int (shortest side), a `(width, height)` tuple, or a dict with
/// `shortest_side`, `max_side`, or `width` and `height`.
fn parse_resize(obj: &Bound<'_, PyAny>) -> PyResult<Resize> {
    let py = obj.py();
    if let Ok(n) = obj.extract::<i64>() {
        return Ok(Resize::ShortestSide(side(py, n, "resize")?));
    }
    if let Ok((w, h)) = obj.extract::<(i64, i64)>() {
        return Ok(Resize::Exact {
            width: side(py, w, "resize width")?,
            height: side(py, h, "resize height")?,
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let get = |key: &str| -> PyResult<Option<i64>> {
            d.get_item(key)?.map(|v| v.extract::<i64>()).transpose()
        };
        let keys: Vec<String> = d.keys().extract()?;
        let known = ["shortest_side", "max_side", "width", "height"];
        if let Some(bad) = keys.iter().find(|k| !known.contains(&k.as_str())) {
            return Err(new_err(
                py,
                Kind::InvalidRequest,
                format!("resize: unknown key {bad:?}"),
            ));
        }
        return match (get("shortest_side")?, get("max_side")?, get("width")?, get("height")?) {
            (Some(n), None, None, None) => Ok(Resize::ShortestSide(side(py, n, "shortest_side")?)),
            (None, Some(n), None, None) => Ok(Resize::MaxSide(side(py, n, "max_side")?)),
            (None, None, Some(w), Some(h)) => {
                Ok(Resize::Exact { width: side(py, w, "width")?, height: side(py, h, "height")? })
            }
            _ => Err(new_err(
                py,
                Kind::InvalidRequest,
                "resize dict must have exactly one of: shortest_side, max_side, or width and height",
            )),
        };
    }
    Err(new_err(
        py,
        Kind::InvalidRequest,
        format!(
            "resize must be an int, a (width, height) tuple or a dict, got {}",
            type_name(obj)
        ),
    ))
}

/// Reads a sampling name; `n` is the frame count it applies to.
pub fn parse_sampling(py: Python<'_>, name: &str, n: usize) -> PyResult<Sampling> {
    match name.to_ascii_lowercase().as_str() {
        "uniform" => Ok(Sampling::Uniform(n)),
        "linspace" => Ok(Sampling::Linspace(n)),
        "keyframes" => Ok(Sampling::Keyframes { max: n }),
        other => Err(new_err(
            py,
            Kind::InvalidRequest,
            format!("sampling must be \"uniform\", \"linspace\" or \"keyframes\", got {other:?}"),
        )),
    }
}

pub fn parse_seek(py: Python<'_>, name: &str) -> PyResult<SeekMode> {
    match name.to_ascii_lowercase().as_str() {
        "exact" => Ok(SeekMode::Exact),
        "fast" => Ok(SeekMode::Fast),
        other => Err(new_err(
            py,
            Kind::InvalidRequest,
            format!("seek must be \"exact\" or \"fast\", got {other:?}"),
        )),
    }
}

/// Reads a frame count argument.
pub fn frame_count(py: Python<'_>, n: i64, what: &str) -> PyResult<usize> {
    Ok(non_negative(py, n, what)? as usize)
}

/// Opens `source` and reports the facts of its best video stream.
#[pyfunction]
pub fn probe(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<PyVideoInfo> {
    let source = video_source(source)?;
    let info = detached(py, move || Ok(frame_sampler::probe(&source)?))?;
    Ok(info.into())
}

/// Decodes the frames asked for into one uint8 `(N, H, W, 3)` batch.
#[pyfunction]
#[pyo3(signature = (source, num_frames=8, *, sampling="uniform", seek="exact", indices=None, timestamps=None, every=None, resize=None, rotate=true, threads=0, max_bytes=None))]
#[allow(clippy::too_many_arguments)]
pub fn sample_frames(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    num_frames: i64,
    sampling: &str,
    seek: &str,
    indices: Option<Vec<i64>>,
    timestamps: Option<Vec<f64>>,
    every: Option<f64>,
    resize: Option<&Bound<'_, PyAny>>,
    rotate: bool,
    threads: i64,
    max_bytes: Option<i64>,
) -> PyResult<PyFrameBatch> {
    let source = video_source(source)?;
    let options = sample_options(
        py, num_frames, sampling, seek, indices, timestamps, every, resize, rotate, threads,
        max_bytes,
    )?;
    let batch = detached(py, move || {
        Ok(frame_sampler::sample_frames(&source, &options)?)
    })?;
    PyFrameBatch::new(py, batch)
}

/// `sample_frames`' keyword arguments as the sampler's options.
#[allow(clippy::too_many_arguments)]
fn sample_options(
    py: Python<'_>,
    num_frames: i64,
    sampling: &str,
    seek: &str,
    indices: Option<Vec<i64>>,
    timestamps: Option<Vec<f64>>,
    every: Option<f64>,
    resize: Option<&Bound<'_, PyAny>>,
    rotate: bool,
    threads: i64,
    max_bytes: Option<i64>,
) -> PyResult<SampleOptions> {
    let explicit = [indices.is_some(), timestamps.is_some(), every.is_some()];
    if explicit.iter().filter(|x| **x).count() > 1 {
        return Err(new_err(
            py,
            Kind::InvalidRequest,
            "give at most one of indices, timestamps and every",
        ));
    }
    let sampling = if let Some(indices) = indices {
        let indices = indices
            .into_iter()
            .map(|i| non_negative(py, i, "frame index"))
            .collect::<PyResult<Vec<u64>>>()?;
        Sampling::Indices(indices)
    } else if let Some(timestamps) = timestamps {
        Sampling::Timestamps(timestamps)
    } else if let Some(every) = every {
        Sampling::Every(every)
    } else {
        parse_sampling(py, sampling, frame_count(py, num_frames, "num_frames")?)?
    };
    let mut options = SampleOptions::new(sampling)
        .seek(parse_seek(py, seek)?)
        .resize(resize.map(parse_resize).transpose()?)
        .rotate(rotate)
        .threads(frame_count(py, threads, "threads")?);
    if let Some(max_bytes) = max_bytes {
        options.max_bytes = non_negative(py, max_bytes, "max_bytes")? as usize;
    }
    Ok(options)
}

/// `Video(...)`'s limits, checked: a negative or zero value names its argument.
fn limits(
    py: Python<'_>,
    max_input_bytes: i64,
    call_timeout: Option<f64>,
    max_decoder_threads: i64,
) -> PyResult<frame_sampler::Limits> {
    let bad = |m: String| new_err(py, Kind::InvalidRequest, m);
    let max_input_bytes = u64::try_from(max_input_bytes).map_err(|_| {
        bad(format!(
            "max_input_bytes must be at least 1, got {max_input_bytes}"
        ))
    })?;
    let max_decoder_threads = usize::try_from(max_decoder_threads).map_err(|_| {
        bad(format!(
            "max_decoder_threads must be at least 1, got {max_decoder_threads}"
        ))
    })?;
    let call_timeout = call_timeout
        .map(|t| {
            std::time::Duration::try_from_secs_f64(t).map_err(|_| {
                bad(format!(
                    "call_timeout must be a number of seconds above 0, got {t}"
                ))
            })
        })
        .transpose()?;
    let limits = frame_sampler::Limits {
        max_input_bytes,
        call_timeout,
        max_decoder_threads,
    };
    limits
        .validate()
        .map_err(|e| Failure::Sampler(e).into_pyerr(py))?;
    Ok(limits)
}

/// An opened video: the container, its packet index and the decoder are kept between calls.
///
/// `Video(source)` opens the file (or bytes) once; `.info`, `.sample(...)`, `.thumbnail(...)`
/// and `.storyboard(...)` take the arguments of `probe`, `sample_frames`, `thumbnail` and
/// `storyboard` after the source and return the same types. Usable as a context manager
/// (`close()` on exit); calls on one handle from several threads run one at a time.
#[pyclass(name = "Video", module = "video_llava", frozen)]
pub struct PyVideo {
    video: Arc<Mutex<Option<Video>>>,
    describe: String,
}

impl PyVideo {
    /// Runs `work` on the open handle without the GIL.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&mut Video) -> frame_sampler::Result<T> + Send,
    ) -> PyResult<T> {
        let video = self.video.clone();
        let closed = || {
            Failure::Sampler(frame_sampler::Error::InvalidRequest(
                "the video is closed".into(),
            ))
        };
        detached(py, move || {
            // A poisoned lock means a call panicked mid-way: the handle's state is unknown.
            let mut guard = video
                .lock()
                .map_err(|_| Failure::Panic("an earlier call on this video panicked".into()))?;
            let video = guard.as_mut().ok_or_else(closed)?;
            Ok(work(video)?)
        })
    }
}

#[pymethods]
impl PyVideo {
    /// Opens `source`. The limits every call on the handle keeps to (a refusal names the
    /// limit): `max_input_bytes` (the input's size), `call_timeout` (seconds one call may take;
    /// `None` for no limit: `VideoTimeoutError` past it), `max_decoder_threads`.
    #[new]
    #[pyo3(signature = (source, *, max_input_bytes=17_179_869_184, call_timeout=Some(600.0), max_decoder_threads=16),
           text_signature = "(source, *, max_input_bytes=17179869184, call_timeout=600.0, max_decoder_threads=16)")]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        max_input_bytes: i64,
        call_timeout: Option<f64>,
        max_decoder_threads: i64,
    ) -> PyResult<Self> {
        let limits = limits(py, max_input_bytes, call_timeout, max_decoder_threads)?;
        let source = video_source(source)?;
        let describe = source.describe();
        let video = detached(py, move || Ok(Video::open_with(source, limits)?))?;
        Ok(PyVideo {
            video: Arc::new(Mutex::new(Some(video))),
            describe,
        })
    }

    /// The facts of the video stream (what `probe` returns), computed on first access.
    #[getter]
    fn info(&self, py: Python<'_>) -> PyResult<PyVideoInfo> {
        Ok(self.with(py, |v| v.info())?.into())
    }

    /// Decodes the frames asked for, as `sample_frames(source, ...)` does.
    #[pyo3(signature = (num_frames=8, *, sampling="uniform", seek="exact", indices=None, timestamps=None, every=None, resize=None, rotate=true, threads=0, max_bytes=None))]
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &self,
        py: Python<'_>,
        num_frames: i64,
        sampling: &str,
        seek: &str,
        indices: Option<Vec<i64>>,
        timestamps: Option<Vec<f64>>,
        every: Option<f64>,
        resize: Option<&Bound<'_, PyAny>>,
        rotate: bool,
        threads: i64,
        max_bytes: Option<i64>,
    ) -> PyResult<PyFrameBatch> {
        let options = sample_options(
            py, num_frames, sampling, seek, indices, timestamps, every, resize, rotate, threads,
            max_bytes,
        )?;
        let batch = self.with(py, move |v| v.sample(&options))?;
        PyFrameBatch::new(py, batch)
    }

    /// One representative frame, as `thumbnail(source, ...)` makes it.
    #[pyo3(signature = (*, max_size=320, format="jpeg", quality=85, rotate=true))]
    fn thumbnail(
        &self,
        py: Python<'_>,
        max_size: i64,
        format: &str,
        quality: i64,
        rotate: bool,
    ) -> PyResult<PyThumbnail> {
        let options = thumbnail_options(py, max_size, format, quality, rotate)?;
        let thumb = self.with(py, move |v| v.thumbnail(&options))?;
        Ok(PyThumbnail::new(py, thumb))
    }

    /// `n` representative frames in time order, as `storyboard(source, n, ...)` makes them.
    #[pyo3(signature = (n, *, max_size=320, format="jpeg", quality=85, rotate=true))]
    fn storyboard(
        &self,
        py: Python<'_>,
        n: i64,
        max_size: i64,
        format: &str,
        quality: i64,
        rotate: bool,
    ) -> PyResult<Vec<PyThumbnail>> {
        let options = thumbnail_options(py, max_size, format, quality, rotate)?;
        let n = frame_count(py, n, "n")?;
        let thumbs = self.with(py, move |v| v.storyboard(n, &options))?;
        Ok(thumbs
            .into_iter()
            .map(|t| PyThumbnail::new(py, t))
            .collect())
    }

    /// Work done by every call so far: `frames_decoded`, `packets_sent`, `seeks`,
    /// `packets_indexed` (the index pass, read at most once), `packets_read`.
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyResult<std::collections::BTreeMap<&'static str, u64>> {
        let s = self.with(py, |v| Ok(v.stats()))?;
        Ok([
            ("frames_decoded", s.frames_decoded),
            ("packets_sent", s.packets_sent),
            ("packets_sent_skippable", s.packets_sent_skippable),
            ("seeks", s.seeks),
            ("packets_indexed", s.packets_indexed),
            ("packets_read", s.packets_read),
        ]
        .into_iter()
        .collect())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.video.lock().map(|v| v.is_none()).unwrap_or(true)
    }

    /// Releases the container and the decoder (waiting for a call in progress); later calls
    /// raise `InvalidRequestError`. Closing twice is fine.
    fn close(&self, py: Python<'_>) {
        let video = self.video.clone();
        py.detach(move || {
            if let Ok(mut v) = video.lock() {
                v.take();
            }
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<video_llava.Video {} ({state})>", self.describe)
    }
}

pub fn thumbnail_options(
    py: Python<'_>,
    max_size: i64,
    format: &str,
    quality: i64,
    rotate: bool,
) -> PyResult<ThumbnailOptions> {
    let format: ImageFormat = format
        .parse()
        .map_err(|e| Failure::Sampler(e).into_pyerr(py))?;
    let quality = u8::try_from(quality).map_err(|_| {
        new_err(
            py,
            Kind::InvalidRequest,
            format!("quality must be 1-100, got {quality}"),
        )
    })?;
    Ok(ThumbnailOptions {
        max_size: side(py, max_size, "max_size")?,
        format,
        quality,
        rotate,
    })
}

/// One representative frame of the whole video, encoded.
#[pyfunction]
#[pyo3(signature = (source, *, max_size=320, format="jpeg", quality=85, rotate=true))]
pub fn thumbnail(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    max_size: i64,
    format: &str,
    quality: i64,
    rotate: bool,
) -> PyResult<PyThumbnail> {
    let source = video_source(source)?;
    let options = thumbnail_options(py, max_size, format, quality, rotate)?;
    let thumb = detached(py, move || Ok(frame_sampler::thumbnail(&source, &options)?))?;
    Ok(PyThumbnail::new(py, thumb))
}

/// `n` distinct representative frames in time order, each encoded.
#[pyfunction]
#[pyo3(signature = (source, n, *, max_size=320, format="jpeg", quality=85, rotate=true))]
pub fn storyboard(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    n: i64,
    max_size: i64,
    format: &str,
    quality: i64,
    rotate: bool,
) -> PyResult<Vec<PyThumbnail>> {
    let source = video_source(source)?;
    let options = thumbnail_options(py, max_size, format, quality, rotate)?;
    let n = frame_count(py, n, "n")?;
    let thumbs = detached(py, move || {
        Ok(frame_sampler::storyboard(&source, n, &options)?)
    })?;
    Ok(thumbs
        .into_iter()
        .map(|t| PyThumbnail::new(py, t))
        .collect())
}
