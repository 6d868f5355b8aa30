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
from dataclasses import astuple, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from control.condition import centroid, control_grid
from control.controller import ClosedLoop, Controller
from control.critic import Critic
from control.data import random_force, wobble
from control.forcefield import MAX_CONTROL_ACCEL, ForceField, G, constant_field
from control.score import Scorer, implied_target
from control.sketch import parse_sketch
from sim import state as state_io
from sim.forcefield import upsample

HELD_OUT_SEED = 10_000  # datagen uses small seeds
ORACLE_NET = {2: (4, 4), 3: (2, 2, 2)}  # the oracle searches a coarse net of force vectors...
ORACLE_KEYS = 2  # ...at the window's start and end
PLANTS = ("solver", "hybrid")


def family_case(scene: str) -> bool:
    """A case's scene "FAMILY:INDEX" (a held-out random state of a family), not a scene by name or file."""
    return scene.partition(":")[2].isdigit()


@dataclass
class Case:
    name: str
    scene: str  # "FAMILY:INDEX" (held-out random state INDEX of the family), a built-in scene or a .toml
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
        """The default search budget; 3D rollouts cost ~20x a 2D one, so its searches are smaller (and
        so are those of cases on an app scene, whose solver runs at the scene's own, finer, resolution)."""
        budget = cls() if dim == 2 else cls.smaller()
        if oracle_iterations is not None:
            budget.oracle_iterations = oracle_iterations
        return budget

    @classmethod
    def smaller(cls) -> Budget:
        return cls(2, 6, 2, 8)


