"""Conversation: questions from one cached prefix equal fresh generate calls, token for token."""

from __future__ import annotations

import gc
import threading

import pytest
import video_llava as vl
from conftest import TINY

QUESTIONS = ["What happens in this video?", "Give it a title.", "Why"]
SAMPLED = {"temperature": 1.0, "top_k": 40, "top_p": 0.95, "seed": 7}


def frames(bikes):
    return vl.sample_frames(bikes, 8, resize=64)


def test_answers_equal_fresh_generate(model, bikes):
    batch = frames(bikes)
    image = batch.frames[0]
    for media in ({"frames": batch.frames}, {"image": image}, {"image": image, "video": batch}, {}):
        conversation = model.conversation(**media)
        assert conversation.prefix_tokens > 0 and conversation.prefix_bytes > 0
        for question in QUESTIONS:
            for options in ({}, SAMPLED):
                want = model.generate(question, max_new_tokens=8, **media, **options)
                got = conversation.generate(question, max_new_tokens=8, **options)
                assert (got.token_ids, got.text, got.stop_reason) == (
                    want.token_ids,
                    want.text,
                    want.stop_reason,
                ), (media.keys(), question, options)
                assert got.prompt_tokens == want.prompt_tokens
                assert want.cached_tokens == 0
                assert 0 < got.cached_tokens <= conversation.prefix_tokens
                assert got.timings.vision == 0.0


def test_chat_appends_turns(model, bikes):
    batch = frames(bikes)
    conversation = model.conversation(video=batch)
    history: list[tuple[str, str]] = []
    for question in ["What happens first?", "And then?"]:
        want = model.generate(question, video=batch, history=history, max_new_tokens=6, **SAMPLED)
        got = conversation.chat(question, max_new_tokens=6, **SAMPLED)
        assert got.token_ids == want.token_ids and got.text == want.text
        history.append((question, want.text))
        assert conversation.history == history


def test_stream_and_threads(model, bikes):
    conversation = model.conversation(video=frames(bikes))
    want = [conversation.generate(q, max_new_tokens=6, **SAMPLED).token_ids for q in QUESTIONS]
    stream = conversation.stream(QUESTIONS[0], max_new_tokens=6, **SAMPLED)
    text = "".join(stream)
    assert stream.generation is not None
    assert stream.generation.token_ids == want[0] and stream.generation.text == text

    results: dict[int, list[int]] = {}

    def ask(k: int) -> None:
        results[k] = conversation.generate(QUESTIONS[k], max_new_tokens=6, **SAMPLED).token_ids

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[k] for k in range(len(QUESTIONS))] == want


def test_bad_questions_and_closed(model, bikes):
    conversation = model.conversation(video=frames(bikes))
    with pytest.raises(vl.PromptTooLongError):
        conversation.generate("word " * 5000, max_new_tokens=4)
    with pytest.raises(vl.InvalidRequestError):
        conversation.generate("", max_new_tokens=4)
    with pytest.raises(vl.InvalidRequestError, match="<image> or <video>"):
        conversation.generate("Compare <video> with this.", max_new_tokens=4)
    with pytest.raises(vl.InvalidRequestError):
        conversation.generate("Why", max_new_tokens=-1)
    with pytest.raises(vl.InvalidRequestError):
        model.conversation(history=[("only a question",)])
    assert conversation.generate("Why", max_new_tokens=2).token_ids

    with model.conversation() as text_only:
        assert not text_only.closed
    assert text_only.closed
    for call in (
        lambda: text_only.generate("Why", max_new_tokens=2),
        lambda: text_only.chat("Why", max_new_tokens=2),
        lambda: text_only.stream("Why", max_new_tokens=2),
        lambda: text_only.prefix_tokens,
    ):
        with pytest.raises(vl.InvalidRequestError, match="closed"):
            call()
    assert "closed" in repr(text_only)


def test_a_conversation_keeps_its_model_alive():
    model = vl.VideoLlava.from_pretrained(str(TINY), device="cpu", dtype="float32")
    want = model.generate("Why", max_new_tokens=4).token_ids
    conversation = model.conversation()
    del model
    gc.collect()
    assert conversation.generate("Why", max_new_tokens=4).token_ids == want
