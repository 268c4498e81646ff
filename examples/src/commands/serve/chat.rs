//! `POST /v1/chat/completions` and `GET /v1/models`, in OpenAI's (and vLLM's) shapes.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use video_llava::openai::{ChatRequest, ChunkWriter, CompletionId};
use video_llava::{Request, StopReason};

use super::api::ApiError;
use super::queue::{CancelOnDrop, Event, JobError};
use super::Shared;

/// Builds the engine's request: fetches the media and samples the video off the async threads.
async fn engine_request(state: &Shared, body: &ChatRequest) -> Result<Request, ApiError> {
    let conversation = body.conversation()?;
    let (media, options) = (state.media.clone(), state.analyzer.sample_options());
    let (request, decoding) =
        tokio::task::spawn_blocking(move || media.request(conversation, &options))
            .await
            .map_err(|e| ApiError::internal(format!("decoding task: {e}")))??;
    if !decoding.is_zero() {
        state.metrics.stage("decode_media", decoding);
    }
    Ok(request)
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
    body.check_model(&state.model_id)?;
    let params = body.params(&state.analyzer.params)?;
    // Refuse before the media are fetched and decoded when there is no place for the request.
    state.has_room()?;
    let request = tokio::time::timeout_at(deadline.into(), engine_request(&state, &body))
        .await
        .map_err(|_| ApiError::timed_out(state.request_timeout.as_secs()))??;
    let (mut rx, guard) = state.submit(request, params, deadline)?;
    let timeout = state.request_timeout;
    let id = CompletionId::new(&state.model_id);

    // Wait for the first piece (or the end): an error before it is still an HTTP status. A
    // stream waits at most --stream-start-timeout, then starts (its keep-alives hold proxies and client
    // read timeouts through a long queue wait), and a later error is an event in it.
    let first_by = if body.stream() {
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

    if !body.stream() {
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
        return Ok(Json(id.completion(&generation)).into_response());
    }

    let mut stream = ChatStream {
        rx,
        guard,
        writer: ChunkWriter::new(id, body.include_usage()),
        deadline,
        timeout,
    };
    if let Some(first) = first {
        stream.push_event(first);
    }
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(data) = s.writer.pop() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(data)), s));
            }
            if s.writer.is_done() {
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

/// The SSE body of a streaming completion: holds the job's guard, so a client that disconnects
/// (hyper drops the body) cancels the generation.
struct ChatStream {
    rx: UnboundedReceiver<Event>,
    guard: CancelOnDrop,
    writer: ChunkWriter,
    deadline: Instant,
    timeout: Duration,
}

impl ChatStream {
    fn push_error(&mut self, e: ApiError) {
        self.guard.0.cancel();
        self.writer.failed(e.body());
    }

    fn push_event(&mut self, event: Event) {
        match event {
            Event::Started => {}
            Event::Piece(p) => self.writer.piece(&p),
            Event::Done(Err(e)) => self.push_error(job_error(e, self.timeout)),
            Event::Done(Ok(g)) if g.stop_reason == StopReason::Cancelled => {
                self.push_error(cancelled_error(self.deadline, self.timeout))
            }
            Event::Done(Ok(g)) => self.writer.finished(&g),
        }
    }
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Shared>) -> Json<Value> {
    Json(video_llava::openai::model_list(
        &state.model_id,
        state.started_at,
    ))
}

/// `GET /v1/models/{id}`.
pub async fn model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    video_llava::openai::find_model(&state.model_id, &id, state.started_at)
        .map(Json)
        .map_err(ApiError::from)
}
