"""Pressure projection of the learned grid velocities, so learned frames hold water's and sand's volume.

The network predicts grid velocities; nothing in it forbids a compressing field, and compression that
accumulates over learned frames is what the solver later inherits as pressure (LESSONS.md). Here the
predicted field is changed as little as possible (least squares on the nodes outside solids) so that on
every node that holds water or sand its divergence equals a target: zero, the expansion that undoes
compression beyond `rest`, or, inside the bulk, the compression that closes what is emptier than full,

    div u = relax * (max(phi - rest, 0) + min(phi - FULL, 0) [interior nodes only]) / frame_dt,

with phi the volume fraction at the frame's start. Both sides are needed over long runs: with the
expansion alone, every overshoot of it was kept, and the window's resting dam_break pool ratcheted to
+60-75% of the solver's height, full of cavities (a 1200-frame probe). The compression acts only on
interior water nodes (every neighbour held or solid, the node itself clear of walls), never on a free
surface, which would be pulled in, nor on sand, which may be loose.

`rest` is PHI_REST, or higher where the solver handed over a state more compressed than that: the solver's
water loses volume as it settles (its settled dam_break pool reads up to 1.65 on this grid while its J
reads 1.00), and relieving all of that in one learned frame threw the pool up (energy gain 0.05, the guard
fell back, and the audit kept the hybrid on the solver for good). The stepper starts `rest` at the
level the solver left, counted at the particles' J (compression_level; water's and sand's apart), and lowers
it by REST_DECAY a frame.

Sand is held like water: a dense granular flow does not compress past its packing either, and
unprojected learned sand did (largest volume fraction 2.6 where the solver's reached 1.5 on sand_ramps,
sand piling up on the ramps instead of sliding off; projected, 1.7, and the guard let 97% of the frames
through where it had stopped 44%).

Nodes on walls are held too. A node's fraction is read against its capacity (ModelGrid.capacity: 1
inside, 1/2 on a wall), so water on a wall node counts as full; the node's own velocity stays the wall's,
but its divergence constrains its neighbours'. Without it the velocity one node off a wall, which the
central divergence of that node does not read, was free to point into the wall: 3D learned water packed
against dam_break_3d's walls to 1.9x its first frame's fraction (1.2 held).

The constraint D(u + M G lam) = s, with D the central divergence, G = -D^T the central gradient and M
the mask of non-solid nodes, gives the symmetric positive definite system (G^T M G) lam = D u - s on the
held nodes, solved by conjugate gradients. Nodes without water or sand carry no constraint (a free
surface); solid nodes carry no correction (the walls' own boundary conditions stay the solver's),
which makes the solid mask a Neumann boundary.
"""

from __future__ import annotations

import torch

WATER, SAND = 0, 3  # their volume-fraction channels (neural.grid, Material order)
HELD = ("water", "sand")  # the materials whose volume a learned frame holds
FLUID_FRACTION = 0.5  # nodes at least half full (of their capacity) of water or sand are constrained
PHI_REST = 1.02  # volume fraction taken as uncompressed (the solver's own bulk reads 1.00-1.02 here)
FULL = 0.95  # interior water nodes emptier than this are closed again (a scene's first frame reads >= 0.96)
REST_DECAY = 0.02  # per frame: a handed-over compression of 0.6 is relieved over half a second
RELAX = 1.0  # share of the excess compression removed per frame (all: water answers at once)
MIN_CAPACITY = 0.1  # nodes with less room (deep in a wall) carry no constraint
ITERATIONS = 60
TOLERANCE = 1e-4
# A diagonal shift of the system, in units of 1/h^2. Water held in a pocket that solids close on every
# side, and the central differences' checkerboard, leave the system singular, and where the target is
# not reachable there (a pocket asked to close), conjugate gradients diverged: 2.8e4 1/s after one
# learned frame, NaN after two, on 3 of 190 water_ramps2d trajectories (the pushforward of a training
# run turned every weight to NaN). The shift bounds those modes; they have no gradient, so what they
# add to lam moves no velocity. 1e-3 bent the answer on a 60-node body of water (its smoothest mode's
# eigenvalue is ~3e-3 / h^2: residual 0.28 1/s where it was 0.003); 1e-5 keeps it (0.003).
SHIFT = 1e-5


