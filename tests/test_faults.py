"""Injected faults (app/faults.py), and one regression test for each product bug they found."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file

from app import faults
from app.session import Session
from control.model import load_control
from neural.catalog import choose_weights
from neural.model import WeightsError, load_weights
from sim.scene import load_scene
from sim.state import StateFileError

MODELS = ROOT / "assets" / "models"
CONTROLS = ROOT / "assets" / "control"


def test_quick_faults_are_all_survived(tmp_path):
    results = faults.run_faults(tmp_path, quick=True)
    failed = [f"{r.name}: {r.detail}" for r in results if not r.survived]
    assert len(results) >= 10 and not failed, "\n".join(failed)


# ------------------------------------------------------------------------------- weights (neural/model.py)
def test_nan_weights_are_refused_when_loaded(tmp_path):
    stepper = faults._nan_weights(MODELS / "water2d.safetensors", tmp_path, "nan")
    with pytest.raises(WeightsError, match="non-finite values"):
        load_weights(stepper)
    controller = faults._nan_weights(CONTROLS / "water2d.safetensors", tmp_path, "nan_control", control=True)
    with pytest.raises(WeightsError, match="non-finite values"):
        load_control(controller)


def test_weights_with_bytes_changed_inside_are_refused(tmp_path):
    # Every shipped pair carries its digest, so the check guards what ships.
    for weights in [*MODELS.glob("*.safetensors"), *CONTROLS.glob("*.safetensors")]:
        meta = json.loads(weights.with_suffix(".json").read_text())
        assert meta["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest(), weights
    path = faults._copy_weights(MODELS / "water2d.safetensors", tmp_path, "changed")
    faults._corrupt_middle(path)
    tensors = load_file(str(path))
    assert all(torch.isfinite(t).all() for t in tensors.values())  # only the digest can tell
    with pytest.raises(WeightsError, match="corrupt weights file"):
        load_weights(path)


def test_garbled_weights_metadata_is_refused_and_skipped_by_the_catalog(tmp_path):
    path = faults._copy_weights(MODELS / "water2d.safetensors", tmp_path / "models", "water2d")
    garbled = faults._copy_weights(MODELS / "water2d.safetensors", tmp_path / "models", "a_garbled")
    meta = json.loads(garbled.with_suffix(".json").read_text())
    meta["spec"]["frame_dt"] = "1/60"
    garbled.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"garbled metadata \(frame_dt = '1/60'"):
        load_weights(garbled)
    assert choose_weights(load_scene("dam_break"), path.parent).path == path


def test_the_catalog_prefers_weights_trained_at_the_scenes_resolution_in_a_domain_as_large(tmp_path):
    """Of weights that fit a scene alike: one whose training domain is as large as the scene, then the one
    whose data was simulated at the cell closest to the scene's (read from `data.solver_cell`, or from the
    family's side over `data.solver_grid` for weights that predate it; garbled values read as unknown)."""
    data = {
        "a_coarse": ("water3d", {"solver_grid": 32}),  # 1 m at 1/32 m
        "b_tank": ("water_tank3d", {"solver_grid": 41}),  # 0.6 m at dam_break_3d's cell
        "c_finer": ("water3d", {"solver_cell": 1 / 200}),  # 1 m at 1/200 m
        "d_garbled": (["water3d"], {"solver_grid": "41"}),
    }
    paths = {}
    for name, (family, extent) in data.items():
        paths[name] = faults._copy_weights(MODELS / "water3d.safetensors", tmp_path / "models", name)
        meta = json.loads(paths[name].with_suffix(".json").read_text())
        meta["family"], meta["data"] = family, extent
        paths[name].with_suffix(".json").write_text(json.dumps(meta))
    models = tmp_path / "models"
    assert choose_weights(load_scene("dam_break_3d"), models).path == paths["b_tank"]
    metre_tank = load_scene("dam_break_3d", {"size": [1.0, 0.35, 0.2], "grid": 68})  # too long for b_tank
    assert choose_weights(metre_tank, models).path == paths["a_coarse"]
    assert choose_weights(load_scene("dam_break_3d", {"grid": 200}), models).path == paths["c_finer"]


