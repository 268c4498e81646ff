//! `Video`: one handle per file gives what the free functions give, call for call, while
//! reading the packet index at most once.

mod common;

use frame_sampler::{
    probe, sample_frames, sample_frames_with_stats, storyboard, thumbnail, Error, FrameBatch,
    ImageFormat, Resize, SampleOptions, Sampling, SeekMode, Source, ThumbnailOptions, Video,
};

/// Every file under test-data/videos, the broken ones included.
fn all_videos() -> Vec<std::path::PathBuf> {
    let dir = common::test_data().join("videos");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 15,
        "test videos incomplete in {}",
        dir.display()
    );
    paths
}

/// Same outcome: equal values, or errors of the same kind with the same message.
fn same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    a: &Result<T, Error>,
    b: &Result<T, Error>,
    eq: impl Fn(&T, &T) -> bool,
) {
    match (a, b) {
        (Ok(x), Ok(y)) => assert!(eq(x, y), "{what}: handle and free function differ"),
        (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "{what}"),
        (x, y) => panic!("{what}: handle gave {x:?}, free function {y:?}"),
    }
}

fn same_batch(a: &FrameBatch, b: &FrameBatch) -> bool {
    a.indices == b.indices
        && a.timestamps == b.timestamps
        && (a.width, a.height, a.clamped) == (b.width, b.height, b.clamped)
        && a.data == b.data
}

fn requests(duration: f64, frames: u64) -> Vec<SampleOptions> {
    let last = frames.saturating_sub(1);
    let small = Some(Resize::ShortestSide(32));
    vec![
        SampleOptions::new(Sampling::Uniform(8)).seek(SeekMode::Exact),
        SampleOptions::new(Sampling::Uniform(5))
            .seek(SeekMode::Fast)
            .resize(small),
        SampleOptions::new(Sampling::Indices(vec![last, 0, frames / 2, frames / 2]))
            .seek(SeekMode::Exact)
            .resize(small),
        SampleOptions::new(Sampling::Timestamps(vec![0.0, duration * 0.6])).resize(small),
        SampleOptions::new(Sampling::Keyframes { max: 4 }).resize(small),
        SampleOptions::new(Sampling::Linspace(3))
            .seek(SeekMode::Exact)
            .rotate(false)
            .resize(small),
    ]
}

/// On every test video, the methods of one handle, called one after another, give exactly what
/// the free functions give (the same frames, bytes and errors), in two different call orders.
#[test]
fn every_method_equals_its_free_function_on_every_video() {
    let thumb = ThumbnailOptions {
        max_size: 96,
        format: ImageFormat::Png,
        ..ThumbnailOptions::default()
    };
    let mut checked = 0;
    for path in all_videos() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let source = Source::from(path.as_path());
        let probed = probe(&source);
        let mut video = match Video::open(path.as_path()) {
            Ok(v) => v,
            Err(e) => {
                // A file the handle cannot open is one the free functions cannot read either.
                let free = probed.expect_err(&name);
                assert_eq!(e.to_string(), free.to_string(), "{name}");
                continue;
            }
        };
        // Thumbnail first, then info: the index a thumbnail builds serves the probe.
        same(
            &format!("{name} thumbnail"),
            &video.thumbnail(&thumb),
            &thumbnail(&source, &thumb),
            |a, b| a == b,
        );
        let info = video.info();
        same(&format!("{name} info"), &info, &probed, |a, b| a == b);
        let Ok(info) = info else { continue };
        for options in requests(info.duration, info.frame_count) {
            same(
                &format!("{name} {options:?}"),
                &video.sample(&options),
                &sample_frames(&source, &options),
                same_batch,
            );
        }
        let at = [info.frame_count / 3, 0];
        same(
            &format!("{name} frames_at"),
            &video.frames_at(&at),
            &sample_frames(
                &source,
                &SampleOptions::new(Sampling::Indices(at.to_vec())).seek(SeekMode::Exact),
            ),
            same_batch,
        );
        let times = [info.duration * 0.25, 0.0];
        same(
            &format!("{name} frames_at_times"),
            &video.frames_at_times(&times),
            &sample_frames(
                &source,
                &SampleOptions::new(Sampling::Timestamps(times.to_vec())).seek(SeekMode::Exact),
            ),
            same_batch,
        );
        same(
            &format!("{name} storyboard"),
            &video.storyboard(3, &thumb),
            &storyboard(&source, 3, &thumb),
            |a, b| a == b,
        );
        // And a thumbnail again at the end, after every other call moved the handle's demuxers.
        same(
            &format!("{name} second thumbnail"),
            &video.thumbnail(&thumb),
            &thumbnail(&source, &thumb),
            |a, b| a == b,
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} videos were readable");
}

