"""Every bad input raises its exception class; the hierarchy is as documented."""

from __future__ import annotations

import numpy as np
import pytest
import video_llava as vl

LONGGOP = "h264_bframes_longgop.mp4"


def test_hierarchy():
    assert issubclass(vl.VideoLlavaError, Exception)
    for cls in (
        vl.VideoDecodeError,
        vl.NoVideoStreamError,
        vl.NotFoundError,
        vl.ImageError,
        vl.InvalidRequestError,
        vl.PromptTooLongError,
        vl.TooLargeError,
        vl.ModelLoadError,
        vl.ModelNotFoundError,
        vl.DownloadError,
        vl.TokenizerError,
        vl.DeviceError,
        vl.GenerationError,
        vl.VideoTimeoutError,
    ):
        assert issubclass(cls, vl.VideoLlavaError), cls
        assert cls.__module__ == "video_llava"
        assert cls.__doc__
    assert issubclass(vl.InvalidRequestError, ValueError)
    assert issubclass(vl.PromptTooLongError, vl.InvalidRequestError)
    assert issubclass(vl.NoVideoStreamError, vl.VideoDecodeError)
    assert issubclass(vl.NotFoundError, FileNotFoundError)
    assert issubclass(vl.ModelNotFoundError, FileNotFoundError)
    assert issubclass(vl.ModelNotFoundError, vl.ModelLoadError)
    assert issubclass(vl.VideoTimeoutError, vl.VideoDecodeError)
    assert issubclass(vl.VideoTimeoutError, TimeoutError)


def test_kind_and_is_input_come_from_the_core():
    # Class defaults: the kind each class stands for.
    assert (vl.VideoLlavaError.kind, vl.VideoLlavaError.is_input) == ("other", False)
    assert (vl.InvalidRequestError.kind, vl.InvalidRequestError.is_input) == (
        "invalid_request",
        True,
    )
    assert (vl.GenerationError.kind, vl.GenerationError.is_input) == ("generation", False)
    assert (vl.DownloadError.kind, vl.DownloadError.is_input) == ("download", False)


@pytest.mark.parametrize(
    "call,cls,kind",
    [
        (lambda v: vl.probe(v / "bad_audio_only.m4a"), vl.NoVideoStreamError, "no_video_stream"),
        (lambda v: vl.probe(v / "bad_random.mp4"), vl.VideoDecodeError, "video_decode"),
        (lambda v: vl.probe(v / "absent.mp4"), vl.NotFoundError, "not_found"),
        (lambda v: vl.sample_frames(v / "vp9.webm", 0), vl.InvalidRequestError, "invalid_request"),
        (
            lambda v: vl.sample_frames(v / "huge_8192.mp4", 2, max_bytes=1 << 20),
            vl.TooLargeError,
            "too_large",
        ),
        (
            lambda v: vl.VideoLlava.from_pretrained(v / "no-model-here"),
            vl.ModelNotFoundError,
            "model_not_found",
        ),
    ],
    ids=["audio-only", "garbage", "missing", "bad-request", "too-large", "no-model"],
)
def test_each_error_carries_its_kind(videos, call, cls, kind):
    with pytest.raises(cls) as err:
        call(videos)
    assert err.value.kind == kind
    assert err.value.is_input  # every one of these is the caller's input


BAD = [
    ("bad_empty.mp4", vl.VideoDecodeError),
    ("bad_random.mp4", vl.VideoDecodeError),
    ("bad_truncated_moov_end.mp4", vl.VideoDecodeError),
    ("bad_audio_only.m4a", vl.NoVideoStreamError),
    ("bad_png_renamed.mp4", vl.VideoDecodeError),
]


@pytest.mark.parametrize("name,cls", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_bad_files(videos, name, cls, as_bytes):
    path = videos / name
    source = path.read_bytes() if as_bytes else path
    with pytest.raises(cls) as probe_err:
        vl.probe(source)
    assert not isinstance(probe_err.value, vl.NotFoundError)
    with pytest.raises(cls):
        vl.sample_frames(source, 8)
    with pytest.raises(cls):
        vl.thumbnail(source)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.mp4"
    for call in (vl.probe, vl.sample_frames, vl.thumbnail, lambda s: vl.storyboard(s, 3)):
        with pytest.raises(FileNotFoundError) as err:
            call(missing)
        assert isinstance(err.value, vl.NotFoundError)
        assert "nope.mp4" in str(err.value)


def test_huge_frames_refused_by_budget(videos):
    with pytest.raises(vl.TooLargeError):
        vl.sample_frames(videos / "huge_8192.mp4", 2, max_bytes=64 << 20)


def test_invalid_sampling_arguments(videos):
    path = videos / LONGGOP
    cases = [
        dict(num_frames=0),
        dict(num_frames=-1),
        dict(sampling="random"),
        dict(seek="slow"),
        dict(indices=[-1]),
        dict(indices=[10_000]),
        dict(timestamps=[-1.0]),
        dict(indices=[1], timestamps=[1.0]),
        dict(resize="big"),
        dict(resize={"side": 3}),
        dict(max_bytes=-5),
    ]
    for kwargs in cases:
        with pytest.raises(vl.InvalidRequestError):
            vl.sample_frames(path, **kwargs)
        with pytest.raises(ValueError):
            vl.sample_frames(path, **kwargs)
    with pytest.raises(vl.InvalidRequestError):
        vl.thumbnail(path, format="gif")
    with pytest.raises(vl.InvalidRequestError):
        vl.storyboard(path, -2)


def test_source_of_wrong_type():
    with pytest.raises(TypeError):
        vl.probe(42)
    with pytest.raises(TypeError):
        vl.sample_frames(None)


def test_preprocess_rejects_bad_arrays():
    with pytest.raises(vl.InvalidRequestError):
        vl.preprocess_frames(np.zeros((2, 10, 10, 3), dtype=np.float32))
    with pytest.raises(vl.InvalidRequestError):
        vl.preprocess_frames(np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(vl.InvalidRequestError):
        vl.preprocess_frames([[1, 2, 3]])
    with pytest.raises(vl.InvalidRequestError):
        vl.preprocess_image(np.zeros((10, 10, 4), dtype=np.uint8))
    with pytest.raises(vl.InvalidRequestError):
        vl.preprocess_frames(np.zeros((0, 10, 10, 3), dtype=np.uint8))
    with pytest.raises(vl.InvalidRequestError):
        vl.preprocess_image(np.zeros((0, 10, 3), dtype=np.uint8))
