//! `video-llava serve` over real HTTP on 127.0.0.1 (an ephemeral port), with the tiny model
//! fixture, real test videos and a real SQLite file: every route and every error status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn video(name: &str) -> PathBuf {
    let dir = std::env::var_os("VIDEO_LLAVA_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("test-data"));
    let path = dir.join("videos").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/make-test-data.sh",
        path.display()
    );
    path
}

fn tiny_model() -> String {
    let dir = workspace_root().join("video-llava/tests/fixtures/tiny-legacy");
    assert!(
        dir.join("config.json").is_file(),
        "model fixture {} missing",
        dir.display()
    );
    dir.display().to_string()
}

const BIN: &str = env!("CARGO_BIN_EXE_video-llava");

/// A running server; killed when dropped.
struct Server {
    child: Child,
    url: String,
    model: String,
    _data: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

impl Server {
    /// Starts a server on a fresh data dir and waits until its model is loaded.
    fn start(extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_path_buf();
        let mut server = Server::start_in(&dir, extra, &[]);
        server._data = Some(data);
        server.wait_ready();
        server
    }

    /// Starts a server on `data_dir` without waiting for its model.
    fn start_in(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let model = extra
            .windows(2)
            .find(|w| w[0] == "--model")
            .map(|w| w[1].to_string())
            .unwrap_or_else(tiny_model);
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").args(["--port", "0", "--device", "cpu"]);
        if !extra.contains(&"--model") {
            cmd.args(["--model", &model]);
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env_remove("VIDEO_LLAVA_API_KEY")
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line: {line:?}"))
            .to_string();
        Server {
            child,
            url,
            model,
            _data: None,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = ureq::get(&format!("{}/health", self.url)).call() {
                assert_eq!(r.status(), 200);
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("the server exited ({status}) before it was ready:\n{err}");
            }
            assert!(Instant::now() < deadline, "the model did not load in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn get(&self, path: &str) -> Reply {
        reply(ureq::get(&self.url(path)).call())
    }

    fn post(&self, path: &str, body: Value) -> Reply {
        reply(ureq::post(&self.url(path)).send_json(body))
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response of any status.
struct Reply {
    status: u16,
    text: String,
    bytes: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an OpenAI-shaped error with `status` and returns its `error` object.
    fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        let error = body["error"].clone();
        for field in ["message", "type", "param", "code"] {
            assert!(error.get(field).is_some(), "no {field} in {body}");
        }
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        error
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.header(&n).unwrap_or("").to_string();
            (n, v)
        })
        .collect();
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).unwrap();
    Reply {
        status,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        headers,
    }
}

fn data_url(path: &Path, mime: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn chat_body(model: &str, url: &str, question: &str, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": url}},
            {"type": "text", "text": question},
        ]}],
        "max_tokens": max_tokens,
    })
}

