"""`datagen`: simulate random initial conditions of a family and write one shard per trajectory.

A shard holds the particle state at every frame start and the grid features and targets training needs:
the model's input at each frame and the grid velocities of M equal sub-intervals of the frame, measured
from the particles' real displacement. Shards are written atomically, so an interrupted run resumes by
skipping the shards that exist; trajectory i is seeded by (seed, i), so any shard can be regenerated alone.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from neural.families import FAMILY_DIM, FAMILY_MODEL_H, FRAME_DT, family_max_speed, random_scene
from neural.grid import ModelGrid, frame_features, mass_weighted, velocity_of
from sim.atomic import atomic_path
from sim.forcefield import upsample

SUB_INTERVALS = 4  # grid velocity fields predicted per frame
CAPACITY = 60_000
FORCE_PROBABILITY = 0.5


@dataclass
class DatagenConfig:
    family: str
    trajectories: int
    frames: int
    out: Path
    seed: int = 0
    workers: int = 1


def shard_path(out: Path, index: int) -> Path:
    return out / f"traj_{index:05d}.npz"


class _Forces:
    """Random brushes and smooth force fields acting during part of a trajectory."""

    def __init__(self, rng: np.random.Generator, frames: int, solver):
        self.rng, self.solver = rng, solver
        dim = solver.dim
        self.kind = None
        if rng.random() < FORCE_PROBABILITY:
            self.kind = "brush" if rng.random() < 0.5 else "field"
        self.start = int(rng.integers(0, max(1, frames // 2)))
        self.length = int(rng.integers(10, 40))
        self.brush_path = rng.uniform(0.1, 0.9, (2, dim))
        self.brush_radius = float(rng.uniform(0.08, 0.2))
        self.brush_strength = float(rng.uniform(20, 150))
        self.brush_direction = rng.normal(size=dim) if rng.random() < 0.7 else None

    def apply(self, frame: int) -> None:
        from sim.solver import Brush

        active = self.kind is not None and self.start <= frame < self.start + self.length
        if self.kind == "brush":
            self.solver.set_brushes([])
            if active:
                s = (frame - self.start) / self.length
                center = (1 - s) * self.brush_path[0] + s * self.brush_path[1]
                direction = None if self.brush_direction is None else tuple(self.brush_direction)
                self.solver.set_brushes(
                    [Brush(tuple(center), self.brush_radius, self.brush_strength, direction)]
                )
        elif self.kind == "field" and frame == self.start:
            keys, cells = self.solver.config.force_keys, self.solver.force_cells
            dim = self.solver.dim
            coarse = self.rng.normal(0.0, 9.81, (keys, *(4,) * dim, dim))
            fine = upsample(coarse, cells)
            t0 = self.solver.time
            self.solver.set_force_field(fine, t0, t0 + self.length * FRAME_DT)
        elif self.kind == "field" and frame == self.start + self.length:
            self.solver.clear_force_field()


def _family_solver(family: str, grid: int | None = None, for_controller: bool = False):
    """The solver a family's trajectories run on (at `grid` cells along the domain instead of the
    family's own resolution, when given; the controllers' one when `for_controller`)."""
    from sim.build import solver_config
    from sim.scene import parse_scene
    from sim.solver import MPMSolver

    raw = random_scene(family, np.random.default_rng(0), for_controller)
    if grid:
        raw["scene"]["grid"] = grid
    scene = parse_scene(raw, f"<{family}>")
    config = solver_config(scene, CAPACITY)
    # One sound speed and dt for the whole family: the fastest flow any of its scenes can reach.
    config.max_speed = family_max_speed(family)
    solver = MPMSolver.acquire(config)
    from sim.materials import Material, resolve

    solver.add_material(resolve(Material.WATER, {}, config.water_sound_speed))
    natural = solver.substeps
    config.dt = FRAME_DT / (SUB_INTERVALS * math.ceil(natural / SUB_INTERVALS))
    solver._fixed_dt = config.dt
    solver.replace_materials([])
    return solver


def _seed_trajectory(solver, family: str, rng: np.random.Generator, for_controller: bool = False):
    """Reset the shared solver to a new random initial condition of the family (of the controllers'
    data when `for_controller`)."""
    from sim.build import sample_body
    from sim.materials import resolve
    from sim.scene import parse_scene

    scene = parse_scene(random_scene(family, rng, for_controller), f"<{family}>")
    d = solver.dim
    solver.replace_colliders(list(scene.obstacles))
    solver.replace_materials([])
    solver.set_particles(
        {
            k: np.zeros((0,) + s)
            for k, s in {"x": (d,), "v": (d,), "C": (d, d), "F": (d, d), "J": (), "slot": ()}.items()
        }
    )
    solver.clear_force_field()
    solver.set_brushes([])
    solver.time, solver.frame = 0.0, 0
    for body in scene.bodies:
        points = sample_body(body, scene, solver.config.particle_spacing, rng)
        slot = solver.add_material(resolve(body.material, body.params, solver.config.water_sound_speed))
        solver.add_particles(points, body.velocity, slot)
    return scene


def _particle_tensors(solver):
    state = solver.particles()
    mass = solver.masses(state["slot"]).astype(np.float32)
    density = np.array([m.density for m in solver.slots], np.float32)[state["slot"]]
    return state, mass, mass / density


def generate_trajectory(solver, family: str, index: int, frames: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, index])
    scene = _seed_trajectory(solver, family, rng)
    dim, h = scene.dim, FAMILY_MODEL_H[family]
    grid = ModelGrid(dim, h, scene.size)
    solid = torch.from_numpy(grid.solid_mask(scene.obstacles))
    nodes = grid.node_positions().reshape(-1, dim)
    forces = _Forces(rng, frames, solver)
    state, mass, volume = _particle_tensors(solver)
    material = torch.from_numpy(state["material"])
    mass_t, volume_t = torch.from_numpy(mass), torch.from_numpy(volume)
    xs, vs, features, targets = [state["x"]], [state["v"]], [], []
    prev_velocity = None
    for frame in range(frames):
        forces.apply(frame)
        accel = solver.external_acceleration(nodes, solver.time + FRAME_DT / 2)
        accel = torch.from_numpy(accel.T.reshape(dim, *grid.shape).copy())
        x0, v0 = torch.from_numpy(xs[-1]), torch.from_numpy(vs[-1])
        features.append(frame_features(x0, v0, mass_t, volume_t, material, solid, accel, prev_velocity, grid))
        prev_velocity = velocity_of(features[-1])
        stats = solver.step_frame(sub_intervals=SUB_INTERVALS)
        sub_dt = FRAME_DT / SUB_INTERVALS
        starts = [x0] + [torch.from_numpy(p) for p in stats.positions[:-1]]
        ends = [torch.from_numpy(p) for p in stats.positions]
        targets.append(
            torch.cat([mass_weighted(a, mass_t, (b - a) / sub_dt, grid) for a, b in zip(starts, ends)])
        )
        after = solver.particles()
        xs.append(after["x"])
        vs.append(after["v"])
    meta = {
        "family": family,
        "index": index,
        "seed": seed,
        "frames": frames,
        "size": list(scene.size),
        "particles": len(mass),
        "forces": forces.kind,
        "h": h,
        "sub_intervals": SUB_INTERVALS,
        "frame_dt": FRAME_DT,
        "solver_grid": scene.grid,
        "substeps": solver.substeps,
        "gravity": list(scene.gravity),
    }
    return {
        "features": torch.stack(features).numpy().astype(np.float16),
        "targets": torch.stack(targets).numpy().astype(np.float16),
        "x": np.stack(xs),
        "v": np.stack(vs),
        "mass": mass,
        "volume": volume,
        "material": state["material"],
        "solid": solid.numpy(),
        "meta": np.array(json.dumps(meta)),
        "scene": np.array(json.dumps(scene.raw)),
    }


def _write_shard(path: Path, arrays: dict) -> None:
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def _worker(args) -> int:
    family, indices, frames, seed, out = args
    from sim.arch import init_taichi

    torch.set_num_threads(1)
    init_taichi("cpu", quiet=True)
    solver = _family_solver(family)
    for index in indices:
        path = shard_path(out, index)
        if not path.exists():
            _write_shard(path, generate_trajectory(solver, family, index, frames, seed))
    return len(indices)


def datagen(cfg: DatagenConfig, progress: bool = True) -> list[Path]:
    """Generate cfg.trajectories shards in cfg.out (skipping those already there)."""
    if cfg.family not in FAMILY_DIM:
        raise ValueError(f"unknown family {cfg.family!r}; choose one of {', '.join(FAMILY_DIM)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(cfg.trajectories) if not shard_path(cfg.out, i).exists()]
    bar = tqdm(
        total=cfg.trajectories,
        initial=cfg.trajectories - len(todo),
        desc=f"datagen {cfg.family}",
        unit="traj",
        disable=not progress,
    )
    if cfg.workers <= 1:
        from sim.arch import init_taichi

        torch.set_num_threads(1)  # the transfers are small; more threads only fight the solver for cores
        init_taichi("cpu", quiet=True)
        solver = _family_solver(cfg.family) if todo else None
        for index in todo:
            _write_shard(
                shard_path(cfg.out, index),
                generate_trajectory(solver, cfg.family, index, cfg.frames, cfg.seed),
            )
            bar.update(1)
    else:
        chunks = [todo[k :: cfg.workers] for k in range(cfg.workers)]
        ctx = mp.get_context("spawn")
        with ctx.Pool(cfg.workers) as pool:
            jobs = [
                pool.apply_async(_worker, ((cfg.family, chunk, cfg.frames, cfg.seed, cfg.out),))
                for chunk in chunks
            ]
            done = set()
            while len(done) < cfg.trajectories:
                done = {i for i in range(cfg.trajectories) if shard_path(cfg.out, i).exists()}
                bar.n = len(done)
                bar.refresh()
                if all(j.ready() for j in jobs):
                    for j in jobs:
                        j.get()
                    break
                jobs[0].wait(1.0)
    bar.n = cfg.trajectories
    bar.close()
    return [shard_path(cfg.out, i) for i in range(cfg.trajectories)]
