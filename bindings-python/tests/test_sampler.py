"""Round trips through probe, sample_frames, thumbnail and storyboard."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import video_llava as vl

LONGGOP = "h264_bframes_longgop.mp4"  # 320x240, 30 fps, 300 frames, with audio


def test_version():
    assert isinstance(vl.__version__, str)
    assert vl.__version__.count(".") == 2


def test_probe_facts(videos):
    info = vl.probe(videos / LONGGOP)
    assert (info.width, info.height) == (320, 240)
    assert info.rotation == 0
    assert info.fps == pytest.approx(30.0, rel=1e-3)
    assert info.duration == pytest.approx(10.0, abs=0.1)
    assert info.frame_count == 300
    assert info.codec == "h264"
    assert "mp4" in info.container
    assert info.has_audio is True
    # An MP4's sample table lists every frame: the count is read from it, not estimated.
    assert info.frame_count_source == "index"
    text = repr(info)
    assert text.startswith("VideoInfo(") and "320x240" in text and "h264" in text
    assert info.to_dict()["frame_count"] == 300


def test_probe_rotated_and_real_clip(videos, bikes):
    rotated = vl.probe(videos / "rotated_90.mp4")
    # ffmpeg's "-display_rotation -90" (make-test-data.sh): turned 90 degrees clockwise.
    assert rotated.rotation == 90
    assert (rotated.width, rotated.height) == (180, 320)
    assert (rotated.coded_width, rotated.coded_height) == (320, 180)
    bikes_info = vl.probe(bikes)
    assert bikes_info.frame_count == 250  # as the model fixtures' reference counted
    assert bikes_info.has_audio is False


@pytest.mark.parametrize("kind", ["str", "pathlike", "bytes", "bytearray", "memoryview"])
def test_source_kinds_agree(videos, kind):
    path = videos / LONGGOP
    source = {
        "str": str(path),
        "pathlike": pathlib.Path(path),
        "bytes": path.read_bytes(),
        "bytearray": bytearray(path.read_bytes()),
        "memoryview": memoryview(path.read_bytes()),
    }[kind]
    reference = vl.sample_frames(str(path), 4)
    batch = vl.sample_frames(source, 4)
    assert batch.indices == reference.indices
    assert np.array_equal(np.asarray(batch), np.asarray(reference))
    assert vl.probe(source).frame_count == 300


def test_sample_frames_uniform_shapes_indices_timestamps(videos):
    batch = vl.sample_frames(videos / LONGGOP, 8)
    assert len(batch) == 8
    assert batch.indices == [int(i) for i in np.arange(0, 300, 300 / 8).astype(int)]
    assert batch.timestamps == pytest.approx([i / 30 for i in batch.indices], abs=1e-3)
    frames = np.asarray(batch)
    assert frames.dtype == np.uint8
    assert frames.shape == (8, 240, 320, 3)
    assert frames is batch.frames or np.shares_memory(frames, batch.frames)
    assert (batch.width, batch.height, batch.clamped) == (320, 240, False)
    assert batch[0].shape == (240, 320, 3)
    assert "FrameBatch(len=8" in repr(batch)
    # __array__ honours a dtype and an explicit copy.
    as_float = np.asarray(batch, dtype=np.float32)
    assert as_float.dtype == np.float32 and np.array_equal(as_float, frames)
    copied = np.array(batch, copy=True)
    assert not np.shares_memory(copied, frames)


def test_sample_frames_conventions_and_explicit_targets(videos):
    path = videos / LONGGOP
    lin = vl.sample_frames(path, 8, sampling="linspace")
    assert lin.indices == [int(i) for i in np.linspace(0, 299, 8).astype(int)]
    picked = vl.sample_frames(path, indices=lin.indices)
    assert picked.indices == lin.indices
    assert np.array_equal(picked.frames, lin.frames)
    # Out of order and duplicated indices keep the order given.
    order = vl.sample_frames(path, indices=[100, 5, 100])
    assert order.indices == [100, 5, 100]
    assert np.array_equal(order.frames[0], order.frames[2])
    assert np.array_equal(order.frames[0], vl.sample_frames(path, indices=[100]).frames[0])
    at = vl.sample_frames(path, timestamps=[0.0, 5.0])
    assert at.indices == [0, 150]
    every = vl.sample_frames(path, every=2.5)
    assert every.indices[:4] == [0, 75, 150, 225]


def test_sample_frames_resize_and_rotation(videos):
    path = videos / LONGGOP
    assert vl.sample_frames(path, 2, resize=120).frames.shape == (2, 120, 160, 3)
    assert vl.sample_frames(path, 2, resize=(64, 48)).frames.shape == (2, 48, 64, 3)
    assert vl.sample_frames(path, 2, resize={"max_side": 160}).frames.shape == (2, 120, 160, 3)
    rotated = videos / "rotated_90.mp4"
    assert vl.sample_frames(rotated, 1).frames.shape == (1, 320, 180, 3)
    assert vl.sample_frames(rotated, 1, rotate=False).frames.shape == (1, 180, 320, 3)


def test_fast_seek_returns_keyframes(videos):
    batch = vl.sample_frames(videos / LONGGOP, indices=[10, 260], seek="fast")
    # GOP 250: the keyframes at or before 10 and 260 are 0 and 250.
    assert batch.indices == [0, 250]


def test_keyframes_sampling(videos):
    batch = vl.sample_frames(videos / LONGGOP, 4, sampling="keyframes")
    # GOP 250 over 300 frames: the keyframes are 0 and 250.
    assert batch.indices == [0, 250]
    assert np.array_equal(
        batch.frames[1], vl.sample_frames(videos / LONGGOP, indices=[250]).frames[0]
    )


def test_thumbnail_and_storyboard(videos):
    path = videos / "h264_720p.mp4"
    thumb = vl.thumbnail(path, max_size=320)
    assert thumb.format == "jpeg"
    assert thumb.data[:3] == b"\xff\xd8\xff"  # JPEG SOI marker
    assert max(thumb.width, thumb.height) == 320
    assert thumb.width == 320 and thumb.height == 180
    assert 0.0 <= thumb.timestamp <= 20.0
    png = vl.thumbnail(path.read_bytes(), max_size=64, format="png")
    assert png.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Thumbnail(" in repr(png)
    webp = vl.thumbnail(path, max_size=64, format="webp")
    assert webp.data[:4] == b"RIFF" and webp.data[8:12] == b"WEBP" and webp.format == "webp"
    board = vl.storyboard(path, 4, max_size=160)
    assert len(board) == 4
    stamps = [t.timestamp for t in board]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert all(t.data[:3] == b"\xff\xd8\xff" for t in board)


def test_thumbnail_skips_black(videos):
    thumb = vl.thumbnail(videos / "fade_black.mp4", format="png")
    # black from 0 to ~1 s and from 3 to 4 s
    assert not (thumb.timestamp < 1.0 or 3.0 <= thumb.timestamp < 4.0)


def test_preprocess_shapes_and_frame_batch(videos):
    batch = vl.sample_frames(videos / LONGGOP, 2)
    pixels = vl.preprocess_frames(batch.frames)
    assert pixels.dtype == np.float32 and pixels.shape == (2, 3, 224, 224)
    assert np.array_equal(pixels, vl.preprocess_frames(batch))
    one = vl.preprocess_image(batch.frames[1])
    assert one.shape == (3, 224, 224)
    assert np.array_equal(one, pixels[1])
    # A non-contiguous view reads the same pixels.
    flipped = batch.frames[:, :, ::-1, :]
    assert np.array_equal(
        vl.preprocess_frames(flipped), vl.preprocess_frames(np.ascontiguousarray(flipped))
    )
