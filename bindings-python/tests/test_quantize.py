"""Quantized loading from Python: in-situ, save_quantized and reloading, and the typed errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import video_llava as vl
from conftest import FIXTURES, TINY


@pytest.fixture(scope="module")
def q8(tmp_path_factory) -> tuple[vl.VideoLlava, Path]:
    model = vl.VideoLlava.from_pretrained(TINY, quantize="q8_0")
    saved = tmp_path_factory.mktemp("q8") / "tiny-q8_0"
    path = model.save_quantized(saved)
    return model, Path(path)


def test_in_situ_quantization_changes_the_logits_a_little(model, golden, q8):
    _, tensors = golden
    quantized, _ = q8
    assert quantized.quantization == "q8_0"
    assert not quantized.vision_quantized
    assert quantized.quantization_fallbacks == []
    ids = tensors["text.input_ids"]
    full, q = model.logits(ids), quantized.logits(ids)
    err = np.abs(q - full).max()
    # Q8_0 on tiny-legacy moves no logit by more than 0.099 (the Rust fidelity test bounds it).
    assert 0 < err < 0.12


def test_saved_model_loads_as_saved_and_answers_the_same(q8, bikes):
    quantized, gguf = q8
    assert gguf.name == "model.gguf"
    assert (gguf.parent / "config.json").is_file()
    assert (gguf.parent / "tokenizer.json").is_file()
    reloaded = vl.VideoLlava.from_pretrained(gguf.parent)
    assert reloaded.quantization == "q8_0"
    kwargs = dict(video=bikes, max_new_tokens=6)
    a = quantized.generate("What happens?", **kwargs)
    b = reloaded.generate("What happens?", **kwargs)
    assert a.token_ids == b.token_ids
    assert a.text == b.text


def test_fallbacks_are_reported():
    model = vl.VideoLlava.from_pretrained(TINY, quantize="q4k", quantize_vision=True)
    assert model.quantization == "q4k"
    assert model.vision_quantized
    fallbacks = model.quantization_fallbacks
    # Rows of 32 and 64 fit Q8_0 blocks, not Q4K's 256: every Llama linear falls back.
    assert len(fallbacks) == 15
    assert all("kept as Q8_0" in f for f in fallbacks)


def test_bad_quantized_inputs(q8, tmp_path):
    _, gguf = q8
    with pytest.raises(vl.InvalidRequestError, match="none, q8_0, q4k, q6k"):
        vl.VideoLlava.from_pretrained(TINY, quantize="q3k")
    with pytest.raises(ValueError):
        vl.VideoLlava.from_pretrained(TINY, quantize="int4")
    # Quantizing a GGUF directory again.
    with pytest.raises(vl.InvalidRequestError, match="cannot be quantized again"):
        vl.VideoLlava.from_pretrained(gguf.parent, quantize="q4k")
    # Saving a model loaded without quantization, and into a directory that is not empty.
    plain = vl.VideoLlava.from_pretrained(FIXTURES / "tiny-f16")
    with pytest.raises(vl.InvalidRequestError, match="without quantization"):
        plain.save_quantized(tmp_path / "plain")
    quantized, _ = q8
    with pytest.raises(vl.InvalidRequestError, match="not empty"):
        quantized.save_quantized(gguf.parent)
    # A truncated GGUF, and one whose config was edited.
    cut = tmp_path / "cut"
    shutil.copytree(gguf.parent, cut)
    data = (cut / "model.gguf").read_bytes()
    (cut / "model.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(vl.ModelLoadError, match="truncated"):
        vl.VideoLlava.from_pretrained(cut)
    edited = tmp_path / "edited"
    shutil.copytree(gguf.parent, edited)
    config = (edited / "config.json").read_text()
    config = config.replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": 1e-06')
    assert config != (gguf.parent / "config.json").read_text()
    (edited / "config.json").write_text(config)
    with pytest.raises(vl.ModelLoadError, match="does not match"):
        vl.VideoLlava.from_pretrained(edited)


def test_a_half_precision_kv_cache(model, golden, bikes):
    _, tensors = golden
    assert model.kv_cache_dtype == "float32"
    half = vl.VideoLlava.from_pretrained(TINY, kv_cache_dtype="f16")
    assert half.kv_cache_dtype == "float16"
    assert half.dtype == "float32"
    ids = tensors["text.input_ids"]
    err = np.abs(half.logits(ids) - model.logits(ids)).max()
    # The keys and values are rounded to f16 (the Rust fidelity test measured at most 1.2e-3).
    assert 0 < err < 5e-3
    # A conversation's cached prefix and a fresh prefill read the same rounded values.
    conversation = half.conversation(video=bikes)
    got = conversation.generate("What happens?", max_new_tokens=6)
    want = half.generate("What happens?", video=bikes, max_new_tokens=6)
    assert got.token_ids == want.token_ids
    bf16 = vl.VideoLlava.from_pretrained(TINY, kv_cache_dtype="bfloat16")
    assert bf16.kv_cache_dtype == "bfloat16"
    with pytest.raises(vl.InvalidRequestError, match="float32, float16 or bfloat16"):
        vl.VideoLlava.from_pretrained(TINY, kv_cache_dtype="int8")
