//! `video-llava serve`: one model behind an OpenAI-compatible HTTP API, plus uploads, stored
//! analyses (SQLite) and a web page.
//!
//! The port is bound first and `/health` answers 503 while the model loads on a thread of its
//! own; the server exits when loading fails. One worker thread owns the model and runs the
//! queued generations in order ([`queue`]); HTTP handlers on tokio only convert: they parse,
//! decode media off the async threads, queue, and stream the pieces back.

mod api;
mod chat;
mod metrics;
mod page;
mod queue;
mod store;
mod videos;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use video_llava::analyze::AnalyzerOptions;
use video_llava::{PrefixCache, VideoLlava};

use crate::cli::ServeArgs;
use crate::failure::Failure;

use api::ApiError;

/// What the handlers share.
pub struct AppState {
    /// The loaded model's id, as `/v1/models` lists it (the `--model` argument).
    pub model_id: String,
    /// Set once the model is loaded.
    pub model: OnceLock<VideoLlava>,
    /// The video prefixes kept for repeated questions (`--prefix-cache-mb`), set with the model.
    pub prefix_cache: OnceLock<Arc<PrefixCache>>,
    /// The generations waiting for and running on the model.
    pub queue: Arc<queue::Queue>,
    /// Uploads and analyses.
    pub store: store::Store,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Analyses being generated, for their live streams.
    pub live: videos::LiveAnalyses,
    /// Frame sampling and default generation parameters, as `analyze` has them.
    pub analyzer: AnalyzerOptions,
    /// Media URL policy.
    pub media: video_llava::openai::MediaPolicy,
    /// `--api-key`.
    pub api_key: Option<String>,
    /// The body limit in bytes.
    pub max_body: u64,
    /// How long a request may wait and run.
    pub request_timeout: Duration,
    /// How long a stream waits for its first piece before it starts.
    pub stream_start: Duration,
    /// Where uploads live.
    pub data_dir: PathBuf,
    /// When the server started (Unix seconds).
    pub started_at: i64,
}

impl AppState {
    /// 503 until the model is loaded.
    pub fn ready(&self) -> Result<(), ApiError> {
        if self.model.get().is_some() {
            Ok(())
        } else {
            Err(ApiError::not_ready())
        }
    }

    /// 503 until loaded, 429 when the queue is full now (checked again when the request queues).
    pub fn has_room(&self) -> Result<(), ApiError> {
        self.ready()?;
        if self.queue.depth() >= self.queue.capacity() {
            return Err(ApiError::queue_full(self.queue.capacity()));
        }
        Ok(())
    }

    /// Queues a generation; its events and the guard that cancels it when dropped.
    pub fn submit(
        &self,
        request: video_llava::Request,
        params: video_llava::GenerationParams,
        deadline: std::time::Instant,
    ) -> Result<
        (
            tokio::sync::mpsc::UnboundedReceiver<queue::Event>,
            queue::CancelOnDrop,
        ),
        ApiError,
    > {
        self.ready()?;
        let (job, rx) = queue::Job::new(request, params, deadline);
        let guard = queue::CancelOnDrop(job.cancel.clone());
        match self.queue.submit(job) {
            Ok(()) => Ok((rx, guard)),
            Err(queue::Refused::Full(n)) => Err(ApiError::queue_full(n)),
            Err(queue::Refused::Closed) => Err(ApiError::shutting_down()),
        }
    }
}

/// How long open connections may take to finish once the server is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shared state as the handlers receive it.
pub type Shared = Arc<AppState>;

pub use video_llava::openai::{new_id, unix_now};

