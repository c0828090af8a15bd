"""The training loop shared by teacher training, distillation and quantization-aware training.

Each epoch ends with a checkpoint (model, optimizer, schedule, epoch, and the EMA and best
epoch's weights when kept) written atomically, so a run killed at any point resumes from its
last finished epoch and ends with the weights an unbroken run would.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from edgekd import interrupts
from edgekd.errors import EdgekdError
from edgekd.progress import log, progress
from edgekd.training import compute, distributed

# (model, batch from the loader) -> loss; a batch starts with images and labels
LossFn = Callable[[nn.Module, list[torch.Tensor]], torch.Tensor]
# model -> its validation score, higher is better (e.g. its accuracy on the validation set)
EvaluateFn = Callable[[nn.Module], float]


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
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the weights, updated every step with this "
        "decay (e.g. 0.999; BatchNorm statistics too), and end training with it; empty: off",
    )
    keep: Literal["last", "best"] = Field(
        "last",
        description="the weights training ends with: the last epoch's, or the epoch's with the best "
        "validation accuracy (measured after every epoch, of the EMA when on; ties: the earlier)",
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
    on_step: Callable[[float], None] | None = None,
    check_epoch: Callable[[int, int, nn.Module], None] | None = None,
    extra: nn.Module | None = None,
    teacher: nn.Module | None = None,
    mixed_precision: bool = True,
    seed: int = 0,
    evaluate: EvaluateFn | None = None,
    section: str = "train",
) -> nn.Module:
    """Trains `model` (and `extra`, e.g. a loss's adapters) in place for `cfg.epochs`,
    resuming from `checkpoint` when it exists. `teacher`: a frozen model that `loss_fn` runs.
    Each epoch seeds torch from (`seed`, epoch): a resumed run shuffles as an unbroken one would.
    `evaluate` scores the weights after each epoch, for `cfg.keep == "best"` (required then).
    `on_epoch(epoch)` runs before each epoch, `on_step(epochs done, fractional)` before each step,
    `check_epoch(epoch, epochs, model)` after each epoch, before its checkpoint (it may raise).
    `section`: where `cfg` is set (`distill.train`), for the message when the loss stops being finite.

    Runs on the training device (`edgekd.training.compute`; with `mixed_precision`, bf16 autocast and
    channels_last on CUDA) and leaves the models where they were (on the CPU). Under torchrun,
    every process trains its shard of the data through DDP and rank 0 writes the checkpoints.
    """
    if cfg.keep == "best" and evaluate is None:
        raise ValueError(f"{name}: keep='best' needs an evaluate function to pick the best epoch")
    fast = compute.fast(mixed_precision)
    modules = [model] + ([extra] if extra is not None else [])
    placed = modules + ([teacher] if teacher is not None else [])
    with compute.on_device(*placed, channels_last=fast) as device:
        opt = _optimizer(modules, cfg)
        sched = _schedule(opt, cfg, len(loader))
        ema = _ema(model, cfg.ema_decay)
        best: dict | None = None  # keep="best": {"epoch", "score", "model"} of the best epoch so far
        start = 0
        if checkpoint is not None and checkpoint.is_file():
            state = load_checkpoint(checkpoint)
            model.load_state_dict(state["model"])
            if extra is not None:
                extra.load_state_dict(state["extra"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["schedule"])
            if ema is not None:
                ema.load_state_dict(_saved(state, "ema", checkpoint))
            if cfg.keep == "best":
                best = _saved(state, "best", checkpoint)
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
                for step, batch in enumerate(loader):
                    if on_step:
                        on_step(epoch + step / len(loader))  # epochs done: warm-ups and schedules ramp per step
                    batch = compute.to_device(batch, device, channels_last=fast)
                    with compute.autocast(fast):
                        loss = loss_fn(trained, batch)
                    value = loss.item()
                    if not math.isfinite(value):  # before the step: this epoch's weights are never kept
                        raise EdgekdError(_non_finite_loss(name, value, epoch, cfg, section, fast, checkpoint))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip_grad_norm is not None:
                        trainable = [p for group in opt.param_groups for p in group["params"]]
                        torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad_norm)
                    opt.step()
                    sched.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    running += value * len(batch[0])
                    seen += len(batch[0])
                    bar.update(task, advance=1, status=f"epoch {epoch + 1} loss {running / seen:.3f}")
                if check_epoch is not None:  # may stop the run before this epoch is checkpointed
                    check_epoch(epoch, cfg.epochs, model)
                if cfg.keep == "best":
                    best = _better(best, ema.module if ema is not None else model, epoch + 1, evaluate, name, cfg)
                if checkpoint is not None:
                    state = {"model": cpu_state(model), "optimizer": opt.state_dict(), "schedule": sched.state_dict()}
                    if extra is not None:
                        state["extra"] = cpu_state(extra)
                    if ema is not None:
                        state["ema"] = cpu_state(ema)
                    if best is not None:
                        state["best"] = best
                    distributed.save(state | {"epoch": epoch + 1}, checkpoint)
                interrupts.check()  # a Ctrl-C a library swallowed during the epoch stops here
        if best is not None:
            log(f"{name}: keeping epoch {best['epoch']}/{cfg.epochs} (val accuracy {best['score']:.2%})")
            model.load_state_dict(best["model"])
        elif ema is not None:
            model.load_state_dict(ema.module.state_dict())
        if distributed.world_size() > 1:
            log(f"{name}: {distributed.check_in_step(model, extra, seen, len(loader.dataset))}")
    model.eval()
    return model


def _non_finite_loss(
    name: str, value: float, epoch: int, cfg: TrainConfig, section: str, bf16: bool, checkpoint: Path | None
) -> str:
    """Why training stopped, the likely cause and fix, and what stays of it."""
    fixes = f"lower {section}.lr ({cfg.lr:g}) or set {section}.clip_grad_norm = 1.0"
    if bf16:
        fixes += ", or compute.mixed_precision = false (bf16 overflows)"
    if checkpoint is None or epoch == 0:
        kept = "no epoch had finished"
    else:
        kept = f"epoch {epoch}'s checkpoint stays ({checkpoint}), so --resume goes on from it"
    return (
        f"{name}: the loss became {value} in epoch {epoch + 1}/{cfg.epochs}, so the stage stopped; usually a "
        f"learning rate too high for this model and loss: {fixes}; {kept}"
    )


def _ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """torch's EMA of `model` (a copy on its device); use_buffers: BatchNorm statistics are
    averaged with the weights rather than copied from the last step."""
    if decay is None:
        return None
    average = get_ema_multi_avg_fn(decay)

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        # torch's EMA rounds integer tensors down (127 * d + 127 * (1 - d) can give 126); they are
        # counts and settings (BatchNorm's batch count, NNCF's bit widths and levels): copied
        if averaged[0].is_floating_point():
            average(averaged, current, n)
        else:
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def _saved(state: dict, key: str, checkpoint: Path):
    if key not in state:  # written with the option off: resuming would not give an unbroken run's weights
        raise EdgekdError(f"checkpoint {checkpoint} holds no '{key}' state for these training options; delete it")
    return state[key]


def _better(best: dict | None, model: nn.Module, epoch: int, evaluate: EvaluateFn, name: str, cfg: TrainConfig) -> dict:
    """`best`, or this epoch's weights when they score higher (ties keep the earlier epoch)."""
    score = evaluate(model) if distributed.is_main() else 0.0
    if distributed.world_size() > 1:  # rank 0's score decides: every rank must keep the same epoch
        scores = [score]
        dist.broadcast_object_list(scores, 0)
        score = scores[0]
    log(f"{name}: epoch {epoch}/{cfg.epochs} val accuracy {score:.2%}")
    if best is not None and score <= best["score"]:
        return best
    # cloned: on the CPU, cpu_state's tensors are the model's own, which later steps change
    return {"epoch": epoch, "score": score, "model": {k: v.clone() for k, v in cpu_state(model).items()}}


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
