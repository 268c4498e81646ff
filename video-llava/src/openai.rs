//! OpenAI's chat completions protocol (`POST /v1/chat/completions`, vLLM's extensions), as
//! every front end that serves it speaks it: `video-llava serve` (axum) and the Ray Serve
//! application of the Python package.
//!
//! This module owns the protocol's logic: the request's shape ([`ChatRequest`]), turning its
//! messages into the engine's conversation ([`conversation`]), its sampling parameters
//! ([`ChatRequest::params`]), media URLs (`data:`, `file://` under an allowed directory, and
//! `http(s)://` when allowed, [`MediaPolicy`]), the errors with their HTTP status
//! ([`ChatError`]), and the response and stream chunk JSON. Front ends only move bytes.
//! [`ChatEndpoint`] runs a whole completion on the calling thread, for front ends without a
//! queue of their own.

use std::collections::VecDeque;
#[cfg(feature = "hub")]
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use frame_sampler::{SampleOptions, Source, Video};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    Error, ErrorKind, Generation, GenerationParams, ImageInput, Request, StopReason, TextStream,
    VideoInput, VideoLlava,
};

/// The request body. Fields OpenAI defines that do not apply here (`user`, `logprobs`,
/// penalties, ...) are accepted and ignored, as vLLM does.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// vLLM's extension.
    top_k: Option<usize>,
    /// vLLM's extension.
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: Url },
    VideoUrl { video_url: Url },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Url {
    Object { url: String },
    Bare(String),
}

impl Url {
    fn as_str(&self) -> &str {
        match self {
            Url::Object { url } | Url::Bare(url) => url,
        }
    }
}

/// An error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the
/// HTTP status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    /// The HTTP status.
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `not_found_error`, `server_error`, ...
    pub error_type: &'static str,
    /// A stable machine-readable code.
    pub code: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// What went wrong, for people.
    pub message: String,
}

impl ChatError {
    /// An error with no `param`.
    pub fn new(
        status: u16,
        error_type: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error_type,
            code: code.into(),
            param: None,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or asks for something impossible.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", "invalid_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found_error", "not_found", message)
    }

    /// 500 for a failure that is not the caller's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "server_error", "internal", message)
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Replaces the code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = code.to_string();
        self
    }

    /// The engine's classification decides: the caller's input is a 400 with the kind as its
    /// code, anything else a 500.
    pub fn from_error(e: &Error) -> Self {
        Self::classified(e.kind(), e.to_string())
    }

    /// As [`ChatError::from_error`], for frame-sampler's errors.
    pub fn from_video(e: &frame_sampler::Error) -> Self {
        Self::classified(ErrorKind::of_video(e), e.to_string())
    }

    fn classified(kind: ErrorKind, message: String) -> Self {
        if kind.is_input() {
            Self::new(400, "invalid_request_error", kind.as_str(), message)
        } else {
            Self::new(500, "server_error", kind.as_str(), message)
        }
    }

    /// A 404 for a request naming a model that is not the one served.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        Self::new(
            404,
            "not_found_error",
            "model_not_found",
            format!("the model {asked:?} is not served here; GET /v1/models lists {served:?}"),
        )
        .param("model")
    }

    /// 401: no API key, or the wrong one.
    pub fn unauthorized(given: bool) -> Self {
        let message = if given {
            "Incorrect API key provided"
        } else {
            "Missing API key: send `Authorization: Bearer <key>`"
        };
        Self::new(401, "authentication_error", "invalid_api_key", message)
    }

    /// 404 for a route that does not exist.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::not_found(format!("no route {method} {path}"))
    }

    /// 405 for a route that exists, asked with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            "this route does not take that method",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ChatError {}

/// A medium found in the messages, with the field that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// A `video_url` part (else an `image_url`).
    pub video: bool,
    /// The URL as sent.
    pub url: String,
    /// The request field, `messages[0].content[1].video_url`.
    pub param: String,
}

/// The conversation as the engine takes it, before its media are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConversation {
    /// The last user turn (system text opens the first user turn).
    pub question: String,
    /// Earlier `(user, assistant)` turns, oldest first.
    pub history: Vec<(String, String)>,
    /// The media, in prompt order.
    pub media: Vec<MediaRef>,
}

