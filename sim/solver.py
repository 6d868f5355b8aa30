"""MLS-MPM solver in Taichi, one data-oriented class for 2D and 3D.

A substep reads like the algorithm: p2g scatters mass, momentum and stress with quadratic B-splines;
the grid update turns momentum into velocity and runs the post-processors (gravity, external forces,
walls, colliders, the CFL velocity limit); g2p gathers velocities back (APIC), advances the deformation
state with each material's return mapping, and moves the particles.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import taichi as ti

from sim import constitutive
from sim.arch import is_cpu
from sim.colliders import Boundary, Collider, ShapeKind
from sim.emitters import Emitter
from sim.materials import PARAM_COLUMNS, MaterialParams

PAD = 3  # grid cells outside [0, size] on each side: room for the B-spline stencil and the wall band


@ti.func
def _open_share(s):
    """The integral of the quadratic B-spline over the side of a plane at s node spacings from its
    centre (s > 0: the centre is on the open side): 0 for s <= -1.5, 1/2 at 0, 1 for s >= 1.5."""
    a = ti.min(ti.max(s, -1.5), 1.5)
    share = 0.0
    if a < -0.5:
        share = (1.5 + a) ** 3 / 6.0
    elif a < 0.5:
        share = 1.0 / 6.0 + 0.75 * (a + 0.5) - (a**3 + 0.125) / 3.0
    else:
        share = 1.0 - (1.5 - a) ** 3 / 6.0
    return share


MAX_SLOTS = 32
MAX_COLLIDERS = 64
MAX_BRUSHES = 8
# Closed solvers kept for the next solver of the same configuration (MPMSolver.acquire). Taichi compiles a
# data-oriented class's kernels per instance (about 4 s for a 2D solver's on this machine) and its offline
# cache keys them by field ids, so a new instance misses the cache whenever solvers were made in another
# order: switching back to a scene, or the test suite's hundreds of solvers of a few dozen configurations.
IDLE_SOLVERS = 8
IDLE_BYTES = 512 * 2**20  # what the kept solvers' fields may hold in all (a scene's budget: sim.budget)


def particle_bytes(dim: int) -> int:
    """One particle's fields: x, v, C, F, J and slot in float32/int32."""
    return 4 * (2 * dim + 2 * dim * dim + 2)


_COL = {name: i for i, name in enumerate(PARAM_COLUMNS)}


class CapacityError(RuntimeError):
    """More particles were asked for than the solver was built to hold."""


class NonFiniteError(RuntimeError):
    """The state became NaN or infinite."""

    def __init__(self, frame: int, count: int):
        super().__init__(f"non-finite particle state at frame {frame} ({count} particle updates rejected)")
        self.frame = frame
        self.count = count


@dataclass
class SolverConfig:
    dim: int
    size: tuple[float, ...]  # interior extent in metres; the domain is [0, size]
    grid: int  # cells along the longest side
    capacity: int
    particles_per_cell: int = 0  # 0: 2**dim
    gravity: tuple[float, ...] = ()  # default: 9.81 m/s^2 down the y axis
    frame_dt: float = 1.0 / 60.0
    dt: float | None = None  # fixed substep; None derives it from CFL and stiffness
    cfl: float = 0.4
    max_speed: float = 0.0  # fastest flow the scene can reach (m/s); sets water's sound speed and dt
    wall_boundary: Boundary = Boundary.SEPARATE
    wall_friction: float = 0.0
    force_grid: int = 32  # control-grid cells along the longest side for the ForceField
    force_keys: int = 4
    max_force: float = 100.0  # m/s^2 cap on force-field accelerations
    serial_p2g: bool | None = None  # None: serial on the CPU (faster on few cores, and deterministic)

    def __post_init__(self):
        self.size = tuple(float(s) for s in self.size)
        if not self.gravity:
            self.gravity = (0.0, -9.81) + (0.0,) * (self.dim - 2)
        self.gravity = tuple(float(g) for g in self.gravity)
        if not self.particles_per_cell:
            self.particles_per_cell = 2**self.dim
        if self.dim not in (2, 3) or len(self.size) != self.dim or len(self.gravity) != self.dim:
            raise ValueError("dim must be 2 or 3, and size and gravity must have dim entries")

    @property
    def dx(self) -> float:
        return max(self.size) / self.grid

    @property
    def cells(self) -> tuple[int, ...]:
        return tuple(max(1, math.ceil(s / self.dx - 1e-6)) for s in self.size)

    @property
    def particle_volume(self) -> float:
        return self.dx**self.dim / self.particles_per_cell

    @property
    def particle_spacing(self) -> float:
        return self.particle_volume ** (1.0 / self.dim)

    @property
    def water_sound_speed(self) -> float:
        """Weakly compressible water: at least ten times the fastest reachable flow."""
        return 10.0 * max(self.max_speed, 1.0)


def stable_dt(cfg: SolverConfig, slots: list[MaterialParams]) -> float:
    """The substep: the CFL limit of the fastest wave plus the fastest flow (and the explicit diffusion
    limit of viscous materials), rounded down to divide the frame."""
    dx = cfg.dx
    wave = max([m.wave_speed for m in slots], default=cfg.water_sound_speed)
    limit = cfg.cfl * dx / (wave + cfg.max_speed)
    for m in slots:
        if m.viscosity > 0:  # explicit diffusion limit
            limit = min(limit, 0.25 * dx**2 * m.density / m.viscosity)
    return cfg.frame_dt / math.ceil(cfg.frame_dt / limit)


@dataclass
class Brush:
    """A point brush: acceleration `strength` (m/s^2) within `radius` of `center`, along `direction`, or
    toward the centre when `direction` is None (a negative strength repels)."""

    center: tuple[float, ...]
    radius: float
    strength: float
    direction: tuple[float, ...] | None = None


@dataclass
class StepStats:
    substeps: int = 0
    velocity_clamps: int = 0
    position_clamps: int = 0
    deformation_clamps: int = 0
    emitted: int = 0
    collider_pushes: int = 0  # particle updates that ended inside a collider and were pushed out
    messages: list[str] = field(default_factory=list)
    positions: list = field(default_factory=list)  # only from step_frame(sub_intervals > 1)


