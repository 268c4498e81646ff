//! Generation options from JavaScript -> the engine's [`Request`] and [`GenerationParams`].

use napi::bindgen_prelude::{Either, Either3, Uint8Array, Unknown};
use napi_derive::napi;
use video_llava::{CancelToken, GenerationParams, ImageInput, Request, VideoInput};

use crate::args;
use crate::cancel::{AbortListener, Signal};
use crate::error::JsFailure;
use crate::frames::SampleFramesOptions;
use crate::on_token::{OnTokenFn, PieceSink};
use crate::source::to_source;

/// Decoded RGB frames, as `sampleFrames` returns them (a `FrameBatch` can be passed as is).
#[napi(object, object_to_js = false)]
pub struct VideoFrames {
    /// `count * height * width * 3` RGB bytes, frame-major.
    pub frames: Uint8Array,
    /// Frame width.
    pub width: f64,
    /// Frame height.
    pub height: f64,
    /// Frame count.
    pub count: f64,
}

/// Decoded RGB pixels of one image.
#[napi(object, object_to_js = false)]
pub struct RgbImage {
    /// `height * width * 3` RGB bytes, rows top to bottom.
    pub data: Uint8Array,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// An earlier turn of the conversation.
#[napi(object)]
pub struct Turn {
    /// What the user asked.
    pub question: String,
    /// What the model answered.
    pub answer: String,
}

/// A video: a path, the file's bytes, or frames already decoded.
type JsVideo = Either3<String, Uint8Array, VideoFrames>;
/// An image: a path, an encoded file's bytes (JPEG, PNG, WebP, ...), or RGB pixels.
type JsImage = Either3<String, Uint8Array, RgbImage>;

/// What to ask and how to generate the answer.
#[napi(object, object_to_js = false)]
pub struct GenerateOptions {
    /// The question. `<video>` / `<image>` placeholders are added unless the text has them.
    pub prompt: String,
    /// Earlier turns, oldest first; the video and images belong to the first turn.
    pub history: Option<Vec<Turn>>,
    /// The video: a path, a `Buffer`/`Uint8Array` holding the file, or decoded frames.
    #[napi(ts_type = "string | Buffer | Uint8Array | VideoFrames")]
    pub video: Option<JsVideo>,
    /// How to sample `video` when it is a file (default: 8 frames, uniform, exact).
    pub video_options: Option<SampleFramesOptions>,
    /// One image: a path, an encoded file in a `Buffer`/`Uint8Array`, or RGB pixels.
    #[napi(ts_type = "string | Buffer | Uint8Array | RgbImage")]
    pub image: Option<JsImage>,
    /// Several images, in prompt order (after `image`, if both are given).
    #[napi(ts_type = "Array<string | Buffer | Uint8Array | RgbImage>")]
    pub images: Option<Vec<JsImage>>,
    /// The most tokens to generate (default 256).
    pub max_new_tokens: Option<f64>,
    /// 0 = greedy (default).
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold in (0, 1] (default 1 = off).
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens (default off).
    pub top_k: Option<f64>,
    /// > 1 penalizes tokens already seen (default 1 = off).
    pub repetition_penalty: Option<f64>,
    /// Seed for sampling (default: from entropy).
    pub seed: Option<f64>,
    /// Stop when the output ends with this string or any of these strings (not returned).
    #[napi(ts_type = "string | string[]")]
    pub stop: Option<Either<String, Vec<String>>>,
    /// Aborting it stops the generation; the promise rejects with an `AbortError`.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Signal>,
    /// Receives each decoded text piece as soon as it is whole (`generate` only: `stream`
    /// yields the pieces itself). All pieces have arrived when the promise settles; if it
    /// throws, the generation stops and the promise rejects with what it threw.
    #[napi(ts_type = "(piece: string) => void")]
    pub on_token: Option<OnTokenFn>,
}

/// What a conversation is about: `generate`'s media and earlier turns, without a prompt.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct ConversationOptions {
    /// Earlier turns, oldest first; the video and images belong to the first turn.
    pub history: Option<Vec<Turn>>,
    /// The video: a path, a `Buffer`/`Uint8Array` holding the file, or decoded frames.
    #[napi(ts_type = "string | Buffer | Uint8Array | VideoFrames")]
    pub video: Option<JsVideo>,
    /// How to sample `video` when it is a file (default: 8 frames, uniform, exact).
    pub video_options: Option<SampleFramesOptions>,
    /// One image: a path, an encoded file in a `Buffer`/`Uint8Array`, or RGB pixels.
    #[napi(ts_type = "string | Buffer | Uint8Array | RgbImage")]
    pub image: Option<JsImage>,
    /// Several images, in prompt order (after `image`, if both are given).
    #[napi(ts_type = "Array<string | Buffer | Uint8Array | RgbImage>")]
    pub images: Option<Vec<JsImage>>,
}

impl ConversationOptions {
    /// The engine's request for [`video_llava::VideoLlava::conversation`] (no question).
    pub fn into_request(self) -> Result<Request, JsFailure> {
        let prepared = prepare(
            String::new(),
            self.history,
            self.video,
            self.video_options,
            self.image
                .into_iter()
                .chain(self.images.into_iter().flatten())
                .collect(),
            GenerationKnobs::default(),
        )?;
        Ok(prepared.request)
    }
}

/// A generation request ready to leave the main thread.
pub struct Prepared {
    /// What to answer.
    pub request: Request,
    /// How.
    pub params: GenerationParams,
}