/// The CLI's answer for the same video, question and token budget.
fn cli_answer(video: &Path, question: &str, max_tokens: u64) -> String {
    let out = Command::new(BIN)
        .args([
            "analyze",
            "--json",
            "--device",
            "cpu",
            "--model",
            &tiny_model(),
        ])
        .args(["--question", question])
        .args(["--max-new-tokens", &max_tokens.to_string()])
        .arg(video)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    record["answer"].as_str().unwrap().to_string()
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// `(event name, data)` of an SSE body.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| e.contains("data:"))
        .map(|event| {
            let name = event
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .unwrap_or("message")
                .trim()
                .to_string();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

fn upload(server: &Server, path: &Path, name: &str) -> Reply {
    let bytes = std::fs::read(path).unwrap();
    reply(
        ureq::post(&server.url(&format!("/v1/videos?filename={name}")))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(&bytes),
    )
}

fn wait_analysis(server: &Server, video_id: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = server
            .get(&format!("/v1/videos/{video_id}/analyses/{id}"))
            .json();
        if a["state"] == state {
            return a;
        }
        assert!(
            a["state"] != "failed" || state == "failed",
            "analysis failed: {a}"
        );
        assert!(Instant::now() < deadline, "analysis stuck: {a}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn chat_completions_answer_as_the_cli_does_and_refuse_bad_requests() {
    let allowed = tempfile::tempdir().unwrap();
    let clip = allowed.path().join("clip.webm");
    std::fs::copy(video("vp9.webm"), &clip).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/hostname", allowed.path().join("escape.mp4")).unwrap();
    let allowed_str = allowed.path().to_str().unwrap().to_string();
    let server = Server::start(&["--allowed-media-dir", &allowed_str]);
    let model = server.model.clone();
    let question = "What happens in the video?";
    let expected = cli_answer(&video("vp9.webm"), question, 8);
    assert!(!expected.is_empty());

    // Models.
    let models = server.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], model.as_str());
    assert_eq!(
        server.get(&format!("/v1/models/{model}")).json()["id"],
        model.as_str()
    );
    assert_eq!(
        server.get("/v1/models/other").error(404)["code"],
        "model_not_found"
    );

    // Non-streaming, with a data: URL: the CLI's text, with usage.
    let url = data_url(&video("vp9.webm"), "video/webm");
    let r = server.post("/v1/chat/completions", chat_body(&model, &url, question, 8));
    assert_eq!(r.status, 200, "{}", r.text);
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert_eq!(c["choices"][0]["message"]["content"], expected.as_str());
    assert_eq!(c["choices"][0]["finish_reason"], "length");
    assert_eq!(c["usage"]["completion_tokens"], 8);
    let prompt_tokens = c["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        prompt_tokens > 8 * 256,
        "8 frames of 256 patches: {prompt_tokens}"
    );
    assert_eq!(
        c["usage"]["total_tokens"].as_u64().unwrap(),
        prompt_tokens + 8
    );
    // The video's first request computes its prefix (and the cache keeps it).
    assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

    // Streaming: role first, then pieces adding up to the same text, finish, usage, [DONE].
    let mut body = chat_body(&model, &url, question, 8);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = server.post("/v1/chat/completions", body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&r.text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expected);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    // The same video again: its prefix comes from the cache, and the answer is unchanged.
    let cached = usage["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached > 8 * 256 && cached < prompt_tokens, "{usage}");
    assert_eq!(server.metric("video_llava_prefix_cache_hits_total"), 1.0);
    assert_eq!(server.metric("video_llava_prefix_cache_misses_total"), 1.0);
    assert_eq!(server.metric("video_llava_prefix_cache_entries"), 1.0);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");

    // A stop string cuts the answer before it, with finish_reason "stop".
    let chars: Vec<char> = expected.chars().collect();
    assert!(chars.len() > 6, "{expected:?}");
    let stop: String = chars[2..5].iter().collect();
    let mut body = chat_body(&model, &url, question, 8);
    body["stop"] = json!([stop]);
    let r = server.post("/v1/chat/completions", body);
    assert_eq!(r.status, 200, "{}", r.text);
    let c = r.json();
    let before = &expected[..expected.find(&stop).unwrap()];
    assert_eq!(c["choices"][0]["message"]["content"], before);
    assert_eq!(c["choices"][0]["finish_reason"], "stop");

    // file:// under the allowed dir answers the same; outside it, `..` and links out do not.
    let file_url = format!("file://{}", clip.display());
    let r = server.post(
        "/v1/chat/completions",
        chat_body(&model, &file_url, question, 8),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        expected.as_str()
    );
    let outside = format!("file://{}", video("vp9.webm").display());
    let dotdot = format!(
        "file://{}/../{}/clip.webm",
        allowed.path().display(),
        allowed.path().file_name().unwrap().to_str().unwrap()
    );
    let link = format!("file://{}/escape.mp4", allowed.path().display());
    for bad in [
        outside.as_str(),
        dotdot.as_str(),
        link.as_str(),
        "file:///etc/passwd",
    ] {
        let e = server
            .post("/v1/chat/completions", chat_body(&model, bad, question, 8))
            .error(400);
        assert_eq!(e["code"], "media_path_not_allowed", "{bad}: {e}");
        assert_eq!(e["param"], "messages[0].content[0].video_url");
    }
    let e = server
        .post(
            "/v1/chat/completions",
            chat_body(&model, "https://example.com/a.mp4", question, 8),
        )
        .error(400);
    assert_eq!(e["code"], "remote_media_disabled");

    // Undecodable media.
    let corrupt = data_url(&video("bad_random.mp4"), "video/mp4");
    let e = server
        .post(
            "/v1/chat/completions",
            chat_body(&model, &corrupt, question, 8),
        )
        .error(400);
    assert_eq!(e["code"], "video_decode");
    let audio = data_url(&video("bad_audio_only.m4a"), "audio/mp4");
    let e = server
        .post(
            "/v1/chat/completions",
            chat_body(&model, &audio, question, 8),
        )
        .error(400);
    assert_eq!(e["code"], "no_video_stream");
    let e = server
        .post(
            "/v1/chat/completions",
            chat_body(&model, "data:video/mp4;base64,!!!", question, 8),
        )
        .error(400);
    assert!(e["message"].as_str().unwrap().contains("base64"), "{e}");
    let bad_image = json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(&video("bad_random.mp4"), "image/png")}},
        {"type": "text", "text": "what is it?"}]}]});
    assert_eq!(
        server.post("/v1/chat/completions", bad_image).error(400)["code"],
        "image_decode"
    );

    // Bad requests.
    let mut two = chat_body(&model, &url, question, 8);
    two["n"] = json!(2);
    assert_eq!(
        server.post("/v1/chat/completions", two).error(400)["param"],
        "n"
    );
    let other = chat_body("someone/else", &url, question, 8);
    assert_eq!(
        server.post("/v1/chat/completions", other).error(404)["code"],
        "model_not_found"
    );
    let cases = [
        json!({"model": model, "messages": []}),
        json!({"model": model}),
        json!({"model": model, "messages": [{"role": "assistant", "content": "hi"}]}),
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": -1}),
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
        json!({"model": model, "messages": [{"role": "user", "content": "   "}]}),
        json!({"model": model, "messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}),
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}),
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": u64::MAX}),
    ];
    for case in cases {
        let r = server.post("/v1/chat/completions", case.clone());
        let e = r.error(400);
        assert_eq!(e["type"], "invalid_request_error", "{case}: {e}");
    }
    let r = reply(
        ureq::post(&server.url("/v1/chat/completions"))
            .set("Content-Type", "application/json")
            .send_string("{not json"),
    );
    r.error(400);
    // A malformed HTTP request on a raw socket gets a 400, and the server goes on.
    let mut socket =
        std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    socket
        .write_all(b"NONSENSE \x01\x02 HTTP/9\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    let _ = socket.read_to_string(&mut raw);
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert_eq!(server.get("/health").status, 200);

    // Conversation history: an earlier assistant turn changes the prompt.
    let history = json!({"model": model, "max_tokens": 4, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "And now?"}]});
    let r = server.post("/v1/chat/completions", history);
    assert_eq!(r.status, 200, "{}", r.text);
    let single = server.post(
        "/v1/chat/completions",
        json!({"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "And now?"}]}),
    );
    assert!(
        r.json()["usage"]["prompt_tokens"].as_u64().unwrap()
            > single.json()["usage"]["prompt_tokens"].as_u64().unwrap()
    );

    // Unknown routes and methods.
    assert_eq!(
        server.get("/v1/nothing").error(404)["type"],
        "not_found_error"
    );
    let r = reply(ureq::delete(&server.url("/v1/chat/completions")).call());
    r.error(405);

    // Metrics count by route pattern and status.
    let metrics = server.get("/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(metrics.text.contains(
        "video_llava_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"400\"}"
    ));
    assert!(server.metric("video_llava_tokens_generated_total") >= 24.0);
    assert_eq!(server.metric("video_llava_queue_depth"), 0.0);
    assert!(metrics
        .text
        .contains("video_llava_stage_seconds_total{stage=\"decode\"}"));
}

