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

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
