#!/usr/bin/env python3
"""Writes the committed seed corpus under fuzz/seeds/<target>/ (run from anywhere; needs ffmpeg
with libx264 and libvpx). Each sampler seed is a request header (the bytes the target reads
first) followed by a small real video; the rest are JSON, text and tiny weight files."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
FIXTURE = HERE.parent / "video-llava" / "tests" / "fixtures" / "tiny-legacy"


def write(target: str, name: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def tiny_videos() -> dict[str, bytes]:
    """Three 32x32 clips of 6 frames: H.264 in MP4 and MPEG-TS, VP9 in WebM."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in {
            "h264.mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "3", "-bf", "1"],
            "h264.ts": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "3", "-f", "mpegts"],
            "vp9.webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-g", "3"],
        }.items():
            path = Path(tmp) / name
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
                 "-i", "testsrc=size=32x32:rate=6:duration=1", *args, "-pix_fmt", "yuv420p",
                 str(path)],
                check=True,
            )
            out[name] = path.read_bytes()
    return out


def sampler() -> None:
    # Header: frame count, strategy, (payload of the strategy), seek, resize side, resize kind,
    # storyboard size. Uniform 4 exact, keyframes fast with a resize, timestamps with a storyboard.
    headers = {
        "uniform": bytes([4, 0, 0, 0, 0, 2]),
        "keyframes_fast": bytes([3, 5, 1, 16, 1, 0]),
        "timestamps": bytes([2, 3, 10, 0, 50, 0, 0, 24, 2, 3]),
    }
    for video, data in tiny_videos().items():
        for request, header in headers.items():
            write("sampler", f"{request}-{video}", header + data)


def planner() -> None:
    write("planner", "uniform-30", bytes([8, 0, 0, 0]) + bytes([30, 0, 2, 0, 0, 1]) + bytes(64) +
          bytes([33, 0] * 30))
    write("planner", "every-vfr", bytes([0, 4, 10, 0, 1, 1]) + bytes([200, 0, 0, 1, 0]) +
          bytes([64, 1, 240, 0, 1]) + bytes([10, 0, 250, 1] * 200))
    write("planner", "indices-nan", bytes([3, 2, 1, 0, 255, 255, 9, 0, 0, 0]) + bytes([5, 0, 9]) +
          bytes([0, 0, 0, 0, 0, 0, 0, 248, 127, 0]) + bytes([40, 0] * 4))


def config() -> None:
    text = (FIXTURE / "config.json").read_text()
    write("config", "tiny-legacy.json", text.encode())
    write("config", "truncated.json", text[: len(text) // 2].encode())
    c = json.loads(text)
    c["text_config"]["hidden_size"] = 0
    write("config", "zero-hidden.json", json.dumps(c).encode())


def safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, data, offset = {}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def gguf() -> bytes:
    """GGUF v3 with one string key and one 2x2 f32 tensor."""
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x)) + x.encode()
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    out += s("general.architecture") + struct.pack("<I", 8) + s("video-llava")
    out += s("language_model.lm_head.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 2, 2)
    out += struct.pack("<IQ", 0, 0)  # type f32, offset 0
    out += bytes((-len(out)) % 32)  # alignment
    return out + struct.pack("<4f", 1, 2, 3, 4)


def weights() -> None:
    write("weights", "safetensors-one", b"\0" + safetensors({"w": ("F32", [2, 2], bytes(16))}))
    write("weights", "safetensors-bf16", b"\0" + safetensors({"a": ("BF16", [3], bytes(6)),
                                                             "b": ("F16", [1, 2], bytes(4))}))
    index = {"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}
    write("weights", "index", b"\1" + json.dumps(index).encode())
    write("weights", "index-escape", b"\1" + json.dumps({"weight_map": {"w": "../x"}}).encode())
    write("weights", "gguf", b"\2" + gguf())


def prompt() -> None:
    write("prompt", "plain", bytes([0, 0, 0]) + b"What happens in this video?")
    write("prompt", "video", bytes([0, 2, 1]) + b"Describe it.\x01earlier\x01an answer")
    write("prompt", "placeholders", bytes([1, 1, 0]) + b"<image>\n<video>\nBoth?")


def chat_request() -> None:
    png = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=size=8x8", "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"],
        check=True, capture_output=True,
    ).stdout
    mp4 = tiny_videos()["h264.mp4"]
    bodies = {
        "text": {"model": "video-llava", "messages": [{"role": "user", "content": "Hi"}]},
        "image": {"model": "video-llava", "max_tokens": 8, "stream": True, "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {
                    "url": "data:image/png;base64," + base64.b64encode(png).decode()}}]}]},
        "video": {"model": "video-llava", "temperature": 0.7, "stop": ["\n"], "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "video_url", "video_url": {
                    "url": "data:video/mp4;base64," + base64.b64encode(mp4).decode()}},
                {"type": "text", "text": "What happens?"}]}]},
        "file-url": {"messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}]}]},
    }
    for name, body in bodies.items():
        write("chat_request", f"{name}.json", json.dumps(body).encode())


if __name__ == "__main__":
    for make in (sampler, planner, config, weights, prompt, chat_request):
        make()
    print(f"seeds written under {SEEDS}")
