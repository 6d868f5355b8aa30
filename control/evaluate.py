"""`eval control`: steer held-out states toward sketches and score the outcome against baselines.

Score of a case (lower is better), used for every ratio:
  primary error  (paths: centroid distance to the stroke's end / stroke length; regions: 1 - mass inside)
+ mass RMSE to the target / the no-force run's mass RMSE to the target.
The second term keeps a method from scoring by spraying the fluid thin. A case without a stored target uses
the one its sketch implies: the start mass moved so its centroid sits on the stroke's end, or the same mass
spread evenly over the region.

Methods: no force; the best constant force (one vector per case, cross-entropy search); ours (closed loop
with the diffusion controller); the oracle (cross-entropy search over a 4x4 (3D: 2x2x2) x 2-key force net
with the numerical solver, seeded with the best constant; slow, its time is reported).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from control.condition import centroid, control_grid
from control.controller import ClosedLoop, Controller
from control.data import random_force, wobble
from control.forcefield import MAX_CONTROL_ACCEL, ForceField, G, constant_field
from control.sketch import Sketch, inside_region, parse_sketch, plane_frame
from sim import state as state_io
from sim.forcefield import upsample

HELD_OUT_SEED = 10_000  # datagen uses small seeds
ORACLE_NET = {2: (4, 4), 3: (2, 2, 2)}  # the oracle searches a coarse net of force vectors...
ORACLE_KEYS = 2  # ...at the window's start and end


@dataclass
class Case:
    name: str
    scene: str  # "FAMILY:INDEX": held-out random state INDEX of the family
    warmup_frames: int
    strokes: list
    window_frames: int
    target: np.ndarray | None = None  # particle positions the fluid should reach (same order and masses)
    origin: str = "file"


@dataclass
class Budget:
    constant_iterations: int = 3
    constant_samples: int = 8
    oracle_iterations: int = 3
    oracle_samples: int = 12

    @classmethod
    def for_dim(cls, dim: int, oracle_iterations: int | None = None) -> Budget:
        """The default search budget; 3D rollouts cost ~20x a 2D one, so its searches are smaller."""
        budget = cls() if dim == 2 else cls(2, 6, 2, 8)
        if oracle_iterations is not None:
            budget.oracle_iterations = oracle_iterations
        return budget


@dataclass
class Outcome:
    score: float
    primary: float
    mass_rmse: float
    centroid_error: float | None = None
    inside_fraction: float | None = None
    seconds: float = 0.0
    rollouts: int = 1
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ cases
def load_cases(path: Path) -> list[Case]:
    """A TOML file of [[case]] tables (see the README). Raises ValueError naming the case and key."""
    from sim.scene import read_toml

    raw = read_toml(Path(path), ValueError)
    cases = []
    for k, table in enumerate(raw.get("case", [])):
        where = f"{path}: case[{k}]"
        try:
            target = table.get("target")
            if target is not None:
                _, snap = state_io.read(Path(path).parent / target)
                target = snap.particles["x"]
            cases.append(
                Case(
                    name=str(table.get("name", f"case {k}")),
                    scene=str(table["scene"]),
                    warmup_frames=int(table.get("warmup_frames", 0)),
                    strokes=[list(s) for s in table["strokes"]],
                    window_frames=int(table["window_frames"]),
                    target=target,
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: {type(e).__name__}: {e}") from None
        family, _, index = cases[-1].scene.partition(":")
        if not index.isdigit():
            raise ValueError(
                f"{where}: scene must be FAMILY:INDEX (a held-out state of a family), got {cases[-1].scene!r}"
            )
        if cases[-1].window_frames < 1 or cases[-1].warmup_frames < 0:
            raise ValueError(f"{where}: window_frames must be positive and warmup_frames not negative")
    if not cases:
        raise ValueError(f"{path}: no [[case]] tables")
    return cases


def generated_cases(family: str, solver, count: int, start: int = 0) -> list[Case]:
    """Held-out physical examples: a random force's outcome, its implied sketch, and the outcome as target."""
    from control.data import _seed_state, outcome_sketch

    cases = []
    cells, h = control_grid(solver)
    for i in range(start, start + count):
        rng = np.random.default_rng([HELD_OUT_SEED, i, 7])
        warmup, frames = int(rng.integers(0, 40)), int(rng.integers(30, 48))
        scene = _seed_state(solver, family, HELD_OUT_SEED, i, warmup)
        mass = solver.masses()
        centroids = [centroid(solver.positions(), mass)]
        ForceField(random_force(rng, cells, h, solver.config.force_keys), frames).apply(solver)
        for _ in range(frames):
            solver.step_frame()
            centroids.append(centroid(solver.positions(), mass))
        solver.clear_force_field()
        sketch = outcome_sketch(rng, np.array(centroids), solver.positions(), mass, scene.size, h)
        strokes = [p.tolist() for p in sketch.paths] + [r.tolist() for r in sketch.regions]
        cases.append(
            Case(
                f"held-out {i} ({sketch.kind})",
                f"{family}:{i}",
                warmup,
                strokes,
                frames,
                solver.positions(),
                "generated",
            )
        )
    return cases


