"""`train`: fit the grid U-Net to a family's shards, with noise injection, checkpoints and --resume.

Runs under plain python or torchrun (DDP: gloo on the CPU, nccl on a GPU); rank 0 writes everything.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import os
import shlex
import struct
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from neural.grid import N_MATERIALS
from neural.model import GridStepper, ModelSpec, bf16_autocast, save_weights

MATERIALS = ("water", "jelly", "snow", "sand")
EARLY_FRAMES = 12


@dataclass
class TrainConfig:
    family: str
    data: Path
    out: Path  # final weights .safetensors
    run_dir: Path  # checkpoints and loss curves
    steps: int = 8000
    batch: int = 16
    lr: float = 2e-3
    noise: float = 0.03  # input velocity noise, in units of v_scale
    # Pushforward (Brandstetter et al. 2022, as NeuralMPM's autoregressive training): from this share of
    # the steps on, this share of each batch starts from the model's own previous frame (no gradient
    # through it), so the model learns to answer its own errors, compression among them.
    pushforward_after: float = 0.3
    pushforward_share: float = 0.5
    pushforward_frames: int = 1  # each pushforward pick unrolls 1..this many of the model's own frames
    # A share of each batch drawn from the first EARLY_FRAMES frames of the trajectories: a resting
    # column's first frames (the onset of a collapse), which uniform sampling visits in 1 pick of 8.
    early_share: float = 0.0
    # Rollout loss (as NeuralMPM's autoregressive unrolls): this many picks per step unroll the model's own
    # `rollout_frames` frames from a shard frame with gradient through every one of them (prediction,
    # projection, advection, transfer), scored on the state they reach against the shard's; 0: off.
    rollout_frames: int = 0
    rollout_picks: int = 2
    rollout_weight: float = 1.0
    init: Path | None = None  # start from these weights (fine-tuning; their scales are kept)
    resume: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    max_trajectories: int | None = None
    holdout: int = 4  # trajectories kept out of training, for the validation loss
    physics_prior: bool = True
    sliding_prior: bool = False  # neural.model.ModelSpec.sliding_prior; fine-tuned weights may gain it
    autocast: bool | None = None  # bfloat16 autocast for the U-Net; None: on for 3D data (~2.6x faster)


def _npz_array(path: Path, name: str) -> np.ndarray:
    """One array of a .npz, memory-mapped when stored uncompressed (as datagen writes shards): a 3D
    dataset (3.3 MB of fp16 grids per frame) need not fit in memory. Compressed members are read."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with z.open(info) as f:
                return np.lib.format.read_array(f)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the member's local file header: its name and extra field come next
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject or not shape:
        with np.load(path) as z:
            return z[name]
    return np.memmap(path, dtype, "c", offset, shape, "F" if fortran else "C")


class Shards:
    """All trajectories of a family (fp16 grids, memory-mapped from the shards), sampled as (trajectory,
    frame) pairs."""

    def __init__(self, folder: Path, limit: int | None = None):
        paths = sorted(folder.glob("traj_*.npz"))[:limit]
        if not paths:
            raise FileNotFoundError(f"{folder}: no traj_*.npz shards (run `python main.py datagen` first)")
        self.features, self.targets, self.metas = [], [], []
        for p in paths:
            self.features.append(_npz_array(p, "features"))
            self.targets.append(_npz_array(p, "targets"))
            with np.load(p) as z:
                self.metas.append(json.loads(str(z["meta"])))
        self.paths = paths
        self.frames = sum(len(f) for f in self.features)
        self._particles: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, indices: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.from_numpy(np.stack([self.features[t][k] for t, k in indices])).float()
        y = torch.from_numpy(np.stack([self.targets[t][k] for t, k in indices])).float()
        return f, y

    def particles(self, t: int) -> dict:
        """Trajectory t's particle arrays (positions memory-mapped), its projection wall mask and capacity."""
        if t not in self._particles:
            from neural.grid import ModelGrid
            from sim.scene import parse_scene

            with np.load(self.paths[t]) as z:
                scene = parse_scene(json.loads(str(z["scene"])), str(self.paths[t]))
                arrays = {k: torch.from_numpy(z[k]) for k in ("mass", "volume", "material", "solid")}
            meta = self.metas[t]
            grid = ModelGrid(len(meta["size"]), meta["h"], tuple(meta["size"]))
            arrays["x"] = _npz_array(self.paths[t], "x")
            arrays["grid"] = grid
            arrays["walls"] = torch.from_numpy(grid.solid_mask(scene.obstacles, walls_on_boundary=True))
            arrays["capacity"] = torch.from_numpy(grid.capacity(scene.obstacles))
            self._particles[t] = arrays
        return self._particles[t]


