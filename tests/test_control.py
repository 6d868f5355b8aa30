"""Sketch-to-force control: sketches, force fields, reverse-modelling labels, the diffusion model, the
closed loop with the shipped weights, the Session's sketch action and the eval pipeline."""

import json

import numpy as np
import pytest

from control.forcefield import MAX_CONTROL_ACCEL, ForceField, G, pull_fields, push_fields
from control.sketch import MAX_POINTS, SKETCH_CHANNELS, parse_sketch, rasterise

SIZE, CELL = (1.0, 1.0), 1.0 / 32


# ------------------------------------------------------------------------------------------ sketches
@pytest.mark.parametrize(
    "strokes, words",
    [
        ([], "empty"),
        ([[]], "empty"),
        ([[[0.5, 0.5]]], "single point"),
        ([[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]], "single point"),
        ([[[1.5, 1.2], [1.8, 1.9], [2.5, 1.5]]], "outside the domain"),
        ([[[0.5, 0.5], [0.505, 0.5]]], "too short"),
        ([[[float("nan"), 0.1]]], "empty"),
        (["not a stroke"], "not a list of points"),
    ],
)
def test_degenerate_sketches_are_no_ops_with_a_message(strokes, words):
    result = parse_sketch(strokes, SIZE, CELL)
    assert not result.ok and result.sketch.empty
    assert any(words in m for m in result.messages), result.messages


def test_a_scribble_is_a_no_op_with_a_message():
    t = np.linspace(0, 6 * np.pi, 400)
    scribble = np.stack([0.5 + 0.2 * np.sin(t) + 0.05 * t / 6, 0.5 + 0.15 * np.sin(2.3 * t)], 1)
    result = parse_sketch([scribble], SIZE, CELL)
    assert not result.ok and "scribble" in result.messages[0]


def test_a_stroke_partly_outside_is_clipped_and_10000_points_are_resampled():
    line = np.stack([np.linspace(0.2, 1.4, 10_000), np.full(10_000, 0.3)], 1)
    result = parse_sketch([line], SIZE, CELL)
    assert result.ok and len(result.sketch.paths) == 1
    path = result.sketch.paths[0]
    assert len(path) <= MAX_POINTS and path[:, 0].max() <= 1.0
    assert any("clipped" in m for m in result.messages)
    np.testing.assert_allclose(path[-1], [1.0, 0.3], atol=1e-9)


def test_open_strokes_are_paths_closed_ones_regions_and_they_combine():
    angle = np.linspace(0, 2 * np.pi, 50)
    loop = np.stack([0.7 + 0.1 * np.cos(angle), 0.6 + 0.1 * np.sin(angle)], 1)
    arrow = [[0.1, 0.2], [0.3, 0.25], [0.5, 0.2]]
    result = parse_sketch([arrow, loop], SIZE, CELL)
    assert result.ok and not result.messages
    assert len(result.sketch.paths) == 1 and len(result.sketch.regions) == 1
    channels = rasterise(result.sketch, (32, 32), CELL)
    assert channels.shape == (SKETCH_CHANNELS, 32, 32)
    on_path = channels[0] > 0.5
    assert on_path[int(0.3 / CELL), int(0.25 / CELL)] and not on_path[16, 30]
    tangent_x, tangent_y = channels[1][on_path], channels[2][on_path]  # scaled by the mask
    assert (tangent_x > 0.45).all() and (np.abs(tangent_y) < 0.5 * tangent_x).all()  # along +x
    assert channels[3][int(0.7 / CELL), int(0.6 / CELL)] == 1 and channels[3][3, 3] == 0
    assert channels[4][int(0.1 / CELL), int(0.2 / CELL)] > 0.7  # start marker
    assert channels[5][int(0.5 / CELL), int(0.2 / CELL)] > 0.7  # end marker


def test_force_fields_are_capped():
    values = np.zeros((4, 32, 32, 2), np.float32)
    values[..., 0] = 1e6
    values[0, 0, 0] = np.nan
    field = ForceField(values, 10)
    assert np.isfinite(field.values).all()
    assert field.peak <= MAX_CONTROL_ACCEL * (1 + 1e-5)


