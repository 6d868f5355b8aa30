"""FrameView: everything the renderer draws in one frame, as plain numpy data (no taichi, no Qt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

WATER, JELLY, SNOW, SAND = 0, 1, 2, 3
COLOR_MODES = ("material", "speed")
OBSTACLE_SHAPES = ("box", "sphere", "plane", "ramp")


@dataclass
class FrameView:
    """One frame to draw. Units are metres, seconds; the domain is the box [0, size], y up.

    positions (N, dim) float32, materials (N,) int32 (0 water, 1 jelly, 2 snow, 3 sand) and
    velocities (N, dim) float32 are uploaded as they are, so pass float32/int32 contiguous arrays
    to avoid a conversion copy per frame.

    obstacles: dicts with key "shape":
      "box"    min, max
      "sphere" center, radius (a circle in 2D)
      "plane"  point, normal; the solid side is where dot(x - point, normal) < 0
      "ramp"   center, half_size, angle (degrees, rotation about z, i.e. in the x-y plane)
    and optionally "color" (RGB or RGBA floats in [0, 1]).
    strokes: polylines (K, dim) in metres. force_arrows: (anchors (M, dim), accelerations (M, dim)
    in m/s^2), drawn with length |a| * arrow_scale metres.
    """

    dim: int
    size: tuple[float, ...]
    positions: np.ndarray
    materials: np.ndarray
    velocities: np.ndarray
    particle_radius: float
    obstacles: list[dict[str, Any]] = field(default_factory=list)
    strokes: list[np.ndarray] = field(default_factory=list)
    force_arrows: tuple[np.ndarray, np.ndarray] | None = None
    hud: str = ""
    color_mode: str = "material"
    speed_scale: float = 3.0  # m/s mapped to the top of the speed colormap
    arrow_scale: float = 0.01  # metres of arrow per m/s^2

    def __post_init__(self) -> None:
        # Only O(1) shape checks: this runs every frame on large arrays.
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        if len(self.size) != self.dim:
            raise ValueError(f"size {self.size} does not have {self.dim} components")
        n = len(self.positions)
        if self.positions.ndim != 2 or self.positions.shape[1] != self.dim:
            raise ValueError(f"positions must be (N, {self.dim}), got {self.positions.shape}")
        if self.materials.shape != (n,):
            raise ValueError(f"materials must be ({n},), got {self.materials.shape}")
        if self.velocities.shape != self.positions.shape:
            raise ValueError(f"velocities must be {self.positions.shape}, got {self.velocities.shape}")
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}")
        for obstacle in self.obstacles:
            if obstacle.get("shape") not in OBSTACLE_SHAPES:
                raise ValueError(f"obstacle shape must be one of {OBSTACLE_SHAPES}: {obstacle!r}")

    @property
    def count(self) -> int:
        return len(self.positions)

    @classmethod
    def empty(cls, dim: int, size: tuple[float, ...], **kwargs: Any) -> FrameView:
        """A view with no particles (handy for overlays-only frames and tests)."""
        zeros = np.zeros((0, dim), np.float32)
        kwargs.setdefault("particle_radius", 0.005)
        return cls(dim, tuple(size), zeros, np.zeros(0, np.int32), zeros.copy(), **kwargs)
