"""sluice: one command line for the app, simulation, recording, benchmarks and training."""

from __future__ import annotations

import argparse
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


def cmd_simulate(args: argparse.Namespace) -> int:
    from sim.arch import init_taichi
    from sim.scene import load_scene
    from sim.trajectory import check_writable, simulate

    if args.frames < 1:
        raise UserError("--frames must be at least 1")
    scene = load_scene(args.scene, {"seed": args.seed} if args.seed is not None else None)
    check_writable(args.out)
    init_taichi(args.arch)
    try:
        summary = simulate(scene, args.frames, args.out)
    except KeyboardInterrupt:
        print(f"sluice: interrupted; the frames finished so far are in {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"wrote {args.out}: {summary['frames']} frames, {summary['particles']} particles, "
        f"clamps {summary['clamps']}"
    )
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from app.record import output_kind, parse_size, record
    from sim.arch import init_taichi

    parse_size(args.size)
    output_kind(args.out)  # an unwritable output fails before any simulation
    init_taichi(args.arch)
    result = record(
        args.scene,
        args.frames,
        args.out,
        size=args.size,
        fps=args.fps,
        color=args.color,
        script=args.script,
        seed=args.seed,
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
    print(f"wrote {args.out}: {result.frames} frames")
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


def cmd_bench(args: argparse.Namespace) -> int:
    from sim.arch import init_taichi
    from sim.bench import run_benchmarks

    if args.suite == "render":
        from app.bench import render_records as suite
    else:
        from sim.bench import sim_records as suite
    arch = init_taichi(args.arch)
    run_benchmarks(suite, args.json, arch=arch, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sim.arch import ARCH_CHOICES

    parser = argparse.ArgumentParser(prog="main.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scenes", help="list the built-in scenes")
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("simulate", help="run a scene headless and write its trajectory (.npz)")
    p.add_argument("--scene", required=True, help="built-in scene name or path to a .toml file")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=None, help="overrides the scene's seed (particle jitter)")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
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
    p.add_argument("--script", type=Path, default=None, help="TOML timeline of interactions")
    p.add_argument("--seed", type=int, default=None, help="overrides the scene's seed")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("datagen", help="simulate random scenes of a family into training shards")
    p.add_argument("--family", required=True)
    p.add_argument("--trajectories", type=int, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_datagen)

    p = sub.add_parser("bench", help="measure speed; prints a table and writes JSON records")
    p.add_argument(
        "suite", nargs="?", default="sim", choices=["sim", "render"], help="which benchmarks to run"
    )
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="where to write the records")
    p.add_argument("--arch", choices=ARCH_CHOICES, default="auto")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
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
