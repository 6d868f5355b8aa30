"""`datagen-control`: (state, sketch, force field) examples by reverse modelling.

Two kinds of label:
- "physical": sample a smooth random force field, simulate the window, and derive from the outcome the
  sketch it implies (the centroid's path, or a region around the final mass). The label is the force that
  really caused the outcome, so it replays exactly.
- "published" (as in the hybrid Neural-MPM paper): run forward X_1 → X_T without control, take "bring X_T
  back to X_1" as the goal, and label each key with the force that reverses the motion kinematically
  (the forward acceleration at the mirrored time, minus gravity). Pressure and friction are ignored, so it
  replays only approximately; `replay` measures how well.

One shard per initial state (EXAMPLES_PER_STATE windows from it), written atomically; state i is seeded by
(seed, i), so a replay regenerates it without storing particles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from control.condition import VELOCITY_SCALE, centroid, condition, control_grid, solver_fluid
from control.forcefield import MAX_CONTROL_ACCEL, ForceField, G
from control.sketch import Sketch, parse_sketch
from sim.atomic import atomic_path
from sim.forcefield import upsample

KINDS = ("physical", "published")
EXAMPLES_PER_STATE = 4
WINDOW_FRAMES = (20, 46)
WARMUP_FRAMES = (0, 40)
REGION_SHARE = 0.4
REPLAY_TOLERANCE = 0.01  # normalised mass RMSE between a replayed label's outcome and the recorded one


@dataclass
class ControlDatagenConfig:
    family: str
    states: int
    out: Path
    kind: str = "physical"
    seed: int = 0


def shard_path(out: Path, index: int) -> Path:
    return out / f"state_{index:05d}.npz"


def random_force(rng: np.random.Generator, cells: tuple[int, ...], h: float, keys: int) -> np.ndarray:
    """A smooth random field of the kind a sketch asks for: a push (mostly gentle: a user's arrow moves
    water tens of centimetres, not metres), often some lift against gravity, often a pull toward a point,
    all with a time profile that may brake at the end, plus a little smooth noise."""
    dim = len(cells)
    profile = np.linspace(rng.uniform(0.2, 1.2), rng.uniform(-0.6, 1.0), keys)  # negative: braking
    shape = (keys, *(1,) * dim, dim)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    values = (profile[:, None] * rng.uniform(0.0, 1.5) * G * direction).reshape(shape)
    if rng.random() < 0.5:
        lift = np.zeros(dim)
        lift[1] = rng.uniform(0.5, 1.5) * G
        values = values + (np.abs(profile)[:, None] * lift).reshape(shape)
    values = np.broadcast_to(values, (keys, *cells, dim)).copy()
    if rng.random() < 0.5:
        axes = [(np.arange(n) + 0.5) * h for n in cells]
        centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        point = rng.uniform(0.1, 0.9, dim) * np.array(cells) * h
        offset = point - centres
        pull = offset / np.maximum(np.linalg.norm(offset, axis=-1, keepdims=True), 0.12)
        strength = rng.uniform(0.5, 2.5) * G * np.abs(profile)
        values += strength.reshape(keys, *(1,) * dim, 1) * pull[None]
    values += upsample(rng.normal(0.0, 0.15 * G, (keys, *(4,) * dim, dim)), cells)
    return values.astype(np.float32)


def wobble(points: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A hand-drawn look: a smooth random offset across the stroke."""
    t = np.linspace(0.0, 1.0, len(points))
    offset = sum(
        rng.normal(0.0, amplitude / k) * np.sin(np.pi * k * t + rng.uniform(0, 2 * np.pi))
        for k in range(1, 4)
    )
    tangent = np.gradient(points, axis=0)
    if points.shape[1] == 2:
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    else:  # sideways to the stroke, in a random direction
        side = rng.normal(size=3)
        unit = tangent / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
        normal = side - (unit @ side)[:, None] * unit
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    return points + offset[:, None] * normal


def drawing_plane(rng, x: np.ndarray, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3D: the plane a user's loop would be lifted onto (origin, basis (2, 3)): half the time the floor,
    else a plane through the fluid's centroid facing a camera at a random azimuth, a little above."""
    if rng.random() < 0.5:
        return np.zeros(3), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.5)
    normal = np.array(
        [np.sin(azimuth) * np.cos(elevation), np.sin(elevation), np.cos(azimuth) * np.cos(elevation)]
    )
    across = np.cross([0.0, 1.0, 0.0], normal)
    across /= np.linalg.norm(across)
    return centroid(x, mass), np.stack([across, np.cross(normal, across)])