/// The engine's conversation from OpenAI's messages: system (and developer) text opens the first
/// user turn (Video-LLaVA's prompt has no system turn), consecutive user messages join, media
/// only in user messages, at most one video.
fn conversation(messages: &[Message]) -> Result<ChatConversation, ChatError> {
    let bad = |m: &str| ChatError::bad_request(m).param("messages");
    if messages.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let mut system = Vec::new();
    let mut history = Vec::new();
    let mut pending: Option<String> = None;
    let mut media = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let mut text = String::new();
        match &message.content {
            None => {}
            Some(Content::Text(t)) => text.push_str(t),
            Some(Content::Parts(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    let (video, url, field) = match part {
                        Part::Text { text: t } => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                            continue;
                        }
                        Part::ImageUrl { image_url } => (false, image_url, "image_url"),
                        Part::VideoUrl { video_url } => (true, video_url, "video_url"),
                    };
                    if message.role != "user" {
                        return Err(ChatError::bad_request(format!(
                            "only user messages may carry media, not {}",
                            message.role
                        ))
                        .param(format!("messages[{i}].content[{j}]")));
                    }
                    media.push(MediaRef {
                        video,
                        url: url.as_str().to_string(),
                        param: format!("messages[{i}].content[{j}].{field}"),
                    });
                }
            }
        }
        match message.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => {
                pending = Some(match pending.take() {
                    Some(before) => format!("{before}\n{text}"),
                    None => text,
                })
            }
            "assistant" => match pending.take() {
                Some(question) => history.push((question, text)),
                None => {
                    return Err(ChatError::bad_request(
                        "an assistant message must follow a user message",
                    )
                    .param(format!("messages[{i}]")))
                }
            },
            other => {
                return Err(ChatError::bad_request(format!(
                    "unsupported role {other:?}: use system, user or assistant"
                ))
                .param(format!("messages[{i}].role")))
            }
        }
    }
    let Some(mut question) = pending else {
        return Err(bad("the last message must be the user's"));
    };
    if media.iter().filter(|m| m.video).count() > 1 {
        return Err(bad("at most one video per request"));
    }
    let system = system.join("\n");
    if !system.trim().is_empty() {
        let first = history.first_mut().map(|(q, _)| q).unwrap_or(&mut question);
        *first = format!("{system}\n\n{first}");
    }
    Ok(ChatConversation {
        question,
        history,
        media,
    })
}

impl ChatRequest {
    /// Parses a JSON body; a body that is not JSON or not a chat request is a 400.
    pub fn from_json(body: &[u8]) -> Result<Self, ChatError> {
        serde_json::from_slice(body).map_err(|e| {
            ChatError::bad_request(format!("the body is not a chat completion request: {e}"))
        })
    }

    /// The `model` field, if sent.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// A 404 unless the request names no model or `served`.
    pub fn check_model(&self, served: &str) -> Result<(), ChatError> {
        match self.model() {
            Some(asked) if asked != served => Err(ChatError::model_not_found(asked, served)),
            _ => Ok(()),
        }
    }

    /// Whether the answer is streamed.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// Whether a stream ends with a usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// The messages as the engine's conversation.
    pub fn conversation(&self) -> Result<ChatConversation, ChatError> {
        conversation(&self.messages)
    }

    /// The sampling parameters, the request's over `defaults`, checked by the engine.
    pub fn params(&self, defaults: &GenerationParams) -> Result<GenerationParams, ChatError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ChatError::bad_request(format!("n must be 1, got {n}")).param("n"));
        }
        let max_new_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => defaults.max_new_tokens,
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        let params = GenerationParams {
            max_new_tokens,
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k: self.top_k.or(defaults.top_k),
            repetition_penalty: self
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
            seed: self.seed.or(defaults.seed),
            stop,
        };
        params.validate().map_err(|e| ChatError::from_error(&e))?;
        Ok(params)
    }
}

