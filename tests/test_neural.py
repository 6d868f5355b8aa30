"""The learned stepper: transfers, advection, guard, weights handling, and a small end-to-end pipeline."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from neural.catalog import make_stepper
from neural.data import DatagenConfig, datagen
from neural.evaluate import calibrate, evaluate, mass_rmse
from neural.families import FAMILY_DIM, MAX_PARTICLES_3D, family_particles, random_scene
from neural.grid import PAD, ModelGrid, frame_features
from neural.guard import Guard
from neural.model import GridStepper, ModelSpec, WeightsError, load_weights, save_weights
from neural.stepper import HybridStepper, NeuralStepper, NumericalStepper, find_weights_dir
from neural.train import Shards, TrainConfig, optimise, rollout_loss, train
from sim.build import build_solver
from sim.scene import load_scene, parse_scene

SHIPPED = sorted(find_weights_dir().glob("*.safetensors"))
SHIPPED_2D = [p for p in SHIPPED if FAMILY_DIM.get(p.stem) == 2]
TANK3D = find_weights_dir() / "water_tank3d.safetensors"


def small_spec(**kw) -> ModelSpec:
    return ModelSpec(
        **{
            "family": "test",
            "dim": 2,
            "h": 1 / 64,
            "frame_dt": 1 / 60,
            "sub_intervals": 4,
            "materials": ["water"],
            "obstacles": False,
            "widths": [8, 16, 16, 16],
            **kw,
        }
    )


@pytest.fixture
def dam():
    solver = build_solver(load_scene("dam_break", {"grid": 64}))
    yield solver
    solver.close()


def test_torch_and_taichi_transfers_agree(dam):
    grid = ModelGrid(2, 1 / 64, dam.config.size)
    state = dam.particles()
    mass = torch.from_numpy(dam.masses(state["slot"]).astype(np.float32))
    zeros = torch.zeros(2, *grid.shape)
    features = frame_features(
        torch.from_numpy(state["x"]),
        torch.from_numpy(state["v"]),
        mass,
        mass / 1000.0,
        torch.from_numpy(state["material"]),
        torch.zeros(grid.shape),
        zeros,
        None,
        grid,
    )
    transfer = dam.grid_transfer(grid.h, PAD, grid.shape)
    np.testing.assert_allclose(features[:4].numpy(), transfer[:4], atol=1e-5)
    assert transfer[4].sum() == pytest.approx(float(mass.sum()), rel=1e-5)


def test_advection_conserves_particle_count_and_mass(dam):
    grid = ModelGrid(2, 1 / 64, dam.config.size)
    n, mass = dam.n, dam.masses().sum()
    rng = np.random.default_rng(0)
    velocities = rng.normal(0, 0.5, (4, *grid.shape, 2)).astype(np.float32)
    for _ in range(5):
        dam.advect_frame(velocities, grid.h, PAD)
    assert dam.n == n and dam.masses().sum() == mass
    x = dam.positions()
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= np.asarray(dam.config.size)).all()
    assert dam.frame == 5 and dam.time == pytest.approx(5 / 60)


class Broken(GridStepper):
    """A network whose output is NaN or blown up: the guard must catch both."""

    def __init__(self, spec, failure):
        super().__init__(spec)
        self.failure = failure

    def forward(self, features, residual=False, gravity=None):
        out = super().forward(features, residual, gravity)
        return out * float("nan") if self.failure == "nan" else out * 0 + 1e3


@pytest.mark.parametrize("failure", ["nan", "blowup"])
def test_guard_catches_injected_failures(dam, failure):
    network = Broken(small_spec(), failure)
    hybrid = HybridStepper(NeuralStepper(network, "broken"), Guard(network.spec.h))
    report = hybrid.advance(dam)
    assert report.path == "fallback", report
    assert report.reason
    x = dam.positions()
    assert np.isfinite(x).all()
    # The fallback reran the frame with the solver: the water only fell a little.
    assert x[:, 1].max() < 0.3


def test_mismatched_and_corrupt_weights_give_a_reason(tmp_path):
    scene = load_scene("dam_break")
    model = GridStepper(small_spec(dim=3))
    save_weights(model, tmp_path / "three_d.safetensors", {"family": "test"})
    stepper, message = make_stepper("hybrid", scene, str(tmp_path / "three_d.safetensors"))
    assert isinstance(stepper, NumericalStepper) and "3D" in message and "numerically" in message
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    (tmp_path / "corrupt.json").write_text((tmp_path / "three_d.json").read_text())
    stepper, message = make_stepper("neural", scene, str(corrupt))
    assert isinstance(stepper, NumericalStepper) and "corrupt" in message
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")
    stepper, message = make_stepper("hybrid", scene, "no_such_model")
    assert isinstance(stepper, NumericalStepper) and "unknown model" in message


def test_datagen_train_calibrate_eval_end_to_end(tmp_path):
    data = tmp_path / "data"
    shards = datagen(DatagenConfig("water2d", 3, 6, data, seed=5), progress=False)
    assert len(shards) == 3 and all(p.exists() for p in shards)
    with np.load(shards[0]) as z:
        assert z["features"].shape[0] == 6 and z["x"].shape[0] == 7
    # Deterministic per seed: regenerating a shard gives the same bytes of state.
    again = datagen(DatagenConfig("water2d", 1, 6, tmp_path / "again", seed=5), progress=False)
    with np.load(shards[0]) as a, np.load(again[0]) as b:
        np.testing.assert_array_equal(a["x"], b["x"])
    weights = tmp_path / "model.safetensors"
    result = train(
        TrainConfig(
            "water2d", data, weights, tmp_path / "run", steps=12, batch=2, checkpoint_every=6, holdout=1
        ),
        progress=False,
    )
    assert np.isfinite(result["final_train_loss"])
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["steps"] == 12 and meta["data"]["trajectories"] == 3 and "date" in meta and "command" in meta
    assert (tmp_path / "run" / "loss.csv").exists() and (tmp_path / "run" / "loss.png").exists()
    # Resume continues from the checkpoint rather than starting over.
    result = train(
        TrainConfig("water2d", data, weights, tmp_path / "run", steps=14, batch=2, resume=True, holdout=1),
        progress=False,
    )
    assert json.loads(weights.with_suffix(".json").read_text())["steps"] == 14
    # Fine-tuning from those weights, with early frames, pushforward unrolled over 1-3 of its own frames
    # from the first step and the rollout loss over 2: the scales are the initial weights', and the
    # metadata says where it started.
    tuned = tmp_path / "tuned.safetensors"
    config = TrainConfig(
        "water2d",
        data,
        tuned,
        tmp_path / "tune",
        steps=4,
        batch=2,
        holdout=1,
        pushforward_after=0.0,
        pushforward_share=1.0,
        pushforward_frames=3,
        early_share=0.5,
        rollout_frames=2,
        rollout_picks=1,
        init=weights,
    )
    assert np.isfinite(train(config, progress=False)["final_train_loss"])
    meta = json.loads(tuned.with_suffix(".json").read_text())
    assert meta["init"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["pushforward"]["frames"] == 3 and meta["early"]["share"] == 0.5
    assert meta["rollout"]["frames"] == 2 and np.isfinite(meta["rollout"]["final_loss"])
    # The rollout loss reaches every weight, through both of its frames (advection and transfer too).
    model = load_weights(tuned)
    rollout_loss(model, Shards(data), [(1, 0)], 2).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0
    assert load_weights(tuned).spec.v_scale == load_weights(weights).spec.v_scale
    sand = next(p for p in SHIPPED if p.stem == "sand_ramps2d")
    with pytest.raises(WeightsError, match="materials"):
        train(dataclasses.replace(config, init=sand), progress=False)
    thresholds = calibrate("water2d", weights, rollouts=1, frames=4)["thresholds"]
    assert set(thresholds) == {
        "energy_gain",
        "density",
        "compression",
        "speed",
        "j_drop",
        "collider_pushes",
        "position_clamps",
    }
    report = evaluate("water2d", weights, rollouts=1, frames=4, lowres_candidates=((32, 2),))
    for key in ("neural", "hybrid", "lowres"):
        assert np.isfinite(report["mass_rmse"][key])
    assert 0.0 <= report["fallback_rate"] <= 1.0


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_weights_load_with_metadata(path):
    model = load_weights(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["family"] == path.stem and meta["steps"] > 0 and "command" in meta and "date" in meta
    assert path.with_suffix(".guard.json").exists(), "shipped weights need calibrated guard thresholds"
    assert model.spec.dim == FAMILY_DIM[path.stem]


@pytest.mark.skipif(not SHIPPED_2D, reason="no shipped 2D weights yet")
def test_hybrid_dam_break_rollout_stays_finite_inside_and_close():
    scene = load_scene("dam_break", {"grid": 64})
    stepper, message = make_stepper("hybrid", scene)
    assert isinstance(stepper, HybridStepper), message
    reference, hybrid = build_solver(scene), build_solver(scene)
    mass = reference.masses()
    errors = []
    for _ in range(100):
        reference.step_frame()
        stepper.advance(hybrid)
        errors.append(mass_rmse(hybrid.positions(), mass, reference.positions(), mass, scene.size))
    x = hybrid.positions()
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= np.asarray(scene.size)).all()
    # Bound: the mean normalised mass RMSE stays under 0.15 (low-resolution MPM sits near 0.1 here).
    assert np.mean(errors) < 0.15, np.mean(errors)
    reference.close()
    hybrid.close()


@pytest.mark.skipif(not SHIPPED_2D, reason="no shipped 2D weights yet")
def test_brush_far_outside_training_range_is_caught_by_the_guard():
    """Training brushes reach 150 m/s^2; 1e5 must make the guard hand the frame to the solver."""
    from sim.solver import Brush

    scene = load_scene("dam_break", {"grid": 64})
    stepper, _ = make_stepper("hybrid", scene)
    solver = build_solver(scene)
    solver.set_brushes([Brush((0.07, 0.1), 0.1, 1e5, (1.0, 0.0))])
    report = stepper.advance(solver)
    assert report.path == "fallback", report.guard
    x = solver.positions()
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= np.asarray(scene.size)).all()
    solver.close()


def test_water_tank2d_is_water2d_in_dam_breaks_tank_at_its_cell():
    """dam_break's family: water2d's scenes scaled into a 0.6 m square (it holds the 0.584 m scene),
    simulated at dam_break's cell with its frictionless walls; half of them resting columns."""
    app = load_scene("dam_break")
    columns = 0
    for seed in range(40):
        scene = parse_scene(random_scene("water_tank2d", np.random.default_rng(seed)), "water_tank2d")
        assert scene.dim == 2 and scene.size == (0.6, 0.6) and scene.grid == 131
        assert all((b.lo >= 0).all() and (b.hi <= 0.6 + 1e-9).all() for b in scene.bodies)
        assert {b.material.name.lower() for b in scene.bodies} == {"water"}
        columns += len(scene.bodies) == 1 and not np.any(scene.bodies[0].velocity)
    assert pytest.approx(max(app.size) / app.grid, rel=0.01) == 0.6 / 131
    assert max(app.size) <= 0.6 and scene.friction == app.friction
    assert 10 <= columns <= 30


