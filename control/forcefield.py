"""The controller's output: a ForceField, a small space-time grid of accelerations over a control window.

It is applied through the solver's force-field seam, which every stepper mode reads (the numerical grid
update samples it; the learned stepper sees it as its external-acceleration feature).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.forcefield import upsample

G = 9.81
MAX_CONTROL_ACCEL = 4 * G  # lifting water into a raised region needs 2-4 g (LESSONS); more only sprays it


def cap(values: np.ndarray, limit: float = MAX_CONTROL_ACCEL) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    magnitude = np.linalg.norm(values, axis=-1, keepdims=True)
    return (values * np.minimum(1.0, limit / np.maximum(magnitude, 1e-12))).astype(np.float32)


@dataclass
class ForceField:
    values: np.ndarray  # (keys, *cells, dim) in m/s^2, cell-centred on the control grid
    frames: int  # length of the control window in frames

    def __post_init__(self):
        self.values = cap(self.values)

    @property
    def peak(self) -> float:
        return float(np.linalg.norm(self.values, axis=-1).max(initial=0.0))

    def rest(self, offset: int, frames: int) -> ForceField:
        """What is left of this field `offset` frames into its window, as a field over the next `frames`
        frames (its keys resampled in time; held at the last key past the window's end)."""
        keys = len(self.values)
        if keys == 1:
            return ForceField(self.values.copy(), frames)
        s = np.clip((offset + np.linspace(0.0, frames, keys)) / max(self.frames, 1) * (keys - 1), 0, keys - 1)
        lo = np.minimum(s.astype(int), keys - 2)
        a = (s - lo).reshape(-1, *(1,) * (self.values.ndim - 1))
        return ForceField(self.values[lo] * (1 - a) + self.values[lo + 1] * a, frames)

    def apply(self, solver, start_time: float | None = None) -> None:
        """Install the field on `solver` from `start_time` (default: now) for the window."""
        start = solver.time if start_time is None else start_time
        values = self.values
        if values.shape[1:-1] != tuple(solver.force_cells):  # a coarser control grid (3D)
            values = upsample(values, tuple(solver.force_cells))
        solver.set_force_field(values, start, start + self.frames * solver.config.frame_dt)


def constant_field(vector, keys: int, cells: tuple[int, ...], frames: int) -> ForceField:
    values = np.broadcast_to(np.asarray(vector, np.float32), (keys, *cells, len(cells)))
    return ForceField(values.copy(), frames)


def pull_fields(
    target, cells: tuple[int, ...], h: float, keys: int, frames: int, lift: bool
) -> list[ForceField]:
    """Analytic proposals beside the diffusion model's, for the critic to weigh: a pull toward `target`
    (the sketch's goal) from every cell, at 1 g and 2 g, easing off within 5 cm of the target so that
    water gathers there instead of overshooting it; with `lift` (a region) each also at gravity's worth of
    lift, to hold water in a raised region."""
    dim = len(cells)
    axes = [(np.arange(c) + 0.5) * h for c in cells]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (*cells, dim)
    offset = np.asarray(target, np.float64)[:dim] - centres
    distance = np.linalg.norm(offset, axis=-1, keepdims=True)
    direction = offset / np.maximum(distance, 0.05)  # unit beyond 5 cm, easing to zero at the target
    return _lifted(direction, (G, 2 * G), cells, keys, frames, lift)


def push_fields(
    origin, target, cells: tuple[int, ...], keys: int, frames: int, lift: bool
) -> list[ForceField]:
    """Uniform pushes from `origin` (the fluid's centroid) toward `target`, at 0.5, 1 and 2 g (with
    `lift`, each also with gravity's worth of lift): the kind of field the eval's constant-force baseline
    searches, offered to the critic so that a plan can be that simple where that is what works (a pull
    converges the water on the goal; a push carries it whole)."""
    dim = len(cells)
    offset = np.asarray(target, np.float64)[:dim] - np.asarray(origin, np.float64)[:dim]
    direction = offset / max(float(np.linalg.norm(offset)), 1e-9)
    return _lifted(np.broadcast_to(direction, (*cells, dim)), (0.5 * G, G, 2 * G), cells, keys, frames, lift)


def _lifted(direction: np.ndarray, strengths, cells, keys: int, frames: int, lift: bool) -> list[ForceField]:
    """`direction` (*cells, dim) at each strength, held over the window; with `lift` each also plus 1 g up."""
    dim = len(cells)
    up = np.zeros(dim)
    up[1] = G
    out = []
    for strength in strengths:
        for raise_by in (0.0, 1.0) if lift else (0.0,):
            values = strength * direction + raise_by * up
            out.append(ForceField(np.broadcast_to(values, (keys, *cells, dim)).copy(), frames))
    return out
