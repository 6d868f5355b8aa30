"""`train-control`: fit the sketch-to-force diffusion model on a family's reverse-modelling shards."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from control.condition import condition_channels, fluid_channels_count
from control.model import ControlSpec, ForceDiffusion, save_control
from neural.train import load_checkpoint, lr_schedule, optimise, provenance, save_checkpoint

EMPTY_CELL_WEIGHT = 0.1  # the force where no fluid goes changes nothing; learn it only lightly


@dataclass
class ControlTrainConfig:
    family: str
    data: Path
    out: Path
    run_dir: Path
    steps: int = 4000
    batch: int = 32
    lr: float = 2e-3
    holdout: float = 0.1  # share of the states kept for the held-out loss
    checkpoint_every: int = 250
    seed: int = 0
    resume: bool = False


class ControlShards:
    """Every example in memory as tensors (the datasets are small): condition, field, weight."""

    def __init__(self, folder: Path, label_scale: float):
        paths = sorted(folder.glob("state_*.npz"))
        if not paths:
            raise FileNotFoundError(f"{folder}: no control shards (run datagen-control first)")
        conditions, fields, weights, self.states = [], [], [], []
        for index, path in enumerate(paths):
            shard = np.load(path)
            label = shard["label"]  # (E, keys, *cells, dim)
            dim = label.shape[-1]
            fields.append(np.moveaxis(label, -1, 2).reshape(label.shape[0], -1, *label.shape[2:-1]))
            conditions.append(shard["condition"].astype(np.float32))
            weights.append(EMPTY_CELL_WEIGHT + (1 - EMPTY_CELL_WEIGHT) * shard["mask"][:, None])
            self.states += [index] * len(label)
        self.meta = json.loads(str(np.load(paths[0])["meta"]))
        self.dim, self.keys = dim, label.shape[1]
        self.condition = torch.from_numpy(np.concatenate(conditions))
        self.field = torch.from_numpy(np.concatenate(fields) / label_scale).float()
        self.weight = torch.from_numpy(np.concatenate(weights)).float()
        self.n_states = len(paths)
        self.states = np.array(self.states)

    def __len__(self) -> int:
        return len(self.states)


def mirror(condition: torch.Tensor, field: torch.Tensor, weight: torch.Tensor, dim: int):
    """The x-mirrored examples (gravity is vertical, so mirroring is a symmetry of the data)."""
    condition, field, weight = condition.flip(2), field.flip(2), weight.flip(2)
    condition = condition.clone()
    condition[:, [1, fluid_channels_count(dim) + 1]] *= -1  # x velocity and x tangent
    field = field.clone()
    field[:, 0::dim] *= -1  # x components of every key (channels are key-major: k * dim + d)
    return condition, field, weight


def batch_of(shards: ControlShards, picks: np.ndarray, flips: np.ndarray):
    condition, field, weight = shards.condition[picks], shards.field[picks], shards.weight[picks]
    if flips.any():
        f = torch.from_numpy(flips)
        mc, mf, mw = mirror(condition[f], field[f], weight[f], shards.dim)
        condition[f], field[f], weight[f] = mc, mf, mw
    return field, condition, weight


@torch.no_grad()
def validation_loss(model: ForceDiffusion, shards: ControlShards, ids: np.ndarray) -> float:
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)  # the same noise and timesteps every time, so the curve is comparable
    losses = [
        float(model.loss(*batch_of(shards, ids[k : k + 64], np.zeros(len(ids[k : k + 64]), bool)), drop=0.0))
        for k in range(0, len(ids), 64)
    ]
    torch.random.set_rng_state(state)
    return float(np.mean(losses))


def train_control(cfg: ControlTrainConfig, progress: bool = True) -> dict:
    from neural.families import FAMILY_MATERIALS

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    probe = ControlSpec(cfg.family, 2, 4, [], 1 / 60)
    shards = ControlShards(cfg.data, probe.label_scale)
    spec = ControlSpec(
        family=cfg.family,
        dim=shards.dim,
        keys=shards.keys,
        materials=sorted(FAMILY_MATERIALS[cfg.family]),
        frame_dt=1 / 60,
        cond_channels=condition_channels(shards.dim),
        widths=[24, 48, 96] if shards.dim == 2 else [16, 32, 64],  # 3D convolutions cost 3x per cell
    )
    held = int(round(cfg.holdout * shards.n_states))
    val_ids = np.flatnonzero(shards.states < held)
    train_ids = np.flatnonzero(shards.states >= held)
    model = ForceDiffusion(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-5)
    start, rows = load_checkpoint(cfg.run_dir, model, optimizer) if cfg.resume else (0, [])
    bar = tqdm(
        total=cfg.steps, initial=start, desc=f"train-control {cfg.family}", unit="step", disable=not progress
    )
    began, running = time.time(), None
    model.train()
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_schedule(step, cfg.steps)
        picks = rng.choice(train_ids, cfg.batch)
        loss = model.loss(*batch_of(shards, picks, rng.random(cfg.batch) < 0.5))
        running = optimise(model, optimizer, loss, running)
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            model.eval()
            val = validation_loss(model, shards, val_ids) if len(val_ids) else None
            model.train()
            save_checkpoint(cfg.run_dir, model, optimizer, step + 1, rows, running, val, began)
    bar.close()
    model.eval()
    result = {
        "steps": cfg.steps,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "final_val_loss": rows[-1]["val_loss"] if rows else None,
    }
    metadata = {
        "family": cfg.family,
        "data": {
            "folder": str(cfg.data),
            "kind": shards.meta.get("kind"),
            "states": shards.n_states,
            "examples": len(shards),
            "holdout_states": held,
        },
        **result,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "parameters": sum(p.numel() for p in model.parameters()),
        **provenance(rows, cfg.run_dir),
    }
    save_control(model, cfg.out, metadata)
    return result
