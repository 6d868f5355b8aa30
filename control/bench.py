"""`bench control`: the sketch controller against no force, the best constant force and the oracle on
water2d (its held-out and drawn cases plus the cases on dam_break and water_ramps), sand_ramps2d and water3d,
water2d again with the hybrid as the plant, the spray of every method, and planning latency.

The evaluations are independent, so they run in worker processes (two by default: the machine's cores);
the plan latencies are timed first, in this process, with nothing else running.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from control.condition import CONTROL_GRID_3D, fluid_channels_count
from control.controller import QUICK_STEPS, Controller, weights_dir
from control.evaluate import METHODS, Budget, evaluate_control
from control.sketch import parse_sketch
from sim.bench import missing_weights, record

FAMILY = "water2d"
FAMILY_3D = "water3d"
FAMILIES = ("water2d", "sand_ramps2d", "water3d")
WORKERS = 2


def _plan_inputs(controller: Controller):
    """A unit domain's control grid (32², or 16³ in 3D) with a typical fluid (a block in a corner) and
    an arrow across it."""
    dim = controller.spec.dim
    n = 32 if dim == 2 else CONTROL_GRID_3D
    fluid = np.zeros((fluid_channels_count(dim), *(n,) * dim), np.float32)
    fluid[(0, slice(n // 8, 3 * n // 8), slice(0, 5 * n // 16))] = 1.0
    arrow = [[0.25, 0.15, 0.5], [0.5, 0.2, 0.5], [0.75, 0.15, 0.5]]
    sketch = parse_sketch([[p[:dim] for p in arrow]], (1.0,) * dim, 1 / n).sketch
    return fluid, sketch, 1 / n


def plan_latency(controller: Controller, repeats: int, preview: bool = False) -> float:
    """Median ms of one plan on a unit domain: the window's first answer to a stroke
    (`Controller.preview`), or one field in the controller's full DDIM steps."""
    fluid, sketch, h = _plan_inputs(controller)

    def one(seed: int) -> None:
        if preview:
            controller.preview(fluid, sketch, 40, h, seed)
        else:
            controller.candidates(fluid, sketch, 40, h, 1, seed=seed)

    one(0)
    times = []
    for k in range(repeats):
        began = time.perf_counter()
        one(k)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def _evaluate(job: dict) -> dict:
    """One evaluation in a worker process: (summary, cases) of `evaluate_control` for the job."""
    os.environ.setdefault("SLUICE_CPU_THREADS", "1")
    import torch

    from sim.arch import init_taichi

    init_taichi("cpu")
    torch.set_num_threads(1)  # plans and solver take turns; more threads only fight each other
    family = job["family"]
    dim = 3 if family.endswith("3d") else 2
    quick = job["quick"]
    budget = Budget(1, 3, 1, 3) if quick else Budget.for_dim(dim)
    began = time.perf_counter()
    summary, cases = evaluate_control(
        family,
        weights_dir() / f"{family}.safetensors",
        generated=1 if quick else (2 if dim == 3 else 4),
        drawn=1 if quick else (2 if dim == 3 else 4),
        budget=budget,
        plots=None if quick or job["plant"] != "solver" else Path("docs") / "eval",
        progress=False,
        plant=job["plant"],
        scene_cases_too=not quick,
    )
    summary["wall_s"] = time.perf_counter() - began
    return {"job": job, "summary": summary, "cases": cases}


def _family_records(prefix: str, summary: dict) -> list[dict]:
    records = [
        record(
            f"{prefix}.vs_constant.error_ratio",
            summary["vs_constant_error_ratio"],
            "x",
            cases=summary["cases"],
            candidates=summary["candidates"],
            critic=summary["critic"],
            plant=summary["plant"],
        ),
        record(f"{prefix}.vs_oracle.improvement_share", summary["vs_oracle_improvement_share"], "x"),
        record(
            f"{prefix}.closed_loop.plan_ms",
            summary["plan_ms"]["mean"],
            "ms",
            plans=summary["plan_ms"]["plans"],
        ),
    ]
    records += [record(f"{prefix}.score.{m}", summary[m]["score"], "") for m in METHODS if m in summary]
    records += [
        record(f"{prefix}.spray.{m}", summary[m]["spray"], "", note="mass share in isolated cells")
        for m in METHODS
        if m in summary
    ]
    for m, value in summary.get("region", {}).items():
        records.append(record(f"{prefix}.region.inside_fraction.{m}", value, ""))
    for m, value in summary.get("path", {}).items():
        records.append(record(f"{prefix}.path.centroid_error.{m}", value, "m"))
    return records


