"""The guard: cheap checks of each learned frame, with thresholds calibrated on the solver's own frames.

Scores (each compared with a threshold from `python main.py calibrate`), relative to the scene where a
scale is needed, so that thresholds from a family's solver runs hold on any scene:
- energy_gain: energy created beyond gravity's and the external forces' work, over the scene's energy scale;
- compression: the largest volume fraction on the model grid over the scene's own reference (the largest
  at the first frame the guard saw, the scene at rest spacing): compressed water, piled-up particles;
- speed: the peak particle speed over the scene's physical bound, sqrt(v0^2 + 2 g H) with v0 and H the
  fastest speed and the highest particle seen at a frame's start, plus what the external forces can add;
- j_drop: how far the frame lowered the smallest water J (water squeezed in one frame, which the solver
  would answer with a jet; a learned frame holds J, so only a corrupted state scores here);
- collider_pushes: the share of particle updates that ended inside an obstacle and had to be pushed out;
- position_clamps: particles that left the domain by more than a cell.
`density` (the absolute largest volume fraction) is reported, not checked: its scale depends on the
particles per cell of the scene. Non-finite output always fails. Optionally the published complexity
trigger (cosine of particle accelerations over two 10-frame windows below 0.8) can be used instead, for
comparison.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neural.grid import N_MATERIALS, PAD, ModelGrid
from sim.materials import Material

DEFAULT_THRESHOLDS = {
    "energy_gain": 0.02,
    "compression": 1.3,
    "speed": 2.5,
    "j_drop": 0.05,
    "collider_pushes": 0.05,
    "position_clamps": 0.0,
}
CHECKED = tuple(DEFAULT_THRESHOLDS)
FORCE_HORIZON = 0.25  # s: the speed an external force may add counts this long
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


def water_particles(solver, state: dict) -> np.ndarray:
    """Mask of the water particles in a particles() state."""
    return np.array([m.kind == Material.WATER for m in solver.slots] or [False], bool)[state["slot"]]


def water_j_min(solver, state: dict) -> float:
    water = water_particles(solver, state)
    return float(state["J"][water].min()) if water.any() else 1.0


class SceneReference:
    """What the scene's scores are relative to: its rest volume fraction and its physical speed bound."""

    def __init__(self) -> None:
        self.density = None
        self.height = 0.0
        self.speed = 0.0

    def update(self, solver, state: dict) -> None:
        """Fold a frame's start state in (the bound grows with pours, lifts and pushes it has seen)."""
        if not len(state["x"]):
            return
        self.height = max(self.height, float(state["x"][:, 1].max()))
        self.speed = max(self.speed, float(np.linalg.norm(state["v"], axis=1).max()))

    def speed_bound(self, solver, state: dict) -> float:
        g = float(np.linalg.norm(solver.config.gravity))
        bound = (self.speed**2 + 2 * g * self.height) ** 0.5
        if (solver.force_active[None] or solver.n_brushes[None]) and len(state["x"]):
            accel = solver.external_acceleration(state["x"], solver.time)
            bound += float(np.linalg.norm(accel, axis=1).max()) * FORCE_HORIZON
        return max(bound, 0.1)


