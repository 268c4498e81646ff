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
fn run_key(args: &AnalyzeArgs, question: &str) -> RunKey {
    RunKey {
        question: question.to_string(),
        model: args.model.clone(),
        frames: u64::from(args.frames),
    }
}

/// The questions, each once, in the order given.
fn questions(args: &AnalyzeArgs) -> Vec<String> {
    let mut questions: Vec<String> = Vec::new();
    for question in &args.questions {
        if !questions.contains(question) {
            questions.push(question.clone());
        }
    }
    questions
}

/// Runs the batch; see the subcommand's help for the exit status.
pub fn run(args: AnalyzeArgs) -> Result<ExitCode, Failure> {
    let videos = inputs::expand(&args.paths)?;
    if videos.is_empty() {
        return Err(Failure::input(args.paths.join(" "), "no video files found"));
    }
    let questions = questions(&args);
    if let Some(blank) = questions.iter().find(|q| q.trim().is_empty()) {
        return Err(Failure::input(
            "--question",
            format!("{blank:?} is empty: ask something"),
        ));
    }
    let keys: Vec<RunKey> = questions.iter().map(|q| run_key(&args, q)).collect();
    let mut log = args
        .jsonl
        .as_deref()
        .map(|p| JsonlLog::open(p, &keys))
        .transpose()?;
    // Each video with the questions the log does not answer yet.
    let mut todo: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut skipped = 0;
    for video in videos {
        let pending: Vec<String> = questions
            .iter()
            .zip(&keys)
            .filter(|(_, key)| !log.as_ref().is_some_and(|l| l.is_done(&video, key)))
            .map(|(q, _)| q.clone())
            .collect();
        if pending.is_empty() {
            skipped += 1;
        } else {
            todo.push((video, pending));
        }
    }
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
            "nothing to do: all {skipped} videos are already recorded in {}",
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
    if todo.iter().all(|(v, _)| !v.exists()) {
        for (index, (video, questions)) in todo.iter().enumerate() {
            for question in 0..questions.len() {
                report.failed(
                    index,
                    question,
                    Failure::input(video.display().to_string(), "file not found"),
                );
            }
        }
        return Ok(report.finish(skipped));
    }
    if let Some(dir) = &args.thumbnails {
        std::fs::create_dir_all(dir).map_err(|e| Failure::io(dir, &e))?;
    }

    let analyzer = VideoAnalyzer::new(load_model(&args)?, options(&args));
    let report = RefCell::new(report);
    analyzer.analyze_many_with(
        todo,
        &mut |index, question, piece| {
            report.borrow_mut().piece(index, question, piece);
            ControlFlow::Continue(())
        },
        &mut |item| report.borrow_mut().finished(item),
    );
    Ok(report.into_inner().finish(skipped))
}

