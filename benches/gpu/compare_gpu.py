"""This engine against transformers on a GPU, same weights, same prompt, same run (issue: speed).

Run by benches/gpu/run.sh on the GPU machine (torch + transformers with CUDA 13 there, no Rust, no
network); `stages` is this repo's `video-llava/examples/stages.rs` built here with
`--no-default-features --features cuda` (benches/gpu/build.sh) and carried over.

    python3 benches/gpu/compare_gpu.py --binary .gpu-carry/stages [--shapes 7b] [--device cuda]
        [--dtype bf16] [--reps 3] [--new-tokens 32] [--markdown FILE]

Steps: build a random Video-LLaVA with the real model's shapes (`--shapes 7b`, ~7.5 B parameters)
in place on the device, save it (bfloat16 safetensors + the project's tokenizer fixture), run
`stages` on it (a separate process: load, then vision / prefill / decode with a warm-up rep), then
time transformers' same three stages on the same prompt ids (written by `stages`), alternating is
not possible across processes, so each side gets a warm-up rep and the medians of `--reps` reps.
`--shapes mid --device cpu --dtype f32` runs the same script on a CPU machine (a check of the script).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from compare import reference_stages  # noqa: E402
from make_bench_model import random_model, save  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
FRAMES = 8


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_transformers(model, ids, pixels, device, new_tokens, reps):
    """compare.py's reference stages, device-synchronized, medians of `reps` after a warm-up rep."""
    times = {"vision": [], "prefill": [], "decode": []}
    for rep in range(reps + 1):
        v, p, d = reference_stages(model, ids, pixels, new_tokens, sync=lambda: sync(device))
        print(f"transformers rep {rep}: vision {v:.4f}s prefill {p:.4f}s decode {d:.2f} tok/s", flush=True)
        if rep > 0:
            times["vision"].append(v)
            times["prefill"].append(p)
            times["decode"].append(d)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True, help="the carried `stages` binary")
    ap.add_argument("--shapes", choices=["mid", "7b"], default="7b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--model-dir", help="where to save the random model (default: a temporary folder)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--quantize", default="q4k,q8_0",
                    help="also time ours with these weight quantizations (comma-separated; '' for none)")
    args = ap.parse_args()
    dtype = DTYPES[args.dtype]
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device: {card}; torch {torch.__version__}; python {platform.python_version()}", flush=True)

    tmp = None
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="vl-gpu-")
        model_dir = Path(tmp.name)
    t = time.perf_counter()
    model = random_model(args.shapes, args.device)
    params = sum(p.numel() for p in model.parameters())
    save(model, model_dir)
    print(f"random {args.shapes} model: {params / 1e9:.2f} B parameters, built and saved in "
          f"{time.perf_counter() - t:.1f}s to {model_dir}", flush=True)
    model = model.to(dtype).eval()
    sync(args.device)

    # Ours, in its own process (the transformers copy stays on the device meanwhile: 2 x 15 GB fits).
    def run_ours(quantize="none"):
        with tempfile.NamedTemporaryFile(suffix=".json") as js:
            cmd = [args.binary, "--model", str(model_dir), "--device", args.device.split(":")[0], "--dtype",
                   args.dtype, "--quantize", quantize, "--reps", str(args.reps), "--new-tokens",
                   str(args.new_tokens), "--frames", str(FRAMES), "--json", js.name]
            print("$ " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            return json.loads(Path(js.name).read_text())

    ours = run_ours()
    quantized = {q: run_ours(q) for q in args.quantize.split(",") if q}

    ids = torch.tensor([ours["ids"]], device=args.device)
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand((1, FRAMES, 3, 224, 224), generator=g) * 4 - 2).to(args.device, dtype)
    ref = time_transformers(model, ids, pixels, args.device, args.new_tokens, args.reps)

    vp_ref, vp_ours = ref["vision"] + ref["prefill"], ours["vision_s"] + ours["prefill_s"]
    rows = [
        f"\n### Video-LLaVA {args.shapes} shapes, random weights, {args.dtype} on {card} "
        f"({params / 1e9:.2f} B parameters, prompt {ours['prompt_tokens']} tokens, {FRAMES} frames, "
        f"{args.new_tokens} new tokens, median of {args.reps} reps after a warm-up)\n",
        "| stage | transformers | video_llava | speed-up |", "|---|---:|---:|---:|",
        f"| vision (s) | {ref['vision']:.4f} | {ours['vision_s']:.4f} | {ref['vision'] / ours['vision_s']:.2f}x |",
        f"| prefill (s) | {ref['prefill']:.4f} | {ours['prefill_s']:.4f} | {ref['prefill'] / ours['prefill_s']:.2f}x |",
        f"| vision + prefill (s) | {vp_ref:.4f} | {vp_ours:.4f} | {vp_ref / vp_ours:.2f}x |",
        f"| decode (tokens/s) | {ref['decode']:.2f} | {ours['decode_tok_s']:.2f} | "
        f"{ours['decode_tok_s'] / ref['decode']:.2f}x |",
        *[f"| {q}: vision + prefill (s), decode (tokens/s) | | {r['vision_s'] + r['prefill_s']:.4f}, "
          f"{r['decode_tok_s']:.2f} | {vp_ref / (r['vision_s'] + r['prefill_s']):.2f}x, "
          f"{r['decode_tok_s'] / ref['decode']:.2f}x |" for q, r in quantized.items()],
        f"\nvideo_llava load: {ours['load_s']:.1f}s. Targets (issue 7, H100, bf16): decode >= 2x, "
        f"vision + prefill <= 0.5x transformers' time: decode {ours['decode_tok_s'] / ref['decode']:.2f}x, "
        f"vision + prefill {vp_ours / vp_ref:.2f}x.",
    ]
    text = "\n".join(rows)
    print(text, flush=True)
    if args.markdown:
        Path(args.markdown).write_text(f"Command: `{' '.join(sys.argv)}`; {card}; torch {torch.__version__}\n{text}\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
