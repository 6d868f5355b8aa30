"""A minimal EGL OpenGL 3.3 core context through ctypes, with no window system.

Written against libEGL directly (not PyOpenGL's EGL wrappers) for two reasons:
- it can be probed before PyOpenGL is imported, which is when PyOpenGL's platform must be chosen;
- with libglvnd (every current Linux distribution), GL calls made through PyOpenGL's GLX or EGL
  platform both dispatch to the context made current here, so a process that already imported
  OpenGL for Qt (GLX) can still record headlessly.

Displays are tried in order: Mesa surfaceless, the first EGL device (e.g. a headless NVIDIA GPU),
then the default display. The context has no surface when EGL_KHR_surfaceless_context is
available, otherwise a 1x1 pbuffer; callers render into their own framebuffer object anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator

# Constants from the EGL 1.5 headers (and the extensions named).
EGL_SUCCESS = 0x3000
EGL_NONE = 0x3038
EGL_EXTENSIONS = 0x3055
EGL_OPENGL_API = 0x30A2
EGL_RENDERABLE_TYPE = 0x3040
EGL_OPENGL_BIT = 0x0008
EGL_SURFACE_TYPE = 0x3033
EGL_PBUFFER_BIT = 0x0001
EGL_RED_SIZE = 0x3024
EGL_GREEN_SIZE = 0x3023
EGL_BLUE_SIZE = 0x3022
EGL_ALPHA_SIZE = 0x3021
EGL_WIDTH = 0x3057
EGL_HEIGHT = 0x3056
EGL_CONTEXT_MAJOR_VERSION = 0x3098
EGL_CONTEXT_MINOR_VERSION = 0x30FB
EGL_CONTEXT_OPENGL_PROFILE_MASK = 0x30FD
EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT = 0x0001
EGL_PLATFORM_SURFACELESS_MESA = 0x31DD  # EGL_MESA_platform_surfaceless
EGL_PLATFORM_DEVICE_EXT = 0x313F  # EGL_EXT_platform_device

_vp = ctypes.c_void_p
_int = ctypes.c_int32
_uint = ctypes.c_uint32


class EGLError(RuntimeError):
    """EGL could not give an OpenGL 3.3 core context."""


def _load_lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:  # libegl1 not installed
        raise EGLError(f"cannot load libEGL ({name}): {exc}") from exc
    sigs: dict[str, tuple[type | None, list[type]]] = {
        "eglGetProcAddress": (_vp, [ctypes.c_char_p]),
        "eglQueryString": (ctypes.c_char_p, [_vp, _int]),
        "eglGetDisplay": (_vp, [_vp]),
        "eglInitialize": (_uint, [_vp, _vp, _vp]),
        "eglTerminate": (_uint, [_vp]),
        "eglBindAPI": (_uint, [_uint]),
        "eglChooseConfig": (_uint, [_vp, _vp, _vp, _int, _vp]),
        "eglCreateContext": (_vp, [_vp, _vp, _vp, _vp]),
        "eglDestroyContext": (_uint, [_vp, _vp]),
        "eglCreatePbufferSurface": (_vp, [_vp, _vp, _vp]),
        "eglDestroySurface": (_uint, [_vp, _vp]),
        "eglMakeCurrent": (_uint, [_vp, _vp, _vp, _vp]),
        "eglGetCurrentContext": (_vp, []),
        "eglGetError": (_int, []),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(lib, fname)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_LIB: ctypes.CDLL | None = None
# eglTerminate ends a display for every user in the process, so count our contexts per display.
_DISPLAY_USERS: dict[int, int] = {}


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        _LIB = _load_lib()
    return _LIB


def _attribs(*pairs: int) -> ctypes.Array:
    return (_int * (len(pairs) + 1))(*pairs, EGL_NONE)


def _extensions(lib: ctypes.CDLL, display: int | None) -> set[str]:
    raw = lib.eglQueryString(display, EGL_EXTENSIONS)
    return set(raw.decode().split()) if raw else set()


def _candidate_displays(lib: ctypes.CDLL) -> Iterator[tuple[str, int]]:
    """Yield (description, EGLDisplay) in the order we prefer them."""
    client = _extensions(lib, None)  # client extensions (EGL 1.5 / EGL_EXT_client_extensions)
    get_platform_display = None
    addr = lib.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if addr and "EGL_EXT_platform_base" in client:
        get_platform_display = ctypes.CFUNCTYPE(_vp, _uint, _vp, _vp)(addr)
    if get_platform_display is not None and "EGL_MESA_platform_surfaceless" in client:
        dpy = get_platform_display(EGL_PLATFORM_SURFACELESS_MESA, None, None)
        if dpy:
            yield "surfaceless", dpy
    query_devices_addr = lib.eglGetProcAddress(b"eglQueryDevicesEXT")
    if get_platform_display is not None and query_devices_addr and "EGL_EXT_platform_device" in client:
        query_devices = ctypes.CFUNCTYPE(_uint, _int, _vp, ctypes.POINTER(_int))(query_devices_addr)
        devices = (_vp * 8)()
        count = _int(0)
        if query_devices(8, devices, ctypes.byref(count)):
            for i in range(count.value):
                dpy = get_platform_display(EGL_PLATFORM_DEVICE_EXT, devices[i], None)
                if dpy:
                    yield f"device{i}", dpy
    dpy = lib.eglGetDisplay(None)  # EGL_DEFAULT_DISPLAY; honours EGL_PLATFORM
    if dpy:
        yield "default", dpy


class EglContext:
    """An EGL OpenGL 3.3 core context made current on construction."""

    def __init__(self) -> None:
        lib = _lib()
        errors: list[str] = []
        for name, dpy in _candidate_displays(lib):
            try:
                self._create(lib, dpy)
            except EGLError as exc:
                errors.append(f"{name}: {exc}")
                continue
            self.display_kind = name
            return
        raise EGLError(
            "no EGL display gave an OpenGL 3.3 core context: " + ("; ".join(errors) or "none found")
        )

    def _create(self, lib: ctypes.CDLL, dpy: int) -> None:
        if not lib.eglInitialize(dpy, None, None):
            raise EGLError(f"eglInitialize failed (0x{lib.eglGetError():x})")
        try:
            if not lib.eglBindAPI(EGL_OPENGL_API):
                raise EGLError("eglBindAPI(EGL_OPENGL_API) failed")
            config = _vp()
            n = _int(0)
            want = _attribs(
                EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT, EGL_SURFACE_TYPE, EGL_PBUFFER_BIT,
                EGL_RED_SIZE, 8, EGL_GREEN_SIZE, 8, EGL_BLUE_SIZE, 8, EGL_ALPHA_SIZE, 8,
            )  # fmt: skip
            if not lib.eglChooseConfig(dpy, want, ctypes.byref(config), 1, ctypes.byref(n)) or n.value < 1:
                raise EGLError("no EGL config with desktop OpenGL and pbuffers")
            ctx_attribs = _attribs(
                EGL_CONTEXT_MAJOR_VERSION, 3, EGL_CONTEXT_MINOR_VERSION, 3,
                EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT,
            )  # fmt: skip
            ctx = lib.eglCreateContext(dpy, config, None, ctx_attribs)
            if not ctx:
                raise EGLError(f"eglCreateContext(3.3 core) failed (0x{lib.eglGetError():x})")
            surface = None
            if "EGL_KHR_surfaceless_context" not in _extensions(lib, dpy):
                surface = lib.eglCreatePbufferSurface(dpy, config, _attribs(EGL_WIDTH, 1, EGL_HEIGHT, 1))
                if not surface:
                    lib.eglDestroyContext(dpy, ctx)
                    raise EGLError("eglCreatePbufferSurface failed")
            if not lib.eglMakeCurrent(dpy, surface, surface, ctx):
                if surface:
                    lib.eglDestroySurface(dpy, surface)
                lib.eglDestroyContext(dpy, ctx)
                raise EGLError(f"eglMakeCurrent failed (0x{lib.eglGetError():x})")
        except EGLError:
            if not _DISPLAY_USERS.get(dpy):
                lib.eglTerminate(dpy)
            raise
        self._lib, self._dpy, self._ctx, self._surface = lib, dpy, ctx, surface
        _DISPLAY_USERS[dpy] = _DISPLAY_USERS.get(dpy, 0) + 1

    def make_current(self) -> None:
        if not self._lib.eglMakeCurrent(self._dpy, self._surface, self._surface, self._ctx):
            raise EGLError(f"eglMakeCurrent failed (0x{self._lib.eglGetError():x})")

    def is_current(self) -> bool:
        return bool(self._ctx) and self._lib.eglGetCurrentContext() == self._ctx

    def destroy(self) -> None:
        if not self._ctx:
            return
        lib, dpy = self._lib, self._dpy
        if self.is_current():
            lib.eglMakeCurrent(dpy, None, None, None)
        if self._surface:
            lib.eglDestroySurface(dpy, self._surface)
        lib.eglDestroyContext(dpy, self._ctx)
        self._ctx = self._surface = None
        _DISPLAY_USERS[dpy] -= 1
        if _DISPLAY_USERS[dpy] == 0:
            del _DISPLAY_USERS[dpy]
            lib.eglTerminate(dpy)


def probe() -> str | None:
    """Return None when an EGL 3.3 core context can be made here, else the reason it cannot."""
    try:
        EglContext().destroy()
    except EGLError as exc:
        return str(exc)
    return None
