"""The side panel: scene, material, solver mode and settings, and the playback/file buttons.

It holds widgets only; every change calls a MainWindow method, and sync() shows a Session's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.modes import MODES, available_modes
from app.session import Session
from sim.scene import builtin_scenes

if TYPE_CHECKING:
    from app.gui.window import MainWindow

OPEN_SCENE = "__open__"
MATERIALS = ("water", "jelly", "snow", "sand")
QUALITIES = (
    (0.5, "½× substeps (faster)"),
    (1.0, "1× (the scene's)"),
    (2.0, "2× substeps"),
    (4.0, "4× substeps"),
)
COLOR_MODES = (("material", "material"), ("speed", "speed"))
SHORTCUTS_HINT = (
    "P push · F pour · E erase · O obstacle · C camera\n"
    "Space play/pause · . step · R reset · [ ] tool size\n"
    "Shift-drag: attract / circle · Ctrl-drag: repel\n"
    "wheel: zoom · middle-drag: pan · V colours · Home: view"
)


def _spin(lo: float, hi: float, step: float, decimals: int, suffix: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    spin.setSuffix(suffix)
    spin.setKeyboardTracking(False)  # apply typed numbers on Enter, not digit by digit
    return spin


class Panel(QWidget):
    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.setFixedWidth(290)
        self._window = w = window
        outer = QVBoxLayout(self)
        form = QFormLayout()
        outer.addLayout(form)

        self.scene_box = QComboBox()
        for name in builtin_scenes():
            self.scene_box.addItem(name, name)
        self.scene_box.insertSeparator(self.scene_box.count())
        self.scene_box.addItem("Open…", OPEN_SCENE)
        self.scene_box.activated.connect(lambda i: w.pick_scene(self.scene_box.itemData(i)))
        form.addRow("Scene", self.scene_box)

        self.material_box = QComboBox()
        self.material_box.addItems(MATERIALS)
        self.material_box.setToolTip("What the Pour tool emits")
        self.material_box.currentTextChanged.connect(w.set_material)
        form.addRow("Material", self.material_box)

        self.radius_spin = _spin(0.001, 10.0, 0.005, 3, " m")
        self.radius_spin.setToolTip("Radius of push, pour and erase ([ and ])")
        self.radius_spin.valueChanged.connect(w.set_radius)
        form.addRow("Tool radius", self.radius_spin)

        modes = QGroupBox("Solver")
        mode_layout = QVBoxLayout(modes)
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[str, QRadioButton] = {}
        for key, label in MODES.items():
            button = QRadioButton(label)
            button.toggled.connect(lambda on, k=key: on and w.set_mode(k))
            self.mode_group.addButton(button)
            self.mode_buttons[key] = button
            mode_layout.addWidget(button)
        self.mode_reason = QLabel()
        self.mode_reason.setWordWrap(True)
        self.mode_reason.setStyleSheet("color: gray;")
        mode_layout.addWidget(self.mode_reason)
        outer.addWidget(modes)

        sim = QFormLayout()
        outer.addLayout(sim)
        self.gravity_spin = _spin(0.0, 50.0, 0.5, 2, " m/s²")
        self.gravity_spin.valueChanged.connect(w.set_gravity)
        sim.addRow("Gravity", self.gravity_spin)
        self.quality_box = QComboBox()
        for value, label in QUALITIES:
            self.quality_box.addItem(label, value)
        self.quality_box.setToolTip("Substeps per frame: more is more accurate and slower")
        self.quality_box.currentIndexChanged.connect(lambda i: w.set_quality(self.quality_box.itemData(i)))
        sim.addRow("Quality", self.quality_box)
        self.size_spin = _spin(0.25, 4.0, 0.25, 2, "×")
        self.size_spin.setValue(1.0)
        self.size_spin.setToolTip("Drawn particle size")
        self.size_spin.valueChanged.connect(w.set_draw_scale)
        sim.addRow("Particle size", self.size_spin)
        self.color_box = QComboBox()
        for key, label in COLOR_MODES:
            self.color_box.addItem(label, key)
        self.color_box.currentIndexChanged.connect(lambda i: w.set_color_mode(self.color_box.itemData(i)))
        sim.addRow("Colour", self.color_box)

        buttons = QGridLayout()
        outer.addLayout(buttons)
        actions = (
            (w.play_action, w.step_action, w.reset_action),
            (w.save_action, w.load_action, w.open_action),
            (w.shot_action, w.record_action),
        )
        for row, line in enumerate(actions):
            for col, action in enumerate(line):
                button = QToolButton()
                button.setDefaultAction(action)
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
                button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space stays play/pause
                buttons.addWidget(button, row, col)
        hint = QLabel(SHORTCUTS_HINT)
        hint.setStyleSheet("color: gray;")
        hint.setWordWrap(True)
        outer.addWidget(hint)
        outer.addStretch(1)

    # ------------------------------------------------------------------------------------ showing
    def sync(self, session: Session) -> None:
        """Show `session`'s scene, mode and settings without triggering the change slots."""
        w = self._window
        widgets = (self.scene_box, self.gravity_spin, self.quality_box, self.radius_spin, self.mode_group)
        for widget in widgets:
            widget.blockSignals(True)
        for button in self.mode_buttons.values():
            button.blockSignals(True)
        try:
            self.scene_box.setCurrentIndex(self._scene_index(session))
            self.gravity_spin.setValue(float(np.linalg.norm(session.gravity)))
            index = self.quality_box.findData(session.quality)
            self.quality_box.setCurrentIndex(index if index >= 0 else 1)
            self.radius_spin.setValue(w.settings.radius)
            reasons = available_modes(session)
            for key, button in self.mode_buttons.items():
                button.setEnabled(reasons[key] is None)
                button.setToolTip(reasons[key] or f"{MODES[key]} stepper")
                button.setChecked(key == session.mode)
            blocked = [MODES[k] for k, r in reasons.items() if r is not None]
            why = sorted({r for r in reasons.values() if r is not None})
            self.mode_reason.setText(f"{', '.join(blocked)}: {'; '.join(why)}" if blocked else "")
        finally:
            for widget in widgets:
                widget.blockSignals(False)
            for button in self.mode_buttons.values():
                button.blockSignals(False)

    def _scene_index(self, session: Session) -> int:
        source = Path(session.scene.source).resolve() if session.scene.source else None
        builtins = builtin_scenes()
        for i in range(self.scene_box.count()):
            data = self.scene_box.itemData(i)
            if data in builtins and source == builtins[data].resolve():
                return i
            if data not in builtins and data not in (None, OPEN_SCENE) and source == Path(data).resolve():
                return i
        # A scene from a file: list it before the separator.
        at = len(builtins)
        self.scene_box.insertItem(at, f"{session.scene.name} (file)", str(source))
        return at

    def show_radius(self, radius: float) -> None:
        self.radius_spin.blockSignals(True)
        self.radius_spin.setValue(radius)
        self.radius_spin.blockSignals(False)

    def show_color_mode(self, mode: str) -> None:
        self.color_box.blockSignals(True)
        self.color_box.setCurrentIndex(self.color_box.findData(mode))
        self.color_box.blockSignals(False)

    def show_material(self, material: str) -> None:
        self.material_box.blockSignals(True)
        self.material_box.setCurrentText(material)
        self.material_box.blockSignals(False)
