//! Uploads (`/v1/videos`) and their stored analyses (`/v1/videos/{id}/analyses`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use video_llava::{GenerationParams, StopReason};

use super::api::{body_too_large, ApiError};
use super::chat::job_error;
use super::queue::Event;
use super::store::{AnalysisRow, Finished, VideoRow};
use super::{new_id, unix_now, Shared};
use crate::contact_sheet::{self, StoryboardError};
use crate::records::VideoFacts;
use video_llava::openai::{self, Media};

/// Frames in an upload's storyboard.
const STORYBOARD_FRAMES: usize = 9;

fn db_error(e: rusqlite::Error) -> ApiError {
    ApiError::internal(format!("database: {e}"))
}

fn video_json(v: &VideoRow) -> Value {
    json!({
        "id": v.id,
        "object": "video",
        "filename": v.filename,
        "bytes": v.bytes,
        "created_at": v.created_at,
        "info": v.info,
        "thumbnail_url": format!("/v1/videos/{}/thumbnail.jpg", v.id),
        "storyboard_url": format!("/v1/videos/{}/storyboard.jpg", v.id),
        "analyses_url": format!("/v1/videos/{}/analyses", v.id),
    })
}

fn analysis_json(a: &AnalysisRow) -> Value {
    let mut value = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("object".into(), json!("video.analysis"));
    }
    value
}

fn find_video(state: &Shared, id: &str) -> Result<VideoRow, ApiError> {
    state
        .store
        .video(id)
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found(format!("no video {id:?}")).with_code("video_not_found"))
}

/// `?filename=` for a raw-body upload.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    filename: Option<String>,
}

/// A file name safe to show: its last component, printable, at most 200 characters.
fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.trim().is_empty() {
        "video".into()
    } else {
        cleaned
    }
}

/// The extension kept on the stored file (FFmpeg probes by content; this is for people).
fn extension(name: &str) -> String {
    FsPath::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|e| format!(".{}", e.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// Removes a partial upload unless it was kept.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn write_chunk(
    file: &mut tokio::fs::File,
    written: &mut u64,
    chunk: &[u8],
    max: u64,
) -> Result<(), ApiError> {
    *written += chunk.len() as u64;
    if *written > max {
        return Err(body_too_large(max));
    }
    file.write_all(chunk)
        .await
        .map_err(|e| ApiError::internal(format!("storing the upload: {e}")))
}

/// `POST /v1/videos`: a multipart form (its first file field) or the raw body
/// (`?filename=clip.mp4`), streamed to disk, probed, thumbnailed and storyboarded.
pub async fn upload(
    State(state): State<Shared>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // A declared length over the limit never gets here (api::body_limit).
    let max = state.max_body;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));

    let id = new_id("vid_");
    let tmp_path = state.data_dir.join("videos").join(format!(".upload-{id}"));
    let mut tmp = TempFile(Some(tmp_path.clone()));
    let mut file = tokio::fs::File::create(&tmp_path)
        .await
        .map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
    let mut written = 0u64;
    let mut filename = query.filename.clone();
    if is_multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut found = false;
        while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
            if field.file_name().is_none() && field.name() != Some("file") {
                continue;
            }
            filename = filename.or_else(|| field.file_name().map(str::to_string));
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                write_chunk(&mut file, &mut written, &chunk, max).await?;
            }
            found = true;
            break;
        }
        if !found {
            return Err(
                ApiError::bad_request("the form has no file field (name it \"file\")")
                    .param("file"),
            );
        }
    } else {
        let mut body = request.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
            if let Err(e) = write_chunk(&mut file, &mut written, &chunk, max).await {
                // Read the rest (bounded), so the client sees the 413.
                super::api::drain(axum::body::Body::from_stream(body)).await;
                return Err(e);
            }
        }
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
    drop(file);
    if written == 0 {
        return Err(ApiError::bad_request("the upload is empty").with_code("empty_upload"));
    }

    let filename = clean_filename(filename.as_deref().unwrap_or("video"));
    let started = Instant::now();
    let probe_path = tmp_path.clone();
    let made = tokio::task::spawn_blocking(move || probe_and_images(&probe_path))
        .await
        .map_err(|e| ApiError::internal(format!("probing task: {e}")))?
        // Errors name the upload as the client named it, not the server's temporary file.
        .map_err(|mut e| {
            e.message = e
                .message
                .replace(&tmp_path.display().to_string(), &filename);
            e
        })?;
    state.metrics.stage("upload_probe", started.elapsed());

    let dir = state.store.video_dir(&id);
    let stored = dir.join(format!("video{}", extension(&filename)));
    let keep = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("thumbnail.jpg"), &made.thumbnail)?;
        std::fs::write(dir.join("storyboard.jpg"), &made.storyboard)?;
        std::fs::rename(&tmp_path, &stored)?;
        Ok(())
    };
    if let Err(e) = keep() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ApiError::internal(format!("storing the upload: {e}")));
    }
    tmp.0 = None;
    let row = VideoRow {
        id: id.clone(),
        filename,
        bytes: written,
        created_at: unix_now(),
        info: made.info,
    };
    if let Err(e) = state.store.insert_video(&row) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(db_error(e));
    }
    Ok((StatusCode::CREATED, Json(video_json(&row))))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!(
                "the upload is over the limit (--max-upload-mb): {}",
                e.body_text()
            ),
        )
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