def test_water_sand_dam2d_is_a_resting_column_beside_sand_banks():
    """water_sand's family of dam breaks: a water column at rest against a wall, one or two resting sand
    banks on the floor beside it that touch neither the column nor each other, at water_sand's cell."""
    app = load_scene("water_sand")
    for seed in range(40):
        scene = parse_scene(random_scene("water_sand_dam2d", np.random.default_rng(seed)), "water_sand_dam2d")
        assert scene.dim == 2 and scene.grid == app.grid and max(scene.size) == max(app.size)
        water, *banks = scene.bodies
        assert water.material.name.lower() == "water" and 1 <= len(banks) <= 2
        assert not any(np.any(b.velocity) for b in scene.bodies)
        assert water.lo[1] == 0 and (water.lo[0] == 0 or water.hi[0] >= 0.55)  # against a wall
        for k, bank in enumerate(banks):
            assert bank.material.name.lower() == "sand" and bank.lo[1] == 0 and bank.hi[1] <= 0.15 + 1e-9
            for other in [water, *banks[:k]]:
                assert bank.hi[0] + 0.02 - 1e-9 <= other.lo[0] or other.hi[0] + 0.02 - 1e-9 <= bank.lo[0]


def test_sand_chute2d_drops_sand_onto_a_ramp_above_a_second_ramp():
    """sand_ramps' family: one sand block above the upper end of a ramp whose lower end lies near the lower
    end of a second ramp sloping the other way, both "separate", everything below sand_ramps' top, at its
    cell and wall friction."""
    app = load_scene("sand_ramps")
    for seed in range(40):
        scene = parse_scene(random_scene("sand_chute2d", np.random.default_rng(seed)), "sand_chute2d")
        assert scene.grid == app.grid and max(scene.size) == max(app.size) and scene.friction == app.friction
        (sand,) = scene.bodies
        assert sand.material.name.lower() == "sand" and sand.hi[1] <= app.size[1]
        upper, lower = scene.obstacles
        assert {upper.boundary, lower.boundary} == {app.obstacles[0].boundary}
        assert np.sign(upper.angle) == -np.sign(lower.angle) and 10 <= abs(lower.angle) <= 35
        assert upper.center[1] > lower.center[1] and abs(upper.center[0] - sand.middle[0]) < 0.35
        # some of the sand lies over the upper ramp (as sand_ramps' straddles its upper end)
        below = np.array(
            [[x, y] for x in np.linspace(sand.lo[0], sand.hi[0], 9) for y in np.linspace(0, sand.lo[1], 60)]
        )
        assert (upper.signed_distance(below) < 0).any()


