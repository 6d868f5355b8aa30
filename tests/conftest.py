import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session", autouse=True)
def taichi_cpu():
    """One Taichi runtime for the whole run, on the CPU so that results are deterministic."""
    os.environ.setdefault("SLUICE_ARCH", "cpu")
    from sim.arch import init_taichi

    return init_taichi("cpu", quiet=True)


@pytest.fixture
def write_scene(tmp_path):
    """Write TOML text to a file and return its path."""

    def write(text: str, name: str = "scene.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