def handdrawn_cases(family: str, solver, count: int, start: int = 100) -> list[Case]:
    """Wobbly hand-drawn-like strokes from held-out states: arrows, curved paths and regions."""
    from control.data import _seed_state

    cases = []
    _, h = control_grid(solver)
    for i in range(start, start + count):
        rng = np.random.default_rng([HELD_OUT_SEED, i, 9])
        warmup = int(rng.integers(10, 40))
        scene = _seed_state(solver, family, HELD_OUT_SEED, i, warmup)
        x, mass = solver.positions(), solver.masses()
        here, size = centroid(x, mass), np.array(scene.size)
        style = ("arrow", "curve", "region")[(i - start) % 3]
        sideways = 1.0 if here[0] < size[0] / 2 else -1.0

        def across(dx: float, dy: float, dim: int = len(size)) -> np.ndarray:  # 3D: on the x-y plane
            return np.array([dx, dy, 0.0][:dim])

        if style == "arrow":
            end = here + across(sideways * rng.uniform(0.2, 0.35), rng.uniform(-0.05, 0.1))
            line = np.linspace(here, end, 30)
        elif style == "curve":
            end = here + across(sideways * rng.uniform(0.25, 0.4), 0.0)
            t = np.linspace(0, 1, 40)[:, None]
            line = here + (end - here) * t + across(0.0, rng.uniform(0.1, 0.2)) * np.sin(np.pi * t)
        else:
            point = here + across(sideways * rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.15))
            radius = rng.uniform(0.1, 0.15)
            angle = np.linspace(0, 2 * np.pi, 40)
            line = point + radius * np.stack([across(np.cos(a), np.sin(a)) for a in angle])
        line = np.clip(wobble(line, rng, 0.2 * h), 0.02, size - 0.02)
        cases.append(
            Case(
                f"drawn {i} ({style})",
                f"{family}:{i}",
                warmup,
                [line.tolist()],
                int(rng.integers(36, 48)),
                None,
                "drawn",
            )
        )
    return cases


def write_cases(cases: list[Case], path: Path) -> None:
    """A case file (targets are not written: drawn cases use the target their sketch implies)."""
    lines = []
    for c in cases:
        strokes = json.dumps([[[round(p, 4) for p in point] for point in s] for s in c.strokes])
        lines += [
            "[[case]]",
            f"name = {json.dumps(c.name)}",
            f"scene = {json.dumps(c.scene)}",
            f"warmup_frames = {c.warmup_frames}",
            f"window_frames = {c.window_frames}",
            f"strokes = {strokes}",
            "",
        ]
    path.write_text("\n".join(lines))


# ------------------------------------------------------------------------------------------ scoring
def implied_target(x: np.ndarray, mass: np.ndarray, sketch: Sketch, size, seed: int = 0) -> np.ndarray:
    """The state a sketch asks for when none is stored (see the module docstring)."""
    size = np.asarray(size, float)
    if sketch.kind == "path":
        return np.clip(x + (sketch.target() - centroid(x, mass)), 0.0, size)
    rng = np.random.default_rng(seed)
    polygon = sketch.regions[0]
    lo, hi = polygon.min(0), polygon.max(0)
    if len(size) == 3:  # the region is a prism: fill it within a slab about as thick as the loop is wide
        origin, basis = plane_frame(polygon)
        normal = np.cross(basis[0], basis[1])
        reach = float(np.linalg.norm(polygon - origin, axis=1).mean())
        lo, hi = np.maximum(lo - reach, 0.0), np.minimum(hi + reach, size)
    points = np.zeros((0, len(size)))
    while len(points) < len(x):
        trial = rng.uniform(lo, hi, (4 * len(x), len(size)))
        keep = inside_region(trial, polygon)
        if len(size) == 3:
            keep &= np.abs((trial - origin) @ normal) <= reach
        points = np.concatenate([points, trial[keep]])
    return np.clip(points[: len(x)], 0.0, size)


