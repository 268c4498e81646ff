"""A mid-size random Video-LLaVA for the speed comparison (not a test fixture).

    .venv-ref/bin/python benches/make_bench_model.py [--out .cache/bench-model]

About 400 M parameters: two CLIP ViT-B/14-like towers at 224 px (hidden 768, 12 layers; the
real model's token counts: 257 per frame, 2056 for 8 frames) and a Llama with hidden 1024,
12 layers, 16 heads, intermediate 2816, the real vocabulary (32064 rows). Saved in bfloat16
(like the hub checkpoint) with the project's Llama-2 tokenizer fixture beside it. Weights are drawn
with std 1/sqrt(fan_in) so activations stay in range; their values do not matter for speed.

`--shapes 7b` builds the real Video-LLaVA-7B's shapes instead (CLIP ViT-L/14 towers: hidden 1024,
24 layers; Vicuna-7B: hidden 4096, 32 layers, intermediate 11008; about 7.5 B parameters, 15 GB in
bfloat16) for the GPU comparison (`benches/gpu/`); build it with `--device cuda` there.
"""

import argparse
import shutil
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig, VideoLlavaForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "video-llava/tests/fixtures/tokenizer"


def random_model(shapes="mid", device="cpu"):
    """A VideoLlavaForConditionalGeneration with random weights (bfloat16 when built on a GPU)."""
    if shapes == "7b":
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=224, patch_size=14, hidden_act="quick_gelu",
                                  projection_dim=768)
        text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5)
    else:
        vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                  num_attention_heads=12, image_size=224, patch_size=14, hidden_act="quick_gelu")
        text = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
                           num_key_value_heads=16, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5)
    cfg = VideoLlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, video_token_index=32001,
                           pad_token_id=32002, vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    # On a GPU the model is built in place in bfloat16 (a 7B float32 copy on the CPU would take 30 GB and minutes).
    on_gpu = device != "cpu"
    previous = torch.get_default_dtype()
    if on_gpu:
        torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = VideoLlavaForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, fan_in ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model.to(torch.bfloat16)


def save(model, out):
    """Saves `model` in bfloat16 safetensors with the project's tokenizer fixture beside it."""
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    for f in TOKENIZER.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / ".cache/bench-model"))
    ap.add_argument("--shapes", choices=["mid", "7b"], default="mid")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    model = random_model(args.shapes, args.device)
    n = sum(p.numel() for p in model.parameters())
    save(model, args.out)
    print(f"{args.out}: {n / 1e6:.0f} M parameters, bfloat16 on disk")


if __name__ == "__main__":
    main()
