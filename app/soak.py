"""`python main.py soak`: a long run in the app's default mode with a repeating interaction, to find what
grows: resident memory, and the time a frame takes.

The interaction is a record script (app/script.py actions) of one cycle: a push, a pour, an erase, an
obstacle drawn and removed, a sketch, then a reset at the cycle's end. A reset rewinds the frame counter,
so the script plays again every cycle and every cycle does the same work: the last thousand frames (whole
cycles) can be compared with the first. One cycle runs before the measurement (kernels compile, weights
load, caches fill), so what is measured is growth, not warm-up. Frame times are wall times (process CPU
times beside them); each frame of the cycle counts with its fastest run in a window, so a burst of load
from another job does not read as growth (SoakResult._ratio).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

import numpy as np

from app.script import Action

CYCLE_FRAMES = 250
# Ticks per cycle after the first: the reset at the cycle's last frame rewinds to frame 0, and the same tick
# then advances to frame 1.
PERIOD = CYCLE_FRAMES - 1
RSS_EVERY = 25  # frames between memory readings


def resident_bytes() -> int:
    """This process's resident memory now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def soak_script(size, dim: int, obstacles: int) -> list[Action]:
    """One cycle of interaction, placed by fractions of the domain `size`; `obstacles` is how many the
    scene has (the drawn one is removed by its index)."""
    at = lambda *f: [float(a * s) for a, s in zip(f + (0.5,) * (dim - len(f)), size)]  # noqa: E731
    right = [1.0] + [0.0] * (dim - 1)
    box = {"shape": "box", "min": at(0.55, 0.0, 0.35), "max": at(0.62, 0.12, 0.65)}  # (z only in 3D)
    stroke = [at(0.2, 0.3), at(0.4, 0.35), at(0.6, 0.3)]
    return [
        Action(10, "brush", {"center": at(0.2, 0.15), "radius": 0.08 * max(size), "strength": 150.0,
                             "mode": "push", "direction": right, "duration": 15}),
        Action(60, "pour", {"center": at(0.5, 0.8), "radius": 0.02 * max(size), "velocity": [0.0] * dim,
                            "material": "water", "rate": 0.0, "duration": 30, "name": "soak"}),
        Action(120, "erase", {"center": at(0.5, 0.1), "radius": 0.05 * max(size)}),
        Action(150, "obstacle", {"description": box}),
        Action(160, "sketch", {"strokes": [stroke], "window": 30}),
        Action(200, "remove_obstacle", {"index": obstacles}),
        Action(CYCLE_FRAMES - 1, "reset", {}),
    ]  # fmt: skip


def compared_window(frames: int) -> int:
    """Frames in each compared window: whole cycles, up to a thousand frames, at most half the run."""
    most = min(1000, frames // 2)
    return most // PERIOD * PERIOD if most >= PERIOD else max(1, most)


def _best_per_phase(values: np.ndarray, start: int, window: int) -> float:
    """Sum over the cycle's phases of each phase's fastest time among the window's frames."""
    part = values[start : start + window]
    phases = np.arange(start, start + window) % PERIOD
    best = np.full(PERIOD, np.inf)
    np.minimum.at(best, phases, part)
    return float(best.sum())


@dataclass
class SoakResult:
    scene: str
    mode: str
    frames: int
    window: int  # frames in each of the compared windows (the first and the last)
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    rss_after_warmup: int = 0
    rss_end: int = 0
    rss_peak: int = 0
    interrupted: bool = False

    @property
    def rss_growth_mb(self) -> float:
        return (self.rss_end - self.rss_after_warmup) / 2**20

    def _ratio(self, values: list[float]) -> float:
        """The last window's time over the first's. Each window holds whole cycles, so each frame of the
        cycle (its phase) appears in it the same number of times; a phase counts with its fastest run in
        the window (best of its cycles, as timings on a shared machine are taken), so a neighbour's burst
        of load does not read as growth while a frame that got slower in every cycle does."""
        values = np.asarray(values, float)
        n = len(values)
        if self.window < PERIOD:
            first, last = values[: self.window].mean(), values[-self.window :].mean()
        else:
            first, last = (_best_per_phase(values, start, self.window) for start in (0, n - self.window))
        return float(last / first) if first > 0 else float("nan")

    @property
    def slowdown_ratio(self) -> float:
        """Wall time per cycle of the last `window` frames over that of the first (see _ratio)."""
        return self._ratio(self.wall_ms)

    @property
    def cpu_slowdown_ratio(self) -> float:
        """The same in process CPU time: more work per frame shows here too, but torch's worker threads
        spin while they wait, so on a busy machine (where they are descheduled) it reads lower."""
        return self._ratio(self.cpu_ms)

    @property
    def mean_wall_slowdown_ratio(self) -> float:
        """The plain ratio of mean wall times, every disturbance included."""
        return float(np.mean(self.wall_ms[-self.window :]) / np.mean(self.wall_ms[: self.window]))

    @property
    def learned_share(self) -> float:
        from sim.trajectory import learned_share

        return learned_share(self.paths)


def soak(
    scene: str = "dam_break",
    frames: int = 10_000,
    mode: str = "auto",
    model: str | None = None,
    progress: bool = True,
) -> SoakResult:
    """Run `frames` frames (after one warm-up cycle) with the repeating interaction; Ctrl-C stops early
    with what was measured."""
    from tqdm import tqdm

    from app.session import Session

    session = Session(scene, mode=mode, model=model)
    size, dim = session.scene.size, session.dim
    session.script = soak_script(size, dim, len(session.solver.colliders))
    result = SoakResult(session.scene.name, session.mode, 0, compared_window(frames))
    try:
        for _ in range(CYCLE_FRAMES):  # warm-up: compiles, weights, caches
            session.tick()
        result.rss_after_warmup = result.rss_peak = resident_bytes()
        for f in tqdm(range(frames), desc=f"soak {session.scene.name}", unit="frame", disable=not progress):
            cpu, wall = time.process_time(), time.perf_counter()
            report = session.tick()
            result.cpu_ms.append((time.process_time() - cpu) * 1e3)
            result.wall_ms.append((time.perf_counter() - wall) * 1e3)
            result.paths.append(report.path)
            refused = [m for m in report.messages if " refused: " in m]
            if report.error or refused:  # the interaction must run as written, or the soak proves less
                raise RuntimeError(f"frame {report.frame}: {report.error or refused[0]}")
            if f % RSS_EVERY == 0:
                result.rss_peak = max(result.rss_peak, resident_bytes())
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.frames = len(result.cpu_ms)
        result.window = compared_window(result.frames)
        result.rss_end = resident_bytes()
        result.rss_peak = max(result.rss_peak, result.rss_end)
        session.close()
    return result
