"""The learned stepper's network: a small U-Net over the grid (2D or 3D), as in NeuralMPM.

It maps one frame's grid state to the grid velocities of M sub-intervals of the frame, as residuals on the
current velocity, with the normalisation scales stored beside the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load, save_file
from torch import nn

from neural.grid import N_MATERIALS, n_channels
from neural.projection import sliding_acceleration
from sim.atomic import atomic_path

WEIGHTS_VERSION = 1


@dataclass
class ModelSpec:
    """Everything needed to rebuild the model and to decide which scenes it fits."""

    KIND: ClassVar[str] = "learned stepper"  # in messages about metadata of the wrong kind

    family: str
    dim: int
    h: float  # grid cell size (m)
    frame_dt: float
    sub_intervals: int
    materials: list[str]
    obstacles: bool  # trained with obstacles in the scenes
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 96])
    v_scale: float = 1.0  # m/s
    a_scale: float = 10.0  # m/s^2
    dv_scale: float = 0.1  # m/s
    # Physics prior: the network corrects v0 + (gravity + external acceleration) * t instead of predicting
    # the whole change, so free fall and a brush's push are exact before any learning.
    physics_prior: bool = False
    # With the prior, beside a solid the acceleration's push into it is dropped and its slide along the
    # surface kept (neural.projection.sliding_acceleration) instead of no acceleration on solid nodes.
    sliding_prior: bool = False
    gravity: list[float] = field(default_factory=lambda: [0.0, -9.81])
    version: int = WEIGHTS_VERSION
    # Run the U-Net under bfloat16 autocast (trained so; on CPUs with AMX/AVX-512 bf16 a 3D forward is ~3x
    # faster). Off for weights written before the field existed.
    autocast: bool = False

    @property
    def in_channels(self) -> int:
        return n_channels(self.dim)

    @property
    def out_channels(self) -> int:
        return self.sub_intervals * self.dim


def _block(conv, c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        conv(c_in, c_out, 3, padding=1), nn.GELU(), conv(c_out, c_out, 3, padding=1), nn.GELU()
    )


class UNet(nn.Module):
    def __init__(self, dim: int, c_in: int, c_out: int, widths: list[int]):
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        self.pool = nn.AvgPool2d(2) if dim == 2 else nn.AvgPool3d(2)
        self.encoders = nn.ModuleList()
        c = c_in
        for w in widths:
            self.encoders.append(_block(conv, c, w))
            c = w
        self.decoders = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.decoders.append(_block(conv, c + w, w))
            c = w
        self.head = conv(c, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = nn.functional.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = decoder(torch.cat([x, skip], dim=1))
        return self.head(x)


class GridStepper(nn.Module):
    """Normalises the features, runs the U-Net and returns absolute grid velocities (B, M, dim, *grid)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.net = UNet(spec.dim, spec.in_channels, spec.out_channels, spec.widths)

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Scale velocities and accelerations to order one; fractions and the solid mask already are."""
        d, k = self.spec.dim, N_MATERIALS
        scale = torch.ones(features.shape[1], dtype=features.dtype, device=features.device)
        scale[k : k + d] = 1.0 / self.spec.v_scale
        scale[k + d + 1 : k + 2 * d + 1] = 1.0 / self.spec.a_scale
        scale[k + 2 * d + 1 :] = 1.0 / self.spec.v_scale
        return features * scale.view(1, -1, *([1] * d))

    def residual(self, features: torch.Tensor) -> torch.Tensor:
        """The normalised velocity change per sub-interval (B, M*dim, *grid): what the loss sees; float32
        even when the network runs under bfloat16 autocast."""
        return self.net(self.normalise(features)).float()

    def baseline(self, features: torch.Tensor, gravity=None) -> torch.Tensor:
        """What the network corrects (B, M, dim, *grid): the current velocity, plus, with the physics prior,
        (gravity + external acceleration) times each sub-interval's mid-time, outside solids."""
        d, m = self.spec.dim, self.spec.sub_intervals
        velocity = features[:, N_MATERIALS : N_MATERIALS + d]
        base = velocity[:, None].expand(-1, m, *velocity.shape[1:])
        if not self.spec.physics_prior:
            return base
        g = torch.as_tensor(
            self.spec.gravity if gravity is None else gravity, dtype=features.dtype, device=features.device
        )
        accel = features[:, N_MATERIALS + d + 1 : N_MATERIALS + 2 * d + 1] + g.view(1, d, *([1] * d))
        solid = features[:, N_MATERIALS + d]
        if self.spec.sliding_prior:
            accel = sliding_acceleration(accel, solid)
        else:
            accel = accel * (1.0 - solid[:, None])  # no push into walls
        times = (torch.arange(m, dtype=features.dtype, device=features.device) + 0.5) * self.spec.frame_dt / m
        return base + times.view(1, m, 1, *([1] * d)) * accel[:, None]

    def forward(self, features: torch.Tensor, residual: bool = False, gravity=None) -> torch.Tensor:
        """Grid velocities (B, M, dim, *grid); with residual=True the normalised correction the loss sees
        (going through forward keeps DDP's gradient hooks in play)."""
        if residual:
            return self.residual(features)
        d, m = self.spec.dim, self.spec.sub_intervals
        change = self.residual(features) * self.spec.dv_scale
        return self.baseline(features, gravity) + change.reshape(change.shape[0], m, d, *change.shape[2:])


