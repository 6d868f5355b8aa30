"""Renderer and headless context: hand-made FrameViews rendered offscreen (no DISPLAY, no solver)."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

# headless first: it chooses PyOpenGL's platform (EGL, else OSMesa) before OpenGL is imported.
from app.render.headless import HeadlessContext  # isort: skip
from app.render import colors, geometry
from app.render.camera import OrbitCamera
from app.render.renderer import Renderer
from app.render.view import JELLY, WATER, FrameView

REPO = Path(__file__).resolve().parents[1]
_HOSTS: dict[tuple[int, int, bool], tuple[HeadlessContext, Renderer]] = {}


def _host(width: int, height: int, sort: bool = True) -> tuple[HeadlessContext, Renderer]:
    key = (width, height, sort)
    if key not in _HOSTS:
        try:
            ctx = HeadlessContext(width, height)
        except RuntimeError as exc:
            if os.environ.get("CI"):  # CI installs the GL packages: a missing context is a failure there
                raise
            pytest.skip(f"no headless OpenGL here: {exc}")
        _HOSTS[key] = (ctx, Renderer(sort_particles=sort))
    ctx, renderer = _HOSTS[key]
    ctx.make_current()
    return ctx, renderer


@pytest.fixture(scope="module", autouse=True)
def _close_hosts():
    yield
    for ctx, renderer in _HOSTS.values():
        ctx.make_current()
        renderer.release()
        ctx.close()
    _HOSTS.clear()


def render(
    view: FrameView, width: int = 200, height: int = 200, camera=None, sort: bool = True
) -> np.ndarray:
    ctx, renderer = _host(width, height, sort)
    renderer.render(view, width, height, camera)
    return ctx.read_rgb()


def rgb8(color) -> np.ndarray:
    return np.round(np.asarray(color[:3]) * 255).astype(int)


def pixel_of(view: FrameView, point, width: int, height: int) -> tuple[int, int]:
    """(row, col) in a top-first image of a 2D world point."""
    proj, _ = geometry.fit_2d(view.size, width, height)
    px, _ = geometry.to_pixels(np.array([point], float), proj, width, height)
    return int(height - 1 - np.floor(px[0, 1])), int(np.floor(px[0, 0]))


def lattice(lo, hi, spacing: float) -> np.ndarray:
    axes = [np.arange(a, b + 1e-9, spacing) for a, b in zip(lo, hi, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(lo)).astype(np.float32)


def particles(dim: int, size, pos: np.ndarray, material: int, speed: float = 0.0, **kw) -> FrameView:
    vel = np.zeros_like(pos)
    vel[:, 0] = speed
    mats = np.full(len(pos), material, np.int32)
    return FrameView(dim, size, pos, mats, vel, **kw)


def water_block_2d(**kw) -> FrameView:
    kw.setdefault("particle_radius", 0.01)
    return particles(2, (1.0, 1.0), lattice((0.1, 0.1), (0.3, 0.3), 0.01), WATER, **kw)


def test_context_reports_backend_and_renderer():
    ctx, _ = _host(200, 200)
    assert ctx.backend in ("egl", "osmesa")
    assert ctx.gl_renderer
    major, minor = (int(x) for x in ctx.gl_version.split()[0].split(".")[:2])
    assert (major, minor) >= (3, 3)


def test_2d_water_block_is_blue_and_elsewhere_is_background():
    view = water_block_2d()
    img = render(view).astype(int)
    for point in [(0.2, 0.2), (0.13, 0.13), (0.27, 0.27), (0.13, 0.27)]:
        r, g, b = img[pixel_of(view, point, 200, 200)]
        assert b > r + 60 and b > g + 30, (point, (r, g, b))
    for point in [(0.8, 0.8), (0.6, 0.2), (0.2, 0.6)]:  # far from the block: the domain interior
        assert np.abs(img[pixel_of(view, point, 200, 200)] - rgb8(colors.DOMAIN_FILL)).max() <= 1
    assert np.abs(img[0, 0] - rgb8(colors.BACKGROUND)).max() <= 1  # the margin outside the domain


@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("near_material", [JELLY, WATER])
def test_3d_nearer_particles_occlude_regardless_of_draw_order(near_material: int, sort: bool):
    far_material = WATER if near_material == JELLY else JELLY
    near = lattice((0.45, 0.45, 0.65), (0.55, 0.55, 0.75), 0.02)
    far = lattice((0.30, 0.30, 0.25), (0.70, 0.70, 0.35), 0.02)  # wider, so it shows around the near one
    pos = np.vstack([near, far])  # the far cluster last: drawn after the near one
    mats = np.array([near_material] * len(near) + [far_material] * len(far), np.int32)
    view = FrameView(3, (1.0, 1.0, 1.0), pos, mats, np.zeros_like(pos), particle_radius=0.02)
    camera = OrbitCamera(target=(0.5, 0.5, 0.5), distance=2.0, yaw=0.0, pitch=0.0, fov=40.0)  # looks along -z
    img = render(view, camera=camera, sort=sort).astype(int)
    r, g, b = img[100, 100]  # the overlap, at the image centre
    if near_material == JELLY:
        assert r > b + 60, (r, g, b)
    else:
        assert b > r + 60, (r, g, b)
    r, g, b = img[100, 100 + 20]  # only the far cluster there
    assert (b > r + 60) if far_material == WATER else (r > b + 60), (r, g, b)


def test_2d_wide_domain_in_square_image_is_not_stretched():
    view = FrameView.empty(
        2, (2.0, 1.0), obstacles=[{"shape": "sphere", "center": [1.0, 0.5], "radius": 0.3}]
    )
    img = render(view, 256, 256).astype(int)
    mask = np.abs(img - rgb8(colors.OBSTACLE)).max(axis=2) <= 2
    rows, cols = np.nonzero(mask)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert width > 60
    assert abs(width - height) <= 2, (width, height)


def full_view_2d(**kw) -> FrameView:
    return water_block_2d(
        obstacles=[
            {"shape": "box", "min": [0.6, 0.1], "max": [0.8, 0.2]},
            {"shape": "sphere", "center": [0.7, 0.6], "radius": 0.1},
            {"shape": "ramp", "center": [0.4, 0.8], "half_size": [0.2, 0.02], "angle": -15.0},
            {"shape": "plane", "point": [0.9, 0.0], "normal": [-1.0, 1.0]},
        ],
        strokes=[np.array([[0.1, 0.5], [0.3, 0.6], [0.5, 0.55]], np.float32)],
        force_arrows=(np.array([[0.5, 0.4]], np.float32), np.array([[20.0, 5.0]], np.float32)),
        hud="t=1.25 s  441 particles",
        **kw,
    )


def full_view_3d() -> FrameView:
    pos = lattice((0.2, 0.0, 0.2), (0.4, 0.2, 0.4), 0.02)
    return FrameView(
        3, (1.0, 1.0, 1.0), pos, (np.arange(len(pos)) % 4).astype(np.int32), np.ones_like(pos), 0.01,
        obstacles=[
            {"shape": "box", "min": [0.6, 0.0, 0.6], "max": [0.8, 0.2, 0.8]},
            {"shape": "sphere", "center": [0.7, 0.5, 0.3], "radius": 0.1},
            {"shape": "ramp", "center": [0.3, 0.5, 0.7], "half_size": [0.2, 0.02, 0.1], "angle": 20.0},
            {"shape": "plane", "point": [0.9, 0.0, 0.5], "normal": [-1.0, 1.0, 0.0]},
        ],
        strokes=[np.array([[0.1, 0.8, 0.1], [0.5, 0.9, 0.5]], np.float32)],
        force_arrows=(np.array([[0.5, 0.5, 0.5]], np.float32), np.array([[0.0, 20.0, 0.0]], np.float32)),
        hud="3D",
    )  # fmt: skip


@pytest.mark.parametrize("make_view", [full_view_2d, full_view_3d])
def test_rendering_is_deterministic(make_view):
    first = render(make_view(), 160, 120)
    second = render(make_view(), 160, 120)
    assert first.shape == (120, 160, 3) and first.dtype == np.uint8
    assert first.tobytes() == second.tobytes()
    assert len(np.unique(first.reshape(-1, 3), axis=0)) > 5  # something was drawn


def test_speed_colors_differ_from_material_colors():
    material = render(water_block_2d(speed=3.0)).astype(int)
    speed = render(water_block_2d(speed=3.0, color_mode="speed")).astype(int)
    assert material.tobytes() != speed.tobytes()
    view = water_block_2d()
    r, g, b = speed[pixel_of(view, (0.2, 0.2), 200, 200)]
    assert r > b and g > b, (r, g, b)  # 3 m/s at speed_scale 3: the top of viridis, yellow
    slow = render(water_block_2d(speed=0.0, color_mode="speed")).astype(int)
    assert slow.tobytes() != speed.tobytes()


def test_hud_text_draws_in_the_top_left():
    plain = render(FrameView.empty(2, (1.0, 1.0)))
    with_hud = render(FrameView.empty(2, (1.0, 1.0), hud="FPS 60  N=12345"))
    corner = with_hud[:24, :120].astype(int)
    assert corner.max() > 200  # white glyphs
    assert (np.abs(corner - plain[:24, :120].astype(int)).max(axis=2) > 40).sum() > 50
    assert with_hud[60:].tobytes() == plain[60:].tobytes()  # nothing else changed


def test_empty_and_degenerate_views_render():
    render(FrameView.empty(3, (1.0, 0.5, 1.0)))
    render(
        FrameView.empty(
            2, (1.0, 1.0), strokes=[np.zeros((1, 2), np.float32)], force_arrows=(np.zeros((0, 2)),) * 2
        )
    )


def test_frame_view_validates_shapes():
    pos = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError):
        FrameView(2, (1.0, 1.0), pos, np.zeros(2, np.int32), pos, 0.01)
    with pytest.raises(ValueError):
        FrameView(3, (1.0, 1.0, 1.0), pos, np.zeros(3, np.int32), pos, 0.01)
    with pytest.raises(ValueError):
        FrameView(2, (1.0, 1.0), pos, np.zeros(3, np.int32), pos, 0.01, color_mode="rainbow")


def test_orbit_camera():
    cam = OrbitCamera.default_for((1.0, 1.0, 1.0))
    assert np.allclose(cam.target, 0.5)
    # The domain corners are in front of the camera and project inside the view.
    corners = geometry.box_edges(np.zeros(3), np.ones(3))
    px, ok = geometry.to_pixels(corners, cam.projection(16 / 9) @ cam.view_matrix(), 160, 90)
    assert (px >= 0).all() and (px <= [160, 90]).all()
    assert ok.all()
    cam.orbit(0.0, 500.0)
    assert cam.pitch == OrbitCamera.MAX_PITCH
    d = cam.distance
    cam.zoom(0.5)
    assert cam.distance == pytest.approx(d / 2)
    before = cam.target.copy()
    cam.pan(0.1, 0.0)
    assert not np.allclose(before, cam.target)


def test_plane_geometry():
    tri = geometry.clip_halfspace(
        geometry.rect_polygon(np.zeros(2), np.ones(2)), np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    )
    assert len(tri) == 3  # the corner triangle below the diagonal through (1, 0)
    section = geometry.plane_section((1.0, 1.0, 1.0), np.array([0.5, 0.5, 0.5]), np.array([0.0, 1.0, 0.0]))
    assert len(section) == 4 and np.allclose(section[:, 1], 0.5)


_SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    if sys.argv[1] == "gl-first":
        import OpenGL.GL  # as a Qt app would: PyOpenGL binds to its default platform (GLX) first
    import numpy as np
    from app.render.headless import HeadlessContext, pyopengl_platform
    from app.render.renderer import Renderer
    from app.render.view import FrameView
    pos = np.array([[0.5, 0.5]], np.float32)
    view = FrameView(2, (1.0, 1.0), pos, np.zeros(1, np.int32), pos * 0, 0.1, hud="x")
    with HeadlessContext(64, 64) as ctx:
        Renderer().render(view, 64, 64)
        img = ctx.read_rgb()
        print(ctx.backend, int(img[32, 32, 2]) > int(img[32, 32, 0]) + 60)
    """
)


@pytest.mark.parametrize(
    ("mode", "platform", "backend"),
    [
        pytest.param(
            "plain",
            "osmesa",
            "osmesa",
            marks=pytest.mark.skipif(
                not ctypes.util.find_library("OSMesa"), reason="libosmesa6 not installed"
            ),
        ),
        ("gl-first", None, "egl"),
    ],
)
def test_backends_in_a_fresh_process(mode: str, platform: str | None, backend: str):
    """The OSMesa fallback, and EGL when OpenGL was imported (bound to GLX) before the headless module."""
    if backend == "egl":
        _host(64, 64)  # skips (or fails on CI) where there is no EGL at all
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYOPENGL_PLATFORM", None)
    if platform:
        env["PYOPENGL_PLATFORM"] = platform
    cmd = [sys.executable, "-c", _SUBPROCESS_SCRIPT, mode]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [backend, "True"]
