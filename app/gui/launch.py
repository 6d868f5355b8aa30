"""Starting the GUI: the QApplication, the GL surface format, Taichi, and the first window.

Also the `screenshot` command that regenerates docs/screenshot.png.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop
from PySide6.QtGui import QSurfaceFormat
from PySide6.QtWidgets import QApplication

from app.gui.errors import describe
from app.gui.viewport import surface_format
from app.gui.window import MainWindow
from sim.arch import BackendError, active_arch, init_taichi

DEFAULT_SCENE = "dam_break"
_APP: QApplication | None = None


class NoDisplayError(OSError):
    """Qt would abort without a display; say so in one line instead (an OSError: main.py reports it so)."""


def ensure_display() -> None:
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise NoDisplayError(
                "no display (DISPLAY/WAYLAND_DISPLAY unset): run under a desktop session or xvfb-run"
            )


def application() -> QApplication:
    """The process's QApplication, created with the 3.3 core default surface format."""
    global _APP
    app = QApplication.instance()
    if app is None:
        ensure_display()
        QSurfaceFormat.setDefaultFormat(surface_format())  # before the QApplication: applies to all
        app = QApplication([sys.argv[0] if sys.argv else "sluice"])
        app.setApplicationName("sluice")
        _APP = app  # the Python wrapper must outlive every widget
    return app  # type: ignore[return-value]


def start_taichi(arch: str) -> str | None:
    """Start Taichi on `arch`; a missing GPU falls back to the CPU. Returns a note for the status bar."""
    try:
        init_taichi(arch)
    except BackendError as e:
        init_taichi("cpu")
        return f"{e}; running on the CPU"
    return None


def open_window(scene: str | Path, play: bool = True, overrides: dict | None = None) -> MainWindow:
    """The main window on `scene`; a scene that cannot be opened gives the default one and the error."""
    try:
        return MainWindow(scene, overrides, play=play)
    except Exception as e:
        if str(scene) == DEFAULT_SCENE:
            raise
        window = MainWindow(DEFAULT_SCENE, overrides, play=play)
        window.report_error(f"could not open {scene}: {describe(e)}; opened {DEFAULT_SCENE} instead")
        return window


def run_gui(scene: str | Path = DEFAULT_SCENE, arch: str = "auto", device: str = "auto") -> int:
    from neural.device import DeviceError, adapt_threads, set_device

    adapt_threads()  # the window's network calls pick torch's thread count by their timings
    app = application()
    note = start_taichi(arch)
    try:
        set_device(device, active_arch())
    except DeviceError as e:  # the networks stay on the CPU; the window says why
        note = f"{note + '; ' if note else ''}{e}; the networks run on the CPU"
    window = open_window(scene)
    window.show()
    if note:
        window.report_error(note)
    return app.exec()


def pump(loop: QEventLoop | None = None) -> None:
    """One pass of the event loop."""
    (loop or QEventLoop()).processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def wait_events(ms: float) -> None:
    """Run the event loop for about `ms` milliseconds."""
    end, loop = time.perf_counter() + ms / 1e3, QEventLoop()
    while time.perf_counter() < end:
        pump(loop)


# Where save_window_screenshot draws its obstacle: drags from one corner to the other, in fractions of the
# domain (x, y, and z in 3D, where the tool stands the box on the floor under them), tried in order.
OBSTACLE_DRAGS = (((0.55, 0.18, 0.5), (0.8, 0.24, 0.5)), ((0.25, 0.18, 0.5), (0.45, 0.24, 0.5)))


def free_obstacle_drag(colliders, size) -> tuple[list[float], list[float]] | None:
    """The first of OBSTACLE_DRAGS (in metres) whose box is clear of every collider by 2% of the domain,
    or None: the picture shows the new box beside the scene's obstacles, not over one (a drag on
    sand_ramps' lower ramp hid the box in the ramp)."""
    size = np.asarray(size, float)
    dim = len(size)
    margin = 0.02 * float(size.max())
    for lo, hi in OBSTACLE_DRAGS:
        a, b = np.asarray(lo[:dim]) * size, np.asarray(hi[:dim]) * size
        axes = [np.linspace(min(p, q) - margin, max(p, q) + margin, 9) for p, q in zip(a, b)]
        points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
        if all(np.asarray(c.signed_distance(points)).min() > 0 for c in colliders):
            return [float(v) for v in a], [float(v) for v in b]
    return None


def scene_material(scene) -> str:
    """One of the scene's own materials (neural.catalog.scene_materials): what a pour adds without
    switching the hybrid off (weights are chosen by the scene's materials)."""
    from neural.catalog import scene_materials

    return min(scene_materials(scene), default="water")


def save_window_screenshot(
    out: Path, scene: str = DEFAULT_SCENE, frames: int = 120, size: tuple[int, int] = (1280, 760), arch="auto"
) -> Path:
    """Open the window in its default mode, run `frames` frames with an obstacle drawn where there is none
    (free_obstacle_drag) and some of the scene's own material poured (scene_material: so Hybrid stays on
    where weights fit), then grab the whole window (QWidget.grab) into `out` (PNG)."""
    application()
    start_taichi(arch)
    window = open_window(scene, play=False)
    window.resize(*size)
    window.show()
    wait_events(300)
    vp, size = window.viewport, window.session.scene.size

    def point(fx: float, fy: float, fz: float = 0.5) -> list[float]:  # fractions of the domain -> metres
        return [f * s for f, s in zip((fx, fy, fz), size)]

    drag = free_obstacle_drag(window.session.solver.colliders, size)
    if drag is not None:  # only where no obstacle is, so the box shows
        obstacle = vp.tools["obstacle"]
        obstacle.press(drag[0], obstacle.mods)
        obstacle.release(drag[1], obstacle.mods)
    window.set_material(scene_material(window.session.scene))
    window.set_tool("pour")
    window.set_radius(0.6 * window.settings.radius)
    window.play()
    pouring, loop = False, QEventLoop()
    while window.session.frame < frames:
        f = window.session.frame
        if not pouring and f >= frames // 4:
            vp.tool.press(point(0.72, 0.85), vp.tool.mods)
            pouring = True
        if pouring and f >= frames * 2 // 3 and vp.tool.held:
            vp.tool.release(point(0.72, 0.85), vp.tool.mods)
        pump(loop)
    vp.tool.move(point(0.72, 0.85), vp.tool.mods)  # the cursor circle shows the tool's radius
    window._refresh_hud()
    wait_events(400)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out), "PNG"):
        raise OSError(f"{out}: could not write the PNG")
    window.pause()
    window.close()
    pump()
    return out