def _shift(a: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    """a shifted by `step` nodes along `axis`: out[n] = a[n+step], wrapping around. Exact where it is
    used: the outermost PAD nodes are walls, where the pressure is zero and no divergence is read."""
    return torch.roll(a, -step, axis)


def divergence(u: torch.Tensor, h: float) -> torch.Tensor:
    """Central divergence of (B, dim, *grid) velocities: (B, *grid)."""
    dim = u.shape[1]
    out = torch.zeros_like(u[:, 0])
    for d in range(dim):
        axis = 1 + d
        out += _shift(u[:, d], axis, 1) - _shift(u[:, d], axis, -1)
    return out / (2 * h)


def gradient(p: torch.Tensor, h: float, dim: int) -> torch.Tensor:
    """Central gradient of (B, *grid) scalars: (B, dim, *grid); the negative transpose of divergence()."""
    return torch.stack([(_shift(p, 1 + d, 1) - _shift(p, 1 + d, -1)) / (2 * h) for d in range(dim)], dim=1)


def _solid_normals(solid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The outward unit normals (B, dim, *grid) of (B, *grid) solid masks (their negative gradient), and
    where the mask has a gradient (B, 1, *grid): the nodes on either side of a solid's surface. On a
    slope's staircase they point along the steps' axes or diagonals, the slope's normal on average."""
    dim = solid.dim() - 1
    # The mask continues past the array's edge (replicated), so the outermost nodes are not mistaken
    # for a wall's surface.
    padded = torch.nn.functional.pad(solid[:, None], (1, 1) * dim, mode="replicate")[:, 0]
    inner = tuple(slice(1, -1) for _ in range(dim))
    normal = -gradient(padded, 1.0, dim)[(slice(None), slice(None), *inner)]
    length = normal.norm(dim=1, keepdim=True)
    return normal / length.clamp_min(1e-12), length > 0


def _without_push_into(u: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    into = (u * normal).sum(1, keepdim=True).clamp_max(0.0)
    return u - into * normal


# The last mask's normals (mask, normals, surface), one tuple so that a reader on another thread sees a
# consistent entry: the stepper passes the same mask tensor every frame (neural.grid.SolidMasks makes a
# new one when the colliders change), and its normals cost ~0.5 ms of a 2D learned frame.
_normals_cache: tuple | None = None


def wall_condition(u: torch.Tensor, solid: torch.Tensor) -> torch.Tensor:
    """(B, dim, *grid) velocities with the walls' condition on solid nodes, as the solver's walls and
    colliders apply it: no velocity into the solid along its outward normal (the solid mask's negative
    gradient); no velocity at all deep inside, where the mask has no gradient. Particles near a wall
    interpolate these nodes, so a predicted push into the wall would pile them up against it."""
    global _normals_cache
    if solid.is_inference():  # no version counter to tell an in-place change by
        normal, surface = _solid_normals(solid[None])
    else:
        version, cached = solid._version, _normals_cache
        if cached is not None and cached[0] is solid and cached[3] == version:
            normal, surface = cached[1], cached[2]
        else:
            normal, surface = _solid_normals(solid[None])
            _normals_cache = (solid, normal, surface, version)
    walled = _without_push_into(u, normal) * surface
    return torch.where(solid[None, None] > 0.5, walled, u)


def sliding_acceleration(accel: torch.Tensor, solid: torch.Tensor) -> torch.Tensor:
    """(B, dim, *grid) accelerations as a solid surface lets them act on what rests against it: on the
    nodes either side of the surface the component into the solid is removed and the rest kept (gravity
    on a ramp becomes its slide down the slope, as the solver's slip colliders leave it); none deep
    inside a solid. `solid` is (B, *grid)."""
    normal, surface = _solid_normals(solid)
    beside = _without_push_into(accel, normal)
    inside = (solid[:, None] > 0.5) & ~surface
    return torch.where(surface, beside, accel) * ~inside


def projects(materials: list[str]) -> bool:
    """Whether a model of these materials has its velocities projected."""
    return any(m in HELD for m in materials)


def project(
    velocities: torch.Tensor,
    fractions: torch.Tensor,
    solid: torch.Tensor,
    capacity: torch.Tensor,
    h: float,
    frame_dt: float,
    rest: float | torch.Tensor = PHI_REST,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Project (M, dim, *grid) grid velocities; `fractions` (4, *grid) are the volume fractions at the
    frame's start, or (M, 4, *grid), one set per row (several states projected in one call), `solid`
    (*grid) the solid mask, `capacity` (*grid) each node's room (ModelGrid.capacity) and `rest` the
    fraction above which compression is relieved, one for all nodes or per node (*grid; rest_fraction).
    Returns the projected velocities and the largest divergence before and after, in 1/s, on the held
    nodes. The outermost node along every axis must be solid (ModelGrid's PAD nodes are walls): the
    stencils read past the grid's edge as zero."""
    dim = velocities.shape[1]
    per_row = fractions.dim() == velocities.dim()
    u = wall_condition(velocities.float(), solid.float())
    open_nodes = (solid < 0.5).to(u.dtype)
    room = capacity.clamp_min(MIN_CAPACITY)
    water = (fractions[:, WATER] if per_row else fractions[WATER]) / room
    held = water + (fractions[:, SAND] if per_row else fractions[SAND]) / room
    # A node constrains its neighbours' velocities; one with no open neighbour (a box's edge or
    # corner on the walls) has none to move and is left out, or the system would be singular.
    reach = sum(_shift(open_nodes, d, s) for d in range(dim) for s in (1, -1))
    fluid = ((held >= FLUID_FRACTION) & (capacity >= MIN_CAPACITY) & (reach > 0)).to(u.dtype)
    if not bool(fluid.any()):
        return velocities, {"divergence_before": 0.0, "divergence_after": 0.0}
    phi = fractions.sum(1 if per_row else 0) / room
    # Interior water: every neighbour held or solid (the masks' grid axes follow any batch axis). Sand
    # is left loose: a granular flow dilates, and closing it jammed sand against sand_ramps' ramps.
    lead = fluid.dim() - dim
    cover = torch.maximum(fluid, 1 - open_nodes)
    # Only nodes with all their room: near walls and obstacles the capacity is an estimate, and at
    # dam_break_3d's first frame water one node off a wall read 0.84 (its open bulk 0.99-1.0).
    interior = fluid * (water >= FLUID_FRACTION) * (capacity >= 0.99)
    for d in range(dim):
        for s in (1, -1):
            interior = interior * _shift(cover, lead + d, s)
    excess = (phi - rest).clamp_min(0.0) * fluid + (phi - FULL).clamp_max(0.0) * interior
    target = RELAX * excess / frame_dt
    div = divergence(u, h)
    rhs = (div - target) * fluid  # (M, *grid)

    # The system's operator -D(open G(.)) + shift on fields held to the fluid nodes (every vector of
    # the iteration below is), as the stencil it is: central differences reach the next-but-one node
    # along each axis, through the open node between, so
    #   A lam[n] = fluid[n] (sum over axes, sides s of open[n+s] (lam[n] - lam[n+2s]) / 4h^2 + shift lam[n]).
    # One padded copy and 2 * dim products an iteration, where the shifts of divergence() and
    # gradient() took three times as many small tensor calls, whose overhead is the cost at these sizes.
    # Zero padding equals the shifts' wrap: the outermost PAD nodes are walls (open 0).
    rows = rhs.dim() - dim  # the batch axis of the iteration's vectors, one (the masks may have none)
    grid = tuple(range(rows, rows + dim))
    inner = (slice(None),) * rows + (slice(2, -2),) * dim
    sides, weights = [], []
    for d in range(dim):
        for s in (1, -1):
            neighbour = list(inner)
            neighbour[rows + d] = slice(2 + 2 * s, rhs.shape[rows + d] + 2 + 2 * s)
            sides.append(tuple(neighbour))
            weights.append(fluid * _shift(open_nodes, d, s) / (4 * h**2))
    centre = sum(weights) + fluid * SHIFT / h**2
    pad = (2, 2) * dim

    def operator(lam: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(lam, pad)
        out = centre * lam
        for side, weight in zip(sides, weights):
            out = torch.addcmul(out, weight, padded[side], value=-1)
        return out

    # Conjugate gradients on each row at once, until every row's residual is TOLERANCE of its start.
    row = rhs.shape[:rows] + (1,) * dim
    lam = torch.zeros_like(rhs)
    residual = direction = rhs
    rr = (residual * residual).sum(grid)
    stop = TOLERANCE**2 * rr.clamp_min(1e-30)
    for _ in range(ITERATIONS):
        if bool((rr <= stop).all()):
            break
        a_dir = operator(direction)
        alpha = (rr / (direction * a_dir).sum(grid).clamp_min(1e-30)).view(row)
        lam = torch.addcmul(lam, alpha, direction)
        residual = torch.addcmul(residual, alpha, a_dir, value=-1)
        rr_new = (residual * residual).sum(grid)
        direction = torch.addcmul(residual, (rr_new / rr.clamp_min(1e-30)).view(row), direction)
        rr = rr_new
    projected = u + open_nodes * gradient(lam * fluid, h, dim)
    after = (divergence(projected, h) - target) * fluid
    scores = {
        "divergence_before": float(((div - target) * fluid).detach().abs().max()),
        "divergence_after": float(after.detach().abs().max()),
    }
    return projected.to(velocities.dtype), scores


def compression_level(
    claimed: torch.Tensor, fractions: torch.Tensor, capacity: torch.Tensor
) -> tuple[float, float]:
    """The rests under which a state the solver handed over is projected without expanding, one for
    water and one for sand: the largest volume fraction the particles *claim* on the nodes each holds,
    at least PHI_REST. `claimed` (*grid) counts each water particle at its J (the volume the solver's
    pressure answers to) and the others at rest; `fractions` (4, *grid) tell which nodes are held by
    which. Water squeezed to J 0.9 claims its rest fraction and is relieved at once (it rebounds, as the
    solver's does); a settled pool packed to 1.65 at J 1.00 claims 1.65 and is relieved over REST_DECAY.
    Apart, because sand packed at rest (water_sand's reads up to ~1.4) would otherwise let all the
    scene's water stay that compressed."""
    room = capacity.clamp_min(MIN_CAPACITY)
    levels = []
    for channel in (WATER, SAND):
        held = fractions[channel] / room >= FLUID_FRACTION
        levels.append(max(PHI_REST, float((claimed / room)[held].max())) if bool(held.any()) else PHI_REST)
    return levels[0], levels[1]


def rest_fraction(levels: tuple[float, float], fractions: torch.Tensor) -> torch.Tensor | float:
    """Each node's rest (project's `rest`) from the water and sand levels (compression_level): their
    mix by the node's water and sand fractions; (*grid), or a float where both levels are equal."""
    water_level, sand_level = levels
    if water_level == sand_level:
        return water_level
    water, sand = fractions[WATER], fractions[SAND]
    share = water / (water + sand).clamp_min(1e-6)
    return sand_level + share * (water_level - sand_level)
