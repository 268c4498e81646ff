/// Everything that can go wrong while probing, sampling or making thumbnails.
///
/// Every variant names the source (a path, or `<N bytes in memory>`).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file does not exist.
    #[error("{source_name}: file not found")]
    NotFound {
        /// The source.
        source_name: String,
    },
    /// The source could not be opened or read as a media container.
    #[error("{source_name}: cannot open: {reason}")]
    Open {
        /// The source.
        source_name: String,
        /// What FFmpeg or the OS said.
        reason: String,
    },
    /// The container holds no video stream (an audio-only file, for instance).
    #[error("{source_name}: no video stream")]
    NoVideoStream {
        /// The source.
        source_name: String,
    },
    /// Decoding failed.
    #[error("{source_name}: decode failed{}: {reason}", frame.map(|f| format!(" at frame {f}")).unwrap_or_default())]
    Decode {
        /// The source.
        source_name: String,
        /// The frame index being decoded, when known.
        frame: Option<u64>,
        /// What FFmpeg said.
        reason: String,
    },
    /// The request itself is invalid (zero frames, negative timestamps, index past the end, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The decoded frames would exceed the memory budget or the frame size limit.
    #[error("{source_name}: too large: {reason}")]
    TooLarge {
        /// The source.
        source_name: String,
        /// What is too large and by how much.
        reason: String,
    },
    /// One of the video's [`crate::Limits`] refused the input or stopped the call: an input
    /// over `max_input_bytes`, a call past `call_timeout`, more decoder threads than
    /// `max_decoder_threads`.
    #[error("{source_name}: {limit} limit exceeded: {reason}")]
    Limit {
        /// The source.
        source_name: String,
        /// Which limit.
        limit: crate::Limit,
        /// The limit's value and what went past it.
        reason: String,
    },
    /// Encoding a thumbnail failed.
    #[error("encoding {format} failed: {reason}")]
    Encode {
        /// The image format.
        format: String,
        /// What the encoder said.
        reason: String,
    },
}

impl Error {
    /// Whether the caller's input caused this (a missing, unreadable, corrupt or oversized video,
    /// a bad request) rather than the machine (an encoder failure). Every front end uses this
    /// one classification: the CLI's exit status 2, the server's HTTP 4xx.
    pub fn is_input(&self) -> bool {
        match self {
            Error::NotFound { .. }
            | Error::Open { .. }
            | Error::NoVideoStream { .. }
            | Error::Decode { .. }
            | Error::InvalidRequest(_)
            | Error::TooLarge { .. }
            | Error::Limit { .. } => true,
            Error::Encode { .. } => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
