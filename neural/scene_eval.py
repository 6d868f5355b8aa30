"""The learned stepper judged where users look: the app's own scenes, at their own resolution, in the mode
the app runs (hybrid, fallbacks included), against the solver on the same scene.

Per scene: the solver's rollout is the reference; the hybrid and fixed low-resolution solver runs (coarser
grids of the same scene, all timed in the same run) are compared with it frame by frame on
- mass RMSE on a metric grid as coarse as the coarsest comparator's grid (finer would read its sampling
  noise as error), normalised by the reference's largest cell mass;
- physical observables: surge front (99.5% quantile of x), residual column height at the left wall, peak
  particle speed, water J and the volume fraction on the model grid (percentiles).
On dam_break the fronts are also compared with Koshizuka & Oka (1996). The guard is scored along the
hybrid's own trajectory against a solver frame run from the same start (see guard_quality).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neural.catalog import make_stepper
from neural.evaluate import mass_grid, precision_recall
from neural.grid import N_MATERIALS, PAD, ModelGrid
from neural.guard import AUDIT_FLOOR, AUDIT_RELATIVE, Guard, disagreement, water_j_min, water_particles
from neural.stepper import HybridStepper, NumericalStepper
from sim import state as state_io
from sim.build import build_solver
from sim.scene import load_scene
from sim.solver import NonFiniteError
from sim.trajectory import learned_share

# App scenes with shipped weights, and the weights the app picks for them.
APP_SCENES = {
    "dam_break": "water2d",
    "water_ramps": "water_ramps2d",
    "sand_ramps": "sand_ramps2d",
    "water_sand": "water_sand2d",
    "dam_break_3d": "water_tank3d",
    "sand_pile_3d": "sand_tank3d",
}
# Fixed low-resolution comparators: the same scene on coarser grids (cells along the longest side), the
# same particles per cell. The metric grid has the coarsest one's cells. They bracket the hybrid's cost:
# on sand_ramps (2,747 particles) the network's fixed cost made every grid up to 64 cells cheaper than the
# hybrid, and its rmse_ratio had no comparator; 96 cells is there for such small scenes.
LOWRES_GRIDS = {2: (24, 32, 48, 64, 96), 3: (16, 20, 24, 28)}
METRIC_CELLS = {2: 32, 3: 20}
SHEET_FRAMES = (1, 7, 13, 25, 37, 60, 90, 120)
TIMING_ROUNDS = 3  # timing-only rollouts per method and scene; the costs are the median round's
NEED_HORIZON = 4  # frames a kept learned frame is followed for to see whether it needed the solver
# The learned frames' mass RMSE after the horizon, above which the first needed the solver: a share of the
# flow's own change over the horizon plus a floor, the audit's rule (neural.guard.AUDIT_RELATIVE).
NEEDED_RELATIVE, NEEDED_FLOOR = AUDIT_RELATIVE, AUDIT_FLOOR
NEEDED_SPEED = 1.5  # ... or its peak speed above this many times the solver's (plus 0.5 m/s)
NEEDED_COMPRESSION = 0.15  # ... or its largest volume fraction above the solver's by this much
NEEDED_J = 0.05  # ... or its smallest water J below the solver's by this much
COLUMN_WIDTH = 0.146  # dam_break's column (K&O's L)
# Material left on obstacles: the mass share within this many model cells of an obstacle's surface (outside
# it), averaged over a run's last ON_OBSTACLES_FRAMES frames. Mass RMSE did not show what the sheet shows:
# sand_ramps' learned sand stays on the upper ramp the solver's slides off (a probe, neural-only: particles
# within 4 cm above that ramp at frame 60, the solver's 0, the learned 211; from the solver's own states a
# learned frame gives the sliding layer 53-82% of the solver's acceleration along the ramp).
ON_OBSTACLES_CELLS, ON_OBSTACLES_FRAMES = 2, 20


def reference_path() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


@dataclass
class Run:
    """One rollout's per-frame observables."""

    ms: list[float] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    front: list[float] = field(default_factory=list)
    column: list[float] = field(default_factory=list)
    peak_speed: list[float] = field(default_factory=list)
    j_p1: list[float] = field(default_factory=list)
    j_p99: list[float] = field(default_factory=list)
    fraction_max: list[float] = field(default_factory=list)
    fraction_p99: list[float] = field(default_factory=list)
    on_obstacles: list[float] = field(default_factory=list)  # scenes with obstacles (ON_OBSTACLES_CELLS)
    frames: dict[int, dict] = field(default_factory=dict)  # positions and materials for the sheet
    # Timing-only repeats of the rollout (per-frame ms and paths each; _time_rounds): when present, the
    # costs are read from the median one instead of from `ms`.
    rounds: list[tuple[list[float], list[str]]] = field(default_factory=list)

    def timing(self) -> tuple[list[float], list[str]]:
        """The per-frame ms and paths the costs are read from: the round of median mean cost, or the
        observed rollout's own."""
        if not self.rounds:
            return self.ms, self.paths
        means = [np.mean(ms) for ms, _ in self.rounds]
        return self.rounds[int(np.argsort(means)[len(means) // 2])]

    def summary(self) -> dict:
        ms, paths = self.timing()
        out = {
            "ms_per_frame": float(np.mean(ms)),
            "mass_rmse": float(np.mean(self.rmse)) if self.rmse else 0.0,
            "peak_speed": float(np.max(self.peak_speed)),
            "j_p1": float(np.min(self.j_p1)),
            "j_p99": float(np.max(self.j_p99)),
            "fraction_max": float(np.max(self.fraction_max)),
            "fraction_p99": float(np.percentile(self.fraction_p99, 99)),
        }
        if self.on_obstacles:
            out["on_obstacles"] = float(np.mean(self.on_obstacles[-ON_OBSTACLES_FRAMES:]))
        if self.paths:
            out["learned_share"] = learned_share(self.paths)
            # What a learned frame costs alone (the mean above averages in the solver's frames).
            learned = [t for t, path in zip(ms, paths) if path == "neural"]
            if learned:
                out["learned_ms_per_frame"] = float(np.mean(learned))
            if self.rounds:  # each takes the observed rollout's paths unless the stepper is not deterministic
                out["rounds_follow_rollout"] = all(p == self.paths for _, p in self.rounds)
        if self.rounds:
            out["ms_rounds"] = [float(np.mean(t)) for t, _ in self.rounds]
        return out


def _fractions(solver, h: float) -> np.ndarray:
    grid = ModelGrid(solver.dim, h, solver.config.size)
    phi = solver.grid_transfer(h, PAD, grid.shape)[:N_MATERIALS].sum(0)
    return phi[phi > 0.05]


def _largest(values: np.ndarray) -> float:
    return float(values.max()) if len(values) else 0.0


def _observe(run: Run, solver, h: float, frame: int, reference_mass=None, size=None, cells=32) -> None:
    state = solver.particles()
    x = state["x"]
    run.front.append(float(np.quantile(x[:, 0], 0.995)))
    near_wall = x[x[:, 0] < COLUMN_WIDTH / 4]
    run.column.append(float(np.quantile(near_wall[:, 1], 0.995)) if len(near_wall) else 0.0)
    run.peak_speed.append(float(np.linalg.norm(state["v"], axis=1).max()))
    water = water_particles(solver, state)
    j = state["J"][water] if water.any() else np.ones(1)
    run.j_p1.append(float(np.percentile(j, 1)))
    run.j_p99.append(float(np.percentile(j, 99)))
    phi = _fractions(solver, h)
    run.fraction_max.append(float(phi.max()) if len(phi) else 0.0)
    run.fraction_p99.append(float(np.percentile(phi, 99)) if len(phi) else 0.0)
    mass = solver.masses(state["slot"])
    if solver.colliders and len(x):
        run.on_obstacles.append(on_obstacles(solver.colliders, x, mass, ON_OBSTACLES_CELLS * h))
    if reference_mass is not None:
        run.rmse.append(_rmse(x, mass, reference_mass, size, cells))
    if frame in SHEET_FRAMES:
        run.frames[frame] = {"x": x.copy(), "material": state["material"].copy()}


def on_obstacles(colliders, x: np.ndarray, mass: np.ndarray, band: float) -> float:
    """The mass share of particles (positions `x`, masses `mass`) within `band` outside a collider."""
    distance = np.min([c.signed_distance(x) for c in colliders], axis=0)
    return float(mass[(distance >= 0) & (distance < band)].sum() / max(mass.sum(), 1e-12))


def _rmse(x, mass, reference_grid: np.ndarray, size, cells: int) -> float:
    """Mass RMSE against a reference's metric grid, over its largest cell mass."""
    diff = mass_grid(x, mass, size, cells) - reference_grid
    return float(np.sqrt((diff**2).mean())) / max(float(reference_grid.max()), 1e-12)


def _rollout(solver, stepper, frames: int, h: float, metric=None, size=None, cells=32) -> Run:
    run = Run()
    for f in range(1, frames + 1):
        t = time.perf_counter()
        report = stepper.advance(solver)
        run.ms.append((time.perf_counter() - t) * 1e3)
        run.paths.append(report.path)
        _observe(run, solver, h, f, None if metric is None else metric[f - 1], size, cells)
    return run


def _time_rounds(runs: list[tuple[Run, object, object, state_io.Snapshot]], frames: int) -> None:
    """TIMING_ROUNDS timing-only repeats of each (run, solver, stepper, start), interleaved round by
    round so that a slow spell of the machine lands on every method alike; nothing is observed between
    frames. A single timed rollout each decided which coarse grid the hybrid was compared with, and one
    bench read water_ramps' hybrid at 17.0 ms a frame where runs alone read 13.3-14.5."""
    for _ in range(TIMING_ROUNDS):
        for run, solver, stepper, start in runs:
            state_io.restore(solver, start)
            stepper.reset()
            ms, paths = [], []
            for _ in range(frames):
                t = time.perf_counter()
                report = stepper.advance(solver)
                ms.append((time.perf_counter() - t) * 1e3)
                paths.append(report.path)
            run.rounds.append((ms, paths))


def koshizuka_oka_error(fronts: list[float], frame_dt: float) -> float:
    """Mean relative error of the fronts (one per frame from t = frame_dt) against K&O's surge front."""
    reference = np.loadtxt(
        reference_path() / "dam_break_koshizuka_oka_1996.csv", delimiter=",", comments="#", skiprows=7
    )
    g = 9.81
    times = np.arange(len(fronts) + 1) * frame_dt * np.sqrt(2 * g / COLUMN_WIDTH)
    z = np.concatenate([[1.0], np.asarray(fronts) / COLUMN_WIDTH])
    inside = reference[reference[:, 0] <= times[-1]]
    simulated = np.interp(inside[:, 0], times, z)
    return float(np.mean(np.abs(simulated - inside[:, 1]) / inside[:, 1]))


def _physics(solver, h: float) -> tuple[dict, float, float, float]:
    """A state and its peak speed, largest volume fraction and smallest water J."""
    state = solver.particles()
    speed = float(np.linalg.norm(state["v"], axis=1).max()) if len(state["v"]) else 0.0
    return state, speed, _largest(_fractions(solver, h)), water_j_min(solver, state)


def guard_quality(solver, hybrid: HybridStepper, start, frames: int, h: float, size, cells, detail=None):
    """Along the hybrid's own trajectory (where its errors build up, not from the solver's states), each
    frame is scored against the solver from the same start (the shadow). The frame "needs" the solver
    when NEED_HORIZON learned frames from there leave NEED_HORIZON solver frames by more than a tolerance
    in mass or physics (peak speed, compression, water J): the error a kept learned frame leads into,
    which one frame alone hides (sand whose learned frames keep it sliding is right for a frame, wrong for
    four). The guard "fires" when the hybrid would not keep the learned frame: its physics checks fail, an
    audit (on the hybrid's own schedule; see Audit) finds the frame off, the last audit failed, or the
    frame is one of the solver frames the hybrid's backoff runs after a fallback (its hysteresis: the
    hybrid's own bookkeeping decides). The rollout goes on from the first learned frame where it was kept
    and from the first shadow frame where not, as the hybrid does; every frame's learned continuation is
    scored, hysteresis frames' too."""
    guard: Guard = hybrid.guard
    neural = hybrid.neural
    numerical = NumericalStepper()
    fired, needed = [], []
    state_io.restore(solver, start)
    hybrid.reset()
    for _ in range(frames):
        audit_now = hybrid.audit.tick(solver)
        # As HybridStepper._frame: an audit first, then an untrusted stepper, then the backoff's frames.
        held_back = not audit_now and hybrid.audit.trusted and hybrid.take_hysteresis_frame()
        runs_learned = not (audit_now or held_back) and hybrid.audit.trusted  # the guard alone decides
        pre, history = state_io.snapshot(solver), neural.history
        numerical.advance(solver)
        shadow_first = state_io.snapshot(solver)
        for _ in range(NEED_HORIZON - 1):
            numerical.advance(solver)
        shadow, shadow_speed, shadow_phi, shadow_j = _physics(solver, h)
        metric = mass_grid(shadow["x"], solver.masses(shadow["slot"]), size, cells)
        change = _rmse(pre.particles["x"], solver.masses(pre.particles["slot"]), metric, size, cells)
        state_io.restore(solver, pre)
        neural.history = history
        before = guard.measure_before(solver)
        try:
            report = neural.advance(solver)
            verdict = guard.check(solver, before, report.stats)
            learned_first, learned_history = state_io.snapshot(solver), neural.history
            if audit_now:
                error = disagreement(solver, solver.particles(), shadow_first.particles, h)
                step_change = disagreement(solver, pre.particles, shadow_first.particles, h)
            for _ in range(NEED_HORIZON - 1):
                neural.advance(solver)
            state, speed, phi, j = _physics(solver, h)
            gaps = {
                "rmse": _rmse(state["x"], solver.masses(state["slot"]), metric, size, cells),
                "change": change,
                "speed": speed - NEEDED_SPEED * shadow_speed - 0.5,
                "compression": phi - shadow_phi,
                "j": shadow_j - j,
            }
            need = (
                gaps["rmse"] > NEEDED_RELATIVE * change + NEEDED_FLOOR
                or gaps["speed"] > 0
                or gaps["compression"] > NEEDED_COMPRESSION
                or gaps["j"] > NEEDED_J
            )
            trusted = hybrid.audit.record(error, step_change) if audit_now else hybrid.audit.trusted
            keep = trusted and verdict.ok and not held_back
            guard_failed = runs_learned and not verdict.ok
            if detail is not None:
                scores = {f"guard.{k}": v for k, v in verdict.scores.items()}
                detail.append(
                    {**gaps, **scores, "audit": audit_now, "trusted": trusted, "held_back": held_back}
                )
        except NonFiniteError:  # non-finite output: the guard must fire, and the frame needs the solver
            keep, need = False, True
            guard_failed = runs_learned
            if audit_now:
                hybrid.audit.record(float("inf"), 0.0)
        fired.append(not keep)
        needed.append(bool(need))
        if guard_failed:
            hybrid.falling_back()
        if keep:
            hybrid.learned_frame_kept()
            state_io.restore(solver, learned_first)
            neural.history = learned_history
        else:
            state_io.restore(solver, shadow_first)
            hybrid.after_solver_frame(solver)
    return fired, needed


def evaluate_scene(
    name: str,
    frames: int = 120,
    lowres: bool = True,
    sheet: Path | None = None,
    timing_rounds: bool = True,
    model: str | None = None,
) -> dict:
    """The hybrid on a built-in scene against its solver and fixed low-resolution runs; the costs from
    TIMING_ROUNDS interleaved timing-only rollouts each (_time_rounds; without `timing_rounds`, from the
    observed rollouts themselves). `model`: weights to use instead of the shipped ones that fit."""
    scene = load_scene(name)
    hybrid, message = make_stepper("hybrid", scene, model)
    if not isinstance(hybrid, HybridStepper):
        raise RuntimeError(f"{name}: {message}")
    h = hybrid.neural.spec.h
    dim = scene.dim
    cells = METRIC_CELLS[dim]
    solver = build_solver(scene)
    start = state_io.snapshot(solver)
    numerical = NumericalStepper()
    numerical.advance(solver)  # compile and warm up both paths on the scene
    state_io.restore(solver, start)
    hybrid.advance(solver)
    state_io.restore(solver, start)
    hybrid.reset()

    reference, metric = Run(), []
    for f in range(1, frames + 1):
        t = time.perf_counter()
        numerical.advance(solver)
        reference.ms.append((time.perf_counter() - t) * 1e3)
        state = solver.particles()
        metric.append(mass_grid(state["x"], solver.masses(state["slot"]), scene.size, cells))
        _observe(reference, solver, h, f)
    state_io.restore(solver, start)
    hybrid.reset()
    hybrid.frames = hybrid.fallbacks = hybrid.refails = hybrid.handover_failures = 0
    learned = _rollout(solver, hybrid, frames, h, metric, scene.size, cells)
    counters = {
        "fallbacks": hybrid.fallbacks,
        "refails": hybrid.refails,
        "handover_failures": hybrid.handover_failures,
    }
    fired, needed = guard_quality(solver, hybrid, start, frames, h, scene.size, cells)

    comparators, timed = {}, [(reference, solver, numerical, start), (learned, solver, hybrid, start)]
    coarse = []  # their solvers, open until the timing rounds are done
    try:
        if lowres:
            for grid in LOWRES_GRIDS[dim]:
                low = build_solver(load_scene(name, {"grid": grid}))
                coarse.append(low)
                low_start = state_io.snapshot(low)
                low.step_frame()  # compile
                state_io.restore(low, low_start)
                comparators[grid] = _rollout(low, NumericalStepper(), frames, h, metric, scene.size, cells)
                timed.append((comparators[grid], low, NumericalStepper(), low_start))
        if timing_rounds:
            _time_rounds(timed, frames)
    finally:
        for low in coarse:
            low.close()
        solver.close()

    result = {
        "scene": name,
        "weights": hybrid.weights,
        "frames": frames,
        "particles": int(len(start.particles["x"])),
        "metric_cells": cells,
        "solver": reference.summary(),
        "hybrid": {**learned.summary(), **counters},
        "lowres": {str(g): r.summary() for g, r in comparators.items()},
        "guard": {"fired": fired, "needed": needed},
    }
    hybrid_ms = result["hybrid"]["ms_per_frame"]
    result["latency_ratio"] = hybrid_ms / result["solver"]["ms_per_frame"]
    costlier = [g for g, r in comparators.items() if r.summary()["ms_per_frame"] >= hybrid_ms]
    if costlier:
        cheapest = min(costlier, key=lambda g: comparators[g].summary()["ms_per_frame"])
        result["rmse_ratio"] = result["hybrid"]["mass_rmse"] / comparators[cheapest].summary()["mass_rmse"]
        result["rmse_comparator"] = cheapest
    if name == "dam_break":
        result["front_error"] = koshizuka_oka_error(learned.front, scene.frame_dt)
        result["solver_front_error"] = koshizuka_oka_error(reference.front, scene.frame_dt)
        for g, r in comparators.items():
            result["lowres"][str(g)]["front_error"] = koshizuka_oka_error(r.front, scene.frame_dt)
        result["column_error"] = float(
            np.mean(np.abs(np.subtract(learned.column, reference.column))) / COLUMN_WIDTH
        )
    result["front_rms_vs_solver"] = float(np.sqrt(np.mean(np.subtract(learned.front, reference.front) ** 2)))
    if sheet is not None:
        frame_sheet(sheet, name, scene.size, reference, learned, comparators.get(LOWRES_GRIDS[dim][1]))
    return result


def pool_observables(x: np.ndarray, cell: float) -> dict[str, float]:
    """A resting pool's mean particle height and its cavities: the share of empty `cell`-sized cells
    below the 80th percentile of the particles' heights, across the width the particles span."""
    cells = np.floor(x[:, :2] / cell).astype(int)
    cells -= cells.min(0)
    occupied = np.zeros(cells.max(0) + 1, bool)
    occupied[cells[:, 0], cells[:, 1]] = True
    top = int(np.floor(np.percentile(x[:, 1], 80) / cell)) - int(np.floor(x[:, 1].min() / cell))
    below = occupied[:, : max(top, 1)]
    return {"mean_height": float(x[:, 1].mean()), "cavities": float(1.0 - below.mean())}


def evaluate_long_run(name: str = "dam_break", frames: int = 600, cell: float = 1 / 128) -> dict:
    """The window's case the 120-frame evaluation does not reach: the hybrid left running until the
    scene has come to rest, against the solver, judged on the resting pool (pool_observables)."""
    scene = load_scene(name)
    hybrid, message = make_stepper("hybrid", scene)
    if not isinstance(hybrid, HybridStepper):
        raise RuntimeError(f"{name}: {message}")
    solver = build_solver(scene)
    start = state_io.snapshot(solver)
    result = {"scene": name, "frames": frames}
    for label, stepper in (("solver", NumericalStepper()), ("hybrid", hybrid)):
        state_io.restore(solver, start)
        stepper.reset()
        paths = [stepper.advance(solver).path for _ in range(frames)]
        result[label] = pool_observables(solver.positions(), cell)
        if label == "hybrid":
            result[label]["learned_share"] = learned_share(paths)
    solver.close()
    return result


def guard_records(results: list[dict]) -> tuple[float, float, float]:
    fired = sum((r["guard"]["fired"] for r in results), [])
    needed = sum((r["guard"]["needed"] for r in results), [])
    precision, recall = precision_recall(fired, needed)
    return precision, recall, float(np.mean(needed)) if needed else 0.0


COLOURS = {0: (0.2, 0.45, 0.85), 1: (0.85, 0.3, 0.5), 2: (0.8, 0.8, 0.85), 3: (0.8, 0.65, 0.35)}


def frame_sheet(path: Path, name: str, size, reference: Run, hybrid: Run, lowres: Run | None) -> None:
    """A PNG: the solver's frames above the hybrid's (and a low-resolution run's), side views in 3D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("solver", reference), ("hybrid", hybrid)] + ([("low-res", lowres)] if lowres else [])
    shown = [f for f in SHEET_FRAMES if f in reference.frames and f in hybrid.frames]
    aspect = size[1] / size[0]
    fig, axes = plt.subplots(
        len(rows), len(shown), figsize=(1.9 * len(shown), 1.9 * aspect * len(rows) + 0.6), squeeze=False
    )
    for r, (label, run) in enumerate(rows):
        for c, f in enumerate(shown):
            ax = axes[r][c]
            data = run.frames[f]
            colours = np.array([COLOURS.get(int(m), (0.5, 0.5, 0.5)) for m in range(4)])[data["material"]]
            # Dots as wide as the particle spacing, so a coarse run reads as filled as a fine one.
            spacing = (np.prod(size[:2]) / max(len(data["x"]), 1)) ** 0.5 if len(size) == 2 else None
            dot = 0.15 if spacing is None else 0.15 * (spacing / 0.0023) ** 2
            ax.scatter(data["x"][:, 0], data["x"][:, 1], s=dot, c=colours, linewidths=0)
            ax.set_xlim(0, size[0])
            ax.set_ylim(0, size[1])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"{label} {f}"
            if run.paths:
                path_name = {"neural": "learned", "fallback": "fallback", "numerical": "solver"}
                title += f" ({path_name.get(run.paths[f - 1], run.paths[f - 1])})"
            ax.set_title(title, fontsize=7)
    share = learned_share(hybrid.paths)
    fig.suptitle(f"{name}: solver (top) and hybrid ({share:.0%} learned frames)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