/// `n` MiB in bytes (the CLI bounds `n`; past `usize`, as many as there can be).
fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("video-llava-http")
        .build()
        .map_err(|e| Failure::internal("serve", format!("starting the async runtime: {e}")))?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| Failure::io(&data_dir, &e))?;
    let store = store::Store::open(&data_dir)?;
    let interrupted = store
        .fail_unfinished()
        .map_err(|e| Failure::internal(data_dir.display().to_string(), e.to_string()))?;
    if interrupted > 0 {
        eprintln!(
            "note: {interrupted} analysis/analyses interrupted by the last stop marked failed"
        );
    }
    let media = video_llava::openai::MediaPolicy::new(
        args.allowed_media_dir.as_deref(),
        args.allow_remote_media,
        Duration::from_secs(args.remote_media_timeout),
        args.max_upload_mb * 1024 * 1024,
        video_llava::openai::SettingNames::CLI,
    )
    .map_err(|e| {
        let dir = args
            .allowed_media_dir
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        Failure::input(
            format!("--allowed-media-dir {}", dir.display()),
            e.to_string(),
        )
    })?;
    let analyzer = AnalyzerOptions {
        frames: usize::from(args.frames),
        params: video_llava::GenerationParams {
            max_new_tokens: args.max_new_tokens as usize,
            ..video_llava::GenerationParams::default()
        },
        ..AnalyzerOptions::default()
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let state = Arc::new(AppState {
        model_id: args.model.clone(),
        model: OnceLock::new(),
        prefix_cache: OnceLock::new(),
        queue: Arc::new(queue::Queue::new(args.max_queue as usize)),
        store,
        metrics: metrics.clone(),
        live: videos::LiveAnalyses::default(),
        analyzer,
        media,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        max_body: args.max_upload_mb * 1024 * 1024,
        request_timeout: Duration::from_secs(args.request_timeout),
        stream_start: Duration::from_secs(args.stream_start_timeout),
        data_dir,
        started_at: unix_now(),
    });

    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Failure::input(format!("--host/--port {addr}"), e.to_string()))?;
    let local: SocketAddr = listener
        .local_addr()
        .map_err(|e| Failure::internal(&addr, e.to_string()))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = out.flush();
    }

    // The model loads off the async threads; a failure stops the server.
    let (load_failed_tx, load_failed_rx) = tokio::sync::oneshot::channel::<Failure>();
    {
        let state = state.clone();
        std::thread::Builder::new()
            .name("video-llava-load".into())
            .spawn(move || {
                let loaded = crate::commands::analyze::load(&args.model, &args.load);
                match loaded {
                    Ok(model) => {
                        let cache =
                            Arc::new(PrefixCache::new(model.clone(), mib(args.prefix_cache_mb)));
                        let _ = state.prefix_cache.set(cache.clone());
                        let batch = video_llava::BatchOptions {
                            max_batch: usize::from(args.max_batch),
                            max_kv_bytes: (args.max_kv_mb > 0).then(|| mib(args.max_kv_mb)),
                        };
                        queue::start_worker(
                            cache,
                            state.queue.clone(),
                            state.metrics.clone(),
                            batch,
                        );
                        let _ = state.model.set(model);
                        eprintln!("model loaded: {}", state.model_id);
                    }
                    Err(failure) => {
                        let _ = load_failed_tx.send(failure);
                    }
                }
            })
            .map_err(|e| Failure::internal("serve", format!("starting the loader: {e}")))?;
    }

    let app = router(state.clone());
    let failure: Arc<Mutex<Option<Failure>>> = Arc::default();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let failure = failure.clone();
        let state = state.clone();
        let stopping = stopping.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                Ok(f) = load_failed_rx => { *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(f); }
            }
            // Stop the generations so connections can close; queued analyses end failed.
            state.queue.close();
            stopping.notify_one();
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    // Connections get SHUTDOWN_GRACE to finish (a stalled upload or a client that stopped
    // reading would hold them forever); a second Ctrl-C or SIGTERM ends them at once.
    let forced = async {
        stopping.notified().await;
        eprintln!(
            "stopping: waiting up to {} s for open connections (Ctrl-C again to stop now)",
            SHUTDOWN_GRACE.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
            _ = shutdown_signal() => {}
        }
    };
    tokio::select! {
        served = server => served.map_err(|e| Failure::internal(local.to_string(), e.to_string()))?,
        _ = forced => {}
    }
    let failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failure {
        Some(f) => Err(f),
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Every route, with the key check, the metrics and the error shape around them.
pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route("/models", get(chat::models))
        .route("/models/{*id}", get(chat::model))
        .route("/chat/completions", post(chat::completions))
        .route("/videos", post(videos::upload).get(videos::list))
        .route("/videos/{id}", get(videos::get_one).delete(videos::delete))
        .route("/videos/{id}/thumbnail.jpg", get(videos::thumbnail))
        .route("/videos/{id}/storyboard.jpg", get(videos::storyboard))
        .route(
            "/videos/{id}/analyses",
            post(videos::analyze).get(videos::list_analyses),
        )
        .route("/videos/{id}/analyses/{aid}", get(videos::get_analysis))
        .route("/videos/{id}/analyses/{aid}/events", get(videos::events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/", get(page::index))
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            api::body_limit,
        ))
        .layer(middleware::from_fn(api::error_shape))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(
            usize::try_from(state.max_body).unwrap_or(usize::MAX),
        ))
        .with_state(state)
}

async fn health(State(state): State<Shared>) -> Response {
    if state.model.get().is_some() {
        Json(serde_json::json!({"status": "ok", "model": state.model_id})).into_response()
    } else {
        ApiError::not_ready().into_response()
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::from(video_llava::openai::ChatError::no_route(
        request.method().as_str(),
        request.uri().path(),
    ))
}

/// `Authorization: Bearer KEY` when the server has a key (the core's check).
async fn require_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = video_llava::openai::authorize(header, state.api_key.as_deref()) {
        return ApiError::from(e).into_response();
    }
    next.run(request).await
}
