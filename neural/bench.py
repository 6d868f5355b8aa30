"""`bench neural`: hybrid against the solver (latency) and against low-resolution MPM (accuracy), one run."""

from __future__ import annotations

import statistics
from pathlib import Path

from neural.catalog import make_stepper
from neural.evaluate import evaluate
from neural.stepper import HybridStepper, NumericalStepper
from sim.bench import record
from sim.build import build_solver
from sim.scene import load_scene

FAMILY = "water2d"


def _median_ms(stepper, solver, frames: int) -> float:
    for _ in range(3):  # compile kernels, warm caches
        stepper.advance(solver)
    return statistics.median(stepper.advance(solver).latency_ms for _ in range(frames))


def latency_records(frames: int) -> list[dict]:
    """The dam break at 8k particles (4 per cell) and 32k (16 per cell) on the same 128-cell grid."""
    records = []
    for label, ppc in (("8k", 4), ("32k", 16)):
        scene = load_scene("dam_break", {"particles_per_cell": ppc})
        hybrid, message = make_stepper("hybrid", scene)
        if not isinstance(hybrid, HybridStepper):
            raise RuntimeError(message)
        solver = build_solver(scene)
        numerical_ms = _median_ms(NumericalStepper(), solver, frames)
        hybrid_ms = _median_ms(hybrid, solver, frames)
        records += [
            record(f"neural.numerical.ms_per_frame.{label}", numerical_ms, "ms", particles=solver.n),
            record(f"neural.hybrid.ms_per_frame.{label}", hybrid_ms, "ms", particles=solver.n,
                   fallback_rate=hybrid.fallback_rate),
            record(f"neural.hybrid_vs_numerical.latency_ratio.{label}", hybrid_ms / numerical_ms, "x",
                   target="<= 0.2"),
        ]
        solver.close()
    return records


def neural_records(quick: bool = False) -> list[dict]:
    weights = Path(__file__).resolve().parent.parent / "assets" / "models" / f"{FAMILY}.safetensors"
    report = evaluate(FAMILY, weights, rollouts=1 if quick else 3, frames=30 if quick else 100)
    rmse = report["mass_rmse"]
    records = latency_records(5 if quick else 15)
    records += [
        record("neural.hybrid_vs_lowres.rmse_ratio", rmse["hybrid"] / rmse["lowres"], "x", target="<= 1.0",
               lowres=report["lowres"], hybrid_ms=report["ms_per_frame"]["hybrid"],
               lowres_ms=report["ms_per_frame"]["lowres"]),
        record("neural.hybrid.mass_rmse", rmse["hybrid"], ""),
        record("neural.neural_only.mass_rmse", rmse["neural"], ""),
        record("neural.lowres.mass_rmse", rmse["lowres"], ""),
        record("neural.fallback_rate", report["fallback_rate"], ""),
        record("neural.guard.precision", report["guard"]["precision"], ""),
        record("neural.guard.recall", report["guard"]["recall"], ""),
        record("neural.cosine_trigger.precision", report["cosine_trigger"]["precision"], ""),
        record("neural.cosine_trigger.recall", report["cosine_trigger"]["recall"], ""),
    ]
    return records
