"""sluice: one command line for the app, simulation, recording, benchmarks and training."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from sim.arch import BackendError
    from sim.scene import SceneError
    from sim.solver import CapacityError, NonFiniteError
    from sim.state import StateFileError

    errors = [UserError, SceneError, BackendError, StateFileError, CapacityError, NonFiniteError, OSError]
    if "app.record" in sys.modules:
        from app.record import RecordError
        from app.script import ScriptError

        errors += [RecordError, ScriptError]
    return tuple(errors)


def cmd_scenes(args: argparse.Namespace) -> int:
    from sim.scene import builtin_scenes, load_scene

    for name in builtin_scenes():
        scene = load_scene(name)
        print(f"{name:14s} {scene.dim}D  {scene.description}")
    return 0


def _stepper(args: argparse.Namespace, scene):
    """The stepper --mode asks for; weights that are missing or do not fit mean numerical, said once."""
    from neural.catalog import make_stepper

    stepper, message = make_stepper(args.mode, scene, args.model)
    print(f"[sluice] stepper: {message}", file=sys.stderr)
    return stepper


def _add_mode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=["auto", "numerical", "neural", "hybrid"],
        default="auto",
        help="auto (default): hybrid where shipped weights fit the scene, numerical elsewhere",
    )
    p.add_argument(
        "--model", default=None, help="weights NAME (in assets/models) or PATH; default: the best fit"
    )


def _add_device_option(p: argparse.ArgumentParser, dest: str = "device") -> None:
    from neural.device import DEVICE_CHOICES

    p.add_argument(
        "--device",
        dest=dest,
        choices=DEVICE_CHOICES,
        default="auto",
        help="torch device of the networks (auto: CUDA when Taichi runs on CUDA and torch sees a GPU)",
    )


def _start_device(choice: str, arch: str) -> None:
    """The networks' torch device (neural.device); a device that is not there is a one-line error."""
    from neural.device import DeviceError, set_device

    try:
        set_device(choice, arch)
    except DeviceError as e:
        raise UserError(str(e)) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from sim.arch import init_taichi
    from sim.scene import load_scene
    from sim.trajectory import check_writable, simulate

    if args.frames < 1:
        raise UserError("--frames must be at least 1")
    scene = load_scene(args.scene, {"seed": args.seed} if args.seed is not None else None)
    check_writable(args.out)
    _start_device(args.device, init_taichi(args.arch))
    stepper = _stepper(args, scene)
    try:
        summary = simulate(scene, args.frames, args.out, advance=stepper.advance)
    except KeyboardInterrupt:
        print(f"sluice: interrupted; the frames finished so far are in {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"wrote {args.out}: {summary['frames']} frames, {summary['particles']} particles, "
        f"clamps {summary['clamps']}; learned share {summary['learned_share']:.0%}, "
        f"{summary['mean_ms']:.1f} ms per frame"
    )
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from app.record import output_kind, parse_size, record
    from sim.arch import init_taichi

    parse_size(args.size)
    output_kind(args.out)  # an unwritable output fails before any simulation
    _start_device(args.device, init_taichi(args.arch))
    result = record(
        args.scene,
        args.frames,
        args.out,
        size=args.size,
        fps=args.fps,
        color=args.color,
        script=args.script,
        seed=args.seed,
        mode=args.mode,
        model=args.model,
        control_model=args.control_model,
        orbit=args.orbit,
    )
    if result.interrupted:
        print(f"sluice: interrupted after {result.frames} frames; {args.out} holds them", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.error:
        print(
            f"sluice: simulation failed: {result.error}; {args.out} keeps the {result.frames} frames before",
            file=sys.stderr,
        )
        return 1
    print(
        f"wrote {args.out}: {result.frames} frames; learned share {result.learned_share:.0%}, "
        f"{result.mean_ms:.1f} ms per simulated frame"
    )
    return 0


def cmd_datagen(args: argparse.Namespace) -> int:
    from neural.data import DatagenConfig, datagen
    from neural.families import FAMILY_DIM

    if args.family not in FAMILY_DIM:
        raise UserError(f"unknown family {args.family!r}; choose one of {', '.join(FAMILY_DIM)}")
    if args.trajectories < 1 or args.frames < 2 or args.workers < 1:
        raise UserError("--trajectories and --workers must be at least 1, --frames at least 2")
    shards = datagen(
        DatagenConfig(args.family, args.trajectories, args.frames, args.out, args.seed, args.workers)
    )
    print(f"{len(shards)} shards in {args.out}")
    return 0


def cmd_datagen_control(args: argparse.Namespace) -> int:
    from control.data import KINDS, ControlDatagenConfig, datagen_control, replay_report

    if args.kind not in KINDS:
        raise UserError(f"unknown label kind {args.kind!r}; choose one of {', '.join(KINDS)}")
    if args.states < 1 or args.replay < 0:
        raise UserError("--states must be at least 1 and --replay at least 0")
    out = args.out or Path("data") / "control" / f"{args.family}_{args.kind}"
    shards = datagen_control(ControlDatagenConfig(args.family, args.states, out, args.kind, args.seed))
    print(f"{len(shards)} shards in {out}")
    if args.replay:
        report = replay_report(shards[: args.replay])
        print(json.dumps(report))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from neural.train import TrainConfig, train

    data = args.data or Path("data") / args.family
    out = args.out or Path("assets") / "models" / f"{args.family}.safetensors"
    run_dir = args.run_dir or Path("runs") / args.family
    if not data.is_dir():
        raise UserError(f"{data}: no dataset; run `python main.py datagen --family {args.family} ...` first")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        args.family,
        data,
        out,
        run_dir,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        resume=args.resume,
        max_trajectories=args.max_trajectories,
        pushforward_after=args.pushforward_after,
        pushforward_share=args.pushforward_share,
        pushforward_frames=args.pushforward_frames,
        early_share=args.early_share,
        rollout_frames=args.rollout_frames,
        rollout_picks=args.rollout_picks,
        rollout_weight=args.rollout_weight,
        init=args.init,
        sliding_prior=args.sliding_prior,
    )
    from neural.model import WeightsError

    try:
        result = train(cfg)
    except (WeightsError, FloatingPointError) as e:  # bad --init weights; a diverged loss
        raise UserError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes
        print(f"wrote {out}: {result}")
    return 0


