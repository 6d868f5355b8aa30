"""The torch device the networks (learned stepper, controller, critic) run on, chosen once per process.

`auto` follows the Taichi backend: CUDA when the solver runs on CUDA and torch sees a GPU, else the CPU.
On the CPU a learned stepper's convolutions run in channels-last order (`place`: deterministic, the sums in
another order); on CUDA the models move to the GPU, inputs are copied there and results back (a host round
trip per frame that a later change can remove), and autocast runs in float16.
"""

from __future__ import annotations

import contextlib

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")

_device = torch.device("cpu")


class DeviceError(RuntimeError):
    """The requested torch device is not available."""


def choose_device(choice: str, arch: str | None) -> torch.device:
    if choice not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {choice!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if choice == "cuda":
        if not available:
            raise DeviceError("--device cuda: torch sees no CUDA GPU (a CPU build of torch, or no driver)")
        return torch.device("cuda")
    return torch.device("cuda" if available and arch == "cuda" else "cpu")


def set_device(choice: str, arch: str | None) -> torch.device:
    """Choose the process's torch device (see the module docstring); returns it."""
    global _device
    _device = choose_device(choice, arch)
    return _device


def current() -> torch.device:
    return _device


def network_autocast(cpu_bf16: bool, device: torch.device | None = None):
    """The autocast a network runs under: bfloat16 on the CPU where its weights ask for it (`cpu_bf16`),
    float16 on CUDA, nothing otherwise."""
    device = device or _device
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place(model: torch.nn.Module) -> torch.nn.Module:
    """A network on the process's device, ready to run. On the CPU its convolution weights are put in
    channels-last order, for which oneDNN has the faster kernels at these grid sizes (probe, two threads:
    the 2D U-Net's forward on water_ramps' 72 x 56 grid 2.6 -> 1.7 ms, dam_break_3d's 40^3 under bfloat16
    autocast 4.0 -> 2.9 ms). The answer is the same up to the order of the sums: 3e-6 of the largest
    velocity in float32; under bfloat16 autocast 0.6%, that format's own rounding (the bench's
    `bf16_vs_fp32` difference is as large)."""
    model = model.to(_device)
    if _device.type == "cpu":
        rank = max((p.dim() for p in model.parameters()), default=0)
        if rank in (4, 5):
            model = model.to(memory_format=torch.channels_last if rank == 4 else torch.channels_last_3d)
    return model