# ------------------------------------------------------------------------------------------------ 3D


@pytest.mark.parametrize(
    "family, side, grid, app_scene",
    [
        ("water3d", 1.0, 32, None),
        ("sand3d", 1.0, 32, None),
        ("water_tank3d", 0.6, 41, "dam_break_3d"),
        ("sand_tank3d", 0.5, 40, "sand_pile_3d"),
    ],
)
def test_3d_family_scenes_are_valid_and_affordable(family, side, grid, app_scene):
    """Inside the family's cube, at its data resolution (the tanks: their app scene's cell, in a domain
    that holds the scene, with its walls' friction), within the particle budget."""
    for seed in range(40):
        raw = random_scene(family, np.random.default_rng(seed))
        scene = parse_scene(raw, family)
        assert scene.dim == 3 and scene.size == (side,) * 3 and scene.grid == grid
        assert 1 <= len(scene.bodies) <= (2 if family.startswith("sand") else 3)
        assert all((b.lo >= 0).all() and (b.hi <= side + 1e-9).all() for b in scene.bodies)
        volume = sum(float(np.prod(b.hi - b.lo)) for b in scene.bodies)
        assert family_particles(family, volume) <= MAX_PARTICLES_3D
        assert {b.material.name.lower() for b in scene.bodies} == {family.removesuffix("3d").split("_")[0]}
    if app_scene is not None:
        app = load_scene(app_scene)
        assert side / grid == pytest.approx(max(app.size) / app.grid, rel=0.01)
        assert max(app.size) <= side and scene.friction == app.friction