def cmd_train_control(args: argparse.Namespace) -> int:
    from control.train import ControlTrainConfig, train_control

    data = args.data or Path("data") / "control" / f"{args.family}_physical"
    out = args.out or Path("assets") / "control" / f"{args.family}.safetensors"
    run_dir = args.run_dir or Path("runs") / "control" / args.family
    if not data.is_dir():
        raise UserError(
            f"{data}: no dataset; run `python main.py datagen-control --family {args.family}` first"
        )
    if args.steps < 1 or args.batch < 1:
        raise UserError("--steps and --batch must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = ControlTrainConfig(
        args.family, data, out, run_dir, steps=args.steps, batch=args.batch, lr=args.lr, resume=args.resume
    )
    print(f"wrote {out}: {train_control(cfg)}")
    return 0


def _weights_path(family: str, model: str | None) -> Path:
    path = Path(model) if model else Path("assets") / "models" / f"{family}.safetensors"
    if not path.is_file():
        raise UserError(f"{path}: no weights; train them with `python main.py train --family {family}`")
    return path


def cmd_calibrate(args: argparse.Namespace) -> int:
    from neural.evaluate import calibrate
    from sim.arch import init_taichi

    init_taichi("cpu")
    result = calibrate(
        args.family, _weights_path(args.family, args.model), args.rollouts, args.frames, args.grid
    )
    print(json.dumps(result["thresholds"], indent=1))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.what == "control":
        if not args.family:
            raise UserError("eval control needs --family")
        return _eval_control(args)
    if not args.family:
        return _eval_scenes(args)
    from neural.evaluate import evaluate
    from sim.arch import init_taichi
    from sim.bench import print_table, record, write_json

    init_taichi("cpu")
    report = evaluate(
        args.family,
        _weights_path(args.family, args.model),
        args.rollouts,
        args.frames or 100,
        plots=Path("docs") / "eval",
    )
    records = [record(f"eval.{args.family}.{k}.mass_rmse", v, "") for k, v in report["mass_rmse"].items()]
    records += [
        record(f"eval.{args.family}.{k}.ms_per_frame", v, "ms") for k, v in report["ms_per_frame"].items()
    ]
    records += [record(f"eval.{args.family}.fallback_rate", report["fallback_rate"], "")]
    records += [
        record(f"eval.{args.family}.guard.{k}", report["guard"][k], "") for k in ("precision", "recall")
    ]
    records += [
        record(f"eval.{args.family}.cosine_trigger.{k}", v, "") for k, v in report["cosine_trigger"].items()
    ]
    print_table(records)
    if args.json:
        write_json(records, args.json)
        Path(args.json).with_suffix(f".{args.family}.report.json").write_text(
            json.dumps(report, indent=1) + "\n"
        )
    return 0


