//! `sample_frames`: plan the request, check the memory budget, decode, and fill the batch.

use std::collections::HashMap;

use ffmpeg_next::util::frame::video::Video as VideoFrame;

use crate::convert::RgbConverter;
use crate::decode::{FrameSink, SampleStats, ScanTargets, Session};
use crate::index::{Identity, PacketIndex};
use crate::media;
use crate::plan::{self, PlanError, Timeline};
use crate::probe::StreamFacts;
use crate::{Error, FrameBatch, Result, SampleOptions, Sampling, SeekMode, Source};

/// Frames wider or taller than this are refused unless a resize is requested: no real video is
/// that large, and decoding one is how a hostile file exhausts memory.
pub const MAX_FRAME_SIDE: u32 = 16384;
/// Frames with more pixels than this (256 Mpx) are refused unless a resize is requested.
pub const MAX_FRAME_PIXELS: u64 = 256 << 20;

/// Fills the output buffer as frames arrive: each request owns one or more output positions
/// (duplicates in the request share one decode and one colour conversion).
struct BatchWriter<'a> {
    converter: RgbConverter,
    data: Vec<u8>,
    slots: HashMap<u64, Vec<usize>>,
    indices: Vec<u64>,
    timestamps: Vec<f64>,
    filled: Vec<bool>,
    times: &'a [f64],
    source_name: String,
}

impl FrameSink for BatchWriter<'_> {
    fn frame(&mut self, request: u64, index: u64, frame: &VideoFrame) -> Result<()> {
        let Some(positions) = self.slots.get(&request) else {
            return Ok(());
        };
        let n = self.converter.frame_bytes();
        let first = positions[0];
        self.converter
            .write(frame, &mut self.data[first * n..(first + 1) * n])
            .map_err(|e| Error::Decode {
                source_name: self.source_name.clone(),
                frame: Some(index),
                reason: format!("colour conversion failed: {e}"),
            })?;
        let time = self
            .times
            .get(index as usize)
            .or(self.times.last())
            .copied()
            .unwrap_or(0.0);
        for &p in positions {
            if p != first {
                self.data.copy_within(first * n..(first + 1) * n, p * n);
            }
            self.indices[p] = index;
            self.timestamps[p] = time;
            self.filled[p] = true;
        }
        Ok(())
    }
}

fn sorted_unique(v: &[u64]) -> Vec<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.dedup();
    s
}

