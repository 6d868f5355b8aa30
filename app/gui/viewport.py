"""The viewport: a QOpenGLWidget that draws the Session with the shared Renderer and feeds the mouse to
the tools and the camera.

PyOpenGL binds to the platform of the first OpenGL import; in this GUI process that is Qt's GLX (or
EGL) context, so nothing here imports app.render.headless.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QSurfaceFormat, QWheelEvent
from PySide6.QtOpenGLWidgets import QOpenGLWidget

from app.gui.errors import guarded
from app.gui.mapping import PanZoom, ToolPlane, ViewMapping, mapping_for
from app.gui.tools import TOOL_CLASSES, Modifiers, Tool, ToolSettings
from app.render.camera import OrbitCamera
from app.render.renderer import Renderer
from app.render.view import FrameView
from app.session import Session

ORBIT_DEG_PER_PX = 0.4
WHEEL_ZOOM = 1.15  # per wheel notch (120 units)


def surface_format() -> QSurfaceFormat:
    """OpenGL 3.3 core with a 24-bit depth buffer: what the Renderer needs."""
    fmt = QSurfaceFormat()
    fmt.setVersion(3, 3)
    fmt.setProfile(QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    fmt.setDepthBufferSize(24)
    fmt.setRenderableType(QSurfaceFormat.RenderableType.OpenGL)
    return fmt


def _mods(event) -> Modifiers:
    m = event.modifiers()
    return Modifiers(
        shift=bool(m & Qt.KeyboardModifier.ShiftModifier), ctrl=bool(m & Qt.KeyboardModifier.ControlModifier)
    )


class Viewport(QOpenGLWidget):
    error = Signal(str)
    notice = Signal(str)

    def __init__(self, session: Session, settings: ToolSettings, parent=None):
        super().__init__(parent)
        self.setFormat(surface_format())
        self.setMouseTracking(True)  # the cursor circle follows the mouse without a button held
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setMinimumSize(320, 240)
        self.session = session
        self.settings = settings
        self.tools: dict[str, Tool] = {cls.name: cls(self) for cls in TOOL_CLASSES}
        self.tool: Tool = self.tools["push"]
        self.color_mode = "material"
        self.draw_scale = 1.0
        self.hud = ""
        self.render_ms = 0.0
        self.renderer: Renderer | None = None
        self._view: FrameView | None = None
        self._centroid: np.ndarray | None = None
        self._nav: tuple[str, QPointF] | None = None  # a camera drag in progress: (kind, last position)
        self.reset_camera()

    # ------------------------------------------------------------------------------------- state
    def report_error(self, message: str) -> None:
        self.error.emit(message)

    def notify(self, message: str) -> None:
        self.notice.emit(message)

    def set_session(self, session: Session) -> None:
        for tool in self.tools.values():
            tool.cancel()
        self.session = session
        self.reset_camera()
        self.invalidate()

    def set_tool(self, name: str) -> None:
        self.tool.cancel()
        self.tool = self.tools[name]
        self.setCursor(Qt.CursorShape.OpenHandCursor if self.tool.navigates else Qt.CursorShape.CrossCursor)
        self.update()

    def reset_camera(self) -> None:
        self.pan_zoom = PanZoom()
        self.camera = OrbitCamera.default_for(self.session.scene.size) if self.session.dim == 3 else None
        self.update()

    def invalidate(self) -> None:
        """The session's state changed: rebuild the frame on the next paint."""
        self._view = None
        self.update()

    def frame_view(self) -> FrameView:
        """The session's current frame (cached until invalidate()), without overlays."""
        if self._view is None:
            self._view = self.session.frame_view(self.color_mode)
            pos = self._view.positions
            self._centroid = pos.mean(axis=0) if len(pos) else np.asarray(self.session.scene.size) / 2
        return self._view

    def framebuffer_size(self) -> tuple[int, int]:
        dpr = self.devicePixelRatioF()
        return max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr))

    def mapping(self) -> ViewMapping:
        """Pixels <-> domain for what is on screen now (see mapping.py)."""
        w, h = self.framebuffer_size()
        scene = self.session.scene
        plane, particles, radius = None, None, 0.0
        if scene.dim == 3:
            view = self.frame_view()
            normal = self.camera.eye().astype(float) - self.camera.target.astype(float)
            plane = ToolPlane(np.asarray(self._centroid, float), normal / np.linalg.norm(normal))
            particles, radius = view.positions, view.particle_radius * self.draw_scale  # as drawn
        return mapping_for(
            scene.dim,
            scene.size,
            w,
            h,
            self.devicePixelRatioF(),
            self.pan_zoom,
            self.camera,
            plane,
            particles,
            radius,
        )

    # ----------------------------------------------------------------------------------- drawing
    def initializeGL(self) -> None:
        self.renderer = Renderer()
        self.context().aboutToBeDestroyed.connect(self.release_gl)

    def release_gl(self) -> None:
        """Free the renderer's GL objects while their context still exists."""
        if self.renderer is not None and self.context() is not None:
            self.makeCurrent()
            self.renderer.release()
            self.doneCurrent()
        self.renderer = None

    @guarded
    def paintGL(self) -> None:
        started = time.perf_counter()
        if self.renderer is None:
            self.renderer = Renderer()
        base = self.frame_view()
        mapping = self.mapping()
        strokes = base.strokes + self.tool.overlay(mapping)  # the sketch; the cursor circle, a drag preview
        view = dataclasses.replace(
            base, strokes=strokes, hud=self.hud, particle_radius=base.particle_radius * self.draw_scale
        )
        w, h = mapping.width, mapping.height
        pan_zoom = self.pan_zoom.matrix(view.size, w, h) if view.dim == 2 else None
        self.renderer.render(view, w, h, self.camera, pan_zoom_2d=pan_zoom)
        self.render_ms = (time.perf_counter() - started) * 1e3

    def grab_rgb(self) -> np.ndarray:
        """Render the current frame now and return its pixels (H, W, 3). Synchronous, whatever the paint
        events do: a recording needs exactly one image per simulation frame."""
        image = self.grabFramebuffer().convertToFormat(QImage.Format.Format_RGB888)
        w, h = image.width(), image.height()
        rows = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes()).reshape(h, -1)
        return rows[:, : w * 3].reshape(h, w, 3).copy()

    # ------------------------------------------------------------------------------------- mouse
    def _locate(self, event: QMouseEvent) -> np.ndarray | None:
        """The domain point the current tool means by the event's pixel (see Tool.locate)."""
        pos = event.position()
        return self.tool.locate(self.mapping(), pos.x(), pos.y(), _mods(event))

    def _navigation(self, event: QMouseEvent) -> str | None:
        """Which camera drag a press starts, if any."""
        button, three_d = event.button(), self.session.dim == 3
        if button == Qt.MouseButton.MiddleButton:
            return "pan"
        if button == Qt.MouseButton.RightButton and three_d:
            return "orbit"
        if button == Qt.MouseButton.LeftButton and self.tool.navigates:
            return "orbit" if three_d and not _mods(event).shift else "pan"
        return None

    @guarded
    def mousePressEvent(self, event: QMouseEvent) -> None:
        kind = self._navigation(event)
        if kind is not None:
            self._nav = (kind, event.position())
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() == Qt.MouseButton.LeftButton:
            p = self._locate(event)
            if p is not None:
                self.tool.press(p, _mods(event))
                self.invalidate()

    @guarded
    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._nav is not None:
            self._navigate(self._nav[0], self._nav[1], pos)
            self._nav = (self._nav[0], pos)
            self.update()
            return
        p = self._locate(event)
        if p is None:  # nothing there for this tool (a 3D ray above the floor's horizon)
            return
        self.tool.move(p, _mods(event))
        if self.tool.held and self.tool.name == "erase":
            self.invalidate()  # erasing changed the particles
        else:
            self.update()  # only the overlay moved

    @guarded
    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._nav is not None:
            self._nav = None
            self.set_tool(self.tool.name)  # restores the tool's cursor
            return
        if event.button() == Qt.MouseButton.LeftButton and self.tool.held:
            p = self._locate(event)
            self.tool.release(p if p is not None else self.tool.cursor, _mods(event))
            self.invalidate()

    def _navigate(self, kind: str, last: QPointF, pos: QPointF) -> None:
        dx, dy = pos.x() - last.x(), pos.y() - last.y()
        if self.session.dim == 2:
            m = self.mapping()
            delta = m.to_domain(pos.x(), pos.y()) - m.to_domain(last.x(), last.y())
            self.pan_zoom.pan_by(delta, self.session.scene.size)
        elif kind == "orbit":
            self.camera.orbit(-dx * ORBIT_DEG_PER_PX, dy * ORBIT_DEG_PER_PX)
        else:
            self.camera.pan(-dx / max(self.height(), 1), dy / max(self.height(), 1))

    @guarded
    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120.0
        if notches == 0:
            return
        factor = WHEEL_ZOOM**notches
        if self.session.dim == 2:
            pos = event.position()
            anchor = self.mapping().to_domain(pos.x(), pos.y())
            self.pan_zoom.zoom_about(anchor, factor, self.session.scene.size)
        else:
            self.camera.zoom(1.0 / factor)
        self.update()

    def enterEvent(self, event) -> None:
        if self.window().isActiveWindow():
            self.setFocus()  # keys are shortcuts again after typing in a panel field
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        if not self.tool.held:
            self.tool.cursor = None
        self.update()
        super().leaveEvent(event)