struct Made {
    info: Value,
    thumbnail: Vec<u8>,
    storyboard: Vec<u8>,
}

/// The facts, the thumbnail and the storyboard from one open of the file.
fn probe_and_images(path: &FsPath) -> Result<Made, ApiError> {
    let mut video = frame_sampler::Video::open(frame_sampler::Source::Path(path.to_path_buf()))
        .map_err(|e| ApiError::from_video(&e).param("file"))?;
    let info = video
        .info()
        .map_err(|e| ApiError::from_video(&e).param("file"))?;
    let thumbnail = video
        .thumbnail(&frame_sampler::ThumbnailOptions::default())
        .map_err(|e| ApiError::from_video(&e).param("file"))?;
    let (sheet, _) =
        contact_sheet::storyboard(&mut video, STORYBOARD_FRAMES).map_err(|e| match e {
            StoryboardError::Video(e) => ApiError::from_video(&e).param("file"),
            StoryboardError::Tile(m) => ApiError::internal(m),
        })?;
    let storyboard = frame_sampler::encode_image(
        sheet.as_raw(),
        sheet.width(),
        sheet.height(),
        frame_sampler::ImageFormat::Jpeg,
        85,
    )
    .map_err(|e| ApiError::from_video(&e))?;
    let facts = serde_json::to_value(VideoFacts::from(&info)).unwrap_or(Value::Null);
    Ok(Made {
        info: facts,
        thumbnail: thumbnail.data,
        storyboard,
    })
}

/// `GET /v1/videos`: newest first.
pub async fn list(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let videos = state.store.videos().map_err(db_error)?;
    let data: Vec<Value> = videos.iter().map(video_json).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/videos/{id}`.
pub async fn get_one(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(video_json(&find_video(&state, &id)?)))
}

/// `DELETE /v1/videos/{id}`: the upload, its images and its analyses.
pub async fn delete(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find_video(&state, &id)?;
    state.live.cancel_video(&id);
    state.store.delete_video(&id).map_err(db_error)?;
    let dir = state.store.video_dir(&id);
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(Json(json!({"id": id, "object": "video", "deleted": true})))
}

async fn image(state: &Shared, id: &str, name: &str) -> Result<Response, ApiError> {
    find_video(state, id)?;
    let bytes = tokio::fs::read(state.store.video_dir(id).join(name))
        .await
        .map_err(|e| ApiError::internal(format!("reading {name}: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            // An id's images never change.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /v1/videos/{id}/thumbnail.jpg`.
pub async fn thumbnail(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    image(&state, &id, "thumbnail.jpg").await
}

/// `GET /v1/videos/{id}/storyboard.jpg`.
pub async fn storyboard(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    image(&state, &id, "storyboard.jpg").await
}

/// The body of `POST /v1/videos/{id}/analyses`.
#[derive(Debug, Deserialize, Default)]
pub struct AnalyzeBody {
    question: Option<String>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    seed: Option<u64>,
}

/// What the live stream of an analysis being generated shows.
#[derive(Debug, Clone, Default)]
struct LiveState {
    text: String,
    finished: bool,
}

/// An analysis being generated.
struct Live {
    video_id: String,
    tx: watch::Sender<LiveState>,
    cancel: video_llava::CancelToken,
}

/// Analyses being generated: their text so far, for streams that join late.
#[derive(Default)]
pub struct LiveAnalyses(Mutex<HashMap<String, Live>>);

impl LiveAnalyses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subscribe(&self, id: &str) -> Option<watch::Receiver<LiveState>> {
        self.lock().get(id).map(|live| live.tx.subscribe())
    }

    /// Stops every analysis of `video_id` (its video is being deleted).
    fn cancel_video(&self, video_id: &str) {
        for live in self.lock().values().filter(|l| l.video_id == video_id) {
            live.cancel.cancel();
        }
    }
}

