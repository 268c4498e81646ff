"""A mid-size random Video-LLaVA for the speed comparison (not a test fixture).

    .venv-ref/bin/python benches/make_bench_model.py [--out .cache/bench-model]

About 400 M parameters: two CLIP ViT-B/14-like towers at 224 px (hidden 768, 12 layers; the
real model's token counts: 257 per frame, 2056 for 8 frames) and a Llama with hidden 1024,
12 layers, 16 heads, intermediate 2816, the real vocabulary (32064 rows). Saved in bfloat16
(like the hub checkpoint) with the project's Llama-2 tokenizer fixture beside it. Weights are drawn
with std 1/sqrt(fan_in) so activations stay in range; their values do not matter for speed.
"""

import argparse
import shutil
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig, VideoLlavaForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "video-llava/tests/fixtures/tokenizer"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / ".cache/bench-model"))
    args = ap.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, image_size=224, patch_size=14, hidden_act="quick_gelu")
    text = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
                       num_key_value_heads=16, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5)
    cfg = VideoLlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, video_token_index=32001,
                           pad_token_id=32002, vision_feature_layer=-2, vision_feature_select_strategy="default")
    model = VideoLlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, fan_in ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    n = sum(p.numel() for p in model.parameters())
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    for f in TOKENIZER.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    print(f"{out}: {n / 1e6:.0f} M parameters, bfloat16 on disk")


if __name__ == "__main__":
    main()
