"""Which shipped weights fit a scene, and building the stepper a mode asks for.

A model fits when its dimension and frame length match the scene's and it was trained on every material the
scene holds; among those, one trained with obstacles is needed when the scene has any, the fewest extra
materials wins, then one whose training domain is as large as the scene (a smaller one never saw its
falls), then the one whose data was simulated at the cell closest to the scene's (the learned stepper learns
its solver's outcomes at that resolution). `--model NAME|PATH` overrides the choice. When
nothing fits, the stepper is numerical and the reason says why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from neural import device
from neural.guard import Guard
from neural.model import ModelSpec, WeightsError, load_weights, spec_problem
from neural.stepper import HybridStepper, NeuralStepper, NumericalStepper, find_weights_dir

MODES = ("numerical", "neural", "hybrid")
# The default mode: hybrid where shipped weights fit the scene, numerical (with the reason) elsewhere.
AUTO = "auto"


@dataclass
class Choice:
    path: Path | None
    reason: str


def scene_materials(scene) -> set[str]:
    names = {b.material.name.lower() for b in scene.bodies}
    return names | {e.material.name.lower() for e in scene.emitters}


@dataclass
class DataExtent:
    """Where a model's training data came from: its family's domain side and its solver's cell (m)."""

    side: float = 1.0
    cell: float | None = None


def data_extent(meta: dict) -> DataExtent:
    """From a model's metadata (garbled or missing values read as unknown: a 1 m side, no cell); weights
    trained before `solver_cell` was recorded: the family's side over the data's solver grid, or over the
    family's data grid (FAMILY_SOLVER_GRID) where the grid was not recorded either (sand3d's)."""
    from neural.families import FAMILY_DOMAIN, FAMILY_SOLVER_GRID

    family = meta.get("family")
    side = FAMILY_DOMAIN.get(family, 1.0) if isinstance(family, str) else 1.0
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    cell, grid = data.get("solver_cell"), data.get("solver_grid")
    if cell is None and grid is None and isinstance(family, str):
        grid = FAMILY_SOLVER_GRID.get(family)
    if cell is None and isinstance(grid, int | float) and grid > 0:
        cell = side / grid
    return DataExtent(side, float(cell) if isinstance(cell, int | float) and cell > 0 else None)


def catalog(folder: Path | None = None) -> dict[str, tuple[Path, ModelSpec, DataExtent]]:
    """name: (weights, spec, data extent) of each usable weights file in `folder`."""
    folder = folder or find_weights_dir()
    out = {}
    for meta_path in sorted(folder.glob("*.json")):
        weights = meta_path.with_suffix(".safetensors")
        try:
            meta = json.loads(meta_path.read_text())
            spec = ModelSpec(**meta["spec"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if weights.is_file() and spec_problem(spec) is None:  # garbled metadata: as if not there
            out[meta_path.stem] = (weights, spec, data_extent(meta))
    return out


def choose_weights(scene, folder: Path | None = None) -> Choice:
    materials = scene_materials(scene)
    has_obstacles = bool(scene.obstacles)
    scene_cell = max(scene.size) / scene.grid
    best, best_key = None, None
    problems = []
    for name, (path, spec, extent) in catalog(folder).items():
        if spec.dim != scene.dim:
            problems.append(f"{name}: {spec.dim}D")
            continue
        if abs(spec.frame_dt - scene.frame_dt) > 1e-9:
            problems.append(f"{name}: frame_dt {spec.frame_dt:.4g} s")
            continue
        if not materials <= set(spec.materials):
            problems.append(f"{name}: no {', '.join(sorted(materials - set(spec.materials)))}")
            continue
        if has_obstacles and not spec.obstacles:
            problems.append(f"{name}: trained without obstacles")
            continue
        too_small = extent.side < max(scene.size) - 1e-9
        resolution = abs(math.log(extent.cell / scene_cell)) if extent.cell else math.inf
        key = (len(set(spec.materials) - materials), spec.obstacles != has_obstacles, too_small, resolution)
        if best_key is None or key < best_key:
            best, best_key = path, key
    if best is None:
        detail = "; ".join(problems) if problems else "no weights in assets/models"
        return Choice(None, f"no trained weights fit this scene ({detail})")
    return Choice(
        best, f"{best.stem} fits ({', '.join(sorted(materials))}{', obstacles' if has_obstacles else ''})"
    )


def resolve_model(model: str | None, scene, folder: Path | None = None) -> Choice:
    """`model` is None (choose by scene), a catalog name, or a path to a .safetensors file."""
    if model is None:
        return choose_weights(scene, folder)
    path = Path(model)
    if path.suffix != ".safetensors":
        entries = catalog(folder)
        if model not in entries:
            return Choice(None, f"unknown model {model!r} (shipped: {', '.join(entries) or 'none'})")
        path = entries[model][0]
    return Choice(path, f"{path.stem} (chosen by --model)")


def check_fits(spec: ModelSpec, scene) -> str | None:
    """Why weights cannot run this scene, or None."""
    if spec.dim != scene.dim:
        return f"weights are {spec.dim}D, the scene is {scene.dim}D"
    if abs(spec.frame_dt - scene.frame_dt) > 1e-9:
        return f"weights step {spec.frame_dt:.4g} s frames, the scene {scene.frame_dt:.4g} s"
    missing = scene_materials(scene) - set(spec.materials)
    if missing:
        return f"weights were not trained on {', '.join(sorted(missing))}"
    return None


def make_stepper(mode: str, scene, model: str | None = None, guard_mode: str = "physics"):
    """(stepper, message). Missing, corrupt or mismatched weights give a numerical stepper and the reason.
    `auto` is hybrid where weights fit, numerical elsewhere, and the message says which and why."""
    if mode == AUTO:
        stepper, message = make_stepper("hybrid", scene, model, guard_mode)
        if isinstance(stepper, NumericalStepper):
            return stepper, "numerical: " + message.removeprefix("hybrid unavailable: ").removesuffix(
                "; running numerically"
            )
        return stepper, message
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {AUTO}, {', '.join(MODES)}")
    if mode == "numerical":
        return NumericalStepper(), "numerical"
    choice = resolve_model(model, scene)
    if choice.path is None:
        return NumericalStepper(), f"{mode} unavailable: {choice.reason}; running numerically"
    try:
        network = device.place(load_weights(choice.path))
    except WeightsError as e:
        return NumericalStepper(), f"{mode} unavailable: {e}; running numerically"
    problem = check_fits(network.spec, scene)
    if problem:
        return NumericalStepper(), f"{mode} unavailable: {choice.path.name}: {problem}; running numerically"
    neural = NeuralStepper(network, choice.path.stem)
    if mode == "neural":
        return neural, f"neural with {choice.reason}"
    guard = Guard.from_file(choice.path.with_suffix(".guard.json"), network.spec.h, guard_mode)
    return HybridStepper(neural, guard), f"hybrid with {choice.reason}"
