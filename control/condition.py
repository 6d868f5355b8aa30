"""What the controller sees: the fluid on the solver's force grid (volume fraction, velocity, solids), the
sketch channels and the window length, stacked as condition channels."""

from __future__ import annotations

from itertools import product

import numpy as np

from control.sketch import SKETCH_CHANNELS, Sketch, cell_centres, rasterise

FLUID_CHANNELS = 4  # volume fraction, velocity x/y, solid mask
CONDITION_CHANNELS = FLUID_CHANNELS + SKETCH_CHANNELS + 1  # + window length in seconds
VELOCITY_SCALE = 2.0  # m/s


def control_grid(solver) -> tuple[tuple[int, ...], float]:
    """The solver's force grid: cell counts and cell size."""
    return tuple(solver.force_cells), max(solver.config.size) / solver.config.force_grid


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
    """(FLUID_CHANNELS, *cells): volume fraction, mean velocity / VELOCITY_SCALE, solid mask."""
    dim = len(cells)
    deposit = _cic(np.asarray(x, float), np.concatenate([volume[:, None], volume[:, None] * v], 1), cells, h)
    fraction = deposit[0] / h**dim
    velocity = deposit[1:] / np.maximum(deposit[0], 1e-12) * (fraction > 1e-3)
    centres = cell_centres(cells, h) if dim == 2 else None
    solid = np.zeros(cells, np.float32)
    for c in colliders:
        solid = np.maximum(solid, (c.signed_distance(centres) < 0).reshape(cells).astype(np.float32))
    return np.concatenate([fraction[None], velocity / VELOCITY_SCALE, solid[None]]).astype(np.float32)


def solver_fluid(solver) -> np.ndarray:
    cells, h = control_grid(solver)
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
