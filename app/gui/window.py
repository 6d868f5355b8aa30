"""The main window: a thin Qt layer over the Session (viewport, toolbar, side panel, status bar).

Every slot that can fail is @guarded: an exception becomes a status-bar message and the running scene
carries on. Scene switches build the new Session first and swap only on success.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QToolBar, QWidget

from app.gui.errors import describe, guarded
from app.gui.loop import SimLoop
from app.gui.modes import MODES, available_modes
from app.gui.panel import MATERIALS, OPEN_SCENE, Panel
from app.gui.recording import LiveRecording
from app.gui.scenes import open_session, scene_label
from app.gui.tools import TOOL_CLASSES, ToolSettings
from app.gui.viewport import Viewport
from app.session import FrameReport, Session
from sim.scene import builtin_scenes

HUD_REFRESH_MS = 250  # the numbers stay readable and the HUD texture is not rebuilt every frame
RADIUS_STEP = 1.25


def default_radius(session: Session) -> float:
    return 0.06 * max(session.scene.size)


class MainWindow(QMainWindow):
    def __init__(self, scene: str | Path = "dam_break", overrides: dict | None = None, play: bool = True):
        super().__init__()
        self.setWindowTitle("sluice")
        self.overrides = dict(overrides or {})
        self.session = open_session(scene, self.overrides, warm_up=True)
        self.quality = 1.0
        self.recording: LiveRecording | None = None
        self.settings = ToolSettings(radius=default_radius(self.session))
        self.viewport = Viewport(self.session, self.settings)
        self.viewport.error.connect(self.report_error)
        self.viewport.notice.connect(self._notice)
        self.loop = SimLoop(lambda: self.session, self._before_tick, self)
        self.loop.ticked.connect(self._on_ticked)
        self.loop.failed.connect(self.report_error)
        self.loop.playing_changed.connect(self._on_playing_changed)
        self._notice_after_tick: str | None = None

        self._build_actions()
        self._build_toolbar()
        self.panel = Panel(self)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.viewport, 1)
        layout.addWidget(self.panel)
        self.setCentralWidget(central)
        self.stats_label = QLabel()
        self.rec_label = QLabel()
        self.rec_label.setStyleSheet("color: #e33; font-weight: bold;")
        self.rec_label.hide()
        self.statusBar().addPermanentWidget(self.rec_label)
        self.statusBar().addPermanentWidget(self.stats_label)
        self._hud_timer = QTimer(self)
        self._hud_timer.timeout.connect(self._refresh_hud)
        self._hud_timer.start(HUD_REFRESH_MS)
        self.panel.sync(self.session)
        self.resize(1200, 760)
        self.viewport.setFocus()
        self._notice(f"{self.session.scene.name}: compiling the solver for the first frame…")
        self.user_mode: str | None = None  # a mode the user picked: kept across scenes where available
        self._notice_after_tick = f"{self.session.scene.name} running: {self.session.mode_message}"
        if play:
            self.loop.play()

    # ------------------------------------------------------------------------------- building
    def _action(
        self, text: str, slot, shortcut: str | None = None, tip: str = "", checkable=False
    ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            tip = f"{tip or text} ({shortcut})"
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work wherever the focus is in the window
        return action

    def _build_actions(self) -> None:
        self.tool_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for cls in TOOL_CLASSES:
            action = self._action(
                cls.label, lambda _=False, n=cls.name: self.set_tool(n), cls.shortcut, cls.tip
            )
            action.setCheckable(True)
            group.addAction(action)
            self.tool_actions[cls.name] = action
        self.tool_actions["push"].setChecked(True)
        self._action("Clear sketch", self.clear_sketch, "Esc", "Clear the sketch and its force field")
        self.play_action = self._action("Pause", self.toggle_play, "Space", "Play / pause")
        self.step_action = self._action("Step", self.step, ".", "Advance one frame")
        self.reset_action = self._action("Reset", self.reset, "R", "Back to the scene's start")
        self.save_action = self._action("Save…", self.save_state, "Ctrl+S", "Save the state (.npz)")
        self.load_action = self._action("Load…", self.load_state, "Ctrl+O", "Load a saved state (.npz)")
        self.open_action = self._action(
            "Open scene…", self.open_scene_dialog, "Ctrl+Shift+O", "Open a scene file"
        )
        self.shot_action = self._action("Screenshot…", self.screenshot, "F12", "Save the viewport as PNG")
        self.record_action = self._action("Record", self.toggle_recording, "Ctrl+R", "Record an mp4", True)
        self._action("Smaller tool", lambda: self.set_radius(self.settings.radius / RADIUS_STEP), "[")
        self._action("Larger tool", lambda: self.set_radius(self.settings.radius * RADIUS_STEP), "]")
        self._action("Colour mode", self.cycle_color_mode, "V", "Switch colours: material / speed")
        self._action("Reset view", self.viewport.reset_camera, "Home", "Reset the camera")

    def _build_toolbar(self) -> None:
        bar = QToolBar("Tools", self)
        bar.setMovable(False)
        for action in self.tool_actions.values():
            bar.addAction(action)
        bar.addSeparator()
        for action in (self.play_action, self.step_action, self.reset_action):
            bar.addAction(action)
        bar.addSeparator()
        bar.addAction(self.record_action)
        bar.addAction(self.shot_action)
        self.addToolBar(bar)
        self.toolbar = bar

    # ---------------------------------------------------------------------------------- status
    def report_error(self, message: str) -> None:
        self.statusBar().showMessage(f"⚠ {message}", 15000)
        print(f"sluice: {message}", flush=True)

    def _notice(self, message: str, ms: int = 6000) -> None:
        self.statusBar().showMessage(message, ms)

    def hud_text(self) -> str:
        s, r = self.session, self.session.last_report
        parts = [
            f"{self.loop.fps():.1f} fps",
            f"{self.loop.sim_speed():.2f}x real time",
            f"sim {r.latency_ms:.0f} ms" if r else "sim - ms",
            f"render {self.viewport.render_ms:.0f} ms",
            f"{s.solver.n} particles",
            self._mode_text(),
            f"fallback {s.fallback_rate:.0%}",
            f"{s.solver.substeps} substeps",
            f"frame {s.frame}",
        ]
        if s.control_status():
            parts.append(s.control_status())
        if not self.loop.playing:
            parts.append("paused")
        return "  |  ".join(parts)

    def _mode_text(self) -> str:
        """The stepper, its weights and this frame's path; a numerical session says why where the
        default (hybrid) could not run."""
        s, r = self.session, self.session.last_report
        if s.mode == "numerical":
            reason = s.mode_message.removeprefix("numerical").removeprefix(": ")
            return MODES["numerical"] + (f" ({reason})" if reason else "")
        path = f", {r.path}" if r and r.path != s.mode else ""
        progress = getattr(s.stepper, "slice_progress", None)
        if r and r.partial and progress:
            path = f", solver frame {progress[0]}/{progress[1]} substeps"
        return f"{MODES.get(s.mode, s.mode)} ({s.stepper.weights}{path})"

    @guarded
    def _refresh_hud(self) -> None:
        text = self.hud_text()
        self.stats_label.setText(text)
        if text != self.viewport.hud:
            self.viewport.hud = text
            if not self.loop.playing:  # when playing, the next frame's paint shows it: no extra composition
                self.viewport.update()
        if self.recording is not None:
            self.rec_label.setText(f"● REC {self.recording.count}")

    # ------------------------------------------------------------------------------- the loop
    def _before_tick(self) -> None:
        self.viewport.tool.before_tick()

    @guarded
    def _on_ticked(self, report: FrameReport) -> None:
        self.viewport.invalidate()
        if not self.panel.mode_buttons[self.session.mode].isChecked():  # the session changed its stepper
            self.panel.sync(self.session)
            self._notice(self.session.mode_message)
        if self.recording is not None and not report.partial:
            self._capture_frame(self.viewport.grab_rgb())  # every simulation frame reaches the video
        for message in report.messages:
            self._notice(message)
        if self._notice_after_tick and not report.error:
            self._notice(self._notice_after_tick, 3000)
            self._notice_after_tick = None

    def _on_playing_changed(self, playing: bool) -> None:
        self.play_action.setText("Pause" if playing else "Play")
        self._refresh_hud()

    @guarded
    def toggle_play(self) -> None:
        self.loop.toggle()

    @guarded
    def play(self) -> None:
        self.loop.play()

    @guarded
    def pause(self) -> None:
        self.loop.pause()

    @guarded
    def step(self) -> None:
        self.loop.step()
        self._refresh_hud()

    @guarded
    def reset(self) -> None:
        self.viewport.tool.cancel()
        self.session.reset()
        self.viewport.invalidate()
        self._notice("reset to the scene's start")

    # ----------------------------------------------------------------------------- the scene
    def load_scene(self, source: str | Path) -> bool:
        """Build the new scene's Session (compiling its kernels), then swap; on failure keep the old one."""
        label = scene_label(source)
        was_playing = self.loop.playing
        self.loop.pause()
        self.statusBar().showMessage(f"loading {label}… (compiling the solver takes a few seconds)")
        QEventLoop().processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)  # show the message
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            new = open_session(source, self.overrides, warm_up=True)
        except Exception as e:
            self.report_error(
                f"could not load {label}: {describe(e)}; {self.session.scene.name} keeps running"
            )
            self.panel.sync(self.session)
            if was_playing:
                self.loop.play()
            return False
        finally:
            QApplication.restoreOverrideCursor()
        old, self.session = self.session, new
        try:
            new.set_quality(max(self.quality, new.scene.cfl))
        except ValueError as e:
            self.report_error(describe(e))
        if self.user_mode and available_modes(new).get(self.user_mode) is None:
            new.set_mode(self.user_mode)  # keep the user's stepper where the new scene allows it
        self.viewport.set_session(new)
        self.loop.reset_stats()
        self.panel.sync(new)
        old.close()
        self._notice(
            new.solver.budget_warning
            or f"loaded {new.scene.name}: {new.solver.n} particles, {new.mode_message}"
        )
        if was_playing:
            self.loop.play()
        return True

    @guarded
    def open_scene_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scene", "", "sluice scenes (*.toml)")
        if path:
            self.load_scene(path)
        else:
            self.panel.sync(self.session)

    @guarded
    def pick_scene(self, source: str) -> None:
        if source == OPEN_SCENE:
            self.open_scene_dialog()
        elif not self._is_current(source):
            self.load_scene(source)

    def _is_current(self, source: str | Path) -> bool:
        path = builtin_scenes().get(str(source), Path(source))
        return Path(self.session.scene.source).resolve() == Path(path).resolve()

    # ---------------------------------------------------------------------------- the settings
    @guarded
    def set_tool(self, name: str) -> None:
        self.viewport.set_tool(name)
        self.tool_actions[name].setChecked(True)
        self._notice(type(self.viewport.tool).tip, 4000)

    @guarded
    def clear_sketch(self) -> None:
        had = self.session.sketched is not None
        self.viewport.tools["sketch"].clear()
        self.viewport.update()
        if had:
            self._notice("sketch cleared", 3000)

    @guarded
    def set_material(self, material: str) -> None:
        if material not in MATERIALS:
            raise ValueError(f"unknown material {material!r} (choose one of {', '.join(MATERIALS)})")
        self.settings.material = material
        self.panel.show_material(material)

    @guarded
    def set_radius(self, radius: float) -> None:
        size = max(self.session.scene.size)
        self.settings.radius = min(max(float(radius), 0.005 * size), 0.5 * size)
        self.panel.show_radius(self.settings.radius)
        self.viewport.update()

    def set_mode(self, mode: str) -> bool:
        """Switch the stepper; an unavailable mode (or weights that fail to load) keeps the current one."""
        reason = available_modes(self.session).get(mode, "unknown mode")
        if reason is not None:
            self.report_error(f"{MODES.get(mode, mode)} is not available: {reason}")
            self.panel.sync(self.session)
            return False
        try:
            message = self.session.set_mode(mode)
        except Exception as e:
            self.report_error(describe(e))
            self.panel.sync(self.session)
            return False
        ok = self.session.mode == mode
        if ok:
            self.user_mode = mode
            self._notice(f"solver: {MODES[mode]}" + (f" ({message})" if isinstance(message, str) else ""))
        else:
            self.report_error(str(message))
        self.panel.sync(self.session)
        return ok

    @guarded
    def set_gravity(self, value: float) -> None:
        self.session.set_gravity(float(value))

    @guarded
    def set_quality(self, multiplier: float) -> None:
        self.session.set_quality(multiplier)
        self.quality = multiplier
        self._notice(f"{self.session.solver.substeps} substeps per frame")

    @guarded
    def set_draw_scale(self, scale: float) -> None:
        self.viewport.draw_scale = float(scale)
        self.viewport.update()

    @guarded
    def set_color_mode(self, mode: str) -> None:
        if mode not in ("material", "speed"):
            raise ValueError(f"unknown colour mode {mode!r}")
        self.viewport.color_mode = mode
        self.viewport.invalidate()
        self.panel.show_color_mode(mode)

    @guarded
    def cycle_color_mode(self) -> None:
        self.set_color_mode("speed" if self.viewport.color_mode == "material" else "material")

    # --------------------------------------------------------------------------------- files
    def _ask_path(self, title: str, default: str, filters: str, save: bool = True) -> Path | None:
        ask = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        path, _ = ask(self, title, default, filters)
        return Path(path) if path else None

    @guarded
    def save_state(self, path: str | Path | None = None) -> None:
        path = path or self._ask_path("Save state", f"{self.session.scene.name}.npz", "sluice state (*.npz)")
        if path:
            saved = self.session.save(path)
            self._notice(f"saved frame {self.session.frame} to {saved}")

    @guarded
    def load_state(self, path: str | Path | None = None) -> None:
        path = path or self._ask_path("Load state", "", "sluice state (*.npz)", save=False)
        if path:
            self.viewport.tool.cancel()
            self.session.load(path)  # a mismatch raises and leaves the state untouched
            self.viewport.invalidate()
            self._notice(f"loaded frame {self.session.frame} from {path}")

    @guarded
    def screenshot(self, path: str | Path | None = None) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = path or self._ask_path("Screenshot", f"sluice-{stamp}.png", "PNG image (*.png)")
        if path:
            image = self.viewport.grabFramebuffer()
            if not image.save(str(path), "PNG"):
                raise OSError(f"{path}: could not write the PNG")
            self._notice(f"screenshot saved to {path}")

    # ----------------------------------------------------------------------------- recording
    @guarded
    def toggle_recording(self) -> None:
        if self.recording is None:
            self.start_recording()
        else:
            self.stop_recording()

    @guarded
    def start_recording(self, path: str | Path | None = None) -> None:
        if self.recording is not None:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        default = f"sluice-{self.session.scene.name}-{stamp}.mp4"
        path = path or self._ask_path("Record to", default, "Video (*.mp4 *.gif)")
        if not path:
            self._sync_record_action()
            return
        w, h = self.viewport.framebuffer_size()
        fps = max(1.0, round(1.0 / self.session.scene.frame_dt))
        self.recording = LiveRecording(Path(path), w, h, fps)
        self.rec_label.setText("● REC 0")
        self.rec_label.show()
        self._sync_record_action()
        self._notice(f"recording to {path}")

    @guarded
    def stop_recording(self) -> None:
        recording, self.recording = self.recording, None
        self.rec_label.hide()
        self._sync_record_action()
        if recording is not None:
            recording.close()
            self._notice(f"wrote {recording.count} frames to {recording.out}")

    def _capture_frame(self, rgb) -> None:
        try:
            if self.recording is not None:
                self.recording.add(rgb)
        except Exception as e:  # e.g. a full disk: stop recording, keep the frames so far
            self.report_error(f"recording stopped: {describe(e)}")
            QTimer.singleShot(0, self.stop_recording)

    def _sync_record_action(self) -> None:
        self.record_action.blockSignals(True)
        self.record_action.setChecked(self.recording is not None)
        self.record_action.setText("Stop" if self.recording is not None else "Record")
        self.record_action.blockSignals(False)

    # ------------------------------------------------------------------------------- closing
    def closeEvent(self, event: QCloseEvent) -> None:
        self.loop.pause()
        self._hud_timer.stop()
        self.stop_recording()
        self.viewport.release_gl()
        self.session.close()  # hands the solver back for reuse (idempotent)
        super().closeEvent(event)