#[test]
fn prefix_cache_off_keeps_nothing_and_answers_the_same() {
    let question = "What happens in the video?";
    let expected = cli_answer(&video("vp9.webm"), question, 6);
    let url = data_url(&video("vp9.webm"), "video/webm");
    {
        let server = Server::start(&["--prefix-cache-mb", "0"]);
        for _ in 0..2 {
            let r = server.post(
                "/v1/chat/completions",
                chat_body(&server.model, &url, question, 6),
            );
            let c = r.json();
            assert_eq!(c["choices"][0]["message"]["content"], expected.as_str());
            assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        }
        assert_eq!(server.metric("video_llava_prefix_cache_entries"), 0.0);
        assert_eq!(server.metric("video_llava_prefix_cache_hits_total"), 0.0);
    }
    let out = Command::new(BIN)
        .args([
            "serve",
            "--model",
            &tiny_model(),
            "--prefix-cache-mb",
            "lots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn uploads_are_probed_thumbnailed_analyzed_and_deleted() {
    let server = Server::start(&["--max-upload-mb", "1"]);
    let clip = video("vp9.webm");

    // Raw body.
    let r = upload(&server, &clip, "clip.webm");
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["filename"], "clip.webm");
    assert_eq!(v["bytes"], std::fs::metadata(&clip).unwrap().len());
    assert_eq!(v["info"]["codec"], "vp9");
    assert!(v["info"]["frame_count"].as_u64().unwrap() > 0);

    // The images are real JPEGs of the video's aspect.
    let thumb = server.get(v["thumbnail_url"].as_str().unwrap());
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), Some("image/jpeg"));
    let img = image::load_from_memory(&thumb.bytes).unwrap();
    let (w, h) = (
        v["info"]["width"].as_u64().unwrap() as f64,
        v["info"]["height"].as_u64().unwrap() as f64,
    );
    assert!(img.width().max(img.height()) <= 320);
    assert!(((img.width() as f64 / img.height() as f64) - w / h).abs() < 0.05);
    let board = server.get(v["storyboard_url"].as_str().unwrap());
    assert_eq!(board.status, 200);
    let sheet = image::load_from_memory(&board.bytes).unwrap();
    assert!(sheet.width() > img.width(), "a grid of frames");

    // Multipart.
    let boundary = "----video-llava-test";
    let mut form = Vec::new();
    write!(
        form,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"other.mkv\"\r\nContent-Type: video/x-matroska\r\n\r\n"
    )
    .unwrap();
    form.extend(std::fs::read(video("vfr.mkv")).unwrap());
    write!(form, "\r\n--{boundary}--\r\n").unwrap();
    let r = reply(
        ureq::post(&server.url("/v1/videos"))
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send_bytes(&form),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let other = r.json();
    assert_eq!(other["filename"], "other.mkv");

    // Bad uploads: corrupt, empty, audio-only, over the limit (raw and multipart).
    let e = upload(&server, &video("bad_random.mp4"), "x.mp4").error(400);
    assert_eq!(e["code"], "video_decode");
    assert!(
        e["message"].as_str().unwrap().contains("x.mp4"),
        "names the upload, not a temporary file: {e}"
    );
    assert_eq!(
        upload(&server, &video("bad_empty.mp4"), "e.mp4").error(400)["code"],
        "empty_upload"
    );
    assert_eq!(
        upload(&server, &video("bad_audio_only.m4a"), "a.m4a").error(400)["code"],
        "no_video_stream"
    );
    let big = video("h264_720p.mp4");
    assert!(std::fs::metadata(&big).unwrap().len() > 1024 * 1024);
    upload(&server, &big, "big.mp4").error(413);
    let mut big_form = Vec::new();
    write!(
        big_form,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n"
    )
    .unwrap();
    big_form.extend(std::fs::read(&big).unwrap());
    write!(big_form, "\r\n--{boundary}--\r\n").unwrap();
    reply(
        ureq::post(&server.url("/v1/videos"))
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send_bytes(&big_form),
    )
    .error(413);
    // A chat request over the limit too.
    let url = data_url(&big, "video/mp4");
    let body = chat_body(&server.model, &url, "what?", 4);
    server.post("/v1/chat/completions", body).error(413);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir.join("videos"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Listing, newest first.
    let list = server.get("/v1/videos").json();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [other["id"].as_str().unwrap(), id.as_str()]);
    assert_eq!(
        server.get(&format!("/v1/videos/{id}")).json()["id"],
        id.as_str()
    );
    assert_eq!(
        server.get("/v1/videos/vid_nope").error(404)["code"],
        "video_not_found"
    );
    server.get("/v1/videos/vid_nope/thumbnail.jpg").error(404);

    // An analysis, queued then done, answers as the CLI does; streamed ones too.
    let expected = cli_answer(&clip, "Describe what happens in this video.", 6);
    let r = server.post(
        &format!("/v1/videos/{id}/analyses"),
        json!({"max_tokens": 6}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let queued = r.json();
    assert_eq!(queued["question"], "Describe what happens in this video.");
    let done = wait_analysis(&server, &id, queued["id"].as_str().unwrap(), "done");
    assert_eq!(done["answer"], expected.as_str());
    assert_eq!(done["completion_tokens"], 6);
    assert_eq!(done["finish_reason"], "length");
    assert!(done["timings"]["prefill"].as_f64().unwrap() > 0.0);

    let r = server.post(
        &format!("/v1/videos/{id}/analyses"),
        json!({"max_tokens": 6, "stream": true, "question": "What is shown?"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let events = sse_events(&r.text);
    assert_eq!(events[0].0, "analysis");
    let (last_name, last) = events.last().unwrap();
    assert_eq!(last_name, "done");
    assert_eq!(last["state"], "done");
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, last["answer"].as_str().unwrap());
    assert_eq!(
        streamed,
        cli_answer(&clip, "What is shown?", 6),
        "the streamed answer is the CLI's"
    );
    // The events of a finished analysis replay its end.
    let aid = last["id"].as_str().unwrap();
    let replay = sse_events(
        &server
            .get(&format!("/v1/videos/{id}/analyses/{aid}/events"))
            .text,
    );
    assert_eq!(replay.last().unwrap().1["answer"], last["answer"]);
    let all = server.get(&format!("/v1/videos/{id}/analyses")).json();
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    server
        .post(
            &format!("/v1/videos/{id}/analyses"),
            json!({"question": " "}),
        )
        .error(400);
    server
        .post(
            &format!("/v1/videos/{id}/analyses"),
            json!({"max_tokens": 0}),
        )
        .error(400);
    server
        .get(&format!("/v1/videos/{id}/analyses/ana_nope"))
        .error(404);

    // Delete: the video, its images and its analyses are gone.
    let r = reply(ureq::delete(&server.url(&format!("/v1/videos/{id}"))).call());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["deleted"], true);
    server.get(&format!("/v1/videos/{id}")).error(404);
    server.get(&format!("/v1/videos/{id}/analyses")).error(404);
    assert!(!server.data_dir.join("videos").join(&id).exists());
    reply(ureq::delete(&server.url(&format!("/v1/videos/{id}"))).call()).error(404);
}

#[test]
fn a_key_is_required_when_set() {
    // From the environment, as a deployment sets it.
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[], &[("VIDEO_LLAVA_API_KEY", "sekrit")]);
    server.wait_ready();
    assert_eq!(
        server.get("/v1/models").error(401)["code"],
        "invalid_api_key"
    );
    let wrong = reply(
        ureq::get(&server.url("/v1/videos"))
            .set("Authorization", "Bearer nope")
            .call(),
    );
    assert_eq!(wrong.error(401)["type"], "authentication_error");
    let right = reply(
        ureq::get(&server.url("/v1/models"))
            .set("Authorization", "Bearer sekrit")
            .call(),
    );
    assert_eq!(right.status, 200);
    // The page and the health check need no key; the page asks for it.
    assert_eq!(server.get("/health").status, 200);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Authorization"));

    // SIGTERM stops it cleanly.
    #[cfg(unix)]
    {
        let mut server = server;
        let status = Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = server.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(exit.success(), "{exit}");
    }
}

/// Text-only chat of `n` tokens (the tiny model runs to the limit).
fn long_chat(model: &str, n: u64, stream: bool) -> Value {
    json!({"model": model, "max_tokens": n, "stream": stream,
           "messages": [{"role": "user", "content": "Tell me a long story."}]})
}

#[test]
fn a_full_queue_is_429_and_a_client_that_leaves_stops_its_generation() {
    // One at a time: B waits while A runs.
    let server = Server::start(&["--max-queue", "1", "--max-batch", "1"]);
    let model = server.model.clone();
    // A: a long streaming generation; its first chunk means it runs.
    let a = ureq::post(&server.url("/v1/chat/completions"))
        .send_json(long_chat(&model, 3000, true))
        .unwrap();
    let mut a_reader = BufReader::new(a.into_reader());
    let mut line = String::new();
    a_reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("data: "), "{line}");
    assert_eq!(server.metric("video_llava_generations_running"), 1.0);

    // B waits in the queue's one place.
    let b_url = server.url("/v1/chat/completions");
    let b_body = long_chat(&model, 5, false);
    let b = std::thread::spawn(move || reply(ureq::post(&b_url).send_json(b_body)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("video_llava_queue_depth") < 1.0 {
        assert!(Instant::now() < deadline, "B never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    // C finds it full.
    let c = server.post("/v1/chat/completions", long_chat(&model, 5, false));
    let e = c.error(429);
    assert_eq!(e["code"], "queue_full");
    assert!(c.header("retry-after").is_some());
    // GET routes answer while the model works.
    assert_eq!(server.get("/v1/videos").status, 200);

    // A's client leaves: its generation stops, and B runs.
    drop(a_reader);
    let b = b.join().unwrap();
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(b.json()["usage"]["completion_tokens"], 5);
    let tokens = server.metric("video_llava_tokens_generated_total");
    assert!(
        tokens < 3000.0,
        "A's generation went on after its client left: {tokens} tokens"
    );
}

#[test]
fn requests_that_arrive_together_decode_together_and_answer_as_alone() {
    let server = Server::start(&["--max-batch", "4"]);
    let url = server.url("/v1/chat/completions");
    let body = |i: u64| {
        json!({"model": server.model, "max_tokens": 600 + 50 * i, "seed": i, "temperature": 0.8,
               "messages": [{"role": "user", "content": format!("Story {i}: {}", "once ".repeat(i as usize))}]})
    };
    let bodies: Vec<Value> = (0..4).map(body).collect();
    let clients: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|b| {
            let url = url.clone();
            std::thread::spawn(move || reply(ureq::post(&url).send_json(b)))
        })
        .collect();
    let mut most = 0.0f64;
    while !clients.iter().all(|c| c.is_finished()) {
        most = most.max(server.metric("video_llava_generations_running"));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        most >= 2.0,
        "the requests never ran together: at most {most}"
    );
    let together: Vec<Value> = clients
        .into_iter()
        .map(|c| c.join().unwrap().json())
        .collect();
    // One at a time now: the same answers.
    for (b, t) in bodies.iter().zip(&together) {
        let alone = server.post("/v1/chat/completions", b.clone()).json();
        assert_eq!(
            alone["choices"][0]["message"]["content"],
            t["choices"][0]["message"]["content"]
        );
        assert_eq!(alone["usage"], t["usage"]);
    }
}

#[test]
fn a_request_past_its_deadline_is_504() {
    // The deadline counts from arrival: a media host that never answers in time runs it out.
    let (base, host) = media_host(2);
    let server = Server::start(&[
        "--request-timeout",
        "1",
        "--allow-remote-media",
        "--remote-media-timeout",
        "30",
    ]);
    for stream in [false, true] {
        let mut body = chat_body(&server.model, &format!("{base}/slow"), "what?", 4);
        body["stream"] = json!(stream);
        let e = server.post("/v1/chat/completions", body).error(504);
        assert_eq!(e["code"], "timeout");
    }
    assert_eq!(server.get("/health").status, 200);
    host.join().unwrap();
}

#[test]
fn a_stream_that_waits_long_starts_and_reports_a_later_error_in_the_stream() {
    // One at a time, so B and C wait for A.
    let server = Server::start(&[
        "--stream-start-timeout",
        "1",
        "--max-queue",
        "4",
        "--max-batch",
        "1",
    ]);
    let url = server.url("/v1/chat/completions");
    // A: 3,000 tokens keep the model busy for seconds.
    let a_url = url.clone();
    let a_body = long_chat(&server.model, 3000, false);
    let a = std::thread::spawn(move || reply(ureq::post(&a_url).send_json(a_body)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("video_llava_generations_running") < 1.0 {
        assert!(Instant::now() < deadline, "the first request never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Queued behind it, B (fine) and C (a prompt too long, found only when it runs) start
    // their streams after 1 s; C's error comes as an event, then [DONE].
    let spawn = |body: Value| {
        let url = url.clone();
        std::thread::spawn(move || reply(ureq::post(&url).send_json(body)))
    };
    let b = spawn(long_chat(&server.model, 4, true));
    let c = spawn(long_chat(&server.model, 5000, true));
    for (r, fails) in [(b.join().unwrap(), false), (c.join().unwrap(), true)] {
        assert_eq!(r.status, 200, "{}", r.text);
        let data = sse_data(&r.text);
        let first: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(data.last().unwrap(), "[DONE]");
        let end: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        if fails {
            assert_eq!(end["error"]["code"], "prompt_too_long", "{end}");
        } else {
            assert_eq!(end["choices"][0]["finish_reason"], "length", "{end}");
        }
    }
    assert_eq!(a.join().unwrap().status, 200);
}

#[test]
fn uploads_and_finished_analyses_survive_a_restart_and_interrupted_ones_fail() {
    let data = tempfile::tempdir().unwrap();
    let mut first = Server::start_in(data.path(), &[], &[]);
    first.wait_ready();
    let v = upload(&first, &video("vp9.webm"), "clip.webm").json();
    let id = v["id"].as_str().unwrap().to_string();
    let a = first
        .post(
            &format!("/v1/videos/{id}/analyses"),
            json!({"max_tokens": 5}),
        )
        .json();
    let done = wait_analysis(&first, &id, a["id"].as_str().unwrap(), "done");
    let long = first
        .post(
            &format!("/v1/videos/{id}/analyses"),
            json!({"max_tokens": 2000}),
        )
        .json();
    wait_analysis(&first, &id, long["id"].as_str().unwrap(), "running");
    first.kill();

    let mut second = Server::start_in(data.path(), &[], &[]);
    second.wait_ready();
    let list = second.get("/v1/videos").json();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let thumb = second.get(&format!("/v1/videos/{id}/thumbnail.jpg"));
    assert_eq!(thumb.status, 200);
    image::load_from_memory(&thumb.bytes).unwrap();
    let again = second
        .get(&format!(
            "/v1/videos/{id}/analyses/{}",
            a["id"].as_str().unwrap()
        ))
        .json();
    assert_eq!(again["state"], "done");
    assert_eq!(again["answer"], done["answer"]);
    let interrupted = second
        .get(&format!(
            "/v1/videos/{id}/analyses/{}",
            long["id"].as_str().unwrap()
        ))
        .json();
    assert_eq!(interrupted["state"], "failed");
    assert!(
        interrupted["answer"].is_null(),
        "no half answer: {interrupted}"
    );
    assert!(interrupted["error"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
}

#[test]
fn health_is_503_while_the_model_loads_and_a_failed_load_stops_the_server() {
    // A hub that accepts the connection and answers nothing until told: the model stays loading.
    let hub = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hub.local_addr().unwrap());
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let hub_thread = std::thread::spawn(move || {
        let (mut conn, _) = hub.accept().unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(60));
        let _ = conn.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    });
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_str = cache.path().to_str().unwrap().to_string();
    let mut server = Server::start_in(
        data.path(),
        &["--model", "nobody/no-such-model"],
        &[
            ("HF_HUB_OFFLINE", "0"),
            ("HF_ENDPOINT", &endpoint),
            ("HF_HOME", &cache_str),
            ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ],
    );
    let e = server.get("/health").error(503);
    assert_eq!(e["code"], "model_loading");
    let body = chat_body(
        "nobody/no-such-model",
        "data:video/mp4;base64,AAAA",
        "hi",
        4,
    );
    server.post("/v1/chat/completions", body).error(503);
    assert_eq!(
        server.get("/v1/videos").status,
        200,
        "the rest works meanwhile"
    );

    release_tx.send(()).unwrap();
    hub_thread.join().unwrap();
    let status = server.child.wait().unwrap();
    let mut err = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("error: nobody/no-such-model"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Serves `GET /clip.webm` (the video), `/slow` (answers after 3 s) and `/big` (2 MiB) on
/// 127.0.0.1, for `connections` connections.
fn media_host(connections: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clip = std::fs::read(video("vp9.webm")).unwrap();
    let handle = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..connections {
            let (mut conn, _) = listener.accept().unwrap();
            let clip = clip.clone();
            workers.push(std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = match path.as_str() {
                    "/clip.webm" => clip,
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        clip
                    }
                    _ => vec![0u8; 2 * 1024 * 1024],
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: video/webm\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }));
        }
        for w in workers {
            let _ = w.join();
        }
    });
    (base, handle)
}

#[test]
fn remote_media_is_fetched_only_when_allowed_and_within_limits() {
    let (base, host) = media_host(3);
    let server = Server::start(&[
        "--allow-remote-media",
        "--remote-media-timeout",
        "1",
        "--max-upload-mb",
        "1",
    ]);
    let question = "What happens in the video?";
    let r = server.post(
        "/v1/chat/completions",
        chat_body(&server.model, &format!("{base}/clip.webm"), question, 8),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        cli_answer(&video("vp9.webm"), question, 8).as_str()
    );
    let e = server
        .post(
            "/v1/chat/completions",
            chat_body(&server.model, &format!("{base}/slow"), question, 8),
        )
        .error(400);
    assert!(e["message"].as_str().unwrap().contains("download"), "{e}");
    let e = server
        .post(
            "/v1/chat/completions",
            chat_body(&server.model, &format!("{base}/big"), question, 8),
        )
        .error(413);
    assert_eq!(e["code"], "media_too_large");
    host.join().unwrap();
}
