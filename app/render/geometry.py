"""CPU-side geometry: obstacle meshes, the domain, and screen-space thick lines and arrows.

Pure numpy, so it is testable without a GL context. Meshes are float32 (n, 6) arrays of
position xyz + normal xyz (2D shapes lie at z = 0 facing +z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from . import colors

Color = tuple[float, float, float, float]


@dataclass(frozen=True)
class MeshPart:
    """One draw of the mesh program: GL_TRIANGLES or GL_LINES with one colour."""

    mode: str  # "triangles" | "lines"
    vertices: np.ndarray  # (n, 6) float32: position, normal
    color: Color
    lit: bool = True
    checker: bool = False  # floor pattern computed from the world position


def _rgba(rgb: Any) -> Color:
    c = tuple(float(v) for v in rgb)
    return c if len(c) == 4 else (c[0], c[1], c[2], 1.0)  # type: ignore[return-value]


def _vec(value: Any, n: int) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size != n:
        raise ValueError(f"expected {n} components, got {v.size}: {value!r}")
    return v


def _with_normals(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    pts = np.zeros((len(points), 3))
    pts[:, : points.shape[1]] = points
    return np.hstack([pts, np.broadcast_to(normals, (len(points), 3))]).astype(np.float32)


def fan(polygon: np.ndarray) -> np.ndarray:
    """Triangles (3(K-2), d) of a convex polygon (K, d) listed in order."""
    k = len(polygon)
    if k < 3:
        return np.zeros((0, polygon.shape[1]))
    idx = np.stack([np.zeros(k - 2, int), np.arange(1, k - 1), np.arange(2, k)], axis=1).reshape(-1)
    return polygon[idx]


def circle_polygon(center: np.ndarray, radius: float, segments: int = 96) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * math.pi, segments, endpoint=False)
    return center + radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def rotation_z(angle_deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def clip_halfspace(polygon: np.ndarray, point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Keep the part of a convex polygon where dot(x - point, normal) <= 0 (Sutherland-Hodgman, one edge)."""
    d = (polygon - point) @ normal
    out: list[np.ndarray] = []
    for i in range(len(polygon)):
        j = (i + 1) % len(polygon)
        if d[i] <= 0:
            out.append(polygon[i])
        if (d[i] <= 0) != (d[j] <= 0):
            t = d[i] / (d[i] - d[j])
            out.append(polygon[i] + t * (polygon[j] - polygon[i]))
    return np.array(out).reshape(-1, polygon.shape[1])


