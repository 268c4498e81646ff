//! `GET /metrics` in the Prometheus text format: requests by route and status, queue depth,
//! tokens generated, seconds per stage.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use video_llava::Generation;

use super::Shared;

/// `(method, route, status)` -> (count, seconds).
type RequestCounts = BTreeMap<(String, String, u16), (u64, f64)>;

/// Counters since the server started.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestCounts>,
    tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    generations: AtomicU64,
    running: AtomicU64,
    /// Nanoseconds per stage.
    stages: Mutex<BTreeMap<&'static str, u128>>,
}

impl Metrics {
    /// A generation began.
    pub fn generation_started(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// A generation ended (however).
    pub fn generation_ended(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    /// A generation succeeded: its tokens and stage times.
    pub fn generation_finished(&self, generation: &Generation) {
        self.generations.fetch_add(1, Ordering::Relaxed);
        self.tokens
            .fetch_add(generation.token_ids.len() as u64, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(generation.prompt_tokens as u64, Ordering::Relaxed);
        let t = &generation.timings;
        for (stage, d) in [
            ("preprocess", t.preprocess),
            ("vision", t.vision),
            ("prefill", t.prefill),
            ("decode", t.decode),
        ] {
            self.stage(stage, d);
        }
    }

    /// Adds `d` to a stage's total (`decode_media`, `upload_probe`, ... besides the model's).
    pub fn stage(&self, stage: &'static str, d: Duration) {
        *self
            .stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stage)
            .or_default() += d.as_nanos();
    }

    fn request(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        entry.0 += 1;
        entry.1 += secs;
    }
}

/// Counts every request by its route pattern (not its path: ids do not make new series).
pub async fn track(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // Only the standard methods name a series: any other token would make a new one.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text exposition.
pub async fn render(State(state): State<Shared>) -> Response {
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP video_llava_http_requests_total HTTP requests by method, route and status."
    );
    let _ = writeln!(out, "# TYPE video_llava_http_requests_total counter");
    let requests = m.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for ((method, route, status), (count, _)) in &requests {
        let _ = writeln!(
            out,
            "video_llava_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
            escape(method),
            escape(route)
        );
    }
    let _ = writeln!(
        out,
        "# HELP video_llava_http_request_seconds_total Seconds spent answering, by method, route and status."
    );
    let _ = writeln!(out, "# TYPE video_llava_http_request_seconds_total counter");
    for ((method, route, status), (_, secs)) in &requests {
        let _ = writeln!(
            out,
            "video_llava_http_request_seconds_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {secs}",
            escape(method),
            escape(route)
        );
    }
    let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    gauge(
        &mut out,
        "video_llava_queue_depth",
        "Requests waiting for the model.",
        "gauge",
        state.queue.depth() as u64,
    );
    gauge(
        &mut out,
        "video_llava_generations_running",
        "Generations running now.",
        "gauge",
        m.running.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "video_llava_model_loaded",
        "1 once the model is loaded.",
        "gauge",
        u64::from(state.model.get().is_some()),
    );
    gauge(
        &mut out,
        "video_llava_generations_total",
        "Generations finished.",
        "counter",
        m.generations.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "video_llava_tokens_generated_total",
        "Tokens generated.",
        "counter",
        m.tokens.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "video_llava_prompt_tokens_total",
        "Prompt tokens processed (placeholders expanded).",
        "counter",
        m.prompt_tokens.load(Ordering::Relaxed),
    );
    if let Some(cache) = state.prefix_cache.get() {
        let s = cache.stats();
        for (name, help, kind, value) in [
            (
                "video_llava_prefix_cache_bytes",
                "Bytes of cached video prefixes.",
                "gauge",
                s.bytes as u64,
            ),
            (
                "video_llava_prefix_cache_capacity_bytes",
                "The most bytes of cached prefixes kept (--prefix-cache-mb).",
                "gauge",
                s.capacity as u64,
            ),
            (
                "video_llava_prefix_cache_entries",
                "Video prefixes held.",
                "gauge",
                s.entries as u64,
            ),
            (
                "video_llava_prefix_cache_hits_total",
                "Requests answered from a cached prefix.",
                "counter",
                s.hits,
            ),
            (
                "video_llava_prefix_cache_misses_total",
                "Requests whose media prefix was computed.",
                "counter",
                s.misses,
            ),
            (
                "video_llava_prefix_cache_evictions_total",
                "Prefixes dropped to make room.",
                "counter",
                s.evictions,
            ),
        ] {
            gauge(&mut out, name, help, kind, value);
        }
    }
    let _ = writeln!(
        out,
        "# HELP video_llava_stage_seconds_total Seconds spent per stage (media decoding, upload probing, preprocess, vision, prefill, decode)."
    );
    let _ = writeln!(out, "# TYPE video_llava_stage_seconds_total counter");
    let stages = m.stages.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (stage, nanos) in stages {
        let _ = writeln!(
            out,
            "video_llava_stage_seconds_total{{stage=\"{stage}\"}} {}",
            nanos as f64 / 1e9
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
