//! `sample_frames`: plan the request, check the memory budget, decode, and fill the batch.

use std::collections::HashMap;

use ffmpeg_next::util::frame::video::Video as VideoFrame;

use crate::convert::RgbConverter;
use crate::decode::{self, FrameSink, SampleStats, ScanTargets, Session};
use crate::fast;
use crate::index::Identity;
use crate::plan::{self, PlanError, Timeline};
use crate::{Error, FrameBatch, Result, SampleOptions, Sampling, SeekMode, Video};

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

/// See [`crate::Video::sample_with_stats`]. `sample_table`: use the container's sample table
/// where it can be trusted, for Fast mode and for exact requests whose targets are all keyframes
/// (false only in tests, to compare it with the general path).
pub(crate) fn sample(
    video: &mut Video,
    options: &SampleOptions,
    sample_table: bool,
) -> Result<(FrameBatch, SampleStats)> {
    // The thread count is resolved here, once, under the handle's cap: everything below sees
    // a number of threads, never 0.
    let threads = video
        .limits()
        .decoder_threads(options.threads, &video.source_name())?;
    let options = &SampleOptions {
        threads,
        ..options.clone()
    };
    let read_before = video.packets_read();
    let indexed_before = video.packets_indexed();
    let (batch, stats) = sample_with(video, options, sample_table)?;
    video.record(&stats);
    let stats = SampleStats {
        packets_read: video.packets_read() - read_before,
        packets_indexed: video.packets_indexed() - indexed_before,
        ..stats
    };
    Ok((batch, stats))
}

