"""Scenes: TOML files validated into dataclasses, then seeded into a solver.

Every error names the file, the key and the reason, and nothing is built until the whole file is valid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from sim import colliders as col
from sim.materials import MATERIAL_NAMES, Material, allowed_params

SCENE_DIR = Path(__file__).resolve().parent.parent / "assets" / "scenes"
MAX_PARTICLES = 4_000_000
MAX_GRID = 1024

SCENE_KEYS = {
    "name",
    "dim",
    "size",
    "grid",
    "gravity",
    "frame_dt",
    "particles_per_cell",
    "description",
    "dt",
    "cfl",
    "sound_speed",
    "capacity",
    "boundary",
    "friction",
    "seed",
}
BODY_KEYS = {"material", "shape", "min", "max", "center", "radius", "velocity"}
OBSTACLE_KEYS = {"shape": None, "boundary": None, "friction": None}
OBSTACLE_SHAPES = {
    "box": {"min", "max"},
    "sphere": {"center", "radius"},
    "plane": {"point", "normal"},
    "ramp": {"center", "half_size", "angle"},
}
EMITTER_KEYS = {"material", "center", "radius", "velocity", "rate", "start", "stop"}


class SceneError(ValueError):
    """A scene that cannot be loaded; the message names the file, the key and the reason."""


@dataclass
class Body:
    material: Material
    shape: str
    params: dict[str, float]
    velocity: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    center: np.ndarray | None = None
    radius: float = 0.0

    def contains(self, points: np.ndarray) -> np.ndarray:
        if self.shape == "box":
            return np.all((points >= self.lo) & (points <= self.hi), axis=1)
        return np.linalg.norm(points - self.center, axis=1) <= self.radius

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self.shape == "box":
            return self.lo, self.hi
        return self.center - self.radius, self.center + self.radius

    @property
    def middle(self) -> np.ndarray:
        lo, hi = self.bounds
        return (lo + hi) / 2


@dataclass
class EmitterSpec:
    material: Material
    params: dict[str, float]
    center: np.ndarray
    radius: float
    velocity: np.ndarray
    rate: float = 0.0
    start: float = 0.0
    stop: float = math.inf


@dataclass
class Scene:
    name: str
    dim: int
    size: tuple[float, ...]
    grid: int
    gravity: tuple[float, ...]
    frame_dt: float
    particles_per_cell: int
    description: str = ""
    dt: float | None = None
    cfl: float = 0.4
    sound_speed: float | None = None
    capacity: int | None = None
    boundary: col.Boundary = col.Boundary.SEPARATE
    friction: float = 0.0
    seed: int = 0
    bodies: list[Body] = field(default_factory=list)
    obstacles: list[col.Collider] = field(default_factory=list)
    emitters: list[EmitterSpec] = field(default_factory=list)
    source: str = ""
    raw: dict = field(default_factory=dict)

    @property
    def max_speed(self) -> float:
        """Fastest flow the scene can reach: its initial speeds plus a fall from the highest material
        point (bodies and emitters) to the lowest point of the domain along gravity."""
        g = np.asarray(self.gravity, float)
        g_norm = float(np.linalg.norm(g))
        up = -g / g_norm if g_norm > 0 else np.zeros(self.dim)
        floor = float(np.minimum(0.0, np.asarray(self.size) * up).sum())
        best = 0.0
        sources = [(b.bounds, b.velocity) for b in self.bodies]
        sources += [((e.center - e.radius, e.center + e.radius), e.velocity) for e in self.emitters]
        for (lo, hi), velocity in sources:
            top = float(np.maximum(lo * up, hi * up).sum())
            best = max(best, math.sqrt(float(velocity @ velocity) + 2.0 * g_norm * max(top - floor, 0.0)))
        return best

    def to_json(self) -> dict:
        """The resolved scene as plain data (written into trajectories and saved states)."""
        return {
            "name": self.name,
            "dim": self.dim,
            "size": list(self.size),
            "grid": self.grid,
            "gravity": list(self.gravity),
            "frame_dt": self.frame_dt,
            "particles_per_cell": self.particles_per_cell,
            "dt": self.dt,
            "cfl": self.cfl,
            "sound_speed": self.sound_speed,
            "capacity": self.capacity,
            "boundary": self.boundary.name.lower(),
            "friction": self.friction,
            "seed": self.seed,
            "source": self.source,
            "raw": self.raw,
        }


def builtin_scenes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SCENE_DIR.glob("*.toml"))}


def resolve_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SceneError(f"{path}: no such scene file")
        return path
    scenes = builtin_scenes()
    if str(name_or_path) not in scenes:
        raise SceneError(f"{name_or_path}: unknown scene; built-in scenes are {', '.join(scenes)}")
    return scenes[str(name_or_path)]


def read_toml(path: Path, error: type[Exception] | None = None) -> dict:
    """Parse a TOML file (data only: nothing in it is ever executed); failures raise `error` (SceneError)."""
    error = error or SceneError
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: malformed TOML: {e}") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None


def dump_toml(data: dict) -> str:
    """TOML text of `data` (scalars, arrays, tables and arrays of tables of those): how a fuzz case or a
    generated scene is written so that `read_toml` gives `data` back."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not _tables(v)]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and _tables(value):
            for table in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _tables(value) -> bool:
    """A table, or a non-empty array of tables."""
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(t, dict) for t in value)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def load_scene(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Scene:
    """Read and validate a scene. `overrides` replace keys of [scene] (e.g. a coarser grid for tests)."""
    path = resolve_path(name_or_path)
    raw = read_toml(path)
    if overrides:
        raw.setdefault("scene", {})
        if isinstance(raw["scene"], dict):
            raw["scene"].update(overrides)
    return parse_scene(raw, str(path))


class TableReader:
    """Typed access to one TOML table, with errors that name the file and the key path."""

    def __init__(self, source: str, where: str, table: Any, allowed: set[str]):
        self.source, self.where = source, where
        if not isinstance(table, dict):
            self.fail("", "must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")
        self.table = table

    def fail(self, key: str, reason: str):
        name = f"{self.where}.{key}" if key else self.where
        raise SceneError(f"{self.source}: {name}: {reason}")

    def has(self, key: str) -> bool:
        return key in self.table

    def number(self, key: str, default: float | None = None, *, positive=False, minimum=None, maximum=None):
        if key not in self.table:
            if default is None:
                self.fail(key, "missing")
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            self.fail(key, "must be finite")
        if positive and value <= 0:
            self.fail(key, f"must be positive, got {value:g}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be at most {maximum:g}, got {value:g}")
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0, maximum: int | None = None):
        if key not in self.table:
            if default is None:
                self.fail(key, "missing")
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            self.fail(key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def vector(self, key: str, dim: int, default=None, *, positive=False, nonnegative=False) -> np.ndarray:
        if key not in self.table:
            if default is None:
                self.fail(key, "missing")
            return np.asarray(default, float)
        value = self.table[key]
        if (
            not isinstance(value, list)
            or len(value) != dim
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        ):
            self.fail(key, f"must be a list of {dim} numbers, got {value!r}")
        out = np.asarray(value, float)
        if not np.isfinite(out).all():
            self.fail(key, "must be finite")
        if positive and (out <= 0).any():
            self.fail(key, f"must be positive, got {value}")
        if nonnegative and (out < 0).any():
            self.fail(key, f"must not be negative, got {value}")
        return out

    def choice(self, key: str, options: dict, default: str | None = None):
        if key not in self.table:
            if default is None:
                self.fail(key, "missing")
            return options[default]
        value = self.table[key]
        if value not in options:
            self.fail(key, f"unknown value {value!r} (choose one of {', '.join(options)})")
        return options[value]

    def string(self, key: str, default: str) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str):
            self.fail(key, "must be a string")
        return value


