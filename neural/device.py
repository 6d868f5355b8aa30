"""The torch device the networks (learned stepper, controller, critic) run on, chosen once per process.

`auto` follows the Taichi backend: CUDA when the solver runs on CUDA and torch sees a GPU, else the CPU.
On the CPU a learned stepper's convolutions run in channels-last order (`place`: deterministic, the sums in
another order); on CUDA the models move to the GPU, inputs are copied there and results back (a host round
trip per frame that a later change can remove), and autocast runs in float16.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Hashable

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


# --------------------------------------------------------------------- torch's CPU threads in the window
# Two processes that each run torch on all the cores (the window beside a `record`, a bench or a training)
# make each other's convolutions wait: an OpenMP team spins until its last thread gets a core, and the
# other process's spinning threads hold them. On this 2-core machine the 2D U-Net's forward took 370 ms
# instead of 4-5 ms in each of two such processes (probe, 2026-12-07, water_sand's learned frame 19 ms ->
# 390 ms); with one of them on a single thread both ran at their usual speed. One thread is no default
# either: alone, dam_break_3d's learned frame takes 35-46 ms on two threads and 52 ms on one. So the
# window lets its network calls choose their thread count by their own timings (ThreadGovernor); record,
# eval and the benches keep a fixed count, so they reproduce (the count changes the float sums' order).
SLOW = 4.0  # a call this many times its thread count's best ...
SLOW_EXCESS_MS = 10.0  # ... and this much over it is slow
STRIKES = 2  # slow calls in a row before the other thread count is tried
RETRY_S = 20.0  # then the count left is tried again after this long, twice as long each time it loses
MAX_RETRY_S = 300.0  # ... up to this: a competition that ended is found within five minutes
EXPLORE_AFTER = 3  # a key's calls at the first count before the other is measured

_adaptive = False
_full_threads = 1  # torch's thread count when adapt_threads was called: each governor's `full`
_local = threading.local()


def adapt_threads(enabled: bool = True) -> None:
    """Let this process's network calls choose torch's CPU thread count from their own timings (the window
    does; see ThreadGovernor). Each thread that runs networks gets its own governor (torch's count is the
    calling thread's), all choosing between the count torch has now and one."""
    global _adaptive, _full_threads
    _adaptive, _full_threads = enabled, torch.get_num_threads()


def network_timing(key: Hashable, ms: float) -> None:
    """Report one network call's wall time (a key per network and input shape), for the governor of the
    calling thread; nothing unless adapt_threads is on."""
    if not _adaptive or _device.type != "cpu":
        return
    governor = getattr(_local, "governor", None)
    if governor is None:  # a thread made while another's governor had one thread inherits that: reset it
        _local.governor = ThreadGovernor(_full_threads)
        torch.set_num_threads(_full_threads)
        return  # this call ran at the inherited count: not a measurement of `full`
    change = governor.observe(key, ms)
    if change:
        print(f"[sluice] {change}", file=sys.stderr)


class ThreadGovernor:
    """Chooses between `full` threads and one for the calls of one thread, by their wall times per key.

    Each key's best time is kept per count. A key's first EXPLORE_AFTER calls run at the count in force; then
    one call measures the other count, which is kept if it is at least as fast as the first count's best.
    Two slow calls in a row (SLOW times the count's best and SLOW_EXCESS_MS over it: another process
    competes for the cores) move to the other count, which is kept if its first call takes at most half the
    slow one's time (if not, every count is slow, and slow calls are left alone for a backoff). The count left
    behind is tried again after RETRY_S and kept if it beats 0.9 of the kept count's best; each trial that
    loses doubles the wait (up to MAX_RETRY_S), so a contended window pays one slow call per backoff, not one
    per frame. A trial is settled by the next call of its own key (a thread may run several networks or input
    shapes in turn). `set_threads` and `clock` are torch.set_num_threads and time.monotonic outside tests."""

    def __init__(
        self,
        full: int,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.full = self.current = max(int(full), 1)
        self.set_threads, self.clock = set_threads, clock
        self.best: dict[tuple[Hashable, int], float] = {}
        self.calls: dict[Hashable, int] = {}
        self.strikes = 0
        self.backoff = RETRY_S
        self.retry_at: float | None = None  # when the count left behind is tried again
        self.strikes_from = 0.0  # slow calls move nothing before this (after a switch that did not help)
        # After a switch: (its key, the count left, the time to beat, whether slowness caused it, when)
        self.trial: tuple[Hashable, int, float, bool, float] | None = None

    def other(self) -> int:
        return 1 if self.current == self.full else self.full

    def _try(self, key: Hashable, count_left: int, to_beat: float, for_slowness: bool = False) -> None:
        self.current = self.other()
        self.set_threads(self.current)
        self.trial = (key, count_left, to_beat, for_slowness, self.clock())

    def observe(self, key: Hashable, ms: float) -> str | None:
        """Take one call's time; returns a line saying why the count changed when it changed because the
        calls ran slow (measuring and retrying change it silently)."""
        if self.full == 1:
            return None
        count, previous = self.current, self.best.get((key, self.current))
        self.best[(key, count)] = ms if previous is None else min(previous, ms)
        self.calls[key] = self.calls.get(key, 0) + 1
        now = self.clock()
        if self.trial is not None:
            trial_key, left, to_beat, for_slowness, started = self.trial
            if trial_key == key:
                won = ms <= to_beat
            elif now - started < RETRY_S:  # another network's call: its time is kept, the trial waits
                return None
            else:  # ... but not for ever (a shape seen once): lost, back to the count left
                won = False
            self.trial = None
            if won:  # kept; the count left is tried again later (the competition may end)
                self.backoff = RETRY_S
                self.retry_at = now + self.backoff
                return None
            self.current = left
            self.set_threads(left)
            self.backoff = min(2 * self.backoff, MAX_RETRY_S)
            self.retry_at = now + self.backoff
            if for_slowness:
                self.strikes_from = now + self.backoff
            return None
        other = self.other()
        if (key, other) not in self.best:
            if self.calls[key] >= EXPLORE_AFTER:  # measure the other count once, keep the faster
                self._try(key, count, self.best[(key, count)])
            return None
        slow = previous is not None and ms > SLOW * previous and ms - previous > SLOW_EXCESS_MS
        self.strikes = self.strikes + 1 if slow and now >= self.strikes_from else 0
        if self.strikes >= STRIKES:
            self.strikes = 0
            self._try(key, count, 0.5 * ms, for_slowness=True)
            return (
                f"network calls ran {ms / previous:.0f}x slower than their best on {count} thread(s) "
                f"(another process, or the window's own planning, competing for the cores?); trying {other}"
            )
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self._try(key, count, 0.9 * self.best[(key, count)])  # it must beat the kept count's best
        return None
