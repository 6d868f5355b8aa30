"""`bench render`: renderer frame time, video encoding, and the render's share of a simulation frame."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from app.record import FrameSink, Recorder  # noqa: I001  (imports app.render.headless first)
from app.render.bench_render import bench_render
from app.session import Session
from sim.bench import record

WIDTH, HEIGHT = 960, 540


def share_of_frame(frames: int) -> list[dict]:
    """dam_break at full resolution: median render (with read-back) over median Session.tick."""
    session = Session("dam_break")
    recorder = Recorder(session, WIDTH, HEIGHT)
    tick_ms, render_ms, encode_ms = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        sink = FrameSink(Path(folder) / "bench.mp4", "mp4", 30.0)
        for i in range(frames + 2):
            report = session.tick()
            start = time.perf_counter()
            rgb = recorder.render()
            rendered = time.perf_counter()
            sink.append(rgb)
            encoded = time.perf_counter()
            if i >= 2:  # the first frames compile kernels and shaders
                tick_ms.append(report.latency_ms)
                render_ms.append((rendered - start) * 1e3)
                encode_ms.append((encoded - rendered) * 1e3)
        sink.close()
    particles = session.solver.n
    recorder.close()
    session.close()
    tick, render, encode = (statistics.median(v) for v in (tick_ms, render_ms, encode_ms))
    return [
        record("render.dam_break.ms_per_frame", render, "ms", particles=particles),
        record("sim.dam_break.ms_per_frame", tick, "ms", particles=particles),
        record("render.share_of_frame", render / tick, "x", target="< 0.25 at 10k particles"),
        record("record.encode_ms_per_frame", encode, "ms", codec="libx264", size=f"{WIDTH}x{HEIGHT}"),
    ]


def render_records(quick: bool = False) -> list[dict]:
    records = [
        dict(r, size=f"{WIDTH}x{HEIGHT}") for r in bench_render(WIDTH, HEIGHT, frames=5 if quick else 20)
    ]
    return records + share_of_frame(5 if quick else 30)
