"""`bench gui`: frames per second of the live window and its overhead over the simulation alone, and the
frame pacing of the default mode (Hybrid) with a scripted interaction running: pushes, a pour, an
obstacle drawn into the flow."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop

from app.gui.launch import application, open_window, pump, wait_events
from sim.bench import record
from sim.trajectory import learned_share

SCENE = "dam_break"
SCENE_3D = "dam_break_3d"
SIZE = (1200, 760)
PACING_SCENES = {"dam_break": "gui.hybrid", "water_ramps": "gui.hybrid.water_ramps", SCENE_3D: "gui.hybrid3d"}
STALL_MS = 100.0  # a displayed frame slower than this is a stall


def interact(session, frame: int, frames: int) -> None:
    """The scripted interaction, by the share of the run: a push to the right (10-20%), a pour from above
    (35-45%), an obstacle on the floor (60%)."""
    size = np.asarray(session.scene.size, float)
    share = frame / frames
    point = size * 0.5
    if 0.1 <= share < 0.2:
        point[0], point[1] = size[0] * 0.3, size[1] * 0.1
        direction = np.zeros(session.dim)
        direction[0] = 1.0
        session.brush(point, 0.1 * size.max(), 60.0, "push", direction)
    elif frame == int(0.35 * frames):
        point[1] = size[1] * 0.8
        velocity = np.zeros(session.dim)
        velocity[1] = -0.5
        session.pour(point, 0.03 * size.max(), velocity, "water", frames=int(0.1 * frames))
    elif frame == int(0.6 * frames):
        lo, hi = size * 0.0, size * 1.0
        lo[0], hi[0] = 0.6 * size[0], 0.65 * size[0]
        hi[1] = 0.12 * size[1]
        session.add_obstacle({"shape": "box", "min": lo.tolist(), "max": hi.tolist()})


def _shown(scene: str):
    """The window on `scene`, paused, at the benchmark's size, drawn once."""
    window = open_window(scene, play=False)
    window.resize(*SIZE)
    window.show()
    wait_events(300)
    return window


def _play(scene: str, frames: int, mode: str = "numerical") -> dict:
    """Open `scene`, switch to `mode`, play unpaced (no wait for real time) for `frames` frames."""
    window = _shown(scene)
    if mode != "numerical" and not window.set_mode(mode):
        window.close()
        pump()
        raise RuntimeError(f"bench gui: {scene} has no {mode} mode here")
    if mode == "numerical":
        window.set_mode("numerical")  # the window's default is Hybrid where weights fit
    window.loop.realtime = False
    window.step()  # compiles the kernels (and warms the network), outside the timing
    wait_events(100)
    render_ms: list[float] = []
    window.loop.ticked.connect(lambda _: render_ms.append(window.viewport.render_ms))
    ticks0, tick_s0 = window.loop.ticks, window.loop.tick_seconds
    started = time.perf_counter()
    window.play()
    loop = QEventLoop()
    while window.loop.ticks - ticks0 < frames:
        pump(loop)
    wall = time.perf_counter() - started
    window.pause()
    done = window.loop.ticks - ticks0
    out = {
        "frames": done,
        "wall": wall,
        "tick_s": window.loop.tick_seconds - tick_s0,
        "render_ms": statistics.median(render_ms[1:] or [0.0]),
        "particles": window.session.solver.n,
        "substeps": window.session.solver.substeps,
        "fallback_rate": window.session.fallback_rate,
    }
    window.close()
    pump()
    return out


def _pacing(scene: str, frames: int) -> dict:
    """Play `scene` in its default mode, unpaced, for `frames` frames with the scripted interaction; the
    wall time of every displayed frame (tick, render and event handling: what the user waits for)."""
    window = _shown(scene)
    window.loop.realtime = False
    window.step()  # compiles the kernels (and warms the network), outside the timing
    window.reset()
    wait_events(100)
    session = window.session
    stamps: list[float] = []
    paths: list[str] = []
    shown: list[str] = []  # what each displayed frame ran: a path, or "slice" for part of a solver frame

    def ticked(report) -> None:
        stamps.append(time.perf_counter())
        shown.append("slice" if report.partial else report.path)
        if not report.partial:  # slices of a solver frame are displayed frames, not simulated ones
            paths.append(report.path)
        interact(window.session, len(stamps), frames)

    window.loop.ticked.connect(ticked)
    sim_start = session.solver.time
    started = time.perf_counter()
    window.play()
    loop = QEventLoop()
    while len(stamps) < frames:
        pump(loop)
    window.pause()
    wall = stamps[-1] - started
    frame_ms = np.diff([started, *stamps]) * 1e3
    out = {
        "mode": session.mode,
        "weights": session.stepper.weights,
        "frames": len(stamps),
        "fps": len(stamps) / wall,
        "p95": float(np.percentile(frame_ms, 95)),
        "max": float(frame_ms.max()),
        "stalls_per_min": float((frame_ms > STALL_MS).sum()) / (wall / 60.0),
        "learned_share": learned_share(paths),
        # simulated seconds per wall second: below 1 the fluid moves slower than real time
        "sim_speed": (session.solver.time - sim_start) / wall,
        "particles": session.solver.n,
        # the stalls: (displayed frame, ms, what it ran), so a regression can be traced to its cause
        "stalls": [
            (int(k), round(float(frame_ms[k]), 1), shown[k]) for k in np.flatnonzero(frame_ms > STALL_MS)
        ],
    }
    window.close()
    pump()
    return out