# ------------------------------------------------------------------------------------- labels, model
@pytest.fixture(scope="module")
def control_shards(tmp_path_factory):
    from control.data import ControlDatagenConfig, datagen_control

    out = {}
    for kind in ("physical", "published"):
        folder = tmp_path_factory.mktemp(kind)
        out[kind] = datagen_control(ControlDatagenConfig("water2d", 1, folder, kind, seed=5), progress=False)
    return out


def test_physical_labels_replay_within_tolerance_and_published_ones_are_measured(control_shards):
    from control.data import EXAMPLES_PER_STATE, REPLAY_TOLERANCE, replay_report

    physical = replay_report(control_shards["physical"])
    assert physical["examples"] == EXAMPLES_PER_STATE and physical["mass_rmse"]["max"] <= REPLAY_TOLERANCE
    assert physical["within_tolerance"] == 1.0
    published = replay_report(control_shards["published"])
    assert np.isfinite(published["mass_rmse"]["mean"]) and published["mass_rmse"]["mean"] > 0
    shard = np.load(control_shards["physical"][0])
    assert shard["condition"].shape[1:] == (11, 32, 32) and shard["label"].shape[1:] == (4, 32, 32, 2)
    assert json.loads(str(shard["sketch"]))  # each example has the sketch its outcome implies


def test_train_control_resumes_and_writes_loadable_weights(control_shards, tmp_path):
    from control.model import load_control
    from control.train import ControlTrainConfig, train_control

    data = control_shards["physical"][0].parent
    cfg = ControlTrainConfig(
        "water2d", data, tmp_path / "w.safetensors", tmp_path / "run", steps=6, batch=4, checkpoint_every=3
    )
    train_control(cfg, progress=False)
    cfg.steps, cfg.resume = 9, True
    result = train_control(cfg, progress=False)
    assert result["steps"] == 9
    rows = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # steps 3, 6, 9
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["data"]["kind"] == "physical" and meta["steps"] == 9 and meta["date"]
    model = load_control(tmp_path / "w.safetensors")
    import torch

    sample = model.sample(torch.zeros(1, 11, 32, 32), steps=10)
    assert sample.shape == (1, 8, 32, 32) and torch.isfinite(sample).all()


def test_corrupt_control_weights_give_a_reason_not_a_crash(tmp_path):
    from control.controller import load_for_scene
    from sim.scene import load_scene

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    (tmp_path / "bad.json").write_text(
        json.dumps({"spec": {"family": "x", "dim": 2, "keys": 4, "materials": ["water"], "frame_dt": 1 / 60}})
    )
    controller, message = load_for_scene(load_scene("dam_break"), str(bad))
    assert controller is None and "corrupt" in message
    controller, message = load_for_scene(load_scene("dam_break"), str(tmp_path / "missing.safetensors"))
    assert controller is None and "not found" in message


# ------------------------------------------------------------------------- the shipped controller
@pytest.fixture(scope="module")
def family_solver():
    from neural.data import _family_solver

    solver = _family_solver("water2d", for_controller=True)
    yield solver
    solver.close()


@pytest.fixture(scope="module")
def controller():
    from control.controller import Controller, weights_dir

    return Controller.load(weights_dir() / "water2d.safetensors")


def _held_out(solver, index: int, warmup: int):
    from control.data import _seed_state
    from control.evaluate import HELD_OUT_SEED
    from sim import state as state_io

    _seed_state(solver, "water2d", HELD_OUT_SEED, index, warmup)
    return state_io.snapshot(solver)


def test_a_rightward_arrow_moves_the_centroid_right_more_than_no_force(family_solver, controller):
    from control.condition import centroid
    from control.controller import ClosedLoop
    from control.evaluate import _rollout

    start = _held_out(family_solver, 3, 30)
    mass = family_solver.masses()
    here = centroid(start.particles["x"], mass)
    arrow = [here.tolist(), (here + [0.3, 0.0]).tolist()]
    sketch = parse_sketch([arrow], SIZE, CELL).sketch
    free = centroid(_rollout(family_solver, start, 36), mass)
    loop = ClosedLoop(controller, sketch, 36)
    steered = centroid(_rollout(family_solver, start, 36, loop=loop), mass)
    assert len(loop.plan_ms) >= 4  # closed loop: it re-planned during the window
    assert steered[0] - here[0] > free[0] - here[0] + 0.05, (here, free, steered)


