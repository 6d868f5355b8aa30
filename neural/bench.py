"""`bench neural`: hybrid against the solver (latency) and against low-resolution MPM (accuracy), one run;
in 2D (water2d weights, dam_break) and, when water3d weights ship, in 3D (dam_break_3d)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from neural.catalog import make_stepper
from neural.evaluate import evaluate
from neural.families import DOMAIN
from neural.grid import ModelGrid
from neural.model import bf16_autocast
from neural.stepper import HybridStepper, NeuralStepper, NumericalStepper, find_weights_dir
from sim import state as state_io
from sim.bench import missing_weights, record
from sim.build import build_solver
from sim.scene import load_scene

FAMILY = "water2d"
FAMILY_3D = "water3d"
# dam_break_3d at 12 particles per cell (instead of 8) holds 32.8k particles on its 40-cell grid.
DAM_BREAK_3D_PPC = 12


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
            record(
                f"neural.hybrid.ms_per_frame.{label}",
                hybrid_ms,
                "ms",
                particles=solver.n,
                fallback_rate=hybrid.fallback_rate,
            ),
            record(
                f"neural.hybrid_vs_numerical.latency_ratio.{label}",
                hybrid_ms / numerical_ms,
                "x",
                target="<= 0.2",
            ),
        ]
        solver.close()
    return records


def autocast_records(network, solver, repeats: int = 5) -> list[dict]:
    """One forward at a 3D family's full grid (the 1 m cube) on the solver's particles, in float32 and under
    bfloat16 autocast: the median latency of each and the largest difference of the predicted velocities."""
    grid = ModelGrid(3, network.spec.h, (DOMAIN,) * 3)
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


def _frame_reports(stepper, solver, start, frames: int) -> list:
    """The reports of `frames` frames from the state `start` (after one frame to compile and warm up).
    Latencies are averaged over all of them: a hybrid's fallbacks, and the solver frames after each
    (hysteresis), cluster, and a median would hide them."""
    state_io.restore(solver, start)
    stepper.advance(solver)
    state_io.restore(solver, start)
    stepper.reset()
    return [stepper.advance(solver) for _ in range(frames)]


def latency_records_3d(frames: int) -> list[dict]:
    """dam_break_3d at 32.8k particles, the first `frames` frames: the hybrid with the water3d weights
    against the solver (means, fallbacks included), and the learned frame alone (median)."""
    scene = load_scene("dam_break_3d", {"particles_per_cell": DAM_BREAK_3D_PPC})
    hybrid, message = make_stepper("hybrid", scene, FAMILY_3D)
    if not isinstance(hybrid, HybridStepper):
        raise RuntimeError(message)
    solver = build_solver(scene)
    records = autocast_records(hybrid.neural.model, solver)
    start = state_io.snapshot(solver)  # both steppers run the same first frames of the scene
    numerical_ms = float(
        np.mean([r.latency_ms for r in _frame_reports(NumericalStepper(), solver, start, frames)])
    )
    reports = _frame_reports(hybrid, solver, start, frames)
    hybrid_ms = float(np.mean([r.latency_ms for r in reports]))
    learned_ms = statistics.median([r.latency_ms for r in reports if r.path == "neural"] or [np.nan])
    numerical_share = np.mean([r.path != "neural" for r in reports])
    records += [
        record("neural3d.numerical.ms_per_frame", numerical_ms, "ms", particles=solver.n, frames=frames),
        record("neural3d.neural.ms_per_frame", learned_ms, "ms", note="the hybrid's learned frames, median"),
        record(
            "neural3d.hybrid.ms_per_frame",
            hybrid_ms,
            "ms",
            particles=solver.n,
            frames=frames,
            fallback_rate=hybrid.fallback_rate,
            solver_frame_share=float(numerical_share),
            autocast=hybrid.neural.autocast,
        ),
        record(
            "neural3d.hybrid_vs_numerical.latency_ratio",
            hybrid_ms / numerical_ms,
            "x",
            target="<= 0.25",
            particles=solver.n,
        ),
        record("neural3d.neural_vs_numerical.latency_ratio", learned_ms / numerical_ms, "x"),
    ]
    solver.close()
    return records


def neural3d_records(quick: bool = False) -> list[dict]:
    weights = find_weights_dir() / f"{FAMILY_3D}.safetensors"
    if missing_weights(weights, "neural3d", f"python main.py train --family {FAMILY_3D}"):
        return []
    report = evaluate(FAMILY_3D, weights, rollouts=1 if quick else 2, frames=20 if quick else 60)
    return latency_records_3d(5 if quick else 40) + accuracy_records("neural3d", report)


def accuracy_records(prefix: str, report: dict) -> list[dict]:
    """Hybrid against low-resolution MPM at equal wall time, from an evaluate() report."""
    rmse = report["mass_rmse"]
    return [
        record(
            f"{prefix}.hybrid_vs_lowres.rmse_ratio",
            rmse["hybrid"] / rmse["lowres"],
            "x",
            target="<= 1.0",
            lowres=report["lowres"],
            hybrid_ms=report["ms_per_frame"]["hybrid"],
            lowres_ms=report["ms_per_frame"]["lowres"],
        ),
        record(f"{prefix}.hybrid.mass_rmse", rmse["hybrid"], ""),
        record(f"{prefix}.neural_only.mass_rmse", rmse["neural"], ""),
        record(f"{prefix}.lowres.mass_rmse", rmse["lowres"], ""),
        record(f"{prefix}.fallback_rate", report["fallback_rate"], ""),
    ]


def neural_records(quick: bool = False) -> list[dict]:
    weights = Path(__file__).resolve().parent.parent / "assets" / "models" / f"{FAMILY}.safetensors"
    report = evaluate(FAMILY, weights, rollouts=1 if quick else 3, frames=30 if quick else 100)
    records = latency_records(5 if quick else 15) + accuracy_records("neural", report)
    records += [
        record("neural.guard.precision", report["guard"]["precision"], ""),
        record("neural.guard.recall", report["guard"]["recall"], ""),
        record("neural.cosine_trigger.precision", report["cosine_trigger"]["precision"], ""),
        record("neural.cosine_trigger.recall", report["cosine_trigger"]["recall"], ""),
    ]
    return records + neural3d_records(quick)
