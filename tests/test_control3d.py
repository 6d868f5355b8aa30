"""Sketch control in 3D: lifted strokes, the 16³ control grid, and the shipped water3d controller steering
dam_break_3d."""

import numpy as np
import pytest

from control.condition import condition, condition_channels
from control.sketch import inside_region, parse_sketch, rasterise, sketch_channels

SIZE, H = (1.0, 1.0, 1.0), 1 / 16


def test_3d_strokes_are_paths_and_prism_regions_with_their_channels():
    path = parse_sketch([[[0.2, 0.3, 0.5], [0.5, 0.35, 0.5], [0.8, 0.3, 0.5]]], SIZE, H)
    assert path.ok and path.sketch.kind == "path" and path.sketch.paths[0].shape[1] == 3
    channels = rasterise(path.sketch, (16, 16, 16), H)
    assert channels.shape == (sketch_channels(3), 16, 16, 16)
    on_path = channels[0] > 0.5
    direction = channels[1:4][:, on_path] / channels[0][on_path]  # the tangent is weighted by the mask
    assert on_path.sum() > 10 and (direction[0] > 0.95).all() and np.abs(direction[2]).max() < 0.05

    angle = np.linspace(0, 2 * np.pi, 40)
    floor_loop = np.stack([0.5 + 0.2 * np.cos(angle), np.zeros_like(angle), 0.5 + 0.2 * np.sin(angle)], 1)
    region = parse_sketch([floor_loop], SIZE, H)
    assert region.ok and region.sketch.kind == "region"
    loop = region.sketch.regions[0]
    # A floor loop gathers the fluid above it: the region is the prism along the loop's normal.
    assert inside_region(np.array([[0.5, 0.9, 0.5], [0.55, 0.0, 0.45]]), loop).all()
    assert not inside_region(np.array([[0.9, 0.5, 0.5], [0.5, 0.5, 0.05]]), loop).any()
    mask = rasterise(region.sketch, (16, 16, 16), H)[4]
    assert mask.sum() == pytest.approx(np.pi * 0.2**2 * 16**3, rel=0.1)

    flat = parse_sketch([[[0.2, 0.3], [0.6, 0.3]]], SIZE, H)
    assert not flat.ok and "3 coordinates" in flat.messages[0]
    fluid = np.zeros((5, 16, 16, 16), np.float32)
    assert condition(fluid, path.sketch, 0.5, H).shape == (condition_channels(3), 16, 16, 16)


@pytest.mark.skipif(
    not __import__("pathlib").Path("assets/control/water3d.safetensors").is_file(),
    reason="needs the shipped water3d controller (python main.py train-control --family water3d)",
)
def test_session_sketch_sends_the_dam_break_3d_surge_back_along_the_arrow():
    from app.session import Session
    from control.condition import centroid, control_grid
    from sim import state as state_io

    session = Session("dam_break_3d")
    cells, _ = control_grid(session.solver)
    assert max(cells) == 16  # the 3D control grid, upsampled onto the solver's force grid when applied
    for _ in range(40):  # the column has collapsed and the surge runs up the right wall
        session.tick()
    start = state_io.snapshot(session.solver)
    mass = session.solver.masses()
    here = centroid(session.solver.positions(), mass)
    finals = {}
    # one plan in an 8-frame window (a re-plan comes every 8): each 3D plan rolls all its candidate fields
    # out with the learned stepper on 21,600 particles, the suite's costliest step (three plans in a
    # 20-frame window took 158 s; one sends the centroid 24 cm back, 3 cm short of the stroke's end)
    window = 8
    for sketched in (False, True):
        state_io.restore(session.solver, start)
        if sketched:
            # the stroke ends 30 cm back to the left: beyond where the surge's rebound alone takes the
            # water (a sketch asks for its end, and the controller does not push past it)
            end = here - [0.3, 0.0, 0.0]
            messages = session.sketch([[here.tolist(), end.tolist()]], window_frames=window)
            assert "steering" in messages[-1], messages
            assert "water3d" in messages[-1]
        for _ in range(window):
            session.tick()
            if sketched and session.solver.force_field() is not None:
                assert session.solver.force_field().shape[1:-1] == tuple(session.solver.force_cells)
        if sketched:
            assert session.control.plan_ms
        x = session.solver.positions()
        assert np.isfinite(x).all()
        finals[sketched] = centroid(x, mass)
    session.close()
    assert finals[True][0] < finals[False][0] - 0.02, finals  # sent back left
    miss = {k: abs(v[0] - end[0]) for k, v in finals.items()}
    assert miss[True] < miss[False], (miss, finals)  # and nearer the stroke's end
