"""video_llava.ray on a real local Ray cluster (ray.init(num_cpus=2)) with the tiny model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray  # installed by bindings-python/test.sh: a missing Ray fails, never skips
import ray.data
import video_llava as vl
from conftest import ROOT, TINY
from video_llava.ray import COLUMNS, VideoLlavaPredictor, analyze_dataset

GOOD = ["h264_opengop.mp4", "vp9.webm", "mpegts.ts", "rotated_90.mp4"]
QUESTION = "What is in the video?"
OPTIONS = dict(max_new_tokens=6, seed=7, temperature=0.7)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, videos: Path) -> Path:
    """The good test videos plus a zero-byte file, a garbage file and an audio-only file."""
    d = tmp_path_factory.mktemp("bucket")
    for name in GOOD:
        shutil.copy(videos / name, d / name)
    (d / "zero.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(bytes(range(256)) * 64)
    shutil.copy(videos / "bad_audio_only.m4a", d / "audio_only.m4a")
    return d


def test_importing_video_llava_does_not_import_ray():
    code = "import sys, video_llava; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_analyze_dataset_one_row_per_input_equal_to_generate(cluster, folder):
    files = sorted(str(p) for p in folder.iterdir())
    ds = ray.data.from_items([{"path": p} for p in files])
    out = analyze_dataset(
        ds,
        model=TINY,
        question=QUESTION,
        frames=8,
        concurrency=2,
        num_cpus=1,
        batch_size=1,
        device="cpu",
        **OPTIONS,
    )
    rows = {r["path"]: r for r in out.take_all()}
    assert sorted(rows) == files
    assert set(rows[files[0]]) == set(COLUMNS)

    model = vl.VideoLlava.from_pretrained(TINY, device="cpu")
    for name in GOOD:
        row = rows[str(folder / name)]
        assert row["error"] is None, row["error"]
        direct = model.generate(QUESTION, video=folder / name, num_frames=8, **OPTIONS)
        assert row["answer"] == direct.text, name
        assert row["generated_tokens"] == len(direct.token_ids)
        assert row["prompt_tokens"] == direct.prompt_tokens
        assert row["stop_reason"] == direct.stop_reason
        frames = vl.sample_frames(folder / name, 8)
        assert list(row["frame_indices"]) == frames.indices
        assert row["info"]["frame_count"] == vl.probe(folder / name).frame_count
        assert bytes(row["thumbnail"])[:2] == b"\xff\xd8"  # JPEG
        assert row["timings"]["total"] > 0

    for name in ["zero.mp4", "garbage.mp4", "audio_only.m4a"]:
        row = rows[str(folder / name)]
        assert row["error_kind"] == "input", (name, row["error"])
        assert row["error"] and row["answer"] is None
    assert rows[str(folder / "audio_only.m4a")]["error_code"] == "no_video_stream"

    # Seven batches of one, two actors: each actor loaded the model once, in its constructor.
    actors = {r["actor_id"] for r in rows.values()}
    assert None not in actors
    assert 1 <= len(actors) <= 2 < len(rows)


def test_bytes_column_from_read_binary_files(cluster, folder):
    ds = ray.data.read_binary_files(str(folder), include_paths=True)
    out = analyze_dataset(
        ds, model=TINY, question=QUESTION, device="cpu", batch_size=4, **OPTIONS
    ).take_all()
    by_name = {Path(r["path"]).name: r for r in out}
    assert sorted(by_name) == sorted(p.name for p in folder.iterdir())
    direct = vl.VideoLlava.from_pretrained(TINY, device="cpu").generate(
        QUESTION, video=(folder / GOOD[0]).read_bytes(), **OPTIONS
    )
    assert by_name[GOOD[0]]["answer"] == direct.text
    assert by_name["zero.mp4"]["error_kind"] == "input"


def test_predictor_alone_and_bad_options(folder):
    predictor = VideoLlavaPredictor(TINY, device="cpu", question=QUESTION, **OPTIONS)
    assert predictor.load_seconds > 0
    out = predictor({"path": [str(folder / GOOD[0]), str(folder / "zero.mp4")]})
    assert out["error"][0] is None and out["answer"][0]
    assert out["error_kind"][1] == "input"
    with pytest.raises(vl.InvalidRequestError):
        VideoLlavaPredictor(TINY, device="cpu", frames=0)
    with pytest.raises(ValueError, match="'path' or a 'bytes' column"):
        predictor({"name": ["x"]})


def test_batch_example_resumes(cluster, folder, tmp_path):
    script = ROOT / "examples" / "ray" / "batch_analyze.py"
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(script),
        str(folder),
        "--model",
        str(TINY),
        "--out",
        str(out),
        "--question",
        QUESTION,
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
        "--address",
        ray.get_runtime_context().gcs_address,
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "analyzed 7 videos (3 failed), 0 already done" in first.stdout
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 7
    assert list(out.glob("*.parquet"))
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "analyzed 0 videos (0 failed), 7 already done" in second.stdout
    assert (out / "results.jsonl").read_text().splitlines() == lines


def _post(url: str, payload: dict) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications["video-llava"]
    states = app.deployments["VideoLlava"].replica_states
    return int(states.get("RUNNING", 0))


def test_serve_app_scales_from_zero_answers_as_generate_and_back(cluster, videos):
    import socket

    from ray import serve
    from video_llava.ray import serve_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = serve_app(
        TINY,
        model_id="tiny",
        device="cpu",
        allowed_media_dir=videos,
        max_new_tokens=6,
        idle_timeout_s=2.0,
        autoscaling_config={"look_back_period_s": 2.0},
    )
    try:
        serve.run(app, name="video-llava", route_prefix="/")
        assert _running_replicas() == 0  # nothing loaded before the first request
        video = videos / "h264_opengop.mp4"
        payload = {
            "model": "tiny",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": video.as_uri()}},
                        {"type": "text", "text": QUESTION},
                    ],
                }
            ],
        }
        base = f"http://127.0.0.1:{port}"
        status, raw = _post(base + "/v1/chat/completions", payload)  # waits for the scale-up
        assert status == 200, raw
        answer = json.loads(raw)
        direct = vl.VideoLlava.from_pretrained(TINY, device="cpu").generate(
            QUESTION, video=video, num_frames=8, max_new_tokens=6
        )
        assert answer["choices"][0]["message"]["content"] == direct.text
        status, raw = _post(base + "/v1/chat/completions", {**payload, "stream": True})
        assert status == 200
        events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
        assert text == direct.text
        status, raw = _post(base + "/v1/chat/completions", {**payload, "model": "other"})
        assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found"
        import urllib.request

        with urllib.request.urlopen(base + "/v1/models", timeout=30) as r:
            assert [m["id"] for m in json.loads(r.read())["data"]] == ["tiny"]
        status, raw = _post(base + "/v1/nothing", payload)
        assert status == 404 and json.loads(raw)["error"]["code"] == "not_found"
        deadline = time.monotonic() + 90
        while _running_replicas() > 0 and time.monotonic() < deadline:
            time.sleep(1)
        assert _running_replicas() == 0, "the idle deployment did not scale back to zero"
    finally:
        serve.shutdown()
