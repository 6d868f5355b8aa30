"""Turning a validated Scene into a seeded solver."""

from __future__ import annotations

import numpy as np

from sim.budget import body_particles, check_budget
from sim.emitters import Emitter
from sim.materials import resolve
from sim.scene import MAX_PARTICLES, Body, Scene, SceneError
from sim.solver import MPMSolver, SolverConfig

JITTER = 0.25  # of the particle spacing: breaks lattice artefacts, keeps sampling even


def solver_config(scene: Scene, capacity: int) -> SolverConfig:
    return SolverConfig(
        dim=scene.dim,
        size=scene.size,
        grid=scene.grid,
        capacity=capacity,
        particles_per_cell=scene.particles_per_cell,
        gravity=scene.gravity,
        frame_dt=scene.frame_dt,
        dt=scene.dt,
        cfl=scene.cfl,
        max_speed=scene.max_speed,
        wall_boundary=scene.boundary,
        wall_friction=scene.friction,
    )


def sample_body(body: Body, scene: Scene, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Jittered lattice points filling a body, minus those inside obstacles."""
    lo, hi = body.bounds
    axes = [np.arange(a + spacing / 2, b, spacing) for a, b in zip(lo, hi)]
    if any(len(a) == 0 for a in axes):
        return np.zeros((0, scene.dim), np.float32)
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, scene.dim)
    points += rng.uniform(-JITTER, JITTER, points.shape) * spacing
    points = np.clip(points, lo, hi)
    keep = body.contains(points)
    for obstacle in scene.obstacles:
        keep &= obstacle.signed_distance(points) > 0
    return points[keep].astype(np.float32)


def default_capacity(scene: Scene, particles: int) -> int:
    """Room for the seeded particles twice over, or 65536 more where emitters pour."""
    return scene.capacity or max(2 * particles, particles + 65536 if scene.emitters else particles, 1024)


def build_solver(scene: Scene, capacity: int | None = None) -> MPMSolver:
    """A solver seeded with the scene's bodies, obstacles and emitters. Raises SceneError on bad content
    or on a scene this machine cannot run (sim.budget, checked before anything is allocated); a scene
    that will run slowly carries the warning in `solver.budget_warning`."""
    probe = solver_config(scene, 1)
    estimated = body_particles(scene, probe)
    warning = check_budget(scene, probe, capacity or default_capacity(scene, estimated))
    rng = np.random.default_rng(scene.seed)
    samples = []
    for i, body in enumerate(scene.bodies):
        points = sample_body(body, scene, probe.particle_spacing, rng)
        if len(points) == 0:
            raise SceneError(
                f"{scene.source}: body[{i}]: holds no particles (smaller than the particle spacing "
                f"{probe.particle_spacing:.4g} m, or covered by obstacles)"
            )
        samples.append(points)
    total = sum(len(p) for p in samples)
    capacity = capacity or default_capacity(scene, total)
    if total > capacity or total > MAX_PARTICLES:
        raise SceneError(
            f"{scene.source}: body: the bodies need {total} particles, more than the capacity of "
            f"{min(capacity, MAX_PARTICLES)}"
        )
    solver = MPMSolver.acquire(solver_config(scene, capacity))
    solver.budget_warning = warning
    try:
        water_c = scene.sound_speed or solver.config.water_sound_speed
        for obstacle in scene.obstacles:
            solver.add_collider(obstacle)
        for body, points in zip(scene.bodies, samples):
            slot = solver.add_material(resolve(body.material, body.params, water_c))
            solver.add_particles(points, body.velocity, slot)
        for k, spec in enumerate(scene.emitters):
            slot = solver.add_material(resolve(spec.material, spec.params, water_c))
            solver.add_emitter(
                Emitter(
                    slot,
                    spec.center,
                    spec.radius,
                    spec.velocity,
                    spec.rate,
                    spec.start,
                    spec.stop,
                    rng=np.random.default_rng([scene.seed, k]),
                )
            )
    except BaseException:
        solver.close()
        raise
    return solver