def test_a_region_sketch_raises_the_mass_fraction_inside(family_solver, controller):
    from control.condition import centroid
    from control.controller import ClosedLoop
    from control.evaluate import _rollout
    from control.sketch import inside_polygon

    # Held-out state 9: a region beside the water on the floor. Region control is the weak side of the
    # controller (see the README's eval table); this checks the effect exists where the water can get there.
    start = _held_out(family_solver, 9, 20)
    mass = family_solver.masses()
    here = centroid(start.particles["x"], mass)
    middle = np.clip(here + [0.25 if here[0] < 0.5 else -0.25, 0.0], 0.15, 0.85)
    angle = np.linspace(0, 2 * np.pi, 40)
    loop_points = middle + 0.12 * np.stack([np.cos(angle), np.sin(angle)], 1)
    sketch = parse_sketch([loop_points], SIZE, CELL).sketch
    assert sketch.kind == "region"

    def inside(x):
        return mass[inside_polygon(x, sketch.regions[0])].sum() / mass.sum()

    free = inside(_rollout(family_solver, start, 40))
    steered = inside(_rollout(family_solver, start, 40, loop=ClosedLoop(controller, sketch, 40)))
    assert steered > free + 0.05, (free, steered)


def test_the_preview_is_the_quick_plan_and_leaves_the_planning_model_alone(controller):
    import torch

    from control.bench import _plan_inputs
    from control.controller import QUICK_STEPS

    fluid, sketch, h = _plan_inputs(controller)
    quick = controller.candidates(fluid, sketch, 40, h, 1, seed=2, steps=QUICK_STEPS)[0].values
    before = controller.candidates(fluid, sketch, 40, h, 2, seed=5)
    shown = controller.preview(fluid, sketch, 40, h, seed=2).values
    # the same sample in another memory layout: equal to float rounding
    assert np.abs(shown - quick).max() <= 1e-3 * np.abs(quick).max(), np.abs(shown - quick).max()
    # the critic's fields are drawn by the untouched model: bit for bit what they were
    after = controller.candidates(fluid, sketch, 40, h, 2, seed=5)
    assert all(np.array_equal(a.values, b.values) for a, b in zip(before, after))
    weight = next(controller.model.parameters())
    assert weight.dim() != 4 or weight.is_contiguous(memory_format=torch.contiguous_format)


def test_session_sketch_in_hybrid_mode_applies_the_plan_and_moves_the_water():
    from app.session import Session
    from control.condition import centroid

    runs = {}
    for sketched in (False, True):
        session = Session("dam_break", mode="hybrid")
        assert session.mode == "hybrid", session.mode_message
        x = session.solver.positions()
        mass = session.solver.masses()
        here = centroid(x, mass)
        if sketched:
            # an arrow straight up: the free collapse takes the water the other way, so only a push
            # can bring it nearer the stroke's end (and the critic's choice of no force never wins)
            messages = session.sketch([[here.tolist(), (here + [0.0, 0.2]).tolist()]], window_frames=30)
            assert "steering" in messages[-1]
        paths = [session.tick().path for _ in range(30)]
        if sketched:
            assert session.control.plan_ms and "sketch control" in session.control_status()
            assert session.sketch_strokes() and session.frame_view().strokes
        assert "neural" in paths
        runs[sketched] = centroid(session.solver.positions(), mass)[1]
        session.close()
    assert runs[True] > runs[False] + 0.02, runs


def test_session_sketch_no_ops_keep_the_state_and_say_why():
    from app.session import Session

    session = Session("dam_break", overrides={"grid": 32})
    before = session.solver.positions().copy()
    for strokes in ([], [[[0.1, 0.1]]], [[[5.0, 5.0], [6.0, 6.0]]]):
        messages = session.sketch(strokes)
        assert messages and session.control is None and session.solver.force_field() is None
    session.control_model = "no_such_controller"
    session._controller = None
    messages = session.sketch([[[0.1, 0.1], [0.4, 0.1]]])
    assert session.control is None and any("not found" in m for m in messages)
    np.testing.assert_array_equal(session.solver.positions(), before)
    session.close()


