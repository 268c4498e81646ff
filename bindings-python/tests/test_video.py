"""`vl.Video`: one handle per file gives what the free functions give, reading the index once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import video_llava as vl

FILES = [
    "h264_bframes_longgop.mp4",
    "vp9.webm",
    "mpegts.ts",
    "mpeg4.avi",
    "vfr.mkv",
    "rotated_90.mp4",
]
FACTS = ("container", "codec", "width", "height", "frame_count", "duration", "rotation")


def same_batch(a: vl.FrameBatch, b: vl.FrameBatch) -> None:
    assert a.indices == b.indices
    assert a.timestamps == b.timestamps
    assert a.clamped == b.clamped
    np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize("name", FILES)
def test_methods_equal_free_functions(videos, name):
    path = videos / name
    with vl.Video(path) as video:
        thumb = video.thumbnail(max_size=96, format="png")
        free = vl.thumbnail(path, max_size=96, format="png")
        assert (thumb.data, thumb.timestamp, thumb.width) == (free.data, free.timestamp, free.width)
        info = video.info
        probed = vl.probe(path)
        for field in FACTS:
            assert getattr(info, field) == getattr(probed, field), field
        for kwargs in (
            {},
            {"num_frames": 4, "seek": "fast", "resize": 32},
            {"indices": [info.frame_count - 1, 0, 3], "resize": (40, 30)},
            {"timestamps": [0.0, info.duration / 2]},
            {"num_frames": 3, "sampling": "keyframes", "resize": {"max_side": 48}},
        ):
            same_batch(video.sample(**kwargs), vl.sample_frames(path, **kwargs))
        board = video.storyboard(3, max_size=64)
        assert [t.data for t in board] == [t.data for t in vl.storyboard(path, 3, max_size=64)]
    assert video.closed


@pytest.mark.parametrize("name", ["vp9.webm", "mpegts.ts", "vfr.mkv"])
def test_index_is_read_once(videos, name):
    video = vl.Video(videos / name)
    assert video.stats["packets_read"] == 0
    frames = video.info.frame_count
    indexed = video.stats["packets_indexed"]
    assert indexed >= frames > 0
    video.sample(8)
    video.thumbnail()
    video.storyboard(2)
    assert video.stats["packets_indexed"] == indexed
    assert video.stats["frames_decoded"] >= 8


def test_bytes_source_and_repr(videos):
    data = (videos / "hevc.mp4").read_bytes()
    video = vl.Video(data)
    assert "bytes in memory" in repr(video) and "open" in repr(video)
    same_batch(video.sample(5), vl.sample_frames(data, 5))


def test_closed_handle_raises(videos):
    video = vl.Video(videos / "hevc.mp4")
    video.close()
    video.close()  # twice is fine
    with pytest.raises(vl.InvalidRequestError, match="closed"):
        video.sample(2)
    with pytest.raises(ValueError):
        _ = video.info


def test_bad_files_raise_typed_errors(videos):
    with pytest.raises(vl.NotFoundError):
        vl.Video(videos / "missing.mp4")
    with pytest.raises(vl.NoVideoStreamError):
        vl.Video(videos / "bad_audio_only.m4a")
    with pytest.raises(vl.VideoDecodeError):
        vl.Video(videos / "bad_empty.mp4")
    with pytest.raises(TypeError):
        vl.Video(3)
    video = vl.Video(videos / "hevc.mp4")
    with pytest.raises(vl.InvalidRequestError):
        video.sample(indices=[10**9])
    with pytest.raises(vl.InvalidRequestError):
        video.thumbnail(quality=0)
    # The handle still works after a refused request.
    assert len(video.sample(2)) == 2


def test_threads_share_one_handle(videos):
    video = vl.Video(videos / "vp9.webm")
    expected = vl.sample_frames(videos / "vp9.webm", 4, resize=32)
    results: list[vl.FrameBatch] = []
    errors: list[BaseException] = []

    def work():
        try:
            results.append(video.sample(4, resize=32))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4
    for r in results:
        same_batch(r, expected)


def test_limits_refuse_with_typed_errors_naming_the_limit(data_dir, bikes):
    spins = data_dir / "hostile" / "open_spins.mkv"
    assert spins.is_file(), "run scripts/make-test-data.sh"
    # FFmpeg's open decodes all 300,000 empty packets looking for a picture; the budget stops it.
    with pytest.raises(vl.VideoTimeoutError) as e:
        vl.Video(spins, call_timeout=0.05)
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, vl.VideoDecodeError)
    assert e.value.kind == "timeout" and e.value.is_input and "call_timeout" in str(e.value)
    far = data_dir / "hostile" / "decode_spins.mkv"
    with vl.Video(far, call_timeout=0.4) as v:
        with pytest.raises(vl.VideoTimeoutError):
            v.sample(timestamps=[150.0])

    size = bikes.stat().st_size
    for source in (bikes, bikes.read_bytes()):
        with pytest.raises(vl.TooLargeError, match="max_input_bytes") as e:
            vl.Video(source, max_input_bytes=size - 1)
        assert e.value.kind == "too_large"
    with vl.Video(bikes, max_input_bytes=size, max_decoder_threads=1, call_timeout=None) as v:
        with pytest.raises(vl.InvalidRequestError, match="max_decoder_threads"):
            v.sample(4, threads=2)
        assert np.array_equal(v.sample(4).frames, vl.sample_frames(bikes, 4).frames)
    for bad in (
        dict(max_input_bytes=0),
        dict(max_input_bytes=-1),
        dict(call_timeout=0.0),
        dict(call_timeout=-2.0),
        dict(call_timeout=float("nan")),
        dict(max_decoder_threads=0),
    ):
        with pytest.raises(vl.InvalidRequestError):
            vl.Video(bikes, **bad)