class Scorer:
    def __init__(
        self, sketch: Sketch, target: np.ndarray, mass: np.ndarray, size, no_force_rmse: float | None = None
    ):
        self.sketch, self.target, self.mass, self.size = sketch, target, mass, size
        self.no_force_rmse = no_force_rmse

    def __call__(self, x: np.ndarray) -> Outcome:
        from neural.evaluate import mass_rmse

        rmse = mass_rmse(x, self.mass, self.target, self.mass, self.size)
        here = centroid(x, self.mass)
        if self.sketch.kind == "path":
            error = float(np.linalg.norm(here - self.sketch.target()))
            primary, inside = error / max(self.sketch.path_length(), 1e-6), None
        else:
            inside_mask = np.zeros(len(x), bool)
            for region in self.sketch.regions:
                inside_mask |= inside_region(x, region)
            inside = float(self.mass[inside_mask].sum() / self.mass.sum())
            error, primary = None, 1.0 - inside
        base = self.no_force_rmse if self.no_force_rmse else rmse
        return Outcome(primary + rmse / max(base, 1e-9), primary, rmse, error, inside)


# ------------------------------------------------------------------------------------------ rollouts
def _rollout(solver, start, frames: int, field: ForceField | None = None, loop: ClosedLoop | None = None):
    state_io.restore(solver, start)
    if field is not None:
        field.apply(solver)
    for _ in range(frames):
        if loop is not None:
            loop.before_frame(solver)
        solver.step_frame()
    if loop is not None:
        loop.stop(solver)
    solver.clear_force_field()
    return solver.positions()