def test_record_script_sketch_action_parses_and_rejects_bad_strokes():
    from app.script import ScriptError, parse_script

    actions = parse_script(
        {
            "action": [
                {"frame": 5, "type": "sketch", "strokes": [[[0.1, 0.1], [0.3, 0.1]]], "window": 20},
                {"frame": 30, "type": "clear_sketch"},
            ]
        },
        "s.toml",
        2,
    )
    assert actions[0].kind == "sketch" and actions[0].args["window"] == 20
    with pytest.raises(ScriptError, match="strokes"):
        parse_script({"action": [{"frame": 1, "type": "sketch", "strokes": [[0.1, 0.2]]}]}, "s.toml", 2)


def test_eval_control_pipeline_on_a_small_case_file(tmp_path, family_solver, controller):
    from control.evaluate import Budget, load_cases, run_case, summarise

    (tmp_path / "cases.toml").write_text(
        '[[case]]\nname = "arrow"\nscene = "water2d:3"\nwarmup_frames = 30\nwindow_frames = 16\n'
        "strokes = [[[0.3, 0.1], [0.5, 0.12], [0.6, 0.1]]]\n"
    )
    cases = load_cases(tmp_path / "cases.toml")
    result = run_case(cases[0], family_solver, controller, Budget(1, 2, 1, 2), "water2d")
    summary = summarise([result])
    for method in ("none", "constant", "ours", "oracle"):
        assert np.isfinite(summary[method]["score"])
    assert summary["none"]["score"] == pytest.approx(summary["none"]["primary"] + 1.0)
    assert summary["plan_ms"]["plans"] >= 2
    (tmp_path / "bad.toml").write_text(
        '[[case]]\nname = "x"\nscene = "no_such_scene"\nwindow_frames = 5\nstrokes = []\n'
    )
    with pytest.raises(ValueError, match="FAMILY:INDEX"):
        load_cases(tmp_path / "bad.toml")


def test_the_critic_prefers_a_push_toward_the_strokes_end(family_solver):
    """The learned critic (control.critic) rolls candidate fields out with the learned stepper and scores
    them as the eval does: of a push toward an arrow's end and one away from it, it picks the first, and
    its rollout of the push moves the water as the solver's does (same sign, same order of size)."""
    from control.condition import centroid
    from control.critic import Critic
    from control.evaluate import _rollout, family_critic
    from control.forcefield import G, constant_field

    critic = family_critic("water2d")
    assert isinstance(critic, Critic)
    start = _held_out(family_solver, 3, 30)
    mass = family_solver.masses()
    here = centroid(start.particles["x"], mass)
    sketch = parse_sketch([[here.tolist(), (here + [0.3, 0.0]).tolist()]], SIZE, CELL).sketch
    cells, keys = tuple(family_solver.force_cells), family_solver.config.force_keys
    toward, away = (constant_field([s * G, 0.0], keys, cells, 30) for s in (1.0, -1.0))
    state = critic.capture(family_solver)
    best, scores, _, _ = critic.choose(state, [away.values, toward.values], 30, sketch, SIZE)
    assert best == 1 and scores[1] < min(scores[0], scores[2]), scores  # toward beats away and no force
    learned = centroid(critic.rollout(state, [toward.values], 30)[0], mass)[0] - here[0]
    solved = centroid(_rollout(family_solver, start, 30, toward), mass)[0] - here[0]
    assert learned > 0.02 and 0.5 < learned / solved < 2.0, (learned, solved)


def test_the_critic_scores_each_plan_at_the_windows_end(family_solver, controller):
    """A late re-plan is drawn for at least MIN_PLAN_FRAMES frames (the model saw no shorter windows),
    but the critic must score the fluid where the eval does: at the window's end, not past it."""
    from control.controller import ClosedLoop
    from control.critic import Critic
    from control.evaluate import _rollout, family_critic

    horizons, proposals = [], []

    class Recording(Critic):
        def plan(self, state, fields, frames, sketch, size, horizon=None):
            horizons.append(min(frames, horizon or frames))
            proposals.append(len(fields))
            return super().plan(state, fields, frames, sketch, size, horizon)

    critic = family_critic("water2d")
    start = _held_out(family_solver, 3, 30)
    sketch = parse_sketch([[[0.3, 0.1], [0.6, 0.1]]], SIZE, CELL).sketch
    loop = ClosedLoop(controller, sketch, 30, critic=Recording(critic.model), candidates=2)
    _rollout(family_solver, start, 30, loop=loop)
    assert horizons == [30, 22, 14, 6], horizons
    # 2 samples, 2 pulls and 3 uniform pushes (control.forcefield); from the second plan, the plan in force
    assert proposals == [7, 8, 8, 8], proposals


