"""Orbit camera and the 4x4 matrices the renderer needs.

Matrices are float32, for column vectors (clip = P @ V @ [x, 1]); upload them with transpose=True.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    f = target - eye
    f = f / np.linalg.norm(f)
    s = np.cross(f, up)
    s = s / np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4, dtype=np.float32)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def perspective(fov_y_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / math.tan(math.radians(fov_y_deg) / 2.0)
    m = np.zeros((4, 4), dtype=np.float32)
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2.0 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def ortho(
    left: float, right: float, bottom: float, top: float, near: float = -1.0, far: float = 1.0
) -> np.ndarray:
    m = np.eye(4, dtype=np.float32)
    m[0, 0] = 2.0 / (right - left)
    m[1, 1] = 2.0 / (top - bottom)
    m[2, 2] = -2.0 / (far - near)
    m[0, 3] = -(right + left) / (right - left)
    m[1, 3] = -(top + bottom) / (top - bottom)
    m[2, 3] = -(far + near) / (far - near)
    return m


@dataclass
class OrbitCamera:
    """Looks at `target` from `distance`, at `yaw` (about +y, degrees; 0 looks along -z) and `pitch`
    (degrees above the horizon). `fov` is the vertical field of view in degrees."""

    target: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    distance: float = 3.0
    yaw: float = 30.0
    pitch: float = 25.0
    fov: float = 45.0

    MIN_PITCH = -89.0
    MAX_PITCH = 89.0  # stays off the pole, where look_at's up vector degenerates

    def __post_init__(self) -> None:
        self.target = np.asarray(self.target, dtype=np.float32).reshape(3)

    @classmethod
    def default_for(
        cls, size: tuple[float, ...], yaw: float = 30.0, pitch: float = 25.0, fov: float = 45.0
    ) -> OrbitCamera:
        """A camera framing the whole domain box [0, size] (its bounding sphere fits the view)."""
        extent = np.asarray(tuple(size) + (0.0,) * (3 - len(size)), dtype=np.float32)
        radius = 0.5 * float(np.linalg.norm(extent))
        # Distance at which the bounding sphere just fits the vertical fov, plus a little room.
        distance = 1.08 * radius / math.sin(math.radians(fov) / 2.0)
        return cls(target=extent / 2.0, distance=distance, yaw=yaw, pitch=pitch, fov=fov)

    def eye(self) -> np.ndarray:
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        offset = np.array(
            [math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)],
            dtype=np.float32,
        )
        return self.target + self.distance * offset

    def view_matrix(self) -> np.ndarray:
        return look_at(self.eye(), self.target, np.array([0.0, 1.0, 0.0], dtype=np.float32))

    def projection(self, aspect: float) -> np.ndarray:
        # Near/far follow the distance so depth precision stays useful at every zoom.
        return perspective(self.fov, aspect, near=self.distance * 0.02, far=self.distance * 20.0)

    def orbit(self, dyaw: float, dpitch: float) -> None:
        self.yaw = (self.yaw + dyaw) % 360.0
        self.pitch = min(max(self.pitch + dpitch, self.MIN_PITCH), self.MAX_PITCH)

    def zoom(self, factor: float) -> None:
        """Multiply the distance by `factor` (< 1 moves closer)."""
        if factor <= 0:
            raise ValueError("zoom factor must be positive")
        self.distance = min(max(self.distance * factor, 1e-3), 1e4)

    def pan(self, dx: float, dy: float) -> None:
        """Move the target in the view plane by dx, dy in units of the visible height at the target
        (so a mouse drag of h pixels in a viewport h pixels tall pans by dy = 1)."""
        view = self.view_matrix()
        right, up = view[0, :3], view[1, :3]
        height = 2.0 * self.distance * math.tan(math.radians(self.fov) / 2.0)
        self.target = (self.target + height * (dx * right + dy * up)).astype(np.float32)
