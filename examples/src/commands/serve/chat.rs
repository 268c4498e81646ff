//! `POST /v1/chat/completions` and `GET /v1/models`, in OpenAI's (and vLLM's) shapes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use video_llava::{Generation, GenerationParams, Request, StopReason};

use super::api::ApiError;
use super::media::{self, Media};
use super::queue::{CancelOnDrop, Event, JobError};
use super::{new_id, unix_now, Shared};

/// The request body. Fields OpenAI defines that do not apply here (`user`, `logprobs`, penalties,
/// ...) are accepted and ignored, as vLLM does.
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

/// A medium found in the messages, with the field that held it.
struct MediaRef {
    video: bool,
    url: String,
    param: String,
}

/// The conversation as the engine takes it, before its media are fetched.
struct Conversation {
    question: String,
    history: Vec<(String, String)>,
    media: Vec<MediaRef>,
}

fn conversation(messages: &[Message]) -> Result<Conversation, ApiError> {
    let bad = |m: &str| ApiError::bad_request(m).param("messages");
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
                    match part {
                        Part::Text { text: t } => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                        }
                        Part::ImageUrl { image_url }
                        | Part::VideoUrl {
                            video_url: image_url,
                        } if message.role != "user" => {
                            let _ = image_url;
                            return Err(ApiError::bad_request(format!(
                                "only user messages may carry media, not {}",
                                message.role
                            ))
                            .param(format!("messages[{i}].content[{j}]")));
                        }
                        Part::ImageUrl { image_url } => media.push(MediaRef {
                            video: false,
                            url: image_url.as_str().to_string(),
                            param: format!("messages[{i}].content[{j}].image_url"),
                        }),
                        Part::VideoUrl { video_url } => media.push(MediaRef {
                            video: true,
                            url: video_url.as_str().to_string(),
                            param: format!("messages[{i}].content[{j}].video_url"),
                        }),
                    }
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
                    return Err(ApiError::bad_request(
                        "an assistant message must follow a user message",
                    )
                    .param(format!("messages[{i}]")))
                }
            },
            other => {
                return Err(ApiError::bad_request(format!(
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
    // Video-LLaVA's prompt has no system turn: system text opens the first user turn.
    let system = system.join("\n");
    if !system.trim().is_empty() {
        let first = history.first_mut().map(|(q, _)| q).unwrap_or(&mut question);
        *first = format!("{system}\n\n{first}");
    }
    Ok(Conversation {
        question,
        history,
        media,
    })
}

impl ChatRequest {
    fn params(&self, defaults: &GenerationParams) -> Result<GenerationParams, ApiError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::bad_request(format!("n must be 1, got {n}")).param("n"));
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
        // The engine's checks, with its messages.
        params.validate().map_err(|e| ApiError::from_model(&e))?;
        Ok(params)
    }
}

/// Builds the engine's request: fetches and decodes the media off the async threads.
async fn engine_request(state: &Shared, body: &ChatRequest) -> Result<Request, ApiError> {
    let conversation = conversation(&body.messages)?;
    let mut request = Request {
        question: conversation.question,
        history: conversation.history,
        ..Request::default()
    };
    for m in conversation.media {
        let fetched: Media = state.media.fetch(&m.url, &m.param).await?;
        if m.video {
            let options = state.analyzer.sample_options();
            let started = Instant::now();
            let param = m.param.clone();
            let video =
                tokio::task::spawn_blocking(move || media::decode_video(fetched, &options, &param))
                    .await
                    .map_err(|e| ApiError::internal(format!("decoding task: {e}")))??;
            state.metrics.stage("decode_media", started.elapsed());
            request.video = Some(video);
        } else {
            request.images.push(media::image_input(fetched, &m.param)?);
        }
    }
    Ok(request)
}

/// The OpenAI `finish_reason` of a generation that ended by itself.
pub fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

/// A job's failure as the client sees it.
pub fn job_error(e: JobError, timeout: Duration) -> ApiError {
    match e {
        JobError::Model(e) => ApiError::from_model(&e),
        JobError::TimedOut => ApiError::timed_out(timeout.as_secs()),
        JobError::ShuttingDown => ApiError::shutting_down(),
        JobError::Panicked(m) => ApiError::internal(format!("internal error (a bug): {m}")),
    }
}

/// A generation that was cancelled did not end by itself: its deadline passed or the server
/// is stopping (a client that left reads no answer).
pub fn cancelled_error(deadline: Instant, timeout: Duration) -> ApiError {
    if Instant::now() >= deadline {
        ApiError::timed_out(timeout.as_secs())
    } else {
        ApiError::shutting_down()
    }
}

/// Waits for the next event before the deadline; on timeout the job is cancelled.
pub async fn next_event(
    rx: &mut UnboundedReceiver<Event>,
    deadline: Instant,
    guard: &CancelOnDrop,
    timeout: Duration,
) -> Result<Event, ApiError> {
    match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
        Err(_) => {
            guard.0.cancel();
            Err(ApiError::timed_out(timeout.as_secs()))
        }
        Ok(None) => Err(ApiError::internal("the model worker stopped")),
        Ok(Some(event)) => Ok(event),
    }
}

