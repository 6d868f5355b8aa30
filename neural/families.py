"""Random initial conditions of each training family, as scene dictionaries (validated by sim.scene).

Every family lives in one square (2D) or cube (3D) domain, 1 m a side but for the tanks' (water_tank2d and
water_tank3d 0.6 m, sand_tank3d 0.5 m), so one solver serves a whole dataset without recompiling; a random
right wall, as an obstacle, varies where the fluid meets a wall. The learned grid of the 2D families has 1/64
m cells, that of the 3D ones 1/32 m. The 2D families are simulated at the app's resolution (1/128 m, 4
particles per cell: the cell of water_ramps, sand_ramps and water_sand), so the model learns the fine
solver's outcomes on its coarse grid; water_tank2d holds water2d's scenes scaled into a 0.6 m square at
dam_break's cell (0.6/131 m, against water2d's 1/128 m: 1.7x finer; its weights did not pay and do not ship).
water_sand_dam2d is the app's water_sand in random variations: a water column at rest against a wall and
one or two sand banks on the floor beside it (water_sand2d's water blocks never stand still).
sand_chute2d is the app's sand_ramps in random variations: a block of sand dropped onto the upper end of a
ramp that runs down to near the lower end of a second ramp sloping the other way, both ramps letting the sand
leave them ("separate", as the scene's; sand_ramps2d's random ramps are "slip"), at the scene's wall friction.
water3d and sand3d are simulated on their learned grid (8 particles per cell);
water_tank3d holds the same scenes scaled into a 0.6 m tank and is simulated at dam_break_3d's cell (0.6/41
m, 8 particles per cell): a 3D frame costs about its particle count, so the smaller tank keeps the app's
resolution affordable. sand_tank3d does the same for sand3d's scenes: a 0.5 m cube at sand_pile_3d's cell
(0.5/40 m), with its wall friction.
"""

from __future__ import annotations

import numpy as np

FAMILY_DIM = {
    "water2d": 2,
    "water_ramps2d": 2,
    "sand_ramps2d": 2,
    "water_sand2d": 2,
    "water_tank2d": 2,
    "water_sand_dam2d": 2,
    "sand_chute2d": 2,
    "water3d": 3,
    "sand3d": 3,
    "water_tank3d": 3,
    "sand_tank3d": 3,
}
FAMILY_MATERIALS = {
    "water2d": ["water"],
    "water_ramps2d": ["water"],
    "sand_ramps2d": ["sand"],
    "water_sand2d": ["water", "sand"],
    "water_tank2d": ["water"],
    "water_sand_dam2d": ["water", "sand"],
    "sand_chute2d": ["sand"],
    "water3d": ["water"],
    "sand3d": ["sand"],
    "water_tank3d": ["water"],
    "sand_tank3d": ["sand"],
}
DOMAIN = 1.0
TANK_DOMAIN = {"water_tank3d": 0.6, "sand_tank3d": 0.5, "water_tank2d": 0.6}
FAMILY_DOMAIN = {f: TANK_DOMAIN.get(f, DOMAIN) for f in FAMILY_DIM}  # m, a side
MODEL_GRID = 64  # the 2D families' learned grid: 1/64 m cells
MODEL_GRID_3D = 32  # the 3D families': 1/32 m cells
FAMILY_MODEL_H = {f: DOMAIN / (MODEL_GRID if d == 2 else MODEL_GRID_3D) for f, d in FAMILY_DIM.items()}
# Cells along the domain of each family's reference MPM (the data's resolution).
FAMILY_SOLVER_GRID = {f: 128 if d == 2 else MODEL_GRID_3D for f, d in FAMILY_DIM.items()}
FAMILY_SOLVER_GRID["water_tank3d"] = 41  # 0.6 m / 41: dam_break_3d's cell (0.584 m / 40)
FAMILY_SOLVER_GRID["sand_tank3d"] = 40  # 0.5 m / 40: sand_pile_3d's cell
FAMILY_SOLVER_GRID["water_tank2d"] = 131  # 0.6 m / 131: dam_break's cell (0.584 m / 128)
# A resting column against a wall: the dam breaks of the app (in 3D, dam_break_3d's tank is 0.2 m deep).
COLUMN_PROBABILITY = {"water2d": 0.4, "water3d": 0.4, "water_tank3d": 0.5, "water_tank2d": 0.5}
# The controllers' data keeps the scenes they were trained on: the family's model grid, no resting
# columns (the stepper data's finer grid and columns came later; they would change the controllers' inputs).
CONTROL_SOLVER_GRID = {f: round(FAMILY_DOMAIN[f] / h) for f, h in FAMILY_MODEL_H.items()}
FRAME_DT = 1.0 / 60.0
# The walls' friction (0.3 for the rest): water2d's, water3d's and the two water tanks' are frictionless,
# sand_tank3d's are sand_pile_3d's.
FAMILY_WALL_FRICTION = {
    "water2d": 0.0,
    "water3d": 0.0,
    "water_tank3d": 0.0,
    "water_tank2d": 0.0,
    "sand_tank3d": 0.5,
    "sand_chute2d": 0.5,  # sand_ramps'
}
MAX_INITIAL_SPEED = 1.5  # m/s per axis for water blocks
# The fastest flow any scene of a 2D family can reach: one sound speed and dt for the whole dataset.
FAMILY_MAX_SPEED = (2 * 9.81 * DOMAIN + 2 * MAX_INITIAL_SPEED**2) ** 0.5
BLOCK_SIZE = (0.08, 0.32)  # m, side of a 2D block
BLOCK_SIZE_3D = (0.15, 0.4)  # m, side of a 3D block
MAX_PARTICLES_3D = 28_000  # a 3D scene's particle budget: a block that would exceed it is left out