/// How a front end names the media settings in its errors (`--allowed-media-dir` for the
/// server's flags, `allowed_media_dir=` for a Python argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingNames {
    /// The allowed directory for `file://` URLs.
    pub allowed_dir: &'static str,
    /// The switch that allows `http(s)://` URLs.
    pub allow_remote: &'static str,
    /// The size limit.
    pub max_bytes: &'static str,
}

impl SettingNames {
    /// `video-llava serve`'s flags.
    pub const CLI: Self = Self {
        allowed_dir: "--allowed-media-dir",
        allow_remote: "--allow-remote-media",
        max_bytes: "--max-upload-mb",
    };
    /// Python keyword arguments.
    pub const PYTHON: Self = Self {
        allowed_dir: "allowed_media_dir=",
        allow_remote: "allow_remote_media=True",
        max_bytes: "max_media_mb=",
    };
}

/// Which media URLs are accepted: `data:` (base64) always, `file://` only under an allowed
/// directory (after resolving `..` and symbolic links), `http(s)://` only when allowed (and
/// built with feature `hub`).
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    allowed_dir: Option<PathBuf>,
    allow_remote: bool,
    timeout: Duration,
    max_bytes: u64,
    names: SettingNames,
}

/// Media bytes or a local file.
#[derive(Debug)]
pub enum Media {
    /// Inline or downloaded bytes.
    Bytes(Vec<u8>),
    /// A file under the allowed directory.
    Path(PathBuf),
}

impl MediaPolicy {
    /// The policy; the allowed directory must exist.
    pub fn new(
        allowed_dir: Option<&Path>,
        allow_remote: bool,
        timeout: Duration,
        max_bytes: u64,
        names: SettingNames,
    ) -> std::io::Result<Self> {
        let allowed_dir = allowed_dir.map(std::fs::canonicalize).transpose()?;
        Ok(Self {
            allowed_dir,
            allow_remote,
            timeout,
            max_bytes,
            names,
        })
    }

    /// The largest medium, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Resolves `url` (the request field `param`) to bytes or a permitted file; blocks while
    /// a remote medium downloads.
    pub fn fetch(&self, url: &str, param: &str) -> Result<Media, ChatError> {
        let bad = |m: String| ChatError::bad_request(m).param(param);
        if let Some(rest) = url.strip_prefix("data:") {
            let (meta, payload) = rest
                .split_once(',')
                .ok_or_else(|| bad("a data: URL needs a comma before its payload".into()))?;
            if !meta.ends_with(";base64") {
                return Err(bad("only base64 data: URLs are accepted".into()));
            }
            if payload.len() as u64 / 4 * 3 > self.max_bytes {
                return Err(self.too_large(param));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| bad(format!("the data: URL is not valid base64: {e}")))?;
            return Ok(Media::Bytes(bytes));
        }
        if let Some(rest) = url.strip_prefix("file://") {
            return self.local(rest, param).map(Media::Path);
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            if !self.allow_remote {
                return Err(bad(format!(
                    "http(s) media URLs are off; turn them on with {}, or send a data: URL",
                    self.names.allow_remote
                ))
                .with_code("remote_media_disabled"));
            }
            return self.download(url, param).map(Media::Bytes);
        }
        Err(bad(format!(
            "unsupported media URL {:?}: use data:, file:// or http(s)://",
            url.chars().take(40).collect::<String>()
        )))
    }

