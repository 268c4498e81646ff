#!/usr/bin/env bash
# Model stages per quantization, alternating in one run: load, vision, prefill and decode of the
# same video prompt in f32 (none), q8_0, q4k and q6k, ROUNDS times each, medians printed as a
# table. Builds the bench model (benches/examples/random_checkpoint.rs) when it is missing.
#
#   benches/quantized_stages.sh [MODEL_DIR] [FRAMES] [ROUNDS]
#
# FRAMES=8 is the real 2,075-token video prompt; FRAMES=1 a 282-token one, where decode reads a
# short KV cache and the weights dominate.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.cache/bench-model-mid-bf16}
frames=${2:-8}
rounds=${3:-2}
cargo build -q --release -p video-llava --example stages -p video-llava-benches --example random_checkpoint
if [ ! -f "$model/config.json" ]; then
  target/release/examples/random_checkpoint --shapes mid --out "$model"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
  for q in none q8_0 q4k q6k; do
    target/release/examples/stages --model "$model" --quantize "$q" --frames "$frames" \
      --reps 3 --new-tokens 32 --json "$out/$q-$round.json" >/dev/null
  done
done
python3 - "$out" "$rounds" "$frames" <<'PY'
import json, statistics, sys
out, rounds, frames = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for q in ["none", "q8_0", "q4k", "q6k"]:
    runs = [json.load(open(f"{out}/{q}-{r}.json")) for r in range(1, rounds + 1)]
    rows[q] = {k: statistics.median(r[k] for r in runs) for k in ["load_s", "vision_s", "prefill_s", "decode_tok_s"]}
    rows[q]["prompt"] = runs[0]["prompt_tokens"]
base = rows["none"]["decode_tok_s"]
print(f"frames {frames}, prompt {rows['none']['prompt']} tokens, medians of {rounds} rounds x 3 reps")
print("| weights | load s | vision s | prefill s | decode tok/s | decode vs f32 |")
print("|---|---:|---:|---:|---:|---:|")
for q, r in rows.items():
    name = "f32" if q == "none" else q
    print(f"| {name} | {r['load_s']:.2f} | {r['vision_s']:.3f} | {r['prefill_s']:.3f} | {r['decode_tok_s']:.2f} | {r['decode_tok_s'] / base:.2f}x |")
PY