def bf16_autocast(enabled: bool, device_type: str = "cpu"):
    """bfloat16 autocast for the U-Net's convolutions (a no-op context when not enabled)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


def write_weights(module: nn.Module, spec, path: Path, metadata: dict) -> None:
    """Weights as safetensors; the (dataclass) spec, provenance and the file's SHA-256 as JSON beside them
    (path with .json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".safetensors") as tmp:
        save_file(
            {k: v.contiguous() for k, v in module.state_dict().items()},
            str(tmp),
            metadata={"spec": json.dumps(asdict(spec))},
        )
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    meta = {**metadata, "spec": asdict(spec), "sha256": digest}
    with atomic_path(path.with_suffix(".json"), ".json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")


def save_weights(model: GridStepper, path: Path, metadata: dict) -> None:
    write_weights(model, model.spec, path, metadata)


class WeightsError(ValueError):
    """Weights that cannot be used: missing, corrupt or mismatched. The message says why in one line."""


_JSON_TYPES = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float)}


def spec_problem(spec) -> str | None:
    """What is wrong with a spec read from JSON (a field of the wrong type; a number that is not finite,
    or, outside lists like gravity, not positive), or None. Garbled values would otherwise fail deep inside
    a frame."""
    for f in fields(spec):
        value, kind = getattr(spec, f.name), str(f.type)
        inner = kind.removeprefix("list[").removesuffix("]") if kind.startswith("list[") else None
        if (inner or kind) not in _JSON_TYPES:
            continue
        items = value if inner is not None and isinstance(value, list) else [value]
        ok = (inner is None or isinstance(value, list)) and all(
            isinstance(v, _JSON_TYPES[inner or kind]) and (kind == "bool" or not isinstance(v, bool))
            for v in items
        )
        if ok and (inner or kind) in ("int", "float"):
            ok = all(math.isfinite(v) and (kind == "list[float]" or v > 0) for v in items)
        if not ok:
            return f"{f.name} = {value!r} is not a valid {kind}"
    return None


def read_weights(path: Path, spec_type, version: int):
    """(spec, tensors) through safetensors only (nothing in the file is executed). Raises WeightsError."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{meta_path}: missing or unreadable metadata ({type(e).__name__}: {e})") from None
    try:
        spec = spec_type(**meta["spec"])
    except (KeyError, TypeError) as e:  # e.g. a controller's metadata beside stepper weights
        raise WeightsError(f"{meta_path}: not {spec_type.KIND} metadata ({type(e).__name__}: {e})") from None
    problem = spec_problem(spec)
    if problem:
        raise WeightsError(f"{meta_path}: garbled metadata ({problem})")
    if spec.version != version:
        raise WeightsError(f"{path}: weights version {spec.version}, this sluice reads {version}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read weights ({e.strerror})") from None
    # safetensors checks the header, not the values: a digest (written beside weights since it existed)
    # catches bytes changed in the middle, and the finiteness check NaN or infinite weights.
    if "sha256" in meta and hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise WeightsError(f"{path}: corrupt weights file (its SHA-256 differs from {meta_path.name}'s)")
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
        raise WeightsError(f"{path}: corrupt weights file ({e})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: corrupt weights file (non-finite values in {name})")
    return spec, tensors


def load_state(model: nn.Module, tensors: dict, path: Path) -> None:
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise WeightsError(
            f"{path}: weights do not match their metadata ({str(e).splitlines()[0]})"
        ) from None
    model.eval()


def load_weights(path: Path) -> GridStepper:
    """Load through safetensors only (nothing in the file is executed). Raises WeightsError."""
    spec, tensors = read_weights(path, ModelSpec, WEIGHTS_VERSION)
    model = GridStepper(spec)
    load_state(model, tensors, path)
    return model