def _material_params(r: TableReader, material: Material, base_keys: set[str]) -> dict[str, float]:
    params = {}
    for key in set(r.table) - base_keys:
        if key not in allowed_params(material):
            r.fail(
                key,
                f"not a parameter of {material.name.lower()} "
                f"(allowed: {', '.join(sorted(allowed_params(material)))})",
            )
        params[key] = r.number(key, minimum=0.0)
    if "poisson_ratio" in params and params["poisson_ratio"] >= 0.5:
        r.fail("poisson_ratio", "must be below 0.5")
    if "friction_angle" in params and not 0 < params["friction_angle"] < 90:
        r.fail("friction_angle", "must be between 0 and 90 degrees")
    for key in ("density", "youngs_modulus"):
        if key in params and params[key] <= 0:
            r.fail(key, "must be positive")
    return params


def _all_params() -> set[str]:
    return set().union(*(allowed_params(m) for m in Material))


def parse_scene(raw: dict, source: str = "<scene>") -> Scene:
    top = TableReader(source, "file", raw, {"scene", "body", "obstacle", "emitter"})
    if "scene" not in raw:
        top.fail("scene", "missing [scene] table")
    r = TableReader(source, "scene", raw["scene"], SCENE_KEYS)
    dim = r.integer("dim", minimum=2, maximum=3)
    size = r.vector("size", dim, positive=True)
    gravity_raw = r.table.get("gravity", 9.81)
    if isinstance(gravity_raw, list):
        gravity = r.vector("gravity", dim)
    else:
        gravity = np.zeros(dim)
        gravity[1] = -r.number("gravity", 9.81, minimum=0.0)
    scene = Scene(
        name=r.string("name", Path(source).stem),
        dim=dim,
        size=tuple(size.tolist()),
        grid=r.integer("grid", minimum=4, maximum=MAX_GRID),
        gravity=tuple(gravity.tolist()),
        frame_dt=r.number("frame_dt", 1 / 60, positive=True, maximum=1.0),
        particles_per_cell=r.integer("particles_per_cell", 2**dim, minimum=1, maximum=64),
        description=r.string("description", ""),
        dt=r.number("dt", positive=True) if r.has("dt") else None,
        cfl=r.number("cfl", 0.4, positive=True, maximum=1.0),
        sound_speed=r.number("sound_speed", positive=True) if r.has("sound_speed") else None,
        capacity=r.integer("capacity", minimum=1, maximum=MAX_PARTICLES) if r.has("capacity") else None,
        boundary=r.choice("boundary", col.BOUNDARY_NAMES, "separate"),
        friction=r.number("friction", 0.0, minimum=0.0),
        seed=r.integer("seed", 0),
        source=source,
        raw=raw,
    )
    if scene.dt is not None and scene.dt > scene.frame_dt:
        r.fail("dt", "must not exceed frame_dt")

    for i, table in enumerate(_list_of_tables(top, raw, "obstacle")):
        scene.obstacles.append(parse_obstacle(source, f"obstacle[{i}]", table, scene))
    for i, table in enumerate(_list_of_tables(top, raw, "body")):
        scene.bodies.append(_parse_body(source, f"body[{i}]", table, scene))
    for i, table in enumerate(_list_of_tables(top, raw, "emitter")):
        scene.emitters.append(_parse_emitter(source, f"emitter[{i}]", table, scene))
    if not scene.bodies and not scene.emitters:
        top.fail("body", "a scene needs at least one [[body]] or [[emitter]]")
    return scene


