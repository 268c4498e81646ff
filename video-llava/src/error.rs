use std::path::PathBuf;

/// Everything that can go wrong loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required file is missing from the model directory.
    #[error("{}: missing {what}", dir.display())]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// Which file (and, where useful, how to get it).
        what: String,
    },
    /// `config.json` is unreadable, has unknown or contradictory values.
    #[error("{}: invalid config: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weights file is unreadable, truncated, or a tensor is missing or mis-shaped.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        reason: String,
    },
    /// Only pickled `.bin` weights were found.
    #[error("{}: only PyTorch pickle weights (.bin) found; this engine loads safetensors only. Convert them with: python -c \"from transformers import VideoLlavaForConditionalGeneration as M; M.from_pretrained('{0}').save_pretrained('{0}-safetensors', safe_serialization=True)\"", dir.display())]
    PickleOnly {
        /// The model directory.
        dir: PathBuf,
    },
    /// The tokenizer failed to load or encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A request is invalid (empty prompt, wrong placeholder count, bad tensor shape, bad parameter).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The prompt (with placeholders expanded) does not fit the model's context.
    #[error("prompt too long: {tokens} tokens plus {max_new_tokens} new tokens exceed the context of {context} tokens")]
    PromptTooLong {
        /// Prompt tokens after placeholder expansion.
        tokens: usize,
        /// Tokens asked for.
        max_new_tokens: usize,
        /// The model's maximum position embeddings.
        context: usize,
    },
    /// A batch's KV caches would not fit the memory allowed for them.
    #[error("the batch's KV caches need {needed} bytes, over the limit of {limit} bytes: run fewer or shorter requests at once")]
    KvMemory {
        /// Bytes the batch's caches would take.
        needed: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// Downloading from the hub failed.
    #[error("download {repo}: {reason}")]
    Download {
        /// The repo id.
        repo: String,
        /// What went wrong.
        reason: String,
    },
    /// The device or dtype is not available in this build.
    #[error("device: {0}")]
    Device(String),
    /// Frame sampling failed (feature `video`).
    #[cfg(feature = "video")]
    #[error(transparent)]
    Video(#[from] frame_sampler::Error),
    /// An image could not be decoded.
    #[error("image: {0}")]
    Image(String),
    /// A tensor operation failed inside the model.
    #[error("compute: {0}")]
    Compute(#[from] candle_core::Error),
    /// An I/O error with the path it happened on.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`), for reporting a
/// caught panic as an error: the CLI, the bindings and the stream thread use this one.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

impl Error {
    /// An error of the same kind with the same message, for handing an error out twice (the
    /// engine's and the OS's errors are not `Clone`; they keep their kind and text).
    pub fn echo(&self) -> Error {
        use Error as E;
        match self {
            E::MissingFile { dir, what } => E::MissingFile {
                dir: dir.clone(),
                what: what.clone(),
            },
            E::Config { path, reason } => E::Config {
                path: path.clone(),
                reason: reason.clone(),
            },
            E::Weights { path, reason } => E::Weights {
                path: path.clone(),
                reason: reason.clone(),
            },
            E::PickleOnly { dir } => E::PickleOnly { dir: dir.clone() },
            E::Tokenizer(m) => E::Tokenizer(m.clone()),
            E::InvalidRequest(m) => E::InvalidRequest(m.clone()),
            E::PromptTooLong {
                tokens,
                max_new_tokens,
                context,
            } => E::PromptTooLong {
                tokens: *tokens,
                max_new_tokens: *max_new_tokens,
                context: *context,
            },
            E::KvMemory { needed, limit } => E::KvMemory {
                needed: *needed,
                limit: *limit,
            },
            E::Download { repo, reason } => E::Download {
                repo: repo.clone(),
                reason: reason.clone(),
            },
            E::Device(m) => E::Device(m.clone()),
            #[cfg(feature = "video")]
            E::Video(e) => E::Video(e.clone()),
            E::Image(m) => E::Image(m.clone()),
            E::Compute(e) => E::Compute(candle_core::Error::Msg(e.to_string())),
            E::Io { path, source } => E::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}

/// What an [`Error`] is about, coarser than its variants: the one table the front ends map from
/// (Python's exception classes, Node's `code`s, the CLI's exit status, the server's HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A video, image or model file does not exist.
    NotFound,
    /// A video could not be opened, demuxed or decoded.
    VideoDecode,
    /// The container holds no video stream.
    NoVideoStream,
    /// An image could not be decoded.
    ImageDecode,
    /// An image (a thumbnail) could not be encoded.
    ImageEncode,
    /// A request or argument is invalid.
    InvalidRequest,
    /// The prompt does not fit the model's context.
    PromptTooLong,
    /// The decoded frames would exceed a memory or size limit, or the input is larger than the
    /// sampler's `max_input_bytes`.
    TooLarge,
    /// Decoding a video ran past its time budget (the sampler's `call_timeout`).
    Timeout,
    /// A required model file (or the model directory) is missing.
    ModelNotFound,
    /// A checkpoint's config or weights are invalid, or only pickle weights are there.
    ModelLoad,
    /// The tokenizer failed to load or encode.
    Tokenizer,
    /// Downloading a checkpoint failed.
    Download,
    /// The device or dtype is not available.
    Device,
    /// A tensor operation failed inside the model.
    Generation,
    /// Any other I/O error.
    Io,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether the caller's input caused it (a bad video, request, prompt, model directory or
    /// device choice) rather than the machine or the network: exit status 2 in the CLI, a 4xx
    /// on the server.
    pub fn is_input(self) -> bool {
        use ErrorKind as K;
        matches!(
            self,
            K::NotFound
                | K::VideoDecode
                | K::NoVideoStream
                | K::ImageDecode
                | K::InvalidRequest
                | K::PromptTooLong
                | K::TooLarge
                | K::Timeout
                | K::ModelNotFound
                | K::ModelLoad
                | K::Tokenizer
                | K::Device
        )
    }

    /// A stable snake_case name (`"not_found"`, `"video_decode"`, ...), for JSON records and
    /// API error codes.
    pub fn as_str(self) -> &'static str {
        use ErrorKind as K;
        match self {
            K::NotFound => "not_found",
            K::VideoDecode => "video_decode",
            K::NoVideoStream => "no_video_stream",
            K::ImageDecode => "image_decode",
            K::ImageEncode => "image_encode",
            K::InvalidRequest => "invalid_request",
            K::PromptTooLong => "prompt_too_long",
            K::TooLarge => "too_large",
            K::Timeout => "timeout",
            K::ModelNotFound => "model_not_found",
            K::ModelLoad => "model_load",
            K::Tokenizer => "tokenizer",
            K::Download => "download",
            K::Device => "device",
            K::Generation => "generation",
            K::Io => "io",
            K::Other => "other",
        }
    }

    /// The kind of a frame-sampler error (feature `video`).
    #[cfg(feature = "video")]
    pub fn of_video(e: &frame_sampler::Error) -> Self {
        use frame_sampler::Error as V;
        match e {
            V::NotFound { .. } => Self::NotFound,
            V::Open { .. } | V::Decode { .. } => Self::VideoDecode,
            V::NoVideoStream { .. } => Self::NoVideoStream,
            V::InvalidRequest(_) => Self::InvalidRequest,
            V::TooLarge { .. } => Self::TooLarge,
            V::Limit { limit, .. } => match limit {
                frame_sampler::Limit::CallTimeout => Self::Timeout,
                frame_sampler::Limit::DecoderThreads => Self::InvalidRequest,
                _ => Self::TooLarge,
            },
            V::Encode { .. } => Self::ImageEncode,
            _ => Self::Other,
        }
    }
}

impl Error {
    /// This error's [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        use Error as E;
        use ErrorKind as K;
        match self {
            E::MissingFile { .. } => K::ModelNotFound,
            E::Config { .. } | E::Weights { .. } | E::PickleOnly { .. } => K::ModelLoad,
            E::Tokenizer(_) => K::Tokenizer,
            E::InvalidRequest(_) => K::InvalidRequest,
            E::PromptTooLong { .. } => K::PromptTooLong,
            E::KvMemory { .. } => K::TooLarge,
            E::Download { .. } => K::Download,
            E::Device(_) => K::Device,
            #[cfg(feature = "video")]
            E::Video(e) => K::of_video(e),
            E::Image(_) => K::ImageDecode,
            E::Compute(_) => K::Generation,
            E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => K::NotFound,
            E::Io { .. } => K::Io,
        }
    }

    /// Shorthand for `self.kind().is_input()`.
    pub fn is_input(&self) -> bool {
        self.kind().is_input()
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn kinds_say_whose_fault_an_error_is() {
        let cases: Vec<(Error, ErrorKind, bool)> = vec![
            (
                Error::MissingFile {
                    dir: "m".into(),
                    what: "config.json".into(),
                },
                ErrorKind::ModelNotFound,
                true,
            ),
            (
                Error::PickleOnly { dir: "m".into() },
                ErrorKind::ModelLoad,
                true,
            ),
            (
                Error::PromptTooLong {
                    tokens: 5000,
                    max_new_tokens: 1,
                    context: 4096,
                },
                ErrorKind::PromptTooLong,
                true,
            ),
            (
                Error::KvMemory {
                    needed: 10,
                    limit: 5,
                },
                ErrorKind::TooLarge,
                true,
            ),
            (
                Error::Download {
                    repo: "a/b".into(),
                    reason: "offline".into(),
                },
                ErrorKind::Download,
                false,
            ),
            (
                Error::Compute(candle_core::Error::Msg("x".into())),
                ErrorKind::Generation,
                false,
            ),
            (
                Error::Io {
                    path: "x".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                ErrorKind::NotFound,
                true,
            ),
            (
                Error::Io {
                    path: "x".into(),
                    source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                },
                ErrorKind::Io,
                false,
            ),
            (
                Error::Video(frame_sampler::Error::NoVideoStream {
                    source_name: "a.m4a".into(),
                }),
                ErrorKind::NoVideoStream,
                true,
            ),
            (
                Error::Video(frame_sampler::Error::Encode {
                    format: "jpeg".into(),
                    reason: "x".into(),
                }),
                ErrorKind::ImageEncode,
                false,
            ),
        ];
        let limit = |limit| {
            Error::Video(frame_sampler::Error::Limit {
                source_name: "a.mp4".into(),
                limit,
                reason: "x".into(),
            })
        };
        let cases = cases.into_iter().chain([
            (
                limit(frame_sampler::Limit::CallTimeout),
                ErrorKind::Timeout,
                true,
            ),
            (
                limit(frame_sampler::Limit::InputBytes),
                ErrorKind::TooLarge,
                true,
            ),
            (
                limit(frame_sampler::Limit::DecoderThreads),
                ErrorKind::InvalidRequest,
                true,
            ),
        ]);
        for (error, kind, input) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.is_input(), input, "{error}");
            assert_eq!(error.echo().kind(), kind, "an echo keeps the kind");
        }
        assert_eq!(ErrorKind::VideoDecode.as_str(), "video_decode");
    }
}
