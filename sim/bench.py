"""`bench sim`: solver speed against Taichi's own mpm88/mpm128, and throughput at several sizes.

Records are `{name, value, unit}` dicts; every suite prints them as a table and writes them as JSON.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import taichi as ti

from sim.arch import is_cpu
from sim.baseline import load_example
from sim.colliders import Boundary
from sim.materials import Material, resolve
from sim.solver import MPMSolver, SolverConfig


def record(name: str, value: float, unit: str, **extra) -> dict:
    return {"name": name, "value": float(value), "unit": unit, **extra}


def missing_weights(weights: Path, records: str, train_command: str) -> bool:
    """True (after saying which records are skipped and how to train the weights) when `weights` is absent:
    a suite's records that need shipped weights skip rather than fail on a checkout without them."""
    if weights.is_file():
        return False
    print(f"bench: skipping the {records} records: {weights} not found (train it with `{train_command}`)")
    return True


def print_table(records: list[dict]) -> None:
    if not records:
        print("no records (see the messages above)")
        return
    width = max(len(r["name"]) for r in records)
    print(f"{'record':{width}s}  {'value':>14s}  unit")
    for r in records:
        print(f"{r['name']:{width}s}  {r['value']:14.4g}  {r['unit']}")


def write_json(records: list[dict], path: Path) -> None:
    """Merge into an existing file by record name, so suites run one at a time build one file."""
    existing = []
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = []
    names = {r["name"] for r in records}
    merged = [r for r in existing if isinstance(r, dict) and r.get("name") not in names] + records
    path.write_text(json.dumps(merged, indent=1) + "\n")


def substeps_per_second(step, count: int, repeats: int = 3) -> float:
    """Best of `repeats` timings of `count` calls: on a noisy machine the best run is the least disturbed."""
    return interleaved_rates({"step": step}, count, repeats)["step"]