def rect_polygon(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


# ---------------------------------------------------------------------------------------------- 2D


def obstacle_polygon_2d(obstacle: dict[str, Any], size: tuple[float, ...]) -> np.ndarray:
    """The filled outline (K, 2) of a 2D obstacle; planes are clipped to the domain."""
    shape = obstacle["shape"]
    if shape == "box":
        return rect_polygon(_vec(obstacle["min"], 2), _vec(obstacle["max"], 2))
    if shape == "sphere":
        return circle_polygon(_vec(obstacle["center"], 2), float(obstacle["radius"]))
    if shape == "ramp":
        half = _vec(obstacle["half_size"], 2)
        corners = rect_polygon(-half, half)
        rot = rotation_z(float(obstacle.get("angle", 0.0)))[:2, :2]
        return corners @ rot.T + _vec(obstacle["center"], 2)
    if shape == "plane":
        domain = rect_polygon(np.zeros(2), np.asarray(size[:2], dtype=np.float64))
        return clip_halfspace(domain, _vec(obstacle["point"], 2), _vec(obstacle["normal"], 2))
    raise ValueError(f"unknown obstacle shape {shape!r}")


def scene_parts_2d(size: tuple[float, ...], obstacles: list[dict[str, Any]]) -> list[MeshPart]:
    """Domain interior fill, then the obstacles, as flat unlit triangles."""
    up = np.array([0.0, 0.0, 1.0])
    domain = rect_polygon(np.zeros(2), np.asarray(size, dtype=np.float64))
    parts = [MeshPart("triangles", _with_normals(fan(domain), up), _rgba(colors.DOMAIN_FILL), lit=False)]
    for obstacle in obstacles:
        poly = obstacle_polygon_2d(obstacle, size)
        color = _rgba(obstacle.get("color", colors.OBSTACLE))
        parts.append(MeshPart("triangles", _with_normals(fan(poly), up), color, lit=False))
    return parts


def fit_2d(size: tuple[float, ...], width: int, height: int) -> tuple[np.ndarray, float]:
    """Orthographic projection that letterboxes the domain into the viewport with a small margin.

    Returns (projection, pixels per metre). One scale for x and y, so shapes are never stretched.
    """
    from .camera import ortho

    margin = max(4.0, 0.03 * min(width, height))
    sx, sy = float(size[0]), float(size[1])
    scale = max(min((width - 2 * margin) / sx, (height - 2 * margin) / sy), 1e-6)
    half_w, half_h = width / (2 * scale), height / (2 * scale)
    cx, cy = sx / 2, sy / 2
    return ortho(cx - half_w, cx + half_w, cy - half_h, cy + half_h), scale


# ---------------------------------------------------------------------------------------------- 3D

_CUBE_FACES = (  # (axis, sign) of each face's normal
    (0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0), (2, 1.0), (2, -1.0),
)  # fmt: skip


def box_mesh(center: np.ndarray, half: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """Triangles with per-face normals of an (optionally rotated) box."""
    rot = np.eye(3) if rotation is None else rotation
    tris: list[np.ndarray] = []
    for axis, sign in _CUBE_FACES:
        u, v = [a for a in range(3) if a != axis]
        quad = np.zeros((4, 3))
        quad[:, axis] = sign
        quad[:, u] = [-1, 1, 1, -1]
        quad[:, v] = [-1, -1, 1, 1]
        normal = np.zeros(3)
        normal[axis] = sign
        corners = (quad * half) @ rot.T + center
        tris.append(_with_normals(fan(corners), rot @ normal))
    return np.vstack(tris)


@lru_cache(maxsize=4)
def _unit_sphere(slices: int = 32, stacks: int = 16) -> np.ndarray:
    theta = np.linspace(0.0, math.pi, stacks + 1)  # from +y down
    phi = np.linspace(0.0, 2.0 * math.pi, slices + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    grid = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], axis=-1)
    a, b = grid[:-1, :-1], grid[1:, :-1]
    c, d = grid[1:, 1:], grid[:-1, 1:]
    tris = np.stack([a, b, c, a, c, d], axis=2).reshape(-1, 3)
    return tris


def sphere_mesh(center: np.ndarray, radius: float) -> np.ndarray:
    unit = _unit_sphere()
    return np.hstack([center + radius * unit, unit]).astype(np.float32)


def box_edges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 12 edges of an axis-aligned box as (24, 3) line endpoints."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1]
    return corners[np.array(pairs).reshape(-1)]


def plane_section(size: tuple[float, ...], point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """The convex polygon where a plane cuts the domain box, vertices in order (empty if it misses)."""
    edges = box_edges(np.zeros(3), np.asarray(size, dtype=np.float64)).reshape(-1, 2, 3)
    d = (edges - point) @ normal
    crossing = (d[:, 0] <= 0) != (d[:, 1] <= 0)
    t = d[crossing, 0] / (d[crossing, 0] - d[crossing, 1])
    e = edges[crossing]
    pts = e[:, 0] + t[:, None] * (e[:, 1] - e[:, 0])
    if len(pts) < 3:
        return np.zeros((0, 3))
    centroid = pts.mean(axis=0)
    n = normal / np.linalg.norm(normal)
    u = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    rel = pts - centroid
    order = np.argsort(np.arctan2(rel @ v, rel @ u))
    return pts[order]


def obstacle_mesh_3d(obstacle: dict[str, Any], size: tuple[float, ...]) -> np.ndarray:
    shape = obstacle["shape"]
    if shape == "box":
        lo, hi = _vec(obstacle["min"], 3), _vec(obstacle["max"], 3)
        return box_mesh((lo + hi) / 2, (hi - lo) / 2)
    if shape == "sphere":
        return sphere_mesh(_vec(obstacle["center"], 3), float(obstacle["radius"]))
    if shape == "ramp":
        rot = rotation_z(float(obstacle.get("angle", 0.0)))
        return box_mesh(_vec(obstacle["center"], 3), _vec(obstacle["half_size"], 3), rot)
    if shape == "plane":
        normal = _vec(obstacle["normal"], 3)
        poly = plane_section(size, _vec(obstacle["point"], 3), normal)
        return _with_normals(fan(poly), normal / np.linalg.norm(normal))
    raise ValueError(f"unknown obstacle shape {shape!r}")


def scene_parts_3d(size: tuple[float, ...], obstacles: list[dict[str, Any]]) -> list[MeshPart]:
    """Checkered floor at y = 0 (a margin wider than the domain), domain box edges, obstacles."""
    sx, _, sz = (float(s) for s in size)
    m = 0.15 * max(sx, sz)
    floor = np.array([[-m, 0.0, -m], [sx + m, 0.0, -m], [sx + m, 0.0, sz + m], [-m, 0.0, sz + m]])
    floor_mesh = _with_normals(fan(floor), np.array([0.0, 1.0, 0.0]))
    edges = _with_normals(box_edges(np.zeros(3), np.array([sx, size[1], sz])), np.zeros(3))
    parts = [
        MeshPart("triangles", floor_mesh, (1.0, 1.0, 1.0, 1.0), checker=True),
        MeshPart("lines", edges, _rgba(colors.WALL), lit=False),
    ]
    for obstacle in obstacles:
        color = _rgba(obstacle.get("color", colors.OBSTACLE))
        parts.append(MeshPart("triangles", obstacle_mesh_3d(obstacle, size), color))
    return parts


# ------------------------------------------------------------------------------- screen-space lines


def to_pixels(points: np.ndarray, mvp: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (K, 2|3) to window pixels (origin bottom-left); also a mask of points in
    front of the camera."""
    k = len(points)
    homo = np.zeros((k, 4))
    homo[:, : points.shape[1]] = points
    homo[:, 3] = 1.0
    clip = homo @ mvp.T.astype(np.float64)
    w = clip[:, 3]
    valid = w > 1e-6
    ndc = clip[:, :2] / np.where(valid, w, 1.0)[:, None]
    return (ndc + 1.0) * 0.5 * np.array([width, height]), valid


def polyline_segments(px: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = valid[:-1] & valid[1:]
    return px[:-1][keep], px[1:][keep]


def arrow_segments(tail: np.ndarray, tip: np.ndarray, head_px: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Shaft plus two head strokes per arrow, in pixels. Arrows shorter than a pixel are dropped."""
    d = tip - tail
    length = np.linalg.norm(d, axis=1)
    keep = length >= 1.0
    tail, tip, d, length = tail[keep], tip[keep], d[keep], length[keep]
    back = -d / length[:, None] * np.minimum(head_px, 0.4 * length)[:, None]
    c, s = math.cos(math.radians(28.0)), math.sin(math.radians(28.0))
    left = np.stack([c * back[:, 0] - s * back[:, 1], s * back[:, 0] + c * back[:, 1]], axis=1)
    right = np.stack([c * back[:, 0] + s * back[:, 1], -s * back[:, 0] + c * back[:, 1]], axis=1)
    p0 = np.concatenate([tail, tip, tip])
    p1 = np.concatenate([tip, tip + left, tip + right])
    return p0, p1


def thick_segments(p0: np.ndarray, p1: np.ndarray, width_px: float) -> np.ndarray:
    """Two triangles per segment (6S, 2) in pixels, so lines can be wider than the 1 px core GL allows."""
    if len(p0) == 0:
        return np.zeros((0, 2))
    d = p1 - p0
    length = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    d = d / length
    n = np.stack([-d[:, 1], d[:, 0]], axis=1) * (width_px / 2.0)
    # Extend each end by half the width so consecutive segments of a polyline join without notches.
    ext = d * (width_px / 2.0)
    a, b, c, e = p0 - ext + n, p0 - ext - n, p1 + ext + n, p1 + ext - n
    return np.stack([a, b, c, c, b, e], axis=1).reshape(-1, 2)


def screen_tile_order(
    points: np.ndarray, mvp: np.ndarray, width: int, height: int, tile: int = 32
) -> np.ndarray:
    """Indices that sort points by the screen tile they project to (row-major tiles).

    llvmpipe bins every primitive into per-tile command lists; feeding it points in random screen
    order costs about 2.5x more than in tile order (cache misses while binning), far more than this
    O(N) radix sort (numpy's stable sort on int16 keys) and the gather after it.
    """
    m = mvp.astype(np.float32)

    def clip_row(k: int) -> np.ndarray:
        # Column by column, not `points @ m.T`: a (N, 3) x (3, 3) matmul goes through BLAS, whose
        # threads made it 20 ms on a busy 2-core machine; these few vector ops take well under 1 ms.
        out = points[:, 0] * m[k, 0] + m[k, 3]
        for j in range(1, points.shape[1]):
            out += points[:, j] * m[k, j]
        return out

    w = np.maximum(clip_row(3), np.float32(1e-6))  # points behind the camera get some key; they are clipped
    nx, ny = -(-width // tile), -(-height // tile)
    tx = np.clip((clip_row(0) / w + 1.0) * (0.5 * width / tile), 0, nx - 1)
    ty = np.clip((clip_row(1) / w + 1.0) * (0.5 * height / tile), 0, ny - 1)
    key_type = np.int16 if nx * ny < 2**15 else np.int32
    key = ty.astype(key_type) * key_type(nx) + tx.astype(key_type)
    return np.argsort(key, kind="stable")
