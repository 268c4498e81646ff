//! Media URLs in chat requests (`data:`, `file://`, `http(s)://`) and decoding them into the
//! engine's inputs, off the async threads.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use frame_sampler::{SampleOptions, Source, Video};
use video_llava::{ImageInput, VideoInput};

use super::api::ApiError;
use crate::failure::Failure;

/// Which media URLs are accepted.
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    /// `--allowed-media-dir`, canonical.
    allowed_dir: Option<PathBuf>,
    /// `--allow-remote-media`.
    allow_remote: bool,
    /// How long a download may take.
    timeout: Duration,
    /// The largest medium, in bytes.
    max_bytes: u64,
}

/// Media bytes or a local file.
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
    ) -> Result<Self, Failure> {
        let allowed_dir = allowed_dir
            .map(|d| {
                std::fs::canonicalize(d).map_err(|e| {
                    Failure::input(
                        format!("--allowed-media-dir {}", d.display()),
                        e.to_string(),
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            allowed_dir,
            allow_remote,
            timeout,
            max_bytes,
        })
    }

    /// Resolves `url` (the request field `param`) to bytes or a permitted file.
    pub async fn fetch(&self, url: &str, param: &str) -> Result<Media, ApiError> {
        let bad = |m: String| ApiError::bad_request(m).param(param);
        if let Some(rest) = url.strip_prefix("data:") {
            let (meta, payload) = rest
                .split_once(',')
                .ok_or_else(|| bad("a data: URL needs a comma before its payload".into()))?;
            if !meta.ends_with(";base64") {
                return Err(bad("only base64 data: URLs are accepted".into()));
            }
            if payload.len() as u64 / 4 * 3 > self.max_bytes {
                return Err(too_large(param, self.max_bytes));
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
                return Err(bad(
                    "http(s) media URLs are off; start the server with --allow-remote-media, or send a data: URL"
                        .into(),
                )
                .with_code("remote_media_disabled"));
            }
            let (url_owned, timeout, max) = (url.to_string(), self.timeout, self.max_bytes);
            let param_owned = param.to_string();
            return tokio::task::spawn_blocking(move || {
                download(&url_owned, timeout, max, &param_owned)
            })
            .await
            .map_err(|e| ApiError::internal(format!("download task: {e}")))?
            .map(Media::Bytes);
        }
        Err(bad(format!(
            "unsupported media URL {:?}: use data:, file:// or http(s)://",
            url.chars().take(40).collect::<String>()
        )))
    }

    /// A `file://` path, permitted only inside the allowed directory (after resolving `..` and
    /// symbolic links).
    fn local(&self, rest: &str, param: &str) -> Result<PathBuf, ApiError> {
        let forbidden = |m: String| {
            ApiError::bad_request(m)
                .param(param)
                .with_code("media_path_not_allowed")
        };
        let Some(allowed) = &self.allowed_dir else {
            return Err(forbidden(
                "file:// media URLs are off; start the server with --allowed-media-dir DIR".into(),
            ));
        };
        // file:///abs/path or file://localhost/abs/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        let path = percent_decode(path).ok_or_else(|| {
            ApiError::bad_request("the file:// URL has a bad %-escape").param(param)
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
                "{} is not a file under --allowed-media-dir",
                path.display()
            ))
        };
        let canonical = std::fs::canonicalize(&path).map_err(|_| refused())?;
        if !canonical.starts_with(allowed) || !canonical.is_file() {
            return Err(refused());
        }
        Ok(canonical)
    }
}

impl ApiError {
    /// Replaces the code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }
}

fn too_large(param: &str, max: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "media_too_large",
        format!("the medium is over the limit of {max} bytes (--max-upload-mb)"),
    )
    .param(param)
}

fn download(url: &str, timeout: Duration, max: u64, param: &str) -> Result<Vec<u8>, ApiError> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let response = agent.get(url).call().map_err(|e| {
        ApiError::bad_request(format!("downloading the medium failed: {e}")).param(param)
    })?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            ApiError::bad_request(format!("downloading the medium failed: {e}")).param(param)
        })?;
    if bytes.len() as u64 > max {
        return Err(too_large(param, max));
    }
    Ok(bytes)
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

/// Samples a video's frames as `analyze` does (`options`); an undecodable video is a 400.
pub fn decode_video(
    media: Media,
    options: &SampleOptions,
    param: &str,
) -> Result<VideoInput, ApiError> {
    let sampled = Video::open(media.source()).and_then(|mut v| v.sample(options));
    sampled
        .map(VideoInput::from_batch)
        .map_err(|e| ApiError::from_video(&e).param(param))
}

/// An image for the engine, which decodes it when the request runs (an undecodable one ends
/// the request with the engine's image error, a 400). A file is read now, when it was checked,
/// not later in the queue.
pub fn image_input(media: Media, param: &str) -> Result<ImageInput, ApiError> {
    match media {
        Media::Bytes(b) => Ok(ImageInput::Encoded(b)),
        Media::Path(p) => std::fs::read(&p)
            .map(ImageInput::Encoded)
            .map_err(|e| ApiError::bad_request(format!("{}: {e}", p.display())).param(param)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_bad_ones_are_refused() {
        assert_eq!(
            percent_decode("/a%20b/c.mp4").as_deref(),
            Some("/a b/c.mp4")
        );
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/a%zz"), None);
    }
}
