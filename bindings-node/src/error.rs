//! Engine errors as JavaScript `Error`s with a stable `.code`.
//!
//! The engine's errors cross a thread boundary (they are made on the libuv pool or an engine
//! thread) while JavaScript objects may only be made on the main thread, so they travel as a plain
//! [`JsFailure`] and become a JS `Error` in [`JsFailure::into_napi`], on the main thread.

use std::any::Any;
use std::io;

use napi::bindgen_prelude::{JsObjectValue, JsValue};
use napi::{Env, Status};
use video_llava::ErrorKind;

/// The `.code` of an aborted call, as Node's own `AbortError` has it.
pub const ABORT_ERR: &str = "ABORT_ERR";

/// An error on its way to JavaScript: a stable code, a message and a few facts as extra properties.
#[derive(Debug)]
pub struct JsFailure {
    /// The JS `Error`'s `.code`.
    pub code: &'static str,
    /// The JS `Error`'s `.message`.
    pub message: String,
    /// The JS `Error`'s `.name` (`Error` unless set).
    pub name: &'static str,
    /// Extra properties copied onto the error (`path`, `frame`, `tokens`, ...).
    pub props: Vec<(&'static str, Prop)>,
}

/// The value of an extra error property.
#[derive(Debug)]
pub enum Prop {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
}

impl JsFailure {
    /// A failure with a code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            name: "Error",
            props: Vec::new(),
        }
    }

    /// An `ERR_INVALID_ARGUMENT` failure: the call's arguments or options are wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::of_kind(ErrorKind::InvalidRequest, message.into())
    }

    /// The rejection of a call whose `AbortSignal` fired: `name` `AbortError`, code `ABORT_ERR`.
    pub fn aborted() -> Self {
        Self {
            name: "AbortError",
            ..Self::new(ABORT_ERR, "The operation was aborted")
        }
    }

    /// A panic caught before it could unwind into Node (which would abort the process).
    pub fn panic(payload: Box<dyn Any + Send>) -> Self {
        let what = video_llava::panic_message(&*payload);
        Self::new(
            "ERR_INTERNAL",
            format!("internal error (a bug, please report it): {what}"),
        )
    }

    fn with(mut self, key: &'static str, value: Prop) -> Self {
        self.props.push((key, value));
        self
    }

    fn with_str(self, key: &'static str, value: impl Into<String>) -> Self {
        self.with(key, Prop::Str(value.into()))
    }

    fn with_num(self, key: &'static str, value: f64) -> Self {
        self.with(key, Prop::Num(value))
    }

    /// Builds the JS `Error` (main thread only) and wraps it so napi rejects or throws it verbatim.
    pub fn into_napi(self, env: &Env) -> napi::Error {
        match self.build(env) {
            Ok(err) => err,
            // Building an object fails only while the environment tears down; a plain error is all
            // that can be had then.
            Err(_) => napi::Error::new(
                Status::GenericFailure,
                format!("{}: {}", self.code, self.message),
            ),
        }
    }

    fn build(&self, env: &Env) -> napi::Result<napi::Error> {
        let mut obj = env.create_error(napi::Error::new(
            Status::GenericFailure,
            self.message.clone(),
        ))?;
        obj.set_named_property("code", self.code)?;
        if self.name != "Error" {
            obj.set_named_property("name", self.name)?;
        }
        for (key, value) in &self.props {
            match value {
                Prop::Str(s) => obj.set_named_property(key, s.as_str())?,
                Prop::Num(n) => obj.set_named_property(key, *n)?,
            }
        }
        Ok(napi::Error::from(obj.to_unknown()))
    }
}

/// Node's errno-style code for an I/O error kind, so `ENOENT` reads as it does from `fs`.
fn io_code(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::NotFound => "ENOENT",
        io::ErrorKind::PermissionDenied => "EACCES",
        io::ErrorKind::IsADirectory => "EISDIR",
        io::ErrorKind::NotADirectory => "ENOTDIR",
        _ => "ERR_IO",
    }
}