@torch.no_grad()
def pushforward(
    model: GridStepper, shards: Shards, picks: list[tuple[int, int]], clean: torch.Tensor, steps: list[int]
) -> torch.Tensor:
    """The features of frame k+n as the model itself would produce them in n frames from frame k (`clean`,
    the shard's features of frame k; n from `steps`, one per pick): predict, project as the stepper does,
    advect the particles (the shard's at frame k, then the model's own) and transfer them again. The
    external acceleration of each frame is the shard's."""
    out = []
    for (t, k), f, n in zip(picks, clean, steps):
        x = torch.from_numpy(np.asarray(shards.particles(t)["x"][k], np.float32))
        for m in range(n):
            f, x = _advance_own(model, shards, t, k + m, f, x)
        out.append(f)
    return torch.stack(out)


def _advance_own(model: GridStepper, shards: Shards, t: int, k: int, f: torch.Tensor, x: torch.Tensor):
    """One of the model's own frames from features `f` and particles `x` at shard frame k of trajectory t,
    as the stepper runs it (predict, project, advect, transfer), with the shard's external acceleration of
    frame k+1: the next features and particles. Differentiable (rollout_loss); pushforward runs it
    without gradient."""
    from neural.grid import advect, frame_features, velocity_of
    from neural.projection import project, projects

    spec = model.spec
    p = shards.particles(t)
    grid = p["grid"]
    gravity = torch.tensor(shards.metas[t].get("gravity", spec.gravity))
    velocities = model(f[None], gravity=gravity)[0]
    if projects(spec.materials):
        velocities, _ = project(velocities, f[:N_MATERIALS], p["walls"], p["capacity"], grid.h, spec.frame_dt)
    x, v = advect(x, velocities, grid, spec.frame_dt)
    nxt = torch.from_numpy(np.asarray(shards.features[t][k + 1], np.float32))
    accel = nxt[N_MATERIALS + spec.dim + 1 : N_MATERIALS + 2 * spec.dim + 1]
    f = frame_features(x, v, p["mass"], p["volume"], p["material"], p["solid"], accel, velocity_of(f), grid)
    return f, x


def rollout_loss(
    model: GridStepper, shards: Shards, picks: list[tuple[int, int]], frames: int
) -> torch.Tensor:
    """The state error of the model's own `frames`-frame rollouts from each pick (trajectory, frame),
    gradient through every frame: per frame, the mean square error of the volume fractions and of the
    velocity (over v_scale) on the nodes that hold material in the rollout or in the shard, averaged
    over frames and picks. The one-frame loss sees each frame from the true state; this sees where the
    model's own frames lead, which is what a rollout's error (and the scene benchmark) is made of."""
    spec = model.spec
    total = torch.zeros(())
    velocity = slice(N_MATERIALS, N_MATERIALS + spec.dim)
    for t, k in picks:
        f = torch.from_numpy(np.asarray(shards.features[t][k], np.float32))
        x = torch.from_numpy(np.asarray(shards.particles(t)["x"][k], np.float32))
        for m in range(frames):
            f, x = _advance_own(model, shards, t, k + m, f, x)
            true = torch.from_numpy(np.asarray(shards.features[t][k + m + 1], np.float32))
            held = ((f[:N_MATERIALS].sum(0) > 0) | (true[:N_MATERIALS].sum(0) > 0)).float()
            error = (f[:N_MATERIALS] - true[:N_MATERIALS]).pow(2).sum(0)
            error = error + ((f[velocity] - true[velocity]) / spec.v_scale).pow(2).sum(0)
            total = total + (error * held).sum() / held.sum().clamp_min(1.0)
    return total / (frames * max(len(picks), 1))