def _list_of_tables(top: TableReader, raw: dict, key: str) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        top.fail(key, f"must be an array of tables: write [[{key}]]")
    return value


def _inside_domain(lo: np.ndarray, hi: np.ndarray, size: tuple[float, ...]) -> bool:
    return bool((lo >= -1e-9).all() and (hi <= np.asarray(size) + 1e-9).all())


def _parse_body(source: str, where: str, table: Any, scene: Scene) -> Body:
    r = TableReader(source, where, table, BODY_KEYS | _all_params())
    material = r.choice("material", MATERIAL_NAMES)
    shape = r.choice("shape", {"box": "box", "sphere": "sphere"})
    params = _material_params(r, material, BODY_KEYS)
    velocity = r.vector("velocity", scene.dim, np.zeros(scene.dim))
    if shape == "box":
        for key in ("center", "radius"):
            if r.has(key):
                r.fail(key, "a box body takes min and max")
        body = Body(
            material, shape, params, velocity, lo=r.vector("min", scene.dim), hi=r.vector("max", scene.dim)
        )
        if (body.hi <= body.lo).any():
            r.fail("max", "must be greater than min on every axis")
    else:
        for key in ("min", "max"):
            if r.has(key):
                r.fail(key, "a sphere body takes center and radius")
        body = Body(
            material,
            shape,
            params,
            velocity,
            center=r.vector("center", scene.dim),
            radius=r.number("radius", positive=True),
        )
    if not _inside_domain(*body.bounds, scene.size):
        r.fail(
            "min" if shape == "box" else "center", f"body reaches outside the domain [0, {list(scene.size)}]"
        )
    for j, obstacle in enumerate(scene.obstacles):
        if obstacle.signed_distance(body.middle[None])[0] < 0:
            r.fail("", f"body lies inside obstacle[{j}]")
    return body