def test_spray_is_the_mass_in_isolated_cells():
    from control.score import spray_share

    rng = np.random.default_rng(0)
    block = rng.uniform([0.1, 0.0], [0.4, 0.2], (4000, 2))  # a dense body: every cell has neighbours
    mass = np.ones(4000)
    assert spray_share(block, mass, SIZE) < 0.01
    droplets = np.concatenate([block, rng.uniform([0.5, 0.4], [1.0, 1.0], (200, 2))])
    share = spray_share(droplets, np.ones(4200), SIZE)
    assert 0.03 < share <= 200 / 4200 + 1e-9, share


def _loop(centre, radius, points=48):
    angle = np.linspace(0.0, 2.0 * np.pi, points)
    return [[[centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)] for a in angle]]


def test_a_regions_target_is_the_fluid_at_rest_in_it_filled_from_the_bottom():
    """A region's implied target holds the fluid's rest volume, not the loop's area: a small pool sits
    low in a large loop at about the fluid's own density, and what overflows a small loop stands above
    it, in its columns."""
    from control.score import implied_target, spray_share
    from control.sketch import inside_region

    rng = np.random.default_rng(1)
    spacing = 1.0 / 128  # a film of 0.02 m^2 at 1 particle per metric cell
    film = np.stack(np.meshgrid(np.arange(0.1, 0.9, spacing), np.arange(0.0, 0.025, spacing)), -1)
    film = film.reshape(-1, 2)
    mass, volume = np.ones(len(film)), len(film) * spacing**2
    loop = parse_sketch(_loop((0.5, 0.3), 0.2), SIZE, CELL).sketch
    target = implied_target(film, mass, loop, SIZE, volume)
    assert target.shape == film.shape
    polygon = loop.regions[0]
    assert inside_region(target, polygon).mean() > 0.99
    # filled from the loop's bottom (0.1) to the level that holds the volume: about 0.1 m deep here
    assert target[:, 1].min() < 0.12 and np.quantile(target[:, 1], 0.99) < 0.25
    assert spray_share(target, mass, SIZE) < 0.05
    # a lot of fluid in a small loop: the loop is full and the rest stands above it, within its width
    pile = rng.uniform([0.0, 0.0], [1.0, 0.3], (20000, 2))
    small = parse_sketch(_loop((0.5, 0.15), 0.08), SIZE, CELL).sketch
    target = implied_target(pile, np.ones(len(pile)), small, SIZE, 0.3)
    inside = inside_region(target, small.regions[0])
    assert 0.1 < inside.mean() < 0.3, inside.mean()  # the loop's area (0.02) of the volume (0.3)
    assert np.all(np.abs(target[:, 0] - 0.5) <= 0.081) and target[~inside, 1].min() > 0.1
    # 3D: the loop's prism within its slab, filled from the bottom the same way
    size3 = (1.0, 1.0, 1.0)
    loop3 = [[[0.5 + 0.2 * np.cos(a), 0.3 + 0.2 * np.sin(a), 0.5] for a in np.linspace(0, 2 * np.pi, 48)]]
    sketch3 = parse_sketch(loop3, size3, CELL).sketch
    blob = rng.uniform([0.1, 0.0, 0.1], [0.9, 0.05, 0.9], (6000, 3))
    target = implied_target(blob, np.ones(6000), sketch3, size3, 0.002)
    assert inside_region(target, sketch3.regions[0]).mean() > 0.99
    assert target[:, 1].max() < 0.3  # 0.002 m^3 fills the lowest part of the prism only
    # a loop on the floor: its prism is the column over it; the target fills a layer about as thick as
    # the loop is wide (0.2 m) from the floor, and what overflows that layer stays in it, denser
    angles = np.linspace(0, 2 * np.pi, 48)
    floor_loop = [[[0.5 + 0.2 * np.cos(a), 0.0, 0.5 + 0.2 * np.sin(a)] for a in angles]]
    sketch3 = parse_sketch(floor_loop, size3, CELL).sketch
    target = implied_target(blob, np.ones(6000), sketch3, size3, 0.01)  # 0.01 / (pi 0.2^2) = 0.08 m deep
    assert inside_region(target, sketch3.regions[0]).mean() > 0.99
    assert 0.06 < target[:, 1].max() < 0.1, target[:, 1].max()
    target = implied_target(blob, np.ones(6000), sketch3, size3, 0.04)  # 0.32 m of water in a 0.2 m layer
    assert inside_region(target, sketch3.regions[0]).mean() > 0.99 and target[:, 1].max() <= 0.2