def fit_scales(shards: Shards, spec: ModelSpec) -> dict[str, float]:
    """Normalisation scales from the data: RMS velocity, acceleration, and what the network must correct."""
    v, a, dv = [], [], []
    k, dim = N_MATERIALS, spec.dim
    probe = GridStepper(spec)
    for features, targets in zip(shards.features[:32], shards.targets[:32]):
        f = torch.from_numpy(np.ascontiguousarray(features[::5])).float()
        y = torch.from_numpy(np.ascontiguousarray(targets[::5])).float()
        mass = f[:, :k].sum(1, keepdim=True) > 0
        vel = f[:, k : k + dim]
        v.append(vel.masked_select(mass.expand_as(vel)))
        acc = f[:, k + dim + 1 : k + 2 * dim + 1]
        a.append(acc[acc != 0])
        change = y.reshape(y.shape[0], spec.sub_intervals, dim, *y.shape[2:]) - probe.baseline(f)
        dv.append(change.masked_select(mass[:, None].expand_as(change)))

    def rms(xs: list[torch.Tensor], floor: float) -> float:
        values = torch.cat(xs) if xs else torch.zeros(0)
        return max(float(values.pow(2).mean().sqrt()), floor) if values.numel() else floor  # none: the floor

    return {"v_scale": rms(v, 0.1), "a_scale": rms(a, 1.0), "dv_scale": rms(dv, 0.01)}


def masked_loss(net, spec: ModelSpec, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE of the normalised velocity change on nodes that carry mass (empty nodes move nothing).
    `net` is the GridStepper or its DDP wrapper."""
    base = (net.module if hasattr(net, "module") else net).baseline(features)
    want = targets.reshape(targets.shape[0], spec.sub_intervals, spec.dim, *targets.shape[2:]) - base
    want = want.reshape(targets.shape) / spec.dv_scale
    mask = (features[:, :N_MATERIALS].sum(1, keepdim=True) > 0).float()
    with bf16_autocast(spec.autocast, features.device.type):
        predicted = net(features, residual=True)
    error = (predicted - want) ** 2 * mask
    return error.sum() / (mask.sum() * targets.shape[1]).clamp_min(1.0)


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    steps = [r["step"] for r in rows]
    ax.semilogy(steps, [r["train_loss"] for r in rows], label="train")
    val = [(r["step"], r["val_loss"]) for r in rows if r["val_loss"] is not None]
    if val:
        ax.semilogy(*zip(*val), label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("normalised MSE")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def optimise(model: torch.nn.Module, optimizer, loss: torch.Tensor, running: float | None) -> float:
    """One clipped gradient step; returns the running (exponential) mean of the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # The norm is taken after DDP's all-reduce, so every rank sees the same one and stops together.
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if not torch.isfinite(norm):
        raise FloatingPointError("non-finite training loss or gradient: the weights were not updated")
    optimizer.step()
    return running_mean(running, float(loss.detach()))


def running_mean(running: float | None, value: float) -> float:
    """The exponential running mean of a loss (the progress bar's and the metadata's)."""
    return value if running is None else 0.98 * running + 0.02 * value


def lr_schedule(step: int, steps: int) -> float:
    """Linear warm-up over 200 steps, then cosine decay to zero."""
    return min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))


