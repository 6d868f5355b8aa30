import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Under pytest-xdist (the README's `-n 2`) each worker takes one core: Taichi and torch on one thread, in
# this process and in the CLIs it starts. Two processes that each run torch's OpenMP team on every core spin
# in each other's barriers (a 4 ms network call then takes hundreds; see neural.device.ThreadGovernor). Set
# before torch or Taichi is imported, which read these once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("SLUICE_CPU_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
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
