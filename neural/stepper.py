"""Steppers behind one `advance()`: numerical (the solver), neural (one network call per frame) and
hybrid (neural, checked by the guard, falling back to the solver for the frame when the guard fails).

A neural frame reads like NeuralMPM's pipeline: particles to grid features, the U-Net predicts the grid
velocities of M sub-intervals, particles are advected through them by the solver's own g2p machinery.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neural.device import network_autocast, network_timing
from neural.grid import N_MATERIALS, PAD, ModelGrid, SolidMasks, assemble_features, velocity_of
from neural.guard import Audit, Guard, GuardScores, disagreement
from neural.model import GridStepper
from neural.projection import PHI_REST, REST_DECAY, compression_level, project, projects, rest_fraction
from sim import state as state_io
from sim.solver import MPMSolver, NonFiniteError, StepStats

# A learned frame ends by spreading crowded particles at their own scale (MPMSolver.spread_crowding): a
# step of at most a quarter cell, down the excess volume fraction's gradient.
SPREAD_STRENGTH, SPREAD_STEP, SPREAD_THRESHOLD = 0.15, 0.25, 1.0


@dataclass
class StepReport:
    """What one frame did: the path taken, its latency split and the guard's verdict."""

    path: str  # "numerical", "neural", "fallback" or "audit" (a solver frame checking a learned one)
    latency_ms: float
    split_ms: dict[str, float] = field(default_factory=dict)
    guard: GuardScores | None = None
    weights: str | None = None
    stats: StepStats | None = None
    reason: str = ""
    handover: GuardScores | None = None  # a fallback's solver frame, as the guard scored it
    partial: bool = False  # a slice of a solver frame: the frame has not ended (HybridStepper.slice_ms)


class NumericalStepper:
    name = "numerical"
    weights = None

    def advance(self, solver: MPMSolver) -> StepReport:
        start = time.perf_counter()
        stats = solver.step_frame()
        ms = (time.perf_counter() - start) * 1e3
        return StepReport("numerical", ms, {"solver": ms}, stats=stats)

    def reset(self) -> None:
        pass


