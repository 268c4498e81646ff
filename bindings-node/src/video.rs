//! The `Video` class: one opened video whose container, packet index and decoder are kept
//! between calls. `await Video.open(source)`, then `info()`, `sample()`, `thumbnail()`,
//! `storyboard()` with the options of the free functions, each a promise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use frame_sampler::{
    FrameBatch as RsFrameBatch, SampleOptions, Source, Thumbnail as RsThumbnail,
    ThumbnailOptions as RsThumbnailOptions, Video as RsVideo, VideoInfo as RsVideoInfo,
};
use napi::bindgen_prelude::{AsyncTask, Either, Null, Unknown};
use napi::{Env, Task};
use napi_derive::napi;

use crate::error::{guarded, JsFailure};
use crate::frames::{
    frame_task, sample_request, storyboard_request, thumbnail_request, FrameBatch, Thumbnail,
    VideoInfo,
};
use crate::source::source_arg;

/// The handle shared by the JS object and the calls in flight.
struct Handle {
    /// `None` once closed.
    video: Mutex<Option<RsVideo>>,
    /// Set by `close()`; whoever holds the lock then drops the video.
    closed: AtomicBool,
}

type Shared = Arc<Handle>;

/// An opened video (a path, or the whole file as a `Buffer`/`Uint8Array`): the container is
/// opened once and what one call reads (the packet index on Matroska, WebM, MPEG-TS and AVI)
/// serves the next. Calls on one handle run one at a time; `close()` releases it.
#[napi]
pub struct Video {
    inner: Shared,
}

/// The limits every call on a `Video` keeps to (each refusal names the limit).
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct VideoLimits {
    /// The largest input accepted, in bytes (default 16 GiB): `ERR_TOO_LARGE` past it.
    pub max_input_bytes: Option<f64>,
    /// Milliseconds one call may take (default 600000; `null` for no limit):
    /// `ERR_VIDEO_TIMEOUT` past it, so a file that would decode forever stops there.
    #[napi(ts_type = "number | null")]
    pub call_timeout_ms: Option<Either<f64, Null>>,
    /// The most decoder threads a call may use (default 16): a `threads` over it is
    /// `ERR_INVALID_ARGUMENT`; `threads: 0` gets all cores up to it.
    pub max_decoder_threads: Option<f64>,
}

/// `Video.open`'s options as the core's limits; what is not given keeps the default.
fn limits_request(options: Option<Unknown<'_>>) -> Result<frame_sampler::Limits, JsFailure> {
    let given = crate::args::options::<VideoLimits>("options", options)?;
    let defaults = frame_sampler::Limits::default();
    let call_timeout = match given.call_timeout_ms {
        Some(Either::B(Null)) => None,
        None => defaults.call_timeout,
        Some(Either::A(ms)) => Some(
            std::time::Duration::try_from_secs_f64(ms / 1000.0)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    JsFailure::invalid(format!(
                        "callTimeoutMs must be a number of milliseconds above 0, got {ms}"
                    ))
                })?,
        ),
    };
    let max_input_bytes = match given.max_input_bytes {
        None => defaults.max_input_bytes,
        Some(n) => crate::args::whole_bytes("maxInputBytes", n)? as u64,
    };
    Ok(frame_sampler::Limits {
        max_input_bytes,
        call_timeout,
        max_decoder_threads: crate::args::opt_usize(
            "maxDecoderThreads",
            given.max_decoder_threads,
        )?
        .unwrap_or(defaults.max_decoder_threads),
    })
}

/// The promise of [`Video::open`].
pub struct OpenTask(Option<Result<(Source, frame_sampler::Limits), JsFailure>>);

