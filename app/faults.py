"""Injected faults: bad weights, bad state files, an unwritable or full output folder, and SIGINT/SIGTERM
during a save, a simulation or a recording.

Each fault is one small function that sets the fault up in its own folder, runs the product against it
(in this process: the stepper, the controller and the Session, as the window uses them; in a subprocess:
the command line) and says whether the product survived: the app keeps running with a one-line reason, or
the command exits with a one-line message and no traceback; a file the product writes is either the good
one that was there before or a complete new one, and no temporary file is left beside it.
`run_faults` runs them all (or, with quick=True, a fixed subset that takes seconds) and never raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "assets" / "models"
CONTROLS = ROOT / "assets" / "control"
STEPPER = MODELS / "water2d.safetensors"  # the intact files the faults start from
CONTROLLER = CONTROLS / "water2d.safetensors"

# Small scenes keep every run to seconds: the fault is in the files and the signals, not in the physics.
SMALL_2D = """
[scene]
name = "fault_dam"
dim = 2
size = [0.5, 0.5]
grid = 32

[[body]]
material = "water"
shape = "box"
min = [0.0, 0.0]
max = [0.15, 0.3]
"""
OTHER_2D = SMALL_2D.replace("fault_dam", "fault_tank").replace("size = [0.5, 0.5]", "size = [0.75, 0.5]")
SMALL_3D = """
[scene]
name = "fault_dam_3d"
dim = 3
size = [0.4, 0.3, 0.2]
grid = 16

[[body]]
material = "water"
shape = "box"
min = [0.0, 0.0, 0.0]
max = [0.1, 0.2, 0.2]
"""
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}
TIMEOUT_S = 300.0  # a subprocess that takes longer has hung: that is a failure, not a wait


@dataclass
class FaultResult:
    name: str
    survived: bool
    detail: str


# A fault function returns (survived, detail); an exception it raises counts as not survived.
Fault = Callable[[Path], tuple[bool, str]]


# ------------------------------------------------------------------------------------------- helpers
def _scene_file(work: Path, text: str = SMALL_2D, name: str = "fault_dam.toml") -> Path:
    path = work / name
    path.write_text(text)
    return path


def _copy_weights(
    source: Path, folder: Path, stem: str, damage: Callable[[Path], None] | None = None
) -> Path:
    """A copy of a weights file and the metadata beside it, then damage(copy) if given."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.safetensors"
    shutil.copyfile(source, target)
    shutil.copyfile(source.with_suffix(".json"), target.with_suffix(".json"))
    if damage is not None:
        damage(target)
    return target


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_middle(path: Path) -> None:
    """Flip the low bits of 4 KiB in the middle: the header stays valid and the values stay finite."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0x01 for b in data[middle : middle + 4096])
    path.write_bytes(bytes(data))


def _nan_weights(source: Path, folder: Path, stem: str, control: bool = False) -> Path:
    """A valid weights file, metadata and digest included, whose tensors are all NaN."""
    import torch

    if control:
        from control.model import ControlSpec as Spec
        from control.model import ForceDiffusion as Model
    else:
        from neural.model import GridStepper as Model
        from neural.model import ModelSpec as Spec
    from neural.model import write_weights

    spec = Spec(**json.loads(source.with_suffix(".json").read_text())["spec"])
    model = Model(spec)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    target = folder / f"{stem}.safetensors"
    write_weights(model, spec, target, {"family": spec.family, "note": "NaN-filled by app.faults"})
    return target


def _one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


def _last_line(stderr: str) -> str:
    """The last line on stderr (progress bars redraw themselves with carriage returns)."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    return lines[-1] if lines else ""