/// The `.code` for each of the engine's error kinds: the one table Node reads. The kind is the
/// core's ([`video_llava::Error::kind`]), so the CLI's `error_kind`, the server's error codes,
/// Python's exception classes and this `.code` always agree on what failed.
fn code_of(kind: ErrorKind) -> &'static str {
    use ErrorKind as K;
    match kind {
        K::NotFound => "ENOENT",
        K::VideoDecode => "ERR_VIDEO_DECODE",
        K::NoVideoStream => "ERR_NO_VIDEO_STREAM",
        K::ImageDecode => "ERR_IMAGE_DECODE",
        K::ImageEncode => "ERR_IMAGE_ENCODE",
        K::InvalidRequest => "ERR_INVALID_ARGUMENT",
        K::PromptTooLong => "ERR_PROMPT_TOO_LONG",
        K::TooLarge => "ERR_TOO_LARGE",
        K::Timeout => "ERR_VIDEO_TIMEOUT",
        K::ModelNotFound | K::ModelLoad => "ERR_MODEL_LOAD",
        K::Tokenizer => "ERR_TOKENIZER",
        K::Download => "ERR_DOWNLOAD",
        K::Device => "ERR_DEVICE",
        K::Generation => "ERR_COMPUTE",
        K::Io => "ERR_IO",
        // `Other`, and kinds a newer core adds (the enum is non-exhaustive).
        _ => "ERR_VIDEO_LLAVA",
    }
}

impl JsFailure {
    /// A failure of the engine's kind `kind`: `.code` from [`code_of`], `.kind` the core's name.
    /// A request the core refused names the option in snake_case; JS spells it in camelCase.
    fn of_kind(kind: ErrorKind, message: String) -> Self {
        let message = match kind {
            ErrorKind::InvalidRequest | ErrorKind::PromptTooLong => {
                crate::args::camel_case_fields(&message)
            }
            _ => message,
        };
        Self::new(code_of(kind), message).with_str("kind", kind.as_str())
    }
}

impl From<frame_sampler::Error> for JsFailure {
    fn from(err: frame_sampler::Error) -> Self {
        use frame_sampler::Error as E;
        let kind = ErrorKind::of_video(&err);
        let failure = Self::of_kind(kind, err.to_string());
        // The facts the error carries become properties; the code is the kind's.
        match err {
            E::NotFound { source_name } => failure.with_str("path", source_name),
            // A file FFmpeg cannot open at all is told apart from one that fails mid-decode
            // (documented as its own code); both are the core's `VideoDecode`.
            E::Open { source_name, .. } => JsFailure {
                code: "ERR_VIDEO_OPEN",
                ..failure
            }
            .with_str("source", source_name),
            E::NoVideoStream { source_name } | E::TooLarge { source_name, .. } => {
                failure.with_str("source", source_name)
            }
            // The limit is named as `Video.open`'s options spell it.
            E::Limit {
                source_name, limit, ..
            } => JsFailure {
                message: crate::args::camel_case_fields(&failure.message),
                ..failure
            }
            .with_str("source", source_name)
            .with_str("limit", crate::args::camel_case_fields(limit.as_str())),
            E::Decode {
                source_name, frame, ..
            } => {
                let failure = failure.with_str("source", source_name);
                match frame {
                    Some(f) => failure.with_num("frame", f as f64),
                    None => failure,
                }
            }
            _ => failure,
        }
    }
}

impl From<video_llava::Error> for JsFailure {
    fn from(err: video_llava::Error) -> Self {
        use video_llava::Error as E;
        let kind = err.kind();
        let message = err.to_string();
        match err {
            E::Video(inner) => Self::from(inner),
            E::MissingFile { dir, .. } | E::PickleOnly { dir } => {
                Self::of_kind(kind, message).with_str("path", dir.display().to_string())
            }
            E::Config { path, .. } | E::Weights { path, .. } => {
                Self::of_kind(kind, message).with_str("path", path.display().to_string())
            }
            E::PromptTooLong {
                tokens,
                max_new_tokens,
                context,
            } => Self::of_kind(kind, message)
                .with_num("tokens", tokens as f64)
                .with_num("maxNewTokens", max_new_tokens as f64)
                .with_num("context", context as f64),
            E::KvMemory { needed, limit } => Self::of_kind(kind, message)
                .with_num("needed", needed as f64)
                .with_num("limit", limit as f64),
            E::Download { repo, .. } => Self::of_kind(kind, message).with_str("repo", repo),
            E::Io { path, source } => {
                let failure =
                    Self::of_kind(kind, message).with_str("path", path.display().to_string());
                // Errno-style codes for the I/O kinds `fs` users know; the kind stays the core's.
                JsFailure {
                    code: io_code(source.kind()),
                    ..failure
                }
            }
            _ => Self::of_kind(kind, message),
        }
    }
}

/// Runs `f`, turning a panic into an `ERR_INTERNAL` failure instead of unwinding into Node.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, JsFailure>) -> Result<T, JsFailure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(JsFailure::panic(p)))
}