#[napi]
impl Task for OpenTask {
    type Output = Result<RsVideo, JsFailure>;
    type JsValue = Video;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let source = self
            .0
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        Ok(source.and_then(|(s, limits)| {
            guarded(|| RsVideo::open_with(s, limits).map_err(JsFailure::from))
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output
            .map(|video| Video {
                inner: Arc::new(Handle {
                    video: Mutex::new(Some(video)),
                    closed: AtomicBool::new(false),
                }),
            })
            .map_err(|f| f.into_napi(&env))
    }
}

/// One call on an open handle; holds the arguments' validation error, if any, so that it
/// rejects the promise like every other failure.
pub struct HandleTask<Req, Out> {
    video: Shared,
    call: Option<Result<Req, JsFailure>>,
    run: fn(&mut RsVideo, &Req) -> frame_sampler::Result<Out>,
}

impl<Req: Send, Out: Send + 'static> HandleTask<Req, Out> {
    fn new(
        video: &Shared,
        request: Result<Req, JsFailure>,
        run: fn(&mut RsVideo, &Req) -> frame_sampler::Result<Out>,
    ) -> Self {
        Self {
            video: video.clone(),
            call: Some(request),
            run,
        }
    }

    fn compute(&mut self) -> Result<Out, JsFailure> {
        let request = self
            .call
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")))?;
        let run = self.run;
        let video = self.video.clone();
        guarded(move || {
            let closed = || {
                JsFailure::from(frame_sampler::Error::InvalidRequest(
                    "the video is closed".into(),
                ))
            };
            let mut guard = video.video.lock().map_err(|_| {
                JsFailure::new("ERR_INTERNAL", "an earlier call on this video panicked")
            })?;
            if video.closed.load(Ordering::Acquire) {
                guard.take();
            }
            let result = run(guard.as_mut().ok_or_else(closed)?, &request);
            if video.closed.load(Ordering::Acquire) {
                // Closed while this call ran: release the file now.
                guard.take();
            }
            result.map_err(JsFailure::from)
        })
    }
}

/// The promise of [`Video::info`].
pub struct InfoTask(HandleTask<(), RsVideoInfo>);
/// The promise of [`Video::sample`].
pub struct SampleTask(HandleTask<SampleOptions, RsFrameBatch>);
/// The promise of [`Video::thumbnail`].
pub struct HandleThumbnailTask(HandleTask<RsThumbnailOptions, RsThumbnail>);
/// The promise of [`Video::storyboard`].
pub struct HandleStoryboardTask(HandleTask<(usize, RsThumbnailOptions), Vec<RsThumbnail>>);

frame_task!(InfoTask, RsVideoInfo, VideoInfo, VideoInfo::from);
frame_task!(SampleTask, RsFrameBatch, FrameBatch, FrameBatch::from);
frame_task!(HandleThumbnailTask, RsThumbnail, Thumbnail, Thumbnail::from);
frame_task!(
    HandleStoryboardTask,
    Vec<RsThumbnail>,
    Vec<Thumbnail>,
    |v: Vec<RsThumbnail>| v.into_iter().map(Thumbnail::from).collect()
);

#[napi]
impl Video {
    /// Opens a video (a path, or the whole file as a `Buffer`/`Uint8Array`); rejects with the
    /// errors `probe` rejects with for a missing, unreadable or audio-only file. `options`
    /// sets the limits every call on the handle keeps to (the defaults apply otherwise).
    #[napi(
        catch_unwind,
        ts_args_type = "source: string | Buffer | Uint8Array, options?: VideoLimits"
    )]
    pub fn open(source: Unknown<'_>, options: Option<Unknown<'_>>) -> AsyncTask<OpenTask> {
        let request = source_arg(source).and_then(|s| Ok((s, limits_request(options)?)));
        AsyncTask::new(OpenTask(Some(request)))
    }

    /// The facts of the video stream (what `probe` resolves to), computed on the first call.
    #[napi(catch_unwind)]
    pub fn info(&self) -> AsyncTask<InfoTask> {
        AsyncTask::new(InfoTask(HandleTask::new(&self.inner, Ok(()), |v, ()| {
            v.info()
        })))
    }

    /// Decodes the frames `options` asks for, as `sampleFrames(source, options)` does.
    #[napi(catch_unwind, ts_args_type = "options?: SampleFramesOptions")]
    pub fn sample(&self, options: Option<Unknown<'_>>) -> AsyncTask<SampleTask> {
        let request = sample_request(options);
        AsyncTask::new(SampleTask(HandleTask::new(&self.inner, request, |v, o| {
            v.sample(o)
        })))
    }

    /// One representative frame, as `thumbnail(source, options)` makes it.
    #[napi(catch_unwind, ts_args_type = "options?: ThumbnailOptions")]
    pub fn thumbnail(&self, options: Option<Unknown<'_>>) -> AsyncTask<HandleThumbnailTask> {
        let request = thumbnail_request(options);
        AsyncTask::new(HandleThumbnailTask(HandleTask::new(
            &self.inner,
            request,
            |v, o| v.thumbnail(o),
        )))
    }

    /// `n` representative frames in time order, as `storyboard(source, n, options)` makes them.
    #[napi(catch_unwind, ts_args_type = "n: number, options?: ThumbnailOptions")]
    pub fn storyboard(
        &self,
        n: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> AsyncTask<HandleStoryboardTask> {
        let request = storyboard_request(n, options);
        AsyncTask::new(HandleStoryboardTask(HandleTask::new(
            &self.inner,
            request,
            |v, (n, o)| v.storyboard(*n, o),
        )))
    }

    /// Releases the container and the decoder once the call in progress (if any) is done; later
    /// calls reject with `ERR_INVALID_ARGUMENT`. Closing twice is fine.
    #[napi]
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        // Never blocks the event loop: a call in flight holds the lock and drops the video
        // itself when it sees the flag.
        if let Ok(mut video) = self.inner.video.try_lock() {
            video.take();
        }
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}
