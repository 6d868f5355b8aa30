"""Session, headless rendering and recording (no DISPLAY needed)."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import ROOT

from app.record import Recorder, RecordError, output_kind, parse_size, record  # noqa: I001
from app.script import ScriptError, parse_script
from app.session import Session

SMALL_SCENE = """
[scene]
name = "small_dam"
dim = 2
size = [0.5, 0.5]
grid = 32

[[body]]
material = "water"
shape = "box"
min = [0.0, 0.0]
max = [0.15, 0.3]
"""


@pytest.fixture
def small_scene(write_scene):
    return write_scene(SMALL_SCENE, "small_dam.toml")


def pixel_of(recorder: Recorder, point) -> tuple[int, int]:
    """Pixel (row, col) of a domain point in the renderer's letterboxed 2D view."""
    size = recorder.session.scene.size
    scale = min(recorder.width / size[0], recorder.height / size[1]) * 0.94  # the renderer's 3% margins
    x0 = (recorder.width - scale * size[0]) / 2
    y0 = (recorder.height - scale * size[1]) / 2
    return int(recorder.height - (y0 + point[1] * scale)), int(x0 + point[0] * scale)


def test_headless_render_shows_water_where_it_is():
    session = Session("dam_break", overrides={"grid": 64})
    recorder = Recorder(session, 320, 240)
    rgb = recorder.render().astype(int)
    water = rgb[pixel_of(recorder, (0.07, 0.1))]
    empty = rgb[pixel_of(recorder, (0.45, 0.45))]
    assert water[2] > water[0] + 60 and water[2] > 120, water  # blue water
    assert empty.max() < 60, empty  # dark background
    recorder.close()
    session.close()


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ""])
def test_recording_reads_back_with_frame_count_and_size(small_scene, tmp_path, suffix):
    out = tmp_path / f"clip{suffix}" if suffix else tmp_path / "frames"
    result = record(str(small_scene), 6, out, size="160x96", fps=10, progress=False)
    assert result.frames == 6 and not result.interrupted and result.error is None
    if suffix:
        frames = iio.imread(out, index=None)
        assert frames.shape[0] == 6 and frames.shape[1:3] == (96, 160)
    else:
        files = sorted(out.glob("frame_*.png"))
        assert len(files) == 6
        assert iio.imread(files[0]).shape == (96, 160, 3)
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left behind"


def frame_hashes(folder) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("frame_*.png"))]


def test_same_seed_gives_identical_frames(small_scene, tmp_path):
    script = tmp_path / "script.toml"
    script.write_text(
        '[[action]]\nframe = 2\ntype = "brush"\ncenter = [0.1, 0.1]\nradius = 0.1\n'
        "strength = 300.0\ndirection = [1.0, 0.0]\nduration = 3\n"
    )
    runs = []
    for name in ("a", "b"):
        record(str(small_scene), 8, tmp_path / name, size="128x96", script=script, seed=3, progress=False)
        runs.append(frame_hashes(tmp_path / name))
    assert len(runs[0]) == 8 and runs[0] == runs[1]
    record(str(small_scene), 8, tmp_path / "c", size="128x96", script=script, seed=4, progress=False)
    assert frame_hashes(tmp_path / "c") != runs[0]


def test_scripted_brush_moves_water(small_scene):
    script = parse_script(
        {
            "action": [
                {
                    "frame": 0,
                    "type": "brush",
                    "center": [0.08, 0.1],
                    "radius": 0.15,
                    "strength": 400.0,
                    "direction": [1.0, 0.0],
                    "duration": 6,
                }
            ]
        },
        "<t>",
        2,
    )
    plain, brushed = Session(small_scene), Session(small_scene)
    brushed.script = script
    for _ in range(8):
        plain.tick()
        brushed.tick()
    shift = brushed.solver.positions()[:, 0].mean() - plain.solver.positions()[:, 0].mean()
    assert shift > 0.03
    plain.close()
    brushed.close()