/// A generation request with what ties it to JavaScript: the abort token and the token callback.
pub struct Call {
    /// The request, or why it is invalid (reported by the task, so the promise rejects).
    pub prepared: Result<Prepared, JsFailure>,
    /// Set when the caller's `AbortSignal` fires.
    pub cancel: CancelToken,
    /// The listener on that signal, to remove once the call has settled.
    pub listener: Option<AbortListener>,
    /// Where pieces go, if the caller passed `onToken`.
    pub sink: Option<PieceSink>,
}

impl Call {
    /// Converts the `options` argument of `generate` and `stream`.
    pub fn from_arg(options: Unknown<'_>) -> Self {
        match args::required::<GenerateOptions>("options", options) {
            Ok(options) => options.into_call(),
            Err(failure) => Call {
                prepared: Err(failure),
                cancel: CancelToken::new(),
                listener: None,
                sink: None,
            },
        }
    }
}

impl GenerateOptions {
    /// Splits the options into the engine's request and the JS-bound parts (main thread).
    pub fn into_call(self) -> Call {
        let (cancel, listener) = match self.signal {
            Some(signal) => signal.into_parts(),
            None => (CancelToken::new(), None),
        };
        let sink = self.on_token.map(PieceSink::new);
        let prepared = prepare(
            self.prompt,
            self.history,
            self.video,
            self.video_options,
            self.image
                .into_iter()
                .chain(self.images.into_iter().flatten())
                .collect(),
            GenerationKnobs {
                max_new_tokens: self.max_new_tokens,
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
                stop: self.stop,
            },
        );
        Call {
            prepared,
            cancel,
            listener,
            sink,
        }
    }
}

#[derive(Default)]
struct GenerationKnobs {
    max_new_tokens: Option<f64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<f64>,
    repetition_penalty: Option<f64>,
    seed: Option<f64>,
    stop: Option<Either<String, Vec<String>>>,
}

fn prepare(
    prompt: String,
    history: Option<Vec<Turn>>,
    video: Option<JsVideo>,
    video_options: Option<SampleFramesOptions>,
    images: Vec<JsImage>,
    knobs: GenerationKnobs,
) -> Result<Prepared, JsFailure> {
    let video = match video {
        None if video_options.is_some() => {
            return Err(JsFailure::invalid("videoOptions given without a video"));
        }
        None => None,
        Some(video) => Some(to_video(video, video_options)?),
    };
    let request = Request {
        question: prompt,
        history: history
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.question, t.answer))
            .collect(),
        video,
        images: images.into_iter().map(to_image).collect::<Result<_, _>>()?,
    };
    Ok(Prepared {
        request,
        params: to_params(knobs)?,
    })
}

fn to_video(video: JsVideo, options: Option<SampleFramesOptions>) -> Result<VideoInput, JsFailure> {
    match video {
        Either3::A(path) => source_video(Either::A(path), options),
        Either3::B(bytes) => source_video(Either::B(bytes), options),
        Either3::C(frames) => {
            if options.is_some() {
                return Err(JsFailure::invalid(
                    "videoOptions apply to a video file, not to decoded frames",
                ));
            }
            // The sizes are checked by the core (with checked arithmetic) when the frames are
            // preprocessed; a wrong one rejects with its message.
            let (count, height, width) = (
                args::whole_usize("count", frames.count)?,
                args::whole_usize("height", frames.height)?,
                args::whole_usize("width", frames.width)?,
            );
            Ok(VideoInput::Frames {
                data: frames.frames.to_vec(),
                count,
                height,
                width,
            })
        }
    }
}

fn source_video(
    source: Either<String, Uint8Array>,
    options: Option<SampleFramesOptions>,
) -> Result<VideoInput, JsFailure> {
    Ok(VideoInput::Source {
        source: to_source(&source),
        options: options.unwrap_or_default().to_sample_options()?,
    })
}

fn to_image(image: JsImage) -> Result<ImageInput, JsFailure> {
    Ok(match image {
        Either3::A(path) => ImageInput::Path(path.into()),
        Either3::B(bytes) => ImageInput::Encoded(bytes.to_vec()),
        Either3::C(rgb) => {
            // Checked by the core when the image is preprocessed.
            let (height, width) = (
                args::whole_usize("height", rgb.height)?,
                args::whole_usize("width", rgb.width)?,
            );
            ImageInput::Rgb {
                data: rgb.data.to_vec(),
                height,
                width,
            }
        }
    })
}

fn to_params(knobs: GenerationKnobs) -> Result<GenerationParams, JsFailure> {
    let defaults = GenerationParams::default();
    // Only what JS numbers need (a whole number to usize/u64) is converted here; the values are
    // checked by the core (`GenerationParams::validate`), its messages in camelCase.
    let max_new_tokens =
        args::opt_usize("maxNewTokens", knobs.max_new_tokens)?.unwrap_or(defaults.max_new_tokens);
    let temperature = knobs.temperature.unwrap_or(defaults.temperature);
    let top_p = knobs.top_p.unwrap_or(defaults.top_p);
    let top_k = args::opt_usize("topK", knobs.top_k)?;
    let repetition_penalty = knobs
        .repetition_penalty
        .map_or(defaults.repetition_penalty, |p| p as f32);
    let seed = knobs
        .seed
        .map(|s| args::whole("seed", s, args::MAX_SAFE_INTEGER))
        .transpose()?;
    let stop = match knobs.stop {
        None => Vec::new(),
        Some(Either::A(one)) => vec![one],
        Some(Either::B(many)) => many,
    };
    let params = GenerationParams {
        max_new_tokens,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        seed,
        stop,
    };
    params.validate().map_err(JsFailure::from)?;
    Ok(params)
}
