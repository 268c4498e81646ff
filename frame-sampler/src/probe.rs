//! What a video is: codec, sizes, rotation, rates, duration, frame count.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use crate::media::{self, Media};
use crate::{FrameCountSource, Result, Video, VideoInfo};

/// Facts read from the headers alone (no packets read).
#[derive(Clone, Debug)]
pub(crate) struct StreamFacts {
    pub container: String,
    pub codec: String,
    pub coded_width: u32,
    pub coded_height: u32,
    /// Clockwise degrees, one of 0, 90, 180, 270.
    pub rotation: u32,
    pub avg_fps: f64,
    pub real_fps: f64,
    /// Seconds, 0 when unknown.
    pub duration: f64,
    /// The header's frame count, 0 when absent.
    pub header_frames: u64,
}

impl StreamFacts {
    pub fn read(media: &Media) -> Result<Self> {
        let stream = media.video_stream()?;
        let params = stream.parameters();
        // SAFETY: `params` wraps the stream's valid AVCodecParameters; plain fields are read.
        let (w, h) = unsafe { ((*params.as_ptr()).width, (*params.as_ptr()).height) };
        let codec = ffmpeg::codec::decoder::find(params.id())
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("{:?}", params.id()).to_lowercase());
        let rate = |r: ffmpeg::Rational| {
            let v = f64::from(r);
            if v.is_finite() && v > 0.0 {
                v
            } else {
                0.0
            }
        };
        let tb = stream.time_base();
        let stream_duration = if stream.duration() > 0 && tb.denominator() != 0 {
            stream.duration() as f64 * f64::from(tb)
        } else {
            0.0
        };
        let duration = if stream_duration > 0.0 {
            stream_duration
        } else if media.input.duration() > 0 {
            media.input.duration() as f64 / f64::from(ffi::AV_TIME_BASE)
        } else {
            0.0
        };
        Ok(StreamFacts {
            container: media.input.format().name().to_string(),
            codec,
            coded_width: w.max(0) as u32,
            coded_height: h.max(0) as u32,
            rotation: rotation(&stream),
            avg_fps: rate(stream.avg_frame_rate()),
            real_fps: rate(stream.rate()),
            duration,
            header_frames: stream.frames().max(0) as u64,
        })
    }

    /// Whether the container is the ISO/QuickTime family, whose sample tables list every frame.
    pub(crate) fn is_mov(&self) -> bool {
        self.container.starts_with("mov,")
    }
}

/// The display matrix's rotation as clockwise degrees, normalized to 0/90/180/270 the way the
/// ffmpeg CLI's autorotate reads it.
fn rotation(stream: &ffmpeg::format::stream::Stream<'_>) -> u32 {
    // SAFETY: av_stream_get_side_data returns a pointer into the stream's own side data (or
    // null) and its size; the display matrix is nine int32 values (36 bytes), checked below.
    let degrees = unsafe {
        let mut size: usize = 0;
        let data = ffi::av_stream_get_side_data(
            stream.as_ptr(),
            ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            &mut size,
        );
        if data.is_null() || size < 36 {
            return 0;
        }
        ffi::av_display_rotation_get(data as *const i32)
    };
    normalize_rotation(degrees)
}

/// `av_display_rotation_get` gives counter-clockwise degrees in (-180, 180]; turn that into a
/// clockwise right angle.
pub(crate) fn normalize_rotation(counter_clockwise: f64) -> u32 {
    if !counter_clockwise.is_finite() {
        return 0;
    }
    let clockwise = (-counter_clockwise).rem_euclid(360.0);
    (((clockwise / 90.0).round() as u32) % 4) * 90
}

/// The mp4/mov sample table's frame count, when it is exact: every listed sample lies inside the
/// file (a truncated file's table lists frames that are gone). Samples an edit list hides are
/// not frames.
fn mov_index_count(media: &Media) -> Option<u64> {
    let file_size = media.input.io_size()?;
    // SAFETY: the stream pointer is valid while `media` is; avformat_index_get_entry returns
    // pointers into the stream's index, valid until the next call that modifies it (none here).
    unsafe {
        let ctx = media.input.as_ptr();
        let st = *(*ctx).streams.add(media.stream);
        let n = ffi::avformat_index_get_entries_count(st);
        if n <= 0 {
            return None;
        }
        let mut count = 0u64;
        for i in 0..n {
            let e = ffi::avformat_index_get_entry(st, i);
            if e.is_null() {
                return None;
            }
            let end = (*e).pos + i64::from((*e).size());
            if end > file_size {
                return None;
            }
            if (*e).flags() as i32 & ffi::AVINDEX_DISCARD_FRAME == 0 {
                count += 1;
            }
        }
        Some(count)
    }
}

/// The facts [`crate::Video::info`] reports: the frame count from the MP4/MOV frame table when
/// it is exact, else from the packet index (which the handle keeps).
pub(crate) fn info(video: &mut Video) -> Result<VideoInfo> {
    let facts = video.facts().clone();
    let (table_count, has_audio) = {
        let media = video.peek()?;
        let count = if facts.is_mov() {
            mov_index_count(media)
        } else {
            None
        };
        (count, media::has_audio(&media.input))
    };
    let (frame_count, frame_count_source, counted_end) = match table_count {
        Some(n) => (n, FrameCountSource::Index, None),
        None => {
            // No trustworthy index (Matroska, WebM, MPEG-TS, AVI, truncated mp4): count packets.
            let index = video.index()?;
            if index.frame_count > 0 {
                (
                    index.frame_count,
                    FrameCountSource::Counted,
                    Some(index.end_time),
                )
            } else if facts.header_frames > 0 {
                (facts.header_frames, FrameCountSource::Header, None)
            } else {
                (
                    (facts.duration * facts.avg_fps).round() as u64,
                    FrameCountSource::Estimated,
                    None,
                )
            }
        }
    };
    let (width, height) = if facts.rotation % 180 == 90 {
        (facts.coded_height, facts.coded_width)
    } else {
        (facts.coded_width, facts.coded_height)
    };
    let duration = if facts.duration > 0.0 {
        facts.duration
    } else {
        counted_end.unwrap_or(0.0)
    };
    Ok(VideoInfo {
        container: facts.container,
        codec: facts.codec,
        width,
        height,
        coded_width: facts.coded_width,
        coded_height: facts.coded_height,
        rotation: facts.rotation,
        avg_fps: facts.avg_fps,
        real_fps: facts.real_fps,
        duration,
        frame_count,
        frame_count_source,
        has_audio,
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_rotation;

    #[test]
    fn rotation_is_clockwise_right_angles() {
        assert_eq!(normalize_rotation(0.0), 0);
        assert_eq!(normalize_rotation(-90.0), 90);
        assert_eq!(normalize_rotation(90.0), 270);
        assert_eq!(normalize_rotation(180.0), 180);
        assert_eq!(normalize_rotation(-180.0), 180);
        assert_eq!(normalize_rotation(-89.6), 90);
        assert_eq!(normalize_rotation(f64::NAN), 0);
    }
}
