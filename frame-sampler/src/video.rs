//! [`Video`]: one opened video, reused by every call on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ffmpeg_next as ffmpeg;

use crate::decode::{self, SampleStats};
use crate::index::PacketIndex;
use crate::limits::{Deadline, Limits};
use crate::media::{self, Media};
use crate::probe::{self, StreamFacts};
use crate::{
    sample, thumbnail, FrameBatch, Result, SampleOptions, Sampling, SeekMode, Source, Thumbnail,
    ThumbnailOptions, VideoInfo,
};

/// An opened video: the container is opened once, and what one call learns is kept for the next.
///
/// The free functions ([`crate::probe`], [`crate::sample_frames`], [`crate::thumbnail`],
/// [`crate::storyboard`]) each open the file, read what they need and forget it; on Matroska,
/// WebM, MPEG-TS and AVI, whose containers list no frames, that is one pass over every packet
/// per call (a thumbnail makes up to four calls). A `Video` keeps:
///
/// - the demuxer, and a second one when a call leaves the first mid-file and the next must start
///   from the beginning (a counted scan, the MP4 sample-table path): reopening costs the header;
/// - the packet index (every packet's timestamps, keyframe flag and position), built at most
///   once and only by the first call that needs it: [`Video::info`] on a container without a
///   trustworthy frame table, or the first exact or non-MP4 sample;
/// - the facts [`Video::info`] reports, computed once;
/// - the decoder, reused by the next call with the same thread count (flushed in between).
///
/// Results are those of the free functions, frame for frame. The file is assumed not to change
/// while the handle is open. A `Video` is [`Send`]: move it to another thread, or share it behind
/// a mutex; calls on one handle run one at a time.
///
/// ```no_run
/// use frame_sampler::{SampleOptions, Sampling, ThumbnailOptions, Video};
/// let mut video = Video::open("clip.mkv")?;
/// let info = video.info()?; // a Matroska file: one pass over its packets, kept
/// let frames = video.sample(&SampleOptions::new(Sampling::Uniform(8)))?;
/// let thumb = video.thumbnail(&ThumbnailOptions::default())?; // no second pass
/// println!("{} frames, {} packets read in all", info.frame_count, video.stats().packets_read);
/// # Ok::<(), frame_sampler::Error>(())
/// ```
pub struct Video {
    source: Source,
    facts: StreamFacts,
    /// A demuxer at the very start of the file that nothing has read from.
    fresh: Option<Media>,
    /// A demuxer anywhere in the file, for calls that seek before they read.
    spare: Option<Media>,
    index: Option<Arc<PacketIndex>>,
    info: Option<VideoInfo>,
    /// A decoder of the video stream (flushed) and the thread count it was opened with.
    decoder: Option<(usize, ffmpeg::decoder::Video)>,
    packets_read: Arc<AtomicU64>,
    stats: SampleStats,
    limits: Limits,
    deadline: Deadline,
    /// Whether a public call is running (its inner calls keep its deadline).
    in_call: bool,
}