def save_checkpoint(
    run_dir: Path, model, optimizer, step: int, rows: list[dict], train_loss: float, val_loss, began: float
) -> None:
    """Log the step's losses into `rows`, then write the weights (safetensors), the optimizer state, the
    loss log as CSV and its plot."""
    rows.append(
        {
            "step": step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "elapsed_s": time.time() - began,
        }
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(run_dir / "checkpoint.safetensors")
    )
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, run_dir / "checkpoint.optim.pt")
    with open(run_dir / "loss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, run_dir / "loss.png")


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer) -> tuple[int, list[dict]]:
    """(step, loss rows) of the run's checkpoint, loaded into model and optimizer; (0, []) if none."""
    ckpt = run_dir / "checkpoint.safetensors"
    if not ckpt.exists():
        return 0, []
    model.load_state_dict(load_file(str(ckpt)))
    state = torch.load(run_dir / "checkpoint.optim.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    start = int(state["step"])
    with open(run_dir / "loss.csv") as f:
        rows = [{k: (None if v == "" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    return start, [dict(r, step=int(r["step"])) for r in rows if r["step"] <= start]


def provenance(rows: list[dict], run_dir: Path) -> dict:
    return {
        "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "train_seconds": sum(r["elapsed_s"] for r in rows[-1:]),
        "loss_curve": str(run_dir / "loss.csv"),
    }


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    rank, world = _distributed()
    if world > 1 and cfg.rollout_frames > 0:  # its frames run outside DDP's one forward per backward
        raise ValueError("the rollout loss runs in one process (no torchrun)")
    torch.manual_seed(cfg.seed + rank)
    rng = np.random.default_rng([cfg.seed, rank])
    shards = Shards(cfg.data, cfg.max_trajectories)
    meta0 = shards.metas[0]
    dim = len(meta0["size"])
    holdout = min(cfg.holdout, max(len(shards) - 1, 0))
    train_ids = list(range(holdout, len(shards)))
    materials = sorted(
        {MATERIALS[int(m)] for p in shards.paths[:16] for m in np.unique(np.load(p)["material"])}
    )
    spec = ModelSpec(
        family=cfg.family,
        dim=dim,
        h=meta0["h"],
        frame_dt=meta0["frame_dt"],
        sub_intervals=meta0["sub_intervals"],
        materials=materials,
        obstacles="ramps" in cfg.family,
        physics_prior=cfg.physics_prior,
        sliding_prior=cfg.sliding_prior,
        gravity=meta0.get("gravity", [0.0, -9.81][:dim]),
        autocast=dim == 3 if cfg.autocast is None else cfg.autocast,
    )
    init_record = None
    if cfg.init is not None:  # read before training: the weights written at the end may replace the file
        model, init_record = _initial_model(cfg.init, spec)
        if cfg.sliding_prior:  # a changed prior: the network learns the new residual from these weights
            model.spec = dataclasses.replace(model.spec, sliding_prior=True)
        # Another family's weights (water3d's for water_tank3d) become this family's, their scales kept.
        model.spec = dataclasses.replace(model.spec, family=cfg.family)
        spec = model.spec
    else:
        spec = dataclasses.replace(spec, **fit_scales(shards, spec))
        model = GridStepper(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-5)
    start, rows = load_checkpoint(cfg.run_dir, model, optimizer) if cfg.resume else (0, [])
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    frames_per = [len(shards.features[t]) for t in range(len(shards))]
    bar = tqdm(
        total=cfg.steps, initial=start, desc=f"train {cfg.family}", unit="step", disable=not progress or rank
    )
    began = time.time()
    running = None
    rollout_running = None
    # Rollouts need rollout_frames frames after their start.
    long_enough = [t for t in train_ids if frames_per[t] > cfg.rollout_frames]
    pushforward_dropped = 0  # own frames that went non-finite (their picks trained on the shard's frame)
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_schedule(step, cfg.steps)
        chosen = rng.choice(train_ids, cfg.batch)
        picks = [(t, _pick_frame(rng, frames_per[t], cfg.early_share)) for t in chosen]
        features, targets = shards.batch(picks)
        if step >= cfg.pushforward_after * cfg.steps and cfg.pushforward_share > 0:
            # The first picks start 1..pushforward_frames frames earlier, from the model's own outputs.
            n = int(round(cfg.pushforward_share * cfg.batch))
            own = [i for i, (_, k) in enumerate(picks[:n]) if k > 0]
            if own:
                unroll = [
                    int(rng.integers(1, min(cfg.pushforward_frames, picks[i][1]) + 1))
                    if cfg.pushforward_frames > 1
                    else 1
                    for i in own
                ]
                early = [(picks[i][0], picks[i][1] - m) for i, m in zip(own, unroll)]
                clean, _ = shards.batch(early)
                own_frames = pushforward(model, shards, early, clean, unroll)
                # A model's own frame that went non-finite trains nothing: that pick keeps its shard frame.
                finite = torch.isfinite(own_frames.flatten(1)).all(1)
                for i, ok, frame in zip(own, finite.tolist(), own_frames):
                    if ok:
                        features[i] = frame
                pushforward_dropped += int((~finite).sum())
        # Noise on the input velocities, with clean targets: the model learns to correct its own drift.
        k = N_MATERIALS
        for lo in (k, k + 2 * dim + 1):
            mass = (features[:, :k].sum(1, keepdim=True) > 0).float()
            features[:, lo : lo + dim] += (
                cfg.noise * spec.v_scale * torch.randn_like(features[:, lo : lo + dim]) * mass
            )
        loss = masked_loss(ddp, spec, features, targets)
        if cfg.rollout_frames > 0 and cfg.rollout_picks > 0:
            starts = [
                (t, _pick_frame(rng, frames_per[t] - cfg.rollout_frames, cfg.early_share))
                for t in rng.choice(long_enough, cfg.rollout_picks)
            ]
            rollout = rollout_loss(model, shards, starts, cfg.rollout_frames)
            rollout_running = running_mean(rollout_running, float(rollout.detach()))
            loss = loss + cfg.rollout_weight * rollout
        try:
            running = optimise(model, optimizer, loss, running)
        except FloatingPointError as e:
            kept = (
                f"the checkpoint of step {rows[-1]['step']} in {cfg.run_dir} is intact"
                if rows
                else "no checkpoint yet"
            )
            raise FloatingPointError(f"{e} at step {step + 1}; {kept}") from None
        bar.update(1)
        bar.set_postfix(
            loss=f"{running:.4f}", **({"rollout": f"{rollout_running:.4f}"} if rollout_running else {})
        )
        last = step + 1 == cfg.steps
        if rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or last):
            val = validation_loss(model, shards, range(holdout)) if holdout else None
            save_checkpoint(cfg.run_dir, model, optimizer, step + 1, rows, running, val, began)
    bar.close()
    result = {
        "steps": cfg.steps,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "final_val_loss": rows[-1]["val_loss"] if rows else None,
        "pushforward_dropped": pushforward_dropped,
    }
    if rank == 0:
        metadata = {
            "family": cfg.family,
            "grid": {"dim": dim, "h": spec.h, "sub_intervals": spec.sub_intervals},
            "data": {
                "folder": str(cfg.data),
                "trajectories": len(shards),
                "frames": shards.frames,
                "holdout_trajectories": holdout,
                "solver_grid": meta0.get("solver_grid"),
                "solver_cell": (
                    max(meta0["size"]) / meta0["solver_grid"] if meta0.get("solver_grid") else None
                ),
            },
            **result,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "noise": cfg.noise,
            "pushforward": {
                "after": cfg.pushforward_after,
                "share": cfg.pushforward_share,
                "frames": cfg.pushforward_frames,
            },
            "early": {"share": cfg.early_share, "frames": EARLY_FRAMES},
            "rollout": {
                "frames": cfg.rollout_frames,
                "picks": cfg.rollout_picks,
                "weight": cfg.rollout_weight,
                "final_loss": rollout_running,
            },
            **({"init": init_record} if init_record else {}),
            "parameters": sum(p.numel() for p in model.parameters()),
            **provenance(rows, cfg.run_dir),
        }
        save_weights(model, cfg.out, metadata)
    if world > 1:
        torch.distributed.destroy_process_group()
    return result


def _pick_frame(rng: np.random.Generator, frames: int, early_share: float) -> int:
    """A training frame of a trajectory: one of its first EARLY_FRAMES with probability early_share,
    else any (no draw is spent on the choice when early_share is 0, so older runs replay)."""
    if early_share > 0 and rng.random() < early_share:
        return int(rng.integers(min(EARLY_FRAMES, frames)))
    return int(rng.integers(frames))


def _initial_model(path: Path, spec: ModelSpec) -> tuple[GridStepper, dict]:
    """The weights to fine-tune, checked against the data's grid and materials, and where they came from:
    the file, its digest (load_weights has checked it against the metadata) and that metadata's provenance."""
    import hashlib

    from neural.model import WeightsError, load_weights

    model = load_weights(path)
    for key in ("dim", "h", "frame_dt", "sub_intervals", "materials", "obstacles", "physics_prior"):
        if getattr(model.spec, key) != getattr(spec, key):
            raise WeightsError(
                f"{path}: its {key} is {getattr(model.spec, key)!r}, the data's {getattr(spec, key)!r}"
            )
    meta = json.loads(path.with_suffix(".json").read_text())  # load_weights has read it: it is there
    record = {
        "weights": str(path),
        "sha256": meta.get("sha256") or hashlib.sha256(path.read_bytes()).hexdigest(),
        **{k: meta[k] for k in ("command", "date", "steps", "final_val_loss", "data") if k in meta},
    }
    return model, record


@torch.no_grad()
def validation_loss(model: GridStepper, shards: Shards, trajectories) -> float:
    losses = []
    for t in trajectories:
        for k in range(0, len(shards.features[t]), 10):
            f, y = shards.batch([(t, k)])
            losses.append(float(masked_loss(model, model.spec, f, y)))
    return float(np.mean(losses))