def test_water3d_has_dam_breaks_in_narrow_tanks():
    """Like water2d, water3d holds resting columns against a wall (dam_break_3d), half of them in a tank
    narrowed by a front wall, each filling the tank's depth and inside the particle budget."""
    columns, narrow = 0, 0
    for seed in range(60):
        raw = random_scene("water3d", np.random.default_rng(seed))
        body = raw["body"][0]
        if len(raw["body"]) != 1 or "velocity" in body or body["min"][2] > 0:  # blocks, or the fallback
            continue
        columns += 1
        front = [o["min"][2] for o in raw["obstacle"] if o["min"][2] > 0]
        depth = front[0] if front else 1.0
        narrow += bool(front)
        assert body["min"][1] == 0.0 and body["max"][2] == pytest.approx(depth) and body["min"][2] == 0.0
        assert (
            body["min"][0] == 0.0
            or any(o["min"][0] == pytest.approx(body["max"][0]) for o in raw["obstacle"])
            or body["max"][0] == 1.0
        )
        volume = float(np.prod(np.subtract(body["max"], body["min"])))
        assert family_particles("water3d", volume) <= MAX_PARTICLES_3D
    assert 15 <= columns <= 35 and 0 < narrow < columns


def test_3d_transfers_agree_and_advection_stays_inside():
    """The torch features datagen trains on match the Taichi transfer the stepper runs on, in 3D too."""
    solver = build_solver(load_scene("dam_break_3d", {"grid": 20}))
    grid = ModelGrid(3, 1 / 32, solver.config.size)
    state = solver.particles()
    mass = torch.from_numpy(solver.masses(state["slot"]).astype(np.float32))
    features = frame_features(
        torch.from_numpy(state["x"]),
        torch.from_numpy(state["v"]),
        mass,
        mass / 1000.0,
        torch.from_numpy(state["material"]),
        torch.zeros(grid.shape),
        torch.zeros(3, *grid.shape),
        None,
        grid,
    )
    transfer = solver.grid_transfer(grid.h, PAD, grid.shape)
    np.testing.assert_allclose(features[:4].numpy(), transfer[:4], atol=1e-5)
    assert transfer[4].sum() == pytest.approx(float(mass.sum()), rel=1e-5)
    n = solver.n
    velocities = np.random.default_rng(0).normal(0, 0.5, (4, *grid.shape, 3)).astype(np.float32)
    for _ in range(3):
        solver.advect_frame(velocities, grid.h, PAD)
    x = solver.positions()
    assert solver.n == n and np.isfinite(x).all()
    assert (x >= 0).all() and (x <= np.asarray(solver.config.size)).all()
    solver.close()


