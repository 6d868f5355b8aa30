"""Smooth force fields from a few control values: separable linear upsampling of a coarse net onto the
solver's force grid (any dimension). Datagen, the controller's baselines and the oracle build fields so."""

from __future__ import annotations

import numpy as np


def upsample(coarse: np.ndarray, cells: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of a (keys, *net, dim) net, corners on the domain's first and last cells,
    onto (keys, *cells, dim)."""
    out = np.asarray(coarse, dtype=np.float32)
    for axis, n in enumerate(cells, start=1):
        m = out.shape[axis]
        if m == 1:
            out = np.repeat(out, n, axis=axis)
            continue
        position = np.linspace(0.0, m - 1, n)
        lo = np.minimum(position.astype(int), m - 2)
        frac = (position - lo).astype(np.float32)
        shape = [1] * out.ndim
        shape[axis] = n
        frac = frac.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - frac) + np.take(out, lo + 1, axis=axis) * frac
    return out.astype(np.float32)
