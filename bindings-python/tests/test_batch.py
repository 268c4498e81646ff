"""generate_batch: several requests decoded together answer as each does alone."""

from __future__ import annotations

import pytest
import video_llava as vl

SAMPLED = {"temperature": 0.9, "top_k": 30, "seed": 5}


def requests(bikes):
    batch = vl.sample_frames(bikes, 8, resize=64)
    image = batch.frames[0]
    return [
        {"question": "What happens in this video?", "video": batch, "max_new_tokens": 9},
        {"question": "Why", "image": image, "max_new_tokens": 5, **SAMPLED},
        {"question": "Tell me a story about the sea.", "max_new_tokens": 3},
        {
            "question": "Compare them.",
            "image": image,
            "frames": batch.frames,
            "max_new_tokens": 11,
            **SAMPLED,
        },
        {
            "question": "And then?",
            "video": batch,
            "history": [("Describe it.", "Bikes.")],
            "max_new_tokens": 7,
        },
    ]


def test_batched_answers_equal_generate(model, bikes):
    reqs = requests(bikes)
    want = [model.generate(**r) for r in reqs]
    for max_batch in (1, 2, 5):
        got = model.generate_batch(reqs, max_batch=max_batch)
        assert len(got) == len(reqs)
        for g, w in zip(got, want):
            assert isinstance(g, vl.Generation)
            assert (g.token_ids, g.text, g.stop_reason, g.prompt_tokens) == (
                w.token_ids,
                w.text,
                w.stop_reason,
                w.prompt_tokens,
            ), max_batch


def test_a_failing_request_fails_alone(model, bikes):
    reqs = requests(bikes)[:3]
    reqs.insert(1, {"question": "Why", "max_new_tokens": 10_000_000})
    with pytest.raises(vl.PromptTooLongError):
        model.generate_batch(reqs)
    got = model.generate_batch(reqs, return_exceptions=True)
    assert isinstance(got[1], vl.PromptTooLongError)
    for i, r in [(0, reqs[0]), (2, reqs[2]), (3, reqs[3])]:
        assert got[i].token_ids == model.generate(**r).token_ids


def test_the_kv_bound_refuses_what_cannot_fit(model, bikes):
    reqs = requests(bikes)[:3]
    got = model.generate_batch(reqs, max_kv_bytes=1, return_exceptions=True)
    assert all(isinstance(g, vl.TooLargeError) for g in got), got
    assert "KV caches need" in str(got[0])


def test_bad_arguments_are_typed_errors(model):
    with pytest.raises(TypeError, match="no 'question'"):
        model.generate_batch([{"max_new_tokens": 3}])
    with pytest.raises(TypeError, match="unexpected key 'prompt'"):
        model.generate_batch([{"question": "Why", "prompt": "x"}])
    with pytest.raises(vl.InvalidRequestError, match="requests\\[0\\] must be a dict"):
        model.generate_batch(["Why"])
    with pytest.raises(vl.InvalidRequestError, match="max_batch"):
        model.generate_batch([{"question": "Why"}], max_batch=0)
    assert model.generate_batch([]) == []
