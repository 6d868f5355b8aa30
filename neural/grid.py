"""The learned stepper's grid: quadratic B-spline transfers between particles and a fixed grid (torch).

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

    def solid_mask(self, colliders=(), walls_on_boundary: bool = False) -> np.ndarray:
        """1 on nodes outside the domain or inside an obstacle, else 0 (the network's input). With
        `walls_on_boundary`, nodes on the domain's boundary count as wall too, as in the solver's wall
        condition (the pressure projection's mask)."""
        nodes = self.node_positions()
        flat = nodes.reshape(-1, self.dim)
        eps = 1e-9 if not walls_on_boundary else -1e-6 * self.h
        outside = np.any((flat < -eps) | (flat > np.asarray(self.size) + eps), axis=1)
        for c in colliders:
            outside |= c.signed_distance(flat) < 0
        return outside.reshape(self.shape).astype(np.float32)

    def capacity(self, colliders=(), samples: int = 2) -> np.ndarray:
        """(*shape) the volume fraction each node would read if all open space (inside the domain,
        outside obstacles) were filled at rest: 1 inside, about 1/2 on a wall, 1/4 in a 2D corner, 0
        deep in a solid. A node's fraction over its capacity is its compression, on walls as inside."""
        axes = [(np.arange(c * samples) + 0.5) * (self.h / samples) for c in self.cells]
        points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim)
        points = points[np.all(points < np.asarray(self.size), axis=1)]
        for c in colliders:
            points = points[c.signed_distance(points) >= 0]
        out = torch.zeros(int(np.prod(self.shape)), dtype=torch.float64)
        if len(points):
            index, weight = _stencil(torch.from_numpy(points), self)
            out.index_add_(0, index.reshape(-1), weight.reshape(-1) / samples**self.dim)
        return out.reshape(self.shape).numpy().astype(np.float32)


_OFFSETS: dict[int, torch.Tensor] = {}


def _offsets(dim: int) -> torch.Tensor:
    if dim not in _OFFSETS:
        _OFFSETS[dim] = torch.tensor(list(product(range(3), repeat=dim)), dtype=torch.long)  # (3^dim, dim)
    return _OFFSETS[dim]


def _stencil(x: torch.Tensor, grid: ModelGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat node indices and B-spline weights (both (N, 3^dim)) of each particle's stencil, vectorised
    over the stencil: a few large tensor operations rather than one per node."""
    X = x / grid.h + PAD
    base = torch.floor(X - 0.5)
    fx = X - base
    w = torch.stack([0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2], dim=0)  # (3,N,d)
    offsets = _offsets(grid.dim).to(x.device)
    shape = torch.tensor(grid.shape, device=x.device)
    nodes = (base.long()[:, None, :] + offsets[None]).clamp_min(0)
    nodes = torch.minimum(nodes, shape - 1)
    strides = torch.tensor([int(np.prod(grid.shape[d + 1 :])) for d in range(grid.dim)], device=x.device)
    index = (nodes * strides).sum(-1)
    weight = torch.ones(x.shape[0], offsets.shape[0], dtype=x.dtype, device=x.device)
    for d in range(grid.dim):
        weight = weight * w[offsets[:, d], :, d].T
    return index, weight


def p2g(x: torch.Tensor, values: torch.Tensor, grid: ModelGrid) -> torch.Tensor:
    """Scatter per-particle values (N, K) to the grid with B-spline weights: returns (K, *shape)."""
    index, weight = _stencil(x, grid)
    k = values.shape[1]
    out = torch.zeros(int(np.prod(grid.shape)), k, dtype=values.dtype, device=values.device)
    out.index_add_(0, index.reshape(-1), (weight[:, :, None] * values[:, None, :]).reshape(-1, k))
    return out.T.reshape(k, *grid.shape)


def g2p(x: torch.Tensor, field: torch.Tensor, grid: ModelGrid) -> torch.Tensor:
    """Gather a grid field (K, *shape) at particles with B-spline weights: (N, K)."""
    index, weight = _stencil(x, grid)
    flat = field.reshape(field.shape[0], -1)
    return (flat[:, index] * weight[None]).sum(-1).T


def _batch_stencil(x: torch.Tensor, grid: ModelGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """The stencils of a batch of particle sets (B, N, dim), indexing a (B * nodes) flat grid."""
    batch, n = x.shape[:2]
    index, weight = _stencil(x.reshape(batch * n, grid.dim), grid)
    nodes = int(np.prod(grid.shape))
    offset = torch.arange(batch, device=x.device).repeat_interleave(n) * nodes
    return index + offset[:, None], weight


def p2g_batch(x: torch.Tensor, values: torch.Tensor, grid: ModelGrid) -> torch.Tensor:
    """p2g for B particle sets at once: x (B, N, dim), values (B, N, K) -> (B, K, *shape)."""
    batch, n, k = values.shape
    index, weight = _batch_stencil(x, grid)
    nodes = int(np.prod(grid.shape))
    out = torch.zeros(batch * nodes, k, dtype=values.dtype, device=values.device)
    flat = values.reshape(batch * n, k)
    out.index_add_(0, index.reshape(-1), (weight[:, :, None] * flat[:, None, :]).reshape(-1, k))
    return out.reshape(batch, nodes, k).transpose(1, 2).reshape(batch, k, *grid.shape)


def g2p_batch(x: torch.Tensor, field: torch.Tensor, grid: ModelGrid) -> torch.Tensor:
    """g2p for B particle sets at once: x (B, N, dim), field (B, K, *shape) -> (B, N, K)."""
    batch, n = x.shape[:2]
    index, weight = _batch_stencil(x, grid)
    k = field.shape[1]
    flat = field.reshape(batch, k, -1).transpose(0, 1).reshape(k, -1)  # (K, B * nodes)
    return (flat[:, index] * weight[None]).sum(-1).T.reshape(batch, n, k)


def advect(x: torch.Tensor, velocities: torch.Tensor, grid: ModelGrid, frame_dt: float):
    """Particles moved through M sub-interval grid velocities (M, dim, *shape), kept inside the domain, as
    the solver's advect_frame does (without colliders): returns the new positions and the velocity at the
    frame's end (extrapolated from the last two sub-intervals, as NeuralStepper.advance keeps it)."""
    steps = velocities.shape[0]
    upper = torch.tensor(grid.size, dtype=x.dtype)
    for m in range(steps):
        x = torch.minimum(torch.clamp_min(x + frame_dt / steps * g2p(x, velocities[m], grid), 0.0), upper)
    end = 1.5 * velocities[-1] - 0.5 * velocities[-2] if steps > 1 else velocities[-1]
    return x, g2p(x, end, grid)


def mass_weighted(x, mass, per_particle, grid: ModelGrid) -> torch.Tensor:
    """Mass-weighted grid average of a per-particle vector (N, K): (K, *shape), zero where no mass."""
    weighted = p2g(x, torch.cat([mass[:, None], mass[:, None] * per_particle], dim=1), grid)
    return weighted[1:] / weighted[0].clamp_min(1e-20) * (weighted[0] > 0)


def frame_features(
    x, v, mass, volume, material, solid, accel, prev_velocity, grid: ModelGrid
) -> torch.Tensor:
    """The model's input at one frame start, from particle arrays (datagen and training).
    At run time the solver computes the same transfer in Taichi (MPMSolver.grid_transfer)."""
    one_hot = torch.nn.functional.one_hot(material.long(), N_MATERIALS).to(x.dtype)
    per_particle = torch.cat(
        [one_hot * (volume / grid.h**grid.dim)[:, None], mass[:, None], mass[:, None] * v], 1
    )
    return assemble_features(p2g(x, per_particle, grid), solid, accel, prev_velocity)


def assemble_features(transfer: torch.Tensor, solid, accel, prev_velocity) -> torch.Tensor:
    """From the transfer (fractions (4), mass, momentum (dim)) to the input channels: volume fractions (4),
    velocity (dim), solid mask (1), external acceleration (dim) and the previous frame's velocity (dim).
    `prev_velocity` None means "same as now" (the first frame)."""
    fractions, grid_mass = transfer[:N_MATERIALS], transfer[N_MATERIALS]
    velocity = transfer[N_MATERIALS + 1 :] / grid_mass.clamp_min(1e-20) * (grid_mass > 0)
    previous = velocity if prev_velocity is None else prev_velocity
    return torch.cat([fractions, velocity, solid[None], accel, previous], dim=0)


def velocity_of(features: torch.Tensor) -> torch.Tensor:
    """The velocity channels (dim, *shape) of frame_features()."""
    dim = features.dim() - 1
    return features[N_MATERIALS : N_MATERIALS + dim]


def n_channels(dim: int) -> int:
    return N_MATERIALS + 1 + 3 * dim


class SolidMasks:
    """The network's solid mask and the projection's wall mask (boundary nodes included) and capacity for
    a grid and its colliders, as tensors, recomputed only when either changes (a 3D capacity takes 0.4 s)."""

    def __init__(self):
        self._key = None
        self.solid = self.walls = self.capacity = None
        self._placed: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, grid: ModelGrid, colliders) -> SolidMasks:
        key = (grid, tuple(repr(c.describe()) for c in colliders))
        if key != self._key:
            self.solid = torch.from_numpy(grid.solid_mask(colliders))
            self.walls = torch.from_numpy(grid.solid_mask(colliders, walls_on_boundary=True))
            self.capacity = torch.from_numpy(grid.capacity(colliders))
            self._key = key
            self._placed = {}
        return self

    def walls_and_capacity_on(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The wall mask and capacity on `device`, copied there once per change of the masks (the same
        tensors every frame also let the projection keep the walls' normals)."""
        device = torch.device(device)
        if device not in self._placed:
            self._placed[device] = (self.walls.to(device), self.capacity.to(device))
        return self._placed[device]
