"""Choosing and starting the Taichi backend once per process."""

from __future__ import annotations

import os

import taichi as ti

ARCH_CHOICES = ("auto", "cpu", "cuda", "vulkan", "metal")
_GPU_ORDER = ("cuda", "vulkan", "metal")

_active: str | None = None


class BackendError(RuntimeError):
    """The requested backend cannot start on this machine."""


def _start(name: str) -> str:
    """ti.init on one backend; returns the arch Taichi really took (it silently falls back to the CPU)."""
    # SLUICE_CPU_THREADS: background jobs sharing a small machine can take one core each.
    threads = os.environ.get("SLUICE_CPU_THREADS")
    extra = {"cpu_max_num_threads": int(threads)} if threads else {}
    ti.init(
        arch=getattr(ti, name),
        **extra,
        default_fp=ti.f32,
        offline_cache=True,
        random_seed=0,
        log_level=ti.WARN,
    )
    return ti.lang.impl.current_cfg().arch.name


def init_taichi(arch: str = "auto", quiet: bool = False) -> str:
    """Start Taichi on `arch` and return the backend in use ("x64", "cuda", ...).

    `auto` takes the first GPU backend that starts and the CPU otherwise. Calling again with a compatible
    request reuses the running backend, because re-initialising would free every field already allocated.
    """
    global _active
    if arch not in ARCH_CHOICES:
        raise BackendError(f"unknown arch {arch!r}; choose one of {', '.join(ARCH_CHOICES)}")
    if _active is not None:
        if arch in ("auto", _active) or (arch == "cpu" and _active in ("x64", "arm64")):
            return _active
        raise BackendError(f"Taichi already runs on {_active}; cannot switch to {arch} in this process")

    arch = os.environ.get("SLUICE_ARCH", arch) if arch == "auto" else arch
    if arch == "cpu":
        _active = _start("cpu")
    elif arch == "auto":
        _active = "x64"
        for candidate in _GPU_ORDER:
            if _start(candidate) == candidate:
                _active = candidate
                break
            ti.reset()
        else:
            _active = _start("cpu")
    else:
        got = _start(arch)
        if got != arch:
            ti.reset()
            raise BackendError(
                f"the {arch} backend is not available on this machine (Taichi fell back to {got})"
            )
        _active = got
    if not quiet:
        print(f"[sluice] backend: {_active} (requested {arch})")
    return _active


def active_arch() -> str | None:
    return _active


def is_cpu() -> bool:
    return _active in ("x64", "arm64")
