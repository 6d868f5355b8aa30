"""The fuzzer, the soak and the hardening they led to (issue 15). Not timed: figures live in
`python main.py bench reliability`."""

import math

import numpy as np
import pytest

from app.fuzz import Case, draw_case, run_case, run_fuzz
from app.script import load_script
from app.session import Session
from app.soak import PERIOD, soak
from sim.emitters import Emitter
from sim.scene import dump_toml, read_toml

SMALL = """
[scene]
dim = 2
size = [0.4, 0.3]
grid = 24

[[body]]
material = "water"
shape = "box"
min = [0.02, 0.0]
max = [0.15, 0.12]
"""


def small_case(actions: list[dict], frames: int = 4) -> Case:
    return Case(0, 0, SMALL, {"action": actions}, frames)


def test_a_fixed_fuzz_sample_runs_clean(tmp_path):
    """The first cases of the bench's seed: scenes valid and broken, scripts with values beyond range."""
    results = [run_case(draw_case(0, i), tmp_path) for i in range(4)]
    assert [r.outcome for r in results if r.outcome not in ("ran", "refused")] == [], results
    assert all("\n" not in r.message for r in results), [r.message for r in results]


def test_dump_toml_round_trips_a_case(tmp_path):
    case = draw_case(3, 7)
    path = tmp_path / "script.toml"
    path.write_text(dump_toml(case.script))
    assert read_toml(path) == case.script
    data = {"scene": {"dim": 2, "g": math.inf}, "body": [{"min": [0.0, 1]}], "obstacle": []}
    path.write_text(dump_toml(data))
    assert read_toml(path) == data


def test_the_fuzzer_sees_lost_particles(tmp_path, monkeypatch):
    """An erase that bypasses the ledger is what a lost particle looks like to the fuzzer."""
    monkeypatch.setattr(Session, "erase", lambda self, c, r: self.solver.remove_in_sphere(c, r))
    case = small_case([{"frame": 1, "type": "erase", "center": [0.08, 0.05], "radius": 0.05}])
    result = run_case(case, tmp_path)
    assert result.outcome == "unaccounted" and result.unaccounted > 0, result


def test_the_fuzzer_sees_a_traceback(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Session, "brush", broken)
    case = small_case(
        [{"frame": 0, "type": "brush", "center": [0.1, 0.1], "radius": 0.05, "strength": 10.0,
          "mode": "attract"}]
    )  # fmt: skip
    result = run_case(case, tmp_path)
    assert result.outcome == "traceback" and "RuntimeError: a bug" in result.traceback


def test_a_hung_worker_is_a_crash_with_its_case_kept(tmp_path):
    """A case that outlives the timeout is killed, counted as a crash and written out for replay."""
    report = run_fuzz(1, 0, tmp_path, timeout_s=0.2, progress=False)
    assert report.summary()["crashes"] == 1
    kept = tmp_path / report.results[0].name
    assert (kept / "scene.toml").is_file() and (kept / "script.toml").is_file()
    assert (kept / "result.json").is_file() and not (tmp_path / "work").exists()


def test_a_refused_scripted_action_is_a_message_and_the_run_goes_on(tmp_path):
    script = tmp_path / "script.toml"
    script.write_text(
        dump_toml(
            {
                "action": [
                    {
                        "frame": 0,
                        "type": "pour",
                        "center": [0.2, 0.2],
                        "radius": 0.01,
                        "velocity": [1e4, 0.0],
                        "material": "water",
                    },
                    {
                        "frame": 0,
                        "type": "pour",
                        "center": [0.2, 0.2],
                        "radius": 0.01,
                        "velocity": [0.0, -1.0],
                        "material": "lava",
                    },
                    {"frame": 1, "type": "quality", "multiplier": 1000.0},
                    {"frame": 1, "type": "gravity", "value": 3.0},
                    {"frame": 2, "type": "save", "path": "state.npz"},
                    {"frame": 3, "type": "load", "path": "missing.npz"},
                ]
            }
        )  # fmt: skip
    )
    (tmp_path / "scene.toml").write_text(SMALL)
    session = Session(tmp_path / "scene.toml")
    session.script = load_script(script, 2)
    messages = [m for _ in range(4) for m in session.tick().messages]
    assert session.frame == 4 and np.isfinite(session.solver.positions()).all()
    refused = [m for m in messages if " refused: " in m]
    assert len(refused) == 4, messages  # speed, material, quality, missing file
    assert "at most 100 m/s" in refused[0] and "lava" in refused[1] and "missing.npz" in refused[3]
    assert (tmp_path / "state.npz").is_file() and session.gravity == pytest.approx((0.0, -3.0))
    session.close()


def test_an_absurd_pour_rate_never_samples_more_than_the_room():
    """A rate of 1e15 particles per second once asked numpy for ~1e13 positions before any check."""
    emitter = Emitter(0, np.array([0.5, 0.5]), 1e3, np.array([0.0, -1.0]), rate=1e15)
    x = emitter.sample(0.0, 1 / 60, 1e-6, limit=50)
    assert x.shape == (50, 2)


def test_a_pour_that_fills_the_solver_stops_with_a_message(tmp_path):
    (tmp_path / "scene.toml").write_text(SMALL)
    session = Session(tmp_path / "scene.toml")
    session.pour([0.2, 0.2], 0.02, [0.0, -1.0], rate=1e12)
    report = session.tick()
    assert session.solver.n == session.solver.capacity == session.ledger.expected
    assert any("capacity" in m for m in report.messages)
    session.close()


def test_a_soak_reports_growth_and_slowdown_over_whole_cycles(tmp_path):
    (tmp_path / "scene.toml").write_text(SMALL)
    result = soak(str(tmp_path / "scene.toml"), 2 * PERIOD, mode="numerical", progress=False)
    assert result.frames == 2 * PERIOD and result.window == PERIOD
    assert result.rss_after_warmup > 0 and abs(result.rss_growth_mb) < 50
    assert 0.5 < result.slowdown_ratio < 2.0 and result.learned_share == 0.0


def test_a_pour_ends_beside_a_scene_emitter(tmp_path):
    """Found by the fuzzer (seed 0, cases 94 and 191): a timed pour ending while the scene's own emitter
    runs compared two emitters field by field, numpy arrays included, and raised."""
    text = (
        SMALL
        + '\n[[emitter]]\nmaterial = "water"\ncenter = [0.3, 0.2]\nradius = 0.02\nvelocity = [0.0, -1.0]\n'
    )
    (tmp_path / "scene.toml").write_text(text)
    session = Session(tmp_path / "scene.toml")
    session.pour([0.1, 0.2], 0.01, [0.0, -1.0], frames=2)
    for _ in range(3):
        session.tick()
    assert len(session.solver.emitters) == 1 and session.solver.n == session.ledger.expected
    session.close()
