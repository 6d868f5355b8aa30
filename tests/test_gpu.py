"""The networks on a CUDA GPU give what they give on the CPU (`--device cuda`, neural.device). They skip
without a GPU; `scripts/gpu_check.sh` runs them on a CUDA machine."""

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() False)"),
]


def test_a_learned_frame_on_the_gpu_matches_the_cpu():
    from neural.catalog import make_stepper
    from neural.stepper import HybridStepper
    from sim.build import build_solver
    from sim.scene import load_scene

    scene = load_scene("dam_break")
    solver = build_solver(scene)
    for _ in range(3):
        solver.step_frame()
    stepper, _ = make_stepper("hybrid", scene)
    assert isinstance(stepper, HybridStepper)
    neural = stepper.neural
    on_cpu, _, _ = neural.predict(solver)
    neural.reset()
    neural.model.to("cuda")
    try:
        on_gpu, _, _ = neural.predict(solver)
    finally:
        neural.model.to("cpu")
    scale = np.abs(on_cpu).max()
    assert np.abs(on_gpu - on_cpu).max() < 0.02 * scale  # float16 autocast on CUDA


def test_a_plan_on_the_gpu_matches_the_cpu():
    from control.condition import fluid_channels_count
    from control.controller import Controller, weights_dir
    from control.sketch import parse_sketch

    controller = Controller.load(weights_dir() / "water2d.safetensors")
    fluid = np.zeros((fluid_channels_count(2), 32, 32), np.float32)
    fluid[0, 4:12, 0:10] = 1.0
    sketch = parse_sketch([[[0.2, 0.1], [0.5, 0.15], [0.7, 0.1]]], (1.0, 1.0), 1 / 32).sketch
    on_cpu = controller.candidates(fluid, sketch, 40, 1 / 32, 2, seed=3)
    controller.model.to("cuda")
    try:
        on_gpu = controller.candidates(fluid, sketch, 40, 1 / 32, 2, seed=3)
    finally:
        controller.model.to("cpu")
    for a, b in zip(on_cpu, on_gpu):
        assert np.abs(a.values - b.values).max() < 0.05 * max(np.abs(a.values).max(), 1.0)