/// `POST /v1/chat/completions`.
pub async fn completions(
    State(state): State<Shared>,
    body: Result<Json<ChatRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    // The deadline counts from arrival: fetching and decoding media is part of the request.
    let deadline = Instant::now() + state.request_timeout;
    let Json(body) = body.map_err(|e| ApiError::from_rejection(e.status(), e.body_text()))?;
    if let Some(model) = body.model.as_deref().filter(|m| *m != state.model_id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "model_not_found",
            format!(
                "the model {model:?} is not served here; GET /v1/models lists {:?}",
                state.model_id
            ),
        )
        .param("model"));
    }
    let params = body.params(&state.analyzer.params)?;
    // Refuse before the media are fetched and decoded when there is no place for the request.
    state.has_room()?;
    let request = tokio::time::timeout_at(deadline.into(), engine_request(&state, &body))
        .await
        .map_err(|_| ApiError::timed_out(state.request_timeout.as_secs()))??;
    let (mut rx, guard) = state.submit(request, params, deadline)?;
    let timeout = state.request_timeout;
    let id = new_id("chatcmpl-");
    let created = unix_now();

    // Wait for the first piece (or the end): an error before it is still an HTTP status. A
    // stream waits at most --stream-start-timeout, then starts (its keep-alives hold proxies and client
    // read timeouts through a long queue wait), and a later error is an event in it.
    let first_by = if body.stream {
        deadline.min(Instant::now() + state.stream_start)
    } else {
        deadline
    };
    let first = loop {
        let waited = tokio::time::timeout_at(first_by.into(), rx.recv()).await;
        let event = match waited {
            Err(_) if first_by < deadline => break None,
            Err(_) => {
                guard.0.cancel();
                return Err(ApiError::timed_out(timeout.as_secs()));
            }
            Ok(None) => return Err(ApiError::internal("the model worker stopped")),
            Ok(Some(event)) => event,
        };
        match event {
            Event::Started => continue,
            Event::Done(Err(e)) => return Err(job_error(e, timeout)),
            event => break Some(event),
        }
    };

    if !body.stream {
        let mut text = String::new();
        let Some(mut event) = first else {
            return Err(ApiError::internal("no first event"));
        };
        let generation = loop {
            match event {
                Event::Started => {}
                Event::Piece(p) => text.push_str(&p),
                Event::Done(Ok(g)) => break g,
                Event::Done(Err(e)) => return Err(job_error(e, timeout)),
            }
            event = next_event(&mut rx, deadline, &guard, timeout).await?;
        };
        if generation.stop_reason == StopReason::Cancelled {
            return Err(cancelled_error(deadline, timeout));
        }
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": state.model_id,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": generation.text},
                "logprobs": null,
                "finish_reason": finish_reason(generation.stop_reason),
            }],
            "usage": usage(&generation),
        }))
        .into_response());
    }

    let include_usage = body
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let mut stream = ChatStream {
        rx,
        guard,
        pending: VecDeque::new(),
        done: false,
        id,
        created,
        model: state.model_id.clone(),
        include_usage,
        deadline,
        timeout,
    };
    stream.push_chunk(json!({"role": "assistant", "content": ""}), None);
    if let Some(first) = first {
        stream.push_event(first);
    }
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(e), s));
            }
            if s.done {
                return None;
            }
            match next_event(&mut s.rx, s.deadline, &s.guard, s.timeout).await {
                Ok(event) => s.push_event(event),
                Err(e) => s.push_error(e),
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn usage(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.token_ids.len(),
        "total_tokens": g.prompt_tokens + g.token_ids.len(),
        // OpenAI's field for prompt tokens served from a cache: here, the video's prefix.
        "prompt_tokens_details": { "cached_tokens": g.cached_tokens },
    })
}

/// The SSE body of a streaming completion: holds the job's guard, so a client that disconnects
/// (hyper drops the body) cancels the generation.
struct ChatStream {
    rx: UnboundedReceiver<Event>,
    guard: CancelOnDrop,
    pending: VecDeque<SseEvent>,
    done: bool,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    deadline: Instant,
    timeout: Duration,
}

impl ChatStream {
    fn push_json(&mut self, value: Value) {
        self.pending
            .push_back(SseEvent::default().data(value.to_string()));
    }

    fn push_chunk(&mut self, delta: Value, finish: Option<&str>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        self.push_json(chunk);
    }

    fn push_done(&mut self) {
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.done = true;
    }

    fn push_error(&mut self, e: ApiError) {
        self.guard.0.cancel();
        self.push_json(e.body());
        self.push_done();
    }

    fn push_event(&mut self, event: Event) {
        match event {
            Event::Started => {}
            Event::Piece(p) => self.push_chunk(json!({"content": p}), None),
            Event::Done(Err(e)) => self.push_error(job_error(e, self.timeout)),
            Event::Done(Ok(g)) if g.stop_reason == StopReason::Cancelled => {
                self.push_error(cancelled_error(self.deadline, self.timeout))
            }
            Event::Done(Ok(g)) => {
                self.push_chunk(json!({}), Some(finish_reason(g.stop_reason)));
                if self.include_usage {
                    let chunk = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage(&g),
                    });
                    self.push_json(chunk);
                }
                self.push_done();
            }
        }
    }
}

fn model_card(state: &Shared) -> Value {
    json!({
        "id": state.model_id,
        "object": "model",
        "created": state.started_at,
        "owned_by": "video-llava",
    })
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_card(&state)]}))
}

/// `GET /v1/models/{id}`.
pub async fn model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id == state.model_id {
        Ok(Json(model_card(&state)))
    } else {
        Err(ApiError::not_found(format!("no model {id:?}")).with_code("model_not_found"))
    }
}