def family_max_speed(family: str) -> float:
    """The fastest flow any scene of `family` can reach (FAMILY_MAX_SPEED in 2D; in 3D a water block's
    initial velocity has three random components)."""
    return (2 * 9.81 * FAMILY_DOMAIN[family] + FAMILY_DIM[family] * MAX_INITIAL_SPEED**2) ** 0.5


def family_particles(family: str, volume: float) -> int:
    """About how many particles the family's solver puts into `volume` (m^dim) of material."""
    dim = FAMILY_DIM[family]
    return int(round(volume * 2**dim * (FAMILY_SOLVER_GRID[family] / FAMILY_DOMAIN[family]) ** dim))


def _block(rng, size_range, domain: float, lo_y=0.0, taken=(), dim=2, on_floor=False):
    """A random box inside the domain that does not overlap the boxes in `taken`, as ([min], [max]); None
    if none was found. In 2D the random draws are those of the original two-axis version, so 2D datasets
    regenerate bit for bit."""
    for _ in range(50):
        extent = rng.uniform(*size_range, dim)
        lo = np.array([rng.uniform(lo_y if d == 1 else 0.0, domain - extent[d]) for d in range(dim)])
        if on_floor:
            lo[1] = 0.0
        hi = lo + extent
        if all(np.any(hi <= a) or np.any(lo >= b) for a, b in taken):
            return [float(v) for v in lo], [float(v) for v in hi]
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


def _body_count(family: str, rng: np.random.Generator) -> int:
    if family == "water_sand2d":
        return int(rng.integers(2, 4))
    if family in ("sand3d", "sand_tank3d"):
        return int(rng.integers(1, 3))
    return int(rng.integers(1, 4))