@pytest.fixture(scope="module")
def water3d_data(tmp_path_factory):
    """Two water3d trajectories of three frames (shared by the 3D smoke tests)."""
    data = tmp_path_factory.mktemp("water3d")
    return datagen(DatagenConfig("water3d", 2, 3, data, seed=3), progress=False)


def test_datagen_3d_smoke(water3d_data):
    assert len(water3d_data) == 2 and all(p.exists() for p in water3d_data)
    with np.load(water3d_data[0]) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["h"] == pytest.approx(1 / 32) and meta["solver_grid"] == 32
        assert len(meta["size"]) == 3 and len(meta["gravity"]) == 3
        assert z["features"].shape == (3, 14, 40, 40, 40) and z["targets"].shape == (3, 12, 40, 40, 40)
        assert z["x"].shape[0] == 4 and z["x"].shape[2] == 3 and z["solid"].shape == (40, 40, 40)
        assert np.isfinite(z["features"]).all() and np.isfinite(z["targets"]).all()


@pytest.fixture(scope="module")
def water3d_weights(water3d_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("water3d_model")
    weights = folder / "water3d.safetensors"
    cfg = TrainConfig(
        "water3d",
        water3d_data[0].parent,
        weights,
        folder / "run",
        steps=3,
        batch=1,
        checkpoint_every=3,
        holdout=1,
    )
    result = train(cfg, progress=False)
    return weights, result


def test_train_3d_smoke(water3d_weights):
    weights, result = water3d_weights
    assert np.isfinite(result["final_train_loss"]) and np.isfinite(result["final_val_loss"])
    model = load_weights(weights)
    assert model.spec.dim == 3 and model.spec.h == pytest.approx(1 / 32) and len(model.spec.gravity) == 3
    assert model.spec.autocast  # 3D weights run under bfloat16 autocast by default
    assert NeuralStepper(model).autocast and not NeuralStepper(model, autocast=False).autocast
    features = torch.zeros(1, model.spec.in_channels, 16, 16, 16)
    with torch.no_grad():
        assert model(features).shape == (1, 4, 3, 16, 16, 16)


def test_eval_3d_smoke(water3d_weights):
    # (calibrate runs the same code in 3D as in 2D, where the end-to-end test covers it: left out here to
    # keep the suite inside CI's 15 minutes)
    weights = water3d_weights[0]
    report = evaluate("water3d", weights, rollouts=1, frames=3, lowres_candidates=((16, 1),))
    for key in ("neural", "hybrid", "lowres"):
        assert np.isfinite(report["mass_rmse"][key])
    assert report["lowres"] == {"grid": 16, "ppc": 1}


@pytest.mark.skipif(not TANK3D.is_file(), reason="no assets/models/water_tank3d.safetensors")
def test_hybrid_dam_break_3d_stays_finite_and_inside():
    scene = load_scene("dam_break_3d")
    stepper, message = make_stepper("hybrid", scene)  # water_tank3d: trained at this scene's resolution
    assert isinstance(stepper, HybridStepper) and stepper.weights == "water_tank3d", message
    solver = build_solver(scene)
    n = solver.n
    paths = [stepper.advance(solver).path for _ in range(20)]
    x = solver.positions()
    assert solver.n == n
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= np.asarray(scene.size)).all()
    assert "neural" in paths, paths  # the learned stepper ran at least some frames
    solver.close()


def test_batched_transfers_match_one_set_at_a_time():
    """p2g_batch / g2p_batch (the control critic's rollouts) equal p2g / g2p run on each set."""
    import torch

    from neural.grid import ModelGrid, g2p, g2p_batch, p2g, p2g_batch

    grid = ModelGrid(2, 1 / 64, (1.0, 0.6))
    x = torch.rand(3, 500, 2) * torch.tensor([1.0, 0.6])
    values = torch.rand(3, 500, 5)
    field = torch.rand(3, 2, *grid.shape)
    scattered, gathered = p2g_batch(x, values, grid), g2p_batch(x, field, grid)
    for k in range(3):
        torch.testing.assert_close(scattered[k], p2g(x[k], values[k], grid))
        torch.testing.assert_close(gathered[k], g2p(x[k], field[k], grid))