def parse_obstacle(source: str, where: str, table: Any, scene: Scene) -> col.Collider:
    r = TableReader(source, where, table, set(OBSTACLE_KEYS) | set().union(*OBSTACLE_SHAPES.values()))
    shape = r.choice("shape", {k: k for k in OBSTACLE_SHAPES})
    extra = sorted(set(r.table) - set(OBSTACLE_KEYS) - OBSTACLE_SHAPES[shape])
    if extra:
        r.fail(extra[0], f"not a key of a {shape} obstacle")
    boundary = r.choice("boundary", col.BOUNDARY_NAMES, "slip")
    friction = r.number("friction", 0.0, minimum=0.0)
    dim = scene.dim
    if shape == "box":
        lo, hi = r.vector("min", dim), r.vector("max", dim)
        if (hi <= lo).any():
            r.fail("max", "must be greater than min on every axis")
        return col.box(lo, hi, boundary, friction)
    if shape == "sphere":
        return col.sphere(r.vector("center", dim), r.number("radius", positive=True), boundary, friction)
    if shape == "plane":
        normal = r.vector("normal", dim)
        if not np.linalg.norm(normal) > 0:
            r.fail("normal", "must be non-zero")
        return col.plane(r.vector("point", dim), normal, boundary, friction)
    return col.ramp(
        r.vector("center", dim),
        r.vector("half_size", dim, positive=True),
        r.number("angle", 0.0, minimum=-360, maximum=360),
        boundary,
        friction,
    )


def _parse_emitter(source: str, where: str, table: Any, scene: Scene) -> EmitterSpec:
    r = TableReader(source, where, table, EMITTER_KEYS | _all_params())
    material = r.choice("material", MATERIAL_NAMES)
    spec = EmitterSpec(
        material=material,
        params=_material_params(r, material, EMITTER_KEYS),
        center=r.vector("center", scene.dim),
        radius=r.number("radius", positive=True),
        velocity=r.vector("velocity", scene.dim),
        rate=r.number("rate", 0.0, minimum=0.0),
        start=r.number("start", 0.0, minimum=0.0),
        stop=r.number("stop", math.inf, minimum=0.0) if r.has("stop") else math.inf,
    )
    if not _inside_domain(spec.center - spec.radius, spec.center + spec.radius, scene.size):
        r.fail("center", "nozzle reaches outside the domain")
    if spec.stop <= spec.start:
        r.fail("stop", "must come after start")
    return spec
