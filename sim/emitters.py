"""Emitters: nozzles that add particles every frame."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)  # an emitter is a live object (its carry, its random state): equal means the same one
class Emitter:
    """A round nozzle (a segment in 2D, a disc in 3D) facing along `velocity`.

    `rate` is in particles per second; 0 means "as much as flows through the nozzle":
    nozzle area x speed / particle volume.
    """

    slot: int
    center: np.ndarray
    radius: float
    velocity: np.ndarray
    rate: float = 0.0
    start: float = 0.0
    stop: float = math.inf
    enabled: bool = True
    carry: float = 0.0  # fractional particle owed from the previous frame
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def particles_per_second(self, particle_volume: float) -> float:
        if self.rate > 0:
            return self.rate
        dim = self.center.size
        area = 2 * self.radius if dim == 2 else math.pi * self.radius**2
        return area * float(np.linalg.norm(self.velocity)) / particle_volume

    def sample(self, t: float, frame_dt: float, particle_volume: float, limit: int) -> np.ndarray:
        """Positions to add this frame, spread along the jet over the distance it travels in a frame; at
        most `limit` (the solver's room), so an absurd rate never allocates more than the solver holds."""
        if not self.enabled or not (self.start <= t < self.stop):
            return np.zeros((0, self.center.size), np.float32)
        want = self.particles_per_second(particle_volume) * frame_dt + self.carry
        count = int(min(want, limit))
        self.carry = want - count if count < limit else 0.0
        dim = self.center.size
        speed = float(np.linalg.norm(self.velocity))
        axis = self.velocity / speed if speed > 0 else np.eye(dim)[1] * -1.0
        # An orthonormal frame around the jet axis.
        basis = np.linalg.svd(axis.reshape(1, -1))[2][1:]
        if dim == 2:
            lateral = self.rng.uniform(-1, 1, (count, 1)) * self.radius
        else:
            r = self.radius * np.sqrt(self.rng.uniform(0, 1, count))
            phi = self.rng.uniform(0, 2 * math.pi, count)
            lateral = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
        along = self.rng.uniform(0, 1, (count, 1)) * speed * frame_dt
        return (self.center + lateral @ basis + along * axis).astype(np.float32)

    def state(self) -> dict:
        return {"carry": self.carry, "rng": self.rng.bit_generator.state, "enabled": self.enabled}

    def set_state(self, state: dict) -> None:
        self.carry = float(state["carry"])
        self.enabled = bool(state["enabled"])
        self.rng.bit_generator.state = state["rng"]
