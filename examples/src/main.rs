//! `video-llava`: video understanding from the shell.
//!
//! ```text
//! video-llava analyze clip.mp4                       # stream an answer
//! video-llava analyze uploads/ --jsonl results.jsonl --thumbnails thumbs/
//! video-llava probe clip.mp4 --json
//! video-llava frames clip.mp4 --count 8 --out frames/
//! video-llava thumbnail clip.mp4 --out clip.jpg
//! video-llava storyboard clip.mp4 --count 12 --out board.jpg
//! video-llava serve --model LanguageBind/Video-LLaVA-7B-hf    # OpenAI-compatible HTTP server
//! ```
//!
//! Exit status: 0 on success, 2 for bad input or usage, 1 otherwise. Errors are one line on
//! stderr, `error: <file>: <cause>`.

mod bitmap_font;
mod cli;
mod commands;
mod contact_sheet;
mod device;
mod failure;
mod image_files;
mod inputs;
mod jsonl;
mod records;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

fn main() -> ExitCode {
    install_panic_hook();
    let cli = cli::Cli::parse();
    // Every video any command reads (through the core or directly) keeps to these.
    if let Err(error) = frame_sampler::Limits::set_process_default(cli.limits.limits()) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| commands::run(cli.command))) {
        Ok(Ok(code)) => code,
        Ok(Err(failure)) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
        // The hook has already printed the one line.
        Err(_) => ExitCode::from(1),
    }
}

/// A panic is a bug, but users get one line about it, not a backtrace, unless they ask for one
/// with `RUST_BACKTRACE`.
fn install_panic_hook() {
    let wants_backtrace =
        std::env::var_os("RUST_BACKTRACE").is_some_and(|v| !v.is_empty() && v != "0");
    if wants_backtrace {
        return;
    }
    // A worker thread's panic resurfaces in the thread that joins it: report only the first.
    static REPORTED: AtomicBool = AtomicBool::new(false);
    std::panic::set_hook(Box::new(|info| {
        if REPORTED.swap(true, Ordering::SeqCst) {
            return;
        }
        let message = panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error{location}: {} (a bug; rerun with RUST_BACKTRACE=1 for details)",
            message.replace('\n', " ")
        );
    }));
}

pub(crate) use video_llava::panic_message;
