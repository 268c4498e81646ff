#!/usr/bin/env python3
"""Analyze a bucket of videos on a Ray cluster: Parquet and JSONL results, resumable.

    python examples/ray/batch_analyze.py INPUT --model MODEL --out DIR [options]

INPUT is a folder, a glob (``'videos/**/*.mp4'``), a CSV file with a ``path`` column, or an
object-store prefix (``s3://bucket/uploads/``, anything ``ray.data.read_binary_files`` reads).
Each finished video is appended to ``DIR/results.jsonl`` at once (its thumbnail written to
``DIR/thumbnails/``), and each run's rows, thumbnails included, to a ``DIR/part-*.parquet``.
A rerun skips every input already in ``results.jsonl``, failed ones too (``--retry-failed``
tries those again), so an interrupted run loses only the videos in flight.

``--address`` joins a running cluster (``ray start --head``, or ``auto``); without it a local
one is started. The workers need the ``video_llava`` wheel: install it in the image, or pass
``--wheel path/to/video_llava-*.whl`` to ship it in the job's ``runtime_env``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data
from video_llava.ray import analyze_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="folder, glob, CSV of paths, or object-store prefix")
    p.add_argument("--model", required=True, help="checkpoint directory or Hub repo id")
    p.add_argument("--out", required=True, type=Path, help="results directory")
    p.add_argument("--question", default=None)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--quantize", default=None, help="q8_0, q4k or q6k")
    p.add_argument("--actors", type=int, default=1, help="model replicas (actors)")
    p.add_argument("--cpus-per-actor", type=float, default=None)
    p.add_argument("--gpus-per-actor", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--no-thumbnails", action="store_true")
    p.add_argument(
        "--retry-failed", action="store_true", help="analyze failed inputs again"
    )
    p.add_argument("--address", default=None, help="a running Ray cluster's address")
    p.add_argument(
        "--wheel", type=Path, default=None, help="video_llava wheel for the workers"
    )
    return p.parse_args(argv)


def done_paths(results: Path, retry_failed: bool) -> set[str]:
    """The inputs a previous run recorded (a torn last line, from a kill, is ignored)."""
    done: set[str] = set()
    if not results.exists():
        return done
    for line in results.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if retry_failed and row.get("error"):
            continue
        done.add(row["path"])
    return done


def local_inputs(spec: str) -> list[str] | None:
    """The input files of a folder, glob or CSV; None for an object-store prefix."""
    if "://" in spec:
        return None
    path = Path(spec)
    if path.is_dir():
        return sorted(
            str(p)
            for p in path.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
    if path.suffix.lower() == ".csv" and path.is_file():
        with path.open(newline="") as f:
            return [row["path"] for row in csv.DictReader(f) if row.get("path")]
    if any(c in spec for c in "*?["):
        return sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    if path.is_file():
        return [str(path)]
    sys.exit(f"error: {spec}: no such folder, file or glob match")


def plain(value: Any) -> Any:
    """Ray's row values as JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    thumbs = args.out / "thumbnails"
    done = done_paths(results, args.retry_failed)

    runtime_env = {"py_modules": [str(args.wheel)]} if args.wheel else None
    ray.init(address=args.address, runtime_env=runtime_env, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    files = local_inputs(args.input)
    if files is not None:
        skipped = sum(1 for f in files if f in done)
        todo = [f for f in files if f not in done]
        ds = ray.data.from_items([{"path": f} for f in todo]) if todo else None
    else:
        ds = ray.data.read_binary_files(args.input, include_paths=True)
        ds = ds.filter(lambda row: row["path"] not in done)
        skipped = len(done)

    options: dict[str, Any] = {
        "model": args.model,
        "frames": args.frames,
        "max_new_tokens": args.max_new_tokens,
        "thumbnails": not args.no_thumbnails,
        "concurrency": args.actors,
        "num_cpus": args.cpus_per_actor,
        "num_gpus": args.gpus_per_actor,
        "batch_size": args.batch_size,
        "device": args.device,
        "quantize": args.quantize,
        "seed": args.seed,
    }
    if args.question:
        options["question"] = args.question

    analyzed = failed = 0
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    if ds is not None:
        with results.open("a") as log:
            for row in analyze_dataset(ds, **options).iter_rows():
                row = plain(dict(row))
                record = dict(row)
                if row.get("thumbnail") is not None:
                    thumbs.mkdir(exist_ok=True)
                    digest = hashlib.sha1(row["path"].encode()).hexdigest()[:12]
                    name = thumbs / f"{Path(row['path']).stem}-{digest}.jpg"
                    name.write_bytes(row["thumbnail"])
                    record["thumbnail"] = str(name)
                log.write(json.dumps(record) + "\n")
                log.flush()
                rows.append(row)
                analyzed += 1
                failed += bool(row.get("error"))
    if rows:
        import pyarrow as pa
        import pyarrow.parquet as pq

        part = args.out / f"part-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), part)
    elapsed = time.perf_counter() - started
    print(
        f"analyzed {analyzed} videos ({failed} failed), {skipped} already done, in {elapsed:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
