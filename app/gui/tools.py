"""The mouse tools, in domain coordinates: each turns press/move/release into Session verbs.

No Qt here: the viewport maps pixels to domain points (mapping.py) and passes them in, so the same
gestures are testable without a window. Continuous effects (push, pour, erase while held) are applied
in before_tick(), once per simulation frame, so a slow frame never queues a backlog of brushes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.session import Session

POUR_NAME = "gui_pour"


@dataclass(frozen=True)
class Modifiers:
    shift: bool = False
    ctrl: bool = False


@dataclass
class ToolSettings:
    radius: float  # metres: brush, nozzle and eraser radius (the cursor circle)
    material: str = "water"  # what Pour emits
    pour_speed: float = 0.5  # m/s out of the nozzle, downwards (with the radius, sets the flow rate)
    push_cap: float = 400.0  # m/s^2: the fastest drag's acceleration
    attract: float = 150.0  # m/s^2 of attract (Shift) and repel (Ctrl)


class ToolHost(Protocol):
    session: Session
    settings: ToolSettings

    def notify(self, message: str) -> None: ...


class Tool:
    """Base: a tool that does nothing. `overlay` returns polylines (K, dim) drawn over the scene."""

    name = "tool"
    label = "Tool"
    shortcut = ""
    tip = ""
    shows_radius = True  # the cursor circle
    navigates = False  # the camera tool: the viewport handles its drags

    def __init__(self, host: ToolHost):
        self.host = host
        self.held = False
        self.cursor: np.ndarray | None = None  # last domain point under the mouse
        self.mods = Modifiers()

    @property
    def session(self) -> Session:
        return self.host.session

    def press(self, p: np.ndarray, mods: Modifiers) -> None:
        self.held, self.cursor, self.mods = True, p, mods

    def move(self, p: np.ndarray, mods: Modifiers) -> None:
        self.cursor, self.mods = p, mods

    def release(self, p: np.ndarray, mods: Modifiers) -> None:
        self.held, self.cursor, self.mods = False, p, mods

    def before_tick(self) -> None:
        pass

    def cancel(self) -> None:
        """Drop any gesture in progress (scene switch, tool switch)."""
        self.held = False

    def overlay(self, mapping) -> list[np.ndarray]:
        if self.cursor is None or not self.shows_radius:
            return []
        return [mapping.circle(self.cursor, self.host.settings.radius)]


class PushTool(Tool):
    """Drag: push along the drag, strength ~ drag speed (capped). Shift: attract, Ctrl: repel."""

    name, label, shortcut = "push", "Push", "P"
    tip = "Push: drag to push fluid along the drag. Shift attracts to the cursor, Ctrl repels."

    def press(self, p, mods):
        super().press(p, mods)
        self._anchor, self._anchor_time = p, time.perf_counter()

    def before_tick(self) -> None:
        if not self.held or self.cursor is None:
            return
        s = self.host.settings
        if self.mods.shift or self.mods.ctrl:
            mode = "attract" if self.mods.shift else "repel"
            self.session.brush(self.cursor, s.radius, s.attract, mode)
            return
        now = time.perf_counter()
        drag = np.asarray(self.cursor, float) - np.asarray(self._anchor, float)
        frame_dt = self.session.scene.frame_dt
        # The drag since the last frame, as a speed; an acceleration of speed / frame_dt gives the fluid
        # under the brush about the drag's velocity within one frame.
        speed = float(np.linalg.norm(drag)) / max(now - self._anchor_time, frame_dt)
        if speed > 0:
            strength = min(speed / frame_dt, s.push_cap)
            self.session.brush(self.cursor, s.radius, strength, "push", drag)
        self._anchor, self._anchor_time = self.cursor, now


class PourTool(Tool):
    """Hold: an emitter of the selected material at the cursor."""

    name, label, shortcut = "pour", "Pour", "F"
    tip = "Pour: hold to pour the selected material at the cursor."

    def _velocity(self) -> np.ndarray:
        v = np.zeros(self.session.dim)
        v[1] = -self.host.settings.pour_speed
        return v

    def _start(self) -> None:
        s = self.host.settings
        self.session.pour(self.cursor, s.radius, self._velocity(), s.material, name=POUR_NAME)
        self._placed = np.asarray(self.cursor, float)

    def press(self, p, mods):
        super().press(p, mods)
        self._start()

    def before_tick(self) -> None:
        if self.held and self.cursor is not None and not np.array_equal(self._placed, self.cursor):
            self._start()  # the nozzle follows the cursor

    def release(self, p, mods):
        super().release(p, mods)
        self.session.stop_pour(POUR_NAME)

    def cancel(self) -> None:
        if self.held:
            self.session.stop_pour(POUR_NAME)
        super().cancel()


class EraseTool(Tool):
    """Hold: remove particles within the radius (also those that flow in while held)."""

    name, label, shortcut = "erase", "Erase", "E"
    tip = "Erase: hold and drag to remove particles under the cursor."

    def _erase(self) -> None:
        self.session.erase(self.cursor, self.host.settings.radius)

    def press(self, p, mods):
        super().press(p, mods)
        self._erase()

    def move(self, p, mods):
        super().move(p, mods)
        if self.held:
            self._erase()

    def before_tick(self) -> None:
        if self.held and self.cursor is not None:
            self._erase()


class ObstacleTool(Tool):
    """Drag: a box (Shift: a circle/sphere). Click on an obstacle: delete it.

    3D: the box spans the dragged rectangle on the tool plane and is at least the tool radius deep on
    every axis; the sphere is centred where the drag started."""

    name, label, shortcut = "obstacle", "Obstacle", "O"
    tip = "Obstacle: drag to draw a box (Shift: a circle); click an obstacle to delete it."
    shows_radius = False

    def __init__(self, host):
        super().__init__(host)
        self.start: np.ndarray | None = None

    def press(self, p, mods):
        super().press(p, mods)
        index = self.session.obstacle_at(p)
        if index is not None:
            self.session.remove_obstacle(index)
            self.start = None
        else:
            self.start = np.asarray(p, float)

    def release(self, p, mods):
        super().release(p, mods)
        start, self.start = self.start, None
        if start is not None:
            description = self.describe(start, np.asarray(p, float), mods.shift)
            if description is not None:
                self.session.add_obstacle(description)

    def cancel(self) -> None:
        self.start = None
        super().cancel()

    def describe(self, a: np.ndarray, b: np.ndarray, circle: bool) -> dict | None:
        """The scene-format obstacle for a drag from a to b; None for a drag too short to mean one."""
        spacing = self.session.solver.config.particle_spacing
        size = np.asarray(self.session.scene.size, float)
        a, b = np.clip(a, 0.0, size), np.clip(b, 0.0, size)
        if float(np.linalg.norm(b - a)) < 2 * spacing:
            return None
        if circle:
            return {"shape": "sphere", "center": a.tolist(), "radius": float(np.linalg.norm(b - a))}
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        thin = self.host.settings.radius if self.session.dim == 3 else 2 * spacing
        mid = (lo + hi) / 2
        grow = hi - lo < thin
        lo[grow], hi[grow] = mid[grow] - thin / 2, mid[grow] + thin / 2
        return {"shape": "box", "min": lo.tolist(), "max": hi.tolist()}

    def overlay(self, mapping) -> list[np.ndarray]:
        if self.start is None or self.cursor is None:
            return []
        d = self.describe(self.start, np.asarray(self.cursor, float), self.mods.shift)
        if d is None:
            return []
        if d["shape"] == "sphere":
            return [mapping.circle(d["center"], d["radius"])]
        if self.session.dim == 2:
            return [mapping.rectangle(d["min"], d["max"])]
        return _box_edges(np.asarray(d["min"]), np.asarray(d["max"]))


class CameraTool(Tool):
    """2D: drag pans, wheel zooms. 3D: drag orbits, Shift-drag pans, wheel zooms (in the viewport)."""

    name, label, shortcut = "camera", "Camera", "C"
    tip = "Camera: drag to pan (3D: orbit; Shift-drag pans), wheel to zoom. Middle-drag pans with any tool."
    shows_radius = False
    navigates = True


class SketchTool(Tool):
    """Draw strokes: an open stroke moves the fluid along it, a closed loop gathers it inside. Each new
    stroke joins the sketch and re-plans; Esc clears it."""

    name, label, shortcut = "sketch", "Sketch", "K"
    tip = "Sketch: draw a path to move the fluid along it, or a loop to gather it there. Esc clears."
    shows_radius = False

    def __init__(self, host):
        super().__init__(host)
        self.strokes: list[list[np.ndarray]] = []
        self.current: list[np.ndarray] | None = None

    def press(self, p, mods):
        super().press(p, mods)
        self.current = [np.asarray(p, float)]

    def move(self, p, mods):
        super().move(p, mods)
        if self.held and self.current is not None:
            self.current.append(np.asarray(p, float))

    def release(self, p, mods):
        super().release(p, mods)
        if self.current is None:
            return
        self.current.append(np.asarray(p, float))
        self.strokes.append(self.current)
        self.current = None
        messages = self.session.sketch([np.array(s) for s in self.strokes])
        if self.session.sketched is None:  # nothing usable: keep only what the session kept (none)
            self.strokes.clear()
        for message in messages:
            self.host.notify(message)

    def clear(self) -> None:
        self.strokes.clear()
        self.current = None
        self.session.clear_sketch()

    def cancel(self) -> None:
        self.current = None
        super().cancel()

    def overlay(self, mapping) -> list[np.ndarray]:
        return [np.array(self.current, np.float32)] if self.current and len(self.current) > 1 else []


def _box_edges(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    edges = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
    return [corners[[i, j]].astype(np.float32) for i, j in edges]


TOOL_CLASSES: tuple[type[Tool], ...] = (PushTool, PourTool, EraseTool, ObstacleTool, SketchTool, CameraTool)
