"""Work budgets: what a scene will cost in memory and per frame, estimated from the parsed scene before
anything is allocated, so that an impossible scene is refused with the estimate instead of a traceback or
a frozen window.

The particle count comes from the bodies' volumes (obstacles ignored: an upper bound), the memory from the
solver's field layout and the sampling's temporaries, the substeps from the same CFL rule the solver
uses, and the frame time from a particle-substep rate measured on the CPU backend (a lower bound on a
GPU). A scene over the memory limit, or over REFUSE_FRAME_SECONDS a frame, is refused; one over
WARN_FRAME_SECONDS runs with a warning that says how slow it will be.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from sim.materials import resolve
from sim.scene import Scene, SceneError
from sim.solver import PAD, SolverConfig, particle_bytes, stable_dt

MAX_SPEED = 100.0  # m/s: an initial or poured speed beyond this has no physical sense in this app
MEMORY_SHARE = 0.5  # of the machine's physical memory that one scene may take
WARN_FRAME_SECONDS = 1.0
REFUSE_FRAME_SECONDS = 60.0
# Particle substeps per second on the CPU backend of a 2-core machine, grid work included (measured:
# dam_break 8k particles x 241 substeps in 212 ms, 9.3e6; dam_break_3d 22k x 76 in 271 ms, 6.1e6).
PARTICLE_SUBSTEP_RATE = {2: 1.0e7, 3: 6.0e6}
SAMPLING_BYTES = 3 * 8  # per sampled coordinate: the float64 lattice, its jitter and the kept copy


@dataclass
class Estimate:
    particles: int
    capacity: int
    memory_bytes: float
    substeps: int
    frame_seconds: float

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / 2**30


def machine_memory() -> float:
    """Physical memory in bytes (16 GiB where the platform does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16.0 * 2**30


def body_particles(scene: Scene, config: SolverConfig) -> int:
    total = 0.0
    for body in scene.bodies:
        if body.shape == "box":
            volume = float(np.prod(body.hi - body.lo))
        else:
            volume = math.pi * body.radius**2 if scene.dim == 2 else 4 / 3 * math.pi * body.radius**3
        total += volume / config.particle_volume
    return int(total)


def estimate(scene: Scene, config: SolverConfig, capacity: int) -> Estimate:
    dim = scene.dim
    particles = body_particles(scene, config)
    per_particle = particle_bytes(dim)
    nodes = math.prod(c + 2 * PAD + 1 for c in config.cells)
    memory = (
        2 * capacity * per_particle  # the fields and their host copies
        + particles * dim * SAMPLING_BYTES
        + nodes * 4 * (dim + 1)
    )
    water_c = scene.sound_speed or config.water_sound_speed
    materials = [resolve(b.material, b.params, water_c) for b in scene.bodies]
    materials += [resolve(e.material, e.params, water_c) for e in scene.emitters]
    dt = scene.dt or stable_dt(config, materials)
    substeps = max(1, round(scene.frame_dt / dt))
    return Estimate(particles, capacity, memory, substeps, frame_seconds(dim, particles, substeps))


def check_speeds(scene: Scene) -> None:
    """Refuse initial and emitter speeds beyond MAX_SPEED, naming the key."""
    items = [(f"body[{i}]", b.velocity) for i, b in enumerate(scene.bodies)]
    items += [(f"emitter[{i}]", e.velocity) for i, e in enumerate(scene.emitters)]
    for where, velocity in items:
        speed = float(np.linalg.norm(velocity))
        if speed > MAX_SPEED:
            raise SceneError(
                f"{scene.source}: {where}.velocity: a speed of {speed:.4g} m/s has no physical sense here "
                f"(at most {MAX_SPEED:g} m/s)"
            )


def check_budget(scene: Scene, config: SolverConfig, capacity: int) -> str | None:
    """Raise SceneError when the scene cannot run here; return a warning when it will run slowly."""
    check_speeds(scene)
    cost = estimate(scene, config, capacity)
    limit = MEMORY_SHARE * machine_memory()
    if cost.memory_bytes > limit:
        raise SceneError(
            f"{scene.source}: scene: needs about {cost.memory_gib:.3g} GiB ({cost.particles:,} particles, "
            f"grid {scene.grid}), more than the limit of {limit / 2**30:.3g} GiB (half this machine's memory)"
        )
    if cost.frame_seconds > REFUSE_FRAME_SECONDS:
        raise SceneError(
            f"{scene.source}: scene: a frame would take about {cost.frame_seconds:.3g} s ({cost.substeps} "
            f"substeps x {cost.particles:,} particles), more than the limit of {REFUSE_FRAME_SECONDS:g} s"
        )
    if cost.frame_seconds > WARN_FRAME_SECONDS:
        return (
            f"{scene.source}: this scene runs slowly: about {cost.frame_seconds:.2g} s a frame "
            f"({cost.substeps} substeps x {cost.particles:,} particles)"
        )
    return None


def frame_seconds(dim: int, particles: int, substeps: int) -> float:
    """The estimated time of one solver frame."""
    return substeps * max(particles, 1) / PARTICLE_SUBSTEP_RATE[dim]