@ti.data_oriented
class MPMSolver:
    _idle: list["MPMSolver"] = []  # closed solvers kept for acquire, oldest first

    @classmethod
    def acquire(cls, config: SolverConfig) -> "MPMSolver":
        """A solver for `config`, empty as a new one: the last closed solver of the same configuration when
        one is kept (its kernels already compiled for its fields; see IDLE_SOLVERS), else a new one. Only
        solvers made here are kept when closed."""
        key = repr(config)
        for i in reversed(range(len(cls._idle))):
            solver = cls._idle[i]
            if solver._config_key == key:
                del cls._idle[i]
                solver.config = config  # equal to the one it was built for; the caller's own object
                try:
                    solver._start_empty(reused=True)
                except BaseException:
                    solver._free()
                    raise
                return solver
        solver = cls(config)
        solver._reusable = True
        return solver

    @classmethod
    def release_idle(cls) -> None:
        """Free every kept solver's Taichi memory."""
        while cls._idle:
            cls._idle.pop()._free()

    def __init__(self, config: SolverConfig):
        self.config = config
        self._config_key = repr(config)  # what acquire matches; the fields and kernels are built for it
        self.dim = dim = config.dim
        self.capacity = config.capacity
        self.dx = config.dx
        self.inv_dx = 1.0 / self.dx
        self.p_vol = config.particle_volume
        self.grid_shape = tuple(c + 2 * PAD + 1 for c in config.cells)
        self.serial_p2g = is_cpu() if config.serial_p2g is None else config.serial_p2g

        fb = ti.FieldsBuilder()
        vec, mat = ti.types.vector(dim, ti.f32), ti.types.matrix(dim, dim, ti.f32)
        n = config.capacity
        self.x = vec.field()
        self.v = vec.field()
        self.C = mat.field()
        self.F = mat.field()
        self.J = ti.field(ti.f32)  # water: volume ratio; snow: plastic volume ratio; others: 1
        self.slot = ti.field(ti.i32)
        fb.dense(ti.i, n).place(self.x, self.v, self.C, self.F, self.J, self.slot)
        self.grid_v = vec.field()
        self.grid_m = ti.field(ti.f32)
        self.grid_fraction = ti.field(ti.f32)  # volume fraction, for spreading crowded particles
        fb.dense(ti.ij if dim == 2 else ti.ijk, self.grid_shape).place(
            self.grid_v, self.grid_m, self.grid_fraction
        )
        self.n_particles = ti.field(ti.i32)
        # velocity, position, deformation clamps, non-finite updates, particles pushed out of colliders
        self.counters = ti.field(ti.i32)
        fb.place(self.n_particles)
        fb.dense(ti.i, 5).place(self.counters)
        self.material_table = ti.field(ti.f32)
        fb.dense(ti.ij, (MAX_SLOTS, len(PARAM_COLUMNS))).place(self.material_table)
        # Colliders as a table, so adding one at run time needs no recompile.
        self.n_colliders = ti.field(ti.i32)
        fb.place(self.n_colliders)
        self.col_kind, self.col_boundary = ti.field(ti.i32), ti.field(ti.i32)
        self.col_friction = ti.field(ti.f32)
        self.col_center, self.col_half, self.col_normal = vec.field(), vec.field(), vec.field()
        self.col_rot = mat.field()
        fb.dense(ti.i, MAX_COLLIDERS).place(
            self.col_kind,
            self.col_boundary,
            self.col_friction,
            self.col_center,
            self.col_half,
            self.col_normal,
            self.col_rot,
        )
        # Point brushes: centre, radius, strength, direction (zero direction means attract).
        self.n_brushes = ti.field(ti.i32)
        fb.place(self.n_brushes)
        self.brush_center, self.brush_dir = vec.field(), vec.field()
        self.brush_radius, self.brush_strength = ti.field(ti.f32), ti.field(ti.f32)
        fb.dense(ti.i, MAX_BRUSHES).place(
            self.brush_center, self.brush_dir, self.brush_radius, self.brush_strength
        )
        # ForceField: time keys x control grid of accelerations, sampled by the grid update.
        self.force_cells = tuple(
            max(1, math.ceil(s / (max(config.size) / config.force_grid) - 1e-6)) for s in config.size
        )
        self._force_h = max(config.size) / config.force_grid
        self.force_values = vec.field()
        fb.dense(ti.ijk if dim == 2 else ti.ijkl, (config.force_keys, *self.force_cells)).place(
            self.force_values
        )
        self.gravity = vec.field()
        self.force_active = ti.field(ti.i32)
        self._force_t = ti.field(ti.f32)  # start and end time of the force window
        fb.place(self.gravity, self.force_active)
        fb.dense(ti.i, 2).place(self._force_t)
        self._tree = fb.finalize()

        self._wall_hi = [c * self.dx for c in config.cells]
        # The clamp band's top in float32, rounded down so that no clamped particle exceeds `size`.
        self._size = [
            float(np.nextafter(np.float32(v), np.float32(0))) if float(np.float32(v)) > v else v
            for v in config.size
        ]
        self._reusable = False  # kept for reuse when closed: set by acquire
        self._built_keys = None
        self._start_empty()
        self._built_keys = set(self.__dict__)

    def _start_empty(self, reused: bool = False) -> None:
        """The state of a new solver: no particles, materials, obstacles, emitters, brushes or force
        field, time 0, an empty grid. What other code attached to the object since it was built is
        dropped (its built attributes, which the compiled kernels read, are never reassigned)."""
        if self._built_keys is not None:
            for name in set(self.__dict__) - self._built_keys:
                delattr(self, name)
        self.closed = False
        self.budget_warning: str | None = None  # set by build_solver for a scene that will run slowly
        self.frame = 0
        self.time = 0.0
        self.slots: list[MaterialParams] = []
        self.colliders: list[Collider] = []
        self.emitters: list[Emitter] = []
        self.force_window = (0.0, 0.0)
        self._fixed_dt = self.config.dt
        self.n_particles[None] = 0
        self.counters.fill(0)
        self._upload_materials()
        self.n_colliders[None] = 0
        self.n_brushes[None] = 0
        self.force_active[None] = 0
        self.gravity[None] = self.config.gravity
        if reused:  # a new solver's fields start at zero; grid() shows no previous user's last substep
            for values in (self.grid_v, self.grid_m, self.grid_fraction):
                values.fill(0)

    @property
    def field_bytes(self) -> int:
        """The Taichi memory of its particle fields and grid fields (velocity, mass, volume fraction)."""
        return self.capacity * particle_bytes(self.dim) + math.prod(self.grid_shape) * 4 * (self.dim + 2)

    def close(self) -> None:
        """Hand the solver back; the object must not be used afterwards (its state-changing methods
        raise until `acquire` hands it out again). A solver from `acquire` keeps its Taichi memory and
        compiled kernels for the next one of the same configuration, up to IDLE_SOLVERS solvers and
        IDLE_BYTES of fields (the oldest freed first); any other is freed."""
        if self.closed or self._tree is None:
            return
        self.closed = True
        if not self._reusable or self.field_bytes > IDLE_BYTES:
            self._free()
            return
        idle = MPMSolver._idle
        idle.append(self)
        while len(idle) > IDLE_SOLVERS or sum(s.field_bytes for s in idle) > IDLE_BYTES:
            idle.pop(0)._free()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this solver was closed; it must not be used")

    def _free(self) -> None:
        if self._tree is not None:
            self._tree.destroy()
            self._tree = None

    # ----------------------------------------------------------------------------------------- setup
    def add_material(self, params: MaterialParams) -> int:
        """Register a parameter set and return its slot (identical sets share one)."""
        self._check_open()
        if params in self.slots:
            return self.slots.index(params)
        if len(self.slots) >= MAX_SLOTS:
            raise CapacityError(f"at most {MAX_SLOTS} distinct material parameter sets")
        self.slots.append(params)
        self._upload_materials()
        return len(self.slots) - 1

    def replace_materials(self, slots: list[MaterialParams]) -> None:
        if len(slots) > MAX_SLOTS:
            raise CapacityError(f"at most {MAX_SLOTS} distinct material parameter sets")
        self.slots[:] = slots
        self._upload_materials()

    def _upload_materials(self) -> None:
        table = np.zeros((MAX_SLOTS, len(PARAM_COLUMNS)), np.float32)
        for row, params in enumerate(self.slots):
            table[row] = params.as_row()
        self.material_table.from_numpy(table)

    def add_collider(self, collider: Collider) -> int:
        self._check_open()
        if len(self.colliders) >= MAX_COLLIDERS:
            raise CapacityError(f"at most {MAX_COLLIDERS} obstacles")
        if collider.dim != self.dim:
            raise ValueError(f"a {collider.dim}D obstacle cannot go into a {self.dim}D solver")
        self.colliders.append(collider)
        self._upload_colliders()
        return len(self.colliders) - 1

    def replace_colliders(self, colliders: list[Collider]) -> None:
        self._check_open()
        if len(colliders) > MAX_COLLIDERS:
            raise CapacityError(f"at most {MAX_COLLIDERS} obstacles")
        self.colliders[:] = colliders
        self._upload_colliders()

    def remove_collider(self, index: int) -> Collider:
        removed = self.colliders.pop(index)
        self._upload_colliders()
        return removed

    def _upload_colliders(self) -> None:
        for i, c in enumerate(self.colliders):
            self.col_kind[i] = int(c.kind)
            self.col_boundary[i] = int(c.boundary)
            self.col_friction[i] = c.friction
            self.col_center[i] = c.center[: self.dim].tolist()
            self.col_half[i] = c.half_size[: self.dim].tolist()
            self.col_normal[i] = c.normal[: self.dim].tolist()
            self.col_rot[i] = c.rotation[: self.dim, : self.dim].tolist()
        self.n_colliders[None] = len(self.colliders)

    @property
    def n(self) -> int:
        return int(self.n_particles[None])

    def add_particles(self, x: np.ndarray, v: np.ndarray | None, slot: int) -> int:
        """Append particles at rest state (F = I, J = 1, C = 0). Returns how many were added."""
        self._check_open()
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, self.dim)
        count = len(x)
        if count == 0:
            return 0
        if not np.isfinite(x).all():
            raise ValueError("particle positions must be finite")
        if self.n + count > self.capacity:
            raise CapacityError(
                f"{self.n + count} particles requested but the solver holds at most {self.capacity}"
            )
        if not 0 <= slot < len(self.slots):
            raise ValueError(f"unknown material slot {slot}")
        v = np.zeros_like(x) if v is None else np.broadcast_to(np.asarray(v, np.float32), x.shape).copy()
        x = np.clip(x, 0.0, np.asarray(self._size, np.float32))
        self._append(self.n, count, x, np.ascontiguousarray(v), slot)
        self.n_particles[None] = self.n + count
        return count

    @ti.kernel
    def _append(
        self, start: ti.i32, count: ti.i32, xs: ti.types.ndarray(), vs: ti.types.ndarray(), slot: ti.i32
    ):
        for k in range(count):
            p = start + k
            for d in ti.static(range(self.dim)):
                self.x[p][d] = xs[k, d]
                self.v[p][d] = vs[k, d]
            self.C[p] = ti.Matrix.zero(ti.f32, self.dim, self.dim)
            self.F[p] = ti.Matrix.identity(ti.f32, self.dim)
            self.J[p] = 1.0
            self.slot[p] = slot

    # ------------------------------------------------------------------------------ external forces
    def set_brushes(self, brushes: list["Brush"]) -> None:
        """Point brushes active from now until changed. Strength is an acceleration in m/s^2."""
        self._check_open()
        if len(brushes) > MAX_BRUSHES:
            raise CapacityError(f"at most {MAX_BRUSHES} brushes at once")
        for i, b in enumerate(brushes):
            self.brush_center[i] = [float(c) for c in b.center[: self.dim]]
            self.brush_radius[i] = max(float(b.radius), 1e-6)
            strength = float(b.strength)
            self.brush_strength[i] = strength if math.isfinite(strength) else 0.0
            direction = (
                np.zeros(self.dim) if b.direction is None else np.asarray(b.direction, float)[: self.dim]
            )
            norm = np.linalg.norm(direction)
            self.brush_dir[i] = (direction / norm if norm > 0 else np.zeros(self.dim)).tolist()
        self.n_brushes[None] = len(brushes)

    def set_force_field(self, values: np.ndarray, t_start: float, t_end: float) -> float:
        """Install a ForceField: accelerations of shape (keys, *force_cells, dim) in m/s^2, applied for
        sim time in [t_start, t_end]. Magnitudes above `max_force` are scaled down; returns the largest
        magnitude before capping."""
        self._check_open()
        values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        expected = (self.config.force_keys, *self.force_cells, self.dim)
        if values.shape != expected:
            raise ValueError(f"force field must have shape {expected}, got {values.shape}")
        magnitude = np.linalg.norm(values, axis=-1, keepdims=True)
        peak = float(magnitude.max(initial=0.0))
        scale = np.minimum(1.0, self.config.max_force / np.maximum(magnitude, 1e-12))
        self.force_values.from_numpy(np.ascontiguousarray(values * scale))
        self._force_t[0], self._force_t[1] = float(t_start), float(t_end)
        self.force_window = (float(t_start), float(t_end))
        self.force_active[None] = 1
        return peak

    def clear_force_field(self) -> None:
        self.force_active[None] = 0
        self.force_window = (0.0, 0.0)

    def force_field(self) -> np.ndarray | None:
        return self.force_values.to_numpy() if self.force_active[None] else None

    # ------------------------------------------------------------------------------------- state I/O
    def particles(self) -> dict[str, np.ndarray]:
        """Copies of the particle state: x, v, C, F, J, slot and material (kind per particle)."""
        n = self.n
        out = {
            "x": np.zeros((n, self.dim), np.float32),
            "v": np.zeros((n, self.dim), np.float32),
            "C": np.zeros((n, self.dim, self.dim), np.float32),
            "F": np.zeros((n, self.dim, self.dim), np.float32),
            "J": np.zeros(n, np.float32),
            "slot": np.zeros(n, np.int32),
        }
        if n:
            self._export(n, out["x"], out["v"], out["C"], out["F"], out["J"], out["slot"])
        kinds = np.array([m.kind for m in self.slots] or [0], np.int32)
        out["material"] = kinds[out["slot"]]
        return out

    def masses(self, slots: np.ndarray | None = None) -> np.ndarray:
        """Particle masses (kg per metre^(3-dim)): density of the slot times the particle volume."""
        slots = self.particles()["slot"] if slots is None else slots
        density = np.array([m.density for m in self.slots] or [0.0])
        return (density[slots] * self.p_vol).astype(np.float64)

    def positions(self) -> np.ndarray:
        return self.particles()["x"]

    def set_particles(self, state: dict[str, np.ndarray]) -> None:
        """Replace all particles with `state` (as returned by particles())."""
        self._check_open()
        n = len(state["x"])
        if n > self.capacity:
            raise CapacityError(f"{n} particles exceed the solver's capacity of {self.capacity}")
        arrays = [np.ascontiguousarray(state[k], dtype=np.float32) for k in ("x", "v", "C", "F", "J")]
        slots = np.ascontiguousarray(state["slot"], dtype=np.int32)
        if n and (slots.min() < 0 or slots.max() >= len(self.slots)):
            raise ValueError("particle state refers to unknown material slots")
        if n:
            self._import(n, *arrays, slots)
        self.n_particles[None] = n

    @ti.kernel
    def _export(
        self,
        n: ti.i32,
        xs: ti.types.ndarray(),
        vs: ti.types.ndarray(),
        Cs: ti.types.ndarray(),
        Fs: ti.types.ndarray(),
        Js: ti.types.ndarray(),
        slots: ti.types.ndarray(),
    ):
        for p in range(n):
            for a in ti.static(range(self.dim)):
                xs[p, a] = self.x[p][a]
                vs[p, a] = self.v[p][a]
                for b in ti.static(range(self.dim)):
                    Cs[p, a, b] = self.C[p][a, b]
                    Fs[p, a, b] = self.F[p][a, b]
            Js[p] = self.J[p]
            slots[p] = self.slot[p]

    @ti.kernel
    def _import(
        self,
        n: ti.i32,
        xs: ti.types.ndarray(),
        vs: ti.types.ndarray(),
        Cs: ti.types.ndarray(),
        Fs: ti.types.ndarray(),
        Js: ti.types.ndarray(),
        slots: ti.types.ndarray(),
    ):
        for p in range(n):
            for a in ti.static(range(self.dim)):
                self.x[p][a] = xs[p, a]
                self.v[p][a] = vs[p, a]
                for b in ti.static(range(self.dim)):
                    self.C[p][a, b] = Cs[p, a, b]
                    self.F[p][a, b] = Fs[p, a, b]
            self.J[p] = Js[p]
            self.slot[p] = slots[p]

    def grid(self) -> dict[str, np.ndarray]:
        """Grid mass and velocity from the last substep, padding included; node i sits at (i - PAD) * dx."""
        return {"mass": self.grid_m.to_numpy(), "velocity": self.grid_v.to_numpy(), "pad": PAD, "dx": self.dx}

    def remove_where(self, mask: np.ndarray) -> int:
        """Delete the particles where `mask` is true; returns how many went."""
        mask = np.asarray(mask, bool)
        removed = int(mask.sum())
        if removed:
            state = self.particles()
            self.set_particles({k: v[~mask] for k, v in state.items()})
        return removed

    def remove_in_sphere(self, center, radius: float) -> int:
        x = self.positions()
        return self.remove_where(
            np.linalg.norm(x - np.asarray(center, np.float32)[: self.dim], axis=1) <= radius
        )

    def remove_in_box(self, lo, hi) -> int:
        x = self.positions()
        lo, hi = np.asarray(lo, np.float32)[: self.dim], np.asarray(hi, np.float32)[: self.dim]
        return self.remove_where(np.all((x >= lo) & (x <= hi), axis=1))

    # --------------------------------------------------------------------------------- time stepping
    @property
    def dt(self) -> float:
        if self._fixed_dt:
            return float(self._fixed_dt)
        return stable_dt(self.config, self.slots)

    @property
    def substeps(self) -> int:
        return max(1, round(self.config.frame_dt / self.dt))

    @property
    def velocity_limit(self) -> float:
        """CFL bound: no particle moves more than `cfl` cells in a substep."""
        return self.config.cfl * self.dx / self.dt

    def substep(self, dt: float) -> None:
        # One launch runs the three stages as separate parallel loops (separate backend kernels): on the
        # CPU, Python's per-launch overhead (~0.1 ms) otherwise dominates small scenes.
        self._substep(dt, self.time, self.velocity_limit)
        self.time += dt

    def step_frame(self, sub_intervals: int = 1) -> StepStats:
        """Advance one frame of `frame_dt`. Raises NonFiniteError naming the frame if the state blew up.

        With sub_intervals > 1, the positions at the end of each of that many equal parts of the frame
        are returned in `stats.positions` (training data for the learned stepper)."""
        dt, k = self.begin_frame()
        marks = (
            {round(k * (m + 1) / sub_intervals) for m in range(sub_intervals)} if sub_intervals > 1 else set()
        )
        positions = []
        for i in range(k):
            self.substep(dt)
            if i + 1 in marks:
                positions.append(self.positions())
        return self.finish_frame(k, positions)

    def begin_frame(self) -> tuple[float, int]:
        """Start a frame: its dt and substep count. A caller that spreads a frame over several calls
        (the window's sliced solver frames) runs `substep(dt)` that many times, then `finish_frame`."""
        self._check_open()
        self.counters.fill(0)
        return self.dt, self.substeps

    def finish_frame(self, substeps: int, positions: list | None = None) -> StepStats:
        """End a frame begun by `begin_frame`: count it, check it, run the emitters."""
        self.frame += 1
        counts = self.counters.to_numpy()
        if counts[3] > 0:
            raise NonFiniteError(self.frame, int(counts[3]))
        stats = StepStats(
            substeps, int(counts[0]), int(counts[1]), int(counts[2]), collider_pushes=int(counts[4])
        )
        stats.positions = positions or []
        self._emit(stats)
        return stats

    def advect_frame(
        self,
        velocities: np.ndarray,
        h: float,
        pad: int,
        end_velocity: np.ndarray | None = None,
        spread: tuple[float, float, float] | None = None,
    ) -> StepStats:
        """Advance one frame through given grid velocities instead of solving: the learned stepper's path.

        `velocities` (M, *grid, dim) holds M equal sub-intervals of the frame on a grid of spacing `h`
        whose node i sits at (i - pad) * h. Each sub-interval moves particles with the B-spline gather
        of g2p (APIC velocity and affine C), updates F or J with each material's return mapping, and
        keeps particles out of colliders and inside the domain, exactly as g2p does; so the solver can
        continue from the result with no conversion.

        Sub-interval velocities are averages over each part of the frame; `end_velocity` (*grid, dim), when
        given, is the velocity at the frame's end, which the particles keep (v and C) without moving.
        `spread` = (strength, max_step, threshold), when given, ends the motion with `spread_crowding`;
        inside the frame, so that its collider pushes are counted and particles emitted at the frame's end
        are not moved.

        The handover contract: water's J is not integrated here. A coarse predicted field's divergence is
        not the particles' volume change (integrated, it left J at 0.59 after 7 frames while the
        particles' spacing said 1.4x compression at most), so a learned frame keeps each water particle's
        J as the solver left it, relaxed to at most 1: the learned stepper's pressure projection keeps
        the particles at rest spacing, and rest spacing under the solver's own load is J in
        [its hydrostatic compression, 1]. A solver frame can then take over at any frame with the
        pressure the solver last had, never more. Sand's F advances as in g2p (its return mapping bounds
        the shear), but its elastic volume may not fall below where the frame started, at most 1: the
        same coarse divergence compressed it to det F 0.53 in 10 learned frames on water_sand, and the
        solver's first frame answered with an 11.5 m/s burst where the scene's bound is 2.8. Other solids
        (jelly, snow) have no learned stepper and advance as in g2p."""
        self._check_open()
        velocities = np.ascontiguousarray(velocities, dtype=np.float32)
        if velocities.ndim != self.dim + 2 or velocities.shape[-1] != self.dim:
            raise ValueError(f"velocities must be (M, *grid, {self.dim}), got {velocities.shape}")
        steps = velocities.shape[0]
        if end_velocity is not None:
            velocities = np.ascontiguousarray(
                np.concatenate([velocities, end_velocity[None]]), dtype=np.float32
            )
        sub_dt = self.config.frame_dt / steps
        self.counters.fill(0)
        for m in range(velocities.shape[0]):
            self._advect(velocities, m, sub_dt if m < steps else 0.0, 1.0 / h, float(pad), 1)
        if spread is not None:
            self.spread_crowding(*spread)
        self.time += self.config.frame_dt
        return self.finish_frame(0)

    def spread_crowding(self, strength: float, max_step: float, threshold: float = 1.0) -> None:
        """Move particles out of crowded spots on the solver's own grid: each particle steps down the
        gradient of its neighbourhood's excess volume fraction, max(phi / room - threshold, 0) with a
        node's room its share of open space (1 in the bulk, 1/2 on a wall), by strength * dx^2 per unit
        gradient, at most max_step * dx. Positions only (v, C, F and J stay).

        A learned frame moves particles through a field 3x coarser than their spacing, whose sub-cell
        convergence nothing in it can see: over hundreds of frames the particles gather into sheets
        with voids between them (a resting pool turned to foam, LESSONS.md). The solver undoes such
        crowding with its pressure, which acts under compression only; this is that response at the
        particles' own scale, applied to positions, and like it, it never pulls a free surface in."""
        if self.n:
            self._spread_crowding(strength, max_step, threshold)

    @ti.kernel
    def _spread_crowding(self, strength: ti.f32, max_step: ti.f32, threshold: ti.f32):
        for I in ti.grouped(self.grid_fraction):
            self.grid_fraction[I] = 0.0
        cell_share = self.p_vol * self.inv_dx**self.dim
        # Serial everywhere (as grid_transfer): deterministic sums; a rewound learned frame repeats exactly.
        ti.loop_config(serialize=True)
        for p in range(self.n_particles[None]):
            base, fx, w = self._stencil(self.x[p], self.inv_dx, PAD)
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                weight = 1.0
                for d in ti.static(range(self.dim)):
                    weight *= w[offset[d]][d]
                self.grid_fraction[base + offset] += weight * cell_share
        for I in ti.grouped(self.grid_fraction):
            room = self._node_room(I)
            if room < 0.1:
                self.grid_fraction[I] = -1.0  # marks a node with (almost) no room: read as a mirror
            else:
                self.grid_fraction[I] /= room
        for p in range(self.n_particles[None]):
            base, fx, w = self._stencil(self.x[p], self.inv_dx, PAD)
            dw = [fx - 1.5, -2.0 * (fx - 1.0), fx - 0.5]  # the weights' derivatives, per cell
            # Each node's fraction is read against its room (_node_room), and nodes with almost none
            # read as the open nodes' mean excess around the particle (a mirror): a node on a wall reads
            # emptier only because the wall holds no particles, and counting it so stepped crowded water
            # into walls and obstacles (water_ramps: 4% of the particles pushed out of the ramps on a
            # learned frame, and 4 fallbacks in 120 frames once those pushes were counted).
            open_weight, open_excess = 0.0, 0.0
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                fraction = self.grid_fraction[base + offset]
                if fraction >= 0.0:
                    weight = 1.0
                    for d in ti.static(range(self.dim)):
                        weight *= w[offset[d]][d]
                    open_weight += weight
                    open_excess += weight * ti.max(fraction - threshold, 0.0)
            mirror = open_excess / ti.max(open_weight, 1e-6)
            gradient = ti.Vector.zero(ti.f32, self.dim)
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                fraction = self.grid_fraction[base + offset]
                excess = ti.max(fraction - threshold, 0.0) if fraction >= 0.0 else mirror
                for d in ti.static(range(self.dim)):
                    partial = self.inv_dx * dw[offset[d]][d]
                    for e in ti.static(range(self.dim)):
                        if ti.static(e != d):
                            partial *= w[offset[e]][e]
                    gradient[d] += excess * partial
            step = -strength * self.dx * self.dx * gradient
            length = step.norm()
            if length > max_step * self.dx:
                step *= max_step * self.dx / length
            new_x, _ = self._project_out(self.x[p] + step, self.v[p])
            self.x[p] = new_x

    @ti.func
    def _node_room(self, I) -> ti.f32:
        """The share of grid node I's B-spline support that lies in open space (1 in the bulk, 1/2 on
        a wall, 1/4 in a 2D corner), each wall and collider taken as a plane at its signed distance."""
        pos = (I - PAD) * self.dx
        room = 1.0
        for d in ti.static(range(self.dim)):
            room *= _open_share(pos[d] * self.inv_dx) * _open_share((self._size[d] - pos[d]) * self.inv_dx)
        for c in range(self.n_colliders[None]):
            sdf, _ = self._collider_sdf(c, pos)
            room *= _open_share(sdf * self.inv_dx)
        return room

    def grid_transfer(self, h: float, pad: int, shape: tuple[int, ...], claimed: bool = False) -> np.ndarray:
        """Particles to a grid of spacing `h` (node i at (i - pad) * h) with quadratic B-splines:
        volume fraction of each material (4), mass, and momentum (dim), as (5 + dim, *shape); with
        `claimed`, one more channel: the volume fraction the solver's pressure answers to, each water
        particle counted at its J and the others at rest (the learned stepper's handover level).

        The learned stepper's input, computed here because a Taichi loop is ~20x faster than torch's
        scatter for this; neural.grid.frame_features computes the same from arrays (a test compares)."""
        out = np.zeros((5 + self.dim + int(claimed), *shape), np.float32)
        if self.n:
            self._grid_transfer(out, 1.0 / h, float(pad), 1.0 / h**self.dim, int(claimed))
        return out

    @ti.kernel
    def _grid_transfer(
        self, out: ti.types.ndarray(), inv_h: ti.f32, pad: ti.f32, inv_cell: ti.f32, claimed: ti.i32
    ):
        ti.loop_config(serialize=True)  # deterministic sums, and faster than atomics on few cores
        for p in range(self.n_particles[None]):
            base, fx, w = self._stencil(self.x[p], inv_h, pad)
            s = self.slot[p]
            kind = ti.cast(self.material_table[s, _COL["kind"]], ti.i32)
            density = self.material_table[s, _COL["density"]]
            mass = density * self.p_vol
            volume = self.J[p] if constitutive.is_water(self.material_table, s) else 1.0
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                weight = 1.0
                node = base + offset
                for d in ti.static(range(self.dim)):
                    weight *= w[offset[d]][d]
                    node[d] = ti.min(ti.max(node[d], 0), out.shape[d + 1] - 1)
                if ti.static(self.dim == 2):
                    out[kind, node[0], node[1]] += weight * self.p_vol * inv_cell
                    out[4, node[0], node[1]] += weight * mass
                    for d in ti.static(range(self.dim)):
                        out[5 + d, node[0], node[1]] += weight * mass * self.v[p][d]
                    if claimed:
                        out[5 + self.dim, node[0], node[1]] += weight * volume * self.p_vol * inv_cell
                else:
                    out[kind, node[0], node[1], node[2]] += weight * self.p_vol * inv_cell
                    out[4, node[0], node[1], node[2]] += weight * mass
                    for d in ti.static(range(self.dim)):
                        out[5 + d, node[0], node[1], node[2]] += weight * mass * self.v[p][d]
                    if claimed:
                        out[5 + self.dim, node[0], node[1], node[2]] += (
                            weight * volume * self.p_vol * inv_cell
                        )

    def external_acceleration(self, points: np.ndarray, t: float) -> np.ndarray:
        """Brush and ForceField acceleration (without gravity) at points (N, dim) at time t."""
        points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, self.dim)
        out = np.zeros_like(points)
        if len(points):
            self._external_acceleration(points, out, t)
        return out

    @ti.kernel
    def _external_acceleration(self, points: ti.types.ndarray(), out: ti.types.ndarray(), t: ti.f32):
        for k in range(points.shape[0]):
            pos = ti.Vector.zero(ti.f32, self.dim)
            for d in ti.static(range(self.dim)):
                pos[d] = points[k, d]
            accel = ti.Vector.zero(ti.f32, self.dim)
            if self.force_active[None]:
                accel += self._sample_force(pos, t)
            for b in range(self.n_brushes[None]):
                accel += self._brush_accel(b, pos)
            for d in ti.static(range(self.dim)):
                out[k, d] = accel[d]

    def add_emitter(self, emitter: Emitter) -> int:
        self._check_open()
        if not 0 <= emitter.slot < len(self.slots):
            raise ValueError(f"unknown material slot {emitter.slot}")
        self.emitters.append(emitter)
        return len(self.emitters) - 1

    def _emit(self, stats: StepStats) -> None:
        """Emitters add particles between frames; a full solver stops them with a message, not an error."""
        frame_dt = self.config.frame_dt
        for emitter in self.emitters:
            room = self.capacity - self.n
            # one more than the room: a jet that would overflow is seen (and stopped) below
            x = emitter.sample(self.time - frame_dt, frame_dt, self.p_vol, limit=room + 1)
            if len(x) == 0:
                continue
            inside = np.all((x >= 0) & (x <= np.asarray(self._size, np.float32)), axis=1)
            for collider in self.colliders:
                inside &= collider.signed_distance(x) > 0
            x = x[inside]
            if len(x) > room:
                x = x[:room]
                emitter.enabled = False
                stats.messages.append(f"capacity of {self.capacity} particles reached: emitter stopped")
            stats.emitted += self.add_particles(x, emitter.velocity, emitter.slot)

    # ------------------------------------------------------------------------------------- kernels
    @ti.func
    def _stencil(self, xp, inv_h, pad):
        """Base node, offset in cells and quadratic B-spline weights of a particle on a grid of spacing
        1 / inv_h whose node i sits at (i - pad) / inv_h (the solver's grid, or the learned stepper's)."""
        X = xp * inv_h + pad
        base = ti.cast(X - 0.5, ti.i32)
        fx = X - base
        w = [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2]
        return base, fx, w

    @ti.kernel
    def _substep(self, dt: ti.f32, t: ti.f32, v_limit: ti.f32):
        self._p2g(dt)
        self._grid_update(dt, t, v_limit)
        self._g2p(dt)

    @ti.kernel
    def p2g(self, dt: ti.f32):
        self._p2g(dt)

    @ti.kernel
    def grid_update(self, dt: ti.f32, t: ti.f32, v_limit: ti.f32):
        self._grid_update(dt, t, v_limit)

    @ti.kernel
    def g2p(self, dt: ti.f32):
        self._g2p(dt)

    @ti.func
    def _p2g(self, dt):
        for I in ti.grouped(self.grid_m):
            self.grid_v[I] = ti.Vector.zero(ti.f32, self.dim)
            self.grid_m[I] = 0.0
        ti.loop_config(serialize=ti.static(self.serial_p2g))
        for p in range(self.n_particles[None]):
            base, fx, w = self._stencil(self.x[p], self.inv_dx, PAD)
            s = self.slot[p]
            mass = self.material_table[s, _COL["density"]] * self.p_vol
            tau = constitutive.kirchhoff_stress(
                self.material_table, s, self.F[p], self.J[p], self.C[p], self.dx, self.dim
            )
            affine = (-dt * self.p_vol * 4.0 * self.inv_dx * self.inv_dx) * tau + mass * self.C[p]
            momentum = mass * self.v[p]
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                dpos = (offset - fx) * self.dx
                weight = 1.0
                for d in ti.static(range(self.dim)):
                    weight *= w[offset[d]][d]
                self.grid_v[base + offset] += weight * (momentum + affine @ dpos)
                self.grid_m[base + offset] += weight * mass

    @ti.func
    def _grid_update(self, dt, t, v_limit):
        for I in ti.grouped(self.grid_m):
            m = self.grid_m[I]
            if m > 0:
                pos = (I - PAD) * self.dx
                vel = self.grid_v[I] / m + dt * self.gravity[None]
                if self.force_active[None]:
                    vel += dt * self._sample_force(pos, t)
                for b in range(self.n_brushes[None]):
                    vel += dt * self._brush_accel(b, pos)
                vel = self._walls(I, vel)
                for c in range(self.n_colliders[None]):
                    sdf, normal = self._collider_sdf(c, pos)
                    if sdf < 0:
                        vel = constitutive.boundary_velocity(
                            vel, normal, self.col_boundary[c], self.col_friction[c]
                        )
                speed = vel.norm()
                if speed > v_limit:
                    vel *= v_limit / speed
                    ti.atomic_add(self.counters[0], 1)
                self.grid_v[I] = vel

    @ti.func
    def _g2p(self, dt):
        for p in range(self.n_particles[None]):
            base, fx, w = self._stencil(self.x[p], self.inv_dx, PAD)
            new_v = ti.Vector.zero(ti.f32, self.dim)
            new_C = ti.Matrix.zero(ti.f32, self.dim, self.dim)
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                dpos = offset - fx
                weight = 1.0
                for d in ti.static(range(self.dim)):
                    weight *= w[offset[d]][d]
                g_v = self.grid_v[base + offset]
                new_v += weight * g_v
                new_C += (4.0 * self.inv_dx * weight) * g_v.outer_product(dpos)
            self._move_particle(p, new_v, new_C, dt, 0)

    @ti.kernel
    def _advect(
        self, grid_v: ti.types.ndarray(), m: ti.i32, dt: ti.f32, inv_h: ti.f32, pad: ti.f32, hold: ti.i32
    ):
        for p in range(self.n_particles[None]):
            base, fx, w = self._stencil(self.x[p], inv_h, pad)
            new_v = ti.Vector.zero(ti.f32, self.dim)
            new_C = ti.Matrix.zero(ti.f32, self.dim, self.dim)
            for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
                weight = 1.0
                node = base + offset
                for d in ti.static(range(self.dim)):
                    weight *= w[offset[d]][d]
                    node[d] = ti.min(ti.max(node[d], 0), grid_v.shape[d + 1] - 1)
                g_v = ti.Vector.zero(ti.f32, self.dim)
                for d in ti.static(range(self.dim)):
                    if ti.static(self.dim == 2):
                        g_v[d] = grid_v[m, node[0], node[1], d]
                    else:
                        g_v[d] = grid_v[m, node[0], node[1], node[2], d]
                new_v += weight * g_v
                new_C += (4.0 * inv_h * weight) * g_v.outer_product(offset - fx)
            self._move_particle(p, new_v, new_C, dt, hold)

    @ti.func
    def _move_particle(self, p, new_v, new_C, dt, hold_volume):
        """The end of g2p, shared with advection: move, keep inside, update deformation (with
        `hold_volume`, water's J is kept, at most 1, and sand's elastic volume is not compressed below
        its start, at most 1: see advect_frame)."""
        new_x = self.x[p] + dt * new_v
        if constitutive.nonfinite(new_x.sum() + new_C.sum()):
            # Keep the old position so no index ever leaves the grid; the frame raises.
            ti.atomic_add(self.counters[3], 1)
            self.v[p] = ti.Vector.zero(ti.f32, self.dim)
            self.C[p] = ti.Matrix.zero(ti.f32, self.dim, self.dim)
        else:
            new_x, new_v = self._project_out(new_x, new_v)
            self.v[p], self.C[p], self.x[p] = new_v, new_C, new_x
            F, J, clamped = constitutive.advance_deformation(
                self.material_table, self.slot[p], self.F[p], self.J[p], new_C, dt, self.dim
            )
            if hold_volume and constitutive.is_water(self.material_table, self.slot[p]):
                J = ti.min(self.J[p], 1.0)
            elif hold_volume and constitutive.is_sand(self.material_table, self.slot[p]):
                floor = ti.min(self.F[p].determinant(), 1.0)
                det = F.determinant()
                if 0.0 < det < floor:
                    F *= ti.pow(floor / det, 1.0 / self.dim)
            self.F[p], self.J[p] = F, J
            if clamped:
                ti.atomic_add(self.counters[2], 1)

    # ---------------------------------------------------------------------------- post-processors
    @ti.func
    def _walls(self, I, vel):
        for d in ti.static(range(self.dim)):
            normal = ti.Vector.zero(ti.f32, self.dim)
            if I[d] <= PAD:
                normal[d] = 1.0
            elif (I[d] - PAD) * self.dx >= self._size[d]:
                normal[d] = -1.0
            if normal[d] != 0.0:
                vel = constitutive.boundary_velocity(
                    vel,
                    normal,
                    ti.static(int(self.config.wall_boundary)),
                    ti.static(self.config.wall_friction),
                )
        return vel

    @ti.func
    def _collider_sdf(self, c, pos):
        sdf = 0.0
        normal = ti.Vector.zero(ti.f32, self.dim)
        kind = self.col_kind[c]
        if kind == int(ShapeKind.SPHERE):
            rel = pos - self.col_center[c]
            dist = rel.norm(1e-12)
            sdf = dist - self.col_half[c][0]
            normal = rel / dist
        elif kind == int(ShapeKind.PLANE):
            normal = self.col_normal[c]
            sdf = (pos - self.col_center[c]).dot(normal)
        else:
            R = self.col_rot[c]
            local = R.transpose() @ (pos - self.col_center[c])
            q = abs(local) - self.col_half[c]
            outside = ti.max(q, 0.0)
            sdf = outside.norm() + ti.min(q.max(), 0.0)
            n_local = ti.Vector.zero(ti.f32, self.dim)
            if q.max() > 0:
                n_local = outside / outside.norm(1e-12)
            else:  # inside: the nearest face's normal
                axis = 0
                for d in ti.static(range(1, self.dim)):
                    if q[d] > q[axis]:
                        axis = d
                n_local[axis] = 1.0
            for d in ti.static(range(self.dim)):
                if local[d] < 0:
                    n_local[d] = -n_local[d]
            normal = R @ n_local
        return sdf, normal

    @ti.func
    def _project_out(self, xp, vp):
        """Push a particle that ended inside a collider back to its surface, and keep it in the domain."""
        for c in range(self.n_colliders[None]):
            sdf, normal = self._collider_sdf(c, xp)
            if sdf < 0:
                ti.atomic_add(self.counters[4], 1)
                xp -= sdf * normal
                vn = vp.dot(normal)
                if vn < 0:
                    vp -= vn * normal
        # The walls' grid condition holds particles to within a fraction of a cell; a particle found
        # more than a cell outside means something violent happened, and is counted as a clamp.
        clamped = 0
        for d in ti.static(range(self.dim)):
            hi = ti.static(self._size[d])
            if xp[d] < -self.dx or xp[d] > hi + self.dx:
                clamped = 1
            xp[d] = ti.min(ti.max(xp[d], 0.0), hi)
        if clamped:
            ti.atomic_add(self.counters[1], 1)
        return xp, vp

    @ti.func
    def _brush_accel(self, b, pos):
        accel = ti.Vector.zero(ti.f32, self.dim)
        rel = self.brush_center[b] - pos
        dist = rel.norm()
        radius = self.brush_radius[b]
        if dist < radius:
            falloff = (1.0 - (dist / radius) ** 2) ** 2
            direction = self.brush_dir[b]
            if direction.norm() == 0:  # attract (negative strength repels)
                direction = rel / ti.max(dist, 1e-6)
            accel = self.brush_strength[b] * falloff * direction
        return accel

    @ti.func
    def _sample_force(self, pos, t):
        """Multilinear interpolation of the ForceField in space (cell-centred) and linear in time."""
        t0, t1 = self._force_t[0], self._force_t[1]
        accel = ti.Vector.zero(ti.f32, self.dim)
        if t >= t0 and t <= t1:
            keys = ti.static(self.config.force_keys)
            s = (t - t0) / ti.max(t1 - t0, 1e-9) * (keys - 1)
            k0 = ti.min(ti.cast(s, ti.i32), keys - 2 if keys > 1 else 0)
            a = s - k0
            h = ti.static(self._force_h)
            g = pos / h - 0.5
            cells = ti.static(self.force_cells)
            lo = ti.Vector.zero(ti.i32, self.dim)
            frac = ti.Vector.zero(ti.f32, self.dim)
            for d in ti.static(range(self.dim)):
                gd = ti.min(ti.max(g[d], 0.0), cells[d] - 1.0)
                lo[d] = ti.min(ti.cast(gd, ti.i32), ti.max(cells[d] - 2, 0))
                frac[d] = gd - lo[d]
            for corner in ti.static(ti.grouped(ti.ndrange(*((2,) * self.dim)))):
                weight = 1.0
                idx = lo
                for d in ti.static(range(self.dim)):
                    weight *= frac[d] if corner[d] == 1 else 1.0 - frac[d]
                    idx[d] = ti.min(lo[d] + corner[d], cells[d] - 1)
                key0 = ti.Vector([k0] + [idx[d] for d in ti.static(range(self.dim))])
                value = self.force_values[key0]
                if ti.static(keys > 1):
                    key0[0] += 1
                    value = (1.0 - a) * value + a * self.force_values[key0]
                accel += weight * value
        return accel