def _eval_scenes(args: argparse.Namespace) -> int:
    """The hybrid on app scenes against the solver and fixed coarse grids, with a frame sheet each."""
    from neural.bench import scene_records
    from neural.scene_eval import APP_SCENES, evaluate_scene, guard_records
    from sim.arch import init_taichi
    from sim.bench import print_table, record, write_json

    names = args.scene or list(APP_SCENES)
    unknown = [n for n in names if n not in APP_SCENES]
    if unknown:
        raise UserError(f"no weights ship for {', '.join(unknown)}; choose from {', '.join(APP_SCENES)}")
    init_taichi("cpu")
    records, results = [], []
    for name in names:
        # other weights than the shipped ones get their own sheet, named after the weights' file
        tag = f"_{Path(args.model).stem}" if args.model else ""
        sheet = Path("docs") / "eval" / f"{name}{tag}_sheet.png"
        result = evaluate_scene(name, frames=max(args.frames or 120, 1), sheet=sheet, model=args.model)
        print(f"wrote {sheet}")
        results.append(result)
        records += scene_records(result, "eval")
    precision, recall, needed = guard_records(results)
    records += [
        record("eval.guard.precision", precision, "", needed_share=needed),
        record("eval.guard.recall", recall, ""),
    ]
    print_table(records)
    if args.json:
        write_json(records, args.json)
    return 0


