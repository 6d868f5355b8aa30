"""The desktop app under Xvfb (pytest-qt): the window, the tools driven by real mouse events, scenes,
modes, errors, state files, screenshots and recording.

One window on a small scene (grid 32) serves most tests, so that Taichi compiles few solvers.
"""

import os

import pytest

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and not os.environ.get("CI"):
    pytest.skip("no display: run under xvfb-run (on CI this fails instead)", allow_module_level=True)

import sys  # noqa: E402
import time  # noqa: E402

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

# Imports OpenGL for Qt's context before any test module's app.render.headless can pick EGL.
from app.gui.loop import SimLoop  # noqa: E402
from app.gui.mapping import PanZoom, ToolPlane, mapping_for  # noqa: E402
from app.gui.modes import MODES, available_modes  # noqa: E402
from app.gui.window import MainWindow  # noqa: E402
from app.render.camera import OrbitCamera  # noqa: E402
from app.session import ARROW_CELLS  # noqa: E402

GRID = {"grid": 32}
BLOCK = """
[scene]
name = "block"
dim = 2
size = [0.5, 0.5]
grid = 32

[[body]]
material = "water"
shape = "box"
min = [0.175, 0.25]
max = [0.325, 0.4]
"""
WATER, SAND = 0, 3


@pytest.fixture(scope="module")
def block_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenes") / "block.toml"
    path.write_text(BLOCK)
    return path


@pytest.fixture(scope="module")
def window(qapp, block_path):
    """A window on the block scene, paused; tests step it frame by frame."""
    win = MainWindow(block_path, GRID, play=False)
    win.resize(1000, 700)
    win.show()
    assert QTest.qWaitForWindowExposed(win)
    yield win
    win.close()


@pytest.fixture
def block(window, block_path):
    """The window on the block scene at its start, paused, with the push tool."""
    if window.session.scene.name != "block":
        assert window.load_scene(block_path)
    window.pause()
    window.reset()
    window.set_tool("push")
    window.set_radius(0.06)
    return window


# ------------------------------------------------------------------------------------------ helpers
def pixel(win, point) -> QPoint:
    x, y = win.viewport.mapping().to_pixel(point)
    return QPoint(round(x), round(y))


def press(win, point, mods=Qt.KeyboardModifier.NoModifier):
    QTest.mousePress(win.viewport, Qt.MouseButton.LeftButton, mods, pixel(win, point))


def move(win, point):
    QTest.mouseMove(win.viewport, pixel(win, point))


def release(win, point, mods=Qt.KeyboardModifier.NoModifier):
    QTest.mouseRelease(win.viewport, Qt.MouseButton.LeftButton, mods, pixel(win, point))


def steps(win, n):
    for _ in range(n):
        win.step()


def state(win):
    return win.session.solver.particles()


# -------------------------------------------------------------------------------------------- tests
def test_default_window_plays_dam_break_and_pauses(qtbot):
    from main import build_parser

    args = build_parser().parse_args([])
    assert args.command is None and args.gui_scene == "dam_break"
    win = MainWindow(args.gui_scene, GRID)  # plays at once, no dialog
    qtbot.addWidget(win)
    win.show()
    assert win.session.scene.name == "dam_break" and win.loop.playing
    qtbot.waitUntil(lambda: win.session.frame >= 3, timeout=60000)
    win.toggle_play()  # Space
    assert not win.loop.playing
    frame = win.session.frame
    qtbot.wait(300)
    assert win.session.frame == frame
    assert "paused" in win.hud_text() and "fps" in win.hud_text() and "particles" in win.hud_text()
    # Real-time by default: dam_break has weights, so the window opens in Hybrid.
    assert win.session.mode == "hybrid" and "Hybrid (water2d" in win.hud_text(), win.hud_text()
    assert win.panel.mode_buttons["hybrid"].isChecked()
    win.close()


def test_a_scene_without_weights_opens_numerical_and_says_why(qtbot):
    win = MainWindow("jelly_drop", GRID, play=False)
    qtbot.addWidget(win)
    win.show()
    win.step()
    assert win.session.mode == "numerical"
    assert "Numerical (" in win.hud_text() and "jelly" in win.hud_text(), win.hud_text()
    win.close()


def test_every_builtin_scene_with_weights_defaults_to_hybrid():
    from neural.catalog import make_stepper
    from neural.scene_eval import APP_SCENES
    from neural.stepper import HybridStepper
    from sim.scene import builtin_scenes, load_scene

    for name in builtin_scenes():
        stepper, message = make_stepper("auto", load_scene(name))
        if name in APP_SCENES:  # with the weights the catalog picks for it
            assert isinstance(stepper, HybridStepper), (name, message)
            assert stepper.weights == APP_SCENES[name], (name, message)
        else:
            assert stepper.name == "numerical" and message.startswith("numerical: "), (name, message)


