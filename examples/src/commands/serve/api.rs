//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with their HTTP
//! status; every error response of the server has this shape, axum's own rejections included.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use video_llava::openai::ChatError;

/// Seconds a client told "queue full" should wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 2;

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `server_error`, `timeout_error`.
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A stable machine-readable code.
    pub code: Option<String>,
}

impl ApiError {
    /// An error with no `param`.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Some(code.into()),
        }
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400: the request is malformed or asks for something impossible.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
            message,
        )
    }

    /// 503 while the model loads.
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "model_loading",
            "the model is still loading; retry shortly",
        )
    }

    /// 429 when the queue is full.
    pub fn queue_full(capacity: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "queue_full",
            format!("{capacity} requests are already waiting for the model; retry later"),
        )
    }

    /// 504 when the per-request deadline passed.
    pub fn timed_out(secs: u64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            "timeout",
            format!("the request did not finish within {secs} s (--request-timeout)"),
        )
    }

    /// 503 when the server is stopping.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is stopping",
        )
    }

    /// 500 for a failure that is not the caller's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal",
            message,
        )
    }

    /// An extractor's rejection with its status (400 for a body that does not map to the
    /// request type, as OpenAI answers it; 413 and 415 kept).
    pub fn from_rejection(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => body_too_large_message(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "invalid_request_error",
                "unsupported_media_type",
                message,
            ),
            _ => Self::bad_request(message),
        }
    }

    /// The engine's classification decides (the core's [`ChatError::from_error`]): the caller's
    /// input is a 400 with the kind as its code, anything else a 500.
    pub fn from_model(e: &video_llava::Error) -> Self {
        ChatError::from_error(e).into()
    }

    /// As [`ApiError::from_model`], for frame-sampler's errors.
    pub fn from_video(e: &frame_sampler::Error) -> Self {
        ChatError::from_video(e).into()
    }

    /// Replaces the code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        Self {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: e.message,
            kind: e.error_type,
            param: e.param,
            code: Some(e.code),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// How much of a refused body is read and thrown away, and for how long, before the error is
/// sent: clients that write the whole body before they read (most HTTP libraries) then get
/// the 413 instead of a broken pipe. Larger bodies are cut off.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards what is left of `body`, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`].
pub async fn drain(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

fn body_too_large_message(message: String) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "body_too_large",
        format!("the request body is over the limit (--max-upload-mb): {message}"),
    )
}

/// A 413 for a body over `max` bytes.
pub fn body_too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "body_too_large",
        format!(
            "the request body is over the limit of {} MiB (--max-upload-mb)",
            max / (1024 * 1024)
        ),
    )
}

/// Refuses a body whose `Content-Length` is over the limit before any handler reads it.
pub async fn body_limit(
    axum::extract::State(state): axum::extract::State<super::Shared>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body) {
        drain(request.into_body()).await;
        return body_too_large(state.max_body).into_response();
    }
    next.run(request).await
}

/// Rewrites error responses that are not JSON (axum's rejections: a body over the limit, a
/// malformed JSON body, a wrong method) into OpenAI's shape; a JSON body the extractor could
/// not map to the request type (axum's 422) is a 400, as OpenAI answers it.
pub async fn error_shape(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = match parts.status {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large_message(text),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => ApiError::bad_request(text),
        StatusCode::METHOD_NOT_ALLOWED => ChatError::method_not_allowed().into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            text,
        ),
        status if status.is_client_error() => {
            ApiError::new(status, "invalid_request_error", "invalid_request", text)
        }
        status => ApiError::new(status, "server_error", "internal", text),
    };
    let mut rewritten = error.into_response();
    // Keep headers the original set (Allow, Retry-After), except its length and type.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}
