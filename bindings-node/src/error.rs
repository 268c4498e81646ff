//! Engine errors as JavaScript `Error`s with a stable `.code`.
//!
//! The engine's errors cross a thread boundary (they are made on the libuv pool or an engine
//! thread) while JavaScript objects may only be made on the main thread, so they travel as a plain
//! [`JsFailure`] and become a JS `Error` in [`JsFailure::into_napi`], on the main thread.

use std::any::Any;
use std::io;

use napi::bindgen_prelude::{JsObjectValue, JsValue};
use napi::{Env, Status};

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
        Self::new("ERR_INVALID_ARGUMENT", message)
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
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
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

impl From<frame_sampler::Error> for JsFailure {
    fn from(err: frame_sampler::Error) -> Self {
        use frame_sampler::Error as E;
        let message = err.to_string();
        match err {
            E::NotFound { source_name } => {
                Self::new("ENOENT", message).with_str("path", source_name)
            }
            E::Open { source_name, .. } => {
                Self::new("ERR_VIDEO_OPEN", message).with_str("source", source_name)
            }
            E::NoVideoStream { source_name } => {
                Self::new("ERR_NO_VIDEO_STREAM", message).with_str("source", source_name)
            }
            E::Decode {
                source_name, frame, ..
            } => {
                let failure =
                    Self::new("ERR_VIDEO_DECODE", message).with_str("source", source_name);
                match frame {
                    Some(f) => failure.with_num("frame", f as f64),
                    None => failure,
                }
            }
            E::InvalidRequest(_) => Self::invalid(message),
            E::TooLarge { source_name, .. } => {
                Self::new("ERR_TOO_LARGE", message).with_str("source", source_name)
            }
            E::Encode { .. } => Self::new("ERR_IMAGE_ENCODE", message),
            _ => Self::new("ERR_VIDEO", message),
        }
    }
}

impl From<video_llava::Error> for JsFailure {
    fn from(err: video_llava::Error) -> Self {
        use video_llava::Error as E;
        let message = err.to_string();
        match err {
            E::MissingFile { dir, .. } | E::PickleOnly { dir } => {
                Self::new("ERR_MODEL_LOAD", message).with_str("path", dir.display().to_string())
            }
            E::Config { path, .. } | E::Weights { path, .. } => {
                Self::new("ERR_MODEL_LOAD", message).with_str("path", path.display().to_string())
            }
            E::Tokenizer(_) => Self::new("ERR_TOKENIZER", message),
            E::InvalidRequest(_) => Self::invalid(message),
            E::PromptTooLong {
                tokens,
                max_new_tokens,
                context,
            } => Self::new("ERR_PROMPT_TOO_LONG", message)
                .with_num("tokens", tokens as f64)
                .with_num("maxNewTokens", max_new_tokens as f64)
                .with_num("context", context as f64),
            E::KvMemory { needed, limit } => Self::new("ERR_TOO_LARGE", message)
                .with_num("needed", needed as f64)
                .with_num("limit", limit as f64),
            E::Download { repo, .. } => Self::new("ERR_DOWNLOAD", message).with_str("repo", repo),
            E::Device(_) => Self::new("ERR_DEVICE", message),
            E::Video(inner) => Self::from(inner),
            E::Image(_) => Self::new("ERR_IMAGE_DECODE", message),
            E::Compute(_) => Self::new("ERR_COMPUTE", message),
            E::Io { path, source } => Self::new(io_code(source.kind()), message)
                .with_str("path", path.display().to_string()),
            _ => Self::new("ERR_VIDEO_LLAVA", message),
        }
    }
}

/// Runs `f`, turning a panic into an `ERR_INTERNAL` failure instead of unwinding into Node.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, JsFailure>) -> Result<T, JsFailure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(JsFailure::panic(p)))
}
