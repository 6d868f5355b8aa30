"""The simulation loop: one Session.tick per event-loop pass, on the main thread (Taichi is not
thread-safe).

A single-shot timer restarted at the end of each tick runs exactly one frame, then returns to the event
loop, so mouse and key events are handled between frames however slow a frame is: input never queues
behind frames. When the simulation is faster than real time the timer waits out the rest of frame_dt.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from app.session import FrameReport, Session


class SimLoop(QObject):
    ticked = Signal(object)  # the FrameReport of the frame just run
    playing_changed = Signal(bool)
    failed = Signal(str)  # a frame or a tool failed: the message for the status bar

    def __init__(self, session: Callable[[], Session], before_tick: Callable[[], None], parent=None):
        super().__init__(parent)
        self._session, self._before_tick = session, before_tick
        self.playing = False
        self.realtime = True  # pace to frame_dt when the simulation is faster than real time
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._on_timer)
        self._ends: deque[float] = deque(maxlen=240)
        self._sim_times: deque[float] = deque(maxlen=240)  # the simulated time at each tick's end
        self.ticks = 0
        self.tick_seconds = 0.0  # wall time spent inside Session.tick, summed (the bench's denominator)

    # ----------------------------------------------------------------------------------- control
    def play(self) -> None:
        if not self.playing:
            self.playing = True
            self._timer.start(0)
            self.playing_changed.emit(True)

    def pause(self) -> None:
        self._timer.stop()
        if self.playing:
            self.playing = False
            self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def step(self) -> FrameReport | None:
        """One simulated frame now (all its slices, when a solver frame runs in slices), paused afterwards."""
        self.pause()
        report = self._tick()
        while report is not None and report.partial and not report.error:
            report = self._tick()
        return report

    # ----------------------------------------------------------------------------------- running
    def _on_timer(self) -> None:
        if not self.playing:
            return
        started = time.perf_counter()
        self._tick()
        if self.playing:  # a failed frame pauses
            wait = 0.0
            if self.realtime:
                frame_ms = self._session().scene.frame_dt * 1e3
                wait = frame_ms - (time.perf_counter() - started) * 1e3
            self._timer.start(max(0, int(wait)))

    def _tick(self) -> FrameReport | None:
        try:
            self._before_tick()
        except Exception as e:  # a tool failed (e.g. a full solver): report it, keep simulating
            self.failed.emit(f"tool: {e}")
        started = time.perf_counter()
        try:
            report = self._session().tick()
        except Exception as e:
            self.pause()
            self.failed.emit(f"simulation stopped: {e}")
            return None
        self._ends.append(time.perf_counter())
        self._sim_times.append(report.sim_time)
        self.tick_seconds += self._ends[-1] - started
        self.ticks += 1
        if report.error:
            self.pause()
            self.failed.emit(f"frame {report.frame + 1} was undone and the simulation paused: {report.error}")
        self.ticked.emit(report)
        return report

    def fps(self, window_s: float = 1.0) -> float:
        """Frames per second over about the last `window_s` seconds of playing."""
        ends = list(self._ends)
        if len(ends) < 2 or time.perf_counter() - ends[-1] > 1.0:
            return 0.0
        recent = [t for t in ends if t >= ends[-1] - window_s] or ends
        if len(recent) < 2:
            recent = ends[-2:]
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def sim_speed(self, window_s: float = 2.0) -> float:
        """Simulated seconds per wall second over about the last `window_s` seconds (1: real time; less
        while frames are slower than frame_dt, or a solver frame runs in slices)."""
        ends, times = list(self._ends), list(self._sim_times)
        if len(ends) < 2 or time.perf_counter() - ends[-1] > 1.0:
            return 0.0
        first = next(i for i, t in enumerate(ends) if t >= ends[-1] - window_s)
        first = min(first, len(ends) - 2)
        return max(times[-1] - times[first], 0.0) / max(ends[-1] - ends[first], 1e-9)

    def reset_stats(self) -> None:
        self._ends.clear()
        self._sim_times.clear()