def test_sigint_mid_recording_leaves_a_readable_mp4(small_scene, tmp_path):
    out = tmp_path / "interrupted.mp4"
    env = {**os.environ, "SLUICE_ARCH": "cpu", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "record",
            "--scene",
            str(small_scene),
            "--frames",
            "100000",
            "--out",
            str(out),
            "--size",
            "160x96",
            "--arch",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    # Wait until the progress bar counts written frames, then interrupt.
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline and not re.search(r"[1-9][0-9]*/100000", seen) and proc.poll() is None:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted after" in err
    frames = iio.imread(out, index=None)
    assert frames.shape[0] >= 1 and frames.shape[1:3] == (96, 160)


def test_unwritable_output_fails_before_simulating(tmp_path):
    with pytest.raises(RecordError, match="does not exist"):
        output_kind(tmp_path / "missing" / "x.mp4")
    with pytest.raises(RecordError, match="unknown format"):
        output_kind(tmp_path / "x.avi")
    with pytest.raises(RecordError, match="even"):
        parse_size("161x96")
    start = time.time()
    env = {**os.environ, "SLUICE_ARCH": "cpu"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "record",
            "--scene",
            "dam_break",
            "--frames",
            "5",
            "--out",
            str(tmp_path / "missing" / "x.mp4"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "backend" not in result.stdout + result.stderr  # it never started the simulation
    assert time.time() - start < 30


def test_bad_script_is_rejected_with_action_key_and_reason():
    with pytest.raises(ScriptError, match=r"action\[0\].type: unknown action 'explode'"):
        parse_script({"action": [{"frame": 1, "type": "explode"}]}, "s.toml", 2)
    with pytest.raises(ScriptError, match=r"action\[0\].direction: a push brush needs a direction"):
        parse_script(
            {
                "action": [
                    {"frame": 1, "type": "brush", "center": [0.1, 0.1], "radius": 0.1, "strength": 10.0}
                ]
            },
            "s.toml",
            2,
        )


def test_session_verbs_change_the_state(small_scene):
    session = Session(small_scene)
    n0 = session.solver.n
    assert session.erase((0.07, 0.07), 0.05) > 0 and session.solver.n < n0
    session.pour((0.35, 0.4), 0.03, (0.0, -1.0), material="sand", frames=5)
    for _ in range(5):
        session.tick()
    state = session.solver.particles()
    assert (state["material"] == 3).sum() > 0
    index = session.add_obstacle({"shape": "box", "min": [0.2, 0.0], "max": [0.3, 0.1]})
    assert session.obstacle_at((0.25, 0.05)) == index
    session.remove_obstacle(index)
    assert session.obstacle_at((0.25, 0.05)) is None
    session.reset()
    assert session.solver.n == n0 and session.frame == 0
    session.close()


def test_blown_up_frame_is_undone_and_reported(small_scene):
    session = Session(small_scene)
    session.tick()
    state = session.solver.particles()
    state["v"][0] = np.inf
    session.solver.set_particles(state)
    before = session.solver.positions()
    report = session.tick()
    assert report.error and "non-finite" in report.error
    np.testing.assert_array_equal(session.solver.positions(), before)
    session.close()


def test_pouring_a_material_the_weights_never_saw_switches_to_the_solver():
    session = Session("dam_break", overrides={"grid": 32}, mode="hybrid")
    if session.mode != "hybrid":
        pytest.skip(session.mode_message)  # no shipped weights fit
    session.pour((0.3, 0.4), 0.03, (0.0, -1.0), material="sand")
    assert session.mode == "numerical" and "sand" in session.mode_message
    assert session.tick().path == "numerical"
    session.close()


def test_an_obstacle_added_to_a_scene_without_any_brings_weights_trained_with_obstacles():
    session = Session("dam_break", overrides={"grid": 32}, mode="hybrid")
    if session.mode != "hybrid":
        pytest.skip(session.mode_message)  # no shipped weights fit
    assert not session.stepper.neural.spec.obstacles
    box = {"shape": "box", "min": [0.6, 0.0], "max": [0.65, 0.12]}
    session.add_obstacle(box)
    assert session.mode == "hybrid" and session.stepper.neural.spec.obstacles  # water_ramps2d
    assert "obstacle was added" in session.mode_message
    assert session.tick().path in ("neural", "audit", "fallback")
    session.reset()  # the box is gone: the scene's own weights again
    assert session.mode == "hybrid" and not session.stepper.neural.spec.obstacles
    pinned = Session("dam_break", overrides={"grid": 32}, mode="hybrid", model=session.stepper.weights)
    pinned.add_obstacle(box)  # weights named by --model are kept, their guard judging each frame
    assert pinned.mode == "hybrid" and not pinned.stepper.neural.spec.obstacles
    for s in (session, pinned):
        s.close()


TANK_3D = """
[scene]
name = "tank3d"
dim = 3
size = [0.3, 0.2, 0.3]
grid = 16

[[body]]
material = "water"
shape = "box"
min = [0.02, 0.0, 0.02]
max = [0.12, 0.08, 0.12]
"""


def test_record_orbit_turns_the_3d_camera(write_scene, tmp_path):
    from main import build_parser

    parser = build_parser()
    assert parser.parse_args(["record", "--scene", "s", "--frames", "1", "--out", "x.mp4"]).orbit == 0.0
    args = parser.parse_args(["record", "--scene", "s", "--frames", "1", "--out", "x.mp4", "--orbit", "12"])
    assert args.orbit == 12.0
    scene = write_scene(TANK_3D, "tank3d.toml")
    with pytest.raises(RecordError, match="orbit"):
        record(str(scene), 3, tmp_path / "nan", size="96x64", orbit=float("nan"), progress=False)
    record(str(scene), 3, tmp_path / "fixed", size="96x64", progress=False)
    record(str(scene), 3, tmp_path / "orbit", size="96x64", orbit=900.0, progress=False)  # 15 deg/frame
    fixed, orbit = frame_hashes(tmp_path / "fixed"), frame_hashes(tmp_path / "orbit")
    assert len(fixed) == len(orbit) == 3
    assert orbit[0] == fixed[0]  # the first frame shows the default view
    assert orbit[1] != fixed[1] and orbit[2] != fixed[2] and orbit[1] != orbit[2]
