//! Loads a checkpoint into float32 and exits: run under `/usr/bin/time -v` to read the peak
//! resident memory of loading (`.cache/bench-model` is bf16, so every tensor is converted).
//!
//! `cargo build --release -p video-llava-benches --example load_f32 &&
//!  /usr/bin/time -v target/release/examples/load_f32 [MODEL_DIR]`

use video_llava::model::VideoLlavaModel;
use video_llava::{DType, Device};
use video_llava_benches::bench_model_dir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(bench_model_dir);
    let model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
    println!("loaded {} ({:?})", dir.display(), model.dtype());
    Ok(())
}
