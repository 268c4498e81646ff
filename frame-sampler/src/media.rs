//! Opening a [`Source`] as an FFmpeg demuxer and choosing its video stream.
//!
//! Everything that touches FFmpeg starts here: one-time library setup, the in-memory I/O for byte
//! sources, and the mapping of FFmpeg's open failures to this crate's typed errors.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::context::{Input, StreamIo};
use ffmpeg_next::media::Type as MediaType;

use crate::limits::{Deadline, Limit};
use crate::{Error, Result, Source};

static INIT: Once = Once::new();

/// Initializes FFmpeg once per process and silences its logging: a library must not print to the
/// caller's stderr, and every failure reaches the caller as a typed [`Error`] anyway.
/// `FRAME_SAMPLER_FFMPEG_LOG=error|warning|info|debug` turns FFmpeg's own log back on for debugging.
pub(crate) fn init() {
    INIT.call_once(|| {
        // `init` only registers devices/formats, which FFmpeg 5+ no longer needs; it cannot fail
        // in a way that matters here.
        let _ = ffmpeg::init();
        use ffmpeg::util::log::Level;
        let level = match std::env::var("FRAME_SAMPLER_FFMPEG_LOG").as_deref() {
            Ok("error") => Level::Error,
            Ok("warning") => Level::Warning,
            Ok("info") => Level::Info,
            Ok("debug") => Level::Debug,
            _ => Level::Quiet,
        };
        ffmpeg::util::log::set_level(level);
    });
}

/// An opened container and the index of the video stream this crate works on.
pub(crate) struct Media {
    pub input: Input,
    pub stream: usize,
    pub source_name: String,
    /// Video packets read from this container, added to a counter shared by every demuxer a
    /// [`crate::Video`] opens (what [`crate::SampleStats::packets_read`] reports).
    packets_read: Arc<AtomicU64>,
    /// The deadline of the call in progress, shared by every demuxer of the handle.
    deadline: Deadline,
}

/// Gives up on a stream that returns this many unreadable packets in a row (a demuxer that keeps
/// failing on a truncated file without making progress would otherwise loop forever).
pub(crate) const MAX_CONSECUTIVE_READ_ERRORS: usize = 64;

impl Media {
    /// The video stream this crate works on.
    pub fn video_stream(&self) -> Result<ffmpeg::format::stream::Stream<'_>> {
        self.input
            .stream(self.stream)
            .ok_or_else(|| Error::NoVideoStream {
                source_name: self.source_name.clone(),
            })
    }

    /// Makes the demuxer skip every other stream's packets unread: nothing here needs them.
    pub fn discard_other_streams(&mut self) {
        // SAFETY: `input` owns a valid AVFormatContext whose `streams` array has `nb_streams`
        // valid entries; only the `discard` field is written.
        unsafe {
            let ctx = self.input.as_mut_ptr();
            for i in 0..(*ctx).nb_streams as usize {
                let st = *(*ctx).streams.add(i);
                (*st).discard = if i == self.stream {
                    ffi::AVDiscard::AVDISCARD_DEFAULT
                } else {
                    ffi::AVDiscard::AVDISCARD_ALL
                };
            }
        }
    }

    /// The next packet of the video stream, or `None` at the end of the readable data (EOF, an
    /// I/O error, or [`MAX_CONSECUTIVE_READ_ERRORS`] unreadable packets in a row), or once the
    /// call's deadline has passed (the handle then reports the timeout).
    pub fn read_video_packet(&mut self) -> Option<ffmpeg::Packet> {
        let mut errors = 0;
        loop {
            if self.deadline.passed() {
                return None;
            }
            // A fresh packet each time: ffmpeg-next's `Packet::read` does not unreference what
            // a reused packet held, so reusing one leaks every packet's data.
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream => {
                    self.packets_read.fetch_add(1, Ordering::Relaxed);
                    return Some(packet);
                }
                Ok(()) => errors = 0,
                Err(ffmpeg::Error::InvalidData) if errors < MAX_CONSECUTIVE_READ_ERRORS => {
                    errors += 1
                }
                // EOF, or an error that ends the readable data (I/O, a latched failure, a
                // demuxer stuck on a truncated file).
                Err(_) => return None,
            }
        }
    }
}