/// `POST /v1/videos/{id}/analyses`: queues an analysis; `"stream": true` answers with its
/// events (SSE), otherwise 202 with the queued analysis.
pub async fn analyze(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Option<Json<AnalyzeBody>>,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.request_timeout;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let video = find_video(&state, &id)?;
    state.has_room()?;
    let question = body
        .question
        .clone()
        .or_else(|| state.analyzer.questions.first().cloned())
        .unwrap_or_else(|| video_llava::analyze::DEFAULT_QUESTION.to_string());
    let defaults = &state.analyzer.params;
    let params = GenerationParams {
        max_new_tokens: body
            .max_tokens
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or(defaults.max_new_tokens),
        temperature: body.temperature.unwrap_or(defaults.temperature),
        seed: body.seed.or(defaults.seed),
        ..defaults.clone()
    };
    params.validate().map_err(|e| ApiError::from_model(&e))?;

    // The frames are sampled here, off the model's thread, as `analyze` samples them.
    let path = stored_video(&state, &video)?;
    let options = state.analyzer.sample_options();
    let video_input = tokio::task::spawn_blocking(move || {
        openai::decode_video(Media::Path(path), &options, "video").map_err(ApiError::from)
    })
    .await
    .map_err(|e| ApiError::internal(format!("decoding task: {e}")))??;
    let request = video_llava::Request {
        question: question.clone(),
        video: Some(video_input),
        ..video_llava::Request::default()
    };
    request
        .validate()
        .map_err(|e| ApiError::from_model(&e).param("question"))?;
    let (mut rx, guard) = state.submit(request, params, deadline)?;

    let row = AnalysisRow {
        id: new_id("ana_"),
        video_id: id.clone(),
        question,
        state: "queued".into(),
        answer: None,
        error: None,
        prompt_tokens: None,
        completion_tokens: None,
        finish_reason: None,
        timings: None,
        created_at: unix_now(),
        finished_at: None,
    };
    // Live before the row exists: a stream opened as soon as the id is listed finds it.
    let (live_tx, _) = watch::channel(LiveState::default());
    state.live.lock().insert(
        row.id.clone(),
        Live {
            video_id: id.clone(),
            tx: live_tx.clone(),
            cancel: guard.0.clone(),
        },
    );
    if let Err(e) = state.store.insert_analysis(&row) {
        state.live.lock().remove(&row.id);
        // The video was deleted meanwhile (its foreign key is gone), or the database failed.
        return Err(match state.store.video(&id) {
            Ok(None) => {
                ApiError::not_found(format!("no video {id:?}")).with_code("video_not_found")
            }
            _ => db_error(e),
        });
    }

    // The runner owns the job now: a client that leaves does not stop a stored analysis.
    let runner_state = state.clone();
    let analysis_id = row.id.clone();
    tokio::spawn(async move {
        let state = runner_state;
        let timeout = state.request_timeout;
        let outcome = loop {
            match super::chat::next_event(&mut rx, deadline, &guard, timeout).await {
                Ok(Event::Started) => {
                    let _ = state.store.analysis_running(&analysis_id);
                }
                Ok(Event::Piece(p)) => live_tx.send_modify(|s| s.text.push_str(&p)),
                Ok(Event::Done(Ok(g))) if g.stop_reason == StopReason::Cancelled => {
                    break Err(super::chat::cancelled_error(deadline, timeout).message)
                }
                Ok(Event::Done(Ok(g))) => break Ok(g),
                Ok(Event::Done(Err(e))) => break Err(job_error(e, timeout).message),
                Err(e) => break Err(e.message),
            }
        };
        let written = match &outcome {
            Ok(g) => state.store.analysis_done(
                &analysis_id,
                &Finished {
                    answer: &g.text,
                    prompt_tokens: g.prompt_tokens as u64,
                    completion_tokens: g.token_ids.len() as u64,
                    finish_reason: video_llava::openai::finish_reason(g.stop_reason),
                    timings: json!({
                        "preprocess": g.timings.preprocess.as_secs_f64(),
                        "vision": g.timings.vision.as_secs_f64(),
                        "prefill": g.timings.prefill.as_secs_f64(),
                        "decode": g.timings.decode.as_secs_f64(),
                    }),
                },
            ),
            Err(message) => state.store.analysis_failed(&analysis_id, message),
        };
        if let Err(e) = written {
            eprintln!("error: serve: recording analysis {analysis_id}: {e}");
        }
        live_tx.send_modify(|s| s.finished = true);
        state.live.lock().remove(&analysis_id);
        drop(guard);
    });

    if body.stream {
        return analysis_events(&state, &id, &row.id);
    }
    Ok((StatusCode::ACCEPTED, Json(analysis_json(&row))).into_response())
}

