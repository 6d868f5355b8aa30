"""The mouse tools, in domain coordinates: each turns press/move/release into Session verbs.

No Qt here: the viewport asks the tool which domain point a pixel means (`locate`, through mapping.py)
and passes it in, so the same gestures are testable without a window. In 2D that is always the point
under the cursor. In 3D it depends on the tool: push acts on the tool plane (through the fluid's centroid,
facing the camera); pour and erase on what the cursor shows (the fluid's surface, else the floor);
obstacles are drawn on the floor; a sketch stroke lies on the tool plane, or on the floor with Ctrl.
Continuous effects (push, pour, erase while held) are applied in before_tick(), once per simulation
frame, so a slow frame never queues a backlog of brushes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.gui.mapping import ToolPlane, ViewMapping, lift_stroke
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

    def locate(self, mapping: ViewMapping, x: float, y: float, mods: Modifiers) -> np.ndarray | None:
        """The domain point this tool means by widget pixel (x, y); None: no point there (the event is
        skipped). Default: the point under the cursor (2D), on the tool plane (3D)."""
        return mapping.to_domain(x, y)

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
    """Hold: an emitter of the selected material at the cursor.

    3D: the nozzle sits a little above the point the cursor shows (the fluid's surface, else the floor).
    While held it follows the cursor at that point's height (on the horizontal plane through it), so the
    poured stream itself never lifts it."""

    name, label, shortcut = "pour", "Pour", "F"
    tip = "Pour: hold to pour the selected material at the cursor (3D: onto the fluid or the floor it shows)."
    LIFT_SPACINGS = 2.0  # 3D: the nozzle's height above the hit point, in particle spacings

    def locate(self, mapping, x, y, mods):
        if mapping.dim == 2:
            return super().locate(mapping, x, y, mods)
        if self.held and self.cursor is not None:
            level = ToolPlane(np.array([0.0, self.cursor[1], 0.0]), np.array([0.0, 1.0, 0.0]))
            p = mapping.on_plane(x, y, level)
            if p is not None:
                return np.clip(p, 0.0, np.asarray(mapping.size, float))
        return mapping.hit(x, y)

    def _velocity(self) -> np.ndarray:
        v = np.zeros(self.session.dim)
        v[1] = -self.host.settings.pour_speed
        return v

    def _nozzle(self) -> np.ndarray:
        center = np.asarray(self.cursor, float).copy()
        if self.session.dim == 3:
            center[1] += self.LIFT_SPACINGS * self.session.solver.config.particle_spacing
        return center

    def _start(self) -> None:
        s = self.host.settings
        self.session.pour(self._nozzle(), s.radius, self._velocity(), s.material, name=POUR_NAME)
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
    tip = "Erase: hold and drag to remove particles under the cursor (3D: a ball at the fluid's surface)."

    def locate(self, mapping, x, y, mods):
        # 3D: the ball is centred where the cursor meets the fluid (else the floor): it removes what the
        # user sees, and dragging on digs into the hole.
        return super().locate(mapping, x, y, mods) if mapping.dim == 2 else mapping.hit(x, y)

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

    A press only marks the obstacle under it; the release decides: within CLICK_SLOP of the press it is a
    click and deletes that obstacle, farther it draws its box there and the obstacle stays (a drag that
    happened to start on a ramp used to delete the ramp).

    3D: obstacles stand on the floor. The drag's ends are floor points (y = 0); the box spans them in x
    and z and is the tool radius tall; the sphere (Shift) is centred above the drag's start, resting on
    the floor, with the drag's length as radius. A click deletes the first obstacle along the ray: the
    press is located at that obstacle, while its drag starts at the floor point under the cursor."""

    name, label, shortcut = "obstacle", "Obstacle", "O"
    tip = (
        "Obstacle: drag to draw a box (Shift: a circle; 3D: on the floor, a box the tool radius tall or a "
        "sphere); click an obstacle to delete it."
    )
    shows_radius = False
    RAY_SAMPLES = 256  # 3D: points tested along the cursor's ray for an obstacle to delete
    CLICK_SLOP = 0.015  # of the domain's longest side (about 10 pixels across the view): a hand's click

    def locate(self, mapping, x, y, mods):
        if mapping.dim == 2:
            return super().locate(mapping, x, y, mods)
        floor = mapping.on_floor(x, y)
        if not self.held:  # a press: an obstacle in front of the floor is the one a click deletes
            self.floor_under_press = floor
            inside = self._obstacle_on_ray(mapping, x, y)
            if inside is not None:
                return inside
        return floor

    def _obstacle_on_ray(self, mapping, x, y) -> np.ndarray | None:
        """The first of RAY_SAMPLES points along the ray inside the domain (up to the floor) that lies in
        an obstacle, or None."""
        colliders = self.session.solver.colliders
        if not colliders:
            return None
        origin, direction = mapping.ray(x, y)
        size = np.asarray(mapping.size, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (0.0 - origin) / direction, (size - origin) / direction
        near = np.nanmax(np.minimum(t0, t1))
        far = np.nanmin(np.maximum(t0, t1))
        if direction[1] < 0:  # stop at the floor
            far = min(far, -origin[1] / direction[1])
        near = max(near, 0.0)
        if not far > near:
            return None
        points = origin + np.linspace(near, far, self.RAY_SAMPLES)[:, None] * direction
        inside = np.zeros(len(points), bool)
        for c in colliders:
            inside |= np.asarray(c.signed_distance(points)) <= 0
        return points[int(np.argmax(inside))] if inside.any() else None

    def __init__(self, host):
        super().__init__(host)
        self.start: np.ndarray | None = None
        self.pressed_on: np.ndarray | None = None  # the press's point, when it landed on an obstacle
        self.floor_under_press: np.ndarray | None = None  # 3D: set by locate() for the coming press

    def press(self, p, mods):
        super().press(p, mods)
        on_obstacle = self.session.obstacle_at(p) is not None
        self.pressed_on = np.asarray(p, float) if on_obstacle else None
        floor = self.floor_under_press if self.session.dim == 3 and on_obstacle else None
        self.floor_under_press = None  # used once: a press that skipped locate() finds none
        self.start = np.asarray(floor if floor is not None else p, float)
        if floor is not None:
            self.cursor = self.start  # the drag is on the floor; until a move, it has not left the press

    def release(self, p, mods):
        super().release(p, mods)
        start, pressed_on = self.start, self.pressed_on
        self.start = self.pressed_on = None
        if start is None:
            return
        end = np.asarray(p, float)
        description = self.describe(start, end, mods.shift)
        if pressed_on is not None and self._is_click(start, end, description):
            index = self.session.obstacle_at(pressed_on)  # again: a reset while held may have removed it
            if index is not None:
                self.session.remove_obstacle(index)
        elif description is not None:
            self.session.add_obstacle(description)

    def _is_click(self, start: np.ndarray, end: np.ndarray, description: dict | None) -> bool:
        """Within CLICK_SLOP of the press, or too short to draw anything: every release draws or deletes."""
        step = (end - start) * ((1, 0, 1) if self.session.dim == 3 else 1)  # 3D: along the floor
        near = float(np.linalg.norm(step)) < self.CLICK_SLOP * max(self.session.scene.size)
        return near or description is None

    def cancel(self) -> None:
        self.start = self.pressed_on = None
        super().cancel()

    def describe(self, a: np.ndarray, b: np.ndarray, circle: bool) -> dict | None:
        """The scene-format obstacle for a drag from a to b; None for a drag too short to mean one."""
        spacing = self.session.solver.config.particle_spacing
        size = np.asarray(self.session.scene.size, float)
        a, b = np.clip(a, 0.0, size), np.clip(b, 0.0, size)
        if float(np.linalg.norm(b - a)) < 2 * spacing:
            return None
        if self.session.dim == 3:
            return self._on_floor(a, b, circle, spacing)
        if circle:
            return {"shape": "sphere", "center": a.tolist(), "radius": float(np.linalg.norm(b - a))}
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        thin = self.host.settings.radius if self.session.dim == 3 else 2 * spacing
        mid = (lo + hi) / 2
        grow = hi - lo < thin
        lo[grow], hi[grow] = mid[grow] - thin / 2, mid[grow] + thin / 2
        return {"shape": "box", "min": lo.tolist(), "max": hi.tolist()}

    def _on_floor(self, a: np.ndarray, b: np.ndarray, sphere: bool, spacing: float) -> dict:
        """3D: a box spanning a and b in x and z, standing on the floor and the tool radius tall (walls at
        least a cell thick), or a sphere resting on the floor above a."""
        a, b = a * (1, 0, 1), b * (1, 0, 1)
        if sphere:
            radius = float(np.linalg.norm(b - a))
            return {"shape": "sphere", "center": [a[0], radius, a[2]], "radius": radius}
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        thin, mid = 2 * spacing, (lo + hi) / 2
        grow = hi - lo < thin
        grow[1] = False
        lo[grow], hi[grow] = mid[grow] - thin / 2, mid[grow] + thin / 2
        hi[1] = max(self.host.settings.radius, thin)
        return {"shape": "box", "min": lo.tolist(), "max": hi.tolist()}

    def overlay(self, mapping) -> list[np.ndarray]:
        if self.start is None or self.cursor is None:
            return []
        cursor = np.asarray(self.cursor, float)
        d = self.describe(self.start, cursor, self.mods.shift)
        if self.pressed_on is not None and self._is_click(self.start, cursor, d):
            return []  # released here, this deletes the obstacle pressed on: no box to preview
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
    stroke joins the sketch and re-plans; Esc clears it.

    3D: a stroke is lifted into the scene (mapping.lift_stroke) onto the plane through the fluid's centroid
    facing the camera, or onto the floor when Ctrl is held as it starts (Shift and Ctrl carry no meaning
    for this tool in 2D). The plane is fixed for the whole stroke; points off the floor are skipped."""

    name, label, shortcut = "sketch", "Sketch", "K"
    tip = (
        "Sketch: draw a path to move the fluid along it, or a loop to gather it there. Esc clears. "
        "3D: strokes lie on the plane through the fluid facing you; hold Ctrl to draw on the floor."
    )
    shows_radius = False

    def __init__(self, host):
        super().__init__(host)
        self.strokes: list[list[np.ndarray]] = []
        self.current: list[np.ndarray] | None = None
        self._lift: tuple[ViewMapping, bool] | None = None  # 3D: the stroke's mapping and surface

    def locate(self, mapping, x, y, mods):
        if mapping.dim == 2:
            return super().locate(mapping, x, y, mods)
        if not self.held or self._lift is None:  # a stroke starts: freeze its plane (and camera)
            self._lift = (mapping, mods.ctrl)
        frozen, onto_floor = self._lift
        points = lift_stroke(frozen, [(x, y)], onto_floor)
        return points[0] if len(points) else None

    def press(self, p, mods):
        super().press(p, mods)
        self.current = [np.asarray(p, float)]

    def move(self, p, mods):
        super().move(p, mods)
        if self.held and self.current is not None:
            self.current.append(np.asarray(p, float))

    def release(self, p, mods):
        super().release(p, mods)
        self._lift = None
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
        self._lift = None
        super().cancel()

    def overlay(self, mapping) -> list[np.ndarray]:
        return [np.array(self.current, np.float32)] if self.current and len(self.current) > 1 else []


def _box_edges(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    edges = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
    return [corners[[i, j]].astype(np.float32) for i, j in edges]


TOOL_CLASSES: tuple[type[Tool], ...] = (PushTool, PourTool, EraseTool, ObstacleTool, SketchTool, CameraTool)