/// Containers without a frame table (Matroska, WebM, MPEG-TS, AVI) are indexed once per
/// handle: probe, sampling and a thumbnail read every packet once in all, where the free
/// functions read them once per call.
#[test]
fn the_packet_index_is_read_once_per_handle() {
    for name in [
        "vp9.webm",
        "vfr.mkv",
        "h264_opengop.ts",
        "mpegts.ts",
        "mpeg4.avi",
    ] {
        let path = common::video(name);
        let source = Source::from(path.as_path());
        let exact = SampleOptions::new(Sampling::Uniform(8)).seek(SeekMode::Exact);
        let (_, alone) = sample_frames_with_stats(&source, &exact).unwrap();
        assert!(alone.packets_indexed > 0, "{name}: no index pass");

        let mut video = Video::open(path.as_path()).unwrap();
        let info = video.info().unwrap();
        assert_eq!(
            video.stats().packets_indexed,
            alone.packets_indexed,
            "{name}"
        );
        let (_, first) = video.sample_with_stats(&exact).unwrap();
        assert_eq!(
            first.packets_indexed, 0,
            "{name}: the probe's index was not reused"
        );
        video.thumbnail(&ThumbnailOptions::default()).unwrap();
        video
            .sample(&SampleOptions::new(Sampling::Keyframes { max: 3 }))
            .unwrap();
        let total = video.stats();
        assert_eq!(total.packets_indexed, alone.packets_indexed, "{name}");
        assert!(info.frame_count > 0);
        // What the work was: the first call's decoding is the same as a fresh call's.
        assert_eq!(first.frames_decoded, alone.frames_decoded, "{name}");
        assert!(total.packets_read >= total.packets_indexed + first.packets_sent);
    }
}

/// On MP4 the frame table serves the probe and keyframe sampling: a handle reads no index.
#[test]
fn mp4_probe_and_keyframes_read_no_index() {
    let path = common::video("h264_bframes_longgop.mp4");
    let mut video = Video::open(path.as_path()).unwrap();
    assert_eq!(video.stats().packets_read, 0, "open reads headers only");
    video.info().unwrap();
    assert_eq!(video.stats().packets_read, 0, "the probe reads no packet");
    video
        .sample(&SampleOptions::new(Sampling::Keyframes { max: 2 }).seek(SeekMode::Fast))
        .unwrap();
    let stats = video.stats();
    assert_eq!(stats.packets_indexed, 0);
    assert!(stats.packets_read > 0 && stats.frames_decoded >= 2);
}

/// A reader gives what the path gives, and two demuxers of one handle over one reader do not
/// disturb each other (a counted scan opens a second one).
#[test]
fn a_reader_source_equals_the_file() {
    for name in ["h264_opengop.mp4", "mpeg4.avi", "vp9.webm"] {
        let path = common::video(name);
        let options = SampleOptions::new(Sampling::Uniform(6)).seek(SeekMode::Exact);
        let from_path = sample_frames(&Source::from(path.as_path()), &options).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut video = Video::open(Source::reader(file)).unwrap();
        let info = video.info().unwrap();
        assert_eq!(
            info,
            probe(&Source::from(path.as_path())).unwrap(),
            "{name}"
        );
        let a = video.sample(&options).unwrap();
        let b = video.sample(&options).unwrap();
        assert!(same_batch(&a, &from_path), "{name}");
        assert!(same_batch(&b, &from_path), "{name}");
        assert_eq!(video.source().describe(), "<reader>");
    }
}

/// A reader that fails is an error from the sampler, not a panic or a hang.
#[test]
fn a_failing_reader_is_a_typed_error() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    impl std::io::Seek for Broken {
        fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
            panic!("a reader that panics")
        }
    }
    match Video::open(Source::reader(Broken)) {
        Err(Error::Open { .. }) => {}
        other => panic!("expected an open error, got {other:?}"),
    }
}

#[test]
fn a_handle_moves_across_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Video>();
    let mut video = Video::open(common::video("hevc.mp4")).unwrap();
    let frames = std::thread::spawn(move || video.frames_at(&[0, 1]).unwrap())
        .join()
        .unwrap();
    assert_eq!(frames.indices, vec![0, 1]);
}

