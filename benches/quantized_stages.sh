#!/usr/bin/env bash
# Model stages per quantization and KV cache dtype, alternating in one run: load, vision, prefill
# and decode of the same video prompt for each configuration below, ROUNDS times each, medians
# printed as a table. Builds the bench model (benches/examples/random_checkpoint.rs) when it is
# missing.
#
#   benches/quantized_stages.sh [MODEL_DIR] [FRAMES] [ROUNDS]
#
# FRAMES=8 is the real 2,075-token video prompt; FRAMES=1 a 276-token one, where decode reads a
# short KV cache and the weights dominate. "decode vs f32" is against f32 weights with the f32
# cache (the default).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.cache/bench-model-mid-bf16}
frames=${2:-8}
rounds=${3:-2}
# weights:kv-cache-dtype
configs="none:float32 none:float16 q8_0:float32 q8_0:float16 q4k:float32 q4k:float16 q6k:float16"
cargo build -q --release -p video-llava --example stages -p video-llava-benches --example random_checkpoint
bin="target/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}release/examples"
if [ ! -f "$model/config.json" ]; then
  "$bin/random_checkpoint" --shapes mid --out "$model"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
  for config in $configs; do
    q=${config%%:*} kv=${config##*:}
    "$bin/stages" --model "$model" --quantize "$q" --kv-cache-dtype "$kv" --frames "$frames" \
      --reps 3 --new-tokens 32 --json "$out/$q-$kv-$round.json" >/dev/null
  done
done
python3 - "$out" "$rounds" "$frames" $configs <<'PY'
import json, statistics, sys
out, rounds, frames, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
rows = {}
for config in configs:
    q, kv = config.split(":")
    runs = [json.load(open(f"{out}/{q}-{kv}-{r}.json")) for r in range(1, rounds + 1)]
    rows[config] = {k: statistics.median(r[k] for r in runs) for k in ["load_s", "vision_s", "prefill_s", "decode_tok_s"]}
    rows[config]["prompt"] = runs[0]["prompt_tokens"]
base = rows["none:float32"]["decode_tok_s"]
print(f"frames {frames}, prompt {rows['none:float32']['prompt']} tokens, medians of {rounds} rounds x 3 reps")
print("| weights | KV cache | load s | vision s | prefill s | decode tok/s | decode vs f32 |")
print("|---|---|---:|---:|---:|---:|---:|")
for config, r in rows.items():
    q, kv = config.split(":")
    name = "f32" if q == "none" else q
    kv = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[kv]
    print(f"| {name} | {kv} | {r['load_s']:.2f} | {r['vision_s']:.3f} | {r['prefill_s']:.3f} | {r['decode_tok_s']:.2f} | {r['decode_tok_s'] / base:.2f}x |")
PY
