"""The guard: cheap checks of each learned frame, with thresholds calibrated on the solver's own frames.

Scores (each compared with a threshold from `python main.py calibrate`):
- energy_gain: energy created beyond gravity's and the external forces' work, over the scene's energy scale;
- density: the largest volume fraction on the model grid (compressed water, piled-up particles);
- collider_pushes: the share of particle updates that ended inside an obstacle and had to be pushed out;
- position_clamps: particles that left the domain by more than a cell.
Non-finite output always fails. Optionally the published complexity trigger (cosine of particle
accelerations over two 10-frame windows below 0.8) can be used instead, for comparison.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neural.grid import N_MATERIALS, PAD, ModelGrid

DEFAULT_THRESHOLDS = {"energy_gain": 0.02, "density": 1.8, "collider_pushes": 0.05, "position_clamps": 0.0}
COSINE_WINDOW = 10
COSINE_THRESHOLD = 0.8


@dataclass
class GuardScores:
    ok: bool
    scores: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def energy(solver, state: dict) -> float:
    """Kinetic plus gravitational potential energy (J per metre in 2D)."""
    mass = solver.masses(state["slot"])
    g = np.asarray(solver.config.gravity)
    v = state["v"].astype(np.float64)
    return float((mass * (0.5 * (v * v).sum(1) - state["x"].astype(np.float64) @ g)).sum())


def energy_scale(solver, mass_total: float) -> float:
    return max(mass_total * float(np.linalg.norm(solver.config.gravity)) * max(solver.config.size), 1e-12)


def max_density(solver, h: float) -> float:
    """The largest volume fraction (all materials) on the learned grid: 1 is a full cell at rest."""
    grid = ModelGrid(solver.dim, h, solver.config.size)
    return float(solver.grid_transfer(h, PAD, grid.shape)[:N_MATERIALS].sum(0).max())


class Guard:
    def __init__(self, h: float, thresholds: dict[str, float] | None = None, mode: str = "physics"):
        if mode not in ("physics", "cosine"):
            raise ValueError("guard mode is 'physics' or 'cosine'")
        self.h, self.mode = h, mode
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self._velocities: deque = deque(maxlen=2 * COSINE_WINDOW + 1)

    @classmethod
    def from_file(cls, path: Path, h: float, mode: str = "physics") -> Guard:
        thresholds = json.loads(path.read_text())["thresholds"] if path.is_file() else None
        return cls(h, thresholds, mode)

    def reset(self) -> None:
        self._velocities.clear()

    def observe(self, solver) -> None:
        """Record a frame the solver produced (for the cosine trigger's history)."""
        if self.mode == "cosine":
            self._velocities.append(solver.particles()["v"].copy())

    def measure_before(self, solver) -> dict:
        state = solver.particles()
        return {"state": state, "energy": energy(solver, state)}

    def scores(self, solver, before: dict, after: dict, stats) -> dict[str, float]:
        """The physics scores of a frame from `before` to `after` (works for solver frames too)."""
        x0 = before["state"]["x"]
        mass = solver.masses(before["state"]["slot"])
        work = 0.0
        if (solver.force_active[None] or solver.n_brushes[None]) and len(x0) == len(after["x"]):
            accel = solver.external_acceleration(x0, solver.time - solver.config.frame_dt / 2)
            work = float((mass[:, None] * accel * (after["x"] - x0)).sum())
        gain = (energy(solver, after) - before["energy"] - work) / energy_scale(solver, float(mass.sum()))
        updates = max(len(after["x"]), 1) * max(getattr(stats, "substeps", 0) or 4, 1)
        return {
            "energy_gain": gain,
            "density": max_density(solver, self.h),
            "collider_pushes": (stats.collider_pushes / updates) if stats else 0.0,
            "position_clamps": float(stats.position_clamps) if stats else 0.0,
        }

    def check(self, solver, before: dict, stats) -> GuardScores:
        after = solver.particles()
        if not np.isfinite(after["x"]).all() or not np.isfinite(after["v"]).all():
            return GuardScores(False, {}, ["non-finite particle state"])
        if self.mode == "cosine":
            return self._cosine(after)
        scores = self.scores(solver, before, after, stats)
        reasons = [
            f"{k} {v:.3g} > {self.thresholds[k]:.3g}" for k, v in scores.items() if v > self.thresholds[k]
        ]
        return GuardScores(not reasons, scores, reasons)

    def _cosine(self, after: dict) -> GuardScores:
        """The published trigger: accelerations of two consecutive 10-frame windows must stay aligned."""
        self._velocities.append(after["v"].copy())
        if len(self._velocities) < self._velocities.maxlen or len({len(v) for v in self._velocities}) > 1:
            return GuardScores(True, {"cosine": 1.0})
        v = list(self._velocities)
        first = (v[COSINE_WINDOW] - v[0]).ravel()
        second = (v[-1] - v[COSINE_WINDOW]).ravel()
        cosine = float(first @ second / max(np.linalg.norm(first) * np.linalg.norm(second), 1e-12))
        ok = cosine >= COSINE_THRESHOLD
        return GuardScores(
            ok, {"cosine": cosine}, [] if ok else [f"cosine {cosine:.2f} < {COSINE_THRESHOLD}"]
        )
