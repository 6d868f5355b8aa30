"""Solver safety and state: absurd brushes, capacity, NaN, force fields, emitters, removal, save/load."""

import numpy as np
import pytest

from sim import state as state_io
from sim.build import build_solver
from sim.colliders import box
from sim.scene import load_scene, parse_scene
from sim.solver import Brush, CapacityError, MPMSolver, NonFiniteError


@pytest.fixture
def small_water():
    solver = build_solver(load_scene("dam_break", {"grid": 32}))
    yield solver
    solver.close()


def test_absurd_brush_leaves_everything_finite_and_inside():
    scene = load_scene("water_sand", {"grid": 32})
    solver = build_solver(scene)
    total_clamps = 0
    for frame in range(100):
        center = (0.2 + 0.6 * (frame % 10) / 10, 0.2)
        direction = (1.0, 1.0) if frame % 2 else None  # alternate push and attract
        solver.set_brushes([Brush(center, 0.3, 1e6, direction), Brush((0.5, 0.3), 0.2, -1e6)])
        total_clamps += solver.step_frame().velocity_clamps
    state = solver.particles()
    for key in ("x", "v", "C", "F", "J"):
        assert np.isfinite(state[key]).all(), key
    assert (state["x"] >= 0).all() and (state["x"] <= np.asarray(scene.size)).all()
    assert total_clamps > 0, "the CFL velocity limit should have been hit and counted"
    solver.close()


def test_brush_pushes_water_along_its_direction(small_water):
    start = small_water.positions()[:, 0].mean()
    small_water.set_brushes([Brush((0.07, 0.1), 0.15, 200.0, (1.0, 0.0))])
    for _ in range(5):
        small_water.step_frame()
    pushed = small_water.positions()[:, 0].mean()
    assert pushed > start + 0.02


def test_capacity_overflow_is_a_clear_error(small_water):
    room = small_water.capacity - small_water.n
    with pytest.raises(CapacityError, match="at most"):
        small_water.add_particles(np.full((room + 1, 2), 0.3), None, 0)
    assert small_water.n + room == small_water.capacity  # nothing was added


def test_emitter_stops_with_a_message_at_capacity():
    raw = {
        "scene": {"dim": 2, "size": [0.5, 0.5], "grid": 32, "capacity": 300},
        "emitter": [
            {
                "material": "water",
                "center": [0.25, 0.4],
                "radius": 0.05,
                "velocity": [0.0, -1.0],
                "rate": 3000.0,
            }
        ],
    }
    solver = build_solver(parse_scene(raw, "<test>"))
    messages = []
    for _ in range(10):
        messages += solver.step_frame().messages
    assert solver.n == 300
    assert any("capacity" in m for m in messages)
    solver.close()


def test_non_finite_state_raises_naming_the_frame(small_water):
    small_water.step_frame()
    state = small_water.particles()
    state["v"][5] = np.nan
    small_water.set_particles(state)
    with pytest.raises(NonFiniteError, match="frame 2"):
        small_water.step_frame()
    assert np.isfinite(small_water.positions()).all()  # positions were never corrupted


def test_force_field_moves_water_and_is_capped(small_water):
    keys = small_water.config.force_keys
    field = np.zeros((keys, *small_water.force_cells, 2), np.float32)
    field[..., 0] = 1e9  # far beyond the cap
    start = small_water.positions()[:, 0].mean()
    peak = small_water.set_force_field(field, 0.0, 1.0)
    assert peak == pytest.approx(1e9)
    assert np.abs(small_water.force_field()).max() == pytest.approx(small_water.config.max_force, rel=1e-5)
    for _ in range(5):
        small_water.step_frame()
    assert small_water.positions()[:, 0].mean() > start + 0.05
    assert np.isfinite(small_water.positions()).all()


def test_removal_in_a_sphere(small_water):
    before = small_water.n
    removed = small_water.remove_in_sphere((0.07, 0.07), 0.05)
    assert removed > 0 and small_water.n == before - removed
    assert (np.linalg.norm(small_water.positions() - [0.07, 0.07], axis=1) > 0.05).all()


def test_runtime_obstacle_stops_falling_water():
    raw = {
        "scene": {"dim": 2, "size": [0.5, 0.5], "grid": 32},
        "body": [{"material": "water", "shape": "box", "min": [0.2, 0.35], "max": [0.3, 0.45]}],
    }
    solver = build_solver(parse_scene(raw, "<test>"))
    shelf = box((0.0, 0.2), (0.5, 0.25), friction=0.0)  # wall to wall: nothing can pass
    solver.add_collider(shelf)
    for _ in range(40):
        solver.step_frame()
    x = solver.positions()
    assert shelf.signed_distance(x).min() > -1e-4
    assert (x[:, 1] >= 0.25 - 1e-4).all(), "all the water should rest on the shelf"
    solver.close()


