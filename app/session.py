"""The GUI-free Session: one scene, its stepper, and the interaction verbs that the GUI and scripts share.

No Qt here: every behaviour of the app is testable without a window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from app.render.view import FrameView
from app.script import Action
from control.condition import control_grid, solver_fluid
from control.controller import DEFAULT_WINDOW, ClosedLoop, Controller, load_for_scene
from control.critic import Critic
from control.forcefield import G
from control.sketch import Sketch, parse_sketch
from neural.catalog import make_stepper, resolve_model
from neural.model import ModelSpec
from neural.stepper import HybridStepper, NeuralStepper, NumericalStepper
from sim import state as state_io
from sim.budget import MAX_SPEED, REFUSE_FRAME_SECONDS, frame_seconds
from sim.build import build_solver
from sim.colliders import Collider
from sim.emitters import Emitter
from sim.forcefield import upsample
from sim.materials import MATERIAL_NAMES, resolve
from sim.scene import Scene, SceneError, load_scene, parse_obstacle
from sim.solver import Brush, CapacityError, NonFiniteError
from sim.state import StateFileError

PARTICLE_RADIUS_SCALE = 0.75  # drawn radius over particle spacing: a little overlap reads as a continuum
ARROW_CELLS = 1.5  # the shown field's peak force spans this many arrow spacings (Session.force_arrows)


class ActionRefused(ValueError):
    """A verb refused its input (out of range, unknown): the message is for the user, the state unchanged."""


# What a verb raises for input it refuses: a scripted action that raises one of these is skipped with its
# message, as the window shows it in the status bar. Anything else is a bug and propagates.
REFUSED_ACTION_ERRORS = (ActionRefused, SceneError, StateFileError, CapacityError, OSError)


@dataclass
class FrameReport:
    """What one tick did."""

    frame: int
    sim_time: float
    latency_ms: float
    path: str  # which stepper ran: "numerical", "neural" or "fallback"
    particles: int
    substeps: int = 0
    clamps: int = 0
    messages: list[str] = field(default_factory=list)
    error: str | None = None
    weights: str | None = None  # the learned stepper's weights, when one ran
    split_ms: dict[str, float] = field(default_factory=dict)
    partial: bool = False  # a slice of a solver frame (slice_ms): the frame has not ended yet
    reason: str = ""  # why the stepper took this path (a fallback's guard scores, an audit's verdict)
    emitted: int = 0  # particles the emitters added at the frame's end


@dataclass
class ParticleLedger:
    """Where the live particles came from since the last start (the scene's seeding, a reset or a loaded
    state): every change of the count goes through a verb or an emitter, so `expected` must equal the
    solver's count (the fuzzer checks it after every frame)."""

    base: int
    emitted: int = 0
    erased: int = 0

    @property
    def expected(self) -> int:
        return self.base + self.emitted - self.erased


@dataclass
class _TimedBrush:
    brush: Brush
    frames_left: int


