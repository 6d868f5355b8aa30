"""Random initial conditions of each training family, as scene dictionaries (validated by sim.scene).

Every family lives in one 1 m square domain (so one solver serves a whole dataset without recompiling);
a random right wall, as an obstacle, varies where the fluid meets a wall.
"""

from __future__ import annotations

import numpy as np

FAMILY_DIM = {"water2d": 2, "water_ramps2d": 2, "sand_ramps2d": 2, "water_sand2d": 2}
FAMILY_MATERIALS = {
    "water2d": ["water"],
    "water_ramps2d": ["water"],
    "sand_ramps2d": ["sand"],
    "water_sand2d": ["water", "sand"],
}
DOMAIN = 1.0
SOLVER_GRID = 64  # the family's full-resolution MPM: 1/64 m cells
FRAME_DT = 1.0 / 60.0
MAX_INITIAL_SPEED = 1.5  # m/s per axis for water blocks
# The fastest flow any scene of a family can reach: one sound speed and dt for the whole dataset.
FAMILY_MAX_SPEED = (2 * 9.81 * DOMAIN + 2 * MAX_INITIAL_SPEED**2) ** 0.5


def _block(rng, size_range, lo_y=0.0, taken=()) -> tuple[list[float], list[float]] | None:
    """A random box inside the domain that does not overlap the boxes in `taken`."""
    for _ in range(50):
        w, h = rng.uniform(*size_range, 2)
        x0 = rng.uniform(0.0, DOMAIN - w)
        y0 = rng.uniform(lo_y, DOMAIN - h)
        lo, hi = np.array([x0, y0]), np.array([x0 + w, y0 + h])
        if all(np.any(hi <= a) or np.any(lo >= b) for a, b in taken):
            return [float(x0), float(y0)], [float(x0 + w), float(y0 + h)]
    return None


def _ramps(rng, count: int) -> list[dict]:
    out = []
    for _ in range(count):
        out.append(
            {
                "shape": "ramp",
                "center": [float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.1, 0.6))],
                "half_size": [float(rng.uniform(0.08, 0.22)), float(rng.uniform(0.012, 0.025))],
                "angle": float(rng.uniform(-35, 35)),
                "boundary": "slip",
                "friction": float(rng.uniform(0.0, 0.4)),
            }
        )
    return out


def _boxes(rng, count: int) -> list[dict]:
    out = []
    for _ in range(count):
        w, h = rng.uniform(0.04, 0.15, 2)
        x0 = rng.uniform(0.05, DOMAIN - w - 0.05)
        out.append(
            {"shape": "box", "min": [float(x0), 0.0], "max": [float(x0 + w), float(h)], "boundary": "sticky"}
        )
    return out


def _inside_any(point, obstacles) -> bool:
    from sim.colliders import from_description

    return any(from_description(o).signed_distance(np.asarray(point)[None])[0] < 0.02 for o in obstacles)


def random_scene(family: str, rng: np.random.Generator) -> dict:
    """One random initial condition of `family` as a scene dictionary."""
    if family not in FAMILY_DIM:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILY_DIM)}")
    obstacles: list[dict] = []
    if rng.random() < 0.5:  # a right wall somewhere, so walls are not always at the same place
        wall = float(rng.uniform(0.55, 0.9))
        obstacles.append(
            {"shape": "box", "min": [wall, 0.0], "max": [DOMAIN, DOMAIN], "boundary": "separate"}
        )
    if family in ("water_ramps2d", "sand_ramps2d"):
        obstacles += _ramps(rng, int(rng.integers(1, 4))) + _boxes(rng, int(rng.integers(0, 3)))
    materials = FAMILY_MATERIALS[family]
    count = int(rng.integers(1, 4)) if family != "water_sand2d" else int(rng.integers(2, 4))
    bodies, taken = [], []
    for k in range(count):
        material = materials[k % len(materials)]
        block = _block(
            rng, (0.08, 0.32), lo_y=0.0 if material == "sand" or rng.random() < 0.5 else 0.2, taken=taken
        )
        if block is None or _inside_any(np.mean(block, axis=0), obstacles):
            continue
        if any(_clips_wall(block, o) for o in obstacles[:1]):
            continue
        taken.append((np.array(block[0]), np.array(block[1])))
        body = {
            "material": material,
            "shape": "box",
            "min": block[0],
            "max": block[1],
            "velocity": [0.0, 0.0],
        }
        if material == "water":
            body["velocity"] = [float(v) for v in rng.uniform(-MAX_INITIAL_SPEED, MAX_INITIAL_SPEED, 2)]
        if material == "sand":
            body["friction_angle"] = float(rng.uniform(25, 40))
        bodies.append(body)
    if not bodies:  # always at least one body: a plain block in the lower left
        bodies.append({"material": materials[0], "shape": "box", "min": [0.02, 0.0], "max": [0.25, 0.3]})
    return {
        "scene": {
            "name": family,
            "dim": 2,
            "size": [DOMAIN, DOMAIN],
            "grid": SOLVER_GRID,
            "frame_dt": FRAME_DT,
            "friction": 0.3 if family != "water2d" else 0.0,
        },
        "body": bodies,
        "obstacle": obstacles,
    }


def _clips_wall(block, wall: dict) -> bool:
    return wall.get("shape") == "box" and wall["max"][1] >= DOMAIN and block[1][0] > wall["min"][0]