def test_eval_control_runs_a_case_file_on_a_builtin_scene(tmp_path):
    """A case may name an app scene: it runs on that scene's solver at the scene's resolution, from
    warmup_frames after its start, with the critic that fits it, and writes its frame sheet."""
    from control.controller import weights_dir
    from control.evaluate import Budget, evaluate_control, load_cases

    (tmp_path / "cases.toml").write_text(
        '[[case]]\nname = "arrow on the dam break"\nscene = "dam_break"\nwarmup_frames = 3\n'
        "window_frames = 6\nstrokes = [[[0.2, 0.1], [0.35, 0.1], [0.45, 0.12]]]\n"
    )
    cases = load_cases(tmp_path / "cases.toml")
    summary, results = evaluate_control(
        "water2d",
        weights_dir() / "water2d.safetensors",
        cases,
        budget=Budget(1, 2, 1, 2),
        plots=tmp_path,
        progress=False,
        candidates=2,
    )
    assert summary["cases"] == 1 and not summary["skipped"], summary["skipped"]
    for method in ("none", "constant", "ours", "oracle"):
        assert np.isfinite(summary[method]["score"]) and 0.0 <= summary[method]["spray"] <= 1.0
    assert results[0]["size"] == (0.584, 0.584)  # the scene's own domain, not the family's
    assert (tmp_path / "control_water2d_case0.png").stat().st_size > 10_000


def test_pull_fields_point_at_the_goal_and_ease_off_there():
    """The critic's analytic proposals: toward the target from every cell at 1 g and 2 g, weaker within
    5 cm of it (no overshoot), and for a region each also with gravity's worth of lift."""
    cells, h, target = (16, 16), 1 / 16, np.array([0.75, 0.25])
    paths = pull_fields(target, cells, h, keys=3, frames=30, lift=False)
    regions = pull_fields(target, cells, h, keys=3, frames=30, lift=True)
    assert len(paths) == 2 and len(regions) == 4
    centres = (np.stack(np.meshgrid(np.arange(16), np.arange(16), indexing="ij"), -1) + 0.5) * h
    for field, strength in zip(paths, (G, 2 * G)):
        assert field.values.shape == (3, 16, 16, 2) and field.frames == 30
        far = np.linalg.norm(centres - target, axis=-1) > 0.1
        toward = ((target - centres) * field.values[0]).sum(-1)
        assert (toward[far] > 0).all()
        np.testing.assert_allclose(np.linalg.norm(field.values[0][far], axis=-1), strength, rtol=1e-5)
        near = np.linalg.norm(centres - target, axis=-1) < 0.04
        assert (np.linalg.norm(field.values[0][near], axis=-1) < strength).all()
    lifted = regions[1].values - regions[0].values
    np.testing.assert_allclose(lifted[..., 1], G, rtol=1e-5)
    assert all(f.peak <= MAX_CONTROL_ACCEL + 1e-4 for f in regions)


def test_push_fields_carry_the_fluid_whole_toward_the_goal():
    """The uniform proposals: the same vector in every cell and key, along the line from the fluid's
    centroid to the goal, at 0.5, 1 and 2 g; for a region each also with gravity's worth of lift."""
    origin, target = np.array([0.2, 0.1]), np.array([0.8, 0.9])
    paths = push_fields(origin, target, (12, 10), keys=4, frames=30, lift=False)
    regions = push_fields(origin, target, (12, 10), keys=4, frames=30, lift=True)
    assert len(paths) == 3 and len(regions) == 6
    unit = (target - origin) / np.linalg.norm(target - origin)
    for field, strength in zip(paths, (0.5 * G, G, 2 * G)):
        assert field.values.shape == (4, 12, 10, 2) and field.frames == 30
        expected = np.broadcast_to(strength * unit, field.values.shape)
        np.testing.assert_allclose(field.values, expected, rtol=1e-5)
    np.testing.assert_allclose((regions[1].values - regions[0].values)[..., 1], G, rtol=1e-5)
    np.testing.assert_allclose(regions[0].values, paths[0].values)