def test_a_non_finite_loss_stops_training_before_the_weights_change():
    """A diverged loss (a NaN from the model's own frames once trained 6000 steps on NaN weights) raises
    instead of stepping the optimizer; the weights stay as they were."""
    model = torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(torch.ones(1, 3)).sum() * float("nan")
    with pytest.raises(FloatingPointError):
        optimise(model, optimizer, loss, None)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    optimise(model, optimizer, model(torch.ones(1, 3)).sum(), None)  # a finite loss steps
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _governor(full: int = 2):
    from neural.device import ThreadGovernor

    counts, clock = [], _Clock()
    return ThreadGovernor(full, counts.append, clock), counts, clock


def test_the_thread_governor_keeps_the_faster_count_and_leaves_a_competed_one():
    """The window's network calls (neural.device.ThreadGovernor): two threads when they are faster alone;
    one when another process makes two threads' calls 70x slower; two again once the competition ends,
    found by retries whose spacing doubles while it lasts."""
    from neural.device import RETRY_S

    g, counts, clock = _governor()
    key = ("unet", (11, 72, 48))
    for _ in range(3):
        assert g.observe(key, 4.0) is None
    assert g.current == 1  # the single thread is measured once ...
    g.observe(key, 5.0)
    assert g.current == 2 and counts == [1, 2]  # ... and loses
    for _ in range(10):
        g.observe(key, 4.2)
    assert g.current == 2
    # Another process competes: two slow calls in a row move to one thread, which keeps its speed
    assert g.observe(key, 370.0) is None
    message = g.observe(key, 380.0)
    assert message is not None and "slower" in message and g.current == 1
    g.observe(key, 6.0)
    assert g.current == 1
    clock.now += RETRY_S  # a retry of two threads while the competition lasts: one slow call, then back
    g.observe(key, 6.0)
    assert g.current == 2
    g.observe(key, 375.0)
    assert g.current == 1
    clock.now += RETRY_S  # the backoff doubled: nothing yet
    g.observe(key, 6.0)
    assert g.current == 1
    clock.now += RETRY_S
    g.observe(key, 6.0)
    assert g.current == 2
    g.observe(key, 4.1)  # the competition ended: two threads beat one's best and stay
    assert g.current == 2
    for _ in range(5):
        g.observe(key, 4.1)
    assert g.current == 2


def test_the_thread_governor_leaves_calls_alone_when_every_count_is_slow():
    g, counts, clock = _governor()
    key = "unet"
    for ms in (4.0, 4.0, 4.0, 5.0):  # measured: two threads kept
        g.observe(key, ms)
    g.observe(key, 300.0)
    assert g.observe(key, 300.0) is not None and g.current == 1
    g.observe(key, 280.0)  # one thread is as slow: back, and slow calls move nothing for a backoff
    assert g.current == 2
    switches = len(counts)
    for _ in range(20):
        g.observe(key, 300.0)
    assert len(counts) == switches


def test_the_thread_governor_does_nothing_on_one_thread_or_when_off():
    import torch

    from neural import device

    g, counts, _ = _governor(full=1)
    for ms in (4.0, 400.0, 400.0, 400.0):
        assert g.observe("unet", ms) is None
    assert counts == []
    before = torch.get_num_threads()
    assert not device._adaptive  # record, eval, the benches and the tests keep their thread count
    for _ in range(10):
        device.network_timing("unet", 400.0)
    assert torch.get_num_threads() == before and getattr(device._local, "governor", None) is None


def test_the_thread_governor_settles_a_trial_on_its_own_networks_calls():
    """The stepper's and the critic's networks (or two input shapes) take turns on one thread: a trial of
    the other count is judged by the next call of the network that started it, not by a cheaper one."""
    from neural.device import RETRY_S

    g, counts, clock = _governor()
    big, small = "critic", "stepper"
    for _ in range(3):  # both networks faster on two threads
        g.observe(big, 80.0)
        g.observe(small, 4.0)
    assert g.current == 1  # the big network's trial of one thread ...
    g.observe(small, 5.0)  # ... is not settled by the small network's call (5 ms beats 80)
    assert g.current == 1
    g.observe(big, 120.0)  # its own call loses: back to two threads
    assert g.current == 2
    for _ in range(5):
        g.observe(small, 4.0)
        g.observe(big, 80.0)
    assert g.current == 2
    # a trial whose network is not called again is abandoned after RETRY_S
    g.observe(small, 4.0)
    g._try("shape seen once", 2, 1.0)
    assert g.current == 1
    clock.now += RETRY_S
    g.observe(small, 4.0)
    assert g.current == 2 and g.trial is None