def ellipse_around(
    x: np.ndarray, mass: np.ndarray, rng, cell: float, scale: float = 1.8, frame=None
) -> np.ndarray:
    """A wobbly closed stroke around the bulk of the mass (about scale standard deviations), in the
    plane `frame` (origin, basis) when given (3D), as seen along its normal."""
    if frame is not None:
        origin, basis = frame
        return origin + ellipse_around((x - origin) @ basis.T, mass, rng, cell, scale) @ basis
    mean = centroid(x, mass)
    cov = np.cov((x - mean).T, aweights=mass) + np.eye(2) * 1e-8
    eigval, eigvec = np.linalg.eigh(cov)
    radii = np.maximum(scale * np.sqrt(eigval), 1.5 * cell)
    angle = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
    radial = (
        1 + 0.05 * np.sin(2 * angle + rng.uniform(0, 6.3)) + 0.03 * np.sin(3 * angle + rng.uniform(0, 6.3))
    )
    local = np.stack([np.cos(angle), np.sin(angle)], axis=1) * radii * radial[:, None]
    return mean + local @ eigvec.T


def outcome_sketch(rng, centroids: np.ndarray, final_x, mass, size, cell: float) -> Sketch:
    """The sketch an outcome implies: the centroid's path, or a region around the final mass."""
    if rng.random() >= REGION_SHARE:
        result = parse_sketch([wobble(centroids, rng, 0.2 * cell)], size, cell)
        if result.ok:
            return result.sketch
    frame = drawing_plane(rng, final_x, mass) if len(size) == 3 else None
    return parse_sketch([ellipse_around(final_x, mass, rng, cell, frame=frame)], size, cell).sketch


def _run(solver, frames: int) -> list[np.ndarray]:
    """Advance `frames` frames with the solver; the mass centroid at every frame start and the end."""
    mass = solver.masses()
    out = [centroid(solver.positions(), mass)]
    for _ in range(frames):
        solver.step_frame()
        out.append(centroid(solver.positions(), mass))
    return out


