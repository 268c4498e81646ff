"""The tiny-legacy model against transformers' golden outputs, plus generate/stream behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import video_llava as vl
from conftest import TINY

NUM_FRAMES = 8


def case_inputs(case, pixel_inputs):
    kwargs = {}
    if case["video"]:
        kwargs["pixel_values_videos"] = pixel_inputs["video"]
    if case["images"]:
        kwargs["pixel_values_images"] = pixel_inputs["images"][: case["images"]]
    return kwargs


def cases(golden, names=None):
    meta, _ = golden
    return [c for c in meta["cases"] if names is None or c["name"] in names]


def test_model_repr_and_device(model):
    assert model.device == "cpu"
    assert model.dtype == "float32"
    assert "tiny-legacy" in repr(model)


def test_tokenize_matches_processor(model, golden):
    _, tensors = golden
    for case in cases(golden):
        ids = model.tokenize(case["prompt"], num_frames=NUM_FRAMES)
        expected = tensors[f"{case['name']}.input_ids"].tolist()
        assert ids == expected, case["name"]
        assert len(ids) == case["input_len"]


def test_logits_match_reference(model, golden, pixel_inputs):
    _, tensors = golden
    for case in cases(golden):
        ids = tensors[f"{case['name']}.input_ids"]
        logits = model.logits(ids, **case_inputs(case, pixel_inputs))
        expected = tensors[f"{case['name']}.logits"]
        assert logits.dtype == np.float32 and logits.shape == expected.shape
        scale = np.abs(expected).max()
        assert np.abs(logits - expected).max() <= 1e-4 * scale, case["name"]


def test_logits_accepts_lists_and_batched_ids(model, golden):
    _, tensors = golden
    ids = tensors["text.input_ids"]
    a = model.logits(ids)
    assert np.array_equal(a, model.logits(ids.tolist()))
    assert np.array_equal(a, model.logits(ids[None, :].astype(np.int32)))


def test_generate_ids_match_greedy(model, golden, pixel_inputs):
    _, tensors = golden
    for case in cases(golden, {"text", "image", "video"}):
        ids = tensors[f"{case['name']}.input_ids"]
        out = model.generate_ids(ids, max_new_tokens=16, **case_inputs(case, pixel_inputs))
        assert out == tensors[f"{case['name']}.greedy"].tolist(), case["name"]


def test_generate_text_prompt_is_greedy_and_streams_the_same(model, golden):
    _, tensors = golden
    out = model.generate("Say hello.", max_new_tokens=16)
    assert out.token_ids == tensors["text.greedy"].tolist()
    assert out.stop_reason == "max_tokens"
    assert out.prompt_tokens == 12
    assert isinstance(out.text, str) and out.text
    t = out.timings
    assert min(t.prefill, t.decode) > 0 and t.total >= t.prefill + t.decode
    assert set(t.to_dict()) == {"preprocess", "vision", "prefill", "decode"}
    stream = model.stream("Say hello.", max_new_tokens=16)
    pieces = list(stream)
    assert "".join(pieces) == out.text
    assert len(pieces) > 1
    assert stream.generation is not None
    assert stream.generation.token_ids == out.token_ids
    assert list(stream) == []


def test_video_inputs_agree(model, bikes):
    batch = vl.sample_frames(bikes, NUM_FRAMES)
    kwargs = dict(max_new_tokens=6)
    by_path = model.generate("What happens?", video=bikes, **kwargs)
    by_bytes = model.generate("What happens?", video=bikes.read_bytes(), **kwargs)
    by_batch = model.generate("What happens?", video=batch, **kwargs)
    by_frames = model.generate("What happens?", frames=batch.frames, **kwargs)
    assert by_path.token_ids == by_bytes.token_ids == by_batch.token_ids == by_frames.token_ids
    assert by_path.prompt_tokens > 2056  # 8 frames x 257 tokens plus the text
    assert by_path.timings.vision > 0


def test_image_inputs_agree(model, bikes):
    frame = vl.sample_frames(bikes, indices=[40]).frames[0]
    png = vl.thumbnail(bikes, max_size=10_000, format="png")
    a = model.generate("What is shown?", image=frame, max_new_tokens=4)
    b = model.generate("What is shown?", image=[frame], max_new_tokens=4)
    assert a.token_ids == b.token_ids
    c = model.generate("What is shown?", image=png.data, max_new_tokens=4)
    assert len(c.token_ids) == 4
    assert a.prompt_tokens == c.prompt_tokens


def test_sampling_is_seeded(model):
    kw = dict(max_new_tokens=8, temperature=1.0, top_k=50, seed=7)
    assert (
        model.generate("Say hello.", **kw).token_ids == model.generate("Say hello.", **kw).token_ids
    )


def test_stop_string(model):
    full = model.generate("Say hello.", max_new_tokens=16)
    word = full.text.split()[1]
    out = model.generate("Say hello.", max_new_tokens=16, stop=[word])
    assert out.stop_reason == "stop_string"
    assert word not in out.text
    assert full.text.startswith(out.text)


def test_invalid_generation_arguments(model, bikes):
    bad = [
        dict(max_new_tokens=-1),
        dict(top_k=-3),
        dict(seed=-1),
        dict(video=bikes, frames=np.zeros((1, 8, 8, 3), np.uint8)),
        dict(frames=np.zeros((1, 8, 8, 3), np.float32)),
        dict(frames=np.zeros((8, 8, 3), np.uint8)),
        dict(image=np.zeros((8, 8), np.uint8)),
        dict(stop=[1, 2]),
        dict(video=bikes, num_frames=-2),
        dict(video=bikes, sampling="nope"),
    ]
    for kwargs in bad:
        with pytest.raises(vl.InvalidRequestError):
            model.generate("Hi", **kwargs)
        with pytest.raises(ValueError):
            model.generate("Hi", **kwargs)
    with pytest.raises(vl.InvalidRequestError):
        model.logits(np.array([1.5, 2.0]))
    with pytest.raises(vl.InvalidRequestError):
        model.logits(np.array([1, -4]))
    with pytest.raises(vl.InvalidRequestError):
        model.logits([1, 32001, 5], pixel_values_videos=np.zeros((1, 8, 3, 224, 224), np.float64))
    with pytest.raises(vl.InvalidRequestError):
        model.tokenize("hi", num_frames=-1)
    with pytest.raises(TypeError):
        model.generate("Hi", video=3.5)


def test_engine_rejections_are_invalid_request(model, pixel_inputs):
    # Checked by the Rust engine: a placeholder without pixels, pixels of the wrong shape.
    with pytest.raises(vl.InvalidRequestError):
        model.logits(model.tokenize("USER: <video>\nHi ASSISTANT:"))
    with pytest.raises(vl.InvalidRequestError):
        model.logits(
            model.tokenize("USER: <video>\nHi ASSISTANT:"),
            pixel_values_videos=pixel_inputs["video"][:, :, :, :100, :100].copy(),
        )


def test_missing_inputs_are_file_not_found(model, tmp_path):
    with pytest.raises(vl.NotFoundError):
        model.generate("What is shown?", image=tmp_path / "none.png", max_new_tokens=1)
    with pytest.raises(FileNotFoundError):
        model.generate("What happens?", video=str(tmp_path / "none.mp4"), max_new_tokens=1)
    with pytest.raises(FileNotFoundError):
        list(model.stream("What happens?", video=tmp_path / "none.mp4", max_new_tokens=1))


def test_bad_media_in_requests(model, videos):
    with pytest.raises(vl.VideoDecodeError):
        model.generate("What happens?", video=videos / "bad_random.mp4", max_new_tokens=1)
    with pytest.raises(vl.ImageError):
        model.generate("What is shown?", image=b"not an image", max_new_tokens=1)


def test_prompt_too_long(model):
    with pytest.raises(vl.PromptTooLongError):
        model.generate("Say hello.", max_new_tokens=5000)
    with pytest.raises(vl.PromptTooLongError):
        model.generate("hello " * 5000, max_new_tokens=1)
    with pytest.raises(vl.InvalidRequestError):
        model.generate("Say hello.", max_new_tokens=5000)


def test_missing_model_dir(tmp_path):
    with pytest.raises(vl.ModelLoadError) as err:
        vl.VideoLlava.from_pretrained(str(tmp_path / "no-such-model"))
    assert isinstance(err.value, FileNotFoundError)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(vl.ModelLoadError):
        vl.VideoLlava.from_pretrained(empty)


def test_bad_device_and_dtype():
    with pytest.raises(vl.InvalidRequestError):
        vl.VideoLlava.from_pretrained(str(TINY), device="tpu")
    with pytest.raises(vl.InvalidRequestError):
        vl.VideoLlava.from_pretrained(str(TINY), dtype="int8")
    try:
        import_cuda = vl.VideoLlava.from_pretrained(str(TINY), device="cuda:0")
    except vl.DeviceError:
        pass
    else:  # a CUDA build on a GPU machine
        assert import_cuda.device == "cuda:0"


def test_auto_device_and_pathlike(model, golden):
    _, tensors = golden
    auto = vl.VideoLlava.from_pretrained(TINY, device="auto", dtype="float32")
    assert auto.device in ("cpu", "cuda:0", "metal:0")
    if auto.device == "cpu":
        ids = tensors["text.input_ids"]
        assert np.array_equal(auto.logits(ids), model.logits(ids))


def test_request_prompts_match_processor_lengths(model, golden, bikes):
    meta, _ = golden
    length = {c["name"]: c["input_len"] for c in meta["cases"]}
    frames = vl.sample_frames(bikes, NUM_FRAMES).frames
    image = frames[0]
    kw = dict(max_new_tokens=1)
    assert (
        model.generate("Why is this video funny?", frames=frames, **kw).prompt_tokens
        == length["video"]
    )
    assert model.generate("What is shown?", image=image, **kw).prompt_tokens == length["image"]
    two = model.generate("What differs between the two pictures?", image=[image, frames[1]], **kw)
    assert two.prompt_tokens == length["two_images"]
    turn = model.generate(
        "What colour is it?",
        frames=frames,
        history=[("What happens?", "A man rides a bike.")],
        **kw,
    )
    assert turn.prompt_tokens == length["multi_turn"]


def test_device_and_dtype_defaults_are_the_cores():
    # No device: auto (the CPU in a CPU-only build); no dtype: the device's default.
    model = vl.VideoLlava.from_pretrained(TINY)
    if model.device == "cpu":
        assert model.dtype == "float32"
    # Aliases are the core's, the same in every front end.
    half = vl.VideoLlava.from_pretrained(TINY, device="CPU", dtype="bf16")
    assert (half.device, half.dtype) == ("cpu", "bfloat16")
