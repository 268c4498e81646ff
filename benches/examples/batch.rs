//! Decode throughput of batched generation against one request at a time, on the bench model
//! (`.cache/bench-model`, else the tiny fixture), float32, text prompts of similar length:
//! tokens per second over all sequences at batch 1, 4 and 8 (`generate_batch`), and a single
//! request through `generate` against `generate_batch` of one (the batching path's latency
//! cost). Rounds alternate; medians are printed with their ratios (issue 14's targets: batch 4
//! at least 3x batch 1, batch 8 at least 5x; batch-of-one at least 0.97x `generate`).
//!
//!     cargo run --release -p video-llava-benches --example random_checkpoint -- \
//!         --shapes mid --out .cache/bench-model
//!     cargo run --release -p video-llava-benches --example batch [-- --rounds 3 --tokens 32]

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use video_llava::{
    BatchOptions, BatchRequest, DType, Device, Generation, GenerationParams, Request, VideoLlava,
};
use video_llava_benches::bench_model_dir;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Tokens per second of decode over `generations`, which ran together for `wall`: the wall time
/// less their prefills (which run one after another as each joins).
fn decode_rate(generations: &[Generation], wall: Duration) -> f64 {
    let tokens: usize = generations.iter().map(|g| g.token_ids.len()).sum();
    let prefill: Duration = generations
        .iter()
        .map(|g| g.timings.preprocess + g.timings.vision + g.timings.prefill)
        .sum();
    tokens as f64 / (wall.saturating_sub(prefill)).as_secs_f64()
}

fn main() {
    let (mut rounds, mut tokens) = (3usize, 32usize);
    let mut steps_only = false;
    let mut step_sizes = vec![1usize, 4, 8];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{arg} N"))
        };
        match arg.as_str() {
            "--rounds" => rounds = value(),
            "--tokens" => tokens = value(),
            "--steps-only" => steps_only = true,
            "--step-sizes" => {
                step_sizes = args
                    .next()
                    .and_then(|list| list.split(',').map(|n| n.parse().ok()).collect())
                    .unwrap_or_else(|| panic!("--step-sizes N[,N..]"))
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = bench_model_dir();
    let model = VideoLlava::from_pretrained(dir.to_str().expect("utf-8"), &Device::Cpu, DType::F32)
        .expect("model load failed");
    println!(
        "model {}, {rounds} rounds, {tokens} new tokens per request",
        dir.display()
    );
    let params = GenerationParams::greedy(tokens);
    let request = |i: usize| {
        BatchRequest::new(
            Request::new(format!("Write story number {i} about a bicycle ride.")),
            params.clone(),
        )
    };
    let sizes = [1usize, 4, 8];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let (mut plain, mut batch_of_one) = (Vec::new(), Vec::new());
    // The language model's step alone: B sequences of 16 cached positions, 32 steps.
    let lm = model.model();
    for &n in &step_sizes {
        let mut caches: Vec<_> = (0..n)
            .map(|_| {
                let mut cache = lm.new_cache(64).expect("cache");
                lm.forward_tokens(&[1; 16], &mut cache).expect("prefill");
                cache
            })
            .collect();
        let started = Instant::now();
        for _ in 0..32 {
            let mut refs: Vec<_> = caches.iter_mut().collect();
            if n == 1 {
                lm.forward_tokens(&[2], refs[0]).expect("step");
            } else {
                lm.forward_batch(&vec![2; n], &mut refs).expect("step");
            }
        }
        let step = started.elapsed().as_secs_f64() / 32.0;
        println!(
            "step of {n}: {:.1} ms ({:.2} tok/s)",
            step * 1e3,
            n as f64 / step
        );
    }
    if steps_only {
        return;
    }
    for _ in 0..rounds {
        // One request: generate, and generate_batch of one.
        let one = request(0);
        let started = Instant::now();
        let g = model
            .generate(&one.request, &params, None, &mut |_| {
                ControlFlow::Continue(())
            })
            .expect("generate failed");
        plain.push(decode_rate(&[g], started.elapsed()));
        let started = Instant::now();
        let got = model.generate_batch(&[&one], &BatchOptions::default(), &mut |_, _| {
            ControlFlow::Continue(())
        });
        let got: Vec<Generation> = got.into_iter().map(|r| r.expect("batch failed")).collect();
        batch_of_one.push(decode_rate(&got, started.elapsed()));

        for (k, &n) in sizes.iter().enumerate() {
            let batch: Vec<BatchRequest> = (0..n).map(request).collect();
            let options = BatchOptions {
                max_batch: n,
                ..BatchOptions::default()
            };
            let started = Instant::now();
            let got = model.generate_batch(&batch, &options, &mut |_, _| ControlFlow::Continue(()));
            let wall = started.elapsed();
            let got: Vec<Generation> = got.into_iter().map(|r| r.expect("batch failed")).collect();
            rates[k].push(decode_rate(&got, wall));
        }
    }
    let plain = median(plain);
    let batch_of_one = median(batch_of_one);
    println!("one request, generate:          {plain:.2} tok/s");
    println!(
        "one request, generate_batch:    {batch_of_one:.2} tok/s ({:.3}x, target >= 0.97)",
        batch_of_one / plain
    );
    let base = median(rates[0].clone());
    for (k, &n) in sizes.iter().enumerate() {
        let rate = median(rates[k].clone());
        println!(
            "batch {n}: {rate:.2} tok/s over all sequences, {:.2}x batch 1",
            rate / base
        );
    }
}
