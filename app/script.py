"""Record scripts: a TOML timeline of interactions by frame, so that a recorded demo is reproducible.

[[action]]
frame = 30            # the tick before which the action happens (0 = before the first frame)
type = "brush"        # brush | pour | stop_pour | erase | obstacle | remove_obstacle | reset | sketch
                      # | clear_sketch | mode | quality | gravity | save | load
...                   # the keys of that type (see ACTION_KEYS and the README)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.scene import OBSTACLE_SHAPES, SceneError, TableReader, read_toml

ACTION_KEYS: dict[str, set[str]] = {
    "brush": {"center", "radius", "strength", "mode", "direction", "duration"},
    "pour": {"center", "radius", "velocity", "material", "rate", "duration", "name"},
    "stop_pour": {"name"},
    "erase": {"center", "radius"},
    "obstacle": {"shape", "boundary", "friction"} | set().union(*OBSTACLE_SHAPES.values()),
    "remove_obstacle": {"index"},
    "reset": set(),
    "sketch": {"strokes", "window"},
    "clear_sketch": set(),
    "mode": {"mode"},
    "quality": {"multiplier"},
    "gravity": {"value"},
    "save": {"path"},
    "load": {"path"},
}
MODES = ("auto", "numerical", "neural", "hybrid")
BRUSH_MODES = ("push", "attract", "repel")


class ScriptError(ValueError):
    """A script that cannot be used; the message names the file, the action and the reason."""


@dataclass
class Action:
    frame: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


def load_script(path: str | Path, dim: int) -> list[Action]:
    path = Path(path)
    return parse_script(read_toml(path, ScriptError), str(path), dim)


def parse_script(raw: dict, source: str, dim: int) -> list[Action]:
    """Validate every action up front, with the scene loader's typed reader."""
    try:
        top = TableReader(source, "file", raw, {"action"})
        tables = raw.get("action", [])
        if not isinstance(tables, list):
            top.fail("action", "must be an array of tables: write [[action]]")
        actions = [_parse_action(source, f"action[{i}]", table, dim) for i, table in enumerate(tables)]
    except SceneError as e:
        raise ScriptError(str(e)) from None
    return sorted(actions, key=lambda a: a.frame)


def _is_point(p, dim: int) -> bool:
    return (
        isinstance(p, list)
        and len(p) == dim
        and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
    )


def _parse_action(source: str, where: str, table: Any, dim: int) -> Action:
    kind = table.get("type") if isinstance(table, dict) else None
    if kind not in ACTION_KEYS:
        raise SceneError(
            f"{source}: {where}.type: unknown action {kind!r} (choose one of {', '.join(ACTION_KEYS)})"
        )
    r = TableReader(source, where, table, ACTION_KEYS[kind] | {"frame", "type"})
    frame = r.integer("frame", minimum=0)
    args: dict[str, Any] = {}
    if kind == "brush":
        args = {
            "center": r.vector("center", dim),
            "radius": r.number("radius", positive=True),
            "strength": r.number("strength", minimum=0.0),
            "mode": r.choice("mode", {m: m for m in BRUSH_MODES}, "push"),
            "direction": r.vector("direction", dim) if r.has("direction") else None,
            "duration": r.integer("duration", 1, minimum=1),
        }
        if args["mode"] == "push" and args["direction"] is None:
            r.fail("direction", "a push brush needs a direction")
    elif kind == "pour":
        args = {
            "center": r.vector("center", dim),
            "radius": r.number("radius", positive=True),
            "velocity": r.vector("velocity", dim),
            "material": r.string("material", "water"),
            "rate": r.number("rate", 0.0, minimum=0.0),
            "duration": r.integer("duration", 0, minimum=0),
            "name": r.string("name", "pour"),
        }
    elif kind == "stop_pour":
        args = {"name": r.string("name", "pour")}
    elif kind == "erase":
        args = {"center": r.vector("center", dim), "radius": r.number("radius", positive=True)}
    elif kind == "obstacle":
        args = {"description": {k: v for k, v in table.items() if k not in ("frame", "type")}}
    elif kind == "remove_obstacle":
        args = {"index": r.integer("index", minimum=0)}
    elif kind == "sketch":
        strokes = table.get("strokes")
        if not isinstance(strokes, list) or not all(
            isinstance(s, list) and all(_is_point(p, dim) for p in s) for s in strokes
        ):
            r.fail(
                "strokes",
                f"must be a list of strokes, each a list of {'[x, y]' if dim == 2 else '[x, y, z]'} points",
            )
        args = {"strokes": strokes, "window": r.integer("window", 40, minimum=1)}
    elif kind == "mode":
        args = {"mode": r.choice("mode", {m: m for m in MODES})}
    elif kind == "quality":
        args = {"multiplier": r.number("multiplier")}
    elif kind == "gravity":
        value = table.get("value")
        args = {"value": r.vector("value", dim) if isinstance(value, list) else r.number("value")}
    elif kind in ("save", "load"):
        # relative to the script's folder, so a script and its states travel together
        if not r.string("path", ""):
            r.fail("path", "missing")
        args = {"path": Path(source).parent / r.string("path", "")}
    return Action(frame, kind, args)
