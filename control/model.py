"""The sketch-to-force diffusion model: a conditional DDPM with ε-prediction over force fields, sampled with
DDIM in at most 10 steps, with optional classifier-free guidance (the sketch channels are dropped during
training now and then, so the model also knows the unconditional field).

The sample is a (keys * dim, *cells) field in units of LABEL_SCALE; it is conditioned on the fluid on the
control grid, the sketch channels and the window length, concatenated to the noisy field at every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from control.condition import CONDITION_CHANNELS, fluid_channels_count
from control.forcefield import MAX_CONTROL_ACCEL
from neural import device
from neural.model import load_state, read_weights, write_weights

WEIGHTS_VERSION = 1
TIMESTEPS = 1000


@dataclass
class ControlSpec:
    KIND: ClassVar[str] = "sketch controller"  # in messages about metadata of the wrong kind

    family: str
    dim: int
    keys: int
    materials: list[str]
    frame_dt: float
    label_scale: float = 9.81  # m/s^2 per unit of the diffused field
    widths: list[int] = field(default_factory=lambda: [24, 48, 96])
    cond_channels: int = CONDITION_CHANNELS
    version: int = WEIGHTS_VERSION

    @property
    def field_channels(self) -> int:
        return self.keys * self.dim


# A force field is smooth: a few dozen degrees of freedom spread over thousands of values, so averaging
# over cells sees through noise that would hide an image. The cosine schedule's signal-to-noise ratio is
# divided by SNR_SHIFT (as for high-resolution images), or the noisiest steps still show the answer and the
# network learns to denoise without ever reading the sketch (measured: conditional and unconditional
# predictions agreed to 1%). The floor keeps the first DDIM step's 1/sqrt(ᾱ) amplification finite.
SNR_SHIFT = 64.0
MIN_ALPHA_BAR = 1e-4


def global_feature_count(dim: int) -> int:
    return dim + 5  # see global_features


CLAMP = MAX_CONTROL_ACCEL / 9.81  # no component of a label exceeds the cap, in label units


def _alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """The signal share at step t: the cosine schedule (Nichol & Dhariwal) with its SNR shifted down."""
    s = 0.008
    cosine = (
        torch.cos((t / TIMESTEPS + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    )
    snr = cosine.clamp(1e-12, 1 - 1e-7) / (1 - cosine.clamp(1e-12, 1 - 1e-7)) / SNR_SHIFT
    return (snr / (1 + snr)).clamp_min(MIN_ALPHA_BAR)


def _weighted_mean(weight: torch.Tensor, coords) -> torch.Tensor:
    """(B, dim) mean of the cell coordinates under (B, *cells) weights."""
    total = weight.flatten(1).sum(1).clamp_min(1e-6)
    return torch.stack([(weight * c).flatten(1).sum(1) / total for c in coords], dim=1)


def global_features(cond: torch.Tensor) -> torch.Tensor:
    """What the whole field must agree on, read from the condition channels (so mirroring an example
    mirrors them too): the goal's offset from the fluid's centroid (the path's end, or the region's
    centre), whether there is a path and a region, the window, the region's and the fluid's size."""
    cells = cond.shape[2:]
    dim, scale = len(cells), max(cells)
    axes = [(torch.arange(n, dtype=cond.dtype) + 0.5) / scale for n in cells]
    coords = torch.meshgrid(*axes, indexing="ij")
    sketch = fluid_channels_count(dim)  # the sketch channels start here (layout in control.sketch)
    fluid, path = cond[:, 0], cond[:, sketch]
    region, end = cond[:, sketch + dim + 1], cond[:, sketch + dim + 3]
    here = _weighted_mean(fluid, coords)
    has_path = (path.flatten(1).amax(1) > 0.5).to(cond.dtype)
    has_region = (region.flatten(1).amax(1) > 0.5).to(cond.dtype)
    goal = torch.where(has_path[:, None] > 0, _weighted_mean(end**4, coords), _weighted_mean(region, coords))
    offset = (goal - here) * (has_path + has_region).clamp_max(1)[:, None]
    spread = sum(
        (fluid * (c - here[:, k].reshape(-1, *(1,) * dim)) ** 2).flatten(1).sum(1)
        for k, c in enumerate(coords)
    )
    spread = (spread / fluid.flatten(1).sum(1).clamp_min(1e-6)).sqrt()
    region_size = region.flatten(1).sum(1).sqrt() / scale
    window = cond[:, -1].flatten(1).mean(1)
    return torch.cat([offset, torch.stack([has_path, has_region, window, region_size, spread], 1)], 1)


class _Block(nn.Module):
    """Two 3x3 convolutions with group norm; the timestep embedding shifts the features in between."""

    def __init__(self, conv, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.conv1, self.conv2 = conv(c_in, c_out, 3, padding=1), conv(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, c_out), nn.GroupNorm(8, c_out)
        self.time = nn.Linear(t_dim, c_out)
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_embed: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        shift = self.time(t_embed)
        h = h + shift.reshape(*shift.shape, *(1,) * (x.ndim - 2))
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class DenoiserUNet(nn.Module):
    def __init__(self, spec: ControlSpec):
        super().__init__()
        conv = nn.Conv2d if spec.dim == 2 else nn.Conv3d
        self.pool = nn.AvgPool2d(2) if spec.dim == 2 else nn.AvgPool3d(2)
        self.t_dim = spec.widths[0] * 2
        self.t_mlp = nn.Sequential(
            nn.Linear(self.t_dim, self.t_dim), nn.SiLU(), nn.Linear(self.t_dim, self.t_dim)
        )
        # The sketch's global intent (where to, how far) joins the timestep embedding in every block.
        self.g_mlp = nn.Sequential(
            nn.Linear(global_feature_count(spec.dim), self.t_dim),
            nn.SiLU(),
            nn.Linear(self.t_dim, self.t_dim),
        )
        c = spec.field_channels + spec.cond_channels
        self.down = nn.ModuleList()
        for w in spec.widths:
            self.down.append(_Block(conv, c, w, self.t_dim))
            c = w
        self.up = nn.ModuleList(
            _Block(conv, spec.widths[i + 1] + spec.widths[i], spec.widths[i], self.t_dim)
            for i in reversed(range(len(spec.widths) - 1))
        )
        self.out = conv(spec.widths[0], spec.field_channels, 1)
        self.multiple = 2 ** (len(spec.widths) - 1)

    def _embed(self, t: torch.Tensor) -> torch.Tensor:
        half = self.t_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        return self.t_mlp(torch.cat([angles.sin(), angles.cos()], dim=1))

    def forward(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = noisy.shape[2:]
        pad = []
        for n in reversed(shape):
            pad += [0, (-n) % self.multiple]
        x = F.pad(torch.cat([noisy, cond], dim=1), pad)
        t_embed = self._embed(t) + self.g_mlp(global_features(cond))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x), t_embed)
            skips.append(x)
        for block in self.up:
            skips.pop()
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skips[-1]], dim=1), t_embed)
        out = self.out(x)
        return out[(slice(None), slice(None), *(slice(0, n) for n in shape))]


class ForceDiffusion(nn.Module):
    def __init__(self, spec: ControlSpec):
        super().__init__()
        self.spec = spec
        self.net = DenoiserUNet(spec)

    @staticmethod
    def drop_sketch(cond: torch.Tensor) -> torch.Tensor:
        """The unconditional input of classifier-free guidance: the fluid without the sketch."""
        out = cond.clone()
        out[:, fluid_channels_count(cond.ndim - 2) : -1] = 0
        return out

    def loss(self, field: torch.Tensor, cond: torch.Tensor, weight: torch.Tensor, drop: float = 0.1):
        """ε-prediction MSE at random timesteps, weighted per cell (`weight` broadcast over channels)."""
        n = field.shape[0]
        t = torch.randint(1, TIMESTEPS + 1, (n,), device=field.device)
        alpha_bar = _alpha_bar(t.float()).reshape(n, *(1,) * (field.ndim - 1))
        noise = torch.randn_like(field)
        noisy = alpha_bar.sqrt() * field + (1 - alpha_bar).sqrt() * noise
        dropped = torch.rand(n, device=field.device) < drop
        if dropped.any():
            cond = torch.where(dropped.reshape(n, *(1,) * (cond.ndim - 1)), self.drop_sketch(cond), cond)
        # Weighting: ε-error on the nearly clean steps, but the equivalent x0-error (ε-error / SNR) on the
        # noisy ones. Plain ε-MSE hardly rewards getting x0 right where the noise hides it, which is exactly
        # where only the sketch can say what the field is (without this the sketch was ignored).
        snr = alpha_bar / (1 - alpha_bar)
        per_step = (1 / snr).clamp_min(1.0)
        error = (self.net(noisy, cond, t) - noise) ** 2 * weight * per_step
        return error.sum() / (weight.sum() * field.shape[1]).clamp_min(1.0)

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, steps: int = 10, guidance: float = 1.0, generator=None
    ) -> torch.Tensor:
        """Deterministic DDIM (η = 0) in `steps` steps; guidance > 1 extrapolates away from the
        unconditional prediction (classifier-free guidance, twice the network calls)."""
        n = cond.shape[0]
        shape = (n, self.spec.field_channels, *cond.shape[2:])
        # the noise is drawn on the CPU, so a seed gives the same plan on any device
        x = torch.randn(shape, generator=generator, dtype=cond.dtype).to(cond.device)
        times = torch.linspace(TIMESTEPS, 0, steps + 1).round()
        guided = guidance != 1.0
        both = torch.cat([cond, self.drop_sketch(cond)]) if guided else cond
        for t, t_next in zip(times[:-1], times[1:]):
            inputs = torch.cat([x, x]) if guided else x
            eps = self.net(inputs, both, t.repeat(inputs.shape[0]).to(cond.device))
            if guided:
                conditional, unconditional = eps.chunk(2)
                eps = unconditional + guidance * (conditional - unconditional)
            a, a_next = _alpha_bar(t), _alpha_bar(t_next)
            x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-CLAMP, CLAMP)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # consistent with the clamped estimate
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x


def save_control(model: ForceDiffusion, path: Path, metadata: dict) -> None:
    write_weights(model, model.spec, path, metadata)


def load_control(path: Path) -> ForceDiffusion:
    """Raises neural.model.WeightsError with a one-line reason for missing, corrupt or mismatched files."""
    spec, tensors = read_weights(path, ControlSpec, WEIGHTS_VERSION)
    model = ForceDiffusion(spec)
    load_state(model, tensors, Path(path))
    return model.to(device.current())
