"""Freehand sketches: strokes cleaned into paths and regions, and rasterised into condition channels.

An open stroke is a path (move the fluid along it; its end is the target); a closed stroke is a region
(gather the fluid inside it). Degenerate input never raises: the stroke is dropped or repaired and the
reason is returned as a message.

In 3D a stroke arrives lifted into the scene (on the plane through the fluid's centroid facing the camera,
or on the floor). A 3D region is what the loop encloses as seen along its plane's normal: a prism through
the domain, so "inside" means the same thing on screen and in the scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_POINTS = 128  # after resampling
CLOSED_GAP = 0.2  # a stroke is closed when its ends are closer than this share of its length
MIN_CELLS = 1.5  # strokes shorter than this many control cells carry no direction
MAX_CROSSINGS = 2  # more self-crossings than this is a scribble


def sketch_channels(dim: int) -> int:
    """Path mask, unit tangent (dim), region mask, start marker, end marker."""
    return dim + 4


SKETCH_CHANNELS = sketch_channels(2)


@dataclass
class Sketch:
    """Cleaned strokes in domain coordinates (metres)."""

    paths: list[np.ndarray] = field(default_factory=list)  # each (M, dim), start to end
    regions: list[np.ndarray] = field(default_factory=list)  # each (M, dim), a closed (planar) polygon

    @property
    def kind(self) -> str:
        return "region" if self.regions and not self.paths else "path"

    @property
    def empty(self) -> bool:
        return not self.paths and not self.regions

    @property
    def dim(self) -> int:
        return (self.paths + self.regions)[0].shape[1]

    def target(self) -> np.ndarray:
        """Where the fluid should end up: the mean end of the paths, else the regions' centre."""
        if self.paths:
            return np.mean([p[-1] for p in self.paths], axis=0)
        return np.mean([polygon_centroid(r) for r in self.regions], axis=0)

    def path_length(self) -> float:
        return float(np.mean([arc_length(p)[-1] for p in self.paths])) if self.paths else 0.0

    def remaining(self, position: np.ndarray, min_length: float) -> Sketch:
        """The sketch as seen from `position` (the fluid's centroid now): each path continues from the
        position at its nearest point, so a re-plan sees only what is left to do."""
        paths = []
        for path in self.paths:
            nearest = int(np.argmin(np.linalg.norm(path - position, axis=1)))
            rest = np.concatenate([np.asarray(position, float)[None], path[nearest + 1 :]])
            if len(rest) < 2 or arc_length(rest)[-1] < min_length:
                rest = np.stack([position, path[-1]])
            paths.append(rest)
        return Sketch(paths, list(self.regions))

    def to_dict(self) -> dict:
        return {"paths": [p.tolist() for p in self.paths], "regions": [r.tolist() for r in self.regions]}


@dataclass
class SketchResult:
    sketch: Sketch
    messages: list[str]

    @property
    def ok(self) -> bool:
        return not self.sketch.empty