class NeuralStepper:
    """Learned frames only (no guard): raises NonFiniteError if the model produces garbage.

    `autocast` runs the network under bfloat16 autocast on the CPU (None: as the weights' spec says, which
    is on for the 3D families' weights and off for the 2D ones)."""

    name = "neural"

    def __init__(
        self,
        model: GridStepper,
        weights_name: str = "",
        autocast: bool | None = None,
        projection: bool = True,
    ):
        self.model = model
        self.spec = model.spec
        self.weights = weights_name
        self.autocast = bool(self.spec.autocast if autocast is None else autocast)
        # Project the predicted velocities onto volume-preserving fields (neural.projection).
        self.projection = projection and projects(self.spec.materials)
        self._masks = SolidMasks()
        self._previous_velocity = None
        # The projection's rest levels, water's and sand's: None reads them off the next state.
        self._rest: tuple[float, float] | None = None

    def reset(self) -> None:
        """Forget the velocity history (after a reset, a load or a numerical frame); the next frame's
        projection starts from the compression that state holds (neural.projection)."""
        self._previous_velocity = None
        self._rest = None

    @property
    def history(self):
        """The velocity history and the projection's handover level (to rewind the stepper with a
        snapshot of the particles: a rewound learned frame repeats the hybrid's exactly)."""
        return self._previous_velocity, self._rest

    @history.setter
    def history(self, value) -> None:
        self._previous_velocity, self._rest = value

    def grid_for(self, solver: MPMSolver) -> ModelGrid:
        return ModelGrid(solver.dim, self.spec.h, solver.config.size)

    def features(self, solver: MPMSolver, grid: ModelGrid) -> torch.Tensor:
        transfer = torch.from_numpy(solver.grid_transfer(grid.h, PAD, grid.shape))
        solid = self._masks.update(grid, solver.colliders).solid
        if solver.force_active[None] or solver.n_brushes[None]:
            nodes = grid.node_positions().reshape(-1, grid.dim)
            accel = solver.external_acceleration(nodes, solver.time + solver.config.frame_dt / 2)
            accel = torch.from_numpy(np.ascontiguousarray(accel.T.reshape(grid.dim, *grid.shape)))
        else:
            accel = torch.zeros(grid.dim, *grid.shape)
        features = assemble_features(transfer, solid, accel, self._previous_velocity)
        self._previous_velocity = velocity_of(features)
        return features

    def claimed_fraction(self, solver: MPMSolver, grid: ModelGrid) -> torch.Tensor:
        """Each node's volume fraction as the solver's pressure counts it (*grid): water particles at
        their J, the others at rest (neural.projection.compression_level)."""
        return torch.from_numpy(solver.grid_transfer(grid.h, PAD, grid.shape, claimed=True)[-1])

    @torch.no_grad()
    def predict(self, solver: MPMSolver) -> tuple[np.ndarray, dict[str, float], ModelGrid]:
        """Grid velocities (M, *grid, dim) for the coming frame, and the time each stage took."""
        t0 = time.perf_counter()
        grid = self.grid_for(solver)
        features = self.features(solver, grid)
        t1 = time.perf_counter()
        gravity = solver.gravity.to_numpy().astype(np.float32)
        device = next(self.model.parameters()).device  # the CPU, or the GPU of --device (neural.device)
        features = features.to(device)
        with network_autocast(self.autocast, device):
            velocities = self.model(features[None], gravity=gravity)[0]  # (M, dim, *grid)
        t2 = time.perf_counter()
        split = {"p2g": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3}
        network_timing((id(self.model), tuple(features.shape)), split["model"])  # the window's threads
        if self.projection:
            walls, capacity = self._masks.walls_and_capacity_on(device)
            fractions = features[:N_MATERIALS]
            if self._rest is None:
                claimed = self.claimed_fraction(solver, grid).to(device)
                self._rest = compression_level(claimed, fractions, capacity)
            else:
                self._rest = tuple(max(PHI_REST, level - REST_DECAY) for level in self._rest)
            rest = rest_fraction(self._rest, fractions)
            velocities, self.last_projection = project(
                velocities.float(), fractions, walls, capacity, grid.h, self.spec.frame_dt, rest
            )
            split["projection"] = (time.perf_counter() - t2) * 1e3
        order = (0, *range(2, 2 + grid.dim), 1)
        out = velocities.float().permute(order).contiguous().cpu().numpy()
        return out, split, grid

    def advance(self, solver: MPMSolver) -> StepReport:
        start = time.perf_counter()
        velocities, split, _ = self.predict(solver)
        if not np.isfinite(velocities).all():
            raise NonFiniteError(solver.frame + 1, int((~np.isfinite(velocities)).sum()))
        t = time.perf_counter()
        # The particles keep the velocity at the frame's end (extrapolated from the last two averages),
        # which is what the network was trained to read at the next frame's start.
        end = 1.5 * velocities[-1] - 0.5 * velocities[-2] if len(velocities) > 1 else velocities[-1]
        stats = solver.advect_frame(
            velocities,
            self.spec.h,
            PAD,
            end_velocity=end,
            spread=(SPREAD_STRENGTH, SPREAD_STEP, SPREAD_THRESHOLD),
        )
        split["advect"] = (time.perf_counter() - t) * 1e3
        return StepReport(
            "neural", (time.perf_counter() - start) * 1e3, split, weights=self.weights, stats=stats
        )


