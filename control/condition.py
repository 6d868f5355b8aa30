"""What the controller sees: the fluid on the control grid (volume fraction, velocity, solids), the sketch
channels and the window length, stacked as condition channels.

The control grid is the solver's force grid in 2D (32 cells along the longest side). In 3D it is a 16³ grid:
a 32³ field of 4 keys would be 393k values for the diffusion model to denoise, and the fields a sketch
asks for are smooth. ForceField.apply upsamples a coarser field onto the solver's force grid."""

from __future__ import annotations

import math
from itertools import product

import numpy as np

from control.sketch import Sketch, cell_centres, rasterise, sketch_channels

VELOCITY_SCALE = 2.0  # m/s
CONTROL_GRID_3D = 16  # cells along the longest side


def fluid_channels_count(dim: int) -> int:
    """Volume fraction, velocity (dim), solid mask."""
    return dim + 2


def condition_channels(dim: int) -> int:
    return fluid_channels_count(dim) + sketch_channels(dim) + 1  # + window length in seconds


FLUID_CHANNELS, CONDITION_CHANNELS = fluid_channels_count(2), condition_channels(2)


def control_grid(solver) -> tuple[tuple[int, ...], float]:
    """The controller's grid: cell counts and cell size (see the module docstring)."""
    size = solver.config.size
    if len(size) == 2:
        return tuple(solver.force_cells), max(size) / solver.config.force_grid
    h = max(size) / min(CONTROL_GRID_3D, solver.config.force_grid)
    return tuple(max(1, math.ceil(s / h - 1e-6)) for s in size), h


def _cic(x: np.ndarray, weights: np.ndarray, cells: tuple[int, ...], h: float) -> np.ndarray:
    """Cloud-in-cell deposit of (N, K) weights onto cell centres: (K, *cells)."""
    dim = len(cells)
    g = x / h - 0.5
    lo = np.floor(g).astype(int)
    frac = g - lo
    out = np.zeros((weights.shape[1], int(np.prod(cells))))
    strides = np.array([int(np.prod(cells[d + 1 :])) for d in range(dim)])
    for corner in product((0, 1), repeat=dim):
        index = np.clip(lo + np.array(corner), 0, np.array(cells) - 1)
        w = np.prod(np.where(np.array(corner), frac, 1 - frac), axis=1)
        flat = (index * strides).sum(axis=1)
        for k in range(weights.shape[1]):
            out[k] += np.bincount(flat, w * weights[:, k], minlength=out.shape[1])
    return out.reshape(weights.shape[1], *cells)


def fluid_channels(x, v, volume, cells: tuple[int, ...], h: float, colliders=()) -> np.ndarray:
    """(dim + 2, *cells): volume fraction, mean velocity / VELOCITY_SCALE, solid mask."""
    dim = len(cells)
    deposit = _cic(np.asarray(x, float), np.concatenate([volume[:, None], volume[:, None] * v], 1), cells, h)
    fraction = deposit[0] / h**dim
    velocity = deposit[1:] / np.maximum(deposit[0], 1e-12) * (fraction > 1e-3)
    solid = np.zeros(cells, np.float32)
    centres = cell_centres(cells, h) if colliders else None
    for c in colliders:
        solid = np.maximum(solid, (c.signed_distance(centres) < 0).reshape(cells).astype(np.float32))
    return np.concatenate([fraction[None], velocity / VELOCITY_SCALE, solid[None]]).astype(np.float32)


def solver_fluid(solver, grid: tuple[tuple[int, ...], float] | None = None) -> np.ndarray:
    """The fluid channels on the control grid (or on `grid`: cells, cell size)."""
    cells, h = grid or control_grid(solver)
    state = solver.particles()
    density = np.array([m.density for m in solver.slots], np.float32)
    volume = solver.masses(state["slot"]) / density[state["slot"]]
    return fluid_channels(state["x"], state["v"], volume, cells, h, solver.colliders)


def condition(fluid: np.ndarray, sketch: Sketch, window_s: float, h: float) -> np.ndarray:
    cells = fluid.shape[1:]
    sketch_channels = rasterise(sketch, cells, h)
    window = np.full((1, *cells), window_s, np.float32)
    return np.concatenate([fluid, sketch_channels, window]).astype(np.float32)


def centroid(x: np.ndarray, mass: np.ndarray) -> np.ndarray:
    return (x * mass[:, None]).sum(axis=0) / max(mass.sum(), 1e-12)
