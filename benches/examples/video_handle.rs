//! `analyze`'s video work (probe + 8 exact frames + thumbnail) as three free calls, as it was
//! done before `Video`, against one `Video` handle choosing the thumbnail among the 8 frames
//! (`Video::thumbnail_among`, what `analyze` does now) and one handle running the thumbnail's
//! own search, on each file given; also sampling alone and the thumbnail alone. Reports the demux work (video packets read, as `SampleStats` counts
//! them) and the median wall time of alternating rounds, and the ratio.
//!
//!     bash benches/make-bench-data.sh
//!     cargo run --release -p video-llava-benches --example video_handle -- \
//!         .cache/bench/long-1080p.{mp4,mkv,ts} .cache/bench/long-360p.webm [--rounds 5]

use std::time::Instant;

use frame_sampler::{SampleOptions, SampleStats, Sampling, SeekMode, ThumbnailOptions, Video};

fn eight() -> SampleOptions {
    SampleOptions::new(Sampling::Uniform(8)).seek(SeekMode::Exact)
}

/// One call as a free function makes it: a new handle, used once. Returns the packets read.
fn alone(path: &str, f: impl FnOnce(&mut Video)) -> u64 {
    let mut v = Video::open(path).expect("open");
    f(&mut v);
    v.stats().packets_read
}

/// The three free calls `analyze` made: probe, sample, thumbnail, each opening the file.
fn three_calls(path: &str) -> u64 {
    alone(path, |v| {
        v.info().expect("info");
    }) + alone(path, |v| {
        v.sample(&eight()).expect("sample");
    }) + alone(path, |v| {
        v.thumbnail(&ThumbnailOptions::default())
            .expect("thumbnail");
    })
}

/// The same work on one handle; `reuse`: the thumbnail is chosen among the sampled frames.
fn one_handle(path: &str, reuse: bool) -> SampleStats {
    let mut v = Video::open(path).expect("open");
    v.info().expect("info");
    let frames = v.sample(&eight()).expect("sample");
    let options = ThumbnailOptions::default();
    if reuse {
        v.thumbnail_among(&frames, &options).expect("thumbnail");
    } else {
        v.thumbnail(&options).expect("thumbnail");
    }
    v.stats()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut rounds = 5;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args
                .next()
                .and_then(|r| r.parse().ok())
                .expect("--rounds N");
        } else {
            files.push(a);
        }
    }
    assert!(
        !files.is_empty(),
        "usage: video_handle FILE... [--rounds N]"
    );
    println!(
        "| file | packets: sample alone | thumbnail alone | 3 calls | 1 handle | 1 handle, own search | \
         time: 3 calls | 1 handle | own search | speed-up (1 handle vs 3 calls) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for path in &files {
        let sample = alone(path, |v| {
            v.sample(&eight()).expect("sample");
        });
        let thumb = alone(path, |v| {
            v.thumbnail(&ThumbnailOptions::default())
                .expect("thumbnail");
        });
        let (mut before, mut after, mut searched) = (Vec::new(), Vec::new(), Vec::new());
        let (mut packets_before, mut packets_after, mut packets_searched) = (0, 0, 0);
        for _ in 0..rounds {
            let t = Instant::now();
            packets_before = three_calls(path);
            before.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            packets_after = one_handle(path, true).packets_read;
            after.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            packets_searched = one_handle(path, false).packets_read;
            searched.push(t.elapsed().as_secs_f64());
        }
        let (b, a, s) = (median(before), median(after), median(searched));
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "| {name} | {sample} | {thumb} | {packets_before} | {packets_after} | \
             {packets_searched} | {b:.3} s | {a:.3} s | {s:.3} s | {:.2}x |",
            b / a
        );
    }
}
