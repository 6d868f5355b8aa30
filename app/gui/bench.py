"""`bench gui`: frames per second of the live window and its overhead over the simulation alone."""

from __future__ import annotations

import statistics
import time

from PySide6.QtCore import QEventLoop

from app.gui.launch import application, open_window, pump, wait_events
from sim.bench import record

SCENE = "dam_break"
SIZE = (1200, 760)


def gui_records(quick: bool = False) -> list[dict]:
    """dam_break in Numerical mode, playing unpaced (no wait for real time) for 300 frames (30 quick).

    gui.overhead.ratio = wall time per GUI frame / time inside Session.tick per frame: what the window
    (frame export, drawing, HUD, event handling) adds on top of the simulation."""
    frames = 30 if quick else 300
    application()
    window = open_window(SCENE, play=False)
    window.resize(*SIZE)
    window.show()
    wait_events(300)
    window.loop.realtime = False
    window.step()  # compiles the kernels, outside the timing
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
    tick_s = window.loop.tick_seconds - tick_s0
    particles, substeps = window.session.solver.n, window.session.solver.substeps
    window.close()
    pump()
    return [
        record(
            "gui.fps", done / wall, "1/s", scene=SCENE, frames=done, particles=particles, substeps=substeps
        ),
        record("gui.overhead.ratio", (wall / done) / (tick_s / done), "x", target="<= 1.2"),
        record("gui.tick_ms", tick_s / done * 1e3, "ms", note="Session.tick, mean"),
        record(
            "gui.render_ms", statistics.median(render_ms[1:] or [0.0]), "ms", note="paintGL CPU time, median"
        ),
    ]
