"""`python main.py fuzz`: random scenes (valid and broken) and random interaction scripts, a few frames
each, to find what makes the app crash, print a traceback, keep a non-finite state or lose a particle.

A case is a scene file and a record script (app/script.py) drawn from one seed, and it runs the way
`record --script` runs it: load_scene, a Session in the default mode, the script's actions at their
frames, one tick per frame. What a user gets for bad input is a one-line message (the scene or script
refused, an action skipped with its reason), so a case *fails* only when:
- an exception other than those messages escapes (a traceback),
- the worker process dies or hangs (a crash: each case runs in a worker, which is replaced after one),
- a frame leaves a non-finite particle state in place,
- the live particles differ from the Session's ledger (seeded + poured - erased since the last start).
A failing case is written to OUT/case_SEED_INDEX/ (scene.toml, script.toml, result.json with the
traceback) and replays with `OMP_NUM_THREADS=1 python main.py record --scene DIR/scene.toml --script
DIR/script.toml --frames N --out replay.mp4` (torch on one thread, as in the worker: the count changes the
order of float sums).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sim.scene import dump_toml

MATERIALS = ("water", "jelly", "snow", "sand")
BROKEN_SHARE = 0.35  # of the cases whose scene gets one or two invalid or out-of-range values
SLOW_FRAME_SECONDS = 2.0  # a case stops stepping where a frame is estimated slower (the budget warns at 1)
CASE_TIMEOUT_SECONDS = 240.0  # a case that takes longer counts as a hang
FAILURES = ("crash", "traceback", "nonfinite", "unaccounted")


@dataclass
class Case:
    seed: int
    index: int
    scene_text: str
    script: dict
    frames: int
    broken: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"case_{self.seed}_{self.index:04d}"

    def write(self, folder: Path) -> Path:
        out = folder / self.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "scene.toml").write_text(self.scene_text, encoding="utf-8")
        (out / "script.toml").write_text(dump_toml(self.script), encoding="utf-8")
        return out


@dataclass
class CaseResult:
    name: str
    outcome: str  # ran, refused (scene or script, with a message), or one of FAILURES
    message: str = ""
    frames: int = 0  # frames run
    planned: int = 0  # frames the case asks for (what a replay runs)
    actions: int = 0
    refused_actions: int = 0
    unaccounted: int = 0  # |live particles - the ledger's count|, summed over the frames
    seconds: float = 0.0
    traceback: str = ""
    broken: list[str] = field(default_factory=list)


@dataclass
class FuzzReport:
    results: list[CaseResult]
    seconds: float

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome in FAILURES]

    def summary(self) -> dict[str, int | float]:
        return {
            "cases": len(self.results),
            "ran": self.count("ran"),
            "refused": self.count("refused"),
            "crashes": self.count("crash"),
            "tracebacks": self.count("traceback"),
            "nonfinite_kept": self.count("nonfinite"),
            "particles_unaccounted": sum(r.unaccounted for r in self.results),
            "frames": sum(r.frames for r in self.results),
            "actions": sum(r.actions for r in self.results),
            "actions_refused": sum(r.refused_actions for r in self.results),
            "seconds": round(self.seconds, 1),
        }


# ------------------------------------------------------------------------------------------ drawing
def draw_case(seed: int, index: int) -> Case:
    """The case `index` of a fuzz run seeded `seed`: the same pair always draws the same case."""
    rng = np.random.default_rng([seed, index])
    raw = _scene(rng)
    broken = []
    if rng.random() < BROKEN_SHARE:
        for _ in range(int(rng.integers(1, 3))):
            broken.append(_break(raw, rng))
    text = dump_toml(raw)
    if rng.random() < 0.03:  # malformed TOML: cut off mid-file
        text = text[: int(rng.integers(1, max(2, len(text))))] + '"\n[[body'
        broken.append("malformed TOML")
    frames = int(rng.integers(4, 11))
    dim = raw.get("scene", {}).get("dim", 2) if isinstance(raw.get("scene"), dict) else 2
    dim = dim if dim in (2, 3) and isinstance(dim, int) else 2
    size = _size_of(raw, dim)
    script = {"action": [_action(rng, k, dim, size, frames) for k in range(int(rng.integers(0, 9)))]}
    if rng.random() < 0.6:
        mode = str(rng.choice(["numerical", "neural", "hybrid", "auto"]))
        script["action"].insert(0, {"frame": 0, "type": "mode", "mode": mode})
    if rng.random() < 0.03:  # an action a script may not hold
        script["action"].append({"frame": 1, "type": str(rng.choice(["teleport", "brush"])), "radius": -1.0})
        broken.append("malformed script")
    return Case(seed, index, text, script, frames, broken)


def _pick(rng, options: list):
    """One of `options` as it is (np.random's choice would turn a mixed list into strings)."""
    return options[int(rng.integers(0, len(options)))]


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _point(rng, size, margin=0.0) -> list[float]:
    return [_u(rng, margin * s, (1 - margin) * s) for s in size]


def _scene(rng) -> dict:
    dim = 3 if rng.random() < 0.2 else 2
    size = [round(_u(rng, 0.2, 1.2 if dim == 2 else 0.6), 3) for _ in range(dim)]
    scene = {
        "name": "fuzz",
        "dim": dim,
        "size": size,
        "grid": int(rng.choice([16, 24, 32, 48, 64] if dim == 2 else [8, 12, 16, 20])),
    }
    if rng.random() < 0.05 and dim == 2:
        scene["grid"] = 128
    optional = {
        "gravity": lambda: _u(rng, 0, 20) if rng.random() < 0.7 else [_u(rng, -10, 10) for _ in range(dim)],
        "particles_per_cell": lambda: int(rng.choice([1, 2, 4, 8])),
        "cfl": lambda: _u(rng, 0.2, 0.8),
        "boundary": lambda: str(rng.choice(["separate", "slip", "sticky"])),
        "friction": lambda: _u(rng, 0, 1),
        "seed": lambda: int(rng.integers(0, 1000)),
        "frame_dt": lambda: float(rng.choice([1 / 60, 1 / 30, 1 / 120])),
    }
    for key, value in optional.items():
        if rng.random() < 0.25:
            scene[key] = value()
    raw = {"scene": scene, "body": [], "obstacle": [], "emitter": []}
    for _ in range(int(rng.integers(1, 4))):
        raw["body"].append(_body(rng, dim, size))
    for _ in range(int(rng.integers(0, 4))):
        raw["obstacle"].append(_obstacle(rng, dim, size))
    if rng.random() < 0.2:
        raw["emitter"].append(
            {
                "material": str(rng.choice(MATERIALS)),
                "center": _point(rng, size, 0.2),
                "radius": _u(rng, 0.01, 0.05),
                "velocity": [_u(rng, -2, 2) for _ in range(dim)],
                "stop": _u(rng, 0.02, 0.2),
            }
        )
    return raw


def _body(rng, dim, size) -> dict:
    material = str(rng.choice(MATERIALS, p=[0.5, 0.15, 0.15, 0.2]))
    body: dict = {"material": material}
    extent = [_u(rng, 0.1, 0.4) * s for s in size]
    lo = [_u(rng, 0, s - e) for s, e in zip(size, extent)]
    if rng.random() < 0.7:
        body |= {"shape": "box", "min": lo, "max": [a + e for a, e in zip(lo, extent)]}
    else:
        r = 0.5 * min(extent)
        body |= {"shape": "sphere", "center": [a + r for a in lo], "radius": r}
    if rng.random() < 0.5:
        body["velocity"] = [_u(rng, -3, 3) for _ in range(dim)]
    if material != "water" and rng.random() < 0.3:
        body["youngs_modulus"] = float(10 ** _u(rng, 3, 5.5))
        body["poisson_ratio"] = _u(rng, 0.0, 0.45)
    if material == "sand" and rng.random() < 0.3:
        body["friction_angle"] = _u(rng, 10, 45)
    return body


def _obstacle(rng, dim, size) -> dict:
    shape = str(rng.choice(["box", "sphere", "plane"] + (["ramp"] if dim == 2 else [])))
    o: dict = {"shape": shape}
    if shape == "box":
        lo = _point(rng, size)
        o |= {"min": lo, "max": [a + _u(rng, 0.02, 0.3) * s for a, s in zip(lo, size)]}
    elif shape == "sphere":
        o |= {"center": _point(rng, size), "radius": _u(rng, 0.01, 0.2) * min(size)}
    elif shape == "plane":
        normal = [_u(rng, -0.3, 0.3) for _ in range(dim)]
        normal[1] = 1.0
        o |= {"point": [_u(rng, 0, s) if d != 1 else _u(rng, 0, 0.1) * s for d, s in enumerate(size)]}
        o["normal"] = normal
    else:
        o |= {
            "center": _point(rng, size),
            "half_size": [_u(rng, 0.05, 0.3) * size[0], _u(rng, 0.01, 0.03)],
            "angle": _u(rng, -40, 40),
        }
    if rng.random() < 0.4:
        o["boundary"] = str(rng.choice(["slip", "sticky", "separate"]))
        o["friction"] = _u(rng, 0, 0.8)
    return o


# What a broken scene gets: each entry puts one invalid or out-of-range value into the raw scene.
BREAKS: dict[str, object] = {
    "grid": lambda r, rng: r["scene"].update(grid=_pick(rng, [0, -3, 3, 5000, 2048, 1.5, "64"])),
    "size": lambda r, rng: r["scene"].update(
        size=_pick(
            rng, [[-1.0, 1.0], [0.0, 1.0], [1e5, 1e5, 1e5][: r["scene"]["dim"]], [1.0], [math.nan, 1.0]]
        )
    ),
    "dim": lambda r, rng: r["scene"].update(dim=_pick(rng, [1, 4, "2", 2.0])),
    "frame_dt": lambda r, rng: r["scene"].update(frame_dt=_pick(rng, [0.0, -1.0, 10.0, 1e-7, math.nan])),
    "particles_per_cell": lambda r, rng: r["scene"].update(particles_per_cell=_pick(rng, [0, 1000, -1, 2.5])),
    "cfl": lambda r, rng: r["scene"].update(cfl=_pick(rng, [0.0, 5.0, -0.1])),
    "dt": lambda r, rng: r["scene"].update(dt=_pick(rng, [1e-12, 1.0, 0.0, 1e-6])),
    "gravity": lambda r, rng: r["scene"].update(gravity=_pick(rng, [1e7, -5.0, math.inf])),
    "capacity": lambda r, rng: r["scene"].update(capacity=_pick(rng, [1, 10**12, -5])),
    "sound_speed": lambda r, rng: r["scene"].update(sound_speed=_pick(rng, [1e6, 0.0, -1.0, 3000.0])),
    "unknown key": lambda r, rng: r["scene"].update(colour="blue"),
    "missing scene": lambda r, rng: r.pop("scene"),
    "body velocity": lambda r, rng: r["body"][0].update(
        velocity=_pick(rng, [[5000.0, -9000.0, 0.0], [math.inf, 0.0, 0.0], [150.0, 0.0, 0.0]])[
            : len(r["body"][0].get("min", r["body"][0].get("center")))
        ]
    ),
    "body outside": lambda r, rng: r["body"][0].update(
        shape="box", min=[5.0] * r["scene"]["dim"], max=[6.0] * r["scene"]["dim"]
    ),
    "body inverted": lambda r, rng: r["body"][0].update(
        shape="box", min=[0.3] * r["scene"]["dim"], max=[0.1] * r["scene"]["dim"]
    ),
    "body material": lambda r, rng: r["body"][0].update(material="lava"),
    "body shape": lambda r, rng: r["body"][0].update(shape="cone"),
    "body parameter": lambda r, rng: r["body"][0].update(
        [
            _pick(
                rng,
                [
                    ("youngs_modulus", -1.0),
                    ("youngs_modulus", 1e15),
                    ("poisson_ratio", 0.5),
                    ("density", 0.0),
                    ("density", 1e9),
                    ("friction_angle", 95.0),
                    ("viscosity", 1e9),
                ],
            )
        ]
    ),
    "many bodies": lambda r, rng: r["body"].extend([dict(r["body"][0]) for _ in range(60)]),
    "obstacle": lambda r, rng: r["obstacle"].append(
        _pick(
            rng,
            [
                {"shape": "sphere", "center": [math.nan] * r["scene"]["dim"], "radius": 0.1},
                {"shape": "plane", "point": [0.0] * r["scene"]["dim"], "normal": [0.0] * r["scene"]["dim"]},
                {"shape": "sphere", "center": [0.1] * r["scene"]["dim"], "radius": -0.1},
                {"shape": "box", "min": [-1.0] * r["scene"]["dim"], "max": [9.0] * r["scene"]["dim"]},
                {"shape": "torus", "center": [0.1] * r["scene"]["dim"]},
            ],
        )
    ),
    "emitter": lambda r, rng: r["emitter"].append(
        {
            "material": "water",
            "center": [0.1] * r["scene"]["dim"],
            "radius": _pick(rng, [0.0, 1e3, 0.02, 0.02]),
            "velocity": _pick(rng, [[0.0, -1.0, 0.0], [1e4, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0]])[
                : r["scene"]["dim"]
            ],
            "rate": _pick(rng, [100.0, 1e15]),
        }
    ),
    "wrong type": lambda r, rng: r.update(body={"material": "water"}),
}


SCALAR_BREAKS = {"grid", "dim", "frame_dt", "particles_per_cell", "cfl", "dt", "gravity", "capacity"}
SCALAR_BREAKS |= {"sound_speed", "unknown key", "missing scene", "body material", "body shape", "wrong type"}


def _break(raw: dict, rng) -> str:
    names = list(BREAKS)
    name = names[int(rng.integers(0, len(names)))]
    if "scene" not in raw or not raw.get("body") or not isinstance(raw["body"], list):
        name = "unknown key" if "scene" in raw else "missing scene"
        if name == "missing scene":
            return name
    dim = raw["scene"].get("dim")
    if not (isinstance(dim, int) and dim in (2, 3)) and name not in SCALAR_BREAKS:
        name = "unknown key"  # the other breaks need the dimension
    BREAKS[name](raw, rng)
    return name


def _size_of(raw: dict, dim: int) -> list[float]:
    size = raw.get("scene", {}).get("size") if isinstance(raw.get("scene"), dict) else None
    ok = (
        isinstance(size, list) and len(size) == dim and all(isinstance(s, float) and 0 < s < 10 for s in size)
    )
    return size if ok else [1.0] * dim


def _action(rng, k: int, dim: int, size: list[float], frames: int) -> dict:
    """One scripted action: values mostly in range, now and then far beyond it (all finite, as a script
    must be: the script parser refuses the rest before anything runs)."""
    frame = int(rng.integers(0, frames))
    wild = rng.random() < 0.25
    kind = str(
        rng.choice(
            [
                "brush",
                "pour",
                "stop_pour",
                "erase",
                "obstacle",
                "remove_obstacle",
                "reset",
                "sketch",
                "clear_sketch",
                "mode",
                "quality",
                "gravity",
                "save",
                "load",
            ],
            p=[0.14, 0.14, 0.05, 0.1, 0.1, 0.05, 0.04, 0.1, 0.03, 0.08, 0.05, 0.04, 0.04, 0.04],
        )
    )
    a: dict = {"frame": frame, "type": kind}
    point = _point(rng, size) if not wild else [_u(rng, -2, 3) * s for s in size]
    if kind == "brush":
        a |= {
            "center": point,
            "radius": _u(rng, 0.01, 0.3) if not wild else float(rng.choice([1e-6, 50.0])),
            "strength": _u(rng, 0, 500) if not wild else float(rng.choice([1e7, 1e12])),
            "mode": str(rng.choice(["push", "attract", "repel"])),
            "direction": [_u(rng, -1, 1) for _ in range(dim)] if rng.random() < 0.9 else [0.0] * dim,
            "duration": int(rng.integers(1, 20)),
        }
    elif kind == "pour":
        a |= {
            "center": point,
            "radius": _u(rng, 0.005, 0.05) if not wild else float(rng.choice([1e-6, 5.0, 1e3])),
            "velocity": [_u(rng, -3, 3) for _ in range(dim)] if not wild else [1e4] + [0.0] * (dim - 1),
            "material": str(rng.choice(MATERIALS + ("lava",), p=[0.6, 0.1, 0.1, 0.15, 0.05])),
            "rate": 0.0 if not wild else float(rng.choice([1e3, 1e12])),
            "duration": int(rng.integers(0, 8)),
            "name": str(rng.choice(["pour", "second"])),
        }
    elif kind == "stop_pour":
        a["name"] = str(rng.choice(["pour", "second", "none"]))
    elif kind == "erase":
        a |= {"center": point, "radius": _u(rng, 0.01, 0.2) if not wild else 50.0}
    elif kind == "obstacle":
        a |= _obstacle(rng, dim, size) if not wild else _pick(rng, BREAK_OBSTACLES)(dim)
    elif kind == "remove_obstacle":
        a["index"] = int(rng.integers(0, 6))
    elif kind == "sketch":
        count = int(rng.choice([0, 1, 2, 8, 40, 3000]))
        start = np.array(_point(rng, size, 0.1))
        steps = rng.normal(0, 0.03 if not wild else 0.5, (count, dim)).cumsum(axis=0)
        stroke = [[float(c) for c in start + s] for s in steps]
        a |= {"strokes": [stroke] if rng.random() < 0.9 else [], "window": int(rng.integers(1, 60))}
    elif kind == "mode":
        a["mode"] = str(rng.choice(["auto", "numerical", "neural", "hybrid"]))
    elif kind == "quality":
        a["multiplier"] = float(rng.choice([0.1, 0.5, 1.0, 2.0, 4.0, 16.0, 100.0]))
    elif kind == "gravity":
        a["value"] = _u(rng, 0, 30) if rng.random() < 0.6 else [_u(rng, -20, 20) for _ in range(dim)]
    elif kind in ("save", "load"):
        a["path"] = "state.npz" if kind == "save" or rng.random() < 0.8 else "missing.npz"
    return a


BREAK_OBSTACLES = [
    lambda dim: {"shape": "box", "min": [-1.0] * dim, "max": [9.0] * dim},  # swallows the whole domain
    lambda dim: {"shape": "sphere", "center": [0.1] * dim, "radius": -0.2},
    lambda dim: {"shape": "plane", "point": [0.0] * dim, "normal": [0.0] * dim},
]


# ------------------------------------------------------------------------------------------ running
def run_case(case: Case, folder: Path) -> CaseResult:
    """Run one case in this process (its files go to `folder`); see the module docstring."""
    from app.gui.errors import describe
    from app.script import ScriptError, load_script
    from app.session import Session
    from sim.arch import BackendError
    from sim.budget import frame_seconds
    from sim.scene import SceneError, load_scene
    from sim.solver import CapacityError
    from sim.state import StateFileError, particles_problem

    user_errors = (SceneError, ScriptError, StateFileError, CapacityError, BackendError, OSError, ValueError)
    started = time.perf_counter()
    result = CaseResult(case.name, "ran", planned=case.frames, broken=case.broken)
    out = case.write(folder)
    session = None
    try:
        try:
            scene = load_scene(out / "scene.toml")
            script = load_script(out / "script.toml", scene.dim)
            session = Session(scene, mode="auto")
        except user_errors as e:
            result.outcome, result.message = "refused", describe(e)
            return result
        session.script = script
        result.actions = len(script)
        for _ in range(case.frames):
            estimate = frame_seconds(session.dim, session.solver.n, session.solver.substeps)
            if estimate > SLOW_FRAME_SECONDS:
                result.message = f"stopped at frame {session.frame}: about {estimate:.3g} s a frame"
                break
            report = session.tick()
            result.frames += 1
            result.refused_actions += sum(" refused: " in m for m in report.messages)
            state = session.solver.particles()
            if particles_problem(state, session.dim, len(session.solver.slots)):
                result.outcome, result.message = (
                    "nonfinite",
                    f"a non-finite state kept at frame {session.frame}",
                )
                break
            off = abs(session.solver.n - session.ledger.expected)
            if off:
                result.unaccounted += off
                result.outcome = "unaccounted"
                result.message = (
                    f"frame {session.frame}: {session.solver.n} particles live, the ledger says "
                    f"{session.ledger.expected} ({session.ledger})"
                )
                break
    except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
        result.outcome, result.message = "traceback", f"{type(e).__name__}: {e}"
        result.traceback = traceback.format_exc()
    finally:
        if session is not None:
            session.close()
        result.seconds = time.perf_counter() - started
    return result


def _worker(conn, folder: str, arch: str, log: str) -> None:
    """A worker process: runs the cases it is sent, one at a time, and answers each with its result."""
    with open(log, "a", buffering=1) as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        import torch

        from sim.arch import init_taichi

        init_taichi(arch)
        # Two workers each running torch on every core spin against each other's OpenMP teams (a learned
        # frame's network call 370 ms instead of 5: neural.device); one thread each cannot.
        torch.set_num_threads(1)
        while True:
            message = conn.recv()
            if message is None:
                return
            seed, index = message
            print(f"--- case {seed} {index}", flush=True)
            conn.send(asdict(run_case(draw_case(seed, index), Path(folder))))


class _Worker:
    """A worker process and the case it is running."""

    def __init__(self, context, work: Path, arch: str, log: Path):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, str(work), arch, str(log)), daemon=True)
        self.process.start()
        child.close()
        self.index: int | None = None
        self.started = 0.0

    def send(self, seed: int, index: int) -> None:
        self.index, self.started = index, time.perf_counter()
        self.conn.send((seed, index))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def run_fuzz(
    cases: int,
    seed: int,
    out: Path,
    first: int = 0,
    workers: int = 1,
    arch: str = "cpu",
    timeout_s: float = CASE_TIMEOUT_SECONDS,
    progress: bool = True,
) -> FuzzReport:
    """Run cases first..first+cases-1 of the run seeded `seed` in `workers` worker processes; keep the
    files of the failing ones under `out` and remove the rest. A worker that dies or hangs is counted as
    a crash of its case and replaced."""
    from multiprocessing.connection import wait

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work.", dir=out))  # never a folder of the user's
    log = out / "worker.log"
    context = mp.get_context("spawn")
    todo = list(range(first, first + cases))[::-1]
    pool: list[_Worker] = []
    results: dict[int, CaseResult] = {}
    started = time.perf_counter()
    bar = tqdm(total=cases, desc="fuzz", unit="case", disable=not progress)
    try:
        while todo or any(w.index is not None for w in pool):
            while todo and len(pool) < workers:
                pool.append(_Worker(context, work, arch, log))
            for w in pool:
                if w.index is None and todo:
                    w.send(seed, todo.pop())
            busy = [w for w in pool if w.index is not None]
            ready = wait([w.conn for w in busy], timeout=1.0)
            for w in busy:
                result = None
                if w.conn in ready:
                    with contextlib.suppress(EOFError, OSError):
                        result = CaseResult(**w.conn.recv())
                elif time.perf_counter() - w.started < timeout_s:
                    continue
                if result is None:  # died or hung: a crash of this case; a fresh worker takes the next
                    w.process.kill()
                    w.process.join()
                    w.conn.close()
                    code = w.process.exitcode
                    what = "hung" if code in (-9, None) else f"died (exit code {code})"
                    case = draw_case(seed, w.index)
                    case.write(work)
                    result = CaseResult(
                        case.name, "crash", f"the worker {what}; see {log}", broken=case.broken
                    )
                    pool.remove(w)
                results[w.index] = result
                _keep_or_drop(result, work, out)
                w.index = None
                bar.update()
    finally:
        bar.close()
        for w in pool:
            w.stop()
    shutil.rmtree(work, ignore_errors=True)
    return FuzzReport([results[i] for i in sorted(results)], time.perf_counter() - started)


