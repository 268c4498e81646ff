//! [`Limits`]: what one opened [`crate::Video`] may cost (input size, wall-clock time per call,
//! decoder threads), and the per-call deadline that FFmpeg's interrupt callback and the packet
//! loop both watch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// The resource limits of one [`crate::Video`] (and of each free function's call, with the
/// defaults). A refusal is [`crate::Error::Limit`], naming the limit.
///
/// The frame size limit ([`crate::MAX_FRAME_SIDE`], [`crate::MAX_FRAME_PIXELS`]) and the output
/// budget ([`crate::SampleOptions::max_bytes`]) are per request and stay there.
///
/// ```no_run
/// use std::time::Duration;
/// use frame_sampler::{Limits, SampleOptions, Sampling, Video};
/// let limits = Limits {
///     max_input_bytes: 512 << 20,
///     call_timeout: Some(Duration::from_secs(20)),
///     ..Limits::default()
/// };
/// let mut video = Video::open_with("upload.mp4", limits)?;
/// let frames = video.sample(&SampleOptions::new(Sampling::Uniform(8)))?;
/// # Ok::<(), frame_sampler::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest input accepted, in bytes: a file's size, the length of bytes in memory, a
    /// reader's length. Checked when the video is opened, before FFmpeg reads anything.
    pub max_input_bytes: u64,
    /// Wall-clock time one call may take: opening, [`crate::Video::info`], a sample, a
    /// thumbnail, a storyboard, each counted from its own start. A call past it stops at the
    /// next packet or blocking read and fails; the handle stays usable. `None`: no limit.
    pub call_timeout: Option<Duration>,
    /// The most decoder threads a call may use. A request for more is refused; a request for
    /// "all cores" (`threads` 0) gets `min(cores, max_decoder_threads)`.
    pub max_decoder_threads: usize,
}

impl Limits {
    /// Default [`Limits::max_input_bytes`]: 16 GiB.
    pub const DEFAULT_MAX_INPUT_BYTES: u64 = 16 << 30;
    /// Default [`Limits::call_timeout`]: 10 minutes, several times what decoding a feature
    /// film's thumbnail takes on one core.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(600);
    /// Default [`Limits::max_decoder_threads`]: 16 (FFmpeg's own advice for frame threads).
    pub const DEFAULT_MAX_DECODER_THREADS: usize = 16;

    /// No limit at all (trusted input only).
    pub fn none() -> Self {
        Limits {
            max_input_bytes: u64::MAX,
            call_timeout: None,
            max_decoder_threads: usize::MAX,
        }
    }

    /// Checks the limits themselves: a size and a thread count of at least 1, a timeout above 0.
    ///
    /// Errors: [`crate::Error::InvalidRequest`] naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::InvalidRequest(m.to_string()));
        if self.max_input_bytes == 0 {
            return bad("max_input_bytes must be at least 1");
        }
        if self.call_timeout == Some(Duration::ZERO) {
            return bad("call_timeout must be above 0 (None for no limit)");
        }
        if self.max_decoder_threads == 0 {
            return bad("max_decoder_threads must be at least 1");
        }
        Ok(())
    }

    /// The limits [`crate::Video::open`] and the free functions ([`crate::sample_frames`],
    /// [`crate::thumbnail`], ...) apply: [`Limits::default`] unless a program set others with
    /// [`Limits::set_process_default`]. [`crate::Video::open_with`] ignores them.
    pub fn process_default() -> Limits {
        PROCESS_DEFAULT
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Makes `limits` what every later [`crate::Video::open`] in this process applies, so that a
    /// program (a command-line tool, a server) sets its limits once, from its flags, for every
    /// library that opens videos through this crate. A library should not call this: it passes
    /// its limits to [`crate::Video::open_with`].
    ///
    /// Errors: [`crate::Error::InvalidRequest`] for limits that are not valid
    /// ([`Limits::validate`]); the default is then unchanged.
    pub fn set_process_default(limits: Limits) -> crate::Result<()> {
        limits.validate()?;
        *PROCESS_DEFAULT
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(limits);
        Ok(())
    }

    /// The decoder threads a request for `threads` (0: all cores) gets.
    ///
    /// Errors: [`crate::Error::Limit`] ([`Limit::DecoderThreads`]) when `threads` is over the cap.
    pub(crate) fn decoder_threads(
        &self,
        threads: usize,
        source_name: &str,
    ) -> crate::Result<usize> {
        if threads > self.max_decoder_threads {
            return Err(crate::Error::Limit {
                source_name: source_name.to_string(),
                limit: Limit::DecoderThreads,
                reason: format!(
                    "{threads} decoder threads asked for, the limit is {}",
                    self.max_decoder_threads
                ),
            });
        }
        Ok(crate::decode::resolve_threads(threads).min(self.max_decoder_threads))
    }
}

