"""Work budgets: a scene the machine cannot run is refused before anything is allocated, with the
estimate and the limit in one line; absurd speeds name their key; a slow scene runs with a warning."""

import time

import pytest
from test_cli import run_cli

from sim.budget import check_budget, estimate
from sim.build import default_capacity, solver_config
from sim.scene import SceneError, load_scene

ABSURD_SPEED = """
[scene]
dim = 2
size = [1.0, 1.0]
grid = 128
[[body]]
material = "water"
shape = "box"
min = [0.1, 0.1]
max = [0.3, 0.4]
velocity = [5000.0, -9000.0]
"""
HUGE_3D = """
[scene]
dim = 3
size = [1.0, 1.0, 1.0]
grid = 1024
[[body]]
material = "water"
shape = "box"
min = [0.0, 0.0, 0.0]
max = [1.0, 1.0, 1.0]
"""
SLOW_2D = """
[scene]
dim = 2
size = [1.0, 1.0]
grid = 256
[[body]]
material = "water"
shape = "box"
min = [0.0, 0.0]
max = [1.0, 0.6]
"""


def _budget(path):
    scene = load_scene(path)
    probe = solver_config(scene, 1)
    return scene, check_budget(scene, probe, default_capacity(scene, estimate(scene, probe, 1).particles))


@pytest.mark.parametrize(
    "text, expected",
    [(ABSURD_SPEED, ["body[0].velocity", "m/s"]), (HUGE_3D, ["GiB", "limit", "particles"])],
    ids=["absurd speed", "3D grid 1024"],
)
def test_impossible_scenes_exit_2_fast_with_one_line(text, expected, write_scene, tmp_path):
    path = write_scene(text)
    with pytest.raises(SceneError):
        _budget(path)
    started = time.perf_counter()
    result = run_cli("simulate", "--scene", str(path), "--frames", "2", "--out", str(tmp_path / "t.npz"))
    assert time.perf_counter() - started < 30  # the 5 s, with room for a cold interpreter here
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("sluice: error")]
    assert len(errors) == 1 and all(part in errors[0] for part in expected), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t.npz").exists()


def test_a_slow_scene_is_estimated_and_warned_about(write_scene):
    scene, warning = _budget(write_scene(SLOW_2D))
    assert warning is not None and "s a frame" in warning
    cost = estimate(scene, solver_config(scene, 1), 1)
    assert 150_000 < cost.particles < 160_000  # 1 x 0.6 m at 4 particles per 1/256 m cell


def test_builtin_scenes_fit_the_budget_without_a_warning():
    for name in ("dam_break", "water_ramps", "dam_break_3d"):
        scene, warning = _budget(name)
        assert warning is None, warning


def test_quality_that_would_freeze_the_window_is_refused(monkeypatch):
    import sim.budget
    from app.session import Session

    session = Session("dam_break", overrides={"grid": 32})
    cfl = session.solver.config.cfl
    # On a machine this slow, 16x the substeps would take minutes a frame.
    monkeypatch.setitem(sim.budget.PARTICLE_SUBSTEP_RATE, 2, 1e3)
    with pytest.raises(ValueError, match="s a frame"):
        session.set_quality(16.0)
    assert session.quality == 1.0 and session.solver.config.cfl == cfl
    session.close()
