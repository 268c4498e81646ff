//! `video-llava quantize SRC DST --quantize TYPE [--quantize-vision]`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use video_llava::QuantizeOptions;

use super::analyze::report_fallbacks;
use crate::cli::QuantizeArgs;
use crate::failure::Failure;

/// Quantizes `SRC` into `DST` and says what it wrote.
pub fn run(args: QuantizeArgs) -> Result<ExitCode, Failure> {
    let options = QuantizeOptions {
        text: args.quantize,
        vision: args.quantize_vision,
    };
    let src =
        video_llava::hub::resolve(&args.src).map_err(|e| Failure::from_model(&args.src, &e))?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("quantizing {bar:30} {pos}/{len} tensors, ETA {eta}")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let report =
        video_llava::quantize::save_quantized(&src, &args.dst, options, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        });
    bar.finish_and_clear();
    let report = report.map_err(|e| Failure::from_model(&args.src, &e))?;
    report_fallbacks(&report.fallbacks);
    println!(
        "{}: {} tensors ({} quantized to {}{}), {:.1} MB, in {:.1} s",
        report.path.display(),
        report.tensors,
        report.quantized,
        options.text,
        if options.vision { ", vision q8_0" } else { "" },
        report.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