def interleaved_rates(steps: dict, count: int, rounds: int = 3) -> dict[str, float]:
    """Calls per second of each step: the best of `rounds` timings of `count` calls, the steps taking turns
    round by round, so that a slow spell of the machine falls on all of them rather than on one (timed one
    after the other, Taichi's mpm128 example read 1.23x ours in one bench run and 0.78x in a probe)."""
    for step in steps.values():
        for _ in range(max(3, count // 20)):
            step()
    ti.sync()
    best = dict.fromkeys(steps, math.inf)
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(count):
                step()
            ti.sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: count / seconds for name, seconds in best.items()}


def _solver_like(
    n_grid: int, dt: float, gravity: float, capacity: int, serial_p2g: bool | None = None
) -> MPMSolver:
    """Our solver on the examples' unit square, grid and dt (the padding lies outside their domain)."""
    cfg = SolverConfig(
        dim=2,
        size=(1.0, 1.0),
        grid=n_grid,
        capacity=capacity,
        dt=dt,
        frame_dt=dt,
        gravity=(0.0, -gravity),
        wall_boundary=Boundary.SEPARATE,
        serial_p2g=serial_p2g,
    )
    return MPMSolver(cfg)


def bench_vs_mpm88(count: int) -> list[dict]:
    ref = load_example("mpm88")
    ref.init()
    solvers = {}
    for serial in (True, False):  # serial is what we run on the CPU; parallel shows why
        solver = _solver_like(ref.n_grid, ref.dt, ref.gravity, ref.n_particles, serial_p2g=serial)
        # Same stiffness per density as the example (E = 400 with rho = 1).
        slot = solver.add_material(resolve(Material.WATER, {"density": 1.0}, math.sqrt(ref.E)))
        solver.add_particles(ref.x.to_numpy(), np.tile([0.0, -1.0], (ref.n_particles, 1)), slot)
        solvers[serial] = solver
    steps = {"theirs": ref.substep} | {serial: partial(s.substep, ref.dt) for serial, s in solvers.items()}
    rates = interleaved_rates(steps, count)
    for solver in solvers.values():
        solver.close()
    theirs, ours = rates["theirs"], rates[is_cpu()]  # the solver's default: serial p2g on the CPU
    return [
        record("sim.taichi_mpm88.substeps_per_s", theirs, "1/s", particles=ref.n_particles),
        record("sim.ours_at_mpm88.substeps_per_s", ours, "1/s", particles=ref.n_particles),
        record("sim.vs_taichi_mpm88.ratio", ours / theirs, "x", target=">= 1.0"),
        record(
            "sim.p2g_serial_vs_parallel.ratio",
            rates[True] / rates[False],
            "x",
            note="whole substep, serial p2g over parallel p2g with atomics",
        ),
    ]


def bench_vs_mpm128(count: int) -> list[dict]:
    ref = load_example("mpm128")
    ref.reset()
    ref.gravity[None] = [0, -1]
    ours_solver = _solver_like(ref.n_grid, ref.dt, 30.0, ref.n_particles)
    elastic = {"density": 1.0, "youngs_modulus": ref.E, "poisson_ratio": ref.nu}
    slots = [
        ours_solver.add_material(resolve(Material.WATER, {"density": 1.0}, math.sqrt(ref.lambda_0))),
        ours_solver.add_material(resolve(Material.JELLY, {**elastic, "youngs_modulus": 0.3 * ref.E}, 0.0)),
        ours_solver.add_material(resolve(Material.SNOW, elastic, 0.0)),
    ]
    x, material = ref.x.to_numpy(), ref.material.to_numpy()
    for kind, slot in enumerate(slots):
        ours_solver.add_particles(x[material == kind], None, slot)
    rates = interleaved_rates({"theirs": ref.substep, "ours": partial(ours_solver.substep, ref.dt)}, count)
    ours_solver.close()
    theirs, ours = rates["theirs"], rates["ours"]
    return [
        record("sim.taichi_mpm128.substeps_per_s", theirs, "1/s", particles=ref.n_particles),
        record("sim.ours_at_mpm128.substeps_per_s", ours, "1/s", particles=ref.n_particles),
        record("sim.vs_taichi_mpm128.ratio", ours / theirs, "x", target=">= 1.0"),
    ]


def water_block_solver(dim: int, particles: int) -> MPMSolver:
    """A water block of exactly `particles` particles filling half the width of a cube domain."""
    ppc = 2**dim
    side = math.ceil(particles ** (1.0 / dim))
    grid = math.ceil(2 * side / ppc ** (1.0 / dim))
    cfg = SolverConfig(
        dim=dim, size=(1.0,) * dim, grid=grid, capacity=particles, max_speed=math.sqrt(2 * 9.81)
    )
    solver = MPMSolver(cfg)
    spacing = cfg.particle_spacing
    lattice = np.stack(np.meshgrid(*[np.arange(side)] * dim, indexing="ij"), -1).reshape(-1, dim)[:particles]
    slot = solver.add_material(resolve(Material.WATER, {}, cfg.water_sound_speed))
    solver.add_particles((lattice + 0.5) * spacing, None, slot)
    return solver


def bench_throughput(dim: int, particles: int, count: int) -> dict:
    solver = water_block_solver(dim, particles)
    dt = solver.dt
    rate = substeps_per_second(lambda: solver.substep(dt), count, repeats=2)
    label = f"{particles // 1024}k"
    grid = solver.config.grid
    solver.close()
    return record(
        f"sim.particle_substeps_per_s.{dim}d.{label}",
        rate * particles,
        "1/s",
        particles=particles,
        grid=grid,
        substeps_per_s=rate,
    )


def sim_records(quick: bool = False) -> list[dict]:
    count = 60 if quick else 400
    records = bench_vs_mpm88(count) + bench_vs_mpm128(count)
    for dim, sizes in ((2, (8192, 32768, 131072)), (3, (8192, 32768))):
        for n in sizes:
            records.append(bench_throughput(dim, n, max(10, count * 8192 // n // (2 if dim == 3 else 1))))
    return records


def run_benchmarks(suite, json_path: Path, arch: str, quick: bool = False) -> list[dict]:
    """Run one suite (a function quick -> records), print its table and merge it into `json_path`."""
    records = [dict(r, arch=arch) for r in suite(quick)]
    print_table(records)
    write_json(records, json_path)
    print(f"wrote {len(records)} records to {json_path}")
    return records