fn options(args: &AnalyzeArgs) -> AnalyzerOptions {
    AnalyzerOptions {
        frames: args.frames as usize,
        questions: questions(args),
        params: GenerationParams {
            max_new_tokens: args.max_new_tokens as usize,
            temperature: args.temperature,
            seed: args.seed,
            ..GenerationParams::default()
        },
        // Without --thumbnails no thumbnail is written, so none is chosen.
        thumbnail: args
            .thumbnails
            .as_ref()
            .map(|_| frame_sampler::ThumbnailOptions::default()),
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
    let mut options = LoadOptions::new(&device, dtype)
        .quantize(args.quantize)
        .quantize_vision(args.quantize_vision);
    options.kv_cache_dtype = args.kv_cache_dtype;
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
    /// Each video and the questions asked about it in this run.
    jobs: Vec<(PathBuf, Vec<String>)>,
    /// Whether several questions are asked: each answer is then headed by its question, and
    /// `--json` prints an array.
    several: bool,
    /// `--json` with several questions: the records, printed together at the end.
    documents: Vec<serde_json::Value>,
    log: Option<JsonlLog>,
    thumbnails: Option<PathBuf>,
    /// The model as given to `--model` and the frame count: with a question, a record's key.
    model: String,
    frames: u64,
    /// The answer so far being generated (for the bar), and whether any of it was printed.
    current: String,
    streamed: bool,
    /// The (video, question) whose answer is being printed, and the video whose header was.
    answering: Option<(usize, usize)>,
    header: Option<usize>,
    /// The last video whose failure was said (an undecodable video fails each of its
    /// questions with the same error, said once).
    said: Option<(usize, String)>,
    analyzed: usize,
    input_failures: usize,
    other_failures: usize,
    /// A failure that ends the batch (the log cannot be written).
    fatal: Option<Failure>,
}

impl Report {
    fn new(args: &AnalyzeArgs, jobs: Vec<(PathBuf, Vec<String>)>, log: Option<JsonlLog>) -> Self {
        let several = questions(args).len() > 1;
        let answers: usize = jobs.iter().map(|(_, q)| q.len()).sum();
        let output = if args.json {
            Output::Json
        } else if jobs.len() > 1
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal()
        {
            let bar = ProgressBar::new(answers as u64);
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
                headers: jobs.len() > 1,
            }
        };
        Self {
            output,
            jobs,
            several,
            documents: Vec::new(),
            log,
            thumbnails: args.thumbnails.clone(),
            model: args.model.clone(),
            frames: u64::from(args.frames),
            current: String::new(),
            streamed: false,
            answering: None,
            header: None,
            said: None,
            analyzed: 0,
            input_failures: 0,
            other_failures: 0,
            fatal: None,
        }
    }

    fn key(&self, index: usize, question: usize) -> RunKey {
        RunKey {
            question: self.jobs[index].1[question].clone(),
            model: self.model.clone(),
            frames: self.frames,
        }
    }

    /// Prints the video's header and the question before an answer's first piece.
    fn begin_answer(&mut self, index: usize, question: usize) {
        let Output::Stream { headers } = self.output else {
            return;
        };
        if self.answering == Some((index, question)) {
            return;
        }
        self.answering = Some((index, question));
        let mut out = std::io::stdout().lock();
        if headers && self.header != Some(index) {
            let _ = writeln!(out, "==> {} <==", self.jobs[index].0.display());
            self.header = Some(index);
        }
        if self.several {
            let _ = writeln!(out, "Q: {}", self.jobs[index].1[question]);
        }
    }

    fn piece(&mut self, index: usize, question: usize, piece: &str) {
        match &self.output {
            Output::Json => {}
            Output::Stream { .. } => {
                self.begin_answer(index, question);
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
                self.streamed = true;
            }
            Output::Bar(bar) => {
                self.current.push_str(piece);
                bar.set_message(format!(
                    "{}: {}",
                    image_files::stem(&self.jobs[index].0),
                    tail(&self.current, 80)
                ));
            }
        }
    }

    fn finished(&mut self, item: BatchItem) -> ControlFlow<()> {
        let video = self.jobs[item.index].0.clone();
        let outcome = item
            .result
            .map_err(|e| Failure::from_model(video.display().to_string(), &e))
            .and_then(|analysis| {
                self.save_thumbnail(&video, &analysis, item.question == 0)
                    .map(|t| (analysis, t))
            });
        match outcome {
            Ok((analysis, thumbnail)) => {
                self.succeeded(item.index, item.question, &analysis, thumbnail.as_deref())
            }
            Err(failure) => self.failed(item.index, item.question, failure),
        }
        self.current.clear();
        self.streamed = false;
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

    /// Writes the thumbnail with the video's first answer and names it in every record.
    fn save_thumbnail(
        &self,
        video: &Path,
        analysis: &Analysis,
        first: bool,
    ) -> Result<Option<PathBuf>, Failure> {
        let (Some(dir), Some(thumbnail)) = (&self.thumbnails, &analysis.thumbnail) else {
            return Ok(None);
        };
        let ext = match thumbnail.format {
            frame_sampler::ImageFormat::Jpeg => "jpg",
            frame_sampler::ImageFormat::Png => "png",
            frame_sampler::ImageFormat::WebP => "webp",
        };
        let path = dir.join(format!("{}.{ext}", image_files::stem(video)));
        if first {
            image_files::write_bytes(&path, &thumbnail.data)?;
        }
        Ok(Some(path))
    }

    /// Prints (or keeps) `record` as `--json` asks: one document, or an array of them.
    fn document<T: serde::Serialize>(&mut self, record: &T) {
        if self.several {
            self.documents
                .push(serde_json::to_value(record).expect("plain data serializes"));
        } else {
            let json = serde_json::to_string_pretty(record).expect("plain data serializes");
            let _ = writeln!(std::io::stdout(), "{json}");
        }
    }

    fn succeeded(
        &mut self,
        index: usize,
        question: usize,
        analysis: &Analysis,
        thumbnail: Option<&Path>,
    ) {
        self.analyzed += 1;
        let key = self.key(index, question);
        let video = self.jobs[index].0.clone();
        let record = AnalysisRecord::new(&video, analysis, &key, thumbnail);
        match &self.output {
            Output::Json => {}
            Output::Stream { headers } => {
                let gap = *headers || self.several;
                // An empty answer printed nothing yet: its headers come now.
                self.begin_answer(index, question);
                let mut out = std::io::stdout().lock();
                // The streamed answer ends without a newline; a blank line separates answers.
                let _ = writeln!(out);
                if gap {
                    let _ = writeln!(out);
                }
            }
            Output::Bar(bar) => bar.suspend(|| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "==> {} <==", video.display());
                if self.several {
                    let _ = writeln!(out, "Q: {}", analysis.question);
                }
                let _ = writeln!(out, "{}\n", analysis.answer.trim());
            }),
        }
        if matches!(self.output, Output::Json) {
            self.document(&record);
        }
        if let Some(log) = &mut self.log {
            if let Err(failure) = log.append(&record) {
                self.fatal = Some(failure);
            }
        }
    }

    fn failed(&mut self, index: usize, question: usize, failure: Failure) {
        match failure.kind {
            FailureKind::Input => self.input_failures += 1,
            FailureKind::Internal => self.other_failures += 1,
        }
        let key = self.key(index, question);
        let record = ErrorRecord::new(&self.jobs[index].0, &failure, &key);
        let message = failure.to_string();
        let repeated = self.said.as_ref() == Some(&(index, message.clone()));
        self.said = Some((index, message));
        let say = || {
            if !repeated {
                eprintln!("error: {failure}");
            }
        };
        match &self.output {
            Output::Bar(bar) => bar.suspend(say),
            Output::Json => say(),
            Output::Stream { .. } => {
                // A half-streamed answer is ended before the error line.
                if self.streamed {
                    let _ = writeln!(std::io::stdout());
                }
                say();
            }
        }
        if matches!(self.output, Output::Json) {
            self.document(&record);
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
        if matches!(self.output, Output::Json) && self.several {
            let json =
                serde_json::to_string_pretty(&self.documents).expect("plain data serializes");
            let _ = writeln!(std::io::stdout(), "{json}");
        }
        let failed = self.input_failures + self.other_failures;
        if self.several {
            let answers: usize = self.jobs.iter().map(|(_, q)| q.len()).sum();
            eprintln!(
                "{} of {answers} answers given about {} videos, {failed} failed, {skipped} videos \
                 skipped (already recorded)",
                self.analyzed,
                self.jobs.len(),
            );
        } else if self.jobs.len() > 1 || skipped > 0 {
            eprintln!(
                "{} of {} videos analyzed, {failed} failed, {skipped} skipped (already recorded)",
                self.analyzed,
                self.jobs.len() + skipped
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
