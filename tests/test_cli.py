"""The command line: subcommands, output files, and one-line user errors with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from sim.bench import write_json


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLUICE_ARCH": "cpu"}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("simulate", "scenes", "bench"):
        assert command in result.stdout


def test_scenes_lists_builtins():
    result = run_cli("scenes")
    assert result.returncode == 0
    assert "dam_break" in result.stdout and "sand_pile_3d" in result.stdout


def test_simulate_writes_trajectory(tmp_path):
    out = tmp_path / "traj.npz"
    scene = tmp_path / "small.toml"
    scene.write_text(
        '[scene]\nname = "small"\ndim = 2\nsize = [0.5, 0.5]\ngrid = 24\n'
        '[[body]]\nmaterial = "water"\nshape = "box"\nmin = [0.0, 0.0]\nmax = [0.1, 0.2]\n'
        '[[body]]\nmaterial = "sand"\nshape = "box"\nmin = [0.3, 0.0]\nmax = [0.4, 0.1]\n'
    )
    result = run_cli("simulate", "--scene", str(scene), "--frames", "4", "--out", str(out), "--arch", "cpu")
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        x, v, material = data["x"], data["v"], data["material"]
        assert x.dtype == np.float32 and x.shape[0] == 5 and x.shape[2] == 2
        assert v.shape == x.shape
        assert set(np.unique(material)) == {0, 3}
        assert float(data["frame_dt"]) == pytest.approx(1 / 60)
        resolved = json.loads(str(data["scene"]))
        assert resolved["name"] == "small" and resolved["grid"] == 24
        # Where the time went: water and sand have weights, so the default mode is the hybrid.
        paths, ms = data["path"], data["ms"]
        assert paths.shape == (4,) and set(paths) <= {"numerical", "neural", "fallback", "audit"}
        assert "neural" in set(paths) and ms.shape == (4,) and (ms > 0).all()
    assert not np.allclose(x[0], x[-1])
    assert "learned share" in result.stdout and "ms per frame" in result.stdout
    assert "stepper: hybrid with" in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["simulate", "--scene", "no_such_scene", "--frames", "2", "--out", "x.npz"], "unknown scene"),
        (
            ["simulate", "--scene", "dam_break", "--frames", "2", "--out", "/no/such/dir/x.npz"],
            "does not exist",
        ),
        (["simulate", "--scene", "dam_break", "--frames", "0", "--out", "x.npz"], "--frames"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, fragment, tmp_path):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_scene_file_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[scene]\ndim = 4\n")
    result = run_cli("simulate", "--scene", str(bad), "--frames", "1", "--out", str(tmp_path / "x.npz"))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "scene.dim" in result.stderr


def test_bench_json_merges_records_by_name(tmp_path):
    path = tmp_path / "bench.json"
    write_json([{"name": "a", "value": 1.0, "unit": "x"}, {"name": "b", "value": 2.0, "unit": "x"}], path)
    write_json([{"name": "b", "value": 3.0, "unit": "x"}], path)
    records = {r["name"]: r["value"] for r in json.loads(path.read_text())}
    assert records == {"a": 1.0, "b": 3.0}