def test_sand_pile_3d_takes_the_sand_tank_and_a_metre_of_sand_the_older_sand3d(tmp_path):
    """sand3d's metadata predates the recorded data grid: its cell is read from the family's (1/32 m), so a
    coarse small sand scene still takes it, as a 1 m one must; sand_pile_3d takes the tank at its cell."""
    for name in ("sand3d", "sand_tank3d"):
        faults._copy_weights(MODELS / f"{name}.safetensors", tmp_path / "models", name)
    models = tmp_path / "models"
    assert choose_weights(load_scene("sand_pile_3d"), models).path.stem == "sand_tank3d"
    metre = load_scene("sand_pile_3d", {"size": [1.0, 0.35, 1.0], "grid": 80})
    assert choose_weights(metre, models).path.stem == "sand3d"
    coarse = load_scene("sand_pile_3d", {"grid": 14})  # 0.5 m at about sand3d's 1/32 m
    assert choose_weights(coarse, models).path.stem == "sand3d"


# ------------------------------------------------------------------------------- state files (sim/state.py)
def test_unreadable_or_garbled_state_files_leave_the_session_as_it_was(tmp_path, write_scene):
    session = Session(write_scene(faults.SMALL_2D))
    try:
        session.tick()
        good = session.save(tmp_path / "good.npz")
        session.tick()
        truncated = tmp_path / "truncated.npz"
        truncated.write_bytes(good.read_bytes()[:-40])
        bare = tmp_path / "bare.npz"
        with open(bare, "wb") as f:
            np.save(f, np.zeros(3))

        def short(arrays, meta):
            arrays["particle_v"] = arrays["particle_v"][:-5]

        def nan(arrays, meta):
            arrays["particle_J"] = np.full_like(arrays["particle_J"], np.nan)

        cases = {
            truncated: "not a readable",
            bare: "not a readable",
            faults._edited_state(good, tmp_path / "short.npz", short): "particle v: shape",
            faults._edited_state(good, tmp_path / "nan.npz", nan): "particle J: not finite",
            faults._edited_state(good, tmp_path / "meta.npz", lambda a, m: m.pop("time")): "garbled",
        }
        before = faults._fingerprint(session)
        for path, reason in cases.items():
            with pytest.raises(StateFileError, match=reason):
                session.load(path)
            assert faults._fingerprint(session) == before, path.name
    finally:
        session.close()


# ----------------------------------------------------------------------------- signals (sim/atomic.py, ...)
def test_sigterm_during_an_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"the good file")
    program = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sim.atomic import atomic_path
        with atomic_path(Path({str(target)!r}), ".npz") as tmp:
            tmp.write_bytes(b"half a file")
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", program], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.glob(".state.*"))) == 1
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == -signal.SIGTERM  # it still ends as SIGTERM ends a process
    assert target.read_bytes() == b"the good file"
    assert not list(tmp_path.glob(".state.*"))


def test_sigterm_during_record_finishes_the_video(tmp_path):
    survived, detail = faults.sigterm_record(tmp_path)
    assert survived, detail


def test_sigterm_during_simulate_writes_the_frames_so_far(tmp_path):
    survived, detail = faults.sigterm_simulate(tmp_path)
    assert survived, detail


# ------------------------------------------------------------------------------ a full disk (app/record.py)
def test_a_video_cut_short_by_a_full_disk_replaces_nothing(tmp_path):
    out = tmp_path / "good.mp4"
    faults._good_video(out)
    good = out.read_bytes()
    program = textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from app.record import FrameSink
        sink = FrameSink(Path({str(out)!r}), "mp4", 30.0)
        rng = np.random.default_rng(0)
        for _ in range(8):  # noise: ffmpeg cannot compress it under the limit
            sink.append(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
        try:
            sink.close()
        except OSError as e:
            print("refused:", e)
    """)
    run = faults._run(["-c", program], file_limit=16384)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "refused:" in run.stdout and "could not be finished" in run.stdout, run.stdout
    assert out.read_bytes() == good
    assert not faults._leftovers(tmp_path, out)
