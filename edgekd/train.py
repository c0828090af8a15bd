"""The training loop shared by teacher training, distillation and quantization-aware training.

Each epoch ends with a checkpoint (model, optimizer, schedule, epoch) written atomically, so a
run killed at any point resumes from its last finished epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader

from edgekd import compute, distributed
from edgekd.errors import EdgekdError
from edgekd.progress import log, progress

# (model, batch from the loader) -> loss; a batch starts with images and labels
LossFn = Callable[[nn.Module, list[torch.Tensor]], torch.Tensor]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=0)
    lr: float = Field(0.05, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    weight_decay: float = Field(5e-4, ge=0)
    clip_grad_norm: float | None = Field(
        None,
        gt=0,
        description="clip the gradients' total L2 norm to this (1.0 steadies a teacher and student "
        "of very different architectures); empty: no clipping",
    )


def _optimizer(modules: list[nn.Module], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    total = max(1, cfg.epochs * steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def seed_torch(*seeds: int) -> None:
    """Seeds torch's global generator from `seeds`. It draws weight initialisation, dropout,
    shuffled orders and DataLoader worker seeds, so runs with the same seeds repeat."""
    torch.manual_seed(int(np.random.SeedSequence(list(seeds)).generate_state(1)[0]))


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise EdgekdError(f"checkpoint {path} is corrupt ({type(e).__name__}); delete it to start over") from None


def fit(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: LossFn,
    cfg: TrainConfig,
    name: str,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int], None] | None = None,
    extra: nn.Module | None = None,
    teacher: nn.Module | None = None,
    mixed_precision: bool = True,
    seed: int = 0,
) -> nn.Module:
    """Trains `model` (and `extra`, e.g. a loss's adapters) in place for `cfg.epochs`,
    resuming from `checkpoint` when it exists. `teacher`: a frozen model that `loss_fn` runs.
    Each epoch seeds torch from (`seed`, epoch): a resumed run shuffles as an unbroken one would.

    Runs on the training device (`edgekd.compute`; with `mixed_precision`, bf16 autocast and
    channels_last on CUDA) and leaves the models where they were (on the CPU). Under torchrun,
    every process trains its shard of the data through DDP and rank 0 writes the checkpoints.
    """
    fast = compute.fast(mixed_precision)
    modules = [model] + ([extra] if extra is not None else [])
    placed = modules + ([teacher] if teacher is not None else [])
    with compute.on_device(*placed, channels_last=fast) as device:
        opt = _optimizer(modules, cfg)
        sched = _schedule(opt, cfg, len(loader))
        start = 0
        if checkpoint is not None and checkpoint.is_file():
            state = load_checkpoint(checkpoint)
            model.load_state_dict(state["model"])
            if extra is not None:
                extra.load_state_dict(state["extra"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["schedule"])
            start = state["epoch"]
            log(f"{name}: resuming after epoch {start}/{cfg.epochs} from {checkpoint}")
        distributed.barrier()  # every rank has read the checkpoint before rank 0 writes the next
        trained = distributed.wrap(model, extra)
        seen = 0
        with progress() as bar:
            task = bar.add_task(name, total=cfg.epochs * len(loader), completed=start * len(loader), status="")
            for epoch in range(start, cfg.epochs):
                seed_torch(seed, epoch)
                if on_epoch:
                    on_epoch(epoch)
                if hasattr(loader.sampler, "set_epoch"):  # DistributedSampler, ViewSampler
                    loader.sampler.set_epoch(epoch)  # a new shuffle (and view) every epoch
                model.train()
                running, seen = 0.0, 0
                for batch in loader:
                    batch = compute.to_device(batch, device, channels_last=fast)
                    with compute.autocast(fast):
                        loss = loss_fn(trained, batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip_grad_norm is not None:
                        trainable = [p for group in opt.param_groups for p in group["params"]]
                        torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad_norm)
                    opt.step()
                    sched.step()
                    running += loss.item() * len(batch[0])
                    seen += len(batch[0])
                    bar.update(task, advance=1, status=f"epoch {epoch + 1} loss {running / seen:.3f}")
                if checkpoint is not None:
                    state = {"model": cpu_state(model), "optimizer": opt.state_dict(), "schedule": sched.state_dict()}
                    if extra is not None:
                        state["extra"] = cpu_state(extra)
                    distributed.save(state | {"epoch": epoch + 1}, checkpoint)
        if distributed.world_size() > 1:
            log(f"{name}: {distributed.check_in_step(model, extra, seen, len(loader.dataset))}")
    model.eval()
    return model


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict as checkpoints keep it: CPU tensors in the default memory format, never
    half precision (autocast computes in bf16 but must leave the weights fp32)."""
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in module.state_dict().items()}
    half = [k for k, v in state.items() if v.dtype in (torch.float16, torch.bfloat16)]
    if half:
        raise RuntimeError(f"half-precision weights would be checkpointed: {half[:3]}")
    return state


def cross_entropy(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over a whole loader, in fp32, on `device` (default: the training device)."""
    model.eval()
    logits, labels = [], []
    with compute.on_device(model, target=device) as device:
        for images, y in loader:
            logits.append(model(images.to(device)).float().cpu())
            labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())
