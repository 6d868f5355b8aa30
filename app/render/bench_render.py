"""Renderer frame time, headless: random particles, median of timed frames including pixel read-back.

python -m app.render.bench_render  (prints one JSON record per line)
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

from .headless import HeadlessContext  # first: it picks PyOpenGL's platform before OpenGL is imported
from .renderer import Renderer
from .view import FrameView


def random_view(dim: int, n: int, seed: int = 0) -> FrameView:
    """n particles of random materials filling the lower half of a unit domain (a typical scene's
    density: radius of half a 128-cell grid spacing in 2D, 64-cell in 3D)."""
    rng = np.random.default_rng(seed)
    size = (1.0,) * dim
    pos = rng.random((n, dim), dtype=np.float32)
    pos[:, 1] *= 0.5
    return FrameView(
        dim=dim,
        size=size,
        positions=pos,
        materials=rng.integers(0, 4, n, dtype=np.int32),
        velocities=rng.normal(0.0, 1.0, (n, dim)).astype(np.float32),
        particle_radius=0.5 / 128 if dim == 2 else 0.5 / 64,
        hud=f"{n} particles",
    )


def time_frames(ctx: HeadlessContext, renderer: Renderer, view: FrameView, frames: int, warmup: int) -> float:
    """Median milliseconds of render + read_rgb over `frames` frames, after `warmup` untimed ones."""
    times = []
    for i in range(warmup + frames):
        t0 = time.perf_counter()
        renderer.render(view, ctx.width, ctx.height)
        ctx.read_rgb()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_render(width: int = 960, height: int = 540, frames: int = 20, warmup: int = 3) -> list[dict]:
    records = []
    with HeadlessContext(width, height) as ctx:
        renderer = Renderer()
        for dim in (2, 3):
            for n, label in ((10_000, "10k"), (100_000, "100k")):
                ms = time_frames(ctx, renderer, random_view(dim, n), frames, warmup)
                records.append(
                    {"name": f"render.ms_per_frame.{dim}d.{label}", "value": round(ms, 3), "unit": "ms"}
                )
        renderer.release()
    return records


if __name__ == "__main__":
    for record in bench_render():
        print(json.dumps(record))