def _cem(solver, start, frames, scorer, make_field, mean, std, iterations, samples, rng, clip):
    """Cross-entropy search: sample, keep the best quarter, refit; returns the best (score, params) seen."""
    best = (scorer(_rollout(solver, start, frames, make_field(mean))).score, mean.copy())
    rollouts = 1
    for _ in range(iterations):
        candidates = [clip(mean + std * rng.normal(size=mean.shape)) for _ in range(samples)]
        scores = []
        for params in candidates:
            scores.append(scorer(_rollout(solver, start, frames, make_field(params))).score)
            rollouts += 1
            if scores[-1] < best[0]:
                best = (scores[-1], params)
        elite = np.array([candidates[i] for i in np.argsort(scores)[: max(2, samples // 4)]])
        mean, std = elite.mean(0), np.maximum(elite.std(0), 0.1 * G)
    return best, rollouts


def _clip_vectors(params: np.ndarray, dim: int) -> np.ndarray:
    vectors = params.reshape(-1, dim)
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors * np.minimum(1.0, MAX_CONTROL_ACCEL / np.maximum(norm, 1e-9))).reshape(params.shape)


def run_case(
    case: Case, solver, controller: Controller | None, budget: Budget, family: str | None, seed: int = 0
) -> dict:
    from control.data import _seed_state

    family_name, index = case.scene.split(":")
    _seed_state(solver, family_name, HELD_OUT_SEED, int(index), case.warmup_frames)
    cells, h = control_grid(solver)
    keys = solver.config.force_keys
    start = state_io.snapshot(solver)
    x0, mass = solver.positions(), solver.masses()
    size = solver.config.size
    parsed = parse_sketch(case.strokes, size, h)
    if not parsed.ok:
        return {"name": case.name, "skipped": "; ".join(parsed.messages)}
    sketch = parsed.sketch
    target = case.target if case.target is not None else implied_target(x0, mass, sketch, size, seed)
    frames = case.window_frames
    rng = np.random.default_rng(seed)
    dim = len(cells)
    clip = partial(_clip_vectors, dim=dim)
    out = {"name": case.name, "origin": case.origin, "kind": sketch.kind, "frames": frames, "methods": {}}

    began = time.perf_counter()
    scorer = Scorer(sketch, target, mass, size)
    scorer.no_force_rmse = scorer(_rollout(solver, start, frames)).mass_rmse
    methods, final = out["methods"], {}
    final["none"] = solver.positions()
    methods["none"] = scorer(final["none"])
    methods["none"].seconds = time.perf_counter() - began

    began = time.perf_counter()
    toward = sketch.target() - centroid(x0, mass)
    # Start the search at a gentle push toward the goal (plus gravity's worth of lift for a region).
    lift = np.zeros(dim)
    lift[1] = G if sketch.kind == "region" else 0.0
    initial = 0.5 * G * toward / max(np.linalg.norm(toward), 1e-9) + lift
    (score, vector), rollouts = _cem(
        solver,
        start,
        frames,
        scorer,
        lambda p: constant_field(p, keys, cells, frames),
        initial,
        np.full(dim, 1.5 * G),
        budget.constant_iterations,
        budget.constant_samples,
        rng,
        clip,
    )
    final["constant"] = _rollout(solver, start, frames, constant_field(vector, keys, cells, frames))
    methods["constant"] = scorer(final["constant"])
    methods["constant"].seconds, methods["constant"].rollouts = time.perf_counter() - began, rollouts + 1
    methods["constant"].extra = {"vector": vector.tolist()}

    if controller is not None:
        began = time.perf_counter()
        loop = ClosedLoop(controller, sketch, frames, seed=seed)
        final["ours"] = _rollout(solver, start, frames, loop=loop)
        methods["ours"] = scorer(final["ours"])
        methods["ours"].seconds = time.perf_counter() - began
        methods["ours"].extra = {"plan_ms": loop.plan_ms}

    began = time.perf_counter()

    net = (ORACLE_KEYS, *ORACLE_NET[dim], dim)

    def net_field(params):
        return ForceField(_net_to_field(params.reshape(net), keys, cells), frames)

    seed_params = np.broadcast_to(vector, net).reshape(-1).copy()
    (score, params), rollouts = _cem(
        solver,
        start,
        frames,
        scorer,
        net_field,
        seed_params,
        np.full(seed_params.shape, 1.0 * G),
        budget.oracle_iterations,
        budget.oracle_samples,
        rng,
        clip,
    )
    final["oracle"] = _rollout(solver, start, frames, net_field(params))
    methods["oracle"] = scorer(final["oracle"])
    methods["oracle"].seconds, methods["oracle"].rollouts = time.perf_counter() - began, rollouts + 1
    out["final"] = final  # final positions per method, for the plots (not written to JSON)
    out["sketch"], out["start"], out["target"] = sketch, x0, target
    return out


def _net_to_field(net: np.ndarray, keys: int, cells) -> np.ndarray:
    """(net_keys, *net, dim) control values → (keys, *cells, dim): linear in time and space."""
    spatial = upsample(net, cells)  # (net_keys, *cells, dim)
    position = np.linspace(0, len(net) - 1, keys)
    lo = np.minimum(position.astype(int), len(net) - 2)
    frac = (position - lo).reshape(-1, *(1,) * (spatial.ndim - 1))
    return (spatial[lo] * (1 - frac) + spatial[lo + 1] * frac).astype(np.float32)


# ------------------------------------------------------------------------------------------ report
METHODS = ("none", "constant", "ours", "oracle")


def summarise(results: list[dict]) -> dict:
    done = [r for r in results if "methods" in r]
    summary: dict = {"cases": len(done), "skipped": [r for r in results if "skipped" in r]}
    for method in METHODS:
        rows = [r["methods"][method] for r in done if method in r["methods"]]
        if rows:
            summary[method] = {
                "score": float(np.mean([o.score for o in rows])),
                "primary": float(np.mean([o.primary for o in rows])),
                "mass_rmse": float(np.mean([o.mass_rmse for o in rows])),
                "seconds": float(np.mean([o.seconds for o in rows])),
                "rollouts": float(np.mean([o.rollouts for o in rows])),
            }
    for kind in ("path", "region"):
        for method in METHODS:
            rows = [r["methods"][method] for r in done if r["kind"] == kind and method in r["methods"]]
            if rows:
                key = "centroid_error" if kind == "path" else "inside_fraction"
                summary.setdefault(kind, {})[method] = float(np.mean([getattr(o, key) for o in rows]))
    if "ours" in summary:
        summary["vs_constant_error_ratio"] = summary["ours"]["score"] / summary["constant"]["score"]
        gain = summary["none"]["score"] - summary["oracle"]["score"]
        summary["vs_oracle_improvement_share"] = (summary["none"]["score"] - summary["ours"]["score"]) / max(
            gain, 1e-9
        )
        plans = [ms for r in done for ms in r["methods"]["ours"].extra["plan_ms"]]
        summary["plan_ms"] = {
            "mean": float(np.mean(plans)),
            "p95": float(np.percentile(plans, 95)),
            "plans": len(plans),
        }
    summary["oracle_vs_constant_error_ratio"] = summary["oracle"]["score"] / summary["constant"]["score"]
    return summary


def case_json(result: dict) -> dict:
    if "methods" not in result:
        return result
    out = {k: v for k, v in result.items() if k not in ("final", "sketch", "start", "target", "methods")}
    out["methods"] = {name: vars(o) for name, o in result["methods"].items()}
    return out


def plot(results: list[dict], summary: dict, folder: Path, family: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    done = [r for r in results if "methods" in r]
    methods = [m for m in METHODS if m in summary]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for k, method in enumerate(methods):
        scores = [r["methods"][method].score for r in done]
        ax.bar(k, summary[method]["score"], color=f"C{k}", alpha=0.7)
        ax.scatter(np.full(len(scores), k) + np.linspace(-0.25, 0.25, len(scores)), scores, s=10, color="k")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("score (lower is better)")
    ax.set_title(f"{family}: sketch control, {len(done)} cases")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    scores_png = folder / f"control_{family}_scores.png"
    fig.savefig(scores_png)
    plt.close(fig)

    shown = done[:: max(1, len(done) // 3)][:3]
    fig, axes = plt.subplots(
        len(shown), len(methods), figsize=(2.4 * len(methods), 2.4 * len(shown)), dpi=100, squeeze=False
    )
    for row, result in zip(axes, shown):
        for ax, method in zip(row, methods):
            x = result["final"][method]
            ax.scatter(result["start"][:, 0], result["start"][:, 1], s=0.3, color="0.8")
            ax.scatter(x[:, 0], x[:, 1], s=0.3, color="C0")
            for stroke in result["sketch"].paths + result["sketch"].regions:
                closed = (
                    np.concatenate([stroke, stroke[:1]])
                    if any(stroke is r for r in result["sketch"].regions)
                    else stroke
                )
                ax.plot(closed[:, 0], closed[:, 1], color="C3", lw=1.2)
            ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{method} {result['methods'][method].score:.2f}", fontsize=8)
    fig.tight_layout()
    examples_png = folder / f"control_{family}_examples.png"
    fig.savefig(examples_png)
    plt.close(fig)
    return [scores_png, examples_png]


def evaluate_control(
    family: str,
    weights: Path | None,
    cases: list[Case] | None = None,
    generated: int = 4,
    drawn: int = 4,
    budget: Budget | None = None,
    plots: Path | None = None,
    progress: bool = True,
) -> tuple[dict, list[dict]]:
    from tqdm import tqdm

    from neural.data import _family_solver

    solver = _family_solver(family, for_controller=True)
    controller = Controller.load(weights) if weights is not None else None
    if cases is None:
        cases = generated_cases(family, solver, generated) + load_cases(default_cases(family))[:drawn]
    results = []
    for k, case in enumerate(tqdm(cases, desc=f"eval control {family}", unit="case", disable=not progress)):
        budget = budget or Budget.for_dim(len(solver.config.size))
        results.append(run_case(case, solver, controller, budget, family, seed=k))
    summary = summarise(results)
    summary["family"], summary["weights"] = family, str(weights)
    if plots is not None:
        summary["plots"] = [str(p) for p in plot(results, summary, plots, family)]
    return summary, [case_json(r) for r in results]


def default_cases(family: str) -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "control" / f"cases_{family}.toml"
