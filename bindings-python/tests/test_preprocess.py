"""preprocess_frames / preprocess_image against the transformers processors' outputs."""

from __future__ import annotations

import numpy as np
import pytest
import video_llava as vl
from conftest import FIXTURES, load_safetensors

PRE = FIXTURES / "preprocess"


def png_rgb(path) -> np.ndarray:
    image = pytest.importorskip("PIL.Image")
    with image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def reference():
    return {
        k: v.astype(np.float32) for k, v in load_safetensors(PRE / "preprocess.safetensors").items()
    }


def test_preprocess_frames_matches_video_processor(reference):
    frames = np.stack([png_rgb(PRE / f"frame{i}.png") for i in range(4)])
    assert frames.shape == (4, 272, 640, 3)
    pixels = vl.preprocess_frames(frames)
    assert pixels.shape == (4, 3, 224, 224) and pixels.dtype == np.float32
    assert np.abs(pixels - reference["video"]).mean() < 0.01


def test_preprocess_image_matches_image_processor(reference):
    image = png_rgb(PRE / "portrait.png")
    assert image.shape == (603, 397, 3)
    pixel = vl.preprocess_image(image)
    assert pixel.shape == (3, 224, 224)
    assert np.abs(pixel - reference["image"]).mean() < 0.01


def test_sampled_frames_feed_the_processor_like_pyav_frames(bikes, reference):
    # The fixture frames were decoded by PyAV; the engine's decode must agree to a level or two.
    batch = vl.sample_frames(bikes, 4, sampling="linspace")
    assert batch.indices == [0, 83, 166, 249]
    pixels = vl.preprocess_frames(batch)
    assert np.abs(pixels - reference["video"]).mean() < 0.02
