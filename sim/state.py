"""Snapshots of the whole solver state, in memory and as versioned .npz files written atomically."""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.atomic import atomic_path
from sim.colliders import from_description
from sim.emitters import Emitter
from sim.materials import PARAM_COLUMNS, MaterialParams

STATE_VERSION = 1


class StateFileError(ValueError):
    """A state file that cannot be read into this solver."""


@dataclass
class Snapshot:
    particles: dict[str, np.ndarray]
    time: float
    frame: int
    slots: list[MaterialParams]
    colliders: list[dict]
    emitters: list[dict]
    force_field: np.ndarray | None
    force_window: tuple[float, float]
    # The emitter objects themselves (in memory only): a restore rewinds them in place, so that whoever
    # holds one (a pour the user is about to stop) still holds the solver's.
    live_emitters: list = field(default_factory=list, repr=False)


def _emitter_record(e: Emitter) -> dict:
    return {
        "slot": e.slot,
        "center": e.center.tolist(),
        "radius": e.radius,
        "velocity": e.velocity.tolist(),
        "rate": e.rate,
        "start": e.start,
        "stop": None if math.isinf(e.stop) else e.stop,
        **e.state(),
    }


def _emitter_from_record(r: dict) -> Emitter:
    e = Emitter(
        int(r["slot"]),
        np.asarray(r["center"], float),
        float(r["radius"]),
        np.asarray(r["velocity"], float),
        float(r["rate"]),
        float(r["start"]),
        math.inf if r["stop"] is None else float(r["stop"]),
    )
    e.set_state(r)
    return e


def snapshot(solver) -> Snapshot:
    force = solver.force_field()
    return Snapshot(
        particles=solver.particles(),
        time=solver.time,
        frame=solver.frame,
        slots=list(solver.slots),
        colliders=[c.describe() for c in solver.colliders],
        emitters=[_emitter_record(e) for e in solver.emitters],
        force_field=None if force is None else force.copy(),
        force_window=solver.force_window,
        live_emitters=list(solver.emitters),
    )


def _rewind(e: Emitter, r: dict) -> Emitter:
    e.set_state(r)
    return e


def restore(solver, snap: Snapshot) -> None:
    """Put the solver back exactly as it was when `snap` was taken."""
    solver.replace_materials(snap.slots)
    solver.replace_colliders([from_description(d) for d in snap.colliders])
    if len(snap.live_emitters) == len(snap.emitters):
        solver.emitters[:] = [_rewind(e, r) for e, r in zip(snap.live_emitters, snap.emitters)]
    else:  # a snapshot read from a file
        solver.emitters[:] = [_emitter_from_record(r) for r in snap.emitters]
    solver.set_particles(snap.particles)
    solver.time, solver.frame = snap.time, snap.frame
    if snap.force_field is None:
        solver.clear_force_field()
    else:
        solver.set_force_field(snap.force_field, *snap.force_window)


def _config_key(solver) -> dict:
    cfg = solver.config
    return {"dim": cfg.dim, "size": list(cfg.size), "grid": cfg.grid}


def save(solver, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the solver state to `path` (.npz) atomically: a temporary file, then a rename."""
    path = Path(path)
    snap = snapshot(solver)
    meta = {
        "version": STATE_VERSION,
        "config": _config_key(solver),
        "time": snap.time,
        "frame": snap.frame,
        "slots": [list(p.as_row()) for p in snap.slots],
        "colliders": snap.colliders,
        "emitters": snap.emitters,
        "force_window": list(snap.force_window),
        "extra": extra or {},
    }
    arrays = {f"particle_{k}": v for k, v in snap.particles.items()}
    if snap.force_field is not None:
        arrays["force_field"] = snap.force_field
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    return path


def read(path: str | os.PathLike) -> tuple[dict, Snapshot]:
    """Read a state file without touching any solver. Raises StateFileError with the reason."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            particles = {k[len("particle_") :]: data[k] for k in data.files if k.startswith("particle_")}
            field = data["force_field"] if "force_field" in data.files else None
    # Truncated, not a zip, a bare .npy, bytes changed inside: each library says so its own way.
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = str(e) or type(e).__name__
        raise StateFileError(f"{path}: not a readable sluice state file ({reason})") from None
    if not isinstance(meta, dict):
        raise StateFileError(f"{path}: garbled state file (its metadata is not a table)")
    if meta.get("version") != STATE_VERSION:
        raise StateFileError(
            f"{path}: state version {meta.get('version')} but this sluice reads {STATE_VERSION}"
        )
    try:
        slots = [
            MaterialParams(**{**dict(zip(PARAM_COLUMNS, row)), "kind": int(row[0])}) for row in meta["slots"]
        ]
        snap = Snapshot(
            particles,
            float(meta["time"]),
            int(meta["frame"]),
            slots,
            list(meta["colliders"]),
            list(meta["emitters"]),
            field,
            tuple(meta["force_window"]),
        )
        problem = particles_problem(particles, int(meta["config"]["dim"]), len(slots))
    except (KeyError, TypeError, ValueError) as e:
        raise StateFileError(f"{path}: garbled state file ({type(e).__name__}: {e})") from None
    if problem:
        raise StateFileError(f"{path}: garbled state file ({problem})")
    return meta, snap


def particles_problem(particles: dict[str, np.ndarray], dim: int, n_slots: int) -> str | None:
    """What makes saved particle arrays unusable (a missing array, a wrong shape, a non-finite value, a
    material slot that does not exist), or None. The solver reads them unchecked."""
    n = len(particles.get("x", ()))
    shapes = {"x": (n, dim), "v": (n, dim), "C": (n, dim, dim), "F": (n, dim, dim), "J": (n,), "slot": (n,)}
    for key, shape in shapes.items():
        array = particles.get(key)
        if array is None:
            return f"particle {key}: missing"
        if array.shape != shape:
            return f"particle {key}: shape {array.shape}, expected {shape}"
        if key == "slot":
            if array.dtype.kind not in "iu" or (n and not 0 <= array.min() <= array.max() < n_slots):
                return f"particle slots outside the {n_slots} saved materials"
        elif array.dtype.kind != "f" or not np.isfinite(array).all():
            return f"particle {key}: not finite numbers"
    return None


def load(solver, path: str | os.PathLike) -> dict:
    """Load a state file into `solver`; on any mismatch the solver is left untouched."""
    meta, snap = read(path)
    if meta["config"] != _config_key(solver):
        raise StateFileError(f"{path}: saved for {meta['config']}, but this scene is {_config_key(solver)}")
    if len(snap.particles.get("x", [])) > solver.capacity:
        raise StateFileError(
            f"{path}: {len(snap.particles['x'])} particles exceed capacity {solver.capacity}"
        )
    before = snapshot(solver)
    try:
        restore(solver, snap)
    except Exception as e:  # an obstacle, emitter or force field it cannot take: put everything back
        restore(solver, before)
        raise StateFileError(f"{path}: garbled state file ({type(e).__name__}: {e})") from None
    return meta
