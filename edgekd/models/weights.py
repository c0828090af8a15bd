"""Pretrained weights for a model: the library's own (`default`, downloaded once into that
library's cache) or a local state_dict / safetensors file. The classifier always starts fresh
for the data's classes; every other weight must fit, except a stem that `small_input` reshaped."""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.models.card import ModelCard, Preprocessing
from edgekd.progress import log
from edgekd.training.teacher_files import state_dict_mismatch

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a torch.save file (plain, or a checkpoint's 'state_dict' / 'model',
    as edgekd, timm and most training scripts write them) or a safetensors file."""
    if not path.is_file():
        raise EdgekdError(f"student weights file {path} does not exist; pass --student-weights default, none or FILE")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise many kinds for a wrong or damaged file
        raise EdgekdError(
            f"cannot read student weights {path} ({type(e).__name__}); give a state_dict saved with torch.save "
            f"or safetensors ({', '.join(WEIGHT_SUFFIXES)})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgekdError(f"student weights {path} hold a {type(state).__name__}, not a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DistributedDataParallel's prefix


def fit_weights(model: nn.Module, state: dict[str, torch.Tensor], card: ModelCard, source: str) -> None:
    """Loads `state` into `model` in place, but for the classifier and a stem whose shape differs."""
    own = model.state_dict()
    head = card.classifier + "."
    fresh = {k for k in own if k.startswith(head)}
    fresh |= {k for k in own if k.startswith(card.stem + ".") and k in state and state[k].shape != own[k].shape}
    given = {k: v for k, v in state.items() if k not in fresh and not k.startswith(head)}
    expected = {k: v for k, v in own.items() if k not in fresh}
    mismatch = state_dict_mismatch(given, expected)
    if mismatch:
        raise EdgekdError(f"{source} do not fit {card.name}: {mismatch}; give weights saved from a {card.name} model")
    model.load_state_dict(given, strict=False)
    stem = sorted({k.rsplit(".", 1)[0] for k in fresh if not k.startswith(head)})
    new = [f"{card.classifier} (classifier)"] + [f"{s} (stem)" for s in stem[:1]]
    log(f"{card.name}: {source} loaded; started fresh: {', '.join(new)}")


def default_state(card: ModelCard) -> dict[str, torch.Tensor]:
    if card.pretrained_state is None:
        raise EdgekdError(f"{card.name} has no default pretrained weights; pass --student-weights FILE or none")
    return card.pretrained_state()


def torchvision_pretrained(name: str) -> tuple[Callable[[], dict], Callable[[], Preprocessing]]:
    """torchvision's DEFAULT weights of model `name` (cached under torch.hub.get_dir()), and their
    preprocessing (from the weights' transforms, so no download)."""
    from torchvision import models as tvm

    def weights():
        return tvm.get_model_weights(name).DEFAULT

    def state() -> dict[str, torch.Tensor]:
        w = weights()
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name
        try:
            return w.get_state_dict(progress=False)
        except Exception as e:  # offline: urllib's URLError; a damaged cached file: torch.load's many kinds
            raise EdgekdError(
                f"torchvision's pretrained {name} weights are not in its cache ({cached}) and could not be "
                f"downloaded ({str(e).splitlines()[0] if str(e) else type(e).__name__}); on a machine with internet "
                f"run `python -c \"import torchvision; torchvision.models.get_model_weights('{name}')"
                f'.DEFAULT.get_state_dict()"` and copy that file to {cached} (or set TORCH_HOME), '
                "or pass --student-weights FILE"
            ) from None

    def preprocessing() -> Preprocessing:
        t = weights().transforms()
        return Preprocessing(int(t.crop_size[0]), tuple(t.mean), tuple(t.std))

    return state, preprocessing


def file_preprocessing(path: Path) -> Preprocessing | None:
    """The preprocessing a weights file carries: an edgekd checkpoint's `preprocessing`, or
    safetensors metadata `input_size`, `mean` and `std` (JSON); None when it carries none."""
    import json

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as fh:
                meta = {
                    k: json.loads(v) for k, v in (fh.metadata() or {}).items() if k in ("input_size", "mean", "std")
                }
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            meta = state.get("preprocessing", {}) if isinstance(state, dict) else {}
    except Exception:  # read_state_dict names an unreadable file when the student is built
        return None
    if not all(k in meta for k in ("input_size", "mean", "std")):
        return None
    size = meta["input_size"]
    return Preprocessing(int(size[-1] if isinstance(size, list) else size), tuple(meta["mean"]), tuple(meta["std"]))


def weights_preprocessing(card: ModelCard, weights: str) -> Preprocessing | None:
    """What the student's starting weights were trained with (None: random, or a file that does not say)."""
    if weights == "none":
        return None
    if weights == "default":
        return card.preprocessing() if card.preprocessing else None
    return file_preprocessing(Path(weights))