def test_installed_pyside_does_not_leak_none():
    """PySide6 6.12 drops a reference to None on every void call (Python < 3.12), which aborts a long
    session with 'deallocating None'; pyproject.toml excludes it, and this catches a regression."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(1000):
        probe.setObjectName("probe")
    assert sys.getrefcount(None) >= before - 10


def test_push_moves_particles_along_the_drag(block):
    block.tool_actions["push"].trigger()
    x0 = state(block)["x"][:, 0].mean()
    press(block, (0.19, 0.32))
    for x in (0.22, 0.25, 0.28, 0.31):
        move(block, (x, 0.32))
        block.step()
    release(block, (0.31, 0.32))
    steps(block, 6)
    shift = state(block)["x"][:, 0].mean() - x0
    assert shift > 0.02, shift  # the block falls straight down when nothing pushes it


def test_push_with_ctrl_repels_and_shift_attracts(block):
    block.set_tool("push")
    x = state(block)["x"]
    centre = (0.25, 0.33)
    spread0 = np.linalg.norm(x - centre, axis=1).mean()
    press(block, centre, Qt.KeyboardModifier.ControlModifier)
    steps(block, 3)
    release(block, centre, Qt.KeyboardModifier.ControlModifier)
    spread = np.linalg.norm(state(block)["x"] - centre, axis=1).mean()
    assert spread > spread0 + 0.005


def test_pour_adds_particles_of_the_chosen_material(block):
    block.panel.material_box.setCurrentText("sand")
    block.tool_actions["pour"].trigger()
    n0 = block.session.solver.n
    press(block, (0.1, 0.45))
    steps(block, 8)
    release(block, (0.1, 0.45))
    block.step()
    after = state(block)
    assert block.session.solver.n > n0 + 20
    assert (after["material"] == SAND).sum() == block.session.solver.n - n0
    block.step()
    assert block.session.solver.n == len(after["x"])  # releasing stops the pour
    block.panel.material_box.setCurrentText("water")


def test_erase_removes_particles_under_the_cursor(block):
    block.tool_actions["erase"].trigger()
    n0 = block.session.solver.n
    press(block, (0.25, 0.33))
    n1 = block.session.solver.n
    move(block, (0.2, 0.28))
    release(block, (0.2, 0.28))
    assert n1 < n0 and block.session.solver.n < n1
    x = state(block)["x"]
    assert (np.linalg.norm(x - (0.25, 0.33), axis=1) < 0.05).sum() == 0


def test_obstacle_drawn_with_the_mouse_stops_falling_water_and_a_click_deletes_it(block):
    block.tool_actions["obstacle"].trigger()
    colliders = len(block.session.solver.colliders)
    press(block, (-0.01, 0.12))  # from outside the left wall: the box is clipped to the domain
    move(block, (0.3, 0.16))
    release(block, (0.51, 0.18))
    assert len(block.session.solver.colliders) == colliders + 1
    box = block.session.solver.colliders[-1].describe()
    assert np.allclose(box["min"], (0.0, 0.12), atol=0.004)
    assert np.allclose(box["max"], (0.5, 0.18), atol=0.004)
    steps(block, 40)
    y = state(block)["x"][:, 1]
    assert y.min() > 0.17, y.min()  # the water rests on the box: nothing below it
    press(block, (0.25, 0.15))  # a drag that starts on it draws a new box and keeps it
    move(block, (0.35, 0.1))
    release(block, (0.45, 0.05))
    assert len(block.session.solver.colliders) == colliders + 2
    assert np.allclose(block.session.solver.colliders[-1].describe()["min"], (0.25, 0.05), atol=0.004)
    block.session.remove_obstacle(len(block.session.solver.colliders) - 1)
    press(block, (0.25, 0.15))  # a click on the obstacle deletes it, a hand's jitter included
    release(block, (0.253, 0.152))
    assert len(block.session.solver.colliders) == colliders


def test_circle_obstacle_with_shift(block):
    block.set_tool("obstacle")
    press(block, (0.25, 0.1))
    release(block, (0.3, 0.1), Qt.KeyboardModifier.ShiftModifier)
    circle = block.session.solver.colliders[-1].describe()
    assert circle["shape"] == "sphere" and abs(circle["radius"] - 0.05) < 0.004
    block.reset()
    assert not block.session.solver.colliders


def test_mode_and_colour_switches(block):
    panel = block.panel
    reasons = available_modes(block.session)
    assert reasons["numerical"] is None and panel.mode_buttons["numerical"].isEnabled()
    start = block.session.mode  # the window's default is checked in the dam_break test
    assert panel.mode_buttons[start].isChecked()
    for mode in ("neural", "hybrid"):
        if reasons[mode] is None:  # weights fit this scene: the switch works and shows in the HUD
            assert panel.mode_buttons[mode].isEnabled()
            panel.mode_buttons[mode].click()
            assert block.session.mode == mode and panel.mode_buttons[mode].isChecked()
            block.step()
            assert MODES[mode] in block.hud_text()
        else:  # disabled, with the reason shown; asking anyway changes nothing
            assert not panel.mode_buttons[mode].isEnabled()
            assert reasons[mode] in panel.mode_buttons[mode].toolTip()
            assert reasons[mode] in panel.mode_reason.text()
            assert not block.set_mode(mode) and block.session.mode == start
            assert reasons[mode] in block.statusBar().currentMessage()
    assert block.set_mode("numerical") and block.session.mode == "numerical"
    assert panel.mode_buttons["numerical"].isChecked()
    panel.color_box.setCurrentIndex(panel.color_box.findData("speed"))
    assert block.viewport.color_mode == "speed" and block.viewport.frame_view().color_mode == "speed"
    block.step()
    block.cycle_color_mode()  # V
    assert block.viewport.color_mode == "material" and panel.color_box.currentData() == "material"


def test_settings_change_the_session(block):
    block.panel.gravity_spin.setValue(4.0)
    assert np.allclose(block.session.gravity, (0.0, -4.0))
    substeps = block.session.solver.substeps
    block.panel.quality_box.setCurrentIndex(block.panel.quality_box.findData(2.0))
    assert block.session.solver.substeps >= 2 * substeps - 1
    block.panel.quality_box.setCurrentIndex(block.panel.quality_box.findData(1.0))
    block.panel.gravity_spin.setValue(9.81)
    block.panel.size_spin.setValue(2.0)
    assert block.viewport.draw_scale == 2.0
    block.panel.size_spin.setValue(1.0)


def test_malformed_scene_shows_an_error_and_the_old_scene_keeps_running(block, tmp_path, qtbot):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scene]\ndim = 2\nsize = [0.5, 0.5]\ngrid = 32\n[[body]]\nmaterial = "lava"\n')
    session = block.session
    block.play()
    assert not block.load_scene(bad)
    assert "bad.toml" in block.statusBar().currentMessage() and "lava" in block.statusBar().currentMessage()
    assert block.session is session and block.session.scene.name == "block" and block.loop.playing
    frame = block.session.frame
    qtbot.waitUntil(lambda: block.session.frame > frame + 2, timeout=10000)
    block.pause()


def test_save_and_load_round_trip(block, tmp_path):
    steps(block, 5)
    path = tmp_path / "state.npz"
    block.save_state(path)
    saved, frame = state(block), block.session.frame
    steps(block, 5)
    block.load_state(path)
    loaded = state(block)
    assert block.session.frame == frame
    for key in ("x", "v", "C", "F", "J", "material"):
        assert np.array_equal(saved[key], loaded[key]), key
    block.load_state(tmp_path / "missing.npz")  # an error in the status bar, the state untouched
    assert "missing.npz" in block.statusBar().currentMessage()
    assert np.array_equal(state(block)["x"], loaded["x"])
    block.save_state(tmp_path / "no" / "such" / "folder.npz")  # a failed save: a message, no crash
    assert "No such file" in block.statusBar().currentMessage()


def test_screenshot_shows_the_water(block, tmp_path):
    path = tmp_path / "shot.png"
    block.screenshot(path)
    rgb = iio.imread(path)[..., :3].astype(int)
    dpr = block.viewport.devicePixelRatioF()
    assert rgb.shape[:2] == block.viewport.framebuffer_size()[::-1]
    x = state(block)["x"]
    colours = []
    for p in x[:: max(1, len(x) // 40)]:
        px, py = block.viewport.mapping().to_pixel(p)
        colours.append(rgb[int(py * dpr), int(px * dpr)])
    colours = np.array(colours)
    # Water's blue, shaded darker towards a sprite's rim where a neighbour overlaps the centre.
    r, g, b = colours.T
    water = (b > 2 * r) & (b > g) & (b > 60)
    assert water.mean() > 0.9 and np.median(b) > 150, colours[:5]
    empty = rgb[int(pixel(block, (0.45, 0.1)).y() * dpr), int(pixel(block, (0.45, 0.1)).x() * dpr)]
    assert empty.max() < 60  # the dark domain


def test_record_writes_an_mp4_with_one_frame_per_tick(block, tmp_path):
    out = tmp_path / "live.mp4"
    block.start_recording(out)
    assert block.rec_label.isVisible() and block.record_action.isChecked()
    steps(block, 6)
    block._refresh_hud()
    assert "REC 6" in block.rec_label.text()
    block.stop_recording()
    assert not block.rec_label.isVisible()
    frames = iio.imread(out, index=None)
    w, h = block.viewport.framebuffer_size()
    assert frames.shape[0] == 6 and frames.shape[1:3] == (h - h % 2, w - w % 2)


def test_scene_picker_switches_scenes(block, block_path, qtbot):
    box = block.panel.scene_box
    block.play()
    box.activated.emit(box.findData("jelly_drop"))
    assert block.session.scene.name == "jelly_drop" and block.session.scene.grid == 32
    assert box.currentData() == "jelly_drop" and block.loop.playing
    frame = block.session.frame
    qtbot.waitUntil(lambda: block.session.frame > frame + 2, timeout=30000)
    block.pause()
    assert block.load_scene(block_path) and block.session.scene.name == "block"
    assert "block (file)" in box.currentText()


def test_camera_zoom_and_pan_keep_the_mapping_consistent(block):
    vp = block.viewport
    point = (0.3, 0.2)
    before = pixel(block, point)
    QTest.mouseMove(vp, before)
    anchor = vp.mapping().to_domain(before.x(), before.y())
    vp.pan_zoom.zoom_about(anchor, 2.0, block.session.scene.size)  # what the wheel does
    assert abs(pixel(block, point).x() - before.x()) <= 1 and abs(pixel(block, point).y() - before.y()) <= 1
    block.set_tool("camera")
    start = pixel(block, (0.25, 0.25))
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(vp, start + QPoint(40, 0))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start + QPoint(40, 0))
    moved = pixel(block, (0.25, 0.25))
    assert abs(moved.x() - start.x() - 40) <= 1 and abs(moved.y() - start.y()) <= 1
    vp.reset_camera()


def test_mapping_round_trips_in_2d_and_3d():
    m = mapping_for(2, (0.5, 0.3), 800, 600, 2.0, PanZoom(zoom=1.7, center=np.array([0.2, 0.1])))
    for p in ((0.0, 0.0), (0.5, 0.3), (0.21, 0.17)):
        assert np.allclose(m.to_domain(*m.to_pixel(p)), p, atol=1e-9)
    size = (0.4, 0.4, 0.4)
    camera = OrbitCamera.default_for(size)
    normal = camera.eye() - camera.target
    plane = ToolPlane(np.array([0.2, 0.1, 0.2]), normal / np.linalg.norm(normal))
    m3 = mapping_for(3, size, 640, 480, 1.0, camera=camera, plane=plane)
    q = m3.to_domain(*m3.to_pixel((0.25, 0.12, 0.18)))
    assert abs((q - plane.point) @ plane.normal) < 1e-6  # on the tool plane
    assert np.allclose(m3.to_pixel(q), m3.to_pixel((0.25, 0.12, 0.18)), atol=1e-6)
    ring = m3.circle(plane.point, 0.05)
    assert np.allclose(np.abs((ring - plane.point) @ plane.normal), 0, atol=1e-6)


def test_input_is_handled_between_slow_frames(qapp):
    """A 150 ms frame never delays an event by more than about one frame."""

    class Slow:
        class scene:
            frame_dt = 1 / 60

        def tick(self):
            time.sleep(0.15)
            return type("R", (), {"error": None, "frame": 0, "sim_time": 0.0, "partial": False})()

    slow = Slow()
    loop = SimLoop(lambda: slow, lambda: None)
    loop.play()
    QTest.qWait(50)
    posted = time.perf_counter()
    handled = []
    QTimer.singleShot(0, lambda: handled.append(time.perf_counter()))
    while not handled and time.perf_counter() - posted < 2:
        qapp.processEvents()
    loop.pause()
    assert handled and handled[0] - posted < 0.2 and loop.ticks >= 1


def test_keyboard_shortcuts_and_wheel_zoom(block, qtbot):
    block.activateWindow()
    block.viewport.setFocus()
    qtbot.waitUntil(block.isActiveWindow, timeout=5000)
    for key, tool in ((Qt.Key.Key_E, "erase"), (Qt.Key.Key_O, "obstacle"), (Qt.Key.Key_F, "pour")):
        QTest.keyClick(block.viewport, key)
        assert block.viewport.tool.name == tool and block.tool_actions[tool].isChecked()
    frame = block.session.frame
    QTest.keyClick(block.viewport, Qt.Key.Key_Period)
    assert block.session.frame == frame + 1 and not block.loop.playing
    QTest.keyClick(block.viewport, Qt.Key.Key_Space)
    assert block.loop.playing
    QTest.keyClick(block.viewport, Qt.Key.Key_Space)
    assert not block.loop.playing
    radius = block.settings.radius
    QTest.keyClick(block.viewport, Qt.Key.Key_BracketRight)
    assert block.settings.radius > radius and block.panel.radius_spin.value() == pytest.approx(
        block.settings.radius, abs=1e-3
    )
    at = pixel(block, (0.3, 0.2))
    wheel = QWheelEvent(
        QPointF(at), QPointF(block.viewport.mapToGlobal(at)), QPoint(), QPoint(0, 240),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(block.viewport, wheel)
    assert block.viewport.pan_zoom.zoom == pytest.approx(1.15**2)
    assert abs(pixel(block, (0.3, 0.2)).x() - at.x()) <= 1  # zoomed about the cursor
    QTest.keyClick(block.viewport, Qt.Key.Key_Home)
    assert block.viewport.pan_zoom.zoom == 1.0


def test_sketch_tool_draws_a_stroke_plans_off_the_frame_path_and_esc_clears(block, qtbot):
    block.set_tool("sketch")
    points = [(0.2, 0.3), (0.25, 0.31), (0.3, 0.32), (0.35, 0.31), (0.42, 0.3)]
    press(block, points[0])
    for p in points[1:]:
        move(block, p)
    release(block, points[-1])
    session = block.session
    assert session.sketched is not None and len(session.sketched.paths) == 1
    assert session.control.asynchronous  # the GUI never waits for a plan

    def applied():
        block.step()
        return session.solver.force_field() is not None

    qtbot.waitUntil(applied, timeout=30000)
    assert "sketch control active" in block.hud_text()
    view = block.viewport.frame_view()
    assert view.force_arrows is not None  # the planned field, drawn as arrows
    # short enough that neighbouring arrows never cross: the field's peak spans ARROW_CELLS spacings
    spacing = max(session.scene.size) / session.solver.config.force_grid
    longest = float(np.linalg.norm(view.force_arrows[1], axis=1).max()) * view.arrow_scale
    assert 0 < longest <= ARROW_CELLS * spacing + 1e-9
    assert len(block.viewport.frame_view().strokes) == 1
    block.activateWindow()  # Esc is a window shortcut: it needs the window active (run alone, it was not)
    qtbot.waitUntil(block.isActiveWindow, timeout=5000)
    QTest.keyClick(block.viewport, Qt.Key.Key_Escape)
    assert session.sketched is None and session.solver.force_field() is None
    assert "sketch cleared" in block.statusBar().currentMessage()


def test_sketch_tool_degenerate_click_is_a_no_op_with_a_message(block):
    block.set_tool("sketch")
    press(block, (0.25, 0.3))
    release(block, (0.25, 0.3))
    assert block.session.sketched is None and block.session.solver.force_field() is None
    assert "single point" in block.statusBar().currentMessage()


# ------------------------------------------------------------------------------------------------ 3D
TANK_3D = """
[scene]
name = "tank3d"
dim = 3
size = [0.3, 0.2, 0.3]
grid = 20