impl std::fmt::Debug for Video {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Video")
            .field("source", &self.source.describe())
            .field("indexed", &self.index.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Video {
    /// Opens `source` (a path, bytes, or [`Source::reader`]) and reads its headers; no packet is
    /// read yet. The handle keeps to [`Limits::process_default`] ([`Limits::default`] unless the
    /// program set others).
    ///
    /// Errors: [`crate::Error::NotFound`], [`crate::Error::Open`] (not a media container, a
    /// still image), [`crate::Error::NoVideoStream`] (audio only).
    pub fn open(source: impl Into<Source>) -> Result<Video> {
        Self::open_with(source, Limits::process_default())
    }

    /// [`Video::open`] with these [`Limits`] instead of the defaults; every call on the handle
    /// keeps to them.
    ///
    /// Errors: as [`Video::open`]; [`crate::Error::InvalidRequest`] for limits that are not
    /// valid ([`Limits::validate`]); [`crate::Error::Limit`] for an input over
    /// `max_input_bytes`, or an open (FFmpeg reading the headers) past `call_timeout`.
    pub fn open_with(source: impl Into<Source>, limits: Limits) -> Result<Video> {
        limits.validate()?;
        let source = source.into();
        let packets_read = Arc::new(AtomicU64::new(0));
        let deadline = Deadline::default();
        deadline.arm(limits.call_timeout);
        let media = media::open(
            &source,
            packets_read.clone(),
            &deadline,
            limits.max_input_bytes,
        )
        .and_then(|m| StreamFacts::read(&m).map(|facts| (m, facts)));
        let (media, facts) = match media {
            _ if deadline.fired() => return Err(deadline.error(&source.describe())),
            result => result?,
        };
        Ok(Video {
            source,
            facts,
            fresh: Some(media),
            spare: None,
            index: None,
            info: None,
            decoder: None,
            packets_read,
            stats: SampleStats::default(),
            limits,
            deadline,
            in_call: false,
        })
    }

    /// The limits every call on this handle keeps to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs one public call under a fresh deadline: a read the deadline stopped makes the call
    /// a timeout, whatever the truncated reads gave.
    /// A call made inside another (a thumbnail's samples) runs under the outer one's deadline.
    fn call<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.in_call {
            return f(self);
        }
        self.deadline.arm(self.limits.call_timeout);
        self.in_call = true;
        let result = f(self);
        self.in_call = false;
        if self.deadline.fired() {
            // A demuxer the deadline interrupted may hold a latched error: start afresh.
            self.spare = None;
            self.fresh = None;
            self.decoder = None;
            return Err(self.deadline.error(&self.source.describe()));
        }
        result
    }

    /// What was opened.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The facts of the video stream (what [`crate::probe`] reports). Computed on the first
    /// call: from the container's frame table on MP4/MOV (no packet read), else by building the
    /// packet index, which later calls reuse.
    pub fn info(&mut self) -> Result<VideoInfo> {
        if let Some(info) = &self.info {
            return Ok(info.clone());
        }
        let info = self.call(probe::info)?;
        self.info = Some(info.clone());
        Ok(info)
    }

    /// Decodes the frames `options` asks for; see [`crate::sample_frames`].
    pub fn sample(&mut self, options: &SampleOptions) -> Result<FrameBatch> {
        self.sample_with_stats(options).map(|(batch, _)| batch)
    }

    /// Like [`Video::sample`], also reporting the work this call did (an index built by an
    /// earlier call counts there, not here).
    pub fn sample_with_stats(
        &mut self,
        options: &SampleOptions,
    ) -> Result<(FrameBatch, SampleStats)> {
        options.validate()?;
        self.call(|v| sample::sample(v, options, true))
    }

    /// One representative frame of the whole video, encoded; see [`crate::thumbnail`].
    pub fn thumbnail(&mut self, options: &ThumbnailOptions) -> Result<Thumbnail> {
        self.call(|v| thumbnail::thumbnail(v, options))
    }

    /// A thumbnail chosen among `frames`, decoded from this video already (the frames sampled
    /// for a model, with `rotate` as `options.rotate` says), so nothing more is decoded: they
    /// are scored and judged as [`Video::thumbnail`]'s own candidates (16 keyframes) are. When
    /// they cannot stand in for those (fewer than 8, another aspect or orientation, smaller than
    /// `options.max_size`, or none fit to show), this is [`Video::thumbnail`].
    pub fn thumbnail_among(
        &mut self,
        frames: &FrameBatch,
        options: &ThumbnailOptions,
    ) -> Result<Thumbnail> {
        self.call(|v| thumbnail::thumbnail_among(v, frames, options))
    }

    /// `n` distinct representative frames in time order; see [`crate::storyboard`].
    pub fn storyboard(&mut self, n: usize, options: &ThumbnailOptions) -> Result<Vec<Thumbnail>> {
        self.call(|v| thumbnail::storyboard(v, n, options))
    }

    /// The frames at these presentation indices (in the order given, duplicates allowed),
    /// decoded exactly at full size: `sample(&SampleOptions::new(Sampling::Indices(..)))`.
    pub fn frames_at(&mut self, indices: &[u64]) -> Result<FrameBatch> {
        self.sample(&SampleOptions::new(Sampling::Indices(indices.to_vec())).seek(SeekMode::Exact))
    }

    /// The frames on screen at these times (seconds from the first frame), decoded exactly at
    /// full size: `sample(&SampleOptions::new(Sampling::Timestamps(..)))`.
    pub fn frames_at_times(&mut self, seconds: &[f64]) -> Result<FrameBatch> {
        self.sample(
            &SampleOptions::new(Sampling::Timestamps(seconds.to_vec())).seek(SeekMode::Exact),
        )
    }

    /// The work every call on this handle did so far, added up: the index is counted once.
    pub fn stats(&self) -> SampleStats {
        SampleStats {
            packets_read: self.packets_read.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    // ---- for the sampler's modules -------------------------------------------------------

    pub(crate) fn facts(&self) -> &StreamFacts {
        &self.facts
    }

    pub(crate) fn source_name(&self) -> String {
        self.source.describe()
    }

    /// Video packets read so far by every demuxer of this handle.
    pub(crate) fn packets_read(&self) -> u64 {
        self.packets_read.load(Ordering::Relaxed)
    }

    /// Adds one call's work to the handle's totals.
    pub(crate) fn record(&mut self, call: &SampleStats) {
        let s = &mut self.stats;
        s.frames_decoded += call.frames_decoded;
        s.packets_sent += call.packets_sent;
        s.packets_sent_skippable += call.packets_sent_skippable;
        s.seeks += call.seeks;
    }

    /// A demuxer at the start of the file: the unused one, or a new one.
    pub(crate) fn take_fresh(&mut self) -> Result<Media> {
        match self.fresh.take() {
            Some(m) => Ok(m),
            None => media::open(
                &self.source,
                self.packets_read.clone(),
                &self.deadline,
                self.limits.max_input_bytes,
            ),
        }
    }

    /// A demuxer for a call that seeks before reading: the used one if there is one.
    pub(crate) fn take_any(&mut self) -> Result<Media> {
        match self.spare.take() {
            Some(m) => Ok(m),
            None => self.take_fresh(),
        }
    }

    /// The unread demuxer (opened if need be, and kept unread), to read header facts from as
    /// the container gave them at open (a fragmented MP4's table grows as packets are read).
    pub(crate) fn peek(&mut self) -> Result<&Media> {
        if self.fresh.is_none() {
            self.fresh = Some(media::open(
                &self.source,
                self.packets_read.clone(),
                &self.deadline,
                self.limits.max_input_bytes,
            )?);
        }
        Ok(self.fresh.as_ref().expect("set above"))
    }

    /// Gives back a demuxer a call has read from.
    pub(crate) fn put_back(&mut self, media: Media) {
        self.spare = Some(media);
    }

    /// The packet index, built on first use from a fresh demuxer (then kept as the spare one).
    pub(crate) fn index(&mut self) -> Result<Arc<PacketIndex>> {
        if let Some(index) = &self.index {
            return Ok(index.clone());
        }
        let mut media = self.take_fresh()?;
        let index = PacketIndex::build(&mut media);
        if self.deadline.fired() {
            // An index the deadline cut short is not the file's: never keep it.
            return Err(self.deadline.error(&self.source.describe()));
        }
        let index = Arc::new(index?);
        self.stats.packets_indexed += index.packets.len() as u64;
        self.put_back(media);
        self.index = Some(index.clone());
        Ok(index)
    }

    /// How many packets index passes read so far (at most one pass per handle).
    pub(crate) fn packets_indexed(&self) -> u64 {
        self.stats.packets_indexed
    }

    /// A flushed decoder opened with `threads` (resolved) threads, if one is kept.
    pub(crate) fn take_decoder(&mut self, threads: usize) -> Option<ffmpeg::decoder::Video> {
        match self.decoder.take() {
            Some((t, d)) if t == decode::resolve_threads(threads) => Some(d),
            _ => None,
        }
    }

    /// Keeps a flushed decoder for the next call.
    pub(crate) fn keep_decoder(&mut self, threads: usize, decoder: ffmpeg::decoder::Video) {
        self.decoder = Some((decode::resolve_threads(threads), decoder));
    }
}
