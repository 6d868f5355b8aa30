"""The OpenGL 3.3 core renderer: draws a FrameView into whatever context and framebuffer is current.

Hosts: the Qt viewport (QOpenGLWidget.paintGL, whose context must be 3.3 core with a depth buffer)
and HeadlessContext for recording. The renderer never creates contexts nor binds framebuffers; GL
objects are created on the first render() and belong to the context current then. Call release()
with that context current to free them.

Per frame: particles are uploaded with one glBufferData per attribute (orphaning the old storage so
the driver never waits on the previous frame) and drawn with one glDrawArrays(GL_POINTS). Obstacle
and domain meshes are rebuilt only when the obstacles or the domain change; the HUD texture only
when its text changes.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from OpenGL import GL
from OpenGL.raw.GL.VERSION.GL_2_0 import glVertexAttribPointer as _raw_attrib_pointer
from OpenGL.raw.GL.VERSION.GL_3_0 import glVertexAttribIPointer as _raw_attrib_ipointer

from . import colors, geometry, shaders, text
from .camera import OrbitCamera
from .view import FrameView

_LIGHT_EYE = np.array([-0.35, 0.55, 0.76], np.float32)  # particles: from the upper left, towards the viewer
_LIGHT_WORLD = np.array([0.35, 0.85, 0.40], np.float32)  # meshes: mostly from above
_LIGHT_EYE /= np.linalg.norm(_LIGHT_EYE)
_LIGHT_WORLD /= np.linalg.norm(_LIGHT_WORLD)
WALL_PX, STROKE_PX, ARROW_PX = 2.0, 3.0, 2.0
HUD_OFFSET_PX = 6
LUT_SIZE = 16  # speed colormap entries, interpolated linearly in the vertex shader
_SPEED_LUT = np.ascontiguousarray(colors.speed_lut(LUT_SIZE), dtype=np.float32) / 255.0


@dataclass
class _Draw:
    mode: int
    first: int
    count: int
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    lit: bool = False
    checker: bool = False
    textured: bool = False


def _upload(buffer: int, data: np.ndarray) -> None:
    """Replace a buffer's contents (glBufferData orphans the old storage: no stall on the last frame)."""
    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, buffer)
    GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, ctypes.c_void_p(data.ctypes.data), GL.GL_STREAM_DRAW)


def _float_attrib(index: int, size: int, stride: int = 0, offset: int = 0) -> None:
    # The raw entry point: PyOpenGL's wrapper files the pointer under the current context as its
    # platform sees it, which fails for an EGL context when PyOpenGL was bound to GLX (e.g. by Qt).
    GL.glEnableVertexAttribArray(index)
    _raw_attrib_pointer(index, size, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(offset))