class Guard:
    def __init__(self, h: float, thresholds: dict[str, float] | None = None, mode: str = "physics"):
        if mode not in ("physics", "cosine"):
            raise ValueError("guard mode is 'physics' or 'cosine'")
        self.h, self.mode = h, mode
        self.thresholds = {
            **DEFAULT_THRESHOLDS,
            **{k: v for k, v in (thresholds or {}).items() if k in CHECKED},
        }
        self._velocities: deque = deque(maxlen=2 * COSINE_WINDOW + 1)
        self.reference = SceneReference()

    @classmethod
    def from_file(cls, path: Path, h: float, mode: str = "physics") -> Guard:
        thresholds = json.loads(path.read_text())["thresholds"] if path.is_file() else None
        return cls(h, thresholds, mode)

    def reset(self) -> None:
        """Forget the history and the scene reference (a new scene, a reset, a load)."""
        self._velocities.clear()
        self.reference = SceneReference()

    def observe(self, solver) -> None:
        """Record a frame the solver produced (for the cosine trigger's history)."""
        if self.mode == "cosine":
            self._velocities.append(solver.particles()["v"].copy())

    def measure_before(self, solver, state: dict | None = None) -> dict:
        """The frame's start as the checks read it; `state` is the solver's particles() if the caller
        already copied them (the hybrid's restore point), saving a copy of every particle."""
        state = solver.particles() if state is None else state
        if self.reference.density is None and len(state["x"]):
            self.reference.density = max(max_density(solver, self.h), 1e-6)
        self.reference.update(solver, state)
        return {
            "state": state,
            "energy": energy(solver, state),
            "j_min": water_j_min(solver, state),
            "bound": self.reference.speed_bound(solver, state),
        }

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
        density = max_density(solver, self.h)
        peak = float(np.linalg.norm(after["v"], axis=1).max()) if len(after["v"]) else 0.0
        return {
            "energy_gain": gain,
            "density": density,
            "compression": density / (self.reference.density or density or 1.0),
            "speed": peak / before["bound"],
            "j_drop": before["j_min"] - water_j_min(solver, after),
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
        reasons = [f"{k} {scores[k]:.3g} > {v:.3g}" for k, v in self.thresholds.items() if scores[k] > v]
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


# An audited learned frame passes when its mass RMSE against the solver's frame (over the largest cell
# mass) is at most this share of the frame's own change (the RMSE between its start and the solver's end)
# plus a floor for sampling noise: scale-free, as a surge moves more than a resting pool. The same rule,
# over four frames, defines the frames that need the solver in neural.scene_eval.
AUDIT_RELATIVE, AUDIT_FLOOR = 0.7, 0.005
AUDIT_INTERVAL = (10, 80)  # frames between audits: after a scene change or a failed audit, and at most
AUDIT_DISTRUST = 20  # the longest run of solver frames after failed audits (measured: 80 hid recoveries)
AUDIT_METRIC_CELLS = 2  # model cells per metric cell (finer would read sampling noise as error)


def disagreement(solver, state: dict, reference: dict, h: float) -> float:
    """Mass RMSE between two particle states ({x, slot}: the counts may differ where an emitter poured),
    on a grid of AUDIT_METRIC_CELLS model cells, over the reference's largest cell mass."""
    from neural.evaluate import mass_rmse

    size = solver.config.size
    cells = max(1, round(max(size) / (AUDIT_METRIC_CELLS * h)))
    mass, reference_mass = solver.masses(state["slot"]), solver.masses(reference["slot"])
    return mass_rmse(state["x"], mass, reference["x"], reference_mass, size, cells)


class Audit:
    """A measured trust signal (step doubling against the solver): now and then a learned frame is also
    run by the solver from the same start, the solver's frame is kept, and their disagreement is the
    learned stepper's actual error on this scene in this regime. The physics checks see blow-ups; an audit
    sees a learned frame that is plausible but wrong (sand that keeps sliding, a front that runs ahead).

    The schedule backs off both ways. Passed audits in a row double the interval, from AUDIT_INTERVAL[0]
    up to AUDIT_INTERVAL[1]. A failed audit sends the next frames to the solver, for a period that doubles
    with each failure (halved again by two passes in a row); the audit that ends it usually passes, since
    it starts from a solver state, so the next one comes after half the shortest interval, to see whether
    learned frames hold on their own outputs; the solver period is at most AUDIT_DISTRUST frames. A
    scene change (particles added or removed, obstacles, brushes, a force field) brings the next audit
    forward."""

    def __init__(
        self,
        relative: float = AUDIT_RELATIVE,
        floor: float = AUDIT_FLOOR,
        interval: tuple[int, int] = AUDIT_INTERVAL,
    ):
        self.relative, self.floor, self.interval = relative, floor, interval
        self.reset()

    def reset(self) -> None:
        self.trusted = True
        self._interval = self._distrust = self.interval[0]
        self._countdown = self.interval[0]
        self._context = None
        self.last_error: float | None = None
        self.audits = self.failed = 0

    def tick(self, solver) -> bool:
        """Count down one frame; True when this frame is to be audited."""
        context = (
            solver.n,
            len(solver.colliders),
            int(solver.n_brushes[None]),
            int(solver.force_active[None]),
        )
        if self._context is not None and context != self._context:
            self._interval = self.interval[0]
            self._countdown = min(self._countdown, self.interval[0] // 2)
        self._context = context
        self._countdown -= 1
        return self._countdown <= 0

    def tolerance(self, change: float) -> float:
        return self.relative * change + self.floor

    def record(self, error: float, change: float) -> bool:
        """Fold an audit in (the learned frame's disagreement with the solver's, and the solver frame's
        own change); True when it passed."""
        self.audits += 1
        self.last_error = error
        passed = error <= self.tolerance(change)
        lo, hi = self.interval
        if passed and self.trusted:
            self._interval = min(2 * self._interval, hi)
            self._distrust = max(lo, self._distrust // 2)
            self._countdown = self._interval
        elif passed:
            self._interval = lo
            self._countdown = max(1, lo // 2)
        else:
            self.failed += 1
            self._countdown = self._distrust
            self._distrust = min(2 * self._distrust, max(lo, AUDIT_DISTRUST))
        self.trusted = passed
        return passed
