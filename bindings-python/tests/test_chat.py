"""ChatCompletions: the core's OpenAI chat endpoint from Python, against VideoLlava.generate."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import video_llava as vl
from conftest import TINY

QUESTION = "What is in the video?"


@pytest.fixture(scope="module")
def model() -> vl.VideoLlava:
    return vl.VideoLlava.from_pretrained(TINY, device="cpu")


@pytest.fixture(scope="module")
def chat(model: vl.VideoLlava, videos: Path) -> vl.ChatCompletions:
    return vl.ChatCompletions(model, model_id="tiny", allowed_media_dir=videos, max_new_tokens=6)


def body(url: str, **extra: object) -> dict:
    return {
        "model": "tiny",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": url}},
                    {"type": "text", "text": QUESTION},
                ],
            }
        ],
        **extra,
    }


def test_create_answers_as_generate(chat, model, videos):
    video = videos / "h264_opengop.mp4"
    answer = chat.create(body(video.as_uri()))
    direct = model.generate(QUESTION, video=video, num_frames=8, max_new_tokens=6)
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "tiny"
    assert answer["choices"][0]["message"]["content"] == direct.text
    assert answer["usage"]["completion_tokens"] == len(direct.token_ids)
    assert answer["usage"]["prompt_tokens"] == direct.prompt_tokens
    # The same request as bytes, str and a data: URL answers the same.
    as_bytes = json.dumps(body(video.as_uri())).encode()
    assert chat.create(as_bytes)["choices"] == answer["choices"]
    inline = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    assert chat.create(json.dumps(body(inline)))["choices"] == answer["choices"]


def test_stream_yields_the_same_answer_in_chunks_then_done(chat, videos):
    request = body((videos / "vp9.webm").as_uri(), stream=True)
    assert chat.wants_stream(request)
    whole = chat.create({**request, "stream": False})
    events = list(chat.stream(request))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_bad_requests_raise_with_status_and_openai_body(chat, videos, tmp_path):
    cases = [
        (b"{not json", 400, None),
        ({**body((videos / "vp9.webm").as_uri()), "model": "other"}, 404, "model_not_found"),
        (body((tmp_path / "x.mp4").as_uri()), 400, "media_path_not_allowed"),
        (body("https://example.com/v.mp4"), 400, "remote_media_disabled"),
    ]
    for request, status, code in cases:
        for call in (chat.create, chat.stream):
            with pytest.raises(vl.ChatCompletionError) as info:
                call(request)
            e = info.value
            assert isinstance(e, vl.VideoLlavaError)
            assert e.status == status, (request, e)
            assert e.body["error"]["message"] == str(e)
            if code is not None:
                assert e.code == code
                assert e.body["error"]["code"] == code
    garbage = "data:video/mp4;base64," + base64.b64encode(bytes(range(256)) * 8).decode()
    with pytest.raises(vl.ChatCompletionError) as info:
        chat.stream(body(garbage, stream=True))
    assert info.value.status == 400
    assert info.value.param == "messages[0].content[0].video_url"


def test_bad_settings_are_refused(model, tmp_path):
    with pytest.raises(vl.NotFoundError):
        vl.ChatCompletions(model, allowed_media_dir=tmp_path / "missing")
    with pytest.raises(vl.InvalidRequestError):
        vl.ChatCompletions(model, max_media_mb=0)
    with pytest.raises(vl.InvalidRequestError):
        vl.ChatCompletions(model, max_new_tokens=-1)
    assert vl.ChatCompletions(model).model_id == str(TINY)


def test_models_and_route_errors(chat):
    listed = chat.models(1234)
    assert listed["data"] == [
        {"id": "tiny", "object": "model", "created": 1234, "owned_by": "video-llava"}
    ]
    e = vl.ChatCompletions.no_route("GET", "/nowhere")
    assert isinstance(e, vl.ChatCompletionError)
    assert (e.status, e.code) == (404, "not_found")
    assert "/nowhere" in str(e)