def _mat(m: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(m, dtype=np.float32)


class _Resources:
    """GL objects of one context."""

    def __init__(self) -> None:
        self._programs: dict[tuple[str, ...], shaders.Program] = {}
        self.screen = shaders.Program(shaders.SCREEN_VS, shaders.SCREEN_FS)
        vaos = GL.glGenVertexArrays(3)
        self.particle_vao, self.mesh_vao, self.screen_vao = (int(v) for v in vaos)
        bufs = GL.glGenBuffers(5)
        self.pos_buf, self.mat_buf, self.vel_buf, self.mesh_buf, self.screen_buf = (int(b) for b in bufs)
        self.hud_tex = int(GL.glGenTextures(1))
        renderer = GL.glGetString(GL.GL_RENDERER).decode(errors="replace").lower()
        self.software = any(name in renderer for name in ("llvmpipe", "softpipe", "swrast"))
        self._setup_vaos()
        try:
            lo, hi = GL.glGetFloatv(GL.GL_POINT_SIZE_RANGE)
            self.point_range = (max(float(lo), 1.0), float(hi))
        except GL.GLError:  # pragma: no cover - every 3.3 driver answers this
            self.point_range = (1.0, 64.0)

    def _setup_vaos(self) -> None:
        GL.glBindVertexArray(self.mesh_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.mesh_buf)
        _float_attrib(0, 3, 24, 0)
        _float_attrib(1, 3, 24, 12)
        GL.glBindVertexArray(self.screen_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.screen_buf)
        _float_attrib(0, 2, 32, 0)
        _float_attrib(1, 2, 32, 8)
        _float_attrib(2, 4, 32, 16)
        GL.glBindVertexArray(self.particle_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.mat_buf)
        _raw_attrib_ipointer(1, 1, GL.GL_INT, 0, ctypes.c_void_p(0))
        GL.glBindVertexArray(0)

    def particle_program(self, sphere_depth: bool, speed: bool) -> shaders.Program:
        defines = (f"LUT_SIZE {LUT_SIZE}",) + ("SPHERE_DEPTH",) * sphere_depth + ("SPEED_COLORS",) * speed
        return self._program(shaders.PARTICLE_VS, shaders.PARTICLE_FS, defines)

    def mesh_program(self, lit: bool, checker: bool) -> shaders.Program:
        return self._program(shaders.MESH_VS, shaders.MESH_FS, ("LIT",) * lit + ("CHECKER",) * checker)

    def _program(self, vs: str, fs: str, defines: tuple[str, ...]) -> shaders.Program:
        key = (vs, *defines)
        if key not in self._programs:  # variants compile on first use
            self._programs[key] = shaders.Program(vs, fs, defines)
        return self._programs[key]

    def delete(self) -> None:
        for program in (*self._programs.values(), self.screen):
            program.delete()
        GL.glDeleteVertexArrays(3, [self.particle_vao, self.mesh_vao, self.screen_vao])
        GL.glDeleteBuffers(5, [self.pos_buf, self.mat_buf, self.vel_buf, self.mesh_buf, self.screen_buf])
        GL.glDeleteTextures(1, [self.hud_tex])


class Renderer:
    """Draws FrameViews with OpenGL 3.3 core. One instance per GL context."""

    def __init__(self, sort_particles: bool | None = None) -> None:
        """sort_particles: reorder particles by screen tile before upload (see
        geometry.screen_tile_order). None: only on software rasterisers (llvmpipe, softpipe), where it
        made the 100k-particle draw ~1.8x faster; a GPU does not need it."""
        self.sort_particles = sort_particles
        self._gl: _Resources | None = None
        self._scene_key: object = None
        self._scene_draws: list[_Draw] = []
        self._hud_text: str | None = None
        self._hud_size = (0, 0)

    # ------------------------------------------------------------------------------------ public

    def render(
        self,
        view: FrameView,
        width: int,
        height: int,
        camera: OrbitCamera | None = None,
        pan_zoom_2d: np.ndarray | None = None,
    ) -> None:
        """Clear and draw `view` into the currently bound framebuffer at width x height pixels.

        width/height are framebuffer pixels (in Qt: the widget size times devicePixelRatio).
        2D ignores `camera`; in 3D None means OrbitCamera.default_for(view.size).
        pan_zoom_2d (2D only): a 4x4 matrix applied after the letterbox projection, i.e. in NDC (the
        GUI's zoom and pan). It goes into the projection so that particle sprites scale with the zoom.
        """
        if width <= 0 or height <= 0:
            return
        if self._gl is None:
            self._gl = _Resources()
        gl = self._gl
        if view.dim == 2:
            proj, _ = geometry.fit_2d(view.size, width, height)
            if pan_zoom_2d is not None:
                proj = np.asarray(pan_zoom_2d, dtype=np.float32) @ proj
            view_m = np.eye(4, dtype=np.float32)
        else:
            cam = camera if camera is not None else OrbitCamera.default_for(view.size)
            view_m, proj = cam.view_matrix(), cam.projection(width / height)
        proj, view_m = _mat(proj), _mat(view_m)

        GL.glViewport(0, 0, width, height)
        GL.glClearColor(*colors.BACKGROUND, 1.0)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        GL.glDisable(GL.GL_BLEND)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glDisable(GL.GL_SCISSOR_TEST)  # a host (e.g. QPainter) may leave these on
        GL.glDisable(GL.GL_STENCIL_TEST)
        if view.dim == 3:
            GL.glEnable(GL.GL_DEPTH_TEST)
            GL.glDepthFunc(GL.GL_LESS)
        else:
            GL.glDisable(GL.GL_DEPTH_TEST)  # 2D: painter's order
        self._draw_scene(gl, view, view_m, proj)
        self._draw_particles(gl, view, view_m, proj, width, height)
        GL.glDisable(GL.GL_DEPTH_TEST)
        self._draw_overlay(gl, view, proj @ view_m, width, height)
        GL.glBindVertexArray(0)
        GL.glUseProgram(0)

    def release(self) -> None:
        """Delete the GL objects; call with the context that first rendered current."""
        if self._gl is not None:
            self._gl.delete()
        self._gl = None
        self._scene_key = None
        self._hud_text = None

    def _sort_particles(self, gl: _Resources) -> bool:
        return gl.software if self.sort_particles is None else self.sort_particles

    # ------------------------------------------------------------------------------------ passes

    def _draw_scene(self, gl: _Resources, view: FrameView, view_m: np.ndarray, proj: np.ndarray) -> None:
        key = (view.dim, tuple(float(s) for s in view.size), repr(view.obstacles))
        if key != self._scene_key:
            self._build_scene(gl, view)
            self._scene_key = key
        GL.glBindVertexArray(gl.mesh_vao)
        for d in self._scene_draws:
            prog = gl.mesh_program(d.lit, d.checker)
            GL.glUseProgram(prog.id)
            GL.glUniformMatrix4fv(prog.loc("u_view"), 1, GL.GL_TRUE, view_m)
            GL.glUniformMatrix4fv(prog.loc("u_proj"), 1, GL.GL_TRUE, proj)
            GL.glUniform4f(prog.loc("u_color"), *d.color)
            if d.lit:
                GL.glUniform3fv(prog.loc("u_light_world"), 1, _LIGHT_WORLD)
            if d.checker:
                GL.glUniform1f(prog.loc("u_checker_size"), max(view.size) / 10.0)
                GL.glUniform3f(prog.loc("u_checker_a"), *colors.FLOOR_A)
                GL.glUniform3f(prog.loc("u_checker_b"), *colors.FLOOR_B)
                # The floor lies under the box's bottom edges: push it back to avoid z-fighting.
                GL.glEnable(GL.GL_POLYGON_OFFSET_FILL)
                GL.glPolygonOffset(1.0, 1.0)
            GL.glDrawArrays(d.mode, d.first, d.count)
            GL.glDisable(GL.GL_POLYGON_OFFSET_FILL)

    def _build_scene(self, gl: _Resources, view: FrameView) -> None:
        if view.dim == 2:
            parts = geometry.scene_parts_2d(view.size, view.obstacles)
        else:
            parts = geometry.scene_parts_3d(view.size, view.obstacles)
        draws, first = [], 0
        for p in parts:
            mode = GL.GL_LINES if p.mode == "lines" else GL.GL_TRIANGLES
            draws.append(_Draw(mode, first, len(p.vertices), p.color, p.lit, p.checker))
            first += len(p.vertices)
        data = np.ascontiguousarray(np.vstack([p.vertices for p in parts]), dtype=np.float32)
        _upload(gl.mesh_buf, data)
        self._scene_draws = [d for d in draws if d.count > 0]

    def _draw_particles(
        self, gl: _Resources, view: FrameView, view_m: np.ndarray, proj: np.ndarray, width: int, height: int
    ) -> None:
        n = view.count
        if n == 0:
            return
        speed = view.color_mode == "speed"
        positions = np.ascontiguousarray(view.positions, dtype=np.float32)
        if speed:
            values = np.ascontiguousarray(view.velocities, dtype=np.float32)
        else:
            values = np.ascontiguousarray(view.materials, dtype=np.int32)
        if self._sort_particles(gl):
            order = geometry.screen_tile_order(positions, proj @ view_m, width, height)
            positions, values = np.take(positions, order, axis=0), np.take(values, order, axis=0)
        prog = gl.particle_program(sphere_depth=view.dim == 3, speed=speed)
        GL.glUseProgram(prog.id)
        GL.glBindVertexArray(gl.particle_vao)
        _upload(gl.pos_buf, positions)
        _float_attrib(0, view.dim)  # a 2D position leaves z at its default 0
        # Upload only the attribute the colour mode reads; the other gets a constant value.
        if speed:
            GL.glDisableVertexAttribArray(1)
            GL.glVertexAttribI1i(1, 0)
            _upload(gl.vel_buf, values)
            _float_attrib(2, view.dim)
            GL.glUniform3fv(prog.loc("u_lut"), LUT_SIZE, _SPEED_LUT)
            GL.glUniform1f(prog.loc("u_speed_scale"), max(float(view.speed_scale), 1e-6))
        else:
            GL.glDisableVertexAttribArray(2)
            GL.glVertexAttrib3f(2, 0.0, 0.0, 0.0)
            _upload(gl.mat_buf, values)
            GL.glEnableVertexAttribArray(1)
            GL.glUniform3fv(prog.loc("u_palette"), 4, colors.MATERIAL_PALETTE)
        GL.glUniformMatrix4fv(prog.loc("u_view"), 1, GL.GL_TRUE, view_m)
        GL.glUniformMatrix4fv(prog.loc("u_proj"), 1, GL.GL_TRUE, proj)
        GL.glUniform1f(prog.loc("u_radius"), float(view.particle_radius))
        GL.glUniform1f(prog.loc("u_viewport_h"), float(height))
        GL.glUniform2f(prog.loc("u_point_range"), *gl.point_range)
        GL.glUniform3fv(prog.loc("u_light"), 1, _LIGHT_EYE)
        GL.glEnable(GL.GL_PROGRAM_POINT_SIZE)
        GL.glDrawArrays(GL.GL_POINTS, 0, n)

    def _draw_overlay(
        self, gl: _Resources, view: FrameView, mvp: np.ndarray, width: int, height: int
    ) -> None:
        chunks: list[np.ndarray] = []  # (n, 8): ndc xy, uv, rgba
        draws: list[_Draw] = []

        def add(
            tris_px: np.ndarray, color: tuple[float, ...], uv: np.ndarray | None = None, tex: bool = False
        ):
            if len(tris_px) == 0:
                return
            rows = np.empty((len(tris_px), 8), np.float32)
            rows[:, :2] = tris_px / np.array([width, height]) * 2.0 - 1.0
            rows[:, 2:4] = 0.0 if uv is None else uv
            rows[:, 4:] = color
            draws.append(_Draw(GL.GL_TRIANGLES, sum(len(c) for c in chunks), len(rows), textured=tex))
            chunks.append(rows)

        if view.dim == 2:
            sx, sy = view.size
            walls = np.array([[0, 0], [sx, 0], [sx, sy], [0, sy], [0, 0]], dtype=np.float64)
            px, ok = geometry.to_pixels(walls, mvp, width, height)
            add(geometry.thick_segments(*geometry.polyline_segments(px, ok), WALL_PX), (*colors.WALL, 1.0))
        for stroke in view.strokes:
            if len(stroke) >= 2:
                px, ok = geometry.to_pixels(np.asarray(stroke, dtype=np.float64), mvp, width, height)
                add(geometry.thick_segments(*geometry.polyline_segments(px, ok), STROKE_PX), colors.STROKE)
        if view.force_arrows is not None and len(view.force_arrows[0]):
            anchors = np.asarray(view.force_arrows[0], dtype=np.float64)
            tips = anchors + np.asarray(view.force_arrows[1], dtype=np.float64) * view.arrow_scale
            a_px, a_ok = geometry.to_pixels(anchors, mvp, width, height)
            t_px, t_ok = geometry.to_pixels(tips, mvp, width, height)
            ok = a_ok & t_ok
            add(geometry.thick_segments(*geometry.arrow_segments(a_px[ok], t_px[ok]), ARROW_PX), colors.ARROW)
        if view.hud:
            tw, th = self._hud_texture(gl, view.hud)
            x0, y1 = HUD_OFFSET_PX, height - HUD_OFFSET_PX  # window coords: y up, so the top is height
            quad = np.array([[x0, y1 - th], [x0 + tw, y1 - th], [x0 + tw, y1], [x0, y1]], dtype=np.float64)
            uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float64)  # texture row 0 is the top
            add(geometry.fan(quad), (1.0, 1.0, 1.0, 1.0), geometry.fan(uv), tex=True)
        if not chunks:
            return
        _upload(gl.screen_buf, np.ascontiguousarray(np.vstack(chunks)))
        prog = gl.screen
        GL.glUseProgram(prog.id)
        GL.glBindVertexArray(gl.screen_vao)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, gl.hud_tex)
        GL.glUniform1i(prog.loc("u_tex"), 0)
        for d in draws:
            GL.glUniform1i(prog.loc("u_textured"), int(d.textured))
            GL.glDrawArrays(d.mode, d.first, d.count)
        GL.glDisable(GL.GL_BLEND)

    def _hud_texture(self, gl: _Resources, hud: str) -> tuple[int, int]:
        """Upload the HUD text as a texture when it changed; return its size in pixels."""
        if hud != self._hud_text:
            image = np.ascontiguousarray(text.rasterize(hud))
            h, w = image.shape[:2]
            GL.glBindTexture(GL.GL_TEXTURE_2D, gl.hud_tex)
            GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
            GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_RGBA8, w, h, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, image)
            # Nearest: the quad maps texels 1:1 to pixels, so the text stays crisp.
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)
            self._hud_text, self._hud_size = hud, (w, h)
        return self._hud_size