def _keep_or_drop(result: CaseResult, work: Path, out: Path) -> None:
    folder = work / result.name
    if result.outcome in FAILURES and folder.is_dir():
        kept = out / result.name
        shutil.rmtree(kept, ignore_errors=True)
        folder.rename(kept)
        (kept / "result.json").write_text(json.dumps(asdict(result), indent=1))
    else:
        shutil.rmtree(folder, ignore_errors=True)


def print_report(report: FuzzReport, out: Path, file=sys.stdout) -> None:
    s = report.summary()
    print(
        f"fuzz: {s['cases']} cases ({s['ran']} ran, {s['refused']} refused with a message) in "
        f"{s['seconds']} s; {s['frames']} frames, {s['actions']} actions "
        f"({s['actions_refused']} refused with a message)",
        file=file,
    )
    print(
        f"crashes {s['crashes']}, tracebacks {s['tracebacks']}, "
        f"non-finite states kept {s['nonfinite_kept']}, particles unaccounted {s['particles_unaccounted']}",
        file=file,
    )
    for r in report.failures:
        folder = out / r.name
        frames = max(r.planned, 1)
        print(
            f"  {r.outcome}: {r.name}: {r.message}\n    replay: OMP_NUM_THREADS=1 python main.py record "
            f"--scene {folder}/scene.toml --script {folder}/script.toml --frames {frames} --out replay.mp4",
            file=file,
        )
