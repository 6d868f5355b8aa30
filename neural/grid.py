"""The learned stepper's grid: quadratic B-spline transfers between particles and a fixed-spacing grid (torch).

The grid has a fixed cell size `h` in metres and covers any domain size, so one fully convolutional model
serves every scene of a family. Node i sits at (i - PAD) * h; nodes outside [0, size] are walls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

PAD = 2
MULTIPLE = 8  # the U-Net halves the grid three times
N_MATERIALS = 4


@dataclass(frozen=True)
class ModelGrid:
    dim: int
    h: float
    size: tuple[float, ...]

    @property
    def cells(self) -> tuple[int, ...]:
        return tuple(max(1, math.ceil(s / self.h - 1e-6)) for s in self.size)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(MULTIPLE * math.ceil((c + 2 * PAD + 1) / MULTIPLE) for c in self.cells)

    def node_positions(self) -> np.ndarray:
        """(*shape, dim) positions of the nodes in metres."""
        axes = [(np.arange(n) - PAD) * self.h for n in self.shape]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def solid_mask(self, colliders=()) -> np.ndarray:
        """1 on nodes outside the domain or inside an obstacle, else 0."""
        nodes = self.node_positions()
        flat = nodes.reshape(-1, self.dim)
        outside = np.any((flat < -1e-9) | (flat > np.asarray(self.size) + 1e-9), axis=1)
        for c in colliders:
            outside |= c.signed_distance(flat) < 0
        return outside.reshape(self.shape).astype(np.float32)


def _stencil(x: torch.Tensor, grid: ModelGrid):
    """Flat node indices (N, 3^dim) and weights (N, 3^dim) of each particle's quadratic B-spline stencil,
    plus the offsets (3^dim, dim) from the particle to each node in cells."""
    X = x / grid.h + PAD
    base = torch.floor(X - 0.5)
    fx = X - base
    w = torch.stack(
        [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2], dim=0
    )  # (3,N,dim)
    shape = grid.shape
    strides = [int(np.prod(shape[d + 1 :])) for d in range(grid.dim)]
    base = base.long()
    indices, weights, offsets = [], [], []
    for offset in product(range(3), repeat=grid.dim):
        node = base + torch.tensor(offset, device=x.device)
        node = torch.stack([node[:, d].clamp(0, shape[d] - 1) for d in range(grid.dim)], dim=1)
        indices.append(sum(node[:, d] * strides[d] for d in range(grid.dim)))
        weight = torch.ones_like(x[:, 0])
        for d in range(grid.dim):
            weight = weight * w[offset[d], :, d]
        weights.append(weight)
        offsets.append(offset)
    dpos = torch.tensor(offsets, dtype=x.dtype, device=x.device)[None] - fx[:, None, :]  # (N, S, dim)
    return torch.stack(indices, 1), torch.stack(weights, 1), dpos


def p2g(x: torch.Tensor, values: torch.Tensor, grid: ModelGrid) -> torch.Tensor:
    """Scatter per-particle values (N, K) to the grid with B-spline weights: returns (K, *shape)."""
    index, weight, _ = _stencil(x, grid)
    k = values.shape[1]
    out = torch.zeros(k, int(np.prod(grid.shape)), dtype=values.dtype, device=values.device)
    contrib = weight[:, :, None] * values[:, None, :]  # (N, S, K)
    out.index_add_(1, index.reshape(-1), contrib.reshape(-1, k).T)
    return out.reshape(k, *grid.shape)


def interpolate(field: torch.Tensor, x: torch.Tensor, grid: ModelGrid) -> torch.Tensor:
    """Gather a grid field (K, *shape) at particles with B-spline weights (as g2p): returns (N, K)."""
    index, weight, _ = _stencil(x, grid)
    flat = field.reshape(field.shape[0], -1)
    return (flat[:, index] * weight[None]).sum(-1).T


def mass_weighted(x, mass, per_particle, grid: ModelGrid) -> torch.Tensor:
    """Mass-weighted grid average of a per-particle vector (N, K): (K, *shape), zero where no mass."""
    weighted = p2g(x, torch.cat([mass[:, None], mass[:, None] * per_particle], dim=1), grid)
    return weighted[1:] / weighted[0].clamp_min(1e-20) * (weighted[0] > 0)


def volume_fractions(x, volume, material, grid: ModelGrid) -> torch.Tensor:
    """Particle volume per cell volume for each material (4, *shape): 1 is a full cell of any material.
    Volume rather than mass keeps the channels independent of the materials' densities."""
    one_hot = torch.nn.functional.one_hot(material.long(), N_MATERIALS).to(x.dtype)
    return p2g(x, one_hot * (volume / grid.h**grid.dim)[:, None], grid)


def frame_features(
    x, v, mass, volume, material, solid, accel, prev_velocity, grid: ModelGrid
) -> torch.Tensor:
    """The model's input at one frame start: volume fractions (4), velocity (dim), solid mask (1),
    external acceleration (dim) and the previous frame's velocity (dim), as (5 + 3 dim, *shape)."""
    fractions = volume_fractions(x, volume, material, grid)
    velocity = mass_weighted(x, mass, v, grid)
    return torch.cat([fractions, velocity, solid[None], accel, prev_velocity], dim=0)


def n_channels(dim: int) -> int:
    return N_MATERIALS + 1 + 3 * dim
