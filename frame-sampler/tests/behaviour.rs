//! Probe facts, fast seeking, rotation, resize, byte sources, bad inputs and the memory budget.

mod common;

use common::*;
use frame_sampler::{
    probe, sample_frames, sample_frames_with_stats, Error, FrameCountSource, Resize, SampleOptions,
    Sampling, SeekMode, Source, ThumbnailOptions, Video,
};

fn opts(s: Sampling) -> SampleOptions {
    SampleOptions::new(s)
}

#[test]
fn probe_reports_the_facts() {
    let info = probe(&Source::from(video("h264_bframes_longgop.mp4"))).unwrap();
    assert_eq!(info.codec, "h264");
    assert!(info.container.contains("mp4"));
    assert_eq!(
        (info.width, info.height, info.coded_width, info.coded_height),
        (320, 240, 320, 240)
    );
    assert_eq!(info.rotation, 0);
    assert_eq!(info.frame_count, 300);
    assert_eq!(info.frame_count_source, FrameCountSource::Index);
    assert!((info.avg_fps - 30.0).abs() < 1e-6 && (info.real_fps - 30.0).abs() < 1e-6);
    assert!(
        (info.duration - 10.0).abs() < 0.05,
        "duration {}",
        info.duration
    );
    assert!(info.has_audio);

    let ts = probe(&Source::from(video("mpegts.ts"))).unwrap();
    assert_eq!(ts.container, "mpegts");
    assert_eq!(ts.frame_count, 180);
    assert_eq!(ts.frame_count_source, FrameCountSource::Counted);
    assert!(ts.has_audio);

    let vfr = probe(&Source::from(video("vfr.mkv"))).unwrap();
    assert_eq!(vfr.frame_count, 180);
    assert_eq!(vfr.frame_count_source, FrameCountSource::Counted);
    assert!(!vfr.has_audio);
    // 60 frames at 30 fps, 60 at 15 fps, a 1 s gap, 60 at 30 fps: 9 s.
    assert!(
        (vfr.duration - 9.0).abs() < 0.1,
        "vfr duration {}",
        vfr.duration
    );

    for (name, codec) in [
        ("hevc.mp4", "hevc"),
        ("vp9.webm", "vp9"),
        ("mpeg4.avi", "mpeg4"),
    ] {
        let info = probe(&Source::from(video(name))).unwrap();
        assert!(info.codec.starts_with(codec), "{name}: {}", info.codec);
        assert!(info.frame_count > 0);
    }
}

#[test]
fn rotation_comes_from_the_display_matrix() {
    // Stored 320x180; each file's display matrix turns it this many degrees clockwise.
    for degrees in [90u32, 180, 270] {
        let path = video(&format!("rotated_{degrees}.mp4"));
        let source = Source::from(path.as_path());
        let info = probe(&source).unwrap();
        assert_eq!(info.rotation, degrees);
        assert_eq!((info.coded_width, info.coded_height), (320, 180));
        let (w, h): (usize, usize) = if degrees == 180 {
            (320, 180)
        } else {
            (180, 320)
        };
        assert_eq!(
            (info.width as usize, info.height as usize),
            (w, h),
            "{degrees}"
        );

        let upright = sample_frames(&source, &opts(Sampling::Indices(vec![0, 30]))).unwrap();
        assert_eq!((upright.width, upright.height), (w as u32, h as u32));
        let stored =
            sample_frames(&source, &opts(Sampling::Indices(vec![0, 30])).rotate(false)).unwrap();
        assert_eq!((stored.width, stored.height), (320, 180));
        // Where stored pixel (x, y) lands when turned clockwise.
        let lands = |x: usize, y: usize| match degrees {
            90 => (179 - y, x),
            180 => (319 - x, 179 - y),
            _ => (y, 319 - x),
        };
        for i in 0..2 {
            let (s, u) = (stored.frame(i), upright.frame(i));
            for y in 0..180usize {
                for x in 0..320usize {
                    let src = (y * 320 + x) * 3;
                    let (ux, uy) = lands(x, y);
                    let dst = (uy * w + ux) * 3;
                    assert_eq!(s[src..src + 3], u[dst..dst + 3], "{degrees} at ({x}, {y})");
                }
            }
        }
        // And it matches the ffmpeg CLI's autorotated decode (which rotates before converting
        // to RGB).
        let reference = ffmpeg_frames(&path, w, h, true, None);
        for (i, &idx) in upright.indices.iter().enumerate() {
            let d = mean_diff(upright.frame(i), &reference.frames[idx as usize]);
            assert!(
                d < 1.0,
                "{degrees}: frame {idx} differs from ffmpeg's autorotate by {d:.2} on average"
            );
        }
    }
}

