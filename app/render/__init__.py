"""OpenGL rendering of FrameViews: one Renderer for the Qt viewport and for headless recording.

Modules: view (FrameView, the per-frame input), camera (OrbitCamera), renderer (Renderer),
headless (HeadlessContext: EGL, else OSMesa), bench_render. Nothing here imports OpenGL on
package import: in a headless program import app.render.headless before anything that imports
OpenGL, because PyOpenGL's platform is fixed by its first import (see headless.py).
"""

from .camera import OrbitCamera
from .view import FrameView

__all__ = ["FrameView", "OrbitCamera"]
