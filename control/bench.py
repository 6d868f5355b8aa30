"""`bench control`: the sketch controller against no force, the best constant force and the oracle (one run
of the eval on water2d, and a smaller one on water3d) and its planning latency."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from control.condition import CONTROL_GRID_3D, fluid_channels_count
from control.controller import Controller, weights_dir
from control.evaluate import Budget, evaluate_control
from control.sketch import parse_sketch
from sim.bench import missing_weights, record

FAMILY = "water2d"
FAMILY_3D = "water3d"


def plan_latency(controller: Controller, repeats: int) -> float:
    """Median ms of one plan (10 DDIM steps) on the control grid (32², or 16³ in 3D) of a unit domain
    with a typical fluid (a block in a corner) and an arrow across it."""
    dim = controller.spec.dim
    n = 32 if dim == 2 else CONTROL_GRID_3D
    fluid = np.zeros((fluid_channels_count(dim), *(n,) * dim), np.float32)
    fluid[(0, slice(n // 8, 3 * n // 8), slice(0, 5 * n // 16))] = 1.0
    arrow = [[0.25, 0.15, 0.5], [0.5, 0.2, 0.5], [0.75, 0.15, 0.5]]
    sketch = parse_sketch([[p[:dim] for p in arrow]], (1.0,) * dim, 1 / n).sketch
    controller.plan(fluid, sketch, 40, 1 / n)
    times = []
    for k in range(repeats):
        began = time.perf_counter()
        controller.plan(fluid, sketch, 40, 1 / n, seed=k)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def control3d_records(quick: bool = False, report_path: Path | None = None) -> list[dict]:
    """`eval control --family water3d` on 2 generated + 2 drawn cases with the 3D search budget."""
    weights = weights_dir() / f"{FAMILY_3D}.safetensors"
    if missing_weights(weights, "control3d", f"python main.py train-control --family {FAMILY_3D}"):
        return []
    controller = Controller.load(weights)
    plan_ms = plan_latency(controller, 3 if quick else 10)
    summary, cases = evaluate_control(
        FAMILY_3D,
        weights,
        generated=1 if quick else 2,
        drawn=0 if quick else 2,
        budget=Budget(1, 3, 1, 3) if quick else Budget.for_dim(3),
        plots=None if quick else Path("docs") / "eval",
        progress=not quick,
    )
    if report_path is not None:
        report_path.write_text(json.dumps({"summary": summary, "cases": cases}, indent=1, default=str) + "\n")
    return [
        record("control3d.plan_ms", plan_ms, "ms", steps=controller.steps),
        record(
            "control3d.vs_constant.error_ratio",
            summary["vs_constant_error_ratio"],
            "x",
            target="<= 0.7",
            cases=summary["cases"],
        ),
        record("control3d.vs_oracle.improvement_share", summary["vs_oracle_improvement_share"], "x"),
        *[
            record(f"control3d.score.{m}", summary[m]["score"], "")
            for m in ("none", "constant", "ours", "oracle")
        ],
    ]


def control_records(
    quick: bool = False, report_path: Path | None = Path("control_report.json")
) -> list[dict]:
    """The same evaluation as `eval control --family water2d` (4 generated + 4 drawn cases), whose
    per-case report goes to `report_path`."""
    import torch

    torch.set_num_threads(1)  # a plan shares the machine with the solver; more threads only fight it
    weights = weights_dir() / f"{FAMILY}.safetensors"
    controller = Controller.load(weights)
    plan_ms = plan_latency(controller, 5 if quick else 30)
    budget = Budget(1, 4, 1, 4) if quick else Budget()
    summary, cases = evaluate_control(
        FAMILY,
        weights,
        generated=1 if quick else 4,
        drawn=1 if quick else 4,
        budget=budget,
        plots=None if quick else Path("docs") / "eval",
        progress=not quick,
    )
    if report_path is not None:
        report_path.write_text(json.dumps({"summary": summary, "cases": cases}, indent=1, default=str) + "\n")
    return [
        record("control.plan_ms", plan_ms, "ms", target="<= 50", steps=controller.steps),
        record(
            "control.closed_loop.plan_ms", summary["plan_ms"]["mean"], "ms", plans=summary["plan_ms"]["plans"]
        ),
        record(
            "control.vs_constant.error_ratio",
            summary["vs_constant_error_ratio"],
            "x",
            target="<= 0.7",
            cases=summary["cases"],
        ),
        record(
            "control.vs_oracle.improvement_share",
            summary["vs_oracle_improvement_share"],
            "x",
            target=">= 0.8",
            oracle_s=summary["oracle"]["seconds"],
        ),
        *[
            record(f"control.score.{m}", summary[m]["score"], "")
            for m in ("none", "constant", "ours", "oracle")
        ],
        *control3d_records(quick, report_path and report_path.with_name("control3d_report.json")),
    ]