    /// A `file://` path, permitted only inside the allowed directory.
    fn local(&self, rest: &str, param: &str) -> Result<PathBuf, ChatError> {
        let forbidden = |m: String| {
            ChatError::bad_request(m)
                .param(param)
                .with_code("media_path_not_allowed")
        };
        let Some(allowed) = &self.allowed_dir else {
            return Err(forbidden(format!(
                "file:// media URLs are off; name a directory for them with {} DIR",
                self.names.allowed_dir
            )));
        };
        // file:///abs/path or file://localhost/abs/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        let path = percent_decode(path).ok_or_else(|| {
            ChatError::bad_request("the file:// URL has a bad %-escape").param(param)
        })?;
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(forbidden("a file:// URL must hold an absolute path".into()));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(forbidden("a file:// path must not contain `..`".into()));
        }
        // One answer for "missing" and "outside": the server does not tell which files exist.
        let refused = || {
            forbidden(format!(
                "{} is not a file under {}",
                path.display(),
                self.names.allowed_dir
            ))
        };
        let canonical = std::fs::canonicalize(&path).map_err(|_| refused())?;
        if !canonical.starts_with(allowed) || !canonical.is_file() {
            return Err(refused());
        }
        Ok(canonical)
    }

    fn too_large(&self, param: &str) -> ChatError {
        ChatError::new(
            413,
            "invalid_request_error",
            "media_too_large",
            format!(
                "the medium is over the limit of {} bytes ({})",
                self.max_bytes, self.names.max_bytes
            ),
        )
        .param(param)
    }

    #[cfg(feature = "hub")]
    fn download(&self, url: &str, param: &str) -> Result<Vec<u8>, ChatError> {
        let failed = |e: String| {
            ChatError::bad_request(format!("downloading the medium failed: {e}")).param(param)
        };
        let agent = ureq::AgentBuilder::new().timeout(self.timeout).build();
        let response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| failed(e.to_string()))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(self.too_large(param));
        }
        Ok(bytes)
    }

    #[cfg(not(feature = "hub"))]
    fn download(&self, _url: &str, param: &str) -> Result<Vec<u8>, ChatError> {
        let _ = self.timeout;
        Err(
            ChatError::bad_request("this build cannot download media (feature `hub` is off)")
                .param(param)
                .with_code("remote_media_disabled"),
        )
    }

    /// The engine's request for `conversation`: fetches its media and samples the video's
    /// frames with `options` (blocking). Returns the time spent decoding media too.
    pub fn request(
        &self,
        conversation: ChatConversation,
        options: &SampleOptions,
    ) -> Result<(Request, Duration), ChatError> {
        let mut request = Request {
            question: conversation.question,
            history: conversation.history,
            ..Request::default()
        };
        let mut decoding = Duration::ZERO;
        for m in conversation.media {
            let fetched = self.fetch(&m.url, &m.param)?;
            if m.video {
                let started = Instant::now();
                request.video = Some(decode_video(fetched, options, &m.param)?);
                decoding += started.elapsed();
            } else {
                request.images.push(image_input(fetched, &m.param)?);
            }
        }
        Ok((request, decoding))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Media {
    fn source(self) -> Source {
        match self {
            Media::Bytes(b) => Source::Bytes(b.into()),
            Media::Path(p) => Source::Path(p),
        }
    }
}

/// Samples a video's frames with `options`; an undecodable video is a 400 naming `param`.
pub fn decode_video(
    media: Media,
    options: &SampleOptions,
    param: &str,
) -> Result<VideoInput, ChatError> {
    let sampled = Video::open(media.source()).and_then(|mut v| v.sample(options));
    sampled
        .map(VideoInput::from_batch)
        .map_err(|e| ChatError::from_video(&e).param(param))
}

/// An image for the engine, which decodes it when the request runs (an undecodable one ends
/// the request with the engine's image error, a 400). A file is read now, when it was checked.
pub fn image_input(media: Media, param: &str) -> Result<ImageInput, ChatError> {
    match media {
        Media::Bytes(b) => Ok(ImageInput::Encoded(b)),
        Media::Path(p) => std::fs::read(&p)
            .map(ImageInput::Encoded)
            .map_err(|e| ChatError::bad_request(format!("{}: {e}", p.display())).param(param)),
    }
}

/// Checks an `Authorization` header against the server's API key (`None`: no key needed),
/// comparing in constant time: a missing or wrong `Bearer` key is a 401.
pub fn authorize(authorization: Option<&str>, key: Option<&str>) -> Result<(), ChatError> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Ok(());
    };
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        Ok(())
    } else {
        Err(ChatError::unauthorized(given.is_some()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The model object `GET /v1/models` lists, for a server started at `created` (Unix seconds).
pub fn model_card(id: &str, created: i64) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": created,
        "owned_by": "video-llava",
    })
}

