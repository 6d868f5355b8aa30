"""Guard calibration and evaluation of the learned stepper on held-out initial conditions.

Metric: the normalised grid mass RMSE. Particle mass goes onto a 128-cell grid (2D) or a 64-cell grid (3D)
over the domain with the quadratic B-spline, is divided by the reference frame's largest cell mass, and the
RMSE is taken over the cells against full-resolution MPM at the same frame.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neural.data import _family_solver, _seed_trajectory
from neural.device import place
from neural.families import FAMILY_DIM, FAMILY_SOLVER_GRID, family_max_speed
from neural.grid import PAD, ModelGrid, p2g
from neural.guard import Guard
from neural.model import load_weights
from neural.stepper import HybridStepper, NeuralStepper, NumericalStepper
from sim import state as state_io

METRIC_CELLS = 128  # 2D: twice the 2D families' solver resolution
METRIC_CELLS_3D = 64  # 3D: twice the 3D families' solver resolution, 64^3 cells
HELD_OUT_SEED = 10_000  # training shards use small seeds; evaluation and calibration never see them
CALIBRATION_SEED = 20_000
NEEDS_FALLBACK_TOLERANCE = 0.02  # one-frame mass RMSE above which a learned frame "needs" the solver


def mass_grid(x: np.ndarray, mass: np.ndarray, size, cells: int | None = None) -> np.ndarray:
    """Particle mass on a grid of `cells` along the longest side (default METRIC_CELLS in 2D,
    METRIC_CELLS_3D in 3D) over the domain (interior nodes)."""
    cells = cells or (METRIC_CELLS if len(size) == 2 else METRIC_CELLS_3D)
    grid = ModelGrid(len(size), max(size) / cells, tuple(size))
    out = p2g(
        torch.from_numpy(np.ascontiguousarray(x, np.float32)),
        torch.from_numpy(mass.astype(np.float32))[:, None],
        grid,
    )[0]
    interior = tuple(slice(PAD, PAD + c + 1) for c in grid.cells)
    return out[interior].numpy()


def mass_rmse(x, mass, x_ref, mass_ref, size, cells: int | None = None) -> float:
    reference = mass_grid(x_ref, mass_ref, size, cells)
    diff = mass_grid(x, mass, size, cells) - reference
    return float(np.sqrt((diff**2).mean()) / max(reference.max(), 1e-12))


@dataclass
class Rollout:
    positions: list[np.ndarray] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def run(solver, stepper, frames: int) -> Rollout:
    out = Rollout()
    for _ in range(frames):
        report = stepper.advance(solver)
        out.positions.append(solver.positions())
        out.ms.append(report.latency_ms)
        out.paths.append(report.path)
    return out


def seeded(solver, family: str, seed: int):
    scene = _seed_trajectory(solver, family, np.random.default_rng(seed))
    return scene, state_io.snapshot(solver)


def calibrate(
    family: str, weights: Path, rollouts: int = 6, frames: int = 100, grid: int | None = None
) -> dict:
    """Guard thresholds from the solver's own frames: the 99.5th percentile of each score, with margin.
    The solver runs the family's held-out scenes at `grid` cells (default: the family's data resolution,
    FAMILY_SOLVER_GRID, which is the app's in 2D and for the tanks): the scores are relative to each
    scene, but their noise depends on the particles per learned cell."""
    spec = load_weights(weights).spec
    guard = Guard(spec.h)
    grid = grid or FAMILY_SOLVER_GRID[family]
    solver = _family_solver(family, grid)
    scores: dict[str, list[float]] = {}
    for r in range(rollouts):
        seeded(solver, family, CALIBRATION_SEED + r)
        guard.reset()  # each rollout is its own scene
        for _ in range(frames):
            before = guard.measure_before(solver)
            stats = solver.step_frame()
            for k, v in guard.scores(solver, before, solver.particles(), stats).items():
                scores.setdefault(k, []).append(v)
    thresholds = {}
    for k, values in scores.items():
        q = float(np.quantile(values, 0.995))
        extra = {"energy_gain": 0.002, "density": 0.05, "compression": 0.05, "speed": 0.2, "j_drop": 0.02}
        thresholds[k] = q + 0.25 * abs(q) + extra.get(k, 0.0)
    result = {
        "family": family,
        "weights": weights.name,
        "rollouts": rollouts,
        "frames": frames,
        "solver_grid": grid,
        "thresholds": thresholds,
        "solver_statistics": {
            k: {"p50": float(np.median(v)), "p995": float(np.quantile(v, 0.995)), "max": float(np.max(v))}
            for k, v in scores.items()
        },
    }
    weights.with_suffix(".guard.json").write_text(json.dumps(result, indent=1) + "\n")
    solver.close()
    return result


def _lowres_solver(family: str, grid: int, ppc: int):
    from neural.families import random_scene
    from sim.build import solver_config
    from sim.scene import parse_scene
    from sim.solver import MPMSolver

    raw = random_scene(family, np.random.default_rng(0))
    raw["scene"].update(grid=grid, particles_per_cell=ppc)
    config = solver_config(parse_scene(raw, "<lowres>"), 60_000)
    config.max_speed = family_max_speed(family)
    return MPMSolver.acquire(config)


def guard_quality(solver, learned: NeuralStepper, guard: Guard, reference_snapshots, masses, size) -> dict:
    """Along the reference trajectory: does the guard fire on exactly the frames whose error is large?"""
    fired, needed = [], []
    guard.reset()
    for k in range(len(reference_snapshots) - 1):
        state_io.restore(solver, reference_snapshots[k])
        learned.reset()
        before = guard.measure_before(solver)
        try:
            report = learned.advance(solver)
            verdict = guard.check(solver, before, report.stats)
            x = solver.positions()
            error = mass_rmse(x, masses, reference_snapshots[k + 1].particles["x"], masses, size)
        except Exception:  # non-finite output: the guard must fire, and the frame needs the solver
            verdict, error = None, np.inf
        fired.append(verdict is None or not verdict.ok)
        needed.append(error > NEEDS_FALLBACK_TOLERANCE)
        state_io.restore(solver, reference_snapshots[k + 1])
        guard.observe(solver)
    return {"fired": fired, "needed": needed}


def precision_recall(fired: list[bool], needed: list[bool]) -> tuple[float, float]:
    fired, needed = np.asarray(fired), np.asarray(needed)
    tp = float((fired & needed).sum())
    precision = tp / fired.sum() if fired.sum() else 1.0
    recall = tp / needed.sum() if needed.sum() else 1.0
    return float(precision), float(recall)


# Low-resolution MPM at the hybrid's wall time: (grid, particles per cell), most accurate first; the first
# whose frame costs no more than a hybrid frame is chosen. 2D, against the families' (64, 4):
LOWRES_CANDIDATES = ((48, 4), (40, 2), (32, 4), (32, 2), (24, 2), (16, 2))
# 3D, against the families' (32, 8): coarser grids at the same 8 particles per cell. Particles ~ grid^3 and
# substeps ~ grid, so a frame costs ~(grid/32)^4 of full MPM (0.59, 0.32, 0.15, 0.06, 0.02), down to a floor
# of fixed per-substep costs: on a held-out water3d scene full MPM took 115 ms a frame, 24x8 48 ms, 20x8
# 23 ms, 16x8 11 ms, while 20x1 (12 ms) and 16x1 (14 ms) saved nothing over 16x8, so fewer particles per cell
# buy no speed, only noise (at 1 per cell a 16-cell grid spaces particles 1/16 m, coarser than the metric).
LOWRES_CANDIDATES_3D = ((28, 8), (24, 8), (20, 8), (16, 8), (12, 8))


def evaluate(
    family: str,
    weights: Path,
    rollouts: int = 4,
    frames: int = 100,
    plots: Path | None = None,
    lowres_candidates=None,
) -> dict:
    if lowres_candidates is None:
        lowres_candidates = LOWRES_CANDIDATES if FAMILY_DIM[family] == 2 else LOWRES_CANDIDATES_3D
    network = place(load_weights(weights))  # as the app runs it (neural.catalog.make_stepper)
    guard_file = weights.with_suffix(".guard.json")
    solver = _family_solver(family)
    results = {k: [] for k in ("neural", "hybrid", "lowres")}
    timing = {k: [] for k in ("numerical", "neural", "hybrid", "lowres")}
    fallback, quality, cosine_quality = [], {"fired": [], "needed": []}, {"fired": [], "needed": []}
    lowres_choice, lowres_costs, low = None, {}, None
    curves = []
    for r in range(rollouts):
        scene, start = seeded(solver, family, HELD_OUT_SEED + r)
        masses = solver.masses()
        reference = []
        numerical = NumericalStepper()
        snapshots = [start]
        for _ in range(frames):
            report = numerical.advance(solver)
            reference.append(solver.positions())
            timing["numerical"].append(report.latency_ms)
            snapshots.append(state_io.snapshot(solver))
        for mode in ("neural", "hybrid"):
            state_io.restore(solver, start)
            neural = NeuralStepper(network, weights.stem)
            stepper = (
                neural
                if mode == "neural"
                else HybridStepper(neural, Guard.from_file(guard_file, network.spec.h))
            )
            out = run(solver, stepper, frames)
            timing[mode] += out.ms
            errors = [
                mass_rmse(x, masses, ref, masses, scene.size) for x, ref in zip(out.positions, reference)
            ]
            results[mode].append(errors)
            if mode == "hybrid":
                fallback.append(stepper.fallback_rate)
        hybrid_ms = float(np.median(timing["hybrid"]))
        if lowres_choice is None:  # the coarse MPM whose frame costs what a hybrid frame costs
            costs, timed = {}, {}
            for grid, ppc in lowres_candidates:
                candidate = timed[(grid, ppc)] = _lowres_solver(family, grid, ppc)
                _seed_trajectory(candidate, family, np.random.default_rng(HELD_OUT_SEED + r))
                for _ in range(3):
                    candidate.step_frame()
                t = time.perf_counter()
                for _ in range(5):
                    candidate.step_frame()
                costs[(grid, ppc)] = (time.perf_counter() - t) / 5 * 1e3
            affordable = [c for c in lowres_candidates if costs[c] <= hybrid_ms] or [
                min(costs, key=costs.get)
            ]
            lowres_choice = affordable[0]
            lowres_costs = {f"{g}x{ppc}": ms for (g, ppc), ms in costs.items()}
            # One low-resolution solver serves every rollout (reseeding resets it completely): building
            # another would compile its kernels again, which dominates a short 3D evaluation.
            low = timed.pop(lowres_choice)
            for other in timed.values():
                other.close()
        _seed_trajectory(low, family, np.random.default_rng(HELD_OUT_SEED + r))
        out = run(low, NumericalStepper(), frames)
        low_mass = low.masses()
        timing["lowres"] += out.ms
        results["lowres"].append(
            [mass_rmse(x, low_mass, ref, masses, scene.size) for x, ref in zip(out.positions, reference)]
        )
        q = guard_quality(
            solver,
            NeuralStepper(network, weights.stem),
            Guard.from_file(guard_file, network.spec.h),
            snapshots,
            masses,
            scene.size,
        )
        qc = guard_quality(
            solver,
            NeuralStepper(network, weights.stem),
            Guard(network.spec.h, mode="cosine"),
            snapshots,
            masses,
            scene.size,
        )
        for key in ("fired", "needed"):
            quality[key] += q[key]
            cosine_quality[key] += qc[key]
        curves.append({k: results[k][-1] for k in results})
    solver.close()
    if low is not None:
        low.close()
    summary = {k: float(np.mean([np.mean(e) for e in v])) for k, v in results.items()}
    ms = {k: float(np.median(v)) for k, v in timing.items()}
    precision, recall = precision_recall(quality["fired"], quality["needed"])
    cos_precision, cos_recall = precision_recall(cosine_quality["fired"], cosine_quality["needed"])
    report = {
        "family": family,
        "weights": weights.name,
        "rollouts": rollouts,
        "frames": frames,
        "mass_rmse": summary,
        "ms_per_frame": ms,
        "lowres": {"grid": lowres_choice[0], "ppc": lowres_choice[1]},
        "lowres_candidates_ms": lowres_costs,
        "fallback_rate": float(np.mean(fallback)),
        "guard": {
            "precision": precision,
            "recall": recall,
            "tolerance": NEEDS_FALLBACK_TOLERANCE,
            "needed_share": float(np.mean(quality["needed"])),
        },
        "cosine_trigger": {"precision": cos_precision, "recall": cos_recall},
    }
    if plots:
        _plot(curves, ms, summary, plots, family)
    return report


def _plot(curves, ms, summary, folder: Path, family: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for key, colour in (("neural", "tab:orange"), ("hybrid", "tab:green"), ("lowres", "tab:blue")):
        mean = np.mean([c[key] for c in curves], axis=0)
        ax.plot(np.arange(1, len(mean) + 1), mean, color=colour, label=key)
    ax.set_xlabel("frame")
    ax.set_ylabel("normalised mass RMSE")
    ax.set_title(f"{family}: error against full MPM")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / f"{family}_error_over_time.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    for key in ("neural", "hybrid", "lowres"):
        ax.scatter(ms[key], summary[key], s=40)
        ax.annotate(key, (ms[key], summary[key]), textcoords="offset points", xytext=(5, 5))
    ax.scatter(ms["numerical"], 0.0, s=40)
    ax.annotate("full MPM", (ms["numerical"], 0.0), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("ms per frame")
    ax.set_ylabel("mean normalised mass RMSE")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / f"{family}_error_vs_cost.png")
    plt.close(fig)