def control_records(
    quick: bool = False, report_path: Path | None = Path("control_report.json"), families=FAMILIES
) -> list[dict]:
    """Plan latencies, then every family's evaluation (and water2d's with the hybrid plant) in worker
    processes; per-case reports go to `report_path`."""
    import torch

    torch.set_num_threads(1)  # a plan shares the machine with the solver; more threads only fight it
    records = []
    present = []
    for family in families:
        weights = weights_dir() / f"{family}.safetensors"
        if not missing_weights(
            weights, f"control.{family}", f"python main.py train-control --family {family}"
        ):
            present.append(family)
    if FAMILY in present:
        controller = Controller.load(weights_dir() / f"{FAMILY}.safetensors")
        repeats = 5 if quick else 30
        records += [
            record(
                "control.plan_ms",
                plan_latency(controller, repeats, preview=True),
                "ms",
                target="<= 50",
                steps=QUICK_STEPS,
                note="the window's first answer to a stroke (Controller.preview: one field), one thread",
            ),
            record(
                "control.full_plan_ms",
                plan_latency(controller, repeats),
                "ms",
                steps=controller.steps,
                note="one field in the controller's full DDIM steps, no critic",
            ),
        ]
    if FAMILY_3D in present:
        controller = Controller.load(weights_dir() / f"{FAMILY_3D}.safetensors")
        records.append(
            record("control3d.plan_ms", plan_latency(controller, 3 if quick else 10, preview=True), "ms")
        )
    jobs = [{"family": f, "plant": "solver", "quick": quick} for f in present]
    if FAMILY in present:
        jobs.insert(1, {"family": FAMILY, "plant": "hybrid", "quick": quick})
    # the slowest first, so the two workers finish together
    order = {"sand_ramps2d": 0, "water2d": 1, "water3d": 2}
    jobs.sort(key=lambda j: (order.get(j["family"], 3), j["plant"] != "solver"))
    with ProcessPoolExecutor(min(WORKERS, len(jobs) or 1), mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_evaluate, jobs))
    reports = {}
    for result in results:
        job, summary = result["job"], result["summary"]
        prefix = f"control.{job['family']}" + (".hybrid_plant" if job["plant"] != "solver" else "")
        records += _family_records(prefix, summary)
        records.append(record(f"{prefix}.wall_s", summary["wall_s"], "s"))
        reports[prefix] = {"summary": summary, "cases": result["cases"]}
    by_name = {r["name"]: r for r in records}
    if f"control.{FAMILY}.vs_constant.error_ratio" in by_name:  # the headline records keep their names
        solver_ratio = by_name[f"control.{FAMILY}.vs_constant.error_ratio"]["value"]
        records += [
            record("control.vs_constant.error_ratio", solver_ratio, "x", target="<= 0.8", family=FAMILY),
            record(
                "control.vs_oracle.improvement_share",
                by_name[f"control.{FAMILY}.vs_oracle.improvement_share"]["value"],
                "x",
                target=">= 0.6",
            ),
        ]
        hybrid = by_name.get(f"control.{FAMILY}.hybrid_plant.vs_constant.error_ratio")
        if hybrid is not None:
            records.append(
                record(
                    "control.hybrid_plant.vs_constant.error_ratio",
                    hybrid["value"],
                    "x",
                    note=f"the solver plant's: {solver_ratio:.3f}; target within 10%",
                )
            )
    if report_path is not None:
        report_path.write_text(json.dumps(reports, indent=1, default=str) + "\n")
    return records


def control3d_records(quick: bool = False, report_path: Path | None = None) -> list[dict]:
    """The water3d part alone."""
    return control_records(quick, report_path, families=(FAMILY_3D,))