def _eval_control(args: argparse.Namespace) -> int:
    from control.controller import choose_controller
    from control.evaluate import Budget, evaluate_control, load_cases
    from neural.families import FAMILY_DIM
    from sim.arch import init_taichi
    from sim.bench import print_table, record, write_json

    if args.family not in FAMILY_DIM:
        raise UserError(f"unknown family {args.family!r}; choose one of {', '.join(FAMILY_DIM)}")
    path = Path(args.model) if args.model else Path("assets") / "control" / f"{args.family}.safetensors"
    if args.model and path.suffix != ".safetensors":
        path = choose_controller(None, args.model).path
    if not path.is_file():
        raise UserError(
            f"{path}: no weights; train them with `python main.py train-control --family {args.family}`"
        )
    cases = load_cases(args.cases) if args.cases else None
    init_taichi("cpu")
    import torch

    torch.set_num_threads(1)  # plans and solver take turns; torch's threads would only spin against Taichi
    budget = Budget.for_dim(FAMILY_DIM[args.family], args.oracle_iterations)
    summary, results = evaluate_control(
        args.family,
        path,
        cases,
        generated=args.generated,
        drawn=args.drawn,
        budget=budget,
        plots=Path("docs") / "eval",
        candidates=None if args.candidates is None else max(1, args.candidates),
        plant=args.plant,
    )
    f = args.family if args.plant == "solver" else f"{args.family}.hybrid_plant"
    records = [
        record(f"control.{f}.score.{m}", summary[m]["score"], "")
        for m in ("none", "constant", "ours", "oracle")
    ]
    records += [
        record(
            f"control.{f}.vs_constant.error_ratio", summary["vs_constant_error_ratio"], "x", target="<= 0.7"
        ),
        record(
            f"control.{f}.vs_oracle.improvement_share",
            summary["vs_oracle_improvement_share"],
            "x",
            target=">= 0.8",
        ),
        record(f"control.{f}.plan_ms", summary["plan_ms"]["mean"], "ms", target="<= 50"),
        record(f"control.{f}.oracle.seconds_per_case", summary["oracle"]["seconds"], "s"),
        record(f"control.{f}.constant.seconds_per_case", summary["constant"]["seconds"], "s"),
    ]
    for kind, key in (("path", "centroid_error"), ("region", "inside_fraction")):
        for method, value in summary.get(kind, {}).items():
            records.append(record(f"control.{f}.{kind}.{key}.{method}", value, "m" if kind == "path" else ""))
    records += [
        record(f"control.{f}.spray.{m}", summary[m]["spray"], "", note="mass share in isolated cells")
        for m in ("none", "constant", "ours", "oracle")
        if m in summary
    ]
    print_table(records)
    for skipped in summary["skipped"]:
        print(f"skipped {skipped['name']}: {skipped['skipped']}")
    if args.json:
        write_json(records, args.json)
        Path(args.json).with_suffix(f".control_{f}.report.json").write_text(
            json.dumps({"summary": summary, "cases": results}, indent=1, default=str) + "\n"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from sim.arch import init_taichi
    from sim.bench import run_benchmarks

    if args.suite == "render":
        from app.bench import render_records as suite
    elif args.suite == "gui":
        from app.gui.bench import gui_records as suite
    elif args.suite == "neural":
        from neural.bench import neural_records as suite
    elif args.suite == "neural2d":
        from neural.bench import neural2d_records as suite
    elif args.suite == "neural3d":
        from neural.bench import neural3d_records as suite
    elif args.suite == "control":
        from control.bench import control_records as suite
    elif args.suite == "control3d":
        from control.bench import control3d_records as suite
    elif args.suite == "reliability":
        from app.reliability import reliability_records as suite
    else:
        from sim.bench import sim_records as suite
    arch = init_taichi(args.arch)
    _start_device(args.device, arch)
    run_benchmarks(suite, args.json, arch=arch, quick=args.quick)
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from app.fuzz import print_report, run_fuzz

    if args.cases < 1 or args.workers < 1 or args.first < 0:
        raise UserError("--cases and --workers must be at least 1, --first at least 0")
    report = run_fuzz(args.cases, args.seed, args.out, args.first, args.workers, args.arch)
    print_report(report, args.out)
    return 1 if report.failures else 0


def cmd_soak(args: argparse.Namespace) -> int:
    from app.soak import soak
    from sim.arch import init_taichi

    if args.frames < 2:
        raise UserError("--frames must be at least 2")
    init_taichi(args.arch)
    r = soak(args.scene, args.frames, args.mode, args.model)
    print(
        f"soak {r.scene} ({r.mode}): {r.frames} frames after a warm-up cycle, learned share "
        f"{r.learned_share:.0%}; resident memory {r.rss_after_warmup / 2**20:.0f} -> "
        f"{r.rss_end / 2**20:.0f} MB "
        f"(growth {r.rss_growth_mb:+.1f} MB, peak {r.rss_peak / 2**20:.0f} MB); the last {r.window} frames "
        f"against the first: wall time x{r.slowdown_ratio:.3f} (each frame at its best), CPU time "
        f"x{r.cpu_slowdown_ratio:.3f}, plain mean wall time x{r.mean_wall_slowdown_ratio:.3f}"
    )
    return EXIT_INTERRUPTED if r.interrupted else 0


HEADLESS_FRAMES = 180


def cmd_gui(args: argparse.Namespace) -> int:
    """The window; where no display exists, a headless recording of the same scene instead."""
    from app.gui.launch import NoDisplayError, run_gui

    try:
        return run_gui(args.gui_scene, args.gui_arch, args.gui_device)
    except NoDisplayError as e:
        import subprocess

        scene = args.gui_scene or "dam_break"
        out = Path(f"{Path(scene).stem}.mp4")
        print(
            f"sluice: {e}; recording {HEADLESS_FRAMES} frames of {scene} headless to {out} instead",
            file=sys.stderr,
        )
        # A fresh process: the headless recorder must choose PyOpenGL's platform before anything imports it.
        command = [
            sys.executable,
            __file__,
            "record",
            "--scene",
            scene,
            "--frames",
            str(HEADLESS_FRAMES),
            "--out",
            str(out),
            "--arch",
            args.gui_arch or "auto",
            "--device",
            args.gui_device,
        ]
        return subprocess.call(command)


def cmd_screenshot(args: argparse.Namespace) -> int:
    from app.gui.launch import NoDisplayError, save_window_screenshot

    if args.frames < 0:
        raise UserError("--frames must not be negative")
    try:
        out = save_window_screenshot(args.out, args.scene, args.frames, arch=args.arch)
    except NoDisplayError as e:
        raise UserError(str(e)) from None
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sim.arch import ARCH_CHOICES

    parser = argparse.ArgumentParser(
        prog="main.py", description=__doc__ + " With no COMMAND it opens the app (the window)."
    )
    parser.add_argument(
        "--scene", dest="gui_scene", default="dam_break", help="app: built-in scene name or .toml path"
    )
    parser.add_argument(
        "--arch", dest="gui_arch", choices=ARCH_CHOICES, default="auto", help="app: Taichi backend"
    )
    _add_device_option(parser, "gui_device")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scenes", help="list the built-in scenes")
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("simulate", help="run a scene headless and write its trajectory (.npz)")
    p.add_argument("--scene", required=True, help="built-in scene name or path to a .toml file")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=None, help="overrides the scene's seed (particle jitter)")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    _add_device_option(p)
    _add_mode_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("record", help="record a scene headless to .mp4, .gif or a folder of PNGs")
    p.add_argument("--scene", required=True, help="built-in scene name or path to a .toml file")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument(
        "--out", type=Path, required=True, help="FILE.mp4, FILE.gif, or a folder for numbered PNGs"
    )
    p.add_argument("--size", default="960x540", help="WIDTHxHEIGHT in pixels (even numbers)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--color", choices=["material", "speed"], default="material")
    p.add_argument(
        "--orbit",
        type=float,
        default=0.0,
        metavar="DEG_PER_S",
        help="3D: turn the camera about the scene at this many degrees per simulated second (0: fixed)",
    )
    p.add_argument("--script", type=Path, default=None, help="TOML timeline of interactions")
    p.add_argument("--seed", type=int, default=None, help="overrides the scene's seed")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    _add_device_option(p)
    _add_mode_options(p)
    p.add_argument("--control-model", default=None, help="sketch controller NAME (in assets/control) or PATH")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("datagen", help="simulate random scenes of a family into training shards")
    p.add_argument("--family", required=True)
    p.add_argument("--trajectories", type=int, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_datagen)

    p = sub.add_parser(
        "datagen-control", help="reverse-modelling examples (state, sketch, force field) for the controller"
    )
    p.add_argument("--family", required=True)
    p.add_argument("--states", type=int, required=True, help="initial states (4 windows each)")
    p.add_argument("--kind", default="physical", help="physical (replayed labels) or published (kinematic)")
    p.add_argument("--out", type=Path, default=None, help="default data/control/FAMILY_KIND")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", type=int, default=0, help="replay the labels of the first N shards and report")
    p.set_defaults(func=cmd_datagen_control)

    p = sub.add_parser("screenshot", help="open the window, play a scene and save a PNG of the whole window")
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    p.add_argument("--scene", default="dam_break", help="built-in scene name or path to a .toml file")
    p.add_argument("--frames", type=int, default=120, help="frames to run before the grab")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    p.set_defaults(func=cmd_screenshot)

    p = sub.add_parser("train", help="train the learned stepper on a family's shards (works under torchrun)")
    p.add_argument("--family", required=True)
    p.add_argument("--data", type=Path, default=None, help="shard folder (default data/FAMILY)")
    p.add_argument(
        "--out", type=Path, default=None, help="weights (default assets/models/FAMILY.safetensors)"
    )
    p.add_argument(
        "--run-dir", type=Path, default=None, help="checkpoints and loss curves (default runs/FAMILY)"
    )
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-trajectories", type=int, default=None)
    p.add_argument(
        "--pushforward-after", type=float, default=0.3, help="share of the steps before pushforward starts"
    )
    p.add_argument(
        "--pushforward-share", type=float, default=0.5, help="share of each batch from the model's own frame"
    )
    p.add_argument(
        "--pushforward-frames", type=int, default=1, help="a pushforward pick unrolls 1..N of its own frames"
    )
    p.add_argument(
        "--early-share", type=float, default=0.0, help="share of each batch from trajectories' first frames"
    )
    p.add_argument(
        "--rollout-frames", type=int, default=0, help="rollout loss: frames unrolled with gradient (0: off)"
    )
    p.add_argument("--rollout-picks", type=int, default=2, help="rollout loss: unrolls per step")
    p.add_argument("--rollout-weight", type=float, default=1.0, help="rollout loss: its weight in the loss")
    p.add_argument("--init", type=Path, default=None, help="fine-tune these weights (their scales are kept)")
    p.add_argument(
        "--sliding-prior",
        action="store_true",
        help="the prior keeps gravity's slide along solids beside them (also switches it on for --init)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-control", help="train the sketch-to-force diffusion controller on a family")
    p.add_argument("--family", required=True)
    p.add_argument("--data", type=Path, default=None, help="default data/control/FAMILY_physical")
    p.add_argument("--out", type=Path, default=None, help="default assets/control/FAMILY.safetensors")
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/control/FAMILY")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_train_control)

    p = sub.add_parser("calibrate", help="guard thresholds from the solver's own statistics")
    p.add_argument("--family", required=True)
    p.add_argument("--model", default=None, help="weights path (default assets/models/FAMILY.safetensors)")
    p.add_argument("--rollouts", type=int, default=6)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument(
        "--grid", type=int, default=None, help="solver cells along the domain (default: the family's data)"
    )
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "eval", help="evaluate a learned model on the app's scenes or a family's held-out initial conditions"
    )
    p.add_argument("what", choices=["neural", "control"])
    p.add_argument(
        "--family",
        default=None,
        help="the family (control: required; neural: its held-out rollouts instead of the app's scenes)",
    )
    p.add_argument(
        "--scene",
        action="append",
        default=None,
        help="neural: an app scene with weights (repeatable; default: all of them), frame sheet in docs/eval",
    )
    p.add_argument("--model", default=None, help="weights path (default assets/models/FAMILY.safetensors)")
    p.add_argument("--rollouts", type=int, default=4, help="neural: held-out rollouts")
    p.add_argument(
        "--frames", type=int, default=None, help="neural: frames per rollout (scenes 120, a family's 100)"
    )
    p.add_argument(
        "--cases", type=Path, default=None, help="control: a case file (default: generated + drawn)"
    )
    p.add_argument("--generated", type=int, default=4, help="control: held-out generated cases")
    p.add_argument("--drawn", type=int, default=4, help="control: hand-drawn cases from assets/control")
    p.add_argument(
        "--oracle-iterations",
        type=int,
        default=None,
        help="control: the oracle's search iterations (3; 3D: 2)",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=None,
        help="control: fields per plan for the learned critic to choose from (default 8, 3D 4; 1: none)",
    )
    p.add_argument(
        "--plant",
        choices=["solver", "hybrid"],
        default="solver",
        help="control: what advances the frames of every method (hybrid: as the window runs by default)",
    )
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "fuzz",
        help="random scenes and interaction scripts, a few frames each: crashes, tracebacks, lost particles",
    )
    p.add_argument("--cases", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--first", type=int, default=0, help="index of the first case (replay one: --first I --cases 1)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (one case each at a time)")
    p.add_argument("--out", type=Path, default=Path("fuzz_out"), help="where failing cases are written")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="cpu")
    p.set_defaults(func=cmd_fuzz)

    p = sub.add_parser("soak", help="a long run with a repeating interaction: memory growth and slowdown")
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--scene", default="dam_break", help="built-in scene name or .toml path")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    _add_mode_options(p)
    p.set_defaults(func=cmd_soak)

    p = sub.add_parser("bench", help="measure speed; prints a table and writes JSON records")
    p.add_argument(
        "suite",
        nargs="?",
        default="sim",
        choices=[
            "sim",
            "render",
            "neural",
            "neural2d",
            "neural3d",
            "gui",
            "control",
            "control3d",
            "reliability",
        ],
        help="which suite to run (neural is neural2d and neural3d; control includes control3d)",
    )
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="where to write the records")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    _add_device_option(p)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_gui  # the product's front door: the window
    try:
        return args.func(args)
    except _user_errors() as e:
        print(f"sluice: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sluice: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
