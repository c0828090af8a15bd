"""Teachers: a torchvision state_dict, a torch.export `.pt2`, or an ONNX model run by
onnxruntime, or several of them (`TeacherEnsemble`); or, when none is given, one that edgekd
trains on the data itself."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.data.loading import Data
from edgekd.errors import EdgekdError
from edgekd.models import create_model, model_card
from edgekd.models.timm_models import hub_model, hub_snapshot, is_hub, weight_files
from edgekd.progress import log
from edgekd.training.loop import TrainConfig, accuracy, cross_entropy, fit, predict, seed_torch
from edgekd.training.teacher_files import (
    check_classes,
    check_kind,
    checkpoint_classes,
    onnx_classes,
    state_dict_mismatch,
)


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(None, description=".pt/.pth state_dict, .pt2 or .onnx; empty = train one")
    extra: list[Path] = Field([], description="more teacher files, loaded like path (loss multi_teacher)")
    arch: str = Field("resnet18", description="architecture of a state_dict teacher, or of one trained here")
    small_input: bool = True
    train: TrainConfig = TrainConfig(epochs=5, lr=0.05)
    check_accuracy: bool = Field(
        True,
        description="stop before training when a given teacher's val accuracy is at or below chance "
        "(1 / classes): the usual sign of a wrong class order, mean/std, input size or channel order",
    )


# teacher files whose layers cannot be hooked, so feature-based losses cannot use them
OPAQUE_TEACHERS = {".onnx": "an ONNX model run by onnxruntime", ".pt2": "a torch.export program"}


def in_fixed_batches(run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int | None):
    """`run` on `images` in batches of exactly `batch` images (None: all at once), for a teacher
    exported with a static batch size: the last batch is padded with copies of its last image,
    whose outputs are dropped (a classifier in eval mode scores each image on its own)."""
    if batch is None or len(images) == batch:
        return run(images)
    outputs = []
    for chunk in images.split(batch):
        padding = chunk[-1:].expand(batch - len(chunk), *chunk.shape[1:])
        outputs.append(run(torch.cat([chunk, padding]))[: len(chunk)])
    return torch.cat(outputs)


def fixed_batch_note(path: Path, batch: int | None) -> None:
    if batch is not None:
        how = "one image at a time" if batch == 1 else f"{batch} images at a time, the last batch padded"
        log(f"teacher {path} was exported with a fixed batch of {batch}: it runs {how}, slower than whole batches; "
            "export it with a dynamic batch axis to run faster")  # fmt: skip


class OnnxTeacher(nn.Module):
    """Soft labels from an ONNX model; it has no layers to hook, so logit-based losses only."""

    opaque = OPAQUE_TEACHERS[".onnx"]

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None  # None: dynamic

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().cpu().numpy().astype(np.float32)
        return torch.from_numpy(self.session.run(None, {self.input.name: x})[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return in_fixed_batches(self._run, images, self.batch).to(images.device)


class TeacherEnsemble(nn.Module):
    """Several teachers as one: their logits stacked batch first, [batch, n_teachers, classes],
    as the multi_teacher loss takes them (cached teacher outputs are rows of the first axis)."""

    def __init__(self, teachers: list[nn.Module]):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([teacher(images) for teacher in self.teachers], dim=1)


class ExportedTeacher(nn.Module):
    """A torch.export program: a fixed graph whose module refuses train() and eval() (even
    eval(), in recent torch), so this wrapper keeps it out of mode changes. Its graph calls no
    submodules, so forward hooks on them never fire: logit-based losses only."""

    opaque = OPAQUE_TEACHERS[".pt2"]

    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__()
        self.program = program.module()
        # the input's shape as exported: ints where it is static, symbols where it is dynamic
        user_inputs = program.graph_signature.user_inputs
        inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in user_inputs]
        self.shape = list(inputs[0].meta["val"].shape) if len(inputs) == 1 and "val" in inputs[0].meta else []
        self.batch = self.shape[0] if self.shape and isinstance(self.shape[0], int) else None  # None: dynamic

    def train(self, mode: bool = True) -> ExportedTeacher:
        self.training = False  # a teacher is frozen; the graph ignores the mode anyway
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return in_fixed_batches(self.program, images, self.batch)


def _check_input_size(path: Path, shape: list, input_size: int) -> None:
    """An exported teacher's static image size, against data.input_size."""
    size = shape[2:]
    if len(size) == 2 and all(isinstance(d, int) for d in size) and list(size) != [input_size, input_size]:
        raise EdgekdError(
            f"teacher {path} takes {size[0]}x{size[1]} images but data.input_size is {input_size}; "
            f"set input_size = {size[0]} in the [data] config"
        )


def _read_onnx(path: Path, input_size: int) -> nn.Module:
    try:
        teacher = OnnxTeacher(path)
    except Exception as e:
        raise EdgekdError(f"cannot load ONNX teacher {path}: {str(e).splitlines()[0]}") from None
    _check_input_size(path, list(teacher.input.shape), input_size)
    fixed_batch_note(path, teacher.batch)
    return teacher