[[body]]
material = "water"
shape = "box"
min = [0.02, 0.0, 0.02]
max = [0.12, 0.08, 0.12]
"""
TANK_RADIUS = 0.03


def test_3d_hit_point_is_the_first_particle_along_the_ray_else_the_floor():
    from app.gui.mapping import first_particle_hit

    r = 0.01
    origin, direction = np.zeros(3), np.array([1.0, 0.0, 0.0])
    beside = (0.5, 1.5 * r, 0.0)  # nearer the camera but not within r of the ray
    t = first_particle_hit(origin, direction, np.array([(2.0, 0.0, 0.0), (1.0, 0.5 * r, 0.0), beside]), r)
    assert t == pytest.approx(1.0 - np.sqrt(r * r - (0.5 * r) ** 2))  # where the ray enters the sphere
    assert first_particle_hit(origin, direction, np.array([(-1.0, 0.0, 0.0), beside]), r) is None

    size = (0.4, 0.3, 0.4)
    camera = OrbitCamera.default_for(size)
    front, eye = np.array([0.25, 0.12, 0.3]), camera.eye().astype(float)
    behind = eye + (front - eye) * 1.5  # on the same ray, further away
    blob = np.array([front, behind, (0.05, 0.05, 0.05)])
    m = mapping_for(3, size, 640, 480, camera=camera, particles=blob, particle_radius=r)
    x, y = m.to_pixel(front)
    hit = m.hit(x, y)
    assert abs(np.linalg.norm(hit - front) - r) < 1e-6  # on the front particle's surface, facing us
    assert np.linalg.norm(hit - eye) < np.linalg.norm(front - eye)
    floor = np.array([0.3, 0.0, 0.35])
    x, y = m.to_pixel(floor)
    assert np.allclose(m.hit(x, y), floor, atol=1e-9)  # no particle there: the floor
    assert np.allclose(m.to_pixel(m.on_floor(x, y)), (x, y), atol=1e-6)
    outside = m.on_floor(*m.to_pixel((0.6, 0.0, 0.7)))  # beyond the domain: clamped into it
    assert outside[1] == 0.0 and outside[0] == pytest.approx(0.4) and outside[2] == pytest.approx(0.4)
    empty = mapping_for(3, size, 640, 480, camera=camera)  # no particles: only the floor is hit
    assert empty.hit(*empty.to_pixel(front))[1] == 0.0


def test_3d_lift_stroke_lands_on_the_tool_plane_or_the_floor_and_reprojects():
    from app.gui.mapping import lift_stroke, tool_plane

    size = (0.5, 0.35, 0.5)
    camera = OrbitCamera.default_for(size, yaw=-40.0, pitch=30.0)
    fluid = np.random.default_rng(0).uniform((0.1, 0.0, 0.2), (0.3, 0.2, 0.35), (500, 3))
    plane = tool_plane(camera, fluid, size)
    m = mapping_for(3, size, 800, 600, 1.0, camera=camera, plane=plane)
    a = np.linspace(0.0, 2.0 * np.pi, 40)
    pixels = np.stack([400 + 150 * np.cos(a), 330 + 90 * np.sin(a)], axis=1)  # a loop on screen
    on_plane = lift_stroke(m, pixels)
    assert on_plane.shape == (40, 3)
    assert np.abs((on_plane - plane.point) @ plane.normal).max() < 1e-9
    assert np.allclose([m.to_pixel(p) for p in on_plane], pixels, atol=1e-6)
    on_floor = lift_stroke(m, pixels, onto_floor=True)
    assert on_floor.shape == (40, 3) and np.abs(on_floor[:, 1]).max() < 1e-12
    assert np.allclose([m.to_pixel(p) for p in on_floor], pixels, atol=1e-6)
    level = OrbitCamera.default_for(size, pitch=2.0)  # the top rows look above the horizon
    m2 = mapping_for(3, size, 800, 600, 1.0, camera=level, plane=tool_plane(level, fluid, size))
    column = [(400.0, y) for y in (0.0, 10.0, 300.0, 590.0)]
    kept = lift_stroke(m2, column, onto_floor=True)
    assert 1 <= len(kept) < 4 and np.abs(kept[:, 1]).max() < 1e-12
    assert len(lift_stroke(m2, column)) == 4  # the plane facing the camera catches every ray


@pytest.fixture(scope="module")
def window3d(qapp, tmp_path_factory):
    """A second window, on a small 3D tank (grid 20): one 3D solver compile for all the 3D tests."""
    path = tmp_path_factory.mktemp("scenes3d") / "tank3d.toml"
    path.write_text(TANK_3D)
    win = MainWindow(path, play=False)
    win.resize(1000, 700)
    win.show()
    assert QTest.qWaitForWindowExposed(win)
    yield win
    win.close()


@pytest.fixture
def tank(window3d):
    """The 3D window at the scene's start, paused, the default camera, the push tool."""
    window3d.pause()
    window3d.reset()
    window3d.viewport.reset_camera()
    window3d.set_tool("push")
    window3d.set_radius(TANK_RADIUS)
    return window3d