def arc_length(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def plane_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(origin, basis (2, dim)) of the plane a stroke lies in: the identity in 2D, the best-fit plane of
    the points in 3D (its two main directions)."""
    points = np.asarray(points, float)
    if points.shape[1] == 2:
        return np.zeros(2), np.eye(2)
    origin = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - origin, full_matrices=False)
    return origin, vt[:2]


def to_plane(points: np.ndarray, frame: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    origin, basis = frame
    return (np.asarray(points, float) - origin) @ basis.T


def polygon_centroid(polygon: np.ndarray) -> np.ndarray:
    frame = plane_frame(polygon)
    flat = to_plane(polygon, frame)
    x, y = flat[:, 0], flat[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    if abs(area) < 1e-12:
        return polygon.mean(axis=0)
    centre = np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (
        6 * area
    )
    return frame[0] + centre @ frame[1]


def resample(points: np.ndarray, spacing: float, closed: bool = False) -> np.ndarray:
    """Points at equal arc length about `spacing` apart (at most MAX_POINTS), then a light smoothing."""
    if closed:
        points = np.concatenate([points, points[:1]])
    s = arc_length(points)
    count = int(np.clip(round(s[-1] / spacing) + 1, 2, MAX_POINTS))
    target = np.linspace(0.0, s[-1], count)
    out = np.stack([np.interp(target, s, points[:, d]) for d in range(points.shape[1])], axis=1)
    if closed:
        out = out[:-1]
    if len(out) >= 5:
        padded = np.concatenate([out[-2:], out, out[:2]]) if closed else np.pad(out, ((2, 2), (0, 0)), "edge")
        smooth = sum(padded[k : k + len(out)] for k in range(5)) / 5
        if not closed:  # the ends are where the user meant to start and stop
            smooth[0], smooth[-1] = out[0], out[-1]
        out = smooth
    return out


def _segments_cross(a0, a1, b0, b1) -> np.ndarray:
    def orient(p, q, r):
        return np.sign(
            (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
            - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
        )

    return (orient(a0, a1, b0) * orient(a0, a1, b1) < 0) & (orient(b0, b1, a0) * orient(b0, b1, a1) < 0)


def self_crossings(points: np.ndarray) -> int:
    """How often a polyline crosses itself (non-adjacent segments only)."""
    a0, a1 = points[:-1], points[1:]
    hits = _segments_cross(a0[:, None], a1[:, None], a0[None], a1[None])
    n = len(a0)
    i, j = np.triu_indices(n, k=2)
    return int(hits[i, j].sum())


def clean_stroke(
    raw, size: Sequence[float], cell: float, label: str
) -> tuple[str, np.ndarray | None, str | None]:
    """One stroke → ("path"|"region", points, message) or (reason, None, message) when it is dropped."""
    try:
        points = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        return "dropped", None, f"{label}: not a list of points; ignored"
    dim = len(size)
    if points.ndim != 2 or points.shape[0] == 0:
        return "dropped", None, f"{label}: empty; nothing to do"
    if points.shape[1] < dim:
        return "dropped", None, f"{label}: points need {dim} coordinates in a {dim}D scene; ignored"
    points = points[:, :dim]
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        return "dropped", None, f"{label}: empty (no finite points); nothing to do"
    upper = np.asarray(size, float)
    inside = np.all((points >= 0) & (points <= upper), axis=1)
    if len(points) and not inside.any():
        return "dropped", None, f"{label}: outside the domain; ignored"
    message = None
    if len(points) and not inside.all():
        message = f"{label}: {int((~inside).sum())} points outside the domain were clipped"
        points = np.clip(points, 0.0, upper)
    keep = (
        np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-9])
        if len(points)
        else []
    )
    points = points[keep]
    if len(points) < 2:
        return "dropped", None, f"{label}: a single point has no direction; draw a line or a loop"
    length = arc_length(points)[-1]
    if length < MIN_CELLS * cell:
        return "dropped", None, f"{label}: too short ({length:.3f} m); draw a longer line"
    closed = np.linalg.norm(points[-1] - points[0]) < CLOSED_GAP * length and length > 4 * cell
    resampled = resample(points, cell / 2, closed)
    if len(raw) > MAX_POINTS * 4 and message is None:
        message = f"{label}: {len(raw)} points resampled to {len(resampled)}"
    ring = np.concatenate([resampled, resampled[:1]]) if closed else resampled
    crossings = self_crossings(to_plane(ring, plane_frame(ring)))
    if crossings > MAX_CROSSINGS:
        return (
            "dropped",
            None,
            f"{label}: a scribble (crosses itself {crossings} times) has no clear goal; ignored",
        )
    return ("region" if closed else "path"), resampled, message


def parse_sketch(strokes, size: Sequence[float], cell: float) -> SketchResult:
    """Clean `strokes` (each a list of points in metres, (x, y) or (x, y, z) as the domain `size` has, or
    a dict with "points"); `cell` is the control grid's cell size. Never raises on bad strokes."""
    sketch, messages = Sketch(), []
    if strokes is None or len(strokes) == 0:
        return SketchResult(sketch, ["the sketch is empty; nothing to do"])
    for k, raw in enumerate(strokes):
        if isinstance(raw, dict):
            raw = raw.get("points", [])
        kind, points, message = clean_stroke(raw, size, cell, f"stroke {k + 1}")
        if message:
            messages.append(message)
        if kind == "path":
            sketch.paths.append(points)
        elif kind == "region":
            sketch.regions.append(points)
    if sketch.empty and not messages:
        messages.append("the sketch is empty; nothing to do")
    return SketchResult(sketch, messages)


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point (K, dim) to the polyline and the unit tangent of its nearest segment."""
    a, b = line[:-1], line[1:]
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    t = np.clip(((points[:, None] - a[None]) * ab[None]).sum(-1) / length2, 0.0, 1.0)
    nearest = a[None] + t[..., None] * ab[None]
    distance = np.linalg.norm(points[:, None] - nearest, axis=-1)
    index = distance.argmin(axis=1)
    tangent = ab[index] / np.sqrt(length2[index])[:, None]
    return distance[np.arange(len(points)), index], tangent


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule on (K, 2) points and a 2D polygon."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    straddles = (y0 > y) != (y1 > y)
    crossing_x = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
    return ((straddles & (x < crossing_x)).sum(axis=1) % 2) == 1


def inside_region(points: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Whether each point lies inside a region: the polygon in 2D, the prism along its plane's normal
    in 3D."""
    frame = plane_frame(region)
    return inside_polygon(to_plane(points, frame), to_plane(region, frame))


def cell_centres(cells: tuple[int, ...], cell: float) -> np.ndarray:
    axes = [(np.arange(n) + 0.5) * cell for n in cells]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(cells))


def rasterise(sketch: Sketch, cells: tuple[int, ...], cell: float) -> np.ndarray:
    """(sketch_channels(dim), *cells): path mask, unit tangent, region mask, start and end markers."""
    dim = len(cells)
    centres = cell_centres(cells, cell)
    region_channel, start_channel, end_channel = dim + 1, dim + 2, dim + 3
    out = np.zeros((sketch_channels(dim), len(centres)), np.float32)
    for path in sketch.paths:
        distance, tangent = _distance_to_polyline(centres, path)
        mask = np.clip(1.0 - distance / (1.5 * cell), 0.0, 1.0)
        out[0] = np.maximum(out[0], mask)
        out[1 : 1 + dim] += (mask[:, None] * tangent).T
        for channel, point in ((start_channel, path[0]), (end_channel, path[-1])):
            bump = np.exp(-((centres - point) ** 2).sum(axis=1) / (2 * (1.5 * cell) ** 2))
            out[channel] = np.maximum(out[channel], bump)
    norm = np.maximum(np.linalg.norm(out[1 : 1 + dim], axis=0), 1.0)
    out[1 : 1 + dim] /= norm
    for region in sketch.regions:
        out[region_channel] = np.maximum(
            out[region_channel], inside_region(centres, region).astype(np.float32)
        )
    return out.reshape(sketch_channels(dim), *cells)
