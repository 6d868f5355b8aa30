"""`bench gui`: frames per second of the live window and its overhead over the simulation alone."""

from __future__ import annotations

import statistics
import time

from PySide6.QtCore import QEventLoop

from app.gui.launch import application, open_window, pump, wait_events
from sim.bench import record

SCENE = "dam_break"
SCENE_3D = "dam_break_3d"
SIZE = (1200, 760)


def _play(scene: str, frames: int, mode: str = "numerical") -> dict:
    """Open `scene`, switch to `mode`, play unpaced (no wait for real time) for `frames` frames."""
    window = open_window(scene, play=False)
    window.resize(*SIZE)
    window.show()
    wait_events(300)
    if mode != "numerical" and not window.set_mode(mode):
        window.close()
        pump()
        raise RuntimeError(f"bench gui: {scene} has no {mode} mode here")
    window.loop.realtime = False
    window.step()  # compiles the kernels (and warms the network), outside the timing
    wait_events(100)
    render_ms: list[float] = []
    window.loop.ticked.connect(lambda _: render_ms.append(window.viewport.render_ms))
    ticks0, tick_s0 = window.loop.ticks, window.loop.tick_seconds
    started = time.perf_counter()
    window.play()
    loop = QEventLoop()
    while window.loop.ticks - ticks0 < frames:
        pump(loop)
    wall = time.perf_counter() - started
    window.pause()
    done = window.loop.ticks - ticks0
    out = {
        "frames": done,
        "wall": wall,
        "tick_s": window.loop.tick_seconds - tick_s0,
        "render_ms": statistics.median(render_ms[1:] or [0.0]),
        "particles": window.session.solver.n,
        "substeps": window.session.solver.substeps,
        "fallback_rate": window.session.fallback_rate,
    }
    window.close()
    pump()
    return out


def gui_records(quick: bool = False) -> list[dict]:
    """dam_break in Numerical mode, playing unpaced for 300 frames (30 quick), and dam_break_3d in Hybrid
    mode for 60 frames (10 quick).

    gui.overhead.ratio = wall time per GUI frame / time inside Session.tick per frame: what the window
    (frame export, drawing, HUD, event handling) adds on top of the simulation."""
    application()
    run = _play(SCENE, 30 if quick else 300)
    done, wall, tick_s = run["frames"], run["wall"], run["tick_s"]
    records = [
        record(
            "gui.fps",
            done / wall,
            "1/s",
            scene=SCENE,
            frames=done,
            particles=run["particles"],
            substeps=run["substeps"],
        ),
        record("gui.overhead.ratio", (wall / done) / (tick_s / done), "x", target="<= 1.2"),
        record("gui.tick_ms", tick_s / done * 1e3, "ms", note="Session.tick, mean"),
        record("gui.render_ms", run["render_ms"], "ms", note="paintGL CPU time, median"),
    ]
    try:
        run = _play(SCENE_3D, 10 if quick else 60, "hybrid")
    except RuntimeError as e:  # no 3D weights: say so rather than time the numerical solver
        print(e)
        return records
    return records + [
        record(
            f"gui.fps.{SCENE_3D}.hybrid",
            run["frames"] / run["wall"],
            "1/s",
            scene=SCENE_3D,
            frames=run["frames"],
            particles=run["particles"],
            fallback_rate=run["fallback_rate"],
        ),
        record(f"gui.render_ms.{SCENE_3D}", run["render_ms"], "ms", note="paintGL CPU time, median"),
    ]