def _visited(solver, frames: int, every: int = 4) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run `frames` frames; the cells the fluid occupies at any sampled frame, and the centroids."""
    mass = solver.masses()
    fluid = [solver_fluid(solver)[0]]
    centroids = [centroid(solver.positions(), mass)]
    for frame in range(frames):
        solver.step_frame()
        centroids.append(centroid(solver.positions(), mass))
        if (frame + 1) % every == 0 or frame == frames - 1:
            fluid.append(solver_fluid(solver)[0])
    return (np.max(fluid, axis=0) > 0.02).astype(np.float32), centroids


def reversal_label(fractions, velocities, frames: int, keys: int, gravity, frame_dt: float) -> np.ndarray:
    """The published kinematic label: at reversed time s the motion X(T - s) needs the forward
    acceleration a(T - s); the field supplies it minus gravity (the solver adds gravity itself)."""
    out = []
    for k in range(keys):
        t = frames * (1 - k / (keys - 1))
        m = int(np.clip(round(t), 1, frames - 1))
        accel = (velocities[m + 1] - velocities[m - 1]) / (2 * frame_dt)
        occupied = (fractions[m] > 1e-3)[None]
        down = np.asarray(gravity).reshape(-1, *(1,) * (accel.ndim - 1))
        out.append(np.where(occupied, accel - down, 0.0))
    return np.moveaxis(np.stack(out), 1, -1).astype(np.float32)


def _seed_state(solver, family: str, seed: int, index: int, warmup: int):
    from neural.data import _seed_trajectory

    scene = _seed_trajectory(solver, family, np.random.default_rng([seed, index]), for_controller=True)
    _run(solver, warmup)
    return scene


def generate_state(solver, family: str, index: int, seed: int, kind: str) -> dict[str, np.ndarray]:
    from sim import state as state_io

    rng = np.random.default_rng([seed, index, 1])
    warmup = int(rng.integers(*WARMUP_FRAMES))
    scene = _seed_state(solver, family, seed, index, warmup)
    cells, h = control_grid(solver)
    keys, frame_dt, dim = solver.config.force_keys, solver.config.frame_dt, len(cells)
    start = state_io.snapshot(solver)
    mass = solver.masses()
    rows = {k: [] for k in ("condition", "label", "mask", "frames", "outcome")}
    sketches = []
    for _ in range(EXAMPLES_PER_STATE):
        state_io.restore(solver, start)
        frames = int(rng.integers(*WINDOW_FRAMES))
        if kind == "physical":
            fluid = solver_fluid(solver)
            field = ForceField(random_force(rng, cells, h, keys), frames)
            field.apply(solver)
            mask, centroids = _visited(solver, frames)
            outcome = solver.positions()
            sketch = outcome_sketch(rng, np.array(centroids), outcome, mass, scene.size, h)
            label = field.values
        else:
            fractions, velocities, centroids = [], [], []
            for frame in range(frames + 1):
                channels = solver_fluid(solver)
                fractions.append(channels[0])
                velocities.append(channels[1 : 1 + dim] * VELOCITY_SCALE)
                centroids.append(centroid(solver.positions(), mass))
                if frame < frames:
                    solver.step_frame()
            outcome = start.particles["x"][: len(mass)]
            fluid = solver_fluid(solver)
            fluid[1 : 1 + dim] *= -1  # the reversal starts from X_T moving backwards
            mask = (np.max(fractions, axis=0) > 0.02).astype(np.float32)
            sketch = outcome_sketch(rng, np.array(centroids[::-1]), outcome, mass, scene.size, h)
            label = np.clip(
                reversal_label(fractions, velocities, frames, keys, solver.config.gravity, frame_dt),
                -MAX_CONTROL_ACCEL,
                MAX_CONTROL_ACCEL,
            )
        rows["condition"].append(condition(fluid, sketch, frames * frame_dt, h))
        rows["label"].append(label)
        rows["mask"].append(mask)
        rows["frames"].append(frames)
        rows["outcome"].append(outcome.astype(np.float32))
        sketches.append(sketch.to_dict())
    meta = {
        "family": family,
        "index": index,
        "seed": seed,
        "kind": kind,
        "warmup": warmup,
        "size": list(scene.size),
    }
    return {
        "condition": np.stack(rows["condition"]).astype(np.float16),
        "label": np.stack(rows["label"]),
        "mask": np.stack(rows["mask"]),
        "frames": np.array(rows["frames"]),
        "outcome": np.stack(rows["outcome"]),
        "mass": mass.astype(np.float32),
        "sketch": np.array(json.dumps(sketches)),
        "meta": np.array(json.dumps(meta)),
    }


def replay(solver, shard: dict, example: int) -> dict[str, float]:
    """Apply the stored label from its regenerated state; compare with the recorded outcome."""
    from neural.evaluate import mass_rmse

    meta = json.loads(str(shard["meta"]))
    frames = int(shard["frames"][example])
    _seed_state(solver, meta["family"], meta["seed"], meta["index"], meta["warmup"])
    if meta["kind"] == "published":
        _run(solver, frames)
        state = solver.particles()
        state["v"] = -state["v"]
        solver.set_particles(state)
    ForceField(shard["label"][example], frames).apply(solver)
    _run(solver, frames)
    solver.clear_force_field()
    x, mass, outcome = solver.positions(), shard["mass"], shard["outcome"][example]
    return {
        "mass_rmse": mass_rmse(x, mass, outcome, mass, meta["size"]),
        "centroid_error": float(np.linalg.norm(centroid(x, mass) - centroid(outcome, mass))),
    }


def _write(path: Path, arrays: dict) -> None:
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def datagen_control(cfg: ControlDatagenConfig, progress: bool = True) -> list[Path]:
    """Generate cfg.states shards in cfg.out, skipping those already there (so a rerun resumes)."""
    import torch

    from neural.data import _family_solver
    from neural.families import FAMILY_DIM
    from sim.arch import init_taichi

    if cfg.family not in FAMILY_DIM:
        raise ValueError(f"unknown family {cfg.family!r}; choose one of {', '.join(FAMILY_DIM)}")
    if cfg.kind not in KINDS:
        raise ValueError(f"unknown label kind {cfg.kind!r}; choose one of {', '.join(KINDS)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(cfg.states) if not shard_path(cfg.out, i).exists()]
    bar = tqdm(
        total=cfg.states,
        initial=cfg.states - len(todo),
        desc=f"datagen-control {cfg.family}",
        unit="state",
        disable=not progress,
    )
    if todo:
        torch.set_num_threads(1)
        init_taichi("cpu", quiet=True)
        solver = _family_solver(cfg.family, for_controller=True)
        for index in todo:
            _write(shard_path(cfg.out, index), generate_state(solver, cfg.family, index, cfg.seed, cfg.kind))
            bar.update(1)
    bar.close()
    return [shard_path(cfg.out, i) for i in range(cfg.states)]


def replay_report(shards: list[Path]) -> dict:
    """Replay every example of `shards`; the mean and worst mass RMSE and centroid error."""
    from neural.data import _family_solver
    from sim.arch import init_taichi

    init_taichi("cpu", quiet=True)
    rows, solver = [], None
    for path in shards:
        shard = dict(np.load(path))
        if solver is None:
            solver = _family_solver(json.loads(str(shard["meta"]))["family"], for_controller=True)
        rows += [replay(solver, shard, e) for e in range(len(shard["frames"]))]
    out = {"examples": len(rows), "tolerance": REPLAY_TOLERANCE}
    for key in ("mass_rmse", "centroid_error"):
        values = np.array([r[key] for r in rows])
        out[key] = {"mean": float(values.mean()), "max": float(values.max())}
    out["within_tolerance"] = float(np.mean([r["mass_rmse"] <= REPLAY_TOLERANCE for r in rows]))
    return out
