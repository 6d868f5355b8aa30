"""Scene loading: built-ins load; malformed files are rejected with file, key and reason."""

import pytest

from sim.build import build_solver
from sim.scene import SceneError, builtin_scenes, load_scene

GOOD_HEADER = """
[scene]
dim = 2
size = [1.0, 1.0]
grid = 32
"""
WATER_BODY = """
[[body]]
material = "water"
shape = "box"
min = [0.1, 0.1]
max = [0.3, 0.3]
"""

BUILTINS = {
    "dam_break",
    "water_ramps",
    "sand_ramps",
    "water_sand",
    "jelly_drop",
    "snow_ball",
    "dam_break_3d",
    "sand_pile_3d",
}


def test_all_required_builtins_exist_and_load():
    assert set(builtin_scenes()) >= BUILTINS
    for name in builtin_scenes():
        scene = load_scene(name)
        assert scene.bodies or scene.emitters
        assert scene.max_speed > 0


def test_dam_break_is_a_column_of_width_l_and_height_2l_at_the_left_wall():
    scene = load_scene("dam_break")
    (body,) = scene.bodies
    width, height = body.hi - body.lo
    assert body.lo[0] == 0.0 and body.lo[1] == 0.0
    assert height == pytest.approx(2 * width)


MALFORMED = {
    "toml syntax": ("[scene\ndim = 2", ["malformed TOML"]),
    "missing scene table": (WATER_BODY, ["file.scene", "missing [scene]"]),
    "unknown scene key": (GOOD_HEADER + "colour = 3\n" + WATER_BODY, ["scene.colour", "unknown key"]),
    "unknown material": (
        GOOD_HEADER + WATER_BODY.replace('"water"', '"lava"'),
        ["body[0].material", "unknown value 'lava'"],
    ),
    "unknown body key": (GOOD_HEADER + WATER_BODY + "colour = 1\n", ["body[0].colour", "unknown key"]),
    "parameter of another material": (
        GOOD_HEADER + WATER_BODY + "friction_angle = 30.0\n",
        ["body[0].friction_angle", "not a parameter of water"],
    ),
    "body outside the domain": (
        GOOD_HEADER + WATER_BODY.replace("max = [0.3, 0.3]", "max = [1.3, 0.3]"),
        ["body[0]", "outside the domain"],
    ),
    "body inside an obstacle": (
        GOOD_HEADER + WATER_BODY + '[[obstacle]]\nshape = "box"\nmin = [0.0, 0.0]\nmax = [0.5, 0.5]\n',
        ["body[0]", "inside obstacle[0]"],
    ),
    "negative grid": (GOOD_HEADER.replace("grid = 32", "grid = -4") + WATER_BODY, ["scene.grid", "between"]),
    "negative size": (
        GOOD_HEADER.replace("size = [1.0, 1.0]", "size = [1.0, -1.0]") + WATER_BODY,
        ["scene.size", "positive"],
    ),
    "negative radius": (
        GOOD_HEADER + '[[body]]\nmaterial = "jelly"\nshape = "sphere"\ncenter = [0.5, 0.5]\nradius = -0.1\n',
        ["body[0].radius", "positive"],
    ),
    "non-finite frame_dt": (GOOD_HEADER + "frame_dt = inf\n" + WATER_BODY, ["scene.frame_dt", "finite"]),
    "nan velocity": (GOOD_HEADER + WATER_BODY + "velocity = [nan, 0.0]\n", ["body[0].velocity", "finite"]),
    "wrong vector length": (
        GOOD_HEADER + WATER_BODY.replace("min = [0.1, 0.1]", "min = [0.1, 0.1, 0.1]"),
        ["body[0].min", "list of 2 numbers"],
    ),
    "string for a number": (
        GOOD_HEADER.replace("grid = 32", 'grid = "fine"') + WATER_BODY,
        ["scene.grid", "integer"],
    ),
    "too many particles": (GOOD_HEADER + "capacity = 10\n" + WATER_BODY, ["body", "capacity of 10"]),
    "no bodies": (GOOD_HEADER, ["file.body", "at least one"]),
    "unknown obstacle shape": (
        GOOD_HEADER + WATER_BODY + '[[obstacle]]\nshape = "torus"\n',
        ["obstacle[0].shape", "unknown value 'torus'"],
    ),
    "obstacle key of another shape": (
        GOOD_HEADER + WATER_BODY + '[[obstacle]]\nshape = "sphere"\ncenter = [0.7, 0.7]\nradius = 0.1\n'
        "min = [0.0, 0.0]\n",
        ["obstacle[0].min", "not a key of a sphere"],
    ),
    "unknown boundary": (
        GOOD_HEADER.replace("grid = 32", 'grid = 32\nboundary = "bouncy"') + WATER_BODY,
        ["scene.boundary", "bouncy"],
    ),
    "body as a plain table": (GOOD_HEADER + '[body]\nmaterial = "water"\n', ["file.body", "[[body]]"]),
    "min above max": (
        GOOD_HEADER + WATER_BODY.replace("min = [0.1, 0.1]", "min = [0.4, 0.1]"),
        ["body[0].max", "greater than min"],
    ),
    "poisson ratio of 0.5": (
        GOOD_HEADER + WATER_BODY.replace('"water"', '"jelly"') + "poisson_ratio = 0.5\n",
        ["body[0].poisson_ratio", "below 0.5"],
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_scene_is_rejected_with_file_key_and_reason(case, write_scene):
    text, expected = MALFORMED[case]
    path = write_scene(text)
    with pytest.raises(SceneError) as info:
        build_solver(load_scene(path))
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_file_and_unknown_builtin_are_scene_errors(tmp_path):
    with pytest.raises(SceneError, match="no such scene file"):
        load_scene(tmp_path / "nope.toml")
    with pytest.raises(SceneError, match="unknown scene; built-in scenes are"):
        load_scene("no_such_scene")


def test_overrides_replace_scene_keys():
    scene = load_scene("dam_break", {"grid": 32})
    assert scene.grid == 32


def test_every_ramps_family_draw_is_a_valid_scene():
    """A draw that placed no body falls back to a block in the lower left; it once lay inside a random
    ramp (water_ramps2d, datagen seed 3, trajectory 9: 'body lies inside obstacle[1]')."""
    import numpy as np

    from neural.families import random_scene
    from sim.scene import parse_scene

    for family in ("water_ramps2d", "sand_ramps2d"):
        for index in range(60):
            parse_scene(random_scene(family, np.random.default_rng([3, index])), family)
