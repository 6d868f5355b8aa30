"""Static colliders: shapes, boundary types, and their signed distance in numpy.

The solver evaluates the same signed distances in Taichi (sim/kernels.py) on grid nodes and particles; the
numpy version here serves validation (bodies inside obstacles), tools (click to delete) and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Boundary(IntEnum):
    STICKY = 0  # velocity set to zero inside
    SLIP = 1  # normal velocity removed, tangential kept (minus friction)
    SEPARATE = 2  # only inward normal velocity removed, so material can lift off


BOUNDARY_NAMES = {b.name.lower(): b for b in Boundary}


class ShapeKind(IntEnum):
    BOX = 0  # oriented box: axis-aligned boxes and ramps alike
    SPHERE = 1
    PLANE = 2  # half-space; the solid side is where dot(x - point, normal) < 0


@dataclass
class Collider:
    """One static obstacle. Use the constructors below rather than filling fields by hand."""

    kind: ShapeKind
    dim: int
    center: np.ndarray  # box/sphere centre, or a point on the plane
    half_size: np.ndarray = field(
        default_factory=lambda: np.zeros(3)
    )  # box half extents; [r, ...] for spheres
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # world-from-local (boxes)
    normal: np.ndarray = field(default_factory=lambda: np.zeros(3))  # planes
    boundary: Boundary = Boundary.SLIP
    friction: float = 0.0
    angle: float = 0.0  # degrees about z, kept for export and drawing
    shape_name: str = "box"

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance of (N, dim) points: negative inside the solid."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, self.dim)
        if self.kind == ShapeKind.SPHERE:
            return np.linalg.norm(p - self.center, axis=1) - self.half_size[0]
        if self.kind == ShapeKind.PLANE:
            return (p - self.center) @ self.normal
        local = (p - self.center) @ self.rotation  # rows: R^T (x - c)
        q = np.abs(local) - self.half_size
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside

    def describe(self) -> dict:
        """Plain-data description (for drawing, saving and the scene format)."""
        d: dict = {
            "shape": self.shape_name,
            "boundary": self.boundary.name.lower(),
            "friction": self.friction,
        }
        if self.kind == ShapeKind.SPHERE:
            d.update(center=self.center.tolist(), radius=float(self.half_size[0]))
        elif self.kind == ShapeKind.PLANE:
            d.update(point=self.center.tolist(), normal=self.normal.tolist())
        elif self.shape_name == "ramp":
            d.update(center=self.center.tolist(), half_size=self.half_size.tolist(), angle=self.angle)
        else:
            d.update(min=(self.center - self.half_size).tolist(), max=(self.center + self.half_size).tolist())
        return d


def rotation_z(dim: int, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    r = np.eye(dim)
    r[0, 0], r[0, 1], r[1, 0], r[1, 1] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
    return r


def box(lo, hi, boundary=Boundary.SLIP, friction=0.0) -> Collider:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dim = lo.size
    return Collider(
        ShapeKind.BOX,
        dim,
        (lo + hi) / 2,
        (hi - lo) / 2,
        np.eye(dim),
        np.zeros(dim),
        Boundary(boundary),
        float(friction),
        shape_name="box",
    )


def ramp(center, half_size, angle_deg: float, boundary=Boundary.SLIP, friction=0.0) -> Collider:
    """An oriented box rotated by `angle_deg` about the z axis (in the x-y plane)."""
    center = np.asarray(center, float)
    dim = center.size
    return Collider(
        ShapeKind.BOX,
        dim,
        center,
        np.asarray(half_size, float),
        rotation_z(dim, angle_deg),
        np.zeros(dim),
        Boundary(boundary),
        float(friction),
        float(angle_deg),
        "ramp",
    )


def sphere(center, radius: float, boundary=Boundary.SLIP, friction=0.0) -> Collider:
    center = np.asarray(center, float)
    dim = center.size
    return Collider(
        ShapeKind.SPHERE,
        dim,
        center,
        np.full(dim, float(radius)),
        np.eye(dim),
        np.zeros(dim),
        Boundary(boundary),
        float(friction),
        shape_name="sphere",
    )


def plane(point, normal, boundary=Boundary.SLIP, friction=0.0) -> Collider:
    point, normal = np.asarray(point, float), np.asarray(normal, float)
    norm = np.linalg.norm(normal)
    if not norm > 0:
        raise ValueError("plane normal must be non-zero")
    dim = point.size
    return Collider(
        ShapeKind.PLANE,
        dim,
        point,
        np.zeros(dim),
        np.eye(dim),
        normal / norm,
        Boundary(boundary),
        float(friction),
        shape_name="plane",
    )


def from_description(d: dict) -> Collider:
    """Inverse of Collider.describe(); the scene loader validates keys before calling this."""
    boundary = BOUNDARY_NAMES[d.get("boundary", "slip")]
    friction = float(d.get("friction", 0.0))
    shape = d["shape"]
    if shape == "box":
        return box(d["min"], d["max"], boundary, friction)
    if shape == "sphere":
        return sphere(d["center"], d["radius"], boundary, friction)
    if shape == "plane":
        return plane(d["point"], d["normal"], boundary, friction)
    if shape == "ramp":
        return ramp(d["center"], d["half_size"], d.get("angle", 0.0), boundary, friction)
    raise ValueError(f"unknown obstacle shape {shape!r}")