/// `GET /v1/models/{asked}`'s answer: the card when `asked` is the served model, else a 404.
pub fn find_model(served: &str, asked: &str, created: i64) -> Result<Value, ChatError> {
    if asked == served {
        Ok(model_card(served, created))
    } else {
        Err(ChatError::not_found(format!("no model {asked:?}")).with_code("model_not_found"))
    }
}

/// `GET /v1/models`'s answer.
pub fn model_list(id: &str, created: i64) -> Value {
    json!({"object": "list", "data": [model_card(id, created)]})
}

/// The OpenAI `finish_reason` of a generation that ended by itself.
pub fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

/// The `usage` object.
pub fn usage(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.token_ids.len(),
        "total_tokens": g.prompt_tokens + g.token_ids.len(),
        // OpenAI's field for prompt tokens served from a cache: here, the video's prefix.
        "prompt_tokens_details": { "cached_tokens": g.cached_tokens },
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random id with a prefix (`chatcmpl-1f3a...`).
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

/// What identifies one completion in its response and every chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionId {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The served model's id.
    pub model: String,
}

impl CompletionId {
    /// A fresh id for a completion by `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            id: new_id("chatcmpl-"),
            created: unix_now(),
            model: model.into(),
        }
    }

    /// The `chat.completion` response for a finished generation.
    pub fn completion(&self, g: &Generation) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": g.text},
                "logprobs": null,
                "finish_reason": finish_reason(g.stop_reason),
            }],
            "usage": usage(g),
        })
    }

    /// A `chat.completion.chunk` with one choice.
    pub fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    /// The last chunk of a stream that asked for usage: no choices.
    pub fn usage_chunk(&self, g: &Generation) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(g),
        })
    }
}

/// The data of the stream's last server-sent event.
pub const DONE: &str = "[DONE]";

/// A stream's events from one of its engine's events: the data of each server-sent event,
/// `[DONE]` last (a front end with its own queue feeds it its events).
#[derive(Debug)]
pub struct ChunkWriter {
    id: CompletionId,
    include_usage: bool,
    pending: VecDeque<String>,
    done: bool,
}

impl ChunkWriter {
    /// A stream that starts with the assistant's empty role chunk.
    pub fn new(id: CompletionId, include_usage: bool) -> Self {
        let mut writer = Self {
            id,
            include_usage,
            pending: VecDeque::new(),
            done: false,
        };
        let role = writer
            .id
            .chunk(json!({"role": "assistant", "content": ""}), None);
        writer.pending.push_back(role.to_string());
        writer
    }

    /// A text piece.
    pub fn piece(&mut self, piece: &str) {
        let chunk = self.id.chunk(json!({"content": piece}), None);
        self.pending.push_back(chunk.to_string());
    }

    /// The end: the finish chunk, the usage chunk if asked for, `[DONE]`.
    pub fn finished(&mut self, g: &Generation) {
        let finish = self.id.chunk(json!({}), Some(finish_reason(g.stop_reason)));
        self.pending.push_back(finish.to_string());
        if self.include_usage {
            self.pending.push_back(self.id.usage_chunk(g).to_string());
        }
        self.end();
    }

    /// A failure after the stream started: the error's body (OpenAI's `{"error": ...}`) as an
    /// event, then `[DONE]`.
    pub fn failed(&mut self, body: Value) {
        self.pending.push_back(body.to_string());
        self.end();
    }

    fn end(&mut self) {
        self.pending.push_back(DONE.to_string());
        self.done = true;
    }

    /// The next event's data, if one is ready.
    pub fn pop(&mut self) -> Option<String> {
        self.pending.pop_front()
    }

