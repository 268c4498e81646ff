//! The CLIP preprocessing against transformers' processors on real frames
//! (tests/fixtures/preprocess, made by make_fixtures.py): the video processor on four frames of
//! bikes.mp4 and the image processor on a portrait crop of bigbuckbunny.mp4.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use video_llava::preprocess::{preprocess_frames, preprocess_image};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

/// An RGB8 PNG as (bytes, height, width).
fn png(name: &str) -> Result<(Vec<u8>, usize, usize)> {
    let img = image::open(fixtures().join(name))
        .with_context(|| format!("decode {name}"))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok((img.into_raw(), h as usize, w as usize))
}

fn reference(name: &str) -> Result<Vec<f32>> {
    let t =
        candle_core::safetensors::load(fixtures().join("preprocess.safetensors"), &Device::Cpu)?;
    let t = t.get(name).with_context(|| format!("tensor {name}"))?;
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn video_frames_match_the_video_processor() -> Result<()> {
    let mut data = Vec::new();
    let mut size = None;
    for i in 0..4 {
        let (rgb, h, w) = png(&format!("frame{i}.png"))?;
        ensure!(size.is_none_or(|s| s == (h, w)), "frames differ in size");
        size = Some((h, w));
        data.extend(rgb);
    }
    let (h, w) = size.unwrap();
    assert_eq!((h, w), (272, 640));
    let ours = preprocess_frames(&data, 4, h, w)?;
    let diff = mean_abs_diff(&ours, &reference("video")?);
    println!("video frames: mean abs diff {diff:.6}");
    ensure!(diff < 0.01, "mean abs diff {diff}");
    Ok(())
}

#[test]
fn portrait_image_matches_the_image_processor() -> Result<()> {
    let (rgb, h, w) = png("portrait.png")?;
    assert_eq!((h, w), (603, 397));
    let ours = preprocess_image(&rgb, h, w)?;
    let diff = mean_abs_diff(&ours, &reference("image")?);
    println!("portrait image: mean abs diff {diff:.6}");
    ensure!(diff < 0.01, "mean abs diff {diff}");
    Ok(())
}