/// `thumbnail_among` picks among frames already decoded and reads nothing more; when those
/// frames cannot stand in for the thumbnail's own candidates it is `thumbnail`.
#[test]
fn a_thumbnail_among_decoded_frames_reads_no_more_packets() {
    let options = ThumbnailOptions::default();
    for name in [
        "h264_bframes_longgop.mp4",
        "vp9.webm",
        "h264_opengop.ts",
        "rotated_90.mp4",
    ] {
        let mut video = Video::open(common::video(name)).unwrap();
        let frames = video
            .sample(&SampleOptions::new(Sampling::Uniform(8)).seek(SeekMode::Exact))
            .unwrap();
        let before = video.stats();
        let thumb = video.thumbnail_among(&frames, &options).unwrap();
        let after = video.stats();
        assert_eq!(
            after.packets_read, before.packets_read,
            "{name}: packets read"
        );
        assert_eq!(
            after.frames_decoded, before.frames_decoded,
            "{name}: frames decoded"
        );
        assert!(
            frames.timestamps.contains(&thumb.timestamp),
            "{name}: {} is not one of the frames' times {:?}",
            thumb.timestamp,
            frames.timestamps
        );
        // Sized as `thumbnail` sizes it: the longest side at max_size, the frames' aspect.
        let alone = thumbnail(&Source::from(common::video(name).as_path()), &options).unwrap();
        assert_eq!(
            (thumb.width, thumb.height),
            (alone.width, alone.height),
            "{name}"
        );
        assert_eq!(thumb.format, ImageFormat::Jpeg);
        let decoded = image::load_from_memory(&thumb.data).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            (thumb.width, thumb.height)
        );
        // A size past the working one is scaled from the full frame, still without decoding.
        let big = ThumbnailOptions {
            max_size: 600,
            format: ImageFormat::Png,
            ..options.clone()
        };
        let large = video.thumbnail_among(&frames, &big).unwrap();
        assert_eq!(video.stats().packets_read, before.packets_read, "{name}");
        assert_eq!(
            large.width.max(large.height),
            frames.width.max(frames.height).min(600)
        );
        assert_eq!(
            large.timestamp, thumb.timestamp,
            "{name}: the same choice at another size"
        );
    }
}

#[test]
fn a_thumbnail_among_frames_that_cannot_serve_is_the_thumbnail() {
    let options = ThumbnailOptions::default();
    let name = "h264_bframes_longgop.mp4";
    let alone = thumbnail(&Source::from(common::video(name).as_path()), &options).unwrap();
    let cases = [
        // Too few to cover the video.
        SampleOptions::new(Sampling::Uniform(4)),
        // Smaller than the thumbnail.
        SampleOptions::new(Sampling::Uniform(8)).resize(Some(Resize::MaxSide(64))),
        // Another aspect.
        SampleOptions::new(Sampling::Uniform(8)).resize(Some(Resize::Exact {
            width: 320,
            height: 320,
        })),
    ];
    for sample in cases {
        let mut video = Video::open(common::video(name)).unwrap();
        let frames = video.sample(&sample).unwrap();
        let before = video.stats().packets_read;
        let thumb = video.thumbnail_among(&frames, &options).unwrap();
        assert_eq!(thumb, alone, "{sample:?}");
        assert!(
            video.stats().packets_read > before,
            "{sample:?}: its own search decodes"
        );
    }
    // Frames turned otherwise than the thumbnail (a 90-degree video sampled unrotated).
    let name = "rotated_90.mp4";
    let alone = thumbnail(&Source::from(common::video(name).as_path()), &options).unwrap();
    let mut video = Video::open(common::video(name)).unwrap();
    let frames = video
        .sample(&SampleOptions::new(Sampling::Uniform(8)).rotate(false))
        .unwrap();
    assert_eq!(video.thumbnail_among(&frames, &options).unwrap(), alone);
    // Frames none of which is fit to show (a fade from black sampled in its black part) leave
    // the choice to the thumbnail's own search.
    let name = "fade_black.mp4";
    let alone = thumbnail(&Source::from(common::video(name).as_path()), &options).unwrap();
    assert!(alone.timestamp > 0.0, "the fade starts black");
    let mut video = Video::open(common::video(name)).unwrap();
    // Eight distinct frames of the first, black second (30 fps).
    let black = video
        .sample(&SampleOptions::new(Sampling::Indices(
            (0..8).map(|i| i * 3).collect(),
        )))
        .unwrap();
    assert_eq!(video.thumbnail_among(&black, &options).unwrap(), alone);
    // Repeated frames count once: eight copies of one frame are one candidate, too few.
    let bikes = common::video("h264_bframes_longgop.mp4");
    let alone = thumbnail(&Source::from(bikes.as_path()), &options).unwrap();
    let mut video = Video::open(bikes).unwrap();
    let same = video
        .sample(&SampleOptions::new(Sampling::Indices(vec![150; 8])))
        .unwrap();
    assert_eq!(video.thumbnail_among(&same, &options).unwrap(), alone);
    // A batch that does not hold what it claims (its fields are public) is not looked into.
    let mut broken = video
        .sample(&SampleOptions::new(Sampling::Uniform(8)))
        .unwrap();
    broken.data.truncate(broken.data.len() / 2);
    assert_eq!(video.thumbnail_among(&broken, &options).unwrap(), alone);
    broken.data.clear();
    broken.timestamps.pop();
    assert_eq!(video.thumbnail_among(&broken, &options).unwrap(), alone);
}