def _read_state_dict(path: Path, cfg: TeacherConfig, num_classes: int) -> tuple[nn.Module, list[str] | None]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Weights only load failed" in str(e):  # pickled Python objects, e.g. torch.save(model)
            raise EdgekdError(
                f"teacher file {path} holds a pickled Python object (a whole model?), not a state_dict; "
                "save model.state_dict() with torch.save, or the model with torch.export.save as .pt2"
            ) from None
        raise EdgekdError(f"cannot read teacher file {path}: not a PyTorch state_dict ({type(e).__name__})") from None
    names = checkpoint_classes(state)
    for key in ("model", "state_dict"):  # a training checkpoint, or an edgekd student checkpoint
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise EdgekdError(f"teacher file {path} holds a {type(state).__name__}, not a state_dict")
    fc = state.get(model_card(cfg.arch).classifier + ".weight")
    classes = int(fc.shape[0]) if isinstance(fc, torch.Tensor) else num_classes
    model = create_model(cfg.arch, classes, cfg.small_input)
    try:
        model.load_state_dict(state)
    except RuntimeError:  # torch decides what fits; its message lists every key, so summarise
        raise EdgekdError(
            f"teacher file {path} does not fit teacher.arch = '{cfg.arch}': "
            f"{state_dict_mismatch(state, model.state_dict())}; set teacher.arch to the architecture it was trained as"
        ) from None
    return model, names


def _classes_predicted(path: Path, teacher: nn.Module, input_size: int) -> int:
    """The class count, from one run on a blank image; anything but one logits tensor
    [batch, classes] (a tuple of logits and features, say) is refused here, not mid-training."""
    try:
        with torch.no_grad():
            out = teacher.eval()(torch.zeros(1, 3, input_size, input_size))
    except Exception as e:
        raise EdgekdError(f"teacher {path} fails on a {input_size}x{input_size} RGB image: {e}") from None
    if isinstance(out, torch.Tensor) and out.ndim == 2:
        return int(out.shape[1])
    if isinstance(out, (tuple, list, dict)):
        got = f"a {type(out).__name__} of {len(out)} outputs"
    else:
        got = f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
    raise EdgekdError(
        f"teacher {path} returns {got}; edgekd needs one logits tensor [batch, classes]: "
        "export a module whose forward returns only the logits"
    )


def _read_file(path: Path, cfg: TeacherConfig, num_classes: int, input_size: int) -> tuple[nn.Module, list | None]:
    """The teacher in a file, and the class names it carries (None: it carries none)."""
    check_kind(path)  # first: torch logs a traceback on some wrong files
    if path.suffix == ".onnx":
        teacher = _read_onnx(path, input_size)
        return teacher, onnx_classes(teacher.session)
    if path.suffix == ".pt2":
        try:
            teacher = ExportedTeacher(torch.export.load(str(path)))
        except Exception as e:
            raise EdgekdError(f"cannot load torch.export teacher {path}: {type(e).__name__}") from None
        _check_input_size(path, teacher.shape, input_size)
        fixed_batch_note(path, teacher.batch)
        return teacher, None
    return _read_state_dict(path, cfg, num_classes)


def load_teacher(
    cfg: TeacherConfig, num_classes: int, input_size: int, data_classes: list[str] | None = None
) -> nn.Module:
    """The teacher at `cfg.path`, checked against the data: class count and, when the file
    carries class names, the names in order (`data_classes`)."""
    path = Path(cfg.path)  # type: ignore[arg-type]
    if is_hub(path):
        teacher, names = hub_model(hub_snapshot(path))
    else:
        teacher, names = _read_file(_existing(path), cfg, num_classes, input_size)
    classes = _classes_predicted(path, teacher, input_size)
    if classes != num_classes:
        raise EdgekdError(
            f"teacher {path} predicts {classes} classes but the data has {num_classes}; "
            "use a teacher trained on these classes"
        )
    if data_classes is not None:
        check_classes(path, names, data_classes)
    return teacher.eval()


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise EdgekdError(
            f"teacher file {path} does not exist; pass --teacher FILE (.pt, .pt2 or .onnx) or hf-hub:ORG/NAME"
        )
    return path


def given_teachers(cfg: TeacherConfig) -> list[Path]:
    """The given teachers in order: `path`, then `extra` (the order of multi_teacher's weights)."""
    return [Path(p) for p in [cfg.path, *cfg.extra]] if cfg.path else []


def teacher_files(cfg: TeacherConfig) -> list[Path]:
    """The files of `given_teachers` (a hub model's weights, from the hub's cache); each must
    exist: stage keys hash them before anything loads them."""
    return [weight_files(hub_snapshot(p))[0] if is_hub(p) else _existing(p) for p in given_teachers(cfg)]


def load_teachers(
    cfg: TeacherConfig, num_classes: int, input_size: int, data_classes: list[str] | None = None
) -> nn.Module:
    """`load_teacher` for each of `given_teachers(cfg)`; several come as one `TeacherEnsemble`."""
    models = [
        load_teacher(cfg.model_copy(update={"path": p}), num_classes, input_size, data_classes)
        for p in given_teachers(cfg)
    ]
    return models[0] if len(models) == 1 else TeacherEnsemble(models)


def train_teacher(cfg: TeacherConfig, data: Data, checkpoint: Path) -> tuple[nn.Module, float]:
    seed_torch(data.config.seed)
    model = create_model(cfg.arch, len(data.classes), cfg.small_input)
    loader = data.loader("train", shuffle=True)
    val = data.loader("val")

    def evaluate(trained: nn.Module) -> float:  # for train.keep = "best"
        return accuracy(*predict(trained, val))

    label = f"teacher {cfg.arch}"
    fit(model, loader, cross_entropy, cfg.train, label, checkpoint, seed=data.config.seed, evaluate=evaluate,
        section="teacher.train")  # fmt: skip
    return model, accuracy(*predict(model, val))