def trajectory(solver, frames: int) -> list[np.ndarray]:
    out = []
    for _ in range(frames):
        solver.step_frame()
        out.append(solver.positions())
    return out


def test_save_load_continue_matches_uninterrupted_run(tmp_path):
    scene = load_scene("water_ramps", {"grid": 32})
    reference = build_solver(scene)
    trajectory(reference, 5)
    path = state_io.save(reference, tmp_path / "state.npz")
    expected = trajectory(reference, 5)
    reference.close()

    resumed = build_solver(scene)
    state_io.load(resumed, path)
    assert resumed.frame == 5
    got = trajectory(resumed, 5)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    resumed.close()


def test_a_closed_solver_comes_back_as_new_for_the_same_configuration():
    """build_solver reuses a closed solver of the same configuration (its kernels compiled): whatever
    its last user left in it, it starts as a new one and runs the same frames."""
    MPMSolver.release_idle()  # what earlier tests handed back
    scene = load_scene("water_ramps", {"grid": 32})
    first = build_solver(scene)
    expected = trajectory(first, 5)
    first.set_brushes([Brush((0.5, 0.3), 0.2, 50.0)])
    first.set_force_field(np.ones((first.config.force_keys, *first.force_cells, 2)), 0.0, 10.0)
    first.add_collider(box((0.1, 0.1), (0.2, 0.2)))
    first.gravity[None] = (0.0, 3.0)
    first.attached_by_someone = 1
    trajectory(first, 2)
    first.close()
    with pytest.raises(RuntimeError, match="closed"):
        first.step_frame()
    again = build_solver(scene)
    assert again is first, "the closed solver was not reused"
    assert again.frame == 0 and again.force_field() is None and not hasattr(again, "attached_by_someone")
    assert len(again.colliders) == len(scene.obstacles)
    for a, b in zip(expected, trajectory(again, 5)):
        np.testing.assert_array_equal(a, b)
    other = build_solver(load_scene("water_ramps", {"grid": 40}))
    assert other is not again  # another configuration gets a solver of its own
    other.close()
    again.close()
    made_directly = MPMSolver(again.config)  # not from acquire: freed when closed, never handed out
    made_directly.close()
    assert made_directly._tree is None and build_solver(scene) is again
    again.close()
    MPMSolver.release_idle()
    assert again._tree is None


def test_a_session_that_fails_to_start_hands_its_solver_back():
    from app.session import Session

    MPMSolver.release_idle()
    with pytest.raises(ValueError, match="unknown mode"):
        Session("dam_break", overrides={"grid": 32}, mode="bogus")
    (kept,) = MPMSolver._idle  # the failed session's solver, handed back rather than left allocated
    assert kept.closed and kept.config.grid == 32
    MPMSolver.release_idle()


def test_snapshot_restore_in_memory(small_water):
    snap = state_io.snapshot(small_water)
    first = trajectory(small_water, 3)
    state_io.restore(small_water, snap)
    again = trajectory(small_water, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_state_file_errors_leave_the_solver_untouched(small_water, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    before = small_water.positions()
    with pytest.raises(state_io.StateFileError, match="not a readable"):
        state_io.load(small_water, bad)
    other = build_solver(load_scene("dam_break", {"grid": 24}))
    mismatched = state_io.save(other, tmp_path / "other.npz")
    other.close()
    with pytest.raises(state_io.StateFileError, match="saved for"):
        state_io.load(small_water, mismatched)
    np.testing.assert_array_equal(small_water.positions(), before)


def test_save_is_atomic_and_leaves_no_temporary_files(small_water, tmp_path):
    state_io.save(small_water, tmp_path / "a.npz")
    state_io.save(small_water, tmp_path / "a.npz")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_three_dimensional_scene_runs():
    scene = load_scene("sand_pile_3d", {"grid": 16})
    solver = build_solver(scene)
    for _ in range(3):
        solver.step_frame()
    x = solver.positions()
    assert x.shape[1] == 3 and np.isfinite(x).all()
    assert (x >= 0).all() and (x <= np.asarray(scene.size)).all()
    solver.close()


def test_a_restore_keeps_the_emitter_objects_so_a_pour_can_still_be_stopped():
    """The hybrid restores a snapshot at every fallback and audit; a restore that replaced the emitters by
    copies left the Session's pour unstoppable (found by the 3D pour test in hybrid mode)."""
    from app.session import Session

    session = Session("dam_break", overrides={"grid": 32})
    session.pour([0.5, 0.8], 0.03, [0.0, -0.5])
    emitter = session.solver.emitters[-1]
    snap = state_io.snapshot(session.solver)
    session.tick()
    state_io.restore(session.solver, snap)
    assert session.solver.emitters[-1] is emitter
    session.stop_pour()
    n = session.solver.n
    session.tick()
    assert session.solver.n == n and not session.solver.emitters
    session.close()