class Session:
    """A scene, its solver and the verbs. Errors in an action leave the state as it was."""

    def __init__(
        self,
        scene: str | Path | Scene,
        overrides: dict | None = None,
        seed: int | None = None,
        mode: str = "numerical",
        model: str | None = None,
        control_model: str | None = None,
        plan_async: bool = False,
    ):
        if seed is not None:
            overrides = {**(overrides or {}), "seed": seed}
        self.scene = scene if isinstance(scene, Scene) else load_scene(scene, overrides)
        self.solver = build_solver(self.scene)
        self._closed = False
        self._initial = state_io.snapshot(self.solver)
        self.ledger = ParticleLedger(self.solver.n)
        self.model = model  # --model override; None lets the stepper choose weights that fit the scene
        self._refitted = False  # weights re-chosen for an obstacle added at run time (_refit_for_obstacles)
        self._refit_due = False  # an obstacle came mid-frame: re-choose the weights at the frame's end
        # The stepper with those weights, built and compiled by warm_up, kept for the first obstacle.
        self._obstacle_fit: tuple[HybridStepper | NeuralStepper, str] | None = None
        self._warming = False
        self.mode = "numerical"
        self.stepper = NumericalStepper()
        self.mode_message = "numerical"
        if mode != "numerical":
            try:
                self.set_mode(mode)
            except BaseException:  # no Session to close it: hand the solver back here
                self.solver.close()
                raise
        self.script: list[Action] = []
        self._brushes: list[_TimedBrush] = []
        self._pours: dict[str, tuple[Emitter, int | None]] = {}
        self.last_report: FrameReport | None = None
        self.fallback_rate = 0.0
        self.quality = 1.0  # substep multiplier (set_quality)
        # Sketch control: plans block the frame unless plan_async (the GUI), so recordings reproduce.
        self.control_model, self.plan_async = control_model, plan_async
        self._controller: tuple[Controller | None, str] | None = None
        self._critic: tuple[Critic | None, str] | None = None
        self.sketched: Sketch | None = None
        self.control: ClosedLoop | None = None
        # The window's budget per slice of a hybrid solver frame (None: whole frames, as record runs).
        self.slice_ms: float | None = None
        self._frame_start: state_io.Snapshot | None = None  # the state a frame in slices started from

    # ------------------------------------------------------------------------------------- stepping
    @property
    def dim(self) -> int:
        return self.scene.dim

    @property
    def frame(self) -> int:
        return self.solver.frame

    @property
    def trained_on(self) -> ModelSpec | None:
        """The running learned stepper's ModelSpec (what its weights were trained on), or None."""
        return getattr(getattr(self.stepper, "neural", self.stepper), "spec", None)

    @property
    def mid_frame(self) -> bool:
        """A sliced solver frame is in progress (its slices run on the next ticks)."""
        return getattr(self.stepper, "slice_progress", None) is not None

    def tick(self) -> FrameReport:
        """Run scripted actions due now, then advance one frame (or one slice of a solver frame, see
        slice_ms). A blown-up frame is undone to its start and reported."""
        refused = []
        if not self.mid_frame:
            if self._refit_due:
                self._refit_due = False
                if self.solver.colliders:  # unless the obstacle went before its frame ended
                    self._refit_for_obstacles()
            for action in [a for a in self.script if a.frame == self.frame]:
                try:
                    self.apply(action)
                except REFUSED_ACTION_ERRORS as e:
                    refused.append(f"frame {self.frame}: {action.kind} refused: {e}")
            if self.control is not None:
                self.control.before_frame(self.solver)
            self._frame_start = state_io.snapshot(self.solver)
        self.solver.set_brushes([b.brush for b in self._brushes])
        if hasattr(self.stepper, "slice_ms"):
            self.stepper.slice_ms = self.slice_ms
        started = time.perf_counter()
        try:
            step = self.stepper.advance(self.solver)
        except NonFiniteError as e:
            state_io.restore(self.solver, self._frame_start)
            self.stepper.reset()
            report = FrameReport(
                self.frame,
                self.solver.time,
                (time.perf_counter() - started) * 1e3,
                self.mode,
                self.solver.n,
                messages=refused,
                error=str(e),
            )
            self.last_report = report
            return report
        latency = (time.perf_counter() - started) * 1e3
        stats = step.stats
        self.fallback_rate = getattr(self.stepper, "fallback_rate", 0.0)
        self.ledger.emitted += stats.emitted if stats else 0
        self._age_interactions()  # per tick, slices included: a held brush acts for the ticks it is held
        report = FrameReport(
            frame=self.frame,
            sim_time=self.solver.time,
            latency_ms=latency,
            path=step.path,
            weights=step.weights,
            split_ms=step.split_ms,
            particles=self.solver.n,
            substeps=stats.substeps if stats else 0,
            clamps=(stats.velocity_clamps + stats.position_clamps + stats.deformation_clamps) if stats else 0,
            messages=refused + (stats.messages if stats else []),
            partial=step.partial,
            reason=step.reason,
            emitted=stats.emitted if stats else 0,
        )
        self.last_report = report
        return report

    def warm_up(self) -> None:
        """Compile now what a user's first solver frame, push, pour and obstacle would compile mid-play
        (in `bench gui` each was a stall of 0.1-0.8 s): one frame of every path the stepper has, with a
        brush, an emitter and an obstacle active, and of the weights an obstacle would bring in
        (_refit_for_obstacles), which are kept for the user's first obstacle (loading and checking them
        again then took 0.1-0.3 s inside a frame). Everything else is put back as it was, the stepper
        reset."""
        self.settle()  # its obstacle must refit now, not at a frame's end
        start = state_io.snapshot(self.solver)
        pours = dict(self._pours)
        stepper = (self.stepper, self.mode, self.mode_message, self._refitted, self._refit_due)
        size = np.asarray(self.scene.size, float)
        trained_on = self.trained_on
        material = trained_on.materials[0] if trained_on is not None else "water"
        direction = np.eye(self.dim)[0]
        corner = {"shape": "box", "min": [0.0] * self.dim, "max": (0.02 * size).tolist()}
        self._warming, self._obstacle_fit = True, None
        try:
            reach = 0.05 * float(size.max())
            self.solver.set_brushes([Brush(tuple(size / 2), reach, 0.0, tuple(direction))])
            down = -0.5 * np.eye(self.dim)[1]
            self.pour(size / 2, 0.02 * float(size.min()), down, material, name="warm-up")
            self.add_obstacle(corner)
            swapped = [self.stepper] if self.stepper is not stepper[0] else []
            for warming in [stepper[0], *swapped]:
                warm = getattr(warming, "warm_up", None)
                warm(self.solver) if warm is not None else warming.advance(self.solver)
        finally:
            self._warming = False
            self._pours = pours
            self.solver.set_brushes([])
            state_io.restore(self.solver, start)
            self.stepper, self.mode, self.mode_message, self._refitted, self._refit_due = stepper
            self.stepper.reset()

    def settle(self) -> None:
        """Finish a sliced solver frame now, so what follows starts from a frame boundary."""
        if self.mid_frame:
            report = self.stepper.finish(self.solver)
            if report is not None and report.stats is not None:
                self.ledger.emitted += report.stats.emitted

    def _age_interactions(self) -> None:
        for timed in self._brushes:
            timed.frames_left -= 1
        self._brushes = [b for b in self._brushes if b.frames_left > 0]
        for name, (_, stop_frame) in list(self._pours.items()):
            if stop_frame is not None and self.frame >= stop_frame:
                self.stop_pour(name)

    # ------------------------------------------------------------------------------- live settings
    def available_modes(self) -> dict[str, str | None]:
        """Each stepper mode and why it cannot run here (None when it can)."""
        choice = resolve_model(self.model, self.scene)
        reason = None if choice.path is not None else choice.reason
        return {"numerical": None, "neural": reason, "hybrid": reason}

    def set_mode(self, mode: str) -> str:
        """Switch stepper; the particle state is shared, so a switch costs nothing. Weights that are missing,
        corrupt or do not fit leave the session numerical, and the returned message says why."""
        stepper, message = make_stepper(mode, self.scene, self.model)
        self.settle()
        self._refit_due = False
        self.stepper = stepper
        self.mode = stepper.name
        self.mode_message = message
        self._refitted = False
        if self._obstacle_fit is not None and self._obstacle_fit[0].name != self.mode:
            self._obstacle_fit = None  # built for the other mode: not kept for the session's life
        return message

    @property
    def gravity(self) -> tuple[float, ...]:
        return tuple(float(g) for g in self.solver.gravity.to_numpy())

    def set_gravity(self, gravity) -> None:
        """A number: that magnitude (m/s^2) along the scene's gravity direction (-y when the scene has
        none); a vector: taken as it is. Applies from the next substep; reset and load keep it."""
        g = np.asarray(gravity, float)
        if g.ndim == 0:
            scene_g = np.asarray(self.scene.gravity, float)
            norm = float(np.linalg.norm(scene_g))
            down = scene_g / norm if norm > 0 else -np.eye(self.dim)[1]
            g = float(g) * down
        if g.shape != (self.dim,) or not np.isfinite(g).all():
            raise ActionRefused(f"gravity must be a finite number or {self.dim} numbers, got {gravity!r}")
        self.solver.gravity[None] = tuple(g.tolist())

    def set_quality(self, multiplier: float) -> None:
        """About `multiplier` times the scene's substeps per frame: the CFL number (or a fixed dt) is
        divided by it. Below 1 is faster and less accurate; the CFL number never exceeds 1."""
        multiplier = float(multiplier)
        if not (math.isfinite(multiplier) and self.scene.cfl <= multiplier <= 16.0):
            raise ActionRefused(f"quality must be between {self.scene.cfl:g} and 16, got {multiplier}")
        self.settle()
        substeps = round(self.solver.substeps * multiplier / self.quality)
        seconds = frame_seconds(self.dim, self.solver.n, substeps)
        if seconds > REFUSE_FRAME_SECONDS:
            raise ActionRefused(
                f"quality {multiplier:g} would take about {seconds:.3g} s a frame ({substeps} substeps x "
                f"{self.solver.n:,} particles), more than the limit of {REFUSE_FRAME_SECONDS:g} s"
            )
        self.solver.config.cfl = self.scene.cfl / multiplier
        if self.scene.dt is not None:
            # The solver reads it on every dt; a substep never exceeds the frame.
            self.solver._fixed_dt = min(self.scene.dt / multiplier, self.scene.frame_dt)
        self.quality = multiplier

    # ---------------------------------------------------------------------------------------- verbs
    def brush(
        self, center, radius: float, strength: float, mode: str = "push", direction=None, frames: int = 1
    ) -> None:
        """A brush for the next `frames` ticks. push: along `direction`; attract/repel: toward/away from
        the centre. Strength is an acceleration (m/s^2); the solver's CFL limit bounds its effect."""
        if mode not in ("push", "attract", "repel"):
            raise ActionRefused(f"unknown brush mode {mode!r}")
        if not (math.isfinite(strength) and math.isfinite(radius) and radius > 0):
            raise ActionRefused("brush strength and radius must be finite, and the radius positive")
        if mode == "push":
            norm = float(np.linalg.norm(direction)) if direction is not None else 0.0
            if not norm > 0:
                return  # a drag of zero length pushes nowhere
            brush = Brush(tuple(center), radius, abs(strength), tuple(np.asarray(direction) / norm))
        else:
            brush = Brush(tuple(center), radius, abs(strength) * (1 if mode == "attract" else -1))
        self._brushes.append(_TimedBrush(brush, max(1, int(frames))))
        self._brushes = self._brushes[-8:]

    def pour(
        self,
        center,
        radius: float,
        velocity,
        material: str = "water",
        rate: float = 0.0,
        frames: int | None = None,
        name: str = "pour",
    ) -> None:
        """Start (or move) an emitter; it runs until stop_pour(name) or for `frames` ticks."""
        if material not in MATERIAL_NAMES:
            raise ActionRefused(f"unknown material {material!r}")
        velocity = np.asarray(velocity, float)
        speed = float(np.linalg.norm(velocity))
        if velocity.shape != (self.dim,) or not speed <= MAX_SPEED:
            raise ActionRefused(
                f"a pour's velocity must be {self.dim} numbers, at most {MAX_SPEED:g} m/s in all"
            )
        if not (math.isfinite(radius) and 0 < radius <= 0.5 * min(self.scene.size)):
            raise ActionRefused(f"a pour's radius must be positive and at most half the domain, got {radius}")
        if not (math.isfinite(rate) and rate >= 0):
            raise ActionRefused(f"a pour's rate must be a number of particles per second >= 0, got {rate}")
        water_c = self.scene.sound_speed or self.solver.config.water_sound_speed
        slot = self.solver.add_material(resolve(MATERIAL_NAMES[material], {}, water_c))
        self.stop_pour(name)
        trained_on = self.trained_on
        if trained_on is not None and material not in trained_on.materials:
            # Weights never saw this material: their frames would be garbage, so the solver takes over.
            self.mode_message = f"numerical: the {trained_on.family} weights were not trained on {material}"
            self.settle()  # the old stepper's sliced solver frame ends first (dropped, it overran frame_dt)
            self._refit_due = False
            self.stepper, self.mode = NumericalStepper(), "numerical"
        center = np.clip(np.asarray(center, float), radius, np.asarray(self.scene.size) - radius)
        emitter = Emitter(
            slot,
            center,
            float(radius),
            velocity,
            float(rate),
            rng=np.random.default_rng([self.scene.seed, self.frame]),
        )
        emitter.start = self.solver.time
        self.solver.add_emitter(emitter)
        self._pours[name] = (emitter, None if not frames else self.frame + frames)

    def stop_pour(self, name: str = "pour") -> None:
        if name in self._pours:
            emitter, _ = self._pours.pop(name)
            if emitter in self.solver.emitters:
                self.solver.emitters.remove(emitter)

    def erase(self, center, radius: float) -> int:
        removed = self.solver.remove_in_sphere(center, radius)
        self.ledger.erased += removed
        return removed

    def add_obstacle(self, description: dict) -> int:
        """Add an obstacle from a scene-format description; the solver pushes particles out of it."""
        collider = parse_obstacle("<obstacle>", "obstacle", description, self.scene)
        index = self.solver.add_collider(collider)
        self._refit_for_obstacles()
        return index

    def _refit_for_obstacles(self) -> None:
        """Weights trained without obstacles never learned to flow around one: their frames pushed
        particles into a user's box 20x as often as the solver's (the guard's collider pushes, median
        0.8% of updates against 0.04%), the guard fell back and the window ran 80% solver frames. So a
        learned stepper whose weights lack obstacles switches to weights trained with them where some
        fit the scene (dam_break: water_ramps2d). Where none do (3D water) or --model named the weights,
        it keeps its weights, its guard and audits judging each frame: going to the solver instead took
        dam_break_3d's window from 19 fps to 9 with 200 stalls a minute."""
        spec = self.trained_on
        if spec is None or spec.obstacles or self.model is not None:
            return
        if self.mid_frame:
            # Switch where the sliced solver frame ends (tick): finishing its slices here froze the window
            # for the rest of that frame (bench gui: 117-251 ms on the frame of the scripted box).
            self._refit_due = True
            return
        fit, self._obstacle_fit = self._obstacle_fit, None
        if fit is None or fit[0].name != self.mode:
            scene = replace(self.scene, obstacles=list(self.solver.colliders))  # the scene's own among them
            fit = make_stepper(self.mode, scene)
        stepper, message = fit
        if isinstance(stepper, NumericalStepper):
            return
        if self._warming:
            self._obstacle_fit = fit
        stepper.reset()
        self.settle()
        self.stepper, self.mode = stepper, stepper.name
        self.mode_message = f"{message} (an obstacle was added; {spec.family} was trained without)"
        self._refitted = True

    def obstacle_at(self, point) -> int | None:
        """Index of the obstacle containing `point` (the nearest surface wins), or None."""
        best, best_d = None, 0.0
        for i, c in enumerate(self.solver.colliders):
            d = float(c.signed_distance(np.asarray(point, float)[None])[0])
            if d <= 0 and (best is None or d < best_d):
                best, best_d = i, d
        return best

    def remove_obstacle(self, index: int) -> Collider:
        if not 0 <= index < len(self.solver.colliders):
            raise ActionRefused(f"no obstacle {index}")
        return self.solver.remove_collider(index)

    # ------------------------------------------------------------------------------ sketch control
    def sketch(self, strokes, window_frames: int = DEFAULT_WINDOW) -> list[str]:
        """Steer the fluid toward freehand strokes (lists of points in metres, 3D points in a 3D scene)
        for `window_frames` frames: an open stroke moves the fluid along it, a closed one gathers it
        inside. Returns messages; a degenerate sketch, or a scene no controller fits, is a no-op with the
        reason."""
        if window_frames < 1:
            return ["the control window must be at least one frame"]
        _, h = control_grid(self.solver)
        parsed = parse_sketch(strokes, self.scene.size, h)
        if not parsed.ok:
            return parsed.messages
        if self._controller is None:
            self._controller = load_for_scene(self.scene, self.control_model)
        controller, reason = self._controller
        if controller is None:
            return parsed.messages + [reason]
        if self._critic is None:  # the learned stepper that fits the scene checks the controller's plans
            self._critic = Critic.for_scene(self.scene, self.model)
        self.clear_sketch()
        self.sketched = parsed.sketch
        self.control = ClosedLoop(
            controller,
            parsed.sketch,
            window_frames,
            asynchronous=self.plan_async,
            seed=self.frame,
            critic=self._critic[0],
        )
        critic = self._critic[0]
        checked = f"; {critic.name} picks the best of {self.control.candidates} plans" if critic else ""
        return parsed.messages + [
            f"steering toward the sketch for {window_frames} frames ({reason}{checked})"
        ]

    def clear_sketch(self) -> None:
        """Drop the sketch and its force field."""
        if self.control is not None:
            self.control.stop(self.solver)
        self.control, self.sketched = None, None

    def control_status(self) -> str:
        return "" if self.control is None else self.control.status()

    def sketch_strokes(self) -> list[np.ndarray]:
        """The cleaned sketch as polylines (regions closed), for drawing."""
        if self.sketched is None:
            return []
        regions = [np.concatenate([r, r[:1]]) for r in self.sketched.regions]
        return [p.astype(np.float32) for p in self.sketched.paths + regions]

    def reset(self) -> None:
        """Back to the scene's initial state (obstacles added since are removed too)."""
        self.clear_sketch()
        self._brushes.clear()
        self._pours.clear()
        state_io.restore(self.solver, self._initial)
        self.stepper.reset()
        self._refit_due = False  # its obstacle is gone
        self.ledger = ParticleLedger(self.solver.n)
        if self._refitted:
            self.set_mode(self.mode)  # the obstacles are gone: the scene's own weights again

    def apply(self, action: Action) -> None:
        a = action.args
        if action.kind == "brush":
            self.brush(a["center"], a["radius"], a["strength"], a["mode"], a["direction"], a["duration"])
        elif action.kind == "pour":
            self.pour(
                a["center"],
                a["radius"],
                a["velocity"],
                a["material"],
                a["rate"],
                a["duration"] or None,
                a["name"],
            )
        elif action.kind == "stop_pour":
            self.stop_pour(a["name"])
        elif action.kind == "erase":
            self.erase(a["center"], a["radius"])
        elif action.kind == "obstacle":
            self.add_obstacle(a["description"])
        elif action.kind == "remove_obstacle":
            if a["index"] < len(self.solver.colliders):
                self.remove_obstacle(a["index"])
        elif action.kind == "reset":
            self.reset()
        elif action.kind == "sketch":
            for message in self.sketch(a["strokes"], a["window"]):
                print(f"[sluice] frame {self.frame}: {message}")
        elif action.kind == "clear_sketch":
            self.clear_sketch()
        elif action.kind == "mode":
            print(f"[sluice] frame {self.frame}: {self.set_mode(a['mode'])}")
        elif action.kind == "quality":
            self.set_quality(a["multiplier"])
        elif action.kind == "gravity":
            self.set_gravity(a["value"])
        elif action.kind == "save":
            self.save(a["path"])
        elif action.kind == "load":
            self.load(a["path"])

    # ----------------------------------------------------------------------------------- state I/O
    def save(self, path: str | Path) -> Path:
        self.settle()
        return state_io.save(self.solver, path, extra={"scene": self.scene.name})

    def load(self, path: str | Path) -> None:
        state_io.load(self.solver, path)
        self.clear_sketch()
        # the loaded emitters are new objects: pours and brushes of the old state do not carry over
        self._pours.clear()
        self._brushes.clear()
        self.stepper.reset()
        self.ledger = ParticleLedger(self.solver.n)

    def close(self) -> None:
        """Hand the solver back (idempotent: once handed back it may already be another session's)."""
        if self._closed:
            return
        self._closed = True
        self.clear_sketch()
        self.solver.close()

    # ------------------------------------------------------------------------------------- drawing
    @property
    def particle_radius(self) -> float:
        return PARTICLE_RADIUS_SCALE * self.solver.config.particle_spacing

    def frame_view(self, color_mode: str = "material", hud: str = "", strokes=None) -> FrameView:
        state = self.solver.particles()
        arrows, arrow_scale = self.force_arrows()
        return FrameView(
            dim=self.dim,
            size=self.scene.size,
            positions=state["x"],
            materials=state["material"],
            velocities=state["v"],
            particle_radius=self.particle_radius,
            obstacles=[c.describe() for c in self.solver.colliders],
            strokes=self.sketch_strokes() + list(strokes or []),
            force_arrows=arrows,
            arrow_scale=arrow_scale,
            hud=hud,
            color_mode=color_mode,
            speed_scale=max(1.0, 0.5 * self.scene.max_speed),
        )

    def _shown_field(self) -> tuple[np.ndarray, float, float] | None:
        """(values, start, end) of the field drawn now: the one in force, or before the controller's
        first checked plan is applied, its quick preview (drawn, not applied)."""
        field_values = self.solver.force_field()
        t0, t1 = self.solver.force_window
        preview = self.control.preview if self.control is not None else None
        if (field_values is None or not t0 <= self.solver.time <= t1) and preview is not None:
            field_values, t0, t1 = preview.values, self.solver.time, self.solver.time + 1.0
            if field_values.shape[1:-1] != tuple(self.solver.force_cells):
                field_values = upsample(field_values, tuple(self.solver.force_cells))
        if field_values is None or not t0 <= self.solver.time <= t1:
            return None
        return field_values, t0, t1

    def force_arrows(self) -> tuple[tuple[np.ndarray, np.ndarray] | None, float]:
        """(arrows, arrow scale) of the field shown (_shown_field) at the current time: one arrow per
        control cell with fluid and any force, as (anchors, accelerations), or None; and metres of
        arrow per m/s^2. The scale makes the shown field's peak over its whole window (at least 1 g) span
        ARROW_CELLS arrow spacings, so neighbouring arrows never cross and the water under them stays
        visible, while a field that eases off over its window visibly shrinks. (At a fixed 1 cm per m/s^2
        a 4 g arrow was 39 cm long and buried the dam break it steered; scaled to the 4 g cap instead, a
        1 g field in 3D drew dots.) The HUD gives the peak in g."""
        h = max(self.scene.size) / self.solver.config.force_grid
        spacing = h * (2 if self.dim == 3 else 1)  # 3D draws every other cell
        shown = self._shown_field()
        if shown is None:
            return None, ARROW_CELLS * spacing / G
        field_values, t0, t1 = shown
        scale = ARROW_CELLS * spacing / max(float(np.linalg.norm(field_values, axis=-1).max()), G)
        keys = field_values.shape[0]
        s = 0.0 if keys == 1 else (self.solver.time - t0) / max(t1 - t0, 1e-9) * (keys - 1)
        k0 = min(int(s), max(keys - 2, 0))
        a = s - k0
        now = field_values[k0] if keys == 1 else (1 - a) * field_values[k0] + a * field_values[k0 + 1]
        cells = np.stack(np.meshgrid(*[np.arange(c) for c in self.solver.force_cells], indexing="ij"), -1)
        anchors = ((cells + 0.5) * h).reshape(-1, self.dim).astype(np.float32)
        vectors = now.reshape(-1, self.dim).astype(np.float32)
        keep = np.linalg.norm(vectors, axis=1) > 1e-3
        # Only where there is fluid to push: arrows over empty space hide the water.
        fluid = solver_fluid(self.solver, (tuple(self.solver.force_cells), h))[0]
        keep &= fluid.reshape(-1) > 0.05
        if self.dim == 3:  # every other cell: a 32³ field of arrows would bury the fluid
            keep &= (cells % 2 == 0).all(axis=-1).reshape(-1)
        return ((anchors[keep], vectors[keep]) if keep.any() else None), scale

    def hud_line(self, timing: bool = True) -> str:
        """frame, sim time, mode, (ms per frame, fallback rate): timings are left out of recordings,
        which must come out byte-identical run to run."""
        r = self.last_report
        # A numerical session says why, where the default (hybrid) could not run.
        mode = self.mode_message if self.mode == "numerical" else f"{self.mode} ({self.stepper.weights})"
        parts = [f"frame {self.frame}", f"t {self.solver.time:.2f} s", mode, f"{self.solver.n} particles"]
        if timing and r is not None:
            parts += [f"{r.latency_ms:.0f} ms/frame", f"fallback {self.fallback_rate:.0%}"]
        return "  |  ".join(parts)
