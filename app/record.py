"""Headless recording: Session + Renderer into an EGL/OSMesa context, frames to mp4, GIF or numbered PNGs."""

from __future__ import annotations

import math
import os
import signal
import struct
import sys
import threading
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image
from tqdm import tqdm

# The headless module chooses PyOpenGL's platform; it must be imported before anything imports OpenGL.
from app.render import headless  # noqa: I001  (import order matters)
from app.render.camera import OrbitCamera
from app.render.renderer import Renderer
from app.script import load_script
from app.session import Session
from sim.atomic import atomic_path
from sim.trajectory import learned_share

VIDEO_SUFFIXES = (".mp4", ".gif")


class RecordError(ValueError):
    """A recording request that cannot be carried out (bad output path, size, ...)."""


class SolverFailure(RuntimeError):
    """The simulation failed mid-run; the frames before it were kept."""


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RecordError(f"--size must look like 960x540, got {text!r}") from None
    if not (16 <= width <= 7680 and 16 <= height <= 4320) or width % 2 or height % 2:
        raise RecordError(f"--size {text}: width and height must be even, between 16x16 and 7680x4320")
    return width, height


def output_kind(out: Path) -> str:
    """mp4, gif or png (a folder of numbered PNGs). Fails before any simulation if `out` can't be written."""
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        parent = out.resolve().parent
        if not parent.is_dir():
            raise RecordError(f"{out}: folder {parent} does not exist")
        if out.is_dir() or not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            raise RecordError(f"{out}: cannot write here")
        return suffix[1:]
    if suffix:
        raise RecordError(f"{out}: unknown format {suffix!r}; use .mp4, .gif or a folder for PNGs")
    if out.exists() and not out.is_dir():
        raise RecordError(f"{out}: exists and is not a folder")
    parent = out.resolve().parent
    if not out.exists() and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise RecordError(f"{out}: cannot create this folder")
    if out.exists() and not os.access(out, os.W_OK):
        raise RecordError(f"{out}: folder is not writable")
    return "png"


def _mp4_complete(path: Path) -> bool:
    """Whether an mp4 was finished: its top-level boxes tile the file and the index (moov) is there.
    imageio does not report ffmpeg's exit status, so without this a video cut short by a full disk would
    replace a good one."""
    if not path.is_file():  # ffmpeg never wrote it
        return False
    size, pos, kinds = path.stat().st_size, 0, set()
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            header = f.read(16)
            if len(header) < 8:
                return False
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1 and len(header) == 16:  # a 64-bit size follows
                length = struct.unpack(">Q", header[8:])[0]
            elif length == 0:  # the box runs to the end of the file
                length = size - pos
            if length < 8:
                return False
            kinds.add(kind)
            pos += length
    return pos == size and {b"mdat", b"moov"} <= kinds


class FrameSink:
    """Writes frames; close() always leaves a valid file, with however many frames arrived."""

    def __init__(self, out: Path, kind: str, fps: float):
        self.out, self.kind, self.fps = out, kind, fps
        self.count = 0
        self._gif_frames: list[Image.Image] = []
        self._writer = None
        self._tmp: Path | None = None
        if kind == "png":
            out.mkdir(parents=False, exist_ok=True)
        elif kind == "mp4":
            import imageio.v2 as iio2

            self._commit = ExitStack()  # the mp4 replaces `out` only once ffmpeg has finished it
            self._tmp = self._commit.enter_context(atomic_path(out, ".partial.mp4"))
            # imageio-ffmpeg starts ffmpeg in its own process group, so a Ctrl-C reaches only us and
            # closing the writer still finalises the file.
            self._writer = iio2.get_writer(
                self._tmp,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                macro_block_size=2,
                quality=7,
                ffmpeg_log_level="error",
            )

    def append(self, rgb: np.ndarray) -> None:
        if self.kind == "png":
            with atomic_path(self.out / f"frame_{self.count:05d}.png", ".png") as tmp:
                iio.imwrite(tmp, rgb, extension=".png")
        elif self.kind == "mp4":
            self._writer.append_data(rgb)
        else:
            self._gif_frames.append(
                Image.fromarray(rgb).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
            )
        self.count += 1

    def close(self) -> None:
        """Finish the file. Raises OSError, leaving `out` as it was, when the video could not be finished."""
        if self.kind == "mp4" and self._writer is not None:
            with suppress(OSError):  # ffmpeg is gone (a full disk, ...): the check below tells
                self._writer.close()
            self._writer = None
            if self.count and _mp4_complete(self._tmp):
                self._commit.close()
            else:  # nothing recorded, or not a whole video: drop the file rather than replace anything
                self._commit.__exit__(RuntimeError, RuntimeError("no frames"), None)
                if self.count:
                    raise OSError(
                        f"{self.out}: the video could not be finished after {self.count} frames "
                        f"(is the disk full?); {self.out} was left as it was"
                    )
        elif self.kind == "gif" and self._gif_frames:
            first, *rest = self._gif_frames
            with atomic_path(self.out, ".gif") as tmp:
                first.save(tmp, save_all=True, append_images=rest, duration=round(1000 / self.fps), loop=0)
            self._gif_frames = []