class HybridStepper:
    """Learned frames checked by the guard; a failed frame is rerun by the solver from its start.

    Hysteresis backs off: a fallback is followed by `min_hysteresis` more solver frames, and a learned
    frame that fails right after a solver frame doubles those that follow the next fallback (1, 2, 4, up to
    `max_hysteresis`); `calm_frames` accepted learned frames in a row reset it. The one solver frame after
    each fallback is measured: on dam_break a learned frame taken over from a single solver frame is where
    the rollouts that need the solver began (four learned frames from there out-compressed the solver's
    by 0.31), which no check of that frame can see; with the extra frame the guard's recall there rose
    from 2 of 4 needed frames to 5 of 6, the learned share went from 0.925 to 0.917 and the mass RMSE
    against the solver from 0.090 to 0.084. The first solver frame after a fallback is scored by the guard
    too (`handover` on its report): a handover that the solver answers with a jet or a pressure spike
    shows there.

    With `slice_ms` set (the window), a solver frame (fallback, audit, hysteresis) runs in slices of about
    that much work, one per `advance()` call, which returns `partial` reports until the frame ends: the
    window keeps drawing the solver's state between slices instead of freezing for the whole frame. The
    physics is that of an unsliced frame; the cost is that simulated time runs slower than real time while
    the solver works."""

    name = "hybrid"

    def __init__(
        self,
        neural: NeuralStepper,
        guard: Guard,
        max_hysteresis: int = 8,
        calm_frames: int = 30,
        min_hysteresis: int = 1,
        audit: Audit | None = None,
    ):
        self.neural, self.guard = neural, guard
        self.audit = audit if audit is not None else Audit()
        self.max_hysteresis, self.calm_frames = max_hysteresis, calm_frames
        self.min_hysteresis = min_hysteresis
        self.numerical = NumericalStepper()
        self.weights = neural.weights
        self._numerical_left = 0
        self._hysteresis = min_hysteresis
        self._calm = 0
        self._after_solver = False
        self.slice_ms: float | None = None  # the window's budget per slice of a solver frame
        self.slice_progress: tuple[int, int] | None = None  # (substeps done, of) while a frame is sliced
        self._job: Generator[None, None, StepReport] | None = None  # the frame in progress
        self.frames = 0
        self.fallbacks = 0
        self.refails = 0  # learned frames that failed right after a solver frame
        self.handover_failures = 0  # solver frames after a fallback that the guard would have rejected

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.frames if self.frames else 0.0

    def reset(self) -> None:
        self.neural.reset()
        self.guard.reset()
        self.audit.reset()
        self._numerical_left = self._calm = 0
        self._hysteresis = self.min_hysteresis
        self._after_solver = False
        self._job = self.slice_progress = None  # a sliced frame in progress is dropped with the state

    # The fallback policy's bookkeeping, shared with neural.scene_eval.guard_quality, which follows the
    # hybrid's own decisions along its trajectory.
    def take_hysteresis_frame(self) -> bool:
        """Whether this frame goes to the solver as hysteresis after a fallback (counted off if so)."""
        if self._numerical_left > 0:
            self._numerical_left -= 1
            return True
        return False

    def learned_frame_kept(self) -> None:
        """A learned frame passed: enough of them in a row reset the backoff."""
        self._calm += 1
        if self._calm >= self.calm_frames:
            self._hysteresis = self.min_hysteresis
        self._after_solver = False

    def falling_back(self) -> None:
        """A learned frame failed the guard: count it and set the solver frames that follow its own."""
        self.fallbacks += 1
        if self._after_solver:
            self.refails += 1
            self._hysteresis = min(max(1, 2 * self._hysteresis), self.max_hysteresis)
        self._numerical_left = self._hysteresis
        self._calm = 0

    def after_solver_frame(self, solver: MPMSolver) -> None:
        """The guard learns the solver's state, and the next learned frame starts without history."""
        self.guard.observe(solver)
        self.neural.reset()
        self._after_solver = True

    def _solver_frame(self, solver: MPMSolver) -> Generator[None, None, StepReport]:
        """A solver frame, scored by the guard (it may not be rejected: the solver is the truth).

        With `slice_ms` set it yields whenever that much substep work is done, so the caller can draw
        and handle input between slices; the substeps and their dt are those of an unsliced frame, so the
        result is the same."""
        before = self.guard.measure_before(solver)
        dt, substeps = solver.begin_frame()
        spent, mark = 0.0, time.perf_counter()
        for i in range(substeps):
            solver.substep(dt)
            done = i + 1
            if self.slice_ms and done < substeps and (time.perf_counter() - mark) * 1e3 >= self.slice_ms:
                spent += time.perf_counter() - mark
                self.slice_progress = (done, substeps)
                yield
                mark = time.perf_counter()
        stats = solver.finish_frame(substeps)
        self.slice_progress = None
        ms = (spent + time.perf_counter() - mark) * 1e3
        report = StepReport("numerical", ms, {"solver": ms}, stats=stats)
        report.guard = self.guard.check(solver, before, report.stats)
        self.after_solver_frame(solver)
        return report

    def _audited_frame(self, solver: MPMSolver) -> Generator[None, None, StepReport]:
        """A learned frame and the solver's from the same start; the solver's is kept, and their
        disagreement decides whether learned frames are trusted (see Audit)."""
        start = time.perf_counter()
        snapshot = state_io.snapshot(solver)
        try:
            self.neural.advance(solver)
            learned = solver.particles()
        except NonFiniteError:
            learned = None
        state_io.restore(solver, snapshot)
        learned_ms = (time.perf_counter() - start) * 1e3
        report = yield from self._solver_frame(solver)
        compared = time.perf_counter()
        state, h = solver.particles(), self.neural.spec.h
        change = disagreement(solver, snapshot.particles, state, h)
        if learned is None or not np.isfinite(learned["x"]).all():
            error = float("inf")
        else:
            error = disagreement(solver, learned, state, h)
        passed = self.audit.record(error, change)
        report.path, report.weights = "audit", self.weights
        verdict = "within" if passed else "over"
        report.reason = (
            f"audit: learned frame off by {error:.3g}, {verdict} {self.audit.tolerance(change):.3g}"
        )
        report.latency_ms += learned_ms + (time.perf_counter() - compared) * 1e3
        return report

    def advance(self, solver: MPMSolver) -> StepReport:
        """The next frame, or with `slice_ms` set, the next slice of a solver frame (`partial`)."""
        if self._job is None:
            self.frames += 1
            self._job = self._frame(solver)
        started = time.perf_counter()
        try:
            next(self._job)
        except StopIteration as finished:
            self._job = None
            return finished.value
        except BaseException:
            self._job = self.slice_progress = None
            raise
        done, substeps = self.slice_progress
        return StepReport(
            "solver",
            (time.perf_counter() - started) * 1e3,
            weights=self.weights,
            reason=f"solver frame in slices: {done}/{substeps} substeps",
            partial=True,
        )

    def warm_up(self, solver: MPMSolver) -> None:
        """Run an audited frame (a learned frame, a solver frame, the guard and the audit's comparison)
        so every kernel of the hybrid's paths is compiled; the caller restores the state and resets."""
        job = self._audited_frame(solver)
        try:
            while True:
                next(job)
        except StopIteration:
            pass

    def finish(self, solver: MPMSolver) -> StepReport | None:
        """Run the rest of a sliced solver frame now (before a save, a mode or quality change)."""
        if self._job is None:
            return None
        budget, self.slice_ms = self.slice_ms, None
        try:
            return self.advance(solver)
        finally:
            self.slice_ms = budget

    def _frame(self, solver: MPMSolver) -> Generator[None, None, StepReport]:
        if self.audit.tick(solver):
            return (yield from self._audited_frame(solver))
        if not self.audit.trusted:
            report = yield from self._solver_frame(solver)
            report.path, report.weights = "numerical", self.weights
            report.reason = f"the last audit found the learned frames off by {self.audit.last_error:.3g}"
            return report
        if self.take_hysteresis_frame():
            report = yield from self._solver_frame(solver)
            report.path, report.weights, report.reason = (
                "numerical",
                self.weights,
                "hysteresis after a fallback",
            )
            return report
        start = time.perf_counter()
        snapshot = state_io.snapshot(solver)
        before = self.guard.measure_before(solver, snapshot.particles)
        scores = None
        try:
            report = self.neural.advance(solver)
            scores = self.guard.check(solver, before, report.stats)
        except NonFiniteError as e:
            scores = GuardScores(ok=False, reasons=[f"non-finite: {e}"])
        if scores.ok:
            self.learned_frame_kept()
            report.guard = scores
            report.latency_ms = (time.perf_counter() - start) * 1e3
            return report
        # Fallback: restore the frame's start and let the solver run it.
        self.falling_back()
        state_io.restore(solver, snapshot)
        wasted = (time.perf_counter() - start) * 1e3
        fallback = yield from self._solver_frame(solver)
        if not fallback.guard.ok:
            self.handover_failures += 1
        return StepReport(
            "fallback",
            wasted + fallback.latency_ms,
            {**fallback.split_ms, "wasted": wasted},
            guard=scores,
            weights=self.weights,
            stats=fallback.stats,
            reason="; ".join(scores.reasons),
            handover=fallback.guard,
        )


def find_weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "models"