class SceneSolvers:
    """Solvers for cases on app scenes (built-in or files), built once per scene, with the scene's start
    state, and the learned critic that fits each scene (the weights its hybrid runs)."""

    def __init__(self):
        self._built: dict[str, tuple] = {}

    def start(self, case: Case):
        """(solver, critic, hybrid plant) with the solver `case.warmup_frames` frames after the scene's
        start (run by the solver)."""
        if case.scene not in self._built:
            from neural.catalog import make_stepper
            from sim.build import build_solver
            from sim.scene import load_scene

            scene = load_scene(case.scene)
            solver = build_solver(scene)
            critic, _ = Critic.for_scene(scene)
            plant, _ = make_stepper("hybrid", scene)
            self._built[case.scene] = (solver, state_io.snapshot(solver), critic, plant)
        solver, initial, critic, plant = self._built[case.scene]
        state_io.restore(solver, initial)
        for _ in range(case.warmup_frames):
            solver.step_frame()
        return solver, critic, plant

    def close(self) -> None:
        for solver, *_ in self._built.values():
            solver.close()
        self._built.clear()


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
        scene = cases[-1].scene
        if not family_case(scene):
            from sim.scene import builtin_scenes

            file = Path(path).parent / scene
            if scene.endswith(".toml") and file.is_file():
                cases[-1].scene = str(file)
            elif scene not in builtin_scenes():
                raise ValueError(
                    f"{where}: scene must be FAMILY:INDEX (a held-out state of a family), a built-in scene "
                    f"({', '.join(builtin_scenes())}) or a scene file next to the case file, got {scene!r}"
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


# ------------------------------------------------------------------------------------------ rollouts
def _rollout(
    solver,
    start,
    frames: int,
    field: ForceField | None = None,
    loop: ClosedLoop | None = None,
    plant=None,
    middle: list | None = None,
):
    """End positions after `frames` frames from `start` under a field or a closed loop. `plant`: the
    stepper that advances the frames (None: the solver); `middle` collects the positions half-way."""
    state_io.restore(solver, start)
    if plant is not None:
        plant.reset()
    if field is not None:
        field.apply(solver)
    for frame in range(frames):
        if loop is not None:
            loop.before_frame(solver)
        if plant is None:
            solver.step_frame()
        else:
            plant.advance(solver)
        if middle is not None and frame + 1 == frames // 2:
            middle.append(solver.positions())
    if loop is not None:
        loop.stop(solver)
    solver.clear_force_field()
    return solver.positions()


def _cem(rollout, start, frames, scorer, make_field, mean, std, iterations, samples, rng, clip):
    """Cross-entropy search: sample, keep the best quarter, refit; returns the best (score, params) seen.
    `rollout(start, frames, field)` gives the end positions."""
    best = (scorer(rollout(start, frames, make_field(mean))).score, mean.copy())
    rollouts = 1
    for _ in range(iterations):
        candidates = [clip(mean + std * rng.normal(size=mean.shape)) for _ in range(samples)]
        scores = []
        for params in candidates:
            scores.append(scorer(rollout(start, frames, make_field(params))).score)
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
    case: Case,
    solver,
    controller: Controller | None,
    budget: Budget,
    family: str | None,
    seed: int = 0,
    critic: Critic | None = None,
    candidates: int | None = None,
    scenes: SceneSolvers | None = None,
    plant=None,
) -> dict:
    """Every method on one case, each advanced by `plant` (a stepper; None: the solver). A case on an app
    scene runs on that scene's solver (from `scenes`, with its plant), with the critic that fits it and
    the smaller search budget."""
    from control.data import _seed_state

    if family_case(case.scene):
        family_name, index = case.scene.split(":")
        _seed_state(solver, family_name, HELD_OUT_SEED, int(index), case.warmup_frames)
    else:
        scenes = scenes if scenes is not None else SceneSolvers()
        solver, scene_critic, scene_plant = scenes.start(case)
        critic = scene_critic if candidates is None or candidates > 1 else None
        plant = scene_plant if plant is not None else None
        smaller = Budget.smaller()
        budget = Budget(*(min(a, b) for a, b in zip(astuple(budget), astuple(smaller))))
        if controller is not None and controller.spec.dim != solver.dim:
            return {"name": case.name, "skipped": f"{controller.name} is {controller.spec.dim}D"}
    cells, h = control_grid(solver)
    keys = solver.config.force_keys
    start = state_io.snapshot(solver)
    x0, mass = solver.positions(), solver.masses()
    size = solver.config.size
    parsed = parse_sketch(case.strokes, size, h)
    if not parsed.ok:
        return {"name": case.name, "skipped": "; ".join(parsed.messages)}
    sketch = parsed.sketch
    if case.target is not None:
        target = case.target
    else:
        target = implied_target(x0, mass, sketch, size, solver.p_vol * len(x0), seed)
    frames = case.window_frames
    rng = np.random.default_rng(seed)
    dim = len(cells)
    clip = partial(_clip_vectors, dim=dim)
    out = {"name": case.name, "origin": case.origin, "kind": sketch.kind, "frames": frames, "methods": {}}
    roll = partial(_rollout, solver, plant=plant)
    middle: dict[str, list] = {m: [] for m in METHODS}  # half-way positions of each method's final run

    began = time.perf_counter()
    scorer = Scorer(sketch, target, mass, size)
    scorer.no_force_rmse = scorer(roll(start, frames, middle=middle["none"])).mass_rmse
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
        roll,
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
    final["constant"] = roll(
        start, frames, constant_field(vector, keys, cells, frames), middle=middle["constant"]
    )
    methods["constant"] = scorer(final["constant"])
    methods["constant"].seconds, methods["constant"].rollouts = time.perf_counter() - began, rollouts + 1
    methods["constant"].extra = {"vector": vector.tolist()}

    if controller is not None:
        began = time.perf_counter()
        loop = ClosedLoop(controller, sketch, frames, seed=seed, critic=critic, candidates=candidates)
        final["ours"] = roll(start, frames, loop=loop, middle=middle["ours"])
        methods["ours"] = scorer(final["ours"])
        methods["ours"].seconds = time.perf_counter() - began
        methods["ours"].extra = {"plan_ms": loop.plan_ms, "candidates": loop.candidates}

    began = time.perf_counter()

    net = (ORACLE_KEYS, *ORACLE_NET[dim], dim)

    def net_field(params):
        return ForceField(_net_to_field(params.reshape(net), keys, cells), frames)

    seed_params = np.broadcast_to(vector, net).reshape(-1).copy()
    (score, params), rollouts = _cem(
        roll,
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
    final["oracle"] = roll(start, frames, net_field(params), middle=middle["oracle"])
    methods["oracle"] = scorer(final["oracle"])
    methods["oracle"].seconds, methods["oracle"].rollouts = time.perf_counter() - began, rollouts + 1
    out["final"] = final  # final positions per method, for the plots (not written to JSON)
    out["middle"] = {m: rows[0] for m, rows in middle.items() if rows}
    out["sketch"], out["start"], out["target"] = sketch, x0, target
    out["size"] = tuple(size)
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
                "spray": float(np.mean([o.spray for o in rows])),
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
    out = {
        k: v
        for k, v in result.items()
        if k not in ("final", "middle", "sketch", "start", "target", "methods")
    }
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
            size = result["size"]
            ax.set_xlim(0, size[0]), ax.set_ylim(0, size[1]), ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{method} {result['methods'][method].score:.2f}", fontsize=8)
    fig.tight_layout()
    examples_png = folder / f"control_{family}_examples.png"
    fig.savefig(examples_png)
    plt.close(fig)
    return [scores_png, examples_png, *case_sheets(done, methods, folder, family)]


def _draw_sketch(ax, sketch) -> None:
    for stroke in sketch.paths:
        ax.plot(stroke[:, 0], stroke[:, 1], color="C3", lw=1.4)
        ax.annotate(
            "", stroke[-1, :2], stroke[max(0, len(stroke) - 4), :2], arrowprops={"color": "C3", "width": 1.2}
        )
    for region in sketch.regions:
        closed = np.concatenate([region, region[:1]])
        ax.plot(closed[:, 0], closed[:, 1], color="C3", lw=1.4)


def case_sheets(done: list[dict], methods: list[str], folder: Path, family: str) -> list[Path]:
    """One PNG per case: each method's fluid at the window's start, middle and end (x-y; 3D seen from the
    front), with the sketch drawn, the score in the title."""
    import matplotlib.pyplot as plt

    paths = []
    for k, result in enumerate(done):
        size = result["size"]
        fig, axes = plt.subplots(
            len(methods), 3, figsize=(7.5, 7.5 * len(methods) / 3 * size[1] / size[0] + 0.4), dpi=90
        )
        axes = np.atleast_2d(axes)
        for row, method in zip(axes, methods):
            frames = [result["start"], result["middle"].get(method), result["final"][method]]
            for col, (ax, x) in enumerate(zip(row, frames)):
                if x is not None:
                    ax.scatter(x[:, 0], x[:, 1], s=0.2, color="C0")
                _draw_sketch(ax, result["sketch"])
                ax.set_xlim(0, size[0]), ax.set_ylim(0, size[1]), ax.set_aspect("equal")
                ax.set_xticks([]), ax.set_yticks([])
                when = ("start", "middle", "end")[col]
                score = f" (score {result['methods'][method].score:.2f})" if col == 2 else ""
                ax.set_title(f"{method}: {when}{score}", fontsize=8)
        fig.suptitle(f"{family}: {result['name']}", fontsize=9)
        fig.tight_layout()
        path = folder / f"control_{family}_case{k}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def evaluate_control(
    family: str,
    weights: Path | None,
    cases: list[Case] | None = None,
    generated: int = 4,
    drawn: int = 4,
    budget: Budget | None = None,
    plots: Path | None = None,
    progress: bool = True,
    candidates: int | None = None,
    plant: str = "solver",
    scene_cases_too: bool = True,
) -> tuple[dict, list[dict]]:
    """`candidates` fields per plan (None: the controller's default for the dimension), chosen by the
    family's learned stepper (1: no critic). `plant`:
    what advances every method's frames, "solver" or "hybrid" (the window's default mode)."""
    from tqdm import tqdm

    from neural.data import _family_solver

    solver = _family_solver(family, for_controller=True)
    controller = Controller.load(weights) if weights is not None else None
    critic = family_critic(family) if candidates is None or candidates > 1 else None
    if plant not in PLANTS:
        raise ValueError(f"unknown plant {plant!r}; choose one of {', '.join(PLANTS)}")
    plant_stepper = family_plant(family) if plant == "hybrid" else None
    if cases is None:  # held-out generated cases, the first drawn ones, and every case on an app scene
        listed = load_cases(default_cases(family))
        drawn_cases = [c for c in listed if family_case(c.scene)][:drawn]
        scene_cases = [c for c in listed if not family_case(c.scene)] if scene_cases_too else []
        cases = generated_cases(family, solver, generated) + drawn_cases + scene_cases
    results, scenes = [], SceneSolvers()
    for k, case in enumerate(tqdm(cases, desc=f"eval control {family}", unit="case", disable=not progress)):
        budget = budget or Budget.for_dim(len(solver.config.size))
        results.append(
            run_case(case, solver, controller, budget, family, k, critic, candidates, scenes, plant_stepper)
        )
    scenes.close()
    summary = summarise(results)
    summary["family"], summary["weights"] = family, str(weights)
    summary["critic"] = None if critic is None else critic.name
    summary["candidates"] = max(
        [r["methods"]["ours"].extra["candidates"] for r in results if "ours" in r.get("methods", {})],
        default=1,
    )
    summary["plant"] = plant
    if plant_stepper is not None:
        summary["plant_weights"] = plant_stepper.weights
    if plots is not None:
        summary["plots"] = [str(p) for p in plot(results, summary, plots, family)]
    return summary, [case_json(r) for r in results]


def family_critic(family: str) -> Critic | None:
    """The family's own learned stepper as the critic (None when it has no shipped weights)."""
    from neural.device import place
    from neural.model import load_weights
    from neural.stepper import find_weights_dir

    path = find_weights_dir() / f"{family}.safetensors"
    return Critic(place(load_weights(path)), family) if path.is_file() else None


def family_plant(family: str):
    """The family's hybrid stepper (its shipped weights and guard), as the window would run it."""
    from neural.catalog import make_stepper
    from neural.families import random_scene
    from neural.stepper import HybridStepper
    from sim.scene import parse_scene

    scene = parse_scene(random_scene(family, np.random.default_rng(0), True), f"<{family}>")
    stepper, message = make_stepper("hybrid", scene, model=family)
    if not isinstance(stepper, HybridStepper):
        raise ValueError(f"no hybrid plant for {family}: {message}")
    return stepper


def default_cases(family: str) -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "control" / f"cases_{family}.toml"
