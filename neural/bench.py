"""`bench neural`: the hybrid on each app scene that has weights, at the scene's own resolution, against
the solver (latency, observables) and fixed low-resolution grids of the same scene (accuracy at equal
cost), all in one run (neural.scene_eval); the guard's precision and recall over those scenes; and the
families' held-out rollouts. In 2D and, where their weights ship, in 3D (dam_break_3d and sand_pile_3d)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from neural.catalog import make_stepper
from neural.evaluate import evaluate
from neural.families import FAMILY_DIM, FAMILY_DOMAIN
from neural.grid import ModelGrid
from neural.model import bf16_autocast
from neural.scene_eval import APP_SCENES, evaluate_long_run, evaluate_scene, guard_records
from neural.stepper import NeuralStepper, find_weights_dir
from sim.bench import missing_weights, record
from sim.build import build_solver
from sim.scene import load_scene

FAMILY = "water2d"
FAMILY_3D = "water_tank3d"  # dam_break_3d's weights: its tank at its resolution


def autocast_records(network, solver, repeats: int = 5) -> list[dict]:
    """One forward at a 3D family's full grid (its whole cube) on the solver's particles, in float32 and under
    bfloat16 autocast: the median latency of each and the largest difference of the predicted velocities."""
    grid = ModelGrid(3, network.spec.h, (FAMILY_DOMAIN[FAMILY_3D],) * 3)
    features = NeuralStepper(network).features(solver, grid)[None]
    gravity = solver.gravity.to_numpy().astype(np.float32)
    out, ms = {}, {}
    for name, on in (("fp32", False), ("bf16", True)):
        with torch.no_grad(), bf16_autocast(on):
            network(features, gravity=gravity)  # warm up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                out[name] = network(features, gravity=gravity)
                times.append((time.perf_counter() - start) * 1e3)
        ms[name] = statistics.median(times)
    shape = "x".join(map(str, grid.shape))
    return [
        record("neural3d.forward_ms.fp32", ms["fp32"], "ms", grid=shape),
        record("neural3d.forward_ms.bf16", ms["bf16"], "ms", grid=shape),
        record(
            "neural3d.bf16_vs_fp32.max_abs_velocity", float((out["fp32"] - out["bf16"]).abs().max()), "m/s"
        ),
    ]


SCENE_TARGETS = {
    "dam_break": {"latency_ratio": "<= 0.2", "rmse_ratio": "<= 0.8", "learned_share": ">= 0.85"},
    "dam_break_3d": {"latency_ratio": "<= 0.3", "rmse_ratio": "<= 1.0"},
    "sand_pile_3d": {"latency_ratio": "<= 0.3", "rmse_ratio": "<= 1.0"},  # the 3D targets
}
DEFAULT_TARGETS = {"latency_ratio": "<= 0.3", "rmse_ratio": "<= 1.0", "learned_share": ">= 0.7"}


def scene_records(result: dict, prefix: str = "neural") -> list[dict]:
    """The records of one evaluate_scene() result: ratios with their targets, then the observables."""
    name, hybrid, solver = result["scene"], result["hybrid"], result["solver"]
    base = f"{prefix}.scene.{name}"
    targets = SCENE_TARGETS.get(name, DEFAULT_TARGETS)
    share = hybrid["learned_share"]
    records = [
        record(
            f"{base}.latency_ratio",
            result["latency_ratio"],
            "x",
            target=targets.get("latency_ratio"),
            hybrid_ms=hybrid["ms_per_frame"],
            learned_ms=hybrid.get("learned_ms_per_frame"),
            solver_ms=solver["ms_per_frame"],
            learned_share=share,
            frames=result["frames"],
            particles=result["particles"],
            hybrid_ms_rounds=hybrid.get("ms_rounds"),
            rounds_follow_rollout=hybrid.get("rounds_follow_rollout"),
            solver_ms_rounds=solver.get("ms_rounds"),
        ),
        record(
            f"{base}.learned_share",
            share,
            "",
            target=targets.get("learned_share"),
            **{k: hybrid[k] for k in ("fallbacks", "refails", "handover_failures")},
        ),
    ]
    if "rmse_ratio" in result:
        comparator = result["lowres"][str(result["rmse_comparator"])]
        records.append(
            record(
                f"{base}.rmse_ratio",
                result["rmse_ratio"],
                "x",
                target=targets.get("rmse_ratio"),
                comparator_grid=result["rmse_comparator"],
                comparator_ms=comparator["ms_per_frame"],
                learned_share=share,
            )
        )
    if name == "dam_break":
        records += [
            record(f"{base}.front_error", result["front_error"], "", target="<= 0.15", learned_share=share),
            record(f"{base}.solver_front_error", result["solver_front_error"], ""),
            record(f"{base}.column_error", result["column_error"], "L", learned_share=share),
        ]
    records.append(record(f"{base}.hybrid.mass_rmse", hybrid["mass_rmse"], "", learned_share=share))
    for grid, low in result["lowres"].items():
        records.append(
            record(
                f"{base}.lowres{grid}.mass_rmse",
                low["mass_rmse"],
                "",
                ms=low["ms_per_frame"],
                ms_rounds=low.get("ms_rounds"),
            )
        )
    for key in ("peak_speed", "j_p1", "j_p99", "fraction_max", "fraction_p99"):
        unit = "m/s" if key == "peak_speed" else ""
        records.append(record(f"{base}.hybrid.{key}", hybrid[key], unit, solver=solver[key]))
    if "on_obstacles" in hybrid:  # material left on the obstacles over the last frames
        records.append(
            record(f"{base}.hybrid.on_obstacles", hybrid["on_obstacles"], "", solver=solver["on_obstacles"])
        )
    return records


def scene_results(dim: int, prefix: str, quick: bool) -> tuple[list[dict], list[dict]]:
    """Every app scene of `dim` whose weights ship, at its own resolution (120 frames; 10 and no sheet with
    `quick`), against the solver and fixed coarse grids: its records and evaluate_scene() results; a frame
    sheet each in docs/eval/."""
    records, results = [], []
    for name, family in APP_SCENES.items():
        if FAMILY_DIM[family] != dim or missing_weights(
            find_weights_dir() / f"{family}.safetensors",
            f"{prefix}.scene.{name}",
            f"python main.py train --family {family}",
        ):
            continue
        sheet = None if quick else Path("docs") / "eval" / f"{name}_sheet.png"
        result = evaluate_scene(
            name, frames=10 if quick else 120, lowres=not quick, sheet=sheet, timing_rounds=not quick
        )
        results.append(result)
        records += scene_records(result, prefix)
    return records, results


def scene_records_3d(quick: bool) -> tuple[list[dict], list[dict]]:
    """The bf16 records on dam_break_3d (with FAMILY_3D) first, then the 3D app scenes whose weights ship
    (dam_break_3d: FAMILY_3D, sand_pile_3d: sand_tank3d)."""
    records, results = scene_results(3, "neural3d", quick)
    if any(result["weights"] == FAMILY_3D for result in results):
        scene = load_scene("dam_break_3d")
        hybrid, _ = make_stepper("hybrid", scene, FAMILY_3D)
        solver = build_solver(scene)
        records = autocast_records(hybrid.neural.model, solver) + records
        solver.close()
    return records, results


def neural3d_records(quick: bool = False) -> list[dict]:
    weights = find_weights_dir() / f"{FAMILY_3D}.safetensors"
    records, results = scene_records_3d(quick)
    if results:
        precision, recall, needed = guard_records(results)
        records += [
            record("neural3d.guard.precision", precision, "", needed_share=needed),
            record("neural3d.guard.recall", recall, ""),
        ]
    if missing_weights(weights, "neural3d.family", f"python main.py train --family {FAMILY_3D}"):
        return records
    report = evaluate(FAMILY_3D, weights, rollouts=1, frames=20 if quick else 60)
    return records + accuracy_records("neural3d.family", report)


def accuracy_records(prefix: str, report: dict) -> list[dict]:
    """The family's held-out rollouts (evaluate()): mass RMSE of the hybrid, the network alone and the
    low-resolution MPM evaluate() chose."""
    rmse = report["mass_rmse"]
    return [
        record(f"{prefix}.hybrid.mass_rmse", rmse["hybrid"], "", fallback_rate=report["fallback_rate"]),
        record(f"{prefix}.neural_only.mass_rmse", rmse["neural"], ""),
        record(f"{prefix}.lowres.mass_rmse", rmse["lowres"], "", lowres=report["lowres"]),
        record(f"{prefix}.guard.precision", report["guard"]["precision"], ""),
        record(f"{prefix}.guard.recall", report["guard"]["recall"], ""),
    ]


def long_run_records(result: dict) -> list[dict]:
    """The resting pool after `frames` frames: the hybrid's mean height and cavities beside the solver's."""
    base, hybrid, solver = f"neural.long_run.{result['scene']}", result["hybrid"], result["solver"]
    share = hybrid["learned_share"]
    return [
        record(
            f"{base}.height_ratio",
            hybrid["mean_height"] / solver["mean_height"],
            "",
            learned_share=share,
            frames=result["frames"],
        ),
        record(
            f"{base}.hybrid.cavities", hybrid["cavities"], "", solver=solver["cavities"], learned_share=share
        ),
        record(f"{base}.hybrid.mean_height", hybrid["mean_height"], "m", solver=solver["mean_height"]),
        record(f"{base}.learned_share", share, ""),
    ]


def neural_records(quick: bool = False) -> list[dict]:
    """The 2D suite (neural2d_records), then the 3D suite."""
    return neural2d_records(quick) + neural3d_records(quick)


def neural2d_records(quick: bool = False) -> list[dict]:
    """Every 2D app scene with weights at its own resolution (scene_results), the guard over all of them,
    the resting pool after a long run, and the water2d family's held-out rollouts."""
    records, results = scene_results(2, "neural", quick)
    precision, recall, needed = guard_records(results)
    records += [
        record("neural.guard.precision", precision, "", target=">= 0.5", needed_share=needed),
        record("neural.guard.recall", recall, "", target=">= 0.5"),
    ]
    if not missing_weights(
        find_weights_dir() / "water2d.safetensors",
        "neural.long_run.dam_break",
        "python main.py train --family water2d",
    ):
        records += long_run_records(evaluate_long_run("dam_break", frames=30 if quick else 600))
    weights = find_weights_dir() / f"{FAMILY}.safetensors"
    report = evaluate(FAMILY, weights, rollouts=1 if quick else 2, frames=20 if quick else 60)
    records += accuracy_records("neural.family", report)
    records += [
        record("neural.family.cosine_trigger.precision", report["cosine_trigger"]["precision"], ""),
        record("neural.family.cosine_trigger.recall", report["cosine_trigger"]["recall"], ""),
    ]
    return records
