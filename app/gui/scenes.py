"""Building Sessions for the GUI: room for the user's pouring, and a warm-up that compiles the kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.session import Session
from sim.build import sample_body, solver_config
from sim.scene import MAX_PARTICLES, builtin_scenes, load_scene

GUI_HEADROOM = 65536  # particles the user can pour beyond the scene's own

# A hybrid solver frame (a fallback, an audit) runs in slices of about this much work, one per displayed
# frame: a slice plus the render aims at about 33 ms (30 fps; not yet measured by bench gui) where a whole
# solver frame froze the viewport for 150-400 ms (a probe on dam_break, loaded machine).
SOLVER_SLICE_MS = 20.0


def scene_label(source: str | Path) -> str:
    """What the scene picker and the status bar call a scene: its built-in name or its file name."""
    return str(source) if str(source) in builtin_scenes() else Path(source).stem


def open_session(source: str | Path, overrides: dict | None = None, warm_up: bool = False) -> Session:
    """A Session for `source` (built-in name or .toml path) with capacity for pouring.

    warm_up: compile the kernels of every path now (Session.warm_up: while "loading…" shows) rather than
    on the first frame, push, pour or obstacle; the state afterwards is exactly the initial one.
    """
    scene = load_scene(source, overrides)
    if scene.capacity is None:  # the solver's default leaves no room to pour into a scene without emitters
        spacing = solver_config(scene, 1).particle_spacing
        rng = np.random.default_rng(scene.seed)  # the same draws as build_solver: an exact count
        total = sum(len(sample_body(body, scene, spacing, rng)) for body in scene.bodies)
        scene.capacity = int(min(MAX_PARTICLES, max(2 * total, total + GUI_HEADROOM, 1024)))
    # Hybrid where shipped weights fit (the mode message says why not elsewhere); the viewport never
    # waits for a sketch's plan.
    session = Session(scene, mode="auto", plan_async=True)
    session.slice_ms = SOLVER_SLICE_MS
    if warm_up:
        try:
            session.warm_up()
        except BaseException:
            session.close()
            raise
    return session