#[test]
fn resize_shapes() {
    let source = Source::from(video("h264_720p.mp4"));
    let shape = |r: Resize| {
        let b = sample_frames(&source, &opts(Sampling::Uniform(2)).resize(Some(r))).unwrap();
        assert_eq!(b.data.len(), 2 * b.frame_bytes());
        (b.width, b.height)
    };
    assert_eq!(shape(Resize::ShortestSide(224)), (398, 224));
    assert_eq!(shape(Resize::MaxSide(320)), (320, 180));
    assert_eq!(shape(Resize::MaxSide(4000)), (1280, 720));
    assert_eq!(
        shape(Resize::Exact {
            width: 64,
            height: 48
        }),
        (64, 48)
    );
    // Resize sizes are in displayed orientation.
    let rotated = Source::from(video("rotated_90.mp4"));
    let b = sample_frames(
        &rotated,
        &opts(Sampling::Uniform(1)).resize(Some(Resize::ShortestSide(90))),
    )
    .unwrap();
    assert_eq!((b.width, b.height), (90, 160));
    // A resized frame resembles the full-size one scaled down (same picture, not another frame).
    let full = sample_frames(&source, &opts(Sampling::Indices(vec![300]))).unwrap();
    let small = sample_frames(
        &source,
        &opts(Sampling::Indices(vec![300])).resize(Some(Resize::Exact {
            width: 640,
            height: 360,
        })),
    )
    .unwrap();
    let mut d = 0.0;
    for y in 0..360usize {
        for x in 0..640usize {
            for c in 0..3 {
                let a = small.frame(0)[(y * 640 + x) * 3 + c] as f64;
                let b = full.frame(0)[((2 * y) * 1280 + 2 * x) * 3 + c] as f64;
                d += (a - b).abs();
            }
        }
    }
    assert!(
        d / (640.0 * 360.0 * 3.0) < 12.0,
        "downscaled frame is not the same picture"
    );
}

#[test]
fn fast_returns_keyframes() {
    let path = video("h264_bframes_longgop.mp4");
    let source = Source::from(path.as_path());
    let reference = ffmpeg_frames(&path, 320, 240, false, None);
    let (batch, stats) = sample_frames_with_stats(
        &source,
        &opts(Sampling::Indices(vec![10, 249, 250, 299, 0])).seek(SeekMode::Fast),
    )
    .unwrap();
    // GOP 250: keyframes at 0 and 250.
    assert_eq!(batch.indices, vec![0, 0, 250, 250, 0]);
    assert_eq!(batch.timestamps[2], 250.0 / 30.0);
    for (i, &idx) in batch.indices.iter().enumerate() {
        assert_eq!(max_diff(batch.frame(i), &reference.frames[idx as usize]), 0);
    }
    // One decode per distinct keyframe.
    assert_eq!(stats.frames_decoded, 2);

    for name in [
        "hevc.mp4",
        "vp9.webm",
        "mpegts.ts",
        "vfr.mkv",
        "mpeg4.avi",
        "h264_opengop.mp4",
    ] {
        let p = video(name);
        let info = probe(&Source::from(p.as_path())).unwrap();
        let exact_keys = sample_frames(
            &Source::from(p.as_path()),
            &opts(Sampling::Keyframes { max: 100 }),
        )
        .unwrap();
        let fast = sample_frames(
            &Source::from(p.as_path()),
            &opts(Sampling::Uniform(6)).seek(SeekMode::Fast),
        )
        .unwrap();
        let uniform: Vec<u64> = (0..6).map(|i| i * info.frame_count / 6).collect();
        for (i, &idx) in fast.indices.iter().enumerate() {
            // The nearest keyframe at or before the target.
            let want = exact_keys
                .indices
                .iter()
                .copied()
                .filter(|&k| k <= uniform[i])
                .max()
                .unwrap();
            assert_eq!(idx, want, "{name}: target {} -> keyframe", uniform[i]);
            let k = exact_keys.indices.iter().position(|&k| k == idx).unwrap();
            assert_eq!(
                fast.frame(i),
                exact_keys.frame(k),
                "{name}: fast keyframe pixels"
            );
        }
    }
}