COMPETITOR_SCENE = "water_sand"


def contended_records(quick: bool = False) -> list[dict]:
    """dam_break in Hybrid, played unpaced, alone and then beside another sluice process (`record` of
    water_sand in Hybrid, torch on its default threads): two processes that each run torch on every core
    made each other's network calls 70x slower (neural.device.ThreadGovernor)."""
    frames = 30 if quick else 300
    try:
        alone = _play(SCENE, frames, "hybrid")
    except RuntimeError as e:  # no 2D weights: nothing to contend for
        print(e)
        return []
    main = Path(__file__).resolve().parents[2] / "main.py"
    with tempfile.TemporaryDirectory(prefix="sluice-contend-") as folder:
        log = Path(folder) / "competitor.log"
        with open(log, "w") as sink:
            competitor = subprocess.Popen(
                [sys.executable, str(main), "record", "--scene", COMPETITOR_SCENE, "--mode", "hybrid"]
                + ["--frames", "100000", "--size", "320x180", "--out", str(Path(folder) / "competitor.mp4")],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            time.sleep(20)  # its start (kernels from the cache, the weights) is over: it is stepping
            started = competitor.poll() is None
            contended = _play(SCENE, frames, "hybrid") if started else None
            ran = competitor.poll() is None
        finally:
            competitor.terminate()
            try:
                competitor.wait(5)
            except subprocess.TimeoutExpired:
                competitor.kill()
                competitor.wait()
        if contended is None or not ran:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            print(f"bench gui: the competing record ended early; no contended records ({' / '.join(tail)})")
            return []
    fps_alone, fps = alone["frames"] / alone["wall"], contended["frames"] / contended["wall"]
    beside = f"beside `record --scene {COMPETITOR_SCENE} --mode hybrid`"
    return [
        record("gui.contended.fps", fps, "1/s", scene=SCENE, frames=contended["frames"], note=beside),
        record("gui.contended.fps_alone", fps_alone, "1/s", scene=SCENE, note="the same run alone"),
        record("gui.contended.ratio", fps / fps_alone, "x", target=">= 0.5", note=beside),
    ]


def pacing_records(quick: bool = False) -> list[dict]:
    records = []
    for scene, name in PACING_SCENES.items():
        frames = 60 if quick else (600 if scene != SCENE_3D else 300)
        run = _pacing(scene, frames)
        meta = {"scene": scene, "frames": run["frames"], "mode": run["mode"], "weights": run["weights"]}
        meta |= {"learned_share": round(run["learned_share"], 3), "particles": run["particles"]}
        if run["stalls"]:
            print(f"{name}: stalls (displayed frame, ms, path): {run['stalls']}")
        records += [
            record(f"{name}.fps", run["fps"], "1/s", **meta),
            record(f"{name}.frame_ms.p95", run["p95"], "ms"),
            record(f"{name}.frame_ms.max", run["max"], "ms"),
            record(
                f"{name}.stalls_per_min",
                run["stalls_per_min"],
                "1/min",
                note=f"frames over {STALL_MS:g} ms",
                stalls=run["stalls"],
            ),
            record(f"{name}.learned_share", run["learned_share"], ""),
            record(f"{name}.sim_speed", run["sim_speed"], "", note="simulated seconds per wall second"),
        ]
    return records


def gui_records(quick: bool = False) -> list[dict]:
    """dam_break in Numerical mode, playing unpaced for 300 frames (30 quick); the frame pacing of the
    default mode with the scripted interaction (dam_break and water_ramps 600 frames, dam_break_3d 300;
    60 quick); and dam_break_3d in Hybrid mode for 60 frames (10 quick).

    gui.overhead.ratio = wall time per GUI frame / time inside Session.tick per frame: what the window
    (frame export, drawing, HUD, event handling) adds on top of the simulation."""
    from neural.device import adapt_threads

    adapt_threads()  # as run_gui: the window's network calls pick torch's thread count
    application()
    run = _play(SCENE, 30 if quick else 300, "numerical")
    done, wall, tick_s = run["frames"], run["wall"], run["tick_s"]
    records = [
        record(
            "gui.fps",
            done / wall,
            "1/s",
            scene=SCENE,
            frames=done,
            particles=run["particles"],
            substeps=run["substeps"],
        ),
        record("gui.overhead.ratio", (wall / done) / (tick_s / done), "x", target="<= 1.2"),
        record("gui.tick_ms", tick_s / done * 1e3, "ms", note="Session.tick, mean"),
        record("gui.render_ms", run["render_ms"], "ms", note="paintGL CPU time, median"),
    ]
    records += pacing_records(quick)
    records += contended_records(quick)
    try:
        run = _play(SCENE_3D, 10 if quick else 60, "hybrid")
    except RuntimeError as e:  # no 3D weights: say so rather than time the numerical solver
        print(e)
        return records
    return records + [
        record(
            f"gui.fps.{SCENE_3D}.hybrid",
            run["frames"] / run["wall"],
            "1/s",
            scene=SCENE_3D,
            frames=run["frames"],
            particles=run["particles"],
            fallback_rate=run["fallback_rate"],
        ),
        record(f"gui.render_ms.{SCENE_3D}", run["render_ms"], "ms", note="paintGL CPU time, median"),
    ]
