"""`simulate`: run a scene headless and write its trajectory as .npz."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sim.atomic import atomic_path
from sim.build import build_solver
from sim.scene import Scene


def check_writable(path: Path) -> None:
    """Fail before any simulation when `path` cannot be written."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise OSError(f"{path}: folder {parent} does not exist")
    if path.is_dir():
        raise OSError(f"{path}: is a folder, expected a file name")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OSError(f"{path}: not writable")


def write_npz_atomic(out: Path, /, **arrays) -> None:
    with atomic_path(out, ".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def learned_share(paths: list[str]) -> float:
    """The share of frames the network produced (fallback and audit frames ran on the solver)."""
    return sum(p == "neural" for p in paths) / len(paths) if paths else 0.0


def simulate(scene: Scene, frames: int, out: Path, progress: bool = True, advance=None) -> dict:
    """Run `frames` frames and write x, v (frames+1 x particles x dim, frame 0 is the initial state),
    material, count per frame, frame_dt, the resolved scene as JSON, and per frame the path that ran it
    (`path`: numerical, neural, fallback or audit) and its wall time (`ms`).

    Emitters and removal change the particle count, so rows are padded with NaN beyond `count[f]`.
    Ctrl-C (or SIGTERM) writes the frames finished so far and re-raises KeyboardInterrupt. `advance(solver)`
    replaces the solver's own step (the learned steppers plug in here); it returns a report with `.path`
    and `.stats`.
    """
    check_writable(out)
    with _sigterm_as_interrupt():
        return _simulate(scene, frames, out, progress, advance)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does: its default action would end the process before
    the frames so far are written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _simulate(scene: Scene, frames: int, out: Path, progress: bool, advance) -> dict:
    solver = build_solver(scene)
    if solver.budget_warning:
        print(f"[sluice] {solver.budget_warning}", file=sys.stderr)
    xs, vs, materials = [], [], None
    clamps = {"velocity": 0, "position": 0, "deformation": 0}
    paths: dict[str, int] = {}
    frame_paths: list[str] = []  # per frame: numerical, neural, fallback or audit
    frame_ms: list[float] = []

    def record():
        nonlocal materials
        state = solver.particles()
        xs.append(state["x"])
        vs.append(state["v"])
        materials = state["material"]

    interrupted = None
    record()
    try:
        for _ in tqdm(range(frames), desc=scene.name, unit="frame", disable=not progress):
            started = time.perf_counter()
            if advance is None:
                stats, path = solver.step_frame(), "numerical"
            else:
                report = advance(solver)
                stats, path = report.stats, report.path
            frame_ms.append((time.perf_counter() - started) * 1e3)
            frame_paths.append(path)
            paths[path] = paths.get(path, 0) + 1
            clamps["velocity"] += stats.velocity_clamps
            clamps["position"] += stats.position_clamps
            clamps["deformation"] += stats.deformation_clamps
            record()
    except (KeyboardInterrupt, RuntimeError) as e:
        interrupted = e
    finally:
        solver.close()
    counts = np.array([len(x) for x in xs], np.int32)
    width = int(counts.max())
    x = np.full((len(xs), width, scene.dim), np.nan, np.float32)
    v = np.full_like(x, np.nan)
    for f, (xf, vf) in enumerate(zip(xs, vs)):
        x[f, : len(xf)], v[f, : len(vf)] = xf, vf
    material = np.full(width, -1, np.int32)
    material[: len(materials)] = materials
    summary = {
        "frames": len(xs) - 1,
        "particles": width,
        "clamps": clamps,
        "paths": paths,
        "learned_share": learned_share(frame_paths),
        "mean_ms": float(np.mean(frame_ms)) if frame_ms else 0.0,
    }
    write_npz_atomic(
        out,
        x=x,
        v=v,
        material=material,
        count=counts,
        frame_dt=np.float64(scene.frame_dt),
        scene=np.array(json.dumps(scene.to_json())),
        summary=np.array(json.dumps(summary)),
        path=np.array(frame_paths, dtype="<U9"),
        ms=np.array(frame_ms, np.float32),
    )
    if interrupted is not None:
        raise interrupted
    return summary