fn sample_with(
    video: &mut Video,
    options: &SampleOptions,
    sample_table: bool,
) -> Result<(FrameBatch, SampleStats)> {
    let source_name = video.source_name();
    let too_large = |reason: String| Error::TooLarge {
        source_name: source_name.clone(),
        reason,
    };
    let facts = video.facts().clone();
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

    let is_keyframe_request = matches!(options.sampling, Sampling::Keyframes { .. });
    if sample_table && facts.is_mov() {
        let out = fast::Output {
            size,
            rotation,
            frame_bytes,
            max_frames,
        };
        let threads = decode::resolve_threads(options.threads);
        let exact = options.seek == SeekMode::Exact;
        // The sample-table path reads the first packets: it needs the demuxer at the start.
        let mut media = video.take_fresh()?;
        let found = fast::sample(&mut media, options, exact, &facts, &out, threads, |e| {
            plan_error(e, &source_name, frame_bytes)
        });
        video.put_back(media);
        if let Some(result) = found? {
            return Ok(result);
        }
    }

    // Built by the first call that needs it, from the start of the file.
    let index = video.index()?;
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
    let mut media = if index.identity == Identity::Counted {
        // A counted scan must start at the very first packet: a fresh demuxer is, without
        // trusting a seek in a stream whose timestamps are unreliable.
        video.take_fresh()?
    } else {
        // Every other path seeks before it reads.
        video.take_any()?
    };
    let decoder = video.take_decoder(options.threads);
    // Skipping non-reference pictures only pays (and is only needed) when decoding forward.
    let mut session = Session::new(
        &mut media,
        options.threads,
        options.seek == SeekMode::Exact,
        decoder,
    )?;
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
    // The index's packets are counted by `sample`, which knows whether this call built it.
    let stats = session.stats;
    // The decoder and the demuxer serve the next call on this handle.
    let decoder = session.into_decoder();
    video.keep_decoder(options.threads, decoder);
    video.put_back(media);
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
    use crate::{FrameBatch, Resize, Result, SampleOptions, SampleStats, Sampling, SeekMode};
    use crate::{Source, Video};

    /// One call on a new handle, as the free function makes it.
    fn sample_with(
        source: &Source,
        options: &SampleOptions,
        sample_table: bool,
    ) -> Result<(FrameBatch, SampleStats)> {
        super::sample(&mut Video::open(source.clone())?, options, sample_table)
    }

    /// Fast mode from the MP4 sample table gives what the general path (every packet read)
    /// gives, frame for frame, for every test video and strategy; on MP4s it reads no index.
    #[test]
    fn sample_table_fast_path_equals_the_general_path() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-data/videos");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("test videos: run scripts/make-test-data.sh")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && !n.starts_with("bad_") && !n.starts_with("huge"))
            .filter(|n| !n.starts_with("too_wide"))
            .collect();
        names.sort();
        // "name seek sampling" of each request served from the sample table.
        let mut table_used: Vec<String> = Vec::new();
        for name in &names {
            let source = Source::from(dir.join(name).as_path());
            let Ok(info) = crate::probe(&source) else {
                continue;
            };
            let n = info.frame_count;
            // Targets on and just around every keyframe: where the last keyframe shown at or
            // before a target and the last one decoded before it differ (B-frames, open GOPs).
            let keys = sample_with(
                &source,
                &SampleOptions::new(Sampling::Keyframes { max: 1000 })
                    .resize(Some(Resize::ShortestSide(16))),
                false,
            )
            .map(|(b, _)| b.indices)
            .unwrap_or_default();
            let around: Vec<u64> = keys
                .iter()
                .flat_map(|&k| [k.saturating_sub(2), k.saturating_sub(1), k, k + 1])
                .filter(|&i| i < n)
                .collect();
            let strategies = [
                Sampling::Indices(around),
                Sampling::Uniform(8),
                Sampling::Linspace(7),
                Sampling::Indices(vec![n - 1, 0, n / 2, n / 2 + 1, n / 3, n / 2]),
                Sampling::Timestamps(vec![0.0, info.duration * 0.51, 0.05]),
                Sampling::Every(info.duration / 4.0),
                Sampling::Keyframes { max: 3 },
                Sampling::Keyframes { max: 1000 },
            ];
            let keys_only = Sampling::Indices(keys.iter().rev().copied().collect());
            let not_key = (n / 2..n).find(|i| !keys.contains(i)).unwrap_or(n - 1);
            let runs = strategies.into_iter().map(|s| (s, SeekMode::Fast)).chain([
                (keys_only, SeekMode::Exact),
                (Sampling::Indices(vec![0, not_key]), SeekMode::Exact),
            ]);
            for (sampling, seek) in runs {
                let options = SampleOptions::new(sampling.clone())
                    .seek(seek)
                    .resize(Some(Resize::ShortestSide(64)));
                let (fast, general) = match (
                    sample_with(&source, &options, true),
                    sample_with(&source, &options, false),
                ) {
                    (Ok(fast), Ok(general)) => (fast, general.0),
                    // A request past the end is refused the same way on both paths.
                    (Err(a), Err(b)) => {
                        assert_eq!(a.to_string(), b.to_string(), "{name} {sampling:?}");
                        continue;
                    }
                    (a, b) => panic!("{name} {sampling:?}: {:?} vs {:?}", a.err(), b.err()),
                };
                let (fast, stats) = fast;
                assert_eq!(fast.indices, general.indices, "{name} {sampling:?}");
                assert_eq!(fast.timestamps, general.timestamps, "{name} {sampling:?}");
                assert_eq!(fast.clamped, general.clamped, "{name} {sampling:?}");
                assert_eq!((fast.width, fast.height), (general.width, general.height));
                assert!(
                    fast.data == general.data,
                    "{name} {sampling:?}: pixels differ"
                );
                if stats.packets_indexed == 0 {
                    table_used.push(format!("{name} {seek:?} {sampling:?}"));
                }
            }
        }
        // Every MP4 with a constant frame rate and frames the header counts takes the fast path.
        for name in [
            "h264_720p.mp4",
            "h264_bframes_longgop.mp4",
            "h264_opengop.mp4",
            "hevc.mp4",
            "rotated_90.mp4",
        ] {
            for kind in ["Fast Uniform", "Fast Keyframes { max: 3 }"] {
                let run = format!("{name} {kind}");
                assert!(table_used.iter().any(|r| r.starts_with(&run)), "{run}");
            }
        }
        // Exact requests take the table only when every target is a keyframe ...
        for name in ["h264_bframes_longgop.mp4", "hevc.mp4", "h264_opengop.mp4"] {
            let run = format!("{name} Exact Indices(");
            assert!(table_used.iter().any(|r| r.starts_with(&run)), "{run}");
        }
        // ... and never when one target is not (it must decode forward).
        assert!(
            !table_used.iter().any(|r| r.contains("Exact Indices([0, ")),
            "{table_used:?}"
        );
        // Files whose header promises frames that are not there are checked packet by packet.
        assert!(!table_used
            .iter()
            .any(|r| r.starts_with("truncated_index_lies.mp4")));

        // An upload held in memory takes the same path and gives the same frames.
        let path = dir.join("h264_bframes_longgop.mp4");
        let options = SampleOptions::new(Sampling::Linspace(5))
            .seek(SeekMode::Fast)
            .resize(Some(Resize::ShortestSide(64)));
        let bytes = Source::from(std::fs::read(&path).unwrap());
        let (from_bytes, stats) = sample_with(&bytes, &options, true).unwrap();
        assert_eq!(stats.packets_indexed, 0);
        let (from_file, _) = sample_with(&Source::from(path.as_path()), &options, false).unwrap();
        assert_eq!(from_bytes.indices, from_file.indices);
        assert!(from_bytes.data == from_file.data);
    }

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