    /// Whether `[DONE]` has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// A chat completion endpoint run on the calling thread: for front ends without a queue of
/// their own (the Python package's Ray Serve application). Concurrent calls run concurrently.
#[derive(Debug, Clone)]
pub struct ChatEndpoint {
    /// The id `model` must name (or be absent).
    pub model_id: String,
    /// Media URL policy.
    pub media: MediaPolicy,
    /// How a video's frames are sampled.
    pub sample: SampleOptions,
    /// Generation parameters a request does not set.
    pub defaults: GenerationParams,
}

/// A parsed, checked request with its media decoded, ready to run.
#[derive(Debug)]
pub struct PreparedChat {
    /// Whether the answer is streamed.
    pub stream: bool,
    include_usage: bool,
    request: Request,
    params: GenerationParams,
}

impl ChatEndpoint {
    /// Parses and checks `body`, fetches its media and samples its video (blocking).
    pub fn prepare(&self, body: &[u8]) -> Result<PreparedChat, ChatError> {
        let chat = ChatRequest::from_json(body)?;
        chat.check_model(&self.model_id)?;
        let params = chat.params(&self.defaults)?;
        let (request, _) = self.media.request(chat.conversation()?, &self.sample)?;
        Ok(PreparedChat {
            stream: chat.stream(),
            include_usage: chat.include_usage(),
            request,
            params,
        })
    }

    /// Answers a prepared request whole: the `chat.completion` JSON. `on_piece` sees each
    /// piece of text as it is decoded and stops the generation early by returning `Break`
    /// (a caller's interrupt); the answer then ends where it stopped.
    pub fn complete(
        &self,
        model: &VideoLlava,
        chat: &PreparedChat,
        on_piece: &mut dyn FnMut(&str) -> std::ops::ControlFlow<()>,
    ) -> Result<Value, ChatError> {
        let generation = model
            .generate(&chat.request, &chat.params, None, on_piece)
            .map_err(|e| ChatError::from_error(&e))?;
        Ok(CompletionId::new(&self.model_id).completion(&generation))
    }

    /// Starts a prepared request as a stream of events (on the engine's stream thread).
    pub fn stream(&self, model: &VideoLlava, chat: PreparedChat) -> ChatStream {
        let stream = model.stream(chat.request, chat.params);
        ChatStream {
            stream,
            writer: ChunkWriter::new(CompletionId::new(&self.model_id), chat.include_usage),
            started: false,
        }
    }
}

/// A streaming completion's events, read on the caller's thread.
///
/// Nothing is written until the engine's first event: a failure before it (a prompt too long,
/// an undecodable image) is returned as the [`ChatError`] itself, so a front end can still
/// answer it with its HTTP status; a failure after it is an event in the stream. Dropping the
/// stream cancels the generation.
#[derive(Debug)]
pub struct ChatStream {
    stream: TextStream,
    writer: ChunkWriter,
    started: bool,
}

impl ChatStream {
    /// Waits at most `timeout` for the next event's data: `Ok(None)` when nothing came in
    /// time, `Ok(Some(None))` after `[DONE]`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Option<String>>, ChatError> {
        loop {
            if self.started {
                if let Some(data) = self.writer.pop() {
                    return Ok(Some(Some(data)));
                }
                if self.writer.is_done() {
                    return Ok(Some(None));
                }
            }
            let Some(next) = self.stream.next_timeout(timeout) else {
                return Ok(None);
            };
            let failure = match next {
                Some(Ok(piece)) => {
                    self.writer.piece(&piece);
                    None
                }
                Some(Err(e)) => Some(ChatError::from_error(&e)),
                None => match self.stream.generation() {
                    Some(g) => {
                        self.writer.finished(g);
                        None
                    }
                    None => Some(ChatError::internal("the generation ended without a result")),
                },
            };
            match failure {
                Some(e) if !self.started => return Err(e),
                Some(e) => self.writer.failed(e.body()),
                None => {}
            }
            self.started = true;
        }
    }