def random_scene(family: str, rng: np.random.Generator, for_controller: bool = False) -> dict:
    """One random initial condition of `family` as a scene dictionary (as the controllers' data draws it
    when `for_controller`: see CONTROL_SOLVER_GRID)."""
    if family not in FAMILY_DIM:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILY_DIM)}")
    dim, side = FAMILY_DIM[family], FAMILY_DOMAIN[family]  # lengths below scale with the side
    obstacles: list[dict] = []
    if rng.random() < 0.5:  # a right wall somewhere, so walls are not always at the same place
        wall = float(rng.uniform(0.55 * side, 0.9 * side))
        obstacles.append(
            {
                "shape": "box",
                "min": [wall] + [0.0] * (dim - 1),
                "max": [side] * dim,
                "boundary": "separate",
            }
        )
    if family == "water_sand_dam2d":
        return _dam_and_banks(rng, obstacles, family)
    if family == "sand_chute2d":  # the scene's chute spans the domain: no random wall
        return _chute(rng, family)
    if family in ("water_ramps2d", "sand_ramps2d"):
        obstacles += _ramps(rng, int(rng.integers(1, 4))) + _boxes(rng, int(rng.integers(0, 3)))
    materials = FAMILY_MATERIALS[family]
    grid = (CONTROL_SOLVER_GRID if for_controller else FAMILY_SOLVER_GRID)[family]
    if not for_controller and family in COLUMN_PROBABILITY and rng.random() < COLUMN_PROBABILITY[family]:
        if dim == 3:
            obstacles += _front_wall(rng, side)
        return _scene(family, [_column(rng, obstacles, family)], obstacles, grid)
    count = _body_count(family, rng)
    bodies, taken, particles = [], [], 0
    for k in range(count):
        material = materials[k % len(materials)]
        lo_y = 0.0 if material == "sand" or rng.random() < 0.5 else 0.2 * side
        if dim == 2:
            sizes = (BLOCK_SIZE[0] * side, BLOCK_SIZE[1] * side)  # side 1: the original draws
            block = _block(rng, sizes, lo_y=lo_y, taken=taken, domain=side)
        else:  # half the 3D sand blocks stand on the floor: a column collapsing into a pile
            on_floor = material == "sand" and rng.random() < 0.5
            sizes = (BLOCK_SIZE_3D[0] * side, BLOCK_SIZE_3D[1] * side)
            block = _block(rng, sizes, lo_y=lo_y, taken=taken, dim=3, on_floor=on_floor, domain=side)
        if block is None or _inside_any(np.mean(block, axis=0), obstacles):
            continue
        if any(_clips_wall(block, o, side) for o in obstacles[:1]):
            continue
        if dim == 3:
            n = family_particles(family, float(np.prod(np.subtract(block[1], block[0]))))
            if particles + n > MAX_PARTICLES_3D:
                continue
            particles += n
        taken.append((np.array(block[0]), np.array(block[1])))
        body = {
            "material": material,
            "shape": "box",
            "min": block[0],
            "max": block[1],
            "velocity": [0.0] * dim,
        }
        if material == "water":
            body["velocity"] = [float(v) for v in rng.uniform(-MAX_INITIAL_SPEED, MAX_INITIAL_SPEED, dim)]
        if material == "sand":
            body["friction_angle"] = float(rng.uniform(25, 40))
        bodies.append(body)
    if not bodies:  # always at least one body: a plain block in the lower left
        lo, hi = [v * side for v in (0.02, 0.0, 0.02)[:dim]], [v * side for v in (0.25, 0.3, 0.25)[:dim]]
        bodies.append({"material": materials[0], "shape": "box", "min": lo, "max": hi})
        # without the obstacles that would bury it (a ramp or box drawn over the lower left)
        obstacles = [o for o in obstacles if not _inside_any(np.mean([lo, hi], axis=0), [o])]
    return _scene(family, bodies, obstacles, grid)


def _right_wall(obstacles: list[dict], side: float) -> float:
    """Where the random right wall stands (the domain's side when there is none)."""
    return min([o["min"][0] for o in obstacles if o["min"][0] > 0] + [side])