fn stored_video(state: &Shared, video: &VideoRow) -> Result<PathBuf, ApiError> {
    let dir = state.store.video_dir(&video.id);
    let entries = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
        // Deleted meanwhile.
        std::io::ErrorKind::NotFound => {
            ApiError::not_found(format!("no video {:?}", video.id)).with_code("video_not_found")
        }
        _ => ApiError::internal(format!("the upload: {e}")),
    })?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_stem().and_then(|s| s.to_str()) == Some("video"))
        .ok_or_else(|| ApiError::internal(format!("the upload of {} is missing", video.id)))
}

/// `GET /v1/videos/{id}/analyses`: oldest first.
pub async fn list_analyses(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find_video(&state, &id)?;
    let rows = state.store.analyses(&id).map_err(db_error)?;
    let data: Vec<Value> = rows.iter().map(analysis_json).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/videos/{id}/analyses/{aid}`.
pub async fn get_analysis(
    State(state): State<Shared>,
    Path((id, aid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let row = state
        .store
        .analysis(&id, &aid)
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found(format!("no analysis {aid:?} of video {id:?}")))?;
    Ok(Json(analysis_json(&row)))
}

/// `GET /v1/videos/{id}/analyses/{aid}/events`: the analysis's events (SSE), from its text so
/// far: `analysis` (the row as it is), `delta` (`{"text"}`) as it is generated, then one `done`
/// (the final row, state `done` or `failed`).
pub async fn events(
    State(state): State<Shared>,
    Path((id, aid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    analysis_events(&state, &id, &aid)
}

struct EventStream {
    state: Shared,
    video_id: String,
    id: String,
    live: Option<watch::Receiver<LiveState>>,
    sent: usize,
    pending: VecDeque<SseEvent>,
    done: bool,
}

impl EventStream {
    fn named(name: &str, value: Value) -> SseEvent {
        SseEvent::default().event(name).data(value.to_string())
    }

    fn finish(&mut self) {
        let row = self.state.store.analysis(&self.video_id, &self.id);
        let value = match row {
            Ok(Some(row)) => analysis_json(&row),
            Ok(None) => ApiError::not_found("the analysis was deleted").body(),
            Err(e) => db_error(e).body(),
        };
        self.pending.push_back(Self::named("done", value));
        self.done = true;
    }
}

fn analysis_events(state: &Shared, video_id: &str, id: &str) -> Result<Response, ApiError> {
    // Subscribe before reading the row: the runner records the end before it leaves the map.
    let live = state.live.subscribe(id);
    let row = state
        .store
        .analysis(video_id, id)
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found(format!("no analysis {id:?} of video {video_id:?}")))?;
    let mut stream = EventStream {
        state: state.clone(),
        video_id: video_id.to_string(),
        id: id.to_string(),
        live,
        sent: 0,
        pending: VecDeque::new(),
        done: false,
    };
    stream
        .pending
        .push_back(EventStream::named("analysis", analysis_json(&row)));
    if stream.live.is_none() {
        stream.finish();
    }
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(e), s));
            }
            if s.done {
                return None;
            }
            let Some(rx) = s.live.as_mut() else {
                s.finish();
                continue;
            };
            let (delta, finished) = {
                let now = rx.borrow_and_update();
                (
                    now.text.get(s.sent..).unwrap_or("").to_string(),
                    now.finished,
                )
            };
            if !delta.is_empty() {
                s.sent += delta.len();
                s.pending
                    .push_back(EventStream::named("delta", json!({"text": delta})));
            }
            if finished {
                s.finish();
                continue;
            }
            if !s.pending.is_empty() {
                continue;
            }
            if rx.changed().await.is_err() {
                s.finish();
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
