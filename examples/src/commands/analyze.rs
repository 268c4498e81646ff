//! `video-llava analyze PATH...`: load the model once, answer for each video, stream or record.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use video_llava::analyze::{Analysis, AnalyzerOptions, BatchItem, VideoAnalyzer};
use video_llava::{GenerationParams, LoadOptions, VideoLlava};

use crate::cli::{AnalyzeArgs, LoadArgs};
use crate::device;
use crate::failure::{Failure, FailureKind};
use crate::image_files;
use crate::inputs;
use crate::jsonl::{JsonlLog, RunKey};
use crate::records::{AnalysisRecord, ErrorRecord};

/// What a `--jsonl` record answers: a rerun with another question, model or frame count
/// analyzes the videos again.
fn run_key(args: &AnalyzeArgs) -> RunKey {
    RunKey {
        question: args.question.clone(),
        model: args.model.clone(),
        frames: u64::from(args.frames),
    }
}

/// Runs the batch; see the subcommand's help for the exit status.
pub fn run(args: AnalyzeArgs) -> Result<ExitCode, Failure> {
    let videos = inputs::expand(&args.paths)?;
    if videos.is_empty() {
        return Err(Failure::input(args.paths.join(" "), "no video files found"));
    }
    let key = run_key(&args);
    let mut log = args
        .jsonl
        .as_deref()
        .map(|p| JsonlLog::open(p, &key))
        .transpose()?;
    let (todo, skipped): (Vec<PathBuf>, Vec<PathBuf>) = videos
        .into_iter()
        .partition(|v| !log.as_ref().is_some_and(|l| l.is_done(v)));
    if args.json && todo.len() > 1 {
        return Err(Failure::input(
            "--json",
            format!(
                "prints one video's JSON document but {} videos were given; use --jsonl FILE for many",
                todo.len()
            ),
        ));
    }
    if todo.is_empty() {
        eprintln!(
            "nothing to do: all {} videos are already recorded in {}",
            skipped.len(),
            args.jsonl
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let mut report = Report::new(&args, todo.clone(), log.take());
    // Loading a 7B model takes minutes: when no video can be read, say so before that.
    if todo.iter().all(|v| !v.exists()) {
        for video in &todo {
            report.failed(
                video,
                Failure::input(video.display().to_string(), "file not found"),
            );
        }
        return Ok(report.finish(skipped.len()));
    }
    if let Some(dir) = &args.thumbnails {
        std::fs::create_dir_all(dir).map_err(|e| Failure::io(dir, &e))?;
    }

    let analyzer = VideoAnalyzer::new(load_model(&args)?, options(&args));
    let report = RefCell::new(report);
    analyzer.analyze_many(
        todo,
        &mut |index, piece| {
            report.borrow_mut().piece(index, piece);
            ControlFlow::Continue(())
        },
        &mut |item| report.borrow_mut().finished(item),
    );
    Ok(report.into_inner().finish(skipped.len()))
}

fn options(args: &AnalyzeArgs) -> AnalyzerOptions {
    AnalyzerOptions {
        frames: args.frames as usize,
        question: args.question.clone(),
        params: GenerationParams {
            max_new_tokens: args.max_new_tokens as usize,
            temperature: args.temperature,
            seed: args.seed,
            ..GenerationParams::default()
        },
        ..AnalyzerOptions::default()
    }
}

fn load_model(args: &AnalyzeArgs) -> Result<VideoLlava, Failure> {
    load(&args.model, &args.load)
}

/// Resolves `model` (a directory or a hub repo), picks the device and dtype, and loads it with
/// the quantization asked for; shared by `analyze` and `serve`.
pub(crate) fn load(model: &str, args: &LoadArgs) -> Result<VideoLlava, Failure> {
    let (device, dtype) = device::select(args.device, args.dtype)?;
    let dir = video_llava::hub::resolve(model).map_err(|e| Failure::from_model(model, &e))?;
    let dir_name = dir.display().to_string();
    if std::io::stderr().is_terminal() {
        eprintln!(
            "loading {} on {} ({})",
            model,
            video_llava::device::device_name(&device),
            video_llava::device::dtype_name(dtype)
        );
    }
    let dir_str = dir
        .to_str()
        .ok_or_else(|| Failure::input(&dir_name, "the model path is not valid UTF-8"))?;
    let options = LoadOptions::new(&device, dtype)
        .quantize(args.quantize)
        .quantize_vision(args.quantize_vision);
    let loaded = VideoLlava::from_pretrained_with(dir_str, &options)
        .map_err(|e| Failure::from_model(model, &e))?;
    report_fallbacks(loaded.model().quantization_fallbacks());
    Ok(loaded)
}

/// Says on stderr which weights were kept in another type than asked.
pub(crate) fn report_fallbacks(fallbacks: &[video_llava::quantize::Fallback]) {
    if fallbacks.is_empty() {
        return;
    }
    eprintln!(
        "note: {} weight(s) kept in another type than asked:",
        fallbacks.len()
    );
    for f in fallbacks {
        eprintln!("  {f}");
    }
}

/// How answers reach the user.
enum Output {
    /// One JSON document on stdout.
    Json,
    /// Answers streamed to stdout; with several videos each gets a `==> path <==` header.
    Stream {
        /// Whether headers are printed.
        headers: bool,
    },
    /// Several videos on a terminal: a progress bar with ETA shows the answer being generated;
    /// finished answers are printed above it.
    Bar(ProgressBar),
}

/// Everything said about the batch: stdout, stderr, the log, the thumbnails.
struct Report {
    output: Output,
    videos: Vec<PathBuf>,
    log: Option<JsonlLog>,
    thumbnails: Option<PathBuf>,
    /// The question, model and frame count of this run (the model as given to `--model`).
    key: RunKey,
    /// The answer so far of the video being generated, and whether its header was printed.
    current: String,
    header_printed: bool,
    analyzed: usize,
    input_failures: usize,
    other_failures: usize,
    /// A failure that ends the batch (the log cannot be written).
    fatal: Option<Failure>,
}

impl Report {
    fn new(args: &AnalyzeArgs, videos: Vec<PathBuf>, log: Option<JsonlLog>) -> Self {
        let output = if args.json {
            Output::Json
        } else if videos.len() > 1
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal()
        {
            let bar = ProgressBar::new(videos.len() as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}, ETA {eta}] {wide_msg}",
                )
                .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            Output::Bar(bar)
        } else {
            Output::Stream {
                headers: videos.len() > 1,
            }
        };
        Self {
            output,
            videos,
            log,
            thumbnails: args.thumbnails.clone(),
            key: run_key(args),
            current: String::new(),
            header_printed: false,
            analyzed: 0,
            input_failures: 0,
            other_failures: 0,
            fatal: None,
        }
    }

    fn piece(&mut self, index: usize, piece: &str) {
        match &self.output {
            Output::Json => {}
            Output::Stream { headers } => {
                let mut out = std::io::stdout().lock();
                if *headers && !self.header_printed {
                    let _ = writeln!(out, "==> {} <==", self.videos[index].display());
                    self.header_printed = true;
                }
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }
            Output::Bar(bar) => {
                self.current.push_str(piece);
                bar.set_message(format!(
                    "{}: {}",
                    image_files::stem(&self.videos[index]),
                    tail(&self.current, 80)
                ));
            }
        }
    }

    fn finished(&mut self, item: BatchItem) -> ControlFlow<()> {
        let video = self.videos[item.index].clone();
        let outcome = item
            .result
            .map_err(|e| Failure::from_model(video.display().to_string(), &e))
            .and_then(|analysis| {
                self.save_thumbnail(&video, &analysis)
                    .map(|t| (analysis, t))
            });
        match outcome {
            Ok((analysis, thumbnail)) => self.succeeded(&video, &analysis, thumbnail.as_deref()),
            Err(failure) => self.failed(&video, failure),
        }
        self.current.clear();
        self.header_printed = false;
        if let Output::Bar(bar) = &self.output {
            bar.set_message("");
            bar.inc(1);
        }
        if self.fatal.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn save_thumbnail(
        &self,
        video: &Path,
        analysis: &Analysis,
    ) -> Result<Option<PathBuf>, Failure> {
        let Some(dir) = &self.thumbnails else {
            return Ok(None);
        };
        let ext = match analysis.thumbnail.format {
            frame_sampler::ImageFormat::Jpeg => "jpg",
            frame_sampler::ImageFormat::Png => "png",
            frame_sampler::ImageFormat::WebP => "webp",
        };
        let path = dir.join(format!("{}.{ext}", image_files::stem(video)));
        image_files::write_bytes(&path, &analysis.thumbnail.data)?;
        Ok(Some(path))
    }

    fn succeeded(&mut self, video: &Path, analysis: &Analysis, thumbnail: Option<&Path>) {
        self.analyzed += 1;
        let record = AnalysisRecord::new(video, analysis, &self.key, thumbnail);
        match &self.output {
            Output::Json => {
                let json = serde_json::to_string_pretty(&record).expect("plain data serializes");
                let _ = writeln!(std::io::stdout(), "{json}");
            }
            Output::Stream { headers } => {
                let mut out = std::io::stdout().lock();
                if *headers && !self.header_printed {
                    let _ = writeln!(out, "==> {} <==", video.display());
                }
                // The streamed answer ends without a newline; a blank line separates videos.
                let _ = writeln!(out);
                if *headers {
                    let _ = writeln!(out);
                }
            }
            Output::Bar(bar) => bar.suspend(|| {
                let _ = writeln!(
                    std::io::stdout(),
                    "==> {} <==\n{}\n",
                    video.display(),
                    analysis.answer.trim()
                );
            }),
        }
        if let Some(log) = &mut self.log {
            if let Err(failure) = log.append(&record) {
                self.fatal = Some(failure);
            }
        }
    }

    fn failed(&mut self, video: &Path, failure: Failure) {
        match failure.kind {
            FailureKind::Input => self.input_failures += 1,
            FailureKind::Internal => self.other_failures += 1,
        }
        let record = ErrorRecord::new(video, &failure, &self.key);
        let say = || eprintln!("error: {failure}");
        match &self.output {
            Output::Bar(bar) => bar.suspend(say),
            Output::Json => {
                say();
                let json = serde_json::to_string_pretty(&record).expect("plain data serializes");
                let _ = writeln!(std::io::stdout(), "{json}");
            }
            Output::Stream { .. } => {
                // A half-streamed answer is ended before the error line.
                if !self.current.is_empty() || self.header_printed {
                    let _ = writeln!(std::io::stdout());
                }
                say();
            }
        }
        if let Some(log) = &mut self.log {
            if let Err(failure) = log.append(&record) {
                self.fatal = Some(failure);
            }
        }
    }

    /// Ends the bar, prints a summary for batches, and returns the exit status.
    fn finish(self, skipped: usize) -> ExitCode {
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
        let failed = self.input_failures + self.other_failures;
        if self.videos.len() > 1 || skipped > 0 {
            eprintln!(
                "{} of {} videos analyzed, {failed} failed, {skipped} skipped (already recorded)",
                self.analyzed,
                self.videos.len() + skipped
            );
        }
        if let Some(fatal) = &self.fatal {
            eprintln!("error: {fatal}");
            return ExitCode::from(1);
        }
        if self.other_failures > 0 {
            ExitCode::from(FailureKind::Internal.exit_code())
        } else if self.input_failures > 0 {
            ExitCode::from(FailureKind::Input.exit_code())
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The last `n` characters of `text` on one line.
fn tail(text: &str, n: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let count = flat.chars().count();
    flat.chars()
        .skip(count.saturating_sub(n))
        .collect::<String>()
        .trim_start()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_on_one_line() {
        assert_eq!(tail("a man\nrides a bike", 10), "des a bike");
        assert_eq!(tail("one\ntwo", 4), "two");
        assert_eq!(tail("short", 80), "short");
    }
}