def _column(rng, obstacles: list[dict], family: str) -> dict:
    """A water column at rest against the left wall or the right one (the domain's or the random wall),
    width 0.08-0.3 of the domain's side and 1-2.5 times as high: a dam break. In 3D it fills the tank's
    depth (up to the front wall, if there is one) and is lowered to stay within the particle budget."""
    dim, side = FAMILY_DIM[family], FAMILY_DOMAIN[family]
    right = _right_wall(obstacles, side)
    width = float(rng.uniform(0.08 * side, min(0.3 * side, right / 3)))
    height = float(min(width * rng.uniform(1.0, 2.5), 0.7 * side))
    lo = 0.0 if rng.random() < 0.5 else right - width
    if dim == 2:
        return {"material": "water", "shape": "box", "min": [lo, 0.0], "max": [lo + width, height]}
    depth = min([o["min"][2] for o in obstacles if o["min"][2] > 0] + [side])
    height = min(height, MAX_PARTICLES_3D / family_particles(family, width * depth))
    return {"material": "water", "shape": "box", "min": [lo, 0.0, 0.0], "max": [lo + width, height, depth]}


def _dam_and_banks(rng, obstacles: list[dict], family: str) -> dict:
    """A resting water column against a wall (as _column) and one or two sand banks on the floor of the
    space left beside it, 2-15 cm high, at least 2 cm from the column or each other: water_sand's dam break
    onto a sand bank, varied."""
    side = FAMILY_DOMAIN[family]
    column = _column(rng, obstacles, family)
    right = _right_wall(obstacles, side)
    gap = 0.02 * side
    free = (column["max"][0] + gap, right) if column["min"][0] == 0.0 else (0.0, column["min"][0] - gap)
    bodies = [column]
    for _ in range(int(rng.integers(1, 3))):
        room = free[1] - free[0]
        if room < 0.06 * side:
            break
        width = float(rng.uniform(0.05 * side, room))
        lo = float(rng.uniform(free[0], free[1] - width))
        height = float(rng.uniform(0.02 * side, 0.15 * side))
        bodies.append(
            {
                "material": "sand",
                "shape": "box",
                "min": [lo, 0.0],
                "max": [lo + width, height],
                "velocity": [0.0, 0.0],
                "friction_angle": float(rng.uniform(25, 40)),
            }
        )
        # the next bank goes in the larger part of what is left
        left_part, right_part = (free[0], lo - gap), (lo + width + gap, free[1])
        free = max(left_part, right_part, key=lambda r: r[1] - r[0])
    return _scene(family, bodies, obstacles, FAMILY_SOLVER_GRID[family])


def _ramp_from_upper_end(upper_end, half_length: float, half_thickness: float, angle: float, friction: float):
    """A "separate" ramp whose upper end's top surface is at `upper_end`, sloping at `angle` degrees
    (negative: down to the right), as (obstacle, its lower end's top surface, top surface height at x)."""
    a = np.radians(angle)
    direction = np.array([np.cos(a), np.sin(a)]) * (1.0 if angle < 0 else -1.0)  # from the upper end down
    normal = np.array([-np.sin(a), np.cos(a)])
    center = np.asarray(upper_end) + half_length * direction - half_thickness * normal
    lower_end = np.asarray(upper_end) + 2 * half_length * direction

    def surface(x: float) -> float:
        return float(center[1] + np.tan(a) * (x - center[0]) + half_thickness / np.cos(a))

    obstacle = {
        "shape": "ramp",
        "center": [float(c) for c in center],
        "half_size": [half_length, half_thickness],
        "angle": angle,
        "boundary": "separate",
        "friction": friction,
    }
    return obstacle, lower_end, surface