@dataclass
class RecordResult:
    frames: int
    out: Path
    interrupted: bool = False
    error: str | None = None
    paths: list[str] = field(default_factory=list)  # per simulated frame: the path that ran it
    sim_ms: list[float] = field(default_factory=list)  # per simulated frame: the step's wall time

    @property
    def learned_share(self) -> float:
        return learned_share(self.paths)

    @property
    def mean_ms(self) -> float:
        return sum(self.sim_ms) / len(self.sim_ms) if self.sim_ms else 0.0


class Recorder:
    """Renders a Session into an offscreen framebuffer, one image per tick.

    `orbit` (degrees per simulated second, 3D only) turns the camera about the domain: each rendered
    frame advances its yaw by orbit * frame_dt, so the first frame shows the default view."""

    def __init__(
        self, session: Session, width: int, height: int, color: str = "material", orbit: float = 0.0
    ):
        if not math.isfinite(orbit):
            raise RecordError(f"--orbit must be a finite number, got {orbit}")
        self.session, self.width, self.height, self.color = session, width, height, color
        self.orbit = float(orbit)
        self.context = headless.HeadlessContext(width, height)
        self.renderer = Renderer()
        self.camera = OrbitCamera.default_for(session.scene.size) if session.dim == 3 else None
        self._yaw0 = self.camera.yaw if self.camera is not None else 0.0
        self.rendered = 0

    def render(self) -> np.ndarray:
        self.context.make_current()
        if self.camera is not None and self.orbit:
            # From the frame count, not accumulated: no drift, and the same frames on every run.
            step = self.orbit * self.session.scene.frame_dt
            self.camera.yaw = (self._yaw0 + step * self.rendered) % 360.0
        view = self.session.frame_view(self.color, hud=self.session.hud_line(timing=False))
        self.renderer.render(view, self.width, self.height, self.camera)
        self.rendered += 1
        return self.context.read_rgb()

    def close(self) -> None:
        self.context.make_current()
        self.renderer.release()
        self.context.close()


def record(
    scene: str,
    frames: int,
    out: Path,
    size: str = "960x540",
    fps: float = 30.0,
    color: str = "material",
    script: Path | None = None,
    seed: int | None = None,
    progress: bool = True,
    mode: str = "auto",
    model: str | None = None,
    control_model: str | None = None,
    orbit: float = 0.0,
) -> RecordResult:
    """Simulate and record `frames` frames. Validates everything (output, size, script, scene) first.
    `orbit`: in 3D, the camera turns about the domain at this many degrees per simulated second."""
    if frames < 1:
        raise RecordError("--frames must be at least 1")
    if not fps > 0:
        raise RecordError("--fps must be positive")
    if not math.isfinite(orbit):
        raise RecordError(f"--orbit must be a finite number, got {orbit}")
    width, height = parse_size(size)
    kind = output_kind(out)
    session = Session(scene, seed=seed, mode=mode, model=model, control_model=control_model)
    if mode != "numerical":
        print(f"[sluice] stepper: {session.mode_message}", file=sys.stderr)
    if session.solver.budget_warning:
        print(f"[sluice] {session.solver.budget_warning}", file=sys.stderr)
    try:
        if script is not None:
            session.script = load_script(script, session.dim)
        recorder = Recorder(session, width, height, color, orbit)
    except BaseException:
        session.close()
        raise
    sink = FrameSink(out, kind, fps)
    result = RecordResult(0, out)
    # Ctrl-C and SIGTERM set a flag that the loop reads between frames: a KeyboardInterrupt raised inside a
    # Taichi kernel or the encoder could leave either unable to close, and SIGTERM's default action would
    # end the process without finishing the file.
    interrupted = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {
            s: signal.signal(s, lambda *_: interrupted.set()) for s in (signal.SIGINT, signal.SIGTERM)
        }
    try:
        for _ in tqdm(range(frames), desc=f"record {session.scene.name}", unit="frame", disable=not progress):
            if interrupted.is_set():
                break
            report = session.tick()
            for message in report.messages:  # refused actions, a full solver
                print(f"[sluice] {message}", file=sys.stderr)
            result.paths.append(report.path)
            result.sim_ms.append(report.latency_ms)
            if report.error:
                result.error = report.error
                break
            sink.append(recorder.render())
    except KeyboardInterrupt:
        interrupted.set()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        result.interrupted = interrupted.is_set()
        try:
            recorder.close()
            session.close()
        finally:
            sink.close()  # last, and always: it raises when the file could not be finished
    result.frames = sink.count
    return result
