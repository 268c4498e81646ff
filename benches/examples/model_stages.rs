//! Times the model's stages on `.cache/bench-model` in float32, the way `compare.py` times
//! transformers: vision encoding of 8 frames, prefill of the video prompt, greedy decode tokens/s.
//!
//! `cargo run --release -p video-llava-benches --example model_stages [-- REPS [NEW_TOKENS]]`

use std::time::Instant;

use video_llava::model::VideoLlavaModel;
use video_llava::preprocess::IMAGE_SIZE;
use video_llava::{DType, Device, Tensor, VideoLlava};
use video_llava_benches::bench_model_dir;

const FRAMES: usize = 8;

/// This process's user + system CPU seconds (Linux; 0 elsewhere): under a shared, busy CPU it
/// tracks the work done better than wall time.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let reps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let new_tokens: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(32);
    let dir = bench_model_dir();
    let device = Device::Cpu;
    let api =
        VideoLlava::from_pretrained(dir.to_str().ok_or("non utf-8 path")?, &device, DType::F32)?;
    let model: &VideoLlavaModel = api.model();
    let ids = api.tokenize(
        "USER: <video>\nDescribe what happens in this video. ASSISTANT:",
        FRAMES,
    )?;
    // Content does not change the work done; a fixed pseudo-random pattern keeps runs comparable.
    let n = FRAMES * 3 * IMAGE_SIZE * IMAGE_SIZE;
    let mut state = 0x2545_f491_u32;
    let pixels: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect();
    let pixels = Tensor::from_vec(pixels, (1, FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE), &device)?;
    println!(
        "model {}, prompt {} tokens, {new_tokens} new tokens, {reps} reps",
        dir.display(),
        ids.len()
    );

    let (mut vision, mut prefill, mut decode) = (vec![], vec![], vec![]);
    for rep in 0..=reps {
        let c0 = cpu_seconds();
        let t0 = Instant::now();
        let feats = model.encode_videos(&pixels)?;
        let t1 = Instant::now();
        let c1 = cpu_seconds();
        let embeds = model.embed(&ids, None, Some(&feats))?;
        let mut cache = model.new_cache(ids.len() + new_tokens + 1)?;
        let logits = model.forward_embeds(&embeds, &mut cache)?;
        let t2 = Instant::now();
        let c2 = cpu_seconds();
        let mut tok = logits.argmax(0)?.to_scalar::<u32>()?;
        for _ in 0..new_tokens {
            let logits = model.forward_tokens(&[tok], &mut cache)?;
            tok = logits.argmax(0)?.to_scalar::<u32>()?;
        }
        let t3 = Instant::now();
        let c3 = cpu_seconds();
        // rep 0 warms the allocator, the thread pool and the page cache.
        if rep > 0 {
            vision.push((t1 - t0).as_secs_f64());
            prefill.push((t2 - t1).as_secs_f64());
            decode.push(new_tokens as f64 / (t3 - t2).as_secs_f64());
        }
        println!(
            "rep {rep}: vision {:.3}s prefill {:.3}s decode {:.2} tok/s \
             (cpu s: vision {:.2} prefill {:.2} decode {:.2})",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            new_tokens as f64 / (t3 - t2).as_secs_f64(),
            c1 - c0,
            c2 - c1,
            c3 - c2
        );
    }
    println!(
        "median: vision {:.3}s prefill {:.3}s decode {:.2} tok/s",
        median(vision),
        median(prefill),
        median(decode)
    );
    Ok(())
}
