"""`bench control`: the sketch controller against no force, the best constant force and the oracle (one run
of the eval on water2d) and its planning latency."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from control.controller import Controller, weights_dir
from control.evaluate import Budget, evaluate_control
from control.sketch import parse_sketch
from sim.bench import record

FAMILY = "water2d"


def plan_latency(controller: Controller, repeats: int) -> float:
    """Median ms of one plan (10 DDIM steps) on a 32x32 control grid with a typical fluid and arrow."""
    fluid = np.zeros((4, 32, 32), np.float32)
    fluid[0, 4:12, :10] = 1.0
    sketch = parse_sketch([[[0.25, 0.15], [0.5, 0.2], [0.75, 0.15]]], (1.0, 1.0), 1 / 32).sketch
    controller.plan(fluid, sketch, 40, 1 / 32)
    times = []
    for k in range(repeats):
        began = time.perf_counter()
        controller.plan(fluid, sketch, 40, 1 / 32, seed=k)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


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
    ]