/// See [`crate::sample_frames_with_stats`].
pub(crate) fn sample(
    source: &Source,
    options: &SampleOptions,
) -> Result<(FrameBatch, SampleStats)> {
    let mut media = media::open(source)?;
    let source_name = media.source_name.clone();
    let too_large = |reason: String| Error::TooLarge {
        source_name: source_name.clone(),
        reason,
    };
    let facts = StreamFacts::read(&media)?;
    let (w, h) = (facts.coded_width, facts.coded_height);
    if options.resize.is_none()
        && (w > MAX_FRAME_SIDE
            || h > MAX_FRAME_SIDE
            || u64::from(w) * u64::from(h) > MAX_FRAME_PIXELS)
    {
        return Err(too_large(format!(
            "{w}x{h} frames exceed the {MAX_FRAME_SIDE} px / 256 Mpx limit; request a resize"
        )));
    }
    let rotation = if options.rotate { facts.rotation } else { 0 };
    let size = plan::output_size(w, h, rotation, options.resize)
        .map_err(|e| plan_error(e, &source_name, 0))?;
    let frame_bytes = size.width as u64 * size.height as u64 * 3;
    if frame_bytes > options.max_bytes as u64 {
        return Err(too_large(format!(
            "one {}x{} RGB frame takes {frame_bytes} bytes, over the {} byte budget",
            size.width, size.height, options.max_bytes
        )));
    }
    let max_frames = options.max_bytes as u64 / frame_bytes;

    let index = PacketIndex::build(&mut media)?;
    let mut stats = SampleStats {
        packets_indexed: index.packets.len() as u64,
        ..SampleStats::default()
    };
    if index.frame_count == 0 {
        return Err(Error::Decode {
            source_name,
            frame: None,
            reason: "the video stream holds no frames".into(),
        });
    }
    let keyframes = index.keyframe_presentation_indices();
    let timeline = Timeline {
        frame_count: index.frame_count,
        claimed_count: facts.header_frames.max(index.frame_count),
        times: &index.times,
        end_time: index.end_time,
        keyframes: &keyframes,
    };
    let plan = plan::plan(&options.sampling, &timeline, max_frames)
        .map_err(|e| plan_error(e, &source_name, frame_bytes))?;
    // The header promised frames the file does not hold: the plan was made over those that exist.
    let mut clamped = plan.clamped || facts.header_frames > index.frame_count;
    let n = plan.indices.len();
    let is_keyframe_request = matches!(options.sampling, Sampling::Keyframes { .. });

    // What each output position asks the decoder for.
    let requests: Vec<u64> = match (&index.identity, options.seek) {
        (Identity::Pts { .. }, SeekMode::Fast) if !is_keyframe_request => plan
            .indices
            .iter()
            .map(|&t| nearest_keyframe(&keyframes, t))
            .collect(),
        _ => plan.indices.clone(),
    };
    let mut slots: HashMap<u64, Vec<usize>> = HashMap::new();
    for (p, &r) in requests.iter().enumerate() {
        slots.entry(r).or_default().push(p);
    }
    let mut writer = BatchWriter {
        converter: RgbConverter::new(size, rotation),
        data: vec![0; n * frame_bytes as usize],
        slots,
        indices: vec![0; n],
        timestamps: vec![0.0; n],
        filled: vec![false; n],
        times: &index.times,
        source_name: source_name.clone(),
    };
    let unique = sorted_unique(&requests);
    if index.identity == Identity::Counted {
        // A counted scan must start at the very first packet: a fresh demuxer is, without
        // trusting a seek in a stream whose timestamps are unreliable.
        media = media::open(source)?;
    }
    // Skipping non-reference pictures only pays (and is only needed) when decoding forward.
    let mut session = Session::new(&mut media, options.threads, options.seek == SeekMode::Exact)?;
    match &index.identity {
        Identity::Pts { order } => {
            if is_keyframe_request || options.seek == SeekMode::Fast {
                // A keyframe decodes on its own to the same picture a sequential decode shows.
                session.keyframes(&index, &unique, &mut writer)?;
            } else {
                let missing = session.exact(&index, &unique, &mut writer)?;
                if !missing.is_empty() {
                    // The index listed these frames but the data ended before they decoded.
                    clamped = true;
                    let from = order[missing[0] as usize];
                    session.last_frame(&index, from, &mut writer, &missing)?;
                }
            }
        }
        Identity::Counted => {
            let targets = match (is_keyframe_request, options.seek) {
                (true, _) => ScanTargets::KeyframeOrdinals(unique.clone()),
                (false, SeekMode::Fast) => ScanTargets::NearestKeyframe(unique.clone()),
                (false, SeekMode::Exact) => ScanTargets::Exact(unique.clone()),
            };
            if let Some((last_index, last)) = session.scan(&targets, &mut writer)? {
                let missing: Vec<u64> = unique
                    .iter()
                    .copied()
                    .filter(|r| writer.slots.get(r).is_some_and(|ps| !writer.filled[ps[0]]))
                    .collect();
                if !missing.is_empty() {
                    clamped = true;
                    for r in missing {
                        writer.frame(r, last_index, &last)?;
                    }
                }
            }
        }
    }
    stats = SampleStats {
        packets_indexed: stats.packets_indexed,
        ..session.stats
    };
    if let Some(p) = writer.filled.iter().position(|f| !f) {
        return Err(Error::Decode {
            source_name,
            frame: Some(plan.indices[p]),
            reason: "the frame could not be decoded".into(),
        });
    }
    let batch = FrameBatch {
        data: writer.data,
        width: size.width,
        height: size.height,
        indices: writer.indices,
        timestamps: writer.timestamps,
        clamped,
    };
    Ok((batch, stats))
}

/// The last keyframe at or before presentation index `t` (the first keyframe if none is).
fn nearest_keyframe(keyframes: &[u64], t: u64) -> u64 {
    let after = keyframes.partition_point(|&k| k <= t);
    if after == 0 {
        keyframes.first().copied().unwrap_or(0)
    } else {
        keyframes[after - 1]
    }
}

fn plan_error(e: PlanError, source_name: &str, frame_bytes: u64) -> Error {
    match e {
        PlanError::Invalid(reason) => Error::InvalidRequest(format!("{source_name}: {reason}")),
        PlanError::TooMany { requested, max } => Error::TooLarge {
            source_name: source_name.to_string(),
            reason: format!(
                "{requested} frames of {frame_bytes} bytes exceed the memory budget ({max} frames fit)"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::nearest_keyframe;

    #[test]
    fn fast_targets_map_to_the_keyframe_at_or_before() {
        let keys = [0, 250, 500];
        assert_eq!(nearest_keyframe(&keys, 0), 0);
        assert_eq!(nearest_keyframe(&keys, 249), 0);
        assert_eq!(nearest_keyframe(&keys, 250), 250);
        assert_eq!(nearest_keyframe(&keys, 899), 500);
        assert_eq!(nearest_keyframe(&[10], 3), 10);
    }
}