def _leftovers(folder: Path, target: Path) -> list[str]:
    """Temporary files of an atomic write of `target` (sim.atomic names them .STEM.*) left in `folder`."""
    return sorted(p.name for p in folder.glob(f".{target.stem}.*"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class _Run:
    returncode: int
    stdout: str
    stderr: str
    signalled: bool = False  # the signal was sent after the awaited progress


def _run(
    args: list[str],
    file_limit: int | None = None,
    send: signal.Signals | None = None,
    after: str = r"[1-9]\d*/\d+",
) -> _Run:
    """Run `python args...` with the CPU backend. file_limit: RLIMIT_FSIZE in bytes (Python ignores
    SIGXFSZ, so a write past it fails with EFBIG, as on a full disk; ffmpeg inherits both). send: a signal
    sent once stderr or stdout matches `after` (by default a progress bar's first finished frame)."""
    env = {**os.environ, "SLUICE_ARCH": "cpu", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}

    def setup() -> None:
        # As from a terminal: a shell starts background jobs with SIGINT ignored, which Python then keeps.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if file_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=setup,
    )
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

    def drain(name: str, stream) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            chunks[name].append(chunk)

    readers = [
        threading.Thread(target=drain, args=(name, getattr(proc, name)), daemon=True) for name in chunks
    ]
    for reader in readers:
        reader.start()

    def text(name: str) -> str:
        return b"".join(chunks[name]).decode(errors="replace")

    deadline = time.monotonic() + TIMEOUT_S
    signalled = False
    if send is not None:
        pattern = re.compile(after)
        while proc.poll() is None and time.monotonic() < deadline:
            if pattern.search(text("stderr")) or pattern.search(text("stdout")):
                proc.send_signal(send)
                signalled = True
                break
            time.sleep(0.05)
    try:
        proc.wait(max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for reader in readers:
        reader.join(10)
    return _Run(proc.returncode, text("stdout"), text("stderr"), signalled)


def _cli(*args: str) -> list[str]:
    return [str(ROOT / "main.py"), *args]


def _exit_problem(run: _Run, codes: tuple[int, ...]) -> str | None:
    """Why a command's exit is not a clean one with a one-line message, or None."""
    if run.returncode not in codes:
        expected = " or ".join(map(str, codes))
        return f"exit code {run.returncode}, expected {expected}: {_last_line(run.stderr)!r}"
    if "Traceback" in run.stderr:
        return f"a traceback on stderr: {_last_line(run.stderr)!r}"
    if run.returncode and not _last_line(run.stderr).startswith("sluice:"):
        return f"no one-line message at the end of stderr (last line {_last_line(run.stderr)!r})"
    return None


def _good_video(path: Path) -> None:
    """A short valid mp4 or gif, the 'good file' a failed recording must leave alone."""
    import imageio.v3 as iio

    frames = np.zeros((4, 32, 48, 3), np.uint8)
    frames[:, 8:24, 8:40, 2] = 200
    if path.suffix == ".gif":
        iio.imwrite(path, frames, extension=".gif", duration=100, loop=0)
    else:
        iio.imwrite(path, frames, extension=".mp4", fps=10, codec="libx264", macro_block_size=16)


def _video_frames(path: Path) -> int:
    import imageio.v3 as iio

    return int(iio.imread(path, index=None).shape[0])


def _good_npz(path: Path) -> None:
    np.savez(path, x=np.zeros((2, 3, 2), np.float32))


def _npz_ok(path: Path, key: str) -> bool:
    try:
        with np.load(path, allow_pickle=False) as data:
            return key in data.files and data[key].size > 0
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------------- stepper weights
def _stepper_refuses(work: Path, path: Path, expect: str) -> tuple[bool, str]:
    """The stepper comes up numerical with a one-line reason that names the fault (`expect`)."""
    from neural.catalog import make_stepper
    from neural.stepper import NumericalStepper
    from sim.scene import load_scene

    scene = load_scene(_scene_file(work))
    stepper, message = make_stepper("hybrid", scene, str(path))
    if not isinstance(stepper, NumericalStepper):
        return False, f"ran {stepper.name} on them: {message}"
    if not _one_line(message) or expect not in message:
        return False, f"numerical, but the reason does not say {expect!r}: {message!r}"
    return True, message


def _good_weights_run(work: Path) -> tuple[bool, str]:
    """The control: an intact copy runs hybrid, so a refusal below is the fault's doing."""
    from neural.catalog import make_stepper
    from neural.stepper import HybridStepper
    from sim.scene import load_scene

    path = _copy_weights(STEPPER, work / "weights", "intact")
    stepper, message = make_stepper("hybrid", load_scene(_scene_file(work)), str(path))
    return isinstance(stepper, HybridStepper), message


def stepper_truncated(work: Path) -> tuple[bool, str]:
    return _stepper_refuses(work, _copy_weights(STEPPER, work, "truncated", _truncate), "corrupt")


def stepper_corrupted(work: Path) -> tuple[bool, str]:
    return _stepper_refuses(work, _copy_weights(STEPPER, work, "corrupted", _corrupt_middle), "corrupt")


def stepper_nan(work: Path) -> tuple[bool, str]:
    return _stepper_refuses(work, _nan_weights(STEPPER, work, "nan"), "non-finite")


def stepper_other_family(work: Path) -> tuple[bool, str]:
    """3D sand weights for a 2D water scene."""
    return _stepper_refuses(work, MODELS / "sand3d.safetensors", "3D")


def stepper_given_control(work: Path) -> tuple[bool, str]:
    """The sketch controller's file given as stepper weights."""
    return _stepper_refuses(work, CONTROLLER, "metadata")


def stepper_metadata_missing(work: Path) -> tuple[bool, str]:
    path = _copy_weights(STEPPER, work, "no_metadata")
    path.with_suffix(".json").unlink()
    return _stepper_refuses(work, path, "metadata")


def stepper_metadata_garbled(work: Path) -> tuple[bool, str]:
    path = _copy_weights(STEPPER, work, "garbled_metadata")
    text = path.with_suffix(".json").read_text()
    path.with_suffix(".json").write_text(text[: len(text) // 2])
    return _stepper_refuses(work, path, "metadata")


def stepper_metadata_wrong_values(work: Path) -> tuple[bool, str]:
    """Valid JSON whose spec has values of the wrong kind (they would fail deep inside a frame)."""
    path = _copy_weights(STEPPER, work, "wrong_values")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["spec"].update(h="1/128", frame_dt=None)
    path.with_suffix(".json").write_text(json.dumps(meta))
    return _stepper_refuses(work, path, "metadata")


def stepper_catalog_garbled(work: Path) -> tuple[bool, str]:
    """A weights folder holding one pair with garbled metadata: the choice skips it, and takes the intact
    pair beside it."""
    from neural.catalog import choose_weights
    from sim.scene import load_scene

    folder = work / "models"
    _copy_weights(STEPPER, folder, "water2d")
    garbled = _copy_weights(STEPPER, folder, "a_garbled")
    meta = json.loads(garbled.with_suffix(".json").read_text())
    meta["spec"]["frame_dt"] = "1/60"
    garbled.with_suffix(".json").write_text(json.dumps(meta))
    choice = choose_weights(load_scene(_scene_file(work)), folder)
    if choice.path is None or choice.path.stem != "water2d":
        return False, f"chose {choice.path}: {choice.reason}"
    return True, choice.reason


def cli_bad_model(work: Path) -> tuple[bool, str]:
    """`simulate --model` with NaN weights: a numerical run with the reason, or a one-line refusal."""
    path = _nan_weights(STEPPER, work, "nan")
    out = work / "traj.npz"
    run = _run(_cli("simulate", "--scene", str(_scene_file(work)), "--frames", "2", "--model", str(path),
                    "--out", str(out), "--arch", "cpu"))  # fmt: skip
    problem = _exit_problem(run, (0, 2))
    if problem:
        return False, problem
    if run.returncode == 0 and not ("numerical" in run.stderr and "non-finite" in run.stderr):
        return False, "exit 0 without saying it ran numerically and why"
    if run.returncode == 0 and not _npz_ok(out, "x"):
        return False, "exit 0 but no readable trajectory"
    reason = next((line for line in run.stderr.splitlines() if "stepper:" in line), _last_line(run.stderr))
    return True, f"exit {run.returncode}: {reason.strip()}"


# ---------------------------------------------------------------------------------- control weights
def _controller_refuses(work: Path, path: Path, expect: str) -> tuple[bool, str]:
    from control.controller import load_for_scene
    from sim.scene import load_scene

    controller, message = load_for_scene(load_scene(_scene_file(work)), str(path))
    if controller is not None:
        return False, f"loaded a controller: {message}"
    if not _one_line(message) or expect not in message:
        return False, f"no controller, but the reason does not say {expect!r}: {message!r}"
    return True, message


def control_truncated(work: Path) -> tuple[bool, str]:
    return _controller_refuses(work, _copy_weights(CONTROLLER, work, "truncated", _truncate), "corrupt")


def control_corrupted(work: Path) -> tuple[bool, str]:
    return _controller_refuses(work, _copy_weights(CONTROLLER, work, "corrupted", _corrupt_middle), "corrupt")


def control_nan(work: Path) -> tuple[bool, str]:
    return _controller_refuses(work, _nan_weights(CONTROLLER, work, "nan", control=True), "non-finite")


def control_given_stepper(work: Path) -> tuple[bool, str]:
    return _controller_refuses(work, STEPPER, "metadata")


def cli_bad_control_model(work: Path) -> tuple[bool, str]:
    """`record --control-model` with a truncated controller and a sketch in the script: the recording
    finishes without control and says why."""
    path = _copy_weights(CONTROLLER, work, "truncated", _truncate)
    script = work / "sketch.toml"
    script.write_text('[[action]]\nframe = 1\ntype = "sketch"\nstrokes = [[[0.05, 0.1], [0.3, 0.1]]]\n')
    out = work / "out.gif"
    run = _run(_cli("record", "--scene", str(_scene_file(work)), "--frames", "3", "--size", "64x48",
                    "--script", str(script), "--control-model", str(path), "--out", str(out),
                    "--arch", "cpu"))  # fmt: skip
    problem = _exit_problem(run, (0,))
    if problem:
        return False, problem
    reason = next((line for line in run.stdout.splitlines() if "sketch control unavailable" in line), None)
    if reason is None or "corrupt" not in reason:
        return False, f"no reason for the missing control in the output: {run.stdout[-300:]!r}"
    if _video_frames(out) != 3:
        return False, "the recording does not hold its 3 frames"
    return True, reason.strip()


# ---------------------------------------------------------------------------------- output folders
def _unwritable_folder(work: Path) -> tuple[Path, str]:
    """A folder the commands cannot write into. chmod does not stop root, so root gets /sys (which the
    access check passes but creating a file in fails) instead."""
    if os.geteuid() == 0:
        return Path("/sys"), "/sys (running as root: chmod would not stop the writes)"
    folder = work / "readonly"
    folder.mkdir()
    return folder, f"{folder} (mode 0500)"


def _after_unwritable(work: Path, command: list[str], target: Path, make_good) -> tuple[bool, str]:
    folder, how = _unwritable_folder(work)
    good = None
    if folder.parent == work:
        make_good(folder / target.name)
        good = _digest(folder / target.name)
        folder.chmod(0o500)
    out = folder / target.name
    try:
        run = _run(_cli(*command, "--out", str(out), "--arch", "cpu"))
    finally:
        if folder.parent == work:
            folder.chmod(0o700)
    problem = _exit_problem(run, (2,))
    if problem:
        return False, f"{how}: {problem}"
    if good is not None and _digest(out) != good:
        return False, f"{how}: the good file there was changed"
    if good is not None and _leftovers(folder, out):
        return False, f"{how}: left {_leftovers(folder, out)}"
    return True, f"{how}: {_last_line(run.stderr)}"


def output_unwritable_record(work: Path) -> tuple[bool, str]:
    command = ["record", "--scene", str(_scene_file(work)), "--frames", "3", "--size", "64x48"]
    return _after_unwritable(work, command, Path("out.mp4"), _good_video)


def output_unwritable_simulate(work: Path) -> tuple[bool, str]:
    command = ["simulate", "--scene", str(_scene_file(work)), "--frames", "2"]
    return _after_unwritable(work, command, Path("traj.npz"), _good_npz)


def output_under_a_file(work: Path) -> tuple[bool, str]:
    """An output path whose folder is a regular file."""
    blocker = work / "not_a_folder"
    blocker.write_text("a file")
    run = _run(_cli("record", "--scene", str(_scene_file(work)), "--frames", "3",
                    "--out", str(blocker / "out.mp4"), "--arch", "cpu"))  # fmt: skip
    problem = _exit_problem(run, (2,))
    return (False, problem) if problem else (True, _last_line(run.stderr))


def _full_disk(work: Path, command: list[str], out: Path, make_good, limit: int) -> tuple[bool, str]:
    """The command with a per-file size limit far below what it writes, over a good file: it must fail
    with a one-line message and leave the good file as it was, with no temporary file beside it."""
    make_good(out)
    good = _digest(out)
    run = _run(_cli(*command, "--out", str(out), "--arch", "cpu"), file_limit=limit)
    problem = _exit_problem(run, (1, 2))
    if problem:
        return False, problem
    if _digest(out) != good:
        return False, f"the good {out.name} was replaced (now {out.stat().st_size} bytes)"
    if _leftovers(out.parent, out):
        return False, f"left {_leftovers(out.parent, out)}"
    return True, _last_line(run.stderr)


def output_full_record_mp4(work: Path) -> tuple[bool, str]:
    command = ["record", "--scene", str(_scene_file(work)), "--frames", "6", "--size", "160x96"]
    return _full_disk(work, command, work / "good.mp4", _good_video, 1024)


def output_full_record_gif(work: Path) -> tuple[bool, str]:
    command = ["record", "--scene", str(_scene_file(work)), "--frames", "3", "--size", "160x96"]
    return _full_disk(work, command, work / "good.gif", _good_video, 1024)


def output_full_simulate(work: Path) -> tuple[bool, str]:
    command = ["simulate", "--scene", str(_scene_file(work)), "--frames", "2"]
    return _full_disk(work, command, work / "good.npz", _good_npz, 1024)


# ------------------------------------------------------------------------------------------ signals
def _interrupted(work: Path, sig: signal.Signals, command: list[str], out: Path, check) -> tuple[bool, str]:
    """Signal a long run once its first frame is done: it must finish a valid file with the frames so
    far, say so in one line and exit 130, leaving no temporary file."""
    run = _run(_cli(*command, "--out", str(out), "--arch", "cpu"), send=sig)
    if not run.signalled:
        return False, f"the run ended before the signal: {_last_line(run.stderr)!r}"
    problem = _exit_problem(run, (130,))
    if problem:
        return False, problem
    if _leftovers(out.parent, out):
        return False, f"left {_leftovers(out.parent, out)}"
    ok, detail = check(out)
    return ok, f"{_last_line(run.stderr)}; {detail}"


def _record_on(work: Path, sig: signal.Signals) -> tuple[bool, str]:
    out = work / "good.mp4"
    _good_video(out)

    def check(path: Path) -> tuple[bool, str]:
        import imageio.v3 as iio

        frames = _video_frames(path)
        # the new recording (160x96), not the 48x32 good file left in place
        new = frames >= 1 and iio.imread(path, index=0).shape[:2] == (96, 160)
        return new, f"{path.name} reads back with {frames} frames of the new recording"

    command = ["record", "--scene", str(_scene_file(work)), "--frames", "100000", "--size", "160x96"]
    return _interrupted(work, sig, command, out, check)


def _simulate_on(work: Path, sig: signal.Signals) -> tuple[bool, str]:
    out = work / "traj.npz"
    _good_npz(out)

    def check(path: Path) -> tuple[bool, str]:
        with np.load(path, allow_pickle=False) as data:
            frames = int(data["x"].shape[0]) - 1
            ok = "summary" in data.files and frames >= 1 and np.isfinite(data["x"][0]).all()
        return ok, f"{path.name} holds {frames} frames"

    command = ["simulate", "--scene", str(_scene_file(work)), "--frames", "100000"]
    return _interrupted(work, sig, command, out, check)


# A program that saves a Session's state over and over into one file, as the window's Save does.
SAVE_LOOP = """
import sys
from sim.arch import init_taichi
from app.session import Session

init_taichi("cpu", quiet=True)
session = Session(sys.argv[1])
session.tick()
target = sys.argv[2]
session.save(target)
print("saving", flush=True)
try:
    while True:
        session.save(target)
except KeyboardInterrupt:
    print("sluice: interrupted while saving", file=sys.stderr)
    sys.exit(130)
"""


def _save_on(work: Path, sig: signal.Signals) -> tuple[bool, str]:
    """Signal a process in the middle of saving states: the file must read back as a state, with no
    temporary file beside it. SIGINT ends the program with its message (130); SIGTERM ends it as SIGTERM
    does, after removing the temporary file."""
    from sim import state as state_io

    program = work / "save_loop.py"
    program.write_text(textwrap.dedent(SAVE_LOOP))
    # dam_break: 8192 particles, a state file large enough that the signal lands inside a write.
    out = work / "state.npz"
    run = _run([str(program), "dam_break", str(out)], send=sig, after="saving")
    expected = 130 if sig == signal.SIGINT else -signal.SIGTERM
    if not run.signalled:
        return False, f"the program ended before the signal: {_last_line(run.stderr)!r}"
    if run.returncode != expected or "Traceback" in run.stderr:
        return False, f"exit {run.returncode} (expected {expected}): {_last_line(run.stderr)!r}"
    if _leftovers(work, out):
        return False, f"left {_leftovers(work, out)}"
    try:
        meta, snap = state_io.read(out)
    except state_io.StateFileError as e:
        return False, f"the state file does not read back: {e}"
    return True, f"exit {run.returncode}; {out.name} reads back (frame {snap.frame}), no temporary file"


def sigint_record(work: Path) -> tuple[bool, str]:
    return _record_on(work, signal.SIGINT)


def sigterm_record(work: Path) -> tuple[bool, str]:
    return _record_on(work, signal.SIGTERM)


def sigint_simulate(work: Path) -> tuple[bool, str]:
    return _simulate_on(work, signal.SIGINT)


def sigterm_simulate(work: Path) -> tuple[bool, str]:
    return _simulate_on(work, signal.SIGTERM)


def sigint_save(work: Path) -> tuple[bool, str]:
    return _save_on(work, signal.SIGINT)


def sigterm_save(work: Path) -> tuple[bool, str]:
    return _save_on(work, signal.SIGTERM)


# -------------------------------------------------------------------------------------- state files
def _fingerprint(session) -> tuple:
    p = session.solver.particles()
    return (session.frame, session.solver.time, session.solver.n, p["x"].tobytes(), p["v"].tobytes(),
            tuple(session.solver.slots), len(session.solver.colliders))  # fmt: skip


def _load_refused(session, path: Path, expect: str) -> tuple[bool, str]:
    """Session.load raises StateFileError with a one-line reason, and the session is as it was."""
    from sim.state import StateFileError

    before = _fingerprint(session)
    try:
        session.load(path)
    except StateFileError as e:
        message = str(e)
    else:
        return False, "loaded it"
    if _fingerprint(session) != before:
        return False, f"refused ({message}) but the state changed"
    if not _one_line(message) or expect not in message:
        return False, f"refused, but the reason does not say {expect!r}: {message!r}"
    return True, message


def _with_session(work: Path, body) -> tuple[bool, str]:
    """body(session, good_state_path) on a small scene that has run a frame."""
    from app.session import Session

    session = Session(_scene_file(work))
    try:
        session.tick()
        good = session.save(work / "good.npz")
        session.tick()
        return body(session, good)
    finally:
        session.close()


def _edited_state(good: Path, out: Path, edit) -> Path:
    """A copy of a state file with its arrays (a dict, meta as a dict) changed by edit()."""
    with np.load(good, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    edit(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(out, **arrays)
    return out


def state_other_version(work: Path) -> tuple[bool, str]:
    def body(session, good):
        path = _edited_state(good, work / "v99.npz", lambda arrays, meta: meta.update(version=99))
        return _load_refused(session, path, "version")

    return _with_session(work, body)


def _into_other_scene(work: Path, text: str, name: str) -> tuple[bool, str]:
    """A state saved in the small scene, loaded into the scene of `text`."""
    from app.session import Session

    def body(session, good):
        other = Session(_scene_file(work, text, name))
        try:
            return _load_refused(other, good, "saved for")
        finally:
            other.close()

    return _with_session(work, body)


def state_other_scene(work: Path) -> tuple[bool, str]:
    """Another scene, of a different size."""
    return _into_other_scene(work, OTHER_2D, "fault_tank.toml")


def state_other_dimension(work: Path) -> tuple[bool, str]:
    """A 3D scene."""
    return _into_other_scene(work, SMALL_3D, "fault_dam_3d.toml")


def state_truncated(work: Path) -> tuple[bool, str]:
    def body(session, good):
        path = work / "truncated.npz"
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return _load_refused(session, path, "not a readable")

    return _with_session(work, body)


def state_not_npz(work: Path) -> tuple[bool, str]:
    def body(session, good):
        path = work / "scene.npz"
        path.write_text(SMALL_2D)
        return _load_refused(session, path, "not a readable")

    return _with_session(work, body)


def state_garbled_meta(work: Path) -> tuple[bool, str]:
    def body(session, good):
        path = _edited_state(good, work / "garbled.npz", lambda arrays, meta: meta.pop("slots"))
        return _load_refused(session, path, "garbled")

    return _with_session(work, body)


def state_bad_arrays(work: Path) -> tuple[bool, str]:
    """Particle arrays that disagree in length, and positions that are NaN: the solver would read past
    the end of one, and blow up on the other."""

    def short(arrays, meta):
        arrays["particle_v"] = arrays["particle_v"][:-5]

    def nan(arrays, meta):
        arrays["particle_x"] = np.full_like(arrays["particle_x"], np.nan)

    def body(session, good):
        details = []
        for name, edit in (("short", short), ("nan", nan)):
            ok, detail = _load_refused(session, _edited_state(good, work / f"{name}.npz", edit), "garbled")
            if not ok:
                return False, f"{name}: {detail}"
            details.append(detail)
        return True, "; ".join(details)

    return _with_session(work, body)


# ------------------------------------------------------------------------------------------ running
FAULTS: list[tuple[Fault, bool]] = [  # (fault, in the quick subset)
    (stepper_truncated, True),
    (stepper_corrupted, True),
    (stepper_nan, True),
    (stepper_other_family, True),
    (stepper_given_control, True),
    (stepper_metadata_missing, False),
    (stepper_metadata_garbled, True),
    (stepper_metadata_wrong_values, True),
    (stepper_catalog_garbled, False),
    (cli_bad_model, False),
    (control_truncated, True),
    (control_corrupted, False),
    (control_nan, False),
    (control_given_stepper, True),
    (cli_bad_control_model, False),
    (output_unwritable_record, False),
    (output_unwritable_simulate, False),
    (output_under_a_file, False),
    (output_full_record_mp4, False),
    (output_full_record_gif, False),
    (output_full_simulate, False),
    (sigint_record, False),
    (sigterm_record, False),
    (sigint_simulate, False),
    (sigterm_simulate, False),
    (sigint_save, False),
    (sigterm_save, False),
    (state_other_version, True),
    (state_other_scene, True),
    (state_other_dimension, False),
    (state_truncated, True),
    (state_not_npz, True),
    (state_garbled_meta, True),
    (state_bad_arrays, True),
]


def run_one(fault: Fault, workdir: Path) -> FaultResult:
    work = Path(workdir) / fault.__name__
    work.mkdir(parents=True, exist_ok=True)
    try:
        survived, detail = fault(work)
    except Exception as e:  # the fault escaped the product: that is the finding, not a crash of the run
        where = traceback.extract_tb(e.__traceback__)[-1]
        survived, detail = False, f"{type(e).__name__}: {e} (at {Path(where.filename).name}:{where.lineno})"
    return FaultResult(fault.__name__, bool(survived), " ".join(str(detail).split()))


def run_faults(workdir: Path, quick: bool = False) -> list[FaultResult]:
    """Inject every fault (quick: the fixed subset marked above, all in this process) under
    `workdir` and report which the product survived. Starts Taichi on the CPU if nothing has yet."""
    from sim.arch import active_arch, init_taichi

    if active_arch() is None:
        init_taichi("cpu", quiet=True)
    results = []
    ok, detail = _good_weights_run(Path(workdir) / "control")
    if not ok:  # the faults below would be refused for the wrong reason
        results.append(FaultResult("intact_weights_run_hybrid", False, detail))
    for fault, in_quick in FAULTS:
        if in_quick or not quick:
            results.append(run_one(fault, workdir))
    return results
