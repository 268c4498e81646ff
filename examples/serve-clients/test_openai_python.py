"""`video-llava serve` through the official `openai` Python package.

Run by examples/serve-clients/test.sh, which starts the server and sets VIDEO_LLAVA_URL,
VIDEO_LLAVA_MODEL, VIDEO_LLAVA_BIN (the binary, for the CLI's answer) and VIDEO_LLAVA_VIDEO.
"""

import base64
import json
import os
import subprocess

import openai
import pytest

URL = os.environ["VIDEO_LLAVA_URL"]
MODEL = os.environ["VIDEO_LLAVA_MODEL"]
BIN = os.environ["VIDEO_LLAVA_BIN"]
VIDEO = os.environ["VIDEO_LLAVA_VIDEO"]
QUESTION = "What happens in this video?"
MAX_TOKENS = 8


def cli_answer() -> str:
    out = subprocess.run(
        [BIN, "analyze", "--json", "--device", "cpu", "--model", MODEL, "--question", QUESTION,
         "--max-new-tokens", str(MAX_TOKENS), VIDEO],
        check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(out.stdout)["answer"]


@pytest.fixture(scope="module")
def expected() -> str:
    answer = cli_answer()
    assert answer
    return answer


@pytest.fixture(scope="module")
def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0)


def messages():
    with open(VIDEO, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    return [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": f"data:video/webm;base64,{data}"}},
        {"type": "text", "text": QUESTION},
    ]}]


def test_models_lists_the_loaded_model(client):
    assert [m.id for m in client.models.list()] == [MODEL]


def test_a_completion_answers_as_the_cli_does(client, expected):
    c = client.chat.completions.create(model=MODEL, messages=messages(), max_tokens=MAX_TOKENS, seed=7)
    assert c.object == "chat.completion"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == expected
    assert c.choices[0].finish_reason == "length"
    assert c.usage.completion_tokens == MAX_TOKENS
    assert c.usage.total_tokens == c.usage.prompt_tokens + MAX_TOKENS


def test_a_streamed_completion_answers_as_the_cli_does(client, expected):
    stream = client.chat.completions.create(
        model=MODEL, messages=messages(), max_tokens=MAX_TOKENS, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == MAX_TOKENS


def test_errors_are_the_clients_typed_exceptions(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=messages(), max_tokens=4, n=2)
    assert bad.value.status_code == 400
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="not-this-one", messages=messages(), max_tokens=4)
    corrupt = [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(b"\0" * 4096).decode()}},
        {"type": "text", "text": "?"},
    ]}]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=corrupt, max_tokens=4)
    assert bad.value.code == "video_decode"