    /// Stops the generation at its next token; the stream then ends.
    pub fn cancel(&self) {
        self.stream.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<ChatConversation, ChatError> {
        ChatRequest::from_json(body.to_string().as_bytes())?.conversation()
    }

    #[test]
    fn percent_escapes_decode_and_bad_ones_are_refused() {
        assert_eq!(
            percent_decode("/a%20b/c.mp4").as_deref(),
            Some("/a b/c.mp4")
        );
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/a%zz"), None);
    }

    #[test]
    fn messages_become_the_engines_turns() {
        let c = chat(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": "file:///v.mp4"}},
                {"type": "text", "text": "What happens?"}]},
            {"role": "assistant", "content": "A dog runs."},
            {"role": "user", "content": "Where?"},
        ]}))
        .unwrap();
        assert_eq!(c.question, "Where?");
        assert_eq!(
            c.history,
            vec![(
                "Be brief.\n\nWhat happens?".to_string(),
                "A dog runs.".to_string()
            )]
        );
        assert_eq!(c.media.len(), 1);
        assert!(c.media[0].video);
        assert_eq!(c.media[0].param, "messages[1].content[0].video_url");
    }

    #[test]
    fn bad_conversations_are_400s_naming_the_field() {
        let cases = [
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "assistant", "content": "hi"}]}),
                "messages[0]",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "system", "content": [
                    {"type": "image_url", "image_url": "data:image/png;base64,AA=="}]},
                    {"role": "user", "content": "q"}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": [
                    {"type": "video_url", "video_url": "file:///a.mp4"},
                    {"type": "video_url", "video_url": "file:///b.mp4"}]}]}),
                "messages",
            ),
        ];
        for (body, param) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e}");
        }
        let e = ChatRequest::from_json(b"{\"messages\": 3}").unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "invalid_request"));
    }

    #[test]
    fn params_take_the_requests_values_and_the_engines_checks() {
        let defaults = GenerationParams::default();
        let r = ChatRequest::from_json(
            br#"{"messages": [], "max_tokens": 5, "stop": "x", "seed": 3, "temperature": 0.5}"#,
        )
        .unwrap();
        let p = r.params(&defaults).unwrap();
        assert_eq!(
            (p.max_new_tokens, p.stop, p.seed, p.temperature),
            (5, vec!["x".to_string()], Some(3), 0.5)
        );
        let r = ChatRequest::from_json(br#"{"messages": [], "n": 2}"#).unwrap();
        assert_eq!(r.params(&defaults).unwrap_err().param.as_deref(), Some("n"));
        let r = ChatRequest::from_json(br#"{"messages": [], "top_p": 7}"#).unwrap();
        let e = r.params(&defaults).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "invalid_request"));
    }

    #[test]
    fn media_policy_refuses_what_it_does_not_allow() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("a.bin");
        std::fs::write(&inside, b"x").unwrap();
        let policy = MediaPolicy::new(
            Some(dir.path()),
            false,
            Duration::from_secs(1),
            8,
            SettingNames::PYTHON,
        )
        .unwrap();
        let ok = policy
            .fetch(&format!("file://{}", inside.display()), "p")
            .unwrap();
        assert!(matches!(ok, Media::Path(_)));
        let e = policy.fetch("file:///etc/passwd", "p").unwrap_err();
        assert_eq!(e.code, "media_path_not_allowed");
        assert!(e.message.contains("allowed_media_dir="), "{e}");
        let e = policy.fetch("http://127.0.0.1:1/v.mp4", "p").unwrap_err();
        assert_eq!(e.code, "remote_media_disabled");
        let e = policy
            .fetch("data:video/mp4;base64,AAAAAAAAAAAAAAAAAAAA", "p")
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (413, "media_too_large"));
        let bytes = policy.fetch("data:video/mp4;base64,AAAA", "p").unwrap();
        assert!(matches!(bytes, Media::Bytes(b) if b == [0, 0, 0]));
        let e = policy.fetch("ftp://x", "q").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("q"));
    }

    #[test]
    fn a_stream_writes_role_pieces_finish_usage_and_done() {
        let id = CompletionId::new("m");
        let mut w = ChunkWriter::new(id, true);
        w.piece("Hi");
        let g = Generation {
            text: "Hi".into(),
            token_ids: vec![1],
            prompt_tokens: 4,
            cached_tokens: 0,
            stop_reason: StopReason::MaxTokens,
            timings: Default::default(),
        };
        w.finished(&g);
        let events: Vec<String> = std::iter::from_fn(|| w.pop()).collect();
        assert_eq!(events.len(), 5);
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(
            parse(&events[0])["choices"][0]["delta"]["role"],
            "assistant"
        );
        assert_eq!(parse(&events[1])["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(parse(&events[2])["choices"][0]["finish_reason"], "length");
        assert_eq!(parse(&events[3])["usage"]["total_tokens"], 5);
        assert_eq!(events[4], DONE);
        assert!(w.is_done());
    }
}
