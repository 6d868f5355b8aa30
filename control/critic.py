"""The learned stepper as a critic of sketch-control plans: "the diffusion model proposes, the learned
stepper checks".

The controller draws K candidate force fields in one batched sampling call; the critic rolls each out over
the plan's window with the learned stepper's network, all candidates in one network call per frame (torch,
on the network's own grid, from the current particles), and scores each end state with the eval's own
score (control.score). The plan that wins is the one installed. The solver never runs here: a rollout of
K candidates costs K network evaluations per frame, not K solver frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

from control.condition import centroid
from control.forcefield import cap
from control.score import Scorer, implied_target
from control.sketch import Sketch
from neural.device import network_autocast, network_timing
from neural.grid import (
    N_MATERIALS,
    ModelGrid,
    SolidMasks,
    assemble_features,
    g2p_batch,
    p2g_batch,
    velocity_of,
)
from neural.model import GridStepper
from neural.projection import project, projects
from sim.forcefield import upsample

# The critic adds this many times the spray share (control.score.spray_share) to a candidate's score:
# of outcomes the eval rates alike, the one that keeps the water together wins.
SPRAY_WEIGHT = 0.0
# Scales of the shooting correction tried on the critic's choice (Critic.plan); () for none. On
# water2d's 10 default cases (probe, solver plant) they took ours from 1.126 to 1.082 at +0.4 s a plan.
CORRECTIONS: tuple[float, ...] = (0.5, 1.0, 2.0)
# Project the rollouts as the hybrid does: closer to the solver the plans run on (same probe: 1.126 to
# 1.109, spray 0.060 to 0.044, +0.7 s a plan).
PROJECTS = True


class Critic:
    """Rolls candidate ForceFields out with a learned stepper (`model`) and scores their outcomes."""

    def __init__(self, model: GridStepper, name: str = "", spray_weight: float = SPRAY_WEIGHT):
        self.model, self.name = model.eval(), name
        self.spec = model.spec
        self.spray_weight = spray_weight
        # Project the rollouts' velocities as the hybrid does (neural.projection)
        self.projects = PROJECTS and projects(self.spec.materials)
        self._masks = SolidMasks()

    @classmethod
    def for_scene(cls, scene, model: str | None = None) -> tuple[Critic | None, str]:
        """(critic, message): the learned stepper's weights that fit the scene, chosen and loaded as the
        hybrid's are (neural.catalog.make_stepper)."""
        from neural.catalog import make_stepper
        from neural.stepper import NeuralStepper

        stepper, message = make_stepper("neural", scene, model)
        if not isinstance(stepper, NeuralStepper):
            reason = message.removeprefix("neural unavailable: ").removesuffix("; running numerically")
            return None, f"no critic: {reason}"
        return cls(stepper.model, stepper.weights), f"critic {stepper.weights}"

    # -------------------------------------------------------------------------------- rollouts
    def capture(self, solver) -> CriticState:
        """What a rollout needs from the solver, as arrays and tensors: taken on the main thread, so the
        rollout can run on the planning thread (Taichi is not thread-safe)."""
        state = solver.particles()
        grid = ModelGrid(solver.dim, self.spec.h, solver.config.size)
        mass = solver.masses(state["slot"]).astype(np.float32)
        density = np.array([m.density for m in solver.slots], np.float32)[state["slot"]]
        masks = self._masks.update(grid, solver.colliders)
        return CriticState(
            grid=grid,
            x=state["x"].astype(np.float32),
            v=state["v"].astype(np.float32),
            mass=mass,
            volume=mass / density,
            material=state["material"],
            solid=masks.solid,
            walls=masks.walls.float() if self.projects else None,
            capacity=masks.capacity.float() if self.projects else None,
            force_cells=tuple(solver.force_cells),
            force=_force_sampler(grid, tuple(solver.force_cells), solver._force_h),
            gravity=solver.gravity.to_numpy().astype(np.float32),
        )

    @torch.no_grad()
    def rollout(
        self, state: CriticState, fields: list[np.ndarray], frames: int, horizon: int | None = None
    ) -> np.ndarray:
        """End positions (K, N, dim) after `frames` learned frames (or the first `horizon` of them) from
        `state` under each field (keys, *force_cells, dim) of a `frames`-frame window; a field of zeros is
        the no-force rollout. The network's velocities are projected as the hybrid projects
        them (PROJECTS), all K candidates' in one call."""
        grid, k = state.grid, len(fields)
        mass, volume = torch.from_numpy(state.mass), torch.from_numpy(state.volume)
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(state.material).long(), N_MATERIALS).float()
        solid = state.solid
        x = torch.from_numpy(state.x).expand(k, -1, -1).contiguous()
        v = torch.from_numpy(state.v).expand(k, -1, -1).contiguous()
        fields = [f if f.shape[1:-1] == state.force_cells else upsample(f, state.force_cells) for f in fields]
        accel_keys = state.force(np.stack(fields))  # (K, keys, dim, *shape)
        keys = accel_keys.shape[1]
        static = torch.cat([one_hot * (volume / grid.h**grid.dim)[:, None], mass[:, None]], 1)  # (N, 5)
        previous = None
        frame_dt, upper = self.spec.frame_dt, torch.tensor(grid.size, dtype=torch.float32)
        for f in range(min(frames, horizon or frames)):
            s = (f + 0.5) / frames * (keys - 1)  # the frame's middle, as the solver samples the field
            k0 = min(int(s), max(keys - 2, 0))
            a = s - k0
            accel = accel_keys[:, k0] * (1 - a) + accel_keys[:, min(k0 + 1, keys - 1)] * a
            per_particle = torch.cat([static.expand(k, -1, -1), mass[None, :, None] * v], 2)
            transfer = p2g_batch(x, per_particle, grid)  # (K, 5 + dim, *shape)
            features = torch.stack(
                [
                    assemble_features(transfer[c], solid, accel[c], None if previous is None else previous[c])
                    for c in range(k)
                ]
            )
            previous = torch.stack([velocity_of(one) for one in features])
            device = next(self.model.parameters()).device
            began = time.perf_counter()
            with network_autocast(self.spec.autocast, device):
                velocities = (
                    self.model(features.to(device), gravity=state.gravity).float().cpu()
                )  # (K, M, dim, *)
            network_timing((id(self.model), tuple(features.shape)), (time.perf_counter() - began) * 1e3)
            steps = velocities.shape[1]
            if state.walls is not None:
                fractions = features[:, :N_MATERIALS].repeat_interleave(steps, 0)
                flat, _ = project(
                    velocities.flatten(0, 1),
                    fractions,
                    state.walls,
                    state.capacity,
                    grid.h,
                    frame_dt,
                )
                velocities = flat.reshape(velocities.shape)
            for m in range(steps):
                x = x + frame_dt / steps * g2p_batch(x, velocities[:, m], grid)
                x = torch.minimum(x.clamp_min(0.0), upper)
            end = 1.5 * velocities[:, -1] - 0.5 * velocities[:, -2] if steps > 1 else velocities[:, -1]
            v = g2p_batch(x, end, grid)
        return x.numpy().astype(np.float64)

    def choose(
        self,
        state: CriticState,
        fields: list[np.ndarray],
        frames: int,
        sketch: Sketch,
        size,
        horizon: int | None = None,
    ) -> tuple[int | None, list[float], np.ndarray, Scorer]:
        """The index of the field whose learned rollout (over `horizon` frames of the window, default all)
        the eval's score prefers, or None when no force at all does better (the flow already goes where
        the sketch asks: pushing would overshoot); the scores, the fields' then no force's; the end
        positions (no force's first) and the scorer. The no-force rollout also sets the score's
        mass-error scale, as in the eval."""
        ends = self.rollout(state, [np.zeros_like(fields[0]), *fields], frames, horizon)
        mass = state.mass.astype(np.float64)
        target = implied_target(state.x.astype(np.float64), mass, sketch, size, float(state.volume.sum()))
        scorer = Scorer(sketch, target, mass, size)
        scorer.no_force_rmse = scorer(ends[0]).mass_rmse
        scores = self._rate(scorer, [*ends[1:], ends[0]])
        best = int(np.argmin(scores))
        return (best if best < len(fields) else None), scores, ends, scorer

    def _rate(self, scorer: Scorer, ends) -> list[float]:
        return [o.score + self.spray_weight * o.spray for o in map(scorer, ends)]

    def plan(
        self,
        state: CriticState,
        fields: list[np.ndarray],
        frames: int,
        sketch: Sketch,
        size,
        horizon: int | None = None,
    ) -> np.ndarray:
        """The best field for the sketch: the critic's choice among `fields` (or no force), then, with
        CORRECTIONS, that choice plus a uniform push that would carry its predicted end centroid onto
        the target's (a shooting step: a uniform acceleration a moves a free body's centroid a t^2 / 2),
        at a few scales, kept only where the critic rates it better."""
        best, scores, ends, scorer = self.choose(state, fields, frames, sketch, size, horizon)
        chosen = fields[best] if best is not None else np.zeros_like(fields[0])
        if not CORRECTIONS:
            return chosen
        mass = state.mass.astype(np.float64)
        end = ends[0 if best is None else best + 1]
        t = min(frames, horizon or frames) * self.spec.frame_dt
        push = 2.0 * (centroid(scorer.target, mass) - centroid(end, mass)) / t**2
        tried = [cap(chosen + scale * push) for scale in CORRECTIONS]
        corrected = self.rollout(state, tried, frames, horizon)
        more = self._rate(scorer, corrected)
        if min(more) < min(scores):
            return tried[int(np.argmin(more))]
        return chosen


