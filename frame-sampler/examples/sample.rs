//! Samples frames from a video and prints what it took.
//!
//! `cargo run -p frame-sampler --example sample -- VIDEO [N] [exact|fast] [uniform|linspace]`

use std::time::Instant;

use frame_sampler::{probe, sample_frames_with_stats, SampleOptions, Sampling, SeekMode, Source};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: sample VIDEO [N] [exact|fast] [uniform|linspace]");
        std::process::exit(2);
    };
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let seek = match args.get(2).map(String::as_str) {
        Some("fast") => SeekMode::Fast,
        _ => SeekMode::Exact,
    };
    let sampling = match args.get(3).map(String::as_str) {
        Some("uniform") => Sampling::Uniform(n),
        _ => Sampling::Linspace(n),
    };
    let source = Source::from(path.as_str());
    let t = Instant::now();
    let info = probe(&source)?;
    println!("probe: {:?} in {:.3}s", info, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let (batch, stats) =
        sample_frames_with_stats(&source, &SampleOptions::new(sampling).seek(seek))?;
    println!(
        "{} frames {}x{} in {:.3}s: indices {:?}\n{:?}",
        batch.len(),
        batch.width,
        batch.height,
        t.elapsed().as_secs_f64(),
        batch.indices,
        stats
    );
    Ok(())
}
