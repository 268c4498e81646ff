//! Times the model's stages the way `benches/compare.py` times transformers: vision encoding of
//! the frames, prefill of the video prompt, greedy decode tokens/s; on any device and dtype.
//!
//! ```text
//! cargo run --release -p video-llava --example stages -- [--model DIR] [--device cpu|cuda|metal]
//!     [--dtype f32|bf16|f16] [--quantize none|q8_0|q4k|q6k] [--quantize-vision]
//!     [--kv-cache-dtype f32|f16|bf16] [--reps 3]
//!     [--new-tokens 32] [--frames 8] [--json FILE]
//! ```
//!
//! `--model` defaults to `.cache/bench-model` (`benches/make_bench_model.py`). It needs no FFmpeg
//! (frames are a fixed pseudo-random pattern: content does not change the work), so a build with
//! `--no-default-features --features cuda` can be carried to a GPU machine that has no FFmpeg and
//! no Rust toolchain (`benches/gpu/`). Timings wait for the device at each stage's end. `--json`
//! also writes the prompt's token ids, so a peer can be timed on exactly the same input.

use std::path::PathBuf;
use std::time::Instant;

use video_llava::model::VideoLlavaModel;
use video_llava::preprocess::IMAGE_SIZE;
use video_llava::{DType, Device, LoadOptions, Quantization, Tensor, VideoLlava};

struct Args {
    model: PathBuf,
    device: String,
    dtype: String,
    quantize: Quantization,
    quantize_vision: bool,
    kv_cache_dtype: Option<DType>,
    reps: usize,
    new_tokens: usize,
    frames: usize,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/bench-model"),
        device: "cpu".into(),
        dtype: "f32".into(),
        quantize: Quantization::None,
        quantize_vision: false,
        kv_cache_dtype: None,
        reps: 3,
        new_tokens: 32,
        frames: 8,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--model" => args.model = PathBuf::from(value()?),
            "--device" => args.device = value()?,
            "--dtype" => args.dtype = value()?,
            "--quantize" => args.quantize = value()?.parse().map_err(|e| format!("{e}"))?,
            "--quantize-vision" => args.quantize_vision = true,
            "--kv-cache-dtype" => {
                let name = value()?;
                let dtype = video_llava::device::parse_dtype(&name).map_err(|e| format!("{e}"))?;
                args.kv_cache_dtype = Some(dtype);
            }
            "--reps" => args.reps = number(value()?)?,
            "--new-tokens" => args.new_tokens = number(value()?)?,
            "--frames" => args.frames = number(value()?)?,
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!(
                    "stages [--model DIR] [--device cpu|cuda|metal] [--dtype f32|bf16|f16] \
                     [--quantize none|q8_0|q4k|q6k] [--quantize-vision] \
                     [--kv-cache-dtype f32|f16|bf16] [--reps N] \
                     [--new-tokens N] [--frames N] [--json FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    if args.reps == 0 || args.frames == 0 {
        return Err("--reps and --frames must be at least 1".into());
    }
    Ok(args)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0)?,
        "metal" => Device::new_metal(0)?,
        other => return Err(format!("unknown device {other}").into()),
    };
    let dtype = match args.dtype.as_str() {
        "f32" | "float32" => DType::F32,
        "bf16" | "bfloat16" => DType::BF16,
        "f16" | "float16" => DType::F16,
        other => return Err(format!("unknown dtype {other}").into()),
    };
    let t = Instant::now();
    let mut options = LoadOptions::new(&device, dtype)
        .quantize(args.quantize)
        .quantize_vision(args.quantize_vision);
    options.kv_cache_dtype = args.kv_cache_dtype;
    let api =
        VideoLlava::from_pretrained_with(args.model.to_str().ok_or("non utf-8 path")?, &options)?;
    device.synchronize()?;
    let load_s = t.elapsed().as_secs_f64();
    let model: &VideoLlavaModel = api.model();
    let ids = api.tokenize(
        "USER: <video>\nDescribe what happens in this video. ASSISTANT:",
        args.frames,
    )?;
    let n = args.frames * 3 * IMAGE_SIZE * IMAGE_SIZE;
    let mut state = 0x2545_f491_u32;
    let pixels: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect();
    let pixels = Tensor::from_vec(pixels, (1, args.frames, 3, IMAGE_SIZE, IMAGE_SIZE), &device)?;
    println!(
        "model {} on {} in {:?} ({}{}): loaded in {load_s:.2}s, prompt {} tokens, {} new tokens, {} reps",
        args.model.display(),
        args.device,
        dtype,
        api.quantization().text,
        if api.quantization().vision { ", vision q8_0" } else { "" },
        ids.len(),
        args.new_tokens,
        args.reps
    );

    let (mut vision, mut prefill, mut decode) = (vec![], vec![], vec![]);
    for rep in 0..=args.reps {
        let t0 = Instant::now();
        let feats = model.encode_videos(&pixels)?;
        device.synchronize()?;
        let t1 = Instant::now();
        let embeds = model.embed(&ids, None, Some(&feats))?;
        let mut cache = model.new_cache(ids.len() + args.new_tokens + 1)?;
        let logits = model.forward_embeds(&embeds, &mut cache)?;
        // Reading the next token back waits for the device.
        let mut tok = logits.argmax(0)?.to_scalar::<u32>()?;
        let t2 = Instant::now();
        for _ in 0..args.new_tokens {
            let logits = model.forward_tokens(&[tok], &mut cache)?;
            tok = logits.argmax(0)?.to_scalar::<u32>()?;
        }
        let t3 = Instant::now();
        let (v, p) = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
        let d = args.new_tokens as f64 / (t3 - t2).as_secs_f64();
        // rep 0 warms allocators, thread pools, kernels and the page cache.
        if rep > 0 {
            vision.push(v);
            prefill.push(p);
            decode.push(d);
        }
        println!("rep {rep}: vision {v:.4}s prefill {p:.4}s decode {d:.2} tok/s");
    }
    let (v, p, d) = (median(vision), median(prefill), median(decode));
    println!("median: vision {v:.4}s prefill {p:.4}s decode {d:.2} tok/s");
    if let Some(path) = args.json {
        let json = format!(
            "{{\"device\": \"{}\", \"dtype\": \"{}\", \"quantize\": \"{}\", \"kv_cache_dtype\": \"{}\", \"load_s\": {load_s}, \"prompt_tokens\": {}, \
             \"new_tokens\": {}, \"reps\": {}, \"vision_s\": {v}, \"prefill_s\": {p}, \
             \"decode_tok_s\": {d}, \"ids\": {:?}}}\n",
            args.device,
            args.dtype,
            args.quantize,
            video_llava::device::dtype_name(api.kv_cache_dtype()),
            ids.len(),
            args.new_tokens,
            args.reps,
            ids
        );
        std::fs::write(path, json)?;
    }
    Ok(())
}
