"""The runtime controller: plan a ForceField from the fluid and a sketch, and steer a window closed-loop.

`Controller.plan` is pure torch on a small array, so it runs on a worker thread off the frame path.
`ClosedLoop` re-plans every few frames from the fluid as it is then (receding horizon): each plan covers the
rest of the window, and only its first frames are used before the next plan replaces it.
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from control.condition import centroid, condition, control_grid, solver_fluid
from control.critic import Critic, CriticState
from control.forcefield import ForceField, pull_fields, push_fields
from control.model import ControlSpec, ForceDiffusion, load_control
from control.sketch import Sketch
from neural.catalog import scene_materials
from neural.model import WeightsError, spec_problem

DEFAULT_WINDOW = 40  # frames
REPLAN_EVERY = 8  # frames between closed-loop plans
MIN_PLAN_FRAMES = 20  # the model never saw shorter windows
SAMPLE_STEPS = 10
# The diffusion model proposes, the learned stepper checks: fields drawn per plan for the critic (K),
# and how many frames ahead the critic looks (None: to the window's end). A 3D learned frame of K
# candidates costs about 20x a 2D one, so 3D draws fewer and looks 20 frames ahead (a re-plan every 8).
CANDIDATES = 8
CANDIDATES_3D = 4
HORIZON_3D = 20
# In the window (asynchronous plans) a plan must land while the sketch's window is still running, on a machine
# whose other core runs the simulation: 4 fields looking 20 frames ahead (about a quarter of a full plan's
# cost; the probe in the README). Record and eval wait for their plans and use the full critic.
WINDOW_CANDIDATES = 4
WINDOW_HORIZON = 20
# Analytic pulls toward the sketch's goal join the diffusion model's fields in the critic's choice
# (control.forcefield.pull_fields), and in 2D uniform pushes toward it (push_fields); in 3D the pushes did
# not pay (bench control 2026-12-06 03:19: water3d 1.192 -> 1.202, a plan 20.4 -> 31.2 s).
PULLS = True
PUSH_DIMS = (2,)
# The window's first answer to a stroke (Controller.preview): one field in this many DDIM steps, shown at
# once as arrows but not applied: an unchecked sample can be wild (one flung the whole dam break at the
# ceiling before the critic's choice landed). The critic's choice is applied when it is ready. 4 steps on a
# channels-last copy of the model: 25-27 ms on one thread where 5 steps in the default layout took 38-42 ms
# (and 51 ms in one bench run on a slow spell of this machine, over the 50 ms target); the 4-step field's
# cosine to the full 10-step sample is 0.94 on average (5 steps: 0.96; probe 2026-12-07).
QUICK_STEPS = 4
# Classifier-free guidance weight, chosen on tuning cases (seeds neither training nor eval uses): 3 beat
# 1 on both families and matched 6 (docs in the README).
DEFAULT_GUIDANCE = 3.0


def weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "control"


class Controller:
    def __init__(
        self,
        model: ForceDiffusion,
        name: str = "",
        steps: int = SAMPLE_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
    ):
        if not 1 <= steps <= 10:
            raise ValueError("DDIM steps must be between 1 and 10")
        self.model, self.name, self.steps, self.guidance = model.eval(), name, steps, guidance
        self._preview_model: ForceDiffusion | None = None  # made on the first preview

    @classmethod
    def load(cls, path: Path, **kwargs) -> Controller:
        return cls(load_control(path), Path(path).stem, **kwargs)

    @property
    def spec(self) -> ControlSpec:
        return self.model.spec

    def plan(self, fluid: np.ndarray, sketch: Sketch, frames: int, h: float, seed: int = 0) -> ForceField:
        """A force field for `frames` frames from the fluid channels (control grid) and the sketch."""
        return self.candidates(fluid, sketch, frames, h, 1, seed)[0]

    def candidates(
        self,
        fluid: np.ndarray,
        sketch: Sketch,
        frames: int,
        h: float,
        count: int,
        seed: int = 0,
        steps: int | None = None,
    ) -> list[ForceField]:
        """`count` force fields drawn in one batched sampling call (each from its own noise); the first
        is the field `plan` gives for the same seed. `steps` overrides the DDIM steps."""
        return self._sample(self.model, fluid, sketch, frames, h, count, seed, steps or self.steps)

    def preview(self, fluid: np.ndarray, sketch: Sketch, frames: int, h: float, seed: int = 0) -> ForceField:
        """The window's first answer to a stroke: one field in QUICK_STEPS DDIM steps, sampled by a
        channels-last copy of the model (the CPU's convolutions run 15-20% faster in that layout; the
        planning model keeps its own, so the critic's plans are what they were to the bit)."""
        if self._preview_model is None:
            layout = torch.channels_last if self.spec.dim == 2 else torch.channels_last_3d
            self._preview_model = copy.deepcopy(self.model).to(memory_format=layout)
        return self._sample(self._preview_model, fluid, sketch, frames, h, 1, seed, QUICK_STEPS)[0]

    def _sample(
        self, model: ForceDiffusion, fluid, sketch, frames, h, count, seed, steps
    ) -> list[ForceField]:
        cond = torch.from_numpy(condition(fluid, sketch, frames * self.spec.frame_dt, h))[None]
        cond = cond.to(next(model.parameters()).device)
        generator = torch.Generator().manual_seed(seed)
        samples = model.sample(cond.expand(count, *cond.shape[1:]), steps, self.guidance, generator)
        keys, dim = self.spec.keys, self.spec.dim
        fields = []
        for sample in samples.cpu():
            values = sample.numpy().reshape(keys, dim, *sample.shape[1:]) * self.spec.label_scale
            fields.append(ForceField(np.moveaxis(values, 1, -1), frames))
        return fields


@dataclass
class Choice:
    path: Path | None
    reason: str


def choose_controller(scene, model: str | None = None, folder: Path | None = None) -> Choice:
    """The shipped controller for a scene: same dimension, trained on every material it holds (fewest
    extras wins). `model` is a name in assets/control or a .safetensors path."""
    folder = folder or weights_dir()
    if model is not None:
        path = Path(model) if Path(model).suffix == ".safetensors" else folder / f"{model}.safetensors"
        return Choice(path, f"{path.stem} (chosen by --model)")
    materials, best, best_key, problems = scene_materials(scene), None, None, []
    for meta_path in sorted(folder.glob("*.json")):
        try:
            spec = ControlSpec(**json.loads(meta_path.read_text())["spec"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if spec_problem(spec):  # garbled metadata: as if not there
            continue
        if spec.dim != scene.dim:
            problems.append(f"{meta_path.stem}: {spec.dim}D")
        elif not materials <= set(spec.materials):
            problems.append(f"{meta_path.stem}: no {', '.join(sorted(materials - set(spec.materials)))}")
        elif best_key is None or len(set(spec.materials) - materials) < best_key:
            best, best_key = meta_path.with_suffix(".safetensors"), len(set(spec.materials) - materials)
    if best is None:
        return Choice(None, f"no controller fits this scene ({'; '.join(problems) or 'none shipped'})")
    return Choice(best, f"{best.stem} fits ({', '.join(sorted(materials))})")


def load_for_scene(scene, model: str | None = None) -> tuple[Controller | None, str]:
    """(controller, message); missing, corrupt or mismatched weights give None and the reason."""
    choice = choose_controller(scene, model)
    if choice.path is None:
        return None, choice.reason
    try:
        controller = Controller.load(choice.path)
    except WeightsError as e:
        return None, f"sketch control unavailable: {e}"
    if controller.spec.dim != scene.dim:
        return None, f"sketch control unavailable: {choice.path.name} is {controller.spec.dim}D"
    return controller, f"sketch control with {choice.reason}"


class ClosedLoop:
    """Steers the solver toward a sketch over `frames` frames, re-planning every `replan_every` frames.

    Call `before_frame(solver)` before each frame. With `asynchronous`, plans run on a worker thread and a
    field applies from the first frame after it is ready; otherwise each plan blocks (reproducible)."""

    def __init__(
        self,
        controller: Controller,
        sketch: Sketch,
        frames: int = DEFAULT_WINDOW,
        replan_every: int = REPLAN_EVERY,
        asynchronous: bool = False,
        seed: int = 0,
        critic: Critic | None = None,
        candidates: int | None = None,
        keep_plan: bool = True,
    ):
        self.controller, self.sketch, self.frames = controller, sketch, int(frames)
        self.replan_every, self.asynchronous, self.seed = replan_every, asynchronous, seed
        if candidates is None:
            candidates = CANDIDATES if sketch.dim == 2 else CANDIDATES_3D
            candidates = min(candidates, WINDOW_CANDIDATES) if asynchronous else candidates
        self.critic, self.candidates = critic, candidates if critic is not None else 1
        # how many frames ahead the critic looks (None: to the window's end)
        self.horizon = WINDOW_HORIZON if asynchronous else (HORIZON_3D if sketch.dim == 3 else None)
        self.keep_plan = keep_plan
        self._installed_at = 0  # the loop's frame when the field in force was installed
        self.elapsed = 0  # frames since the first field came into force
        self.plan_ms: list[float] = []
        self.response_ms: list[float] = []  # the window's quick first plans
        self.field: ForceField | None = None
        self.preview: ForceField | None = None  # the window's quick first plan: drawn, not applied
        self._pending: Future | None = None
        self._preview: Future | None = None
        self.size = None  # the domain, read with the fluid at each plan
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sluice-plan") if asynchronous else None
        self._last_plan = None

    @property
    def done(self) -> bool:
        return self.elapsed >= self.frames

    @property
    def planning(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def status(self) -> str:
        if self.done:
            return "sketch control finished"
        if self.field is None:
            return "planning the sketch's force field…"
        peak = self.field.peak / 9.81
        return (
            f"sketch control active: frame {self.elapsed}/{self.frames}, peak {peak:.1f} g, "
            f"last plan {(self.plan_ms or self.response_ms)[-1]:.0f} ms"
        )

    def _plan(
        self,
        fluid,
        sketch,
        frames,
        h,
        seed,
        state: CriticState | None,
        kept: ForceField | None = None,
        horizon: int | None = None,
    ) -> ForceField:
        """One plan: a single field, or with a critic the best of `candidates` by their learned rollouts;
        what is left of the plan in force (`kept`) competes too, so a re-plan never switches to a plan
        the critic rates worse than carrying on."""
        began = time.perf_counter()
        if state is None or self.candidates <= 1:
            field = self.controller.plan(fluid, sketch, frames, h, seed)
        else:
            fields = self.controller.candidates(fluid, sketch, frames, h, self.candidates, seed)
            fields += [kept] if kept is not None else []
            if PULLS:
                cells, keys = fluid.shape[1:], self.controller.spec.keys
                goal, lift = sketch.target(), sketch.kind == "region"
                fields += pull_fields(goal, cells, h, keys, frames, lift)
                if sketch.dim in PUSH_DIMS:
                    fields += push_fields(centroid(state.x, state.mass), goal, cells, keys, frames, lift)
            values = [f.values for f in fields]
            field = ForceField(self.critic.plan(state, values, frames, sketch, self.size, horizon), frames)
        self.plan_ms.append((time.perf_counter() - began) * 1000)
        return field

    def _quick_plan(self, fluid, sketch, frames, h, seed) -> ForceField:
        began = time.perf_counter()
        field = self.controller.preview(fluid, sketch, frames, h, seed)
        self.response_ms.append((time.perf_counter() - began) * 1000)
        return field

    def _request(self, solver) -> None:
        cells, h = control_grid(solver)
        fluid = solver_fluid(solver)
        here = centroid(solver.positions(), solver.masses())
        left = self.frames - self.elapsed
        remaining = max(left, MIN_PLAN_FRAMES)
        # The critic scores the fluid where the eval does, at the window's end: a late plan is drawn for
        # MIN_PLAN_FRAMES (the model never saw shorter windows), but only `left` of its frames will run.
        horizon = min(self.horizon or left, left)
        sketch = self.sketch.remaining(here, 1.5 * h)
        self.size = solver.config.size
        # what the critic needs is read here, on the main thread: the plan may run on the worker
        state = self.critic.capture(solver) if self.critic is not None and self.candidates > 1 else None
        # The same noise for every re-plan: DDIM is deterministic, so plans vary only with what they see.
        args = (fluid, sketch, remaining, h, self.seed)
        self._last_plan = self.elapsed
        kept = None
        if self.field is not None and self.keep_plan:
            kept = self.field.rest(self.elapsed - self._installed_at, remaining)
        if self._pool is None:
            self._install(solver, self._plan(*args, state, kept, horizon))
            return
        if self.field is None and state is not None:  # the first answer to a stroke comes at once
            self._preview = self._pool.submit(self._quick_plan, *args)
        self._pending = self._pool.submit(self._plan, *args, state, kept, horizon)

    def _install(self, solver, field: ForceField) -> None:
        self.field, self._installed_at, self.preview = field, self.elapsed, None
        field.apply(solver)  # the loop clears it when its window ends

    def before_frame(self, solver) -> None:
        if self.done:
            self.stop(solver)
            return
        if self._pending is not None and self._pending.done():
            field, self._pending, self._preview = self._pending.result(), None, None
            self._install(solver, field)
        elif self._preview is not None and self._preview.done():
            self.preview, self._preview = self._preview.result(), None
        due = self._last_plan is None or self.elapsed - self._last_plan >= self.replan_every
        if due and self._pending is None and self.frames - self.elapsed >= self.replan_every // 2:
            self._request(solver)
        # The window counts from the first field in force: in the window a checked plan may take seconds
        # to land, and a sketch whose window ran out while it was planned would do nothing at all.
        if self.field is not None:
            self.elapsed += 1

    def stop(self, solver=None) -> None:
        if solver is not None:
            solver.clear_force_field()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.elapsed = max(self.elapsed, self.frames)