#[test]
fn bytes_source_equals_path_source() {
    for name in [
        "h264_bframes_longgop.mp4",
        "mpegts.ts",
        "vp9.webm",
        "mpeg4.avi",
    ] {
        let path = video(name);
        let bytes = Source::from(std::fs::read(&path).unwrap());
        let file = Source::from(path.as_path());
        assert_eq!(probe(&bytes).unwrap(), probe(&file).unwrap(), "{name}");
        for seek in [SeekMode::Exact, SeekMode::Fast] {
            let o = opts(Sampling::Linspace(5)).seek(seek);
            assert_eq!(
                sample_frames(&bytes, &o).unwrap(),
                sample_frames(&file, &o).unwrap(),
                "{name} {seek:?}"
            );
        }
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    let missing = Source::from("/nonexistent/clip.mp4");
    assert!(matches!(probe(&missing), Err(Error::NotFound { .. })));
    assert!(matches!(
        sample_frames(&missing, &opts(Sampling::Uniform(1))),
        Err(Error::NotFound { .. })
    ));

    let open_errors = [
        "bad_empty.mp4",
        "bad_random.mp4",
        "bad_truncated_moov_end.mp4",
        "bad_png_renamed.mp4",
    ];
    for name in open_errors {
        let p = video(name);
        for source in [
            Source::from(p.as_path()),
            Source::from(std::fs::read(&p).unwrap()),
        ] {
            let e = probe(&source).unwrap_err();
            assert!(
                matches!(e, Error::Open { .. }),
                "{name} ({}): {e:?}",
                source.describe()
            );
            let e = sample_frames(&source, &opts(Sampling::Uniform(4))).unwrap_err();
            assert!(matches!(e, Error::Open { .. }), "{name}: {e:?}");
        }
    }
    let audio = Source::from(video("bad_audio_only.m4a"));
    assert!(matches!(probe(&audio), Err(Error::NoVideoStream { .. })));
    assert!(matches!(
        sample_frames(&audio, &opts(Sampling::Uniform(4))),
        Err(Error::NoVideoStream { .. })
    ));
    // Error messages name the source.
    let msg = probe(&Source::from(video("bad_empty.mp4")))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bad_empty.mp4"), "{msg}");
}

#[test]
fn invalid_requests() {
    let source = Source::from(video("h264_bframes_longgop.mp4"));
    let invalid = |s: Sampling| {
        matches!(
            sample_frames(&source, &opts(s)),
            Err(Error::InvalidRequest(_))
        )
    };
    assert!(invalid(Sampling::Uniform(0)));
    assert!(invalid(Sampling::Indices(vec![])));
    assert!(invalid(Sampling::Indices(vec![300])));
    assert!(invalid(Sampling::Timestamps(vec![-1.0])));
    assert!(invalid(Sampling::Timestamps(vec![f64::NAN])));
    assert!(invalid(Sampling::Timestamps(vec![10.5])));
    assert!(invalid(Sampling::Every(0.0)));
    assert!(invalid(Sampling::Keyframes { max: 0 }));
    // The last frame and a time inside it are fine.
    let b = sample_frames(&source, &opts(Sampling::Timestamps(vec![9.99]))).unwrap();
    assert_eq!(b.indices, vec![299]);
    // No frame count in any TS header: a request past the real end is refused, not guessed.
    let ts = Source::from(video("mpegts.ts"));
    assert!(matches!(
        sample_frames(&ts, &opts(Sampling::Indices(vec![180]))),
        Err(Error::InvalidRequest(_))
    ));
    let last = sample_frames(&ts, &opts(Sampling::Indices(vec![179]))).unwrap();
    assert_eq!(last.indices, vec![179]);
    assert!(!last.clamped);
}

#[test]
fn a_request_that_is_wrong_whatever_the_video_is_refused_before_opening() {
    // The file does not exist: a request-only mistake is still reported as the request's, and
    // names the option, since nothing had to be opened to find it.
    let missing = Source::from("/nonexistent/clip.mp4");
    let refused = |options: SampleOptions, field: &str| match sample_frames(&missing, &options) {
        Err(Error::InvalidRequest(m)) => assert!(m.contains(field), "{m}"),
        other => panic!("{field}: {other:?}"),
    };
    refused(opts(Sampling::Uniform(0)), "num_frames");
    refused(opts(Sampling::Linspace(0)), "num_frames");
    refused(opts(Sampling::Timestamps(vec![1.0, -0.5])), "timestamps");
    refused(opts(Sampling::Every(f64::INFINITY)), "every");
    refused(
        opts(Sampling::Uniform(2)).resize(Some(Resize::MaxSide(0))),
        "max_side",
    );
    refused(
        opts(Sampling::Uniform(2)).resize(Some(Resize::Exact {
            width: 4,
            height: 0,
        })),
        "height",
    );
    let mut none = opts(Sampling::Uniform(2));
    none.max_bytes = 0;
    refused(none, "max_bytes");
    // A valid request reaches the file, and the file's own error comes back.
    assert!(matches!(
        sample_frames(&missing, &opts(Sampling::Uniform(2))),
        Err(Error::NotFound { .. })
    ));
    // The same checks on an open handle.
    let mut handle = Video::open(Source::from(video("h264_bframes_longgop.mp4"))).unwrap();
    assert!(matches!(
        handle.sample(&opts(Sampling::Uniform(0))),
        Err(Error::InvalidRequest(_))
    ));
    let bad_thumb = ThumbnailOptions {
        quality: 0,
        ..ThumbnailOptions::default()
    };
    assert!(matches!(bad_thumb.validate(), Err(Error::InvalidRequest(m)) if m.contains("quality")));
}

#[test]
fn a_frame_count_that_lies_is_clamped() {
    // The sample table lists 300 frames; the file was cut in half.
    let source = Source::from(video("truncated_index_lies.mp4"));
    let info = probe(&source).unwrap();
    assert!(
        info.frame_count < 300 && info.frame_count > 50,
        "counted {}",
        info.frame_count
    );
    assert_eq!(info.frame_count_source, FrameCountSource::Counted);
    let batch = sample_frames(&source, &opts(Sampling::Uniform(8))).unwrap();
    assert!(batch.clamped);
    assert!(batch.indices.iter().all(|&i| i < info.frame_count));
    // Frames the header promised but the file lacks come back as the last frame, flagged.
    let b = sample_frames(&source, &opts(Sampling::Indices(vec![0, 280]))).unwrap();
    assert!(b.clamped);
    assert!(
        b.indices[1] < info.frame_count && b.indices[1] + 10 >= info.frame_count,
        "{:?}",
        b.indices
    );
    // Past even the header's count: an error.
    assert!(matches!(
        sample_frames(&source, &opts(Sampling::Indices(vec![300]))),
        Err(Error::InvalidRequest(_))
    ));
}

#[test]
fn memory_budget() {
    let source = Source::from(video("huge_8192.mp4"));
    let info = probe(&source).unwrap();
    assert_eq!((info.width, info.height), (8192, 8192));
    // 3 frames of 8192x8192x3 = 604 MB: over a 256 MiB budget, refused before decoding.
    let mut o = opts(Sampling::Uniform(3));
    o.max_bytes = 256 << 20;
    let e = sample_frames(&source, &o).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("huge_8192.mp4"));
    // Even one frame is over a small budget.
    o.sampling = Sampling::Uniform(1);
    o.max_bytes = 100 << 20;
    assert!(matches!(
        sample_frames(&source, &o),
        Err(Error::TooLarge { .. })
    ));
    // A resize brings the output under the budget.
    let small = sample_frames(&source, &o.clone().resize(Some(Resize::MaxSide(256)))).unwrap();
    assert_eq!((small.width, small.height, small.len()), (256, 256, 1));
    // A request for absurdly many frames is refused without allocating them.
    let many = opts(Sampling::Uniform(usize::MAX)).resize(Some(Resize::MaxSide(64)));
    assert!(matches!(
        sample_frames(&source, &many),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn frame_size_limit() {
    let source = Source::from(video("too_wide_17000.mkv"));
    assert_eq!(probe(&source).unwrap().width, 17000);
    // Refused however small the request: decoding such a frame is the hazard.
    let e = sample_frames(&source, &opts(Sampling::Uniform(1))).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    // Unless a resize brings the output down to a sane size.
    let b = sample_frames(
        &source,
        &opts(Sampling::Uniform(2)).resize(Some(Resize::MaxSide(1000))),
    )
    .unwrap();
    assert_eq!((b.width, b.height, b.len()), (1000, 1, 2));
    assert!(b.data.iter().all(|&v| v.abs_diff(128) < 8), "a gray frame");
}

#[test]
fn duplicates_and_order_are_kept() {
    let path = video("h264_opengop.mp4");
    let source = Source::from(path.as_path());
    let reference = ffmpeg_frames(&path, 320, 240, false, None);
    let want = vec![200, 3, 200, 57, 58, 59, 60, 0, 3];
    let b = sample_frames(&source, &opts(Sampling::Indices(want.clone())).threads(1)).unwrap();
    assert_eq!(b.indices, want);
    for (i, &idx) in want.iter().enumerate() {
        assert_eq!(
            b.frame(i),
            &reference.frames[idx as usize][..],
            "frame {idx}"
        );
    }
    for (i, &idx) in want.iter().enumerate() {
        assert!((b.timestamps[i] - idx as f64 / 30.0).abs() < 1e-6);
    }
}

#[test]
fn mpeg_ts_timestamps_start_at_zero() {
    let b = sample_frames(
        &Source::from(video("mpegts.ts")),
        &opts(Sampling::Indices(vec![0, 30])),
    )
    .unwrap();
    assert_eq!(b.timestamps[0], 0.0);
    assert!((b.timestamps[1] - 1.0).abs() < 1e-6);
}

#[test]
fn vfr_timestamps_follow_the_stream() {
    let source = Source::from(video("vfr.mkv"));
    // Frame 60 starts at 2.0 s, frame 119 at 2 + 59/15 s, frame 120 at 7.0 s (after a gap).
    let b = sample_frames(
        &source,
        &opts(Sampling::Timestamps(vec![2.0, 6.5, 7.0, 1.99])),
    )
    .unwrap();
    assert_eq!(b.indices, vec![60, 119, 120, 59]);
    assert!((b.timestamps[2] - 7.0).abs() < 0.002);
}

#[test]
fn thread_counts_do_not_change_the_frames() {
    for name in ["h264_bframes_longgop.mp4", "hevc.mp4"] {
        let source = Source::from(video(name));
        let o = opts(Sampling::Linspace(6));
        let one = sample_frames(&source, &o.clone().threads(1)).unwrap();
        assert_eq!(
            one,
            sample_frames(&source, &o.clone().threads(0)).unwrap(),
            "{name}"
        );
        assert_eq!(
            one,
            sample_frames(&source, &o.clone().threads(3)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn sources_can_be_sampled_from_many_threads() {
    let path = video("vp9.webm");
    let want = sample_frames(&Source::from(path.as_path()), &opts(Sampling::Uniform(4))).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                sample_frames(&Source::from(path), &opts(Sampling::Uniform(4))).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}

/// A stream whose resolution changes mid-file (320x240, then 160x120 from 2 s): every frame
/// comes out at the size the stream starts with, the later ones scaled up, as the ffmpeg CLI
/// (autoscale) gives them; frame counts and times run across the change.
#[test]
fn a_resolution_change_mid_file_is_scaled_to_the_first_size() {
    let path = video("resolution_change.ts");
    let source = Source::from(path.as_path());
    let info = probe(&source).unwrap();
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.frame_count, 120);
    for seek in [SeekMode::Exact, SeekMode::Fast] {
        let batch = sample_frames(&source, &opts(Sampling::Uniform(8)).seek(seek)).unwrap();
        assert_eq!((batch.width, batch.height), (320, 240));
        assert!(
            batch.indices.iter().any(|&i| i >= 60),
            "{:?}",
            batch.indices
        );
        let reference = ffmpeg_frames(&path, 320, 240, false, None);
        assert_eq!(reference.frames.len(), 120);
        for (i, &idx) in batch.indices.iter().enumerate() {
            let d = mean_diff(batch.frame(i), &reference.frames[idx as usize]);
            assert!(
                d < 3.0,
                "{seek:?}: frame {idx} differs from ffmpeg's by {d:.2}"
            );
        }
    }
}