def drag_pixels(win, points, button=Qt.MouseButton.LeftButton, mods=Qt.KeyboardModifier.NoModifier):
    vp = win.viewport
    QTest.mousePress(vp, button, mods, points[0])
    for p in points[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, button, mods, points[-1])


def test_3d_camera_orbits_pans_and_zooms_with_the_mouse(tank):
    vp, cam = tank.viewport, tank.viewport.camera
    tank.set_tool("camera")
    yaw, pitch, target = cam.yaw, cam.pitch, cam.target.copy()
    start = QPoint(300, 250)
    drag_pixels(tank, [start, start + QPoint(25, 10), start + QPoint(50, 25)])
    assert cam.yaw == pytest.approx((yaw - 50 * 0.4) % 360) and cam.pitch == pytest.approx(pitch + 10)
    assert np.array_equal(cam.target, target)  # an orbit turns about the target
    # The mapping follows the new camera: the tool plane faces it, and pixels round-trip through it.
    m = vp.mapping()
    eye = cam.eye() - cam.target
    assert np.allclose(m.plane.normal, eye / np.linalg.norm(eye), atol=1e-6)
    water = state(tank)["x"].mean(axis=0)
    q = m.to_domain(*m.to_pixel(water))
    assert abs((q - m.plane.point) @ m.plane.normal) < 1e-6
    assert np.allclose(m.to_pixel(q), m.to_pixel(water), atol=1e-4)
    # ... and the renderer draws the water where the mapping says it is.
    rgb, dpr = vp.grab_rgb().astype(int), vp.devicePixelRatioF()

    def blue(point) -> float:  # the share of water-blue pixels around the point's pixel
        x, y = (round(v * dpr) for v in m.to_pixel(point))
        r, g, b = np.moveaxis(rgb[y - 3 : y + 4, x - 3 : x + 4], -1, 0)
        return float(((b > r + 40) & (b > 100)).mean())

    for corner in ((0.03, 0.07, 0.11), (0.11, 0.07, 0.11), (0.07, 0.07, 0.07)):
        assert blue(corner) > 0.5, corner
    assert blue((0.25, 0.15, 0.05)) == 0.0  # empty space high up at the back
    drag_pixels(tank, [start, start + QPoint(40, 0)], mods=Qt.KeyboardModifier.ShiftModifier)
    assert cam.yaw == pytest.approx((yaw - 20) % 360) and not np.allclose(cam.target, target)  # pans
    tank.set_tool("push")
    moved = cam.target.copy()
    drag_pixels(tank, [start, start + QPoint(0, 30)], Qt.MouseButton.MiddleButton)  # pans with any tool
    assert cam.target[1] > moved[1] and cam.pitch == pytest.approx(pitch + 10)
    drag_pixels(tank, [start, start + QPoint(-50, 0)], Qt.MouseButton.RightButton)  # orbits with any tool
    assert cam.yaw == pytest.approx(yaw % 360)
    distance = cam.distance
    wheel = QWheelEvent(
        QPointF(start), QPointF(vp.mapToGlobal(start)), QPoint(), QPoint(0, 120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(vp, wheel)
    assert cam.distance == pytest.approx(distance / 1.15)


def test_3d_pour_lands_where_the_cursor_meets_the_floor(tank):
    tank.set_tool("pour")
    spot = np.array([0.22, 0.0, 0.22])  # bare floor in front of the water
    n0 = tank.session.solver.n
    press(tank, spot)
    assert np.allclose(tank.viewport.tool.cursor, spot, atol=0.006)  # the floor under the cursor
    tank.step()
    fresh = state(tank)["x"][n0:]
    assert len(fresh) > 10
    spacing = tank.session.solver.config.particle_spacing
    assert np.linalg.norm((fresh - spot)[:, [0, 2]], axis=1).max() < TANK_RADIUS + spacing
    assert fresh[:, 1].max() < TANK_RADIUS + spacing  # the nozzle just above the floor (its radius)
    steps(tank, 9)
    release(tank, spot)
    tank.step()
    n = tank.session.solver.n
    assert n > n0 + 100
    poured = state(tank)["x"][n0:]
    assert np.median(np.linalg.norm((poured - spot)[:, [0, 2]], axis=1)) < 2 * TANK_RADIUS  # a puddle
    tank.step()
    assert tank.session.solver.n == n  # releasing stops the pour


def test_3d_erase_removes_a_ball_at_the_fluid_surface_under_the_cursor(tank):
    tank.set_tool("erase")
    face = np.array([0.105, 0.04, 0.12])  # on the side of the water facing the camera
    x0 = state(tank)["x"]
    press(tank, face)
    hit = np.asarray(tank.viewport.tool.cursor)
    assert np.linalg.norm(hit - face) < 0.012, hit  # the fluid's surface, not the floor or the tool plane
    release(tank, face)
    x = state(tank)["x"]
    assert len(x) < len(x0)
    assert np.linalg.norm(x - hit, axis=1).min() > TANK_RADIUS
    far = np.linalg.norm(x0 - hit, axis=1) > TANK_RADIUS + 1e-6
    assert len(x) == far.sum()  # exactly the ball around the hit point


def test_3d_obstacles_stand_on_the_floor_and_a_click_deletes_them(tank):
    tank.set_tool("obstacle")
    colliders = tank.session.solver.colliders
    a, b = np.array([0.16, 0.0, 0.05]), np.array([0.27, 0.0, 0.2])
    press(tank, a)
    move(tank, (a + b) / 2)
    tank.viewport.grab_rgb()  # draws the preview box
    release(tank, b)
    assert len(colliders) == 1
    box = colliders[-1].describe()
    assert box["shape"] == "box"
    assert np.allclose(box["min"], (0.16, 0.0, 0.05), atol=0.008), box
    assert np.allclose(box["max"], (0.27, TANK_RADIUS, 0.2), atol=0.008), box
    assert box["min"][1] == 0.0 and box["max"][1] == pytest.approx(TANK_RADIUS)  # on the floor
    top = ((0.16 + 0.27) / 2, TANK_RADIUS, 0.125)
    press(tank, top)  # a drag from the box's top draws a box from the floor under the cursor, and keeps it
    floor = np.asarray(tank.viewport.tools["obstacle"].start)
    assert floor[1] == pytest.approx(0.0, abs=1e-6) and np.linalg.norm(floor[[0, 2]] - (0.215, 0.125)) > 0.01
    release(tank, floor + (0.08, 0.0, 0.0))
    assert len(colliders) == 2
    assert colliders[-1].describe()["min"][0] == pytest.approx(floor[0], abs=0.008)
    tank.session.remove_obstacle(1)
    press(tank, top)  # a click on the box (its top, well above the floor behind it) deletes it,
    assert tank.viewport.tools["obstacle"].overlay(tank.viewport.mapping()) == []  # with no box previewed
    release(tank, np.add(top, (0.003, 0.0, 0.0)))  # a hand's jitter included
    assert len(colliders) == 0
    press(tank, (0.2, 0.0, 0.2))
    release(tank, (0.25, 0.0, 0.2), Qt.KeyboardModifier.ShiftModifier)
    sphere = colliders[-1].describe()
    assert sphere["shape"] == "sphere" and sphere["radius"] == pytest.approx(0.05, abs=0.006)
    assert np.allclose(sphere["center"], (0.2, sphere["radius"], 0.2), atol=0.006)  # resting on the floor
    assert "⚠" not in tank.statusBar().currentMessage()
    steps(tank, 2)
    assert tank.session.last_report.error is None


def test_3d_sketch_lifts_strokes_onto_the_tool_plane_or_with_ctrl_the_floor(tank, monkeypatch):
    tank.set_tool("sketch")
    session, vp = tank.session, tank.viewport
    seen = []
    sketch = session.sketch
    monkeypatch.setattr(
        session, "sketch", lambda strokes, *a, **k: seen.append(strokes) or sketch(strokes, *a, **k)
    )
    pixels = [QPoint(260 + 20 * i, 300 + (i % 3) * 5) for i in range(8)]
    plane = vp.mapping().plane
    drag_pixels(tank, pixels)
    (stroke,) = seen[-1]
    drawn = [(p.x(), p.y()) for p in pixels + pixels[-1:]]  # the press, the moves and the release
    assert stroke.shape == (len(drawn), 3)
    assert np.abs((stroke - plane.point) @ plane.normal).max() < 1e-9
    m = vp.mapping()
    assert np.allclose([m.to_pixel(p) for p in stroke], drawn, atol=1e-4)
    # The shipped water3d controller takes the lifted stroke; Esc clears it before the floor stroke.
    assert "steering toward the sketch" in tank.statusBar().currentMessage()
    assert session.sketched is not None and len(vp.tool.strokes) == 1
    tank.clear_sketch()
    assert session.sketched is None and not vp.tool.strokes
    drag_pixels(tank, pixels, mods=Qt.KeyboardModifier.ControlModifier)
    (stroke,) = seen[-1]
    assert stroke.shape == (len(drawn), 3) and np.abs(stroke[:, 1]).max() < 1e-9  # on the floor
    assert np.allclose([m.to_pixel(p) for p in stroke], drawn, atol=1e-4)


def test_screenshot_command_draws_its_obstacle_clear_of_the_scenes_and_pours_its_material():
    from app.gui.launch import free_obstacle_drag, scene_material
    from sim.scene import load_scene

    ramps = load_scene("sand_ramps")
    assert scene_material(ramps) == "sand"  # pouring water would switch the hybrid off
    assert scene_material(load_scene("dam_break")) == "water"
    # The first drag starts on sand_ramps' lower ramp (a press there deletes it): the next one is taken.
    drag = free_obstacle_drag(ramps.obstacles, ramps.size)
    assert drag is not None and drag[0][0] < 0.5
    for corner in drag:
        assert all(o.signed_distance(np.array([corner]))[0] > 0 for o in ramps.obstacles)
    empty = load_scene("dam_break")
    assert free_obstacle_drag(empty.obstacles, empty.size)[0] == [0.55 * empty.size[0], 0.18 * empty.size[1]]
