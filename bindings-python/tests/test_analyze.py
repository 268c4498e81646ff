"""VideoLlava.analyze / analyze_many: the core's analyzer (one open per video) from Python."""

from __future__ import annotations

import pytest
import video_llava as vl

QUESTION = "What happens?"
OPTIONS = dict(max_new_tokens=5, seed=3, temperature=0.8)


def test_analyze_matches_generate_sampling_and_thumbnail(model, videos):
    path = videos / "h264_opengop.mp4"
    a = model.analyze(path, question=QUESTION, num_frames=8, **OPTIONS)
    g = model.generate(QUESTION, video=path, num_frames=8, **OPTIONS)
    assert a.answer == g.text and a.generated_tokens == len(g.token_ids)
    assert a.prompt_tokens == g.prompt_tokens and a.stop_reason == g.stop_reason
    assert a.question == QUESTION
    batch = vl.sample_frames(path, 8)
    assert a.frame_indices == batch.indices
    assert a.frame_timestamps == pytest.approx(batch.timestamps)
    assert a.info.frame_count == vl.probe(path).frame_count
    # The thumbnail is chosen among the 8 frames the model saw (nothing more is decoded) ...
    assert a.thumbnail.timestamp in a.frame_timestamps and a.thumbnail.data[:2] == b"\xff\xd8"
    # ... and with fewer frames than 8 by the thumbnail's own search, as vl.thumbnail does.
    few = model.analyze(path, question=QUESTION, num_frames=4, **OPTIONS)
    thumb = vl.thumbnail(path)
    assert few.thumbnail.timestamp == thumb.timestamp and few.thumbnail.data == thumb.data
    t = a.timings
    assert set(t) == {
        "probe",
        "sampling",
        "thumbnail",
        "preprocess",
        "vision",
        "prefill",
        "decode",
        "total",
    }
    assert t["total"] == pytest.approx(sum(v for k, v in t.items() if k != "total"))


def test_analyze_defaults_and_options(model, videos):
    path = videos / "vp9.webm"
    a = model.analyze(
        path,
        max_new_tokens=2,
        sampling="linspace",
        num_frames=4,
        thumbnail_format="png",
        thumbnail_size=64,
    )
    assert a.question == vl.DEFAULT_QUESTION
    assert a.frame_indices == vl.sample_frames(path, 4, sampling="linspace").indices
    assert a.thumbnail.format == "png" and max(a.thumbnail.width, a.thumbnail.height) <= 64
    assert (
        model.analyze(path.read_bytes(), max_new_tokens=2).frame_indices
        == model.analyze(path, max_new_tokens=2).frame_indices
    )


def test_thumbnail_false_makes_none_and_answers_the_same(model, videos):
    path = videos / "vp9.webm"
    full = model.analyze(path, max_new_tokens=3)
    bare = model.analyze(path, max_new_tokens=3, thumbnail=False)
    assert full.thumbnail is not None and bare.thumbnail is None
    assert bare.timings["thumbnail"] == 0.0
    assert (bare.answer, bare.frame_indices) == (full.answer, full.frame_indices)
    [many] = model.analyze_many([path], max_new_tokens=3, thumbnail=False)
    assert many.thumbnail is None and many.answer == full.answer
    # The size is still checked: a typo is an error, not silently unused.
    with pytest.raises(vl.InvalidRequestError):
        model.analyze(path, thumbnail=False, thumbnail_format="gif")


def test_analyze_many_keeps_order_and_reports_each_failure(model, videos):
    paths = [
        videos / "vp9.webm",
        videos / "bad_empty.mp4",
        videos / "mpegts.ts",
        videos / "bad_audio_only.m4a",
    ]
    out = model.analyze_many(paths, question=QUESTION, return_exceptions=True, **OPTIONS)
    assert len(out) == 4
    for path, result in zip(paths[::2], out[::2]):
        assert isinstance(result, vl.Analysis)
        assert result.answer == model.generate(QUESTION, video=path, **OPTIONS).text
    assert isinstance(out[1], vl.VideoDecodeError) and out[1].is_input
    assert isinstance(out[3], vl.NoVideoStreamError) and out[3].kind == "no_video_stream"
    with pytest.raises(vl.VideoDecodeError):
        model.analyze_many(paths, question=QUESTION, **OPTIONS)
    assert model.analyze_many([]) == []


def test_analyze_refuses_bad_options_before_any_video(model, videos):
    with pytest.raises(vl.InvalidRequestError, match="num_frames"):
        model.analyze_many([videos / "missing.mp4"], num_frames=0)
    with pytest.raises(vl.InvalidRequestError, match="keyframes"):
        model.analyze(videos / "vp9.webm", sampling="keyframes")
    with pytest.raises(vl.InvalidRequestError):
        model.analyze(videos / "vp9.webm", thumbnail_format="gif")
    with pytest.raises(TypeError, match=r"videos\[1\]"):
        model.analyze_many([videos / "vp9.webm", 42])
    with pytest.raises(vl.NotFoundError) as e:
        model.analyze(videos / "missing.mp4")
    assert e.value.kind == "not_found" and e.value.is_input