/// Opens `source` and picks its best video stream (cover art is not video). Every video packet
/// read through the returned demuxer is counted in `packets_read`; FFmpeg's interrupt callback
/// stops a blocking open or read once `deadline` passes. A source over `max_input_bytes` is
/// refused before FFmpeg reads it.
pub(crate) fn open(
    source: &Source,
    packets_read: Arc<AtomicU64>,
    deadline: &Deadline,
    max_input_bytes: u64,
) -> Result<Media> {
    init();
    let source_name = source.describe();
    let open_err = |e: ffmpeg::Error| {
        if deadline.fired() {
            return deadline.error(&source_name);
        }
        Error::Open {
            source_name: source_name.clone(),
            reason: e.to_string(),
        }
    };
    let too_big = |len: u64| Error::Limit {
        source_name: source_name.clone(),
        limit: Limit::InputBytes,
        reason: format!("the input is {len} bytes, the limit is {max_input_bytes}"),
    };
    let interrupt = {
        let deadline = deadline.clone();
        move || deadline.passed()
    };
    let input = match source {
        Source::Path(path) => {
            // FFmpeg reports a missing file as a generic ENOENT; check first so callers get NotFound.
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound { source_name });
                }
                Err(e) => {
                    return Err(Error::Open {
                        source_name,
                        reason: e.to_string(),
                    })
                }
                Ok(m) if m.is_dir() => {
                    return Err(Error::Open {
                        source_name,
                        reason: "is a directory".into(),
                    });
                }
                Ok(m) if m.len() > max_input_bytes => return Err(too_big(m.len())),
                Ok(_) => {}
            }
            ffmpeg::format::input_with_interrupt(path, interrupt).map_err(open_err)?
        }
        Source::Bytes(bytes) => {
            if bytes.len() as u64 > max_input_bytes {
                return Err(too_big(bytes.len() as u64));
            }
            // ffmpeg-next's StreamIo owns the AVIOContext and the boxed cursor, and frees both
            // (and the format context) when `Input` drops, on every path.
            let io = StreamIo::from_read_seek(Cursor::new(bytes.clone())).map_err(open_err)?;
            ffmpeg::format::input_from_stream_with_interrupt(io, None, None, interrupt)
                .map_err(open_err)?
        }
        Source::Reader(reader) => {
            let len = reader.len().map_err(|e| Error::Open {
                source_name: source_name.clone(),
                reason: format!("cannot find the reader's length: {e}"),
            })?;
            if len > max_input_bytes {
                return Err(too_big(len));
            }
            // Each demuxer reads through its own cursor over the shared reader.
            let io = StreamIo::from_read_seek(reader.cursor()).map_err(open_err)?;
            ffmpeg::format::input_from_stream_with_interrupt(io, None, None, interrupt)
                .map_err(open_err)?
        }
    };
    let format_name = input.format().name().to_string();
    // A still image (an image renamed .mp4, say) opens as an image "pipe": not a video.
    if format_name.ends_with("_pipe") || format_name == "image2" {
        return Err(Error::Open {
            source_name,
            reason: format!("a still image ({format_name}), not a video"),
        });
    }
    let stream = pick_video_stream(&input).ok_or_else(|| Error::NoVideoStream {
        source_name: source_name.clone(),
    })?;
    Ok(Media {
        input,
        stream,
        source_name,
        packets_read,
        deadline: deadline.clone(),
    })
}

fn pick_video_stream(input: &Input) -> Option<usize> {
    let is_real_video = |s: &ffmpeg::format::stream::Stream| {
        s.parameters().medium() == MediaType::Video
            && !s
                .disposition()
                .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
    };
    if let Some(best) = input.streams().best(MediaType::Video) {
        if is_real_video(&best) {
            return Some(best.index());
        }
    }
    input
        .streams()
        .find(|s| is_real_video(s))
        .map(|s| s.index())
}

/// Whether the container holds at least one audio stream.
pub(crate) fn has_audio(input: &Input) -> bool {
    input
        .streams()
        .any(|s| s.parameters().medium() == MediaType::Audio)
}