def _chute(rng, family: str) -> dict:
    """sand_ramps varied: an upper ramp sloping 15-35 degrees down to the right from its upper end at
    x 0.08-0.25 m, y 0.35-0.55 m; below its lower end the lower end of a second ramp sloping 10-30 degrees
    up to the right; a sand block of 8-22 by 8-26 cm, at least 30% of its width past the middle of the
    upper ramp's end face, 0.5-6 cm above it. A quarter of the chutes are mirrored left to right. Everything
    stays below 0.75 m, sand_ramps' top."""
    side = FAMILY_DOMAIN[family]
    friction = lambda: float(rng.uniform(0.1, 0.5))  # noqa: E731
    top = (float(rng.uniform(0.08, 0.25)), float(rng.uniform(0.35, 0.55)))
    slope = float(rng.uniform(15, 35))
    # long enough to matter, short enough that its lower end stays 20 cm above the floor
    length = float(min(rng.uniform(0.15, 0.25), (top[1] - 0.2) / (2 * np.sin(np.radians(slope)))))
    upper, lower_end, surface = _ramp_from_upper_end(
        top, length, float(rng.uniform(0.012, 0.02)), -slope, friction()
    )
    angle = float(rng.uniform(10, 30))
    up_slope = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    # the upper ramp's lower end is >= 0.2 m up, so this lower end has 6 cm to 12-22 cm to choose from
    low = (lower_end[0] + rng.uniform(-0.06, 0.04), rng.uniform(0.06, min(0.22, lower_end[1] - 0.08)))
    length = float(min(rng.uniform(0.12, 0.22), (0.97 * side - low[0]) / (2 * up_slope[0])))
    # the lower ramp is given by its upper end, which lies 2 half lengths up the slope from `low`
    lower, _, _ = _ramp_from_upper_end(
        np.asarray(low) + 2 * length * up_slope, length, float(rng.uniform(0.012, 0.02)), angle, friction()
    )
    top_end = float(upper["center"][0] - upper["half_size"][0] * np.cos(np.radians(upper["angle"])))
    width = float(rng.uniform(0.08, 0.22))
    x0 = float(max(0.0, rng.uniform(top_end - 0.7 * width, top_end + 0.08)))  # 30% or more past the end
    y0 = surface(max(x0, top_end)) + float(rng.uniform(0.005, 0.06))
    height = float(min(rng.uniform(0.08, 0.26), 0.74 * side - y0))
    body = {
        "material": "sand",
        "shape": "box",
        "min": [x0, y0],
        "max": [x0 + width, y0 + height],
        "velocity": [0.0, 0.0],
        "friction_angle": float(rng.uniform(25, 40)),
    }
    obstacles = [upper, lower]
    if rng.random() < 0.25:  # mirrored: x -> side - x
        body["min"][0], body["max"][0] = side - body["max"][0], side - body["min"][0]
        for o in obstacles:
            o["center"][0], o["angle"] = side - o["center"][0], -o["angle"]
    return _scene(family, [body], obstacles, FAMILY_SOLVER_GRID[family])


def _front_wall(rng, side: float) -> list[dict]:
    """Half the 3D columns stand in a narrow tank: a front wall 0.15-0.5 of the side from the back."""
    if rng.random() < 0.5:
        return []
    depth = float(rng.uniform(0.15 * side, 0.5 * side))
    return [{"shape": "box", "min": [0.0, 0.0, depth], "max": [side] * 3, "boundary": "separate"}]


def _scene(family: str, bodies: list[dict], obstacles: list[dict], grid: int) -> dict:
    dim = FAMILY_DIM[family]
    return {
        "scene": {
            "name": family,
            "dim": dim,
            "size": [FAMILY_DOMAIN[family]] * dim,
            "grid": grid,
            "frame_dt": FRAME_DT,
            "friction": FAMILY_WALL_FRICTION.get(family, 0.3),
        },
        "body": bodies,
        "obstacle": obstacles,
    }


def _clips_wall(block, wall: dict, side: float) -> bool:
    return wall.get("shape") == "box" and wall["max"][1] >= side and block[1][0] > wall["min"][0]
