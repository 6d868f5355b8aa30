"""Offscreen OpenGL 3.3 core context for recording without a display or X server.

System packages (Debian/Ubuntu names) this needs:
  EGL path (preferred):  libegl1 (glvnd libEGL; pulls in libegl-mesa0), libgl1-mesa-dri (llvmpipe and
                         the hardware drivers), and a GL dispatch library for PyOpenGL: libopengl0 or
                         libgl1 (xvfb already depends on libgl1).
  OSMesa fallback:       libosmesa6.
  CI installs: xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libgl1-mesa-dri libegl1 libosmesa6

Why the import order matters: PyOpenGL binds GL entry points to one platform library (GLX, EGL or
OSMesa), chosen from PYOPENGL_PLATFORM when OpenGL is first imported, and it cannot switch later.
So this module, before it imports OpenGL:
  - keeps the platform if PYOPENGL_PLATFORM is set or OpenGL is already imported;
  - otherwise probes EGL (through ctypes, see egl.py) and sets PYOPENGL_PLATFORM=egl, or "osmesa"
    when EGL cannot give a 3.3 core context and libOSMesa is installed.
Import this module before app.render.renderer (or anything else importing OpenGL) in headless
programs. With glvnd an EGL context also works when OpenGL was imported for GLX first (e.g. under Qt);
only a PyOpenGL bound to OSMesa forces the OSMesa backend. Note that the variable set here is
inherited by child processes (a Qt child would then bind PyOpenGL to EGL; with glvnd that still
dispatches to its GLX context, but pop the variable for such children to be safe).

Drawing goes into a framebuffer object (RGBA8 colour + 24-bit depth) of the requested size, so the
result never depends on a window or pbuffer format.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from . import egl


def _choose_platform() -> None:
    if os.environ.get("PYOPENGL_PLATFORM") or "OpenGL.platform" in sys.modules:
        return  # chosen already, by the user or an earlier import: respect it
    if egl.probe() is not None and ctypes.util.find_library("OSMesa"):
        os.environ["PYOPENGL_PLATFORM"] = "osmesa"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


_choose_platform()

import numpy as np  # noqa: E402
import OpenGL.platform  # noqa: E402
from OpenGL import GL  # noqa: E402


def pyopengl_platform() -> str:
    """The platform PyOpenGL is bound to in this process: "egl", "osmesa", "glx", ..."""
    return type(OpenGL.platform.PLATFORM).__name__.removesuffix("Platform").lower()


class _OSMesaContext:
    """OSMesa 3.3 core context. Needs PyOpenGL bound to OSMesa (PYOPENGL_PLATFORM=osmesa)."""

    def __init__(self) -> None:
        from OpenGL import osmesa
        from OpenGL.raw.osmesa import mesa

        self._osmesa = osmesa
        attribs = (ctypes.c_int * 11)(
            mesa.OSMESA_FORMAT, mesa.OSMESA_RGBA, mesa.OSMESA_DEPTH_BITS, 24,
            mesa.OSMESA_PROFILE, mesa.OSMESA_CORE_PROFILE,
            mesa.OSMESA_CONTEXT_MAJOR_VERSION, 3, mesa.OSMESA_CONTEXT_MINOR_VERSION, 3, 0,
        )  # fmt: skip
        self._ctx = osmesa.OSMesaCreateContextAttribs(attribs, None)
        if not self._ctx:
            raise RuntimeError("OSMesaCreateContextAttribs(3.3 core) failed")
        # OSMesa needs a client buffer to make a context current; we draw into an FBO, so 1x1 will do.
        self._buffer = (ctypes.c_ubyte * 4)()
        self.make_current()

    def make_current(self) -> None:
        if not self._osmesa.OSMesaMakeCurrent(self._ctx, self._buffer, GL.GL_UNSIGNED_BYTE, 1, 1):
            raise RuntimeError("OSMesaMakeCurrent failed")

    def destroy(self) -> None:
        if self._ctx:
            self._osmesa.OSMesaDestroyContext(self._ctx)
            self._ctx = None


class HeadlessContext:
    """An offscreen GL 3.3 core context with a width x height framebuffer object bound for drawing.

    with HeadlessContext(960, 540) as ctx:
        renderer.render(view, ctx.width, ctx.height)
        rgb = ctx.read_rgb()
    """

    def __init__(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"bad size {width}x{height}")
        self.width, self.height = int(width), int(height)
        self._ctx: egl.EglContext | _OSMesaContext | None
        if pyopengl_platform() == "osmesa":
            self._ctx, self.backend = _OSMesaContext(), "osmesa"
        else:
            try:
                self._ctx, self.backend = egl.EglContext(), "egl"
            except egl.EGLError as exc:
                raise RuntimeError(
                    f"{exc}. For the OSMesa fallback install libosmesa6 and set PYOPENGL_PLATFORM=osmesa "
                    "before OpenGL is first imported."
                ) from exc
        self.gl_renderer = GL.glGetString(GL.GL_RENDERER).decode()
        self.gl_version = GL.glGetString(GL.GL_VERSION).decode()
        self._fbo, self._color_rb, self._depth_rb = self._create_framebuffer()
        self._pixels = np.empty((self.height, self.width, 3), np.uint8)

    def _create_framebuffer(self) -> tuple[int, int, int]:
        fbo = int(GL.glGenFramebuffers(1))
        color_rb, depth_rb = (int(r) for r in GL.glGenRenderbuffers(2))
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
        for rb, fmt, attachment in (
            (color_rb, GL.GL_RGBA8, GL.GL_COLOR_ATTACHMENT0),
            (depth_rb, GL.GL_DEPTH_COMPONENT24, GL.GL_DEPTH_ATTACHMENT),
        ):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, self.width, self.height)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, attachment, GL.GL_RENDERBUFFER, rb)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            raise RuntimeError(f"framebuffer incomplete: 0x{int(status):x}")
        GL.glDrawBuffers(1, [GL.GL_COLOR_ATTACHMENT0])
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0)
        return fbo, color_rb, depth_rb

    def make_current(self) -> None:
        """Make the context current on this thread and bind its framebuffer."""
        if self._ctx is None:
            raise RuntimeError("HeadlessContext is closed")
        self._ctx.make_current()
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo)

    def read_rgb(self) -> np.ndarray:
        """The framebuffer as (height, width, 3) uint8, top row first."""
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        # Reading RGB directly is ~5x cheaper than reading RGBA and dropping alpha in numpy (a strided copy).
        GL.glReadPixels(0, 0, self.width, self.height, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, self._pixels)
        return np.ascontiguousarray(self._pixels[::-1])  # GL's row 0 is the bottom

    def close(self) -> None:
        if self._ctx is None:
            return
        self._ctx.make_current()
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        GL.glDeleteFramebuffers(1, [self._fbo])
        GL.glDeleteRenderbuffers(2, [self._color_rb, self._depth_rb])
        self._ctx.destroy()
        self._ctx = None

    def __enter__(self) -> HeadlessContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