/// What [`Limits::set_process_default`] set; `None`: [`Limits::default`].
static PROCESS_DEFAULT: RwLock<Option<Limits>> = RwLock::new(None);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES,
            call_timeout: Some(Self::DEFAULT_CALL_TIMEOUT),
            max_decoder_threads: Self::DEFAULT_MAX_DECODER_THREADS,
        }
    }
}

/// Which of the [`Limits`] refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_input_bytes`].
    InputBytes,
    /// [`Limits::call_timeout`].
    CallTimeout,
    /// [`Limits::max_decoder_threads`].
    DecoderThreads,
}

impl Limit {
    /// The field's name: `"max_input_bytes"`, `"call_timeout"`, `"max_decoder_threads"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::InputBytes => "max_input_bytes",
            Limit::CallTimeout => "call_timeout",
            Limit::DecoderThreads => "max_decoder_threads",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The deadline of the call in progress on one [`crate::Video`], shared by every demuxer it
/// opened: FFmpeg's interrupt callback and [`crate::media::Media::read_video_packet`] read it,
/// and whichever sees it pass marks it fired, so the call reports a timeout instead of the
/// truncated result the stopped reads would give.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deadline(Arc<DeadlineState>);

#[derive(Debug, Default)]
struct DeadlineState {
    /// Nanoseconds after [`epoch`] when the call must stop; 0: no deadline.
    at: AtomicU64,
    /// The budget armed, in nanoseconds (for the error message).
    budget: AtomicU64,
    fired: AtomicBool,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Deadline {
    /// Starts a call: `budget` from now (`None`: none), not fired.
    pub fn arm(&self, budget: Option<Duration>) {
        // A budget past what Instant can hold (centuries) is a deadline that never comes.
        let at = budget.map_or(0, |b| match Instant::now().checked_add(b) {
            Some(at) => u64::try_from(at.saturating_duration_since(epoch()).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            None => u64::MAX,
        });
        let nanos = budget.map_or(0, |b| u64::try_from(b.as_nanos()).unwrap_or(u64::MAX));
        self.0.at.store(at, Ordering::Relaxed);
        self.0.budget.store(nanos, Ordering::Relaxed);
        self.0.fired.store(false, Ordering::Relaxed);
    }

    /// The error of a call this deadline stopped.
    pub fn error(&self, source_name: &str) -> crate::Error {
        let budget = Duration::from_nanos(self.0.budget.load(Ordering::Relaxed));
        crate::Error::Limit {
            source_name: source_name.to_string(),
            limit: Limit::CallTimeout,
            reason: format!(
                "the call ran past its {:.3} s budget and was stopped",
                budget.as_secs_f64()
            ),
        }
    }

    /// Whether the deadline has passed (and, if so, marks it fired).
    pub fn passed(&self) -> bool {
        let at = self.0.at.load(Ordering::Relaxed);
        if at == 0 {
            return false;
        }
        let now = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
        if now >= at {
            self.0.fired.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether a read was stopped by the deadline since [`Deadline::arm`].
    pub fn fired(&self) -> bool {
        self.0.fired.load(Ordering::Relaxed)
    }
}