@dataclass
class CriticState:
    grid: ModelGrid
    x: np.ndarray
    v: np.ndarray
    mass: np.ndarray
    volume: np.ndarray
    material: np.ndarray
    solid: torch.Tensor
    force_cells: tuple[int, ...]
    force: Callable[[np.ndarray], torch.Tensor]
    gravity: np.ndarray
    walls: torch.Tensor | None = None  # the projection's wall mask and capacity (Critic.projects)
    capacity: torch.Tensor | None = None


def _force_sampler(grid: ModelGrid, cells: tuple[int, ...], h: float) -> Callable[[np.ndarray], torch.Tensor]:
    """A function of fields (K, keys, *cells, dim) giving them at the network's grid nodes (K, keys,
    dim, *shape), interpolated as the solver samples a ForceField (cell-centred, multilinear, clamped
    at the edges)."""
    nodes = grid.node_positions().reshape(-1, grid.dim)
    g = np.clip(nodes / h - 0.5, 0.0, np.array(cells) - 1.0)
    lo = np.minimum(g.astype(int), np.maximum(np.array(cells) - 2, 0))
    frac = g - lo
    strides = np.array([int(np.prod(cells[d + 1 :])) for d in range(grid.dim)])
    index, weight = [], []
    for corner in product((0, 1), repeat=grid.dim):
        corner = np.array(corner)
        index.append((np.minimum(lo + corner, np.array(cells) - 1) * strides).sum(1))
        weight.append(np.prod(np.where(corner == 1, frac, 1.0 - frac), axis=1))
    index, weight = torch.from_numpy(np.stack(index, 1)), torch.from_numpy(np.stack(weight, 1)).float()

    def at_nodes(fields: np.ndarray) -> torch.Tensor:
        values = torch.from_numpy(np.asarray(fields, np.float32))
        k, keys = values.shape[:2]
        flat = values.reshape(k, keys, -1, grid.dim)
        out = (flat[:, :, index] * weight[None, None, :, :, None]).sum(3)  # (K, keys, nodes, dim)
        return out.permute(0, 1, 3, 2).reshape(k, keys, grid.dim, *grid.shape)

    return at_nodes
