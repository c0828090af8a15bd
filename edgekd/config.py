"""The pipeline config: one typed section per stage, read from TOML (`pipelines/*.toml`)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from edgekd.data.loading import DataConfig
from edgekd.errors import EdgekdError
from edgekd.quantizers import QUANTIZERS
from edgekd.stages.bench import BenchConfig
from edgekd.stages.distill import DistillConfig, StudentConfig
from edgekd.stages.export import ExportConfig
from edgekd.stages.quantize import QuantizeConfig
from edgekd.stages.verify import VerifyConfig
from edgekd.training.compute import ComputeConfig
from edgekd.training.teachers import OPAQUE_TEACHERS, TeacherConfig
from edgekd.validation import explain

PIPELINES_DIR = Path(os.environ.get("EDGEKD_PIPELINES", Path(__file__).resolve().parents[1] / "pipelines"))


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    export: ExportConfig = ExportConfig()
    verify: VerifyConfig = VerifyConfig()
    bench: BenchConfig = BenchConfig()
    compute: ComputeConfig = ComputeConfig()
    # the config as `check_names` last passed it, and whether its preprocessing is resolved: a
    # config checked once is not checked again unless it changed since (see `checked_config`)
    _checked: str | None = PrivateAttr(None)
    _resolved: bool = PrivateAttr(False)

    def _unchanged(self) -> bool:
        return self._checked == self.model_dump_json()


def load_config(
    path: Path | None = None,
    teachers: list[Path] | None = None,
    overrides: list[str] | None = None,
    data: Path | None = None,
) -> PipelineConfig:
    """Reads a pipeline TOML; without one, `pipelines/default.toml` (the quick embedded run).
    `teachers` (--teacher, repeatable) replace the config's: the first is teacher.path, the rest
    teacher.extra, set before the checks so that they see the teachers the run will use; `data`
    (--data) replaces data.path.
    `overrides` (--set, repeatable): `key.path=value`, the value read as TOML (a bare word as text),
    checked by the same validation as the file."""
    path = Path(path) if path else PIPELINES_DIR / "default.toml"
    if not path.is_file():
        raise EdgekdError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise EdgekdError(f"config file {path} is not valid TOML: {e}") from None
    if teachers:
        section = raw.setdefault("teacher", {})
        if isinstance(section, dict):  # anything else is reported by the validation below
            section.update(path=str(teachers[0]), extra=[str(t) for t in teachers[1:]])
    if data is not None and isinstance(raw.setdefault("data", {}), dict):
        raw["data"]["path"] = str(data)
    try:
        cfg = PipelineConfig(**raw)
    except ValidationError as e:
        raise explain(e, str(path), PipelineConfig) from None
    source = str(path)
    if overrides:
        source = "--set " + " ".join(overrides)
        for override in overrides:
            _set(raw, override)
        try:
            cfg = PipelineConfig(**raw)
        except ValidationError as e:
            raise explain(e, source, PipelineConfig) from None
    check_names(cfg, source)
    return cfg


def _set(raw: dict, override: str) -> None:
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise EdgekdError(f"--set {override}: write key.path=value, e.g. --set distill.train.epochs=3")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word: `--set student.name=mobilenet_v2`
    section = raw
    for i, part in enumerate(parts[:-1]):
        section = section.setdefault(part, {})
        if not isinstance(section, dict):
            raise EdgekdError(f"--set {override}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
    section[parts[-1]] = value


def checked_config(cfg: PipelineConfig, source: str = "config") -> PipelineConfig:
    """A copy of `cfg`, checked by `check_names` and its preprocessing resolved: what a run uses.
    The checks run once: not again for a config `load_config` or this function returned, unless
    it was changed since (a Python API user may set keys after load_config)."""
    if cfg._unchanged() and cfg._resolved:
        return cfg.model_copy(deep=True)
    checked = cfg.model_copy(deep=True)
    if not cfg._unchanged():
        check_names(checked, source)
    resolve_preprocessing(checked)
    checked._checked, checked._resolved = checked.model_dump_json(), True
    return checked


def resolve_preprocessing(cfg: PipelineConfig) -> None:
    """Pretrained student weights bring the input size, mean and std they were trained with:
    each becomes the data's unless the config set it."""
    from edgekd.models import model_card
    from edgekd.models.weights import weights_preprocessing

    given = weights_preprocessing(model_card(cfg.student.name), cfg.student.weights)
    if given is None:
        return
    for key, value in (("input_size", given.input_size), ("mean", given.mean), ("std", given.std)):
        if key not in cfg.data.model_fields_set:
            setattr(cfg.data, key, value)


def check_names(cfg: PipelineConfig, source: str) -> None:
    """Names and loss options resolved when the config is read, not hours into a run."""
    from edgekd.formats import FORMATS
    from edgekd.losses import create_loss
    from edgekd.models import check_model_name, create_model
    from edgekd.runtime import runtime_version

    checks = [
        ("student.name", lambda: check_model_name(cfg.student.name)),
        ("teacher.arch", lambda: check_model_name(cfg.teacher.arch)),
        # the weights load (a download, once) and fit before any training
        (
            "student.weights",
            lambda: cfg.student.weights == "none" or create_model(cfg.student.name, 2, True, cfg.student.weights),
        ),
        ("distill", lambda: create_loss(cfg.distill.loss, cfg.distill.params).check_student(cfg.student.name)),
    ]
    if cfg.quantize.loss:
        checks.append(("quantize", lambda: create_loss(cfg.quantize.loss, cfg.quantize.params)))
    for key, check in checks:
        try:
            check()
        except EdgekdError as e:
            raise EdgekdError(f"{source}: {key}: {e}") from None
    unknown = [f for f in cfg.export.formats if f not in FORMATS]
    if unknown:
        raise EdgekdError(f"{source}: export.formats: unknown {unknown}; choose from {', '.join(FORMATS)}")
    for fmt in (FORMATS[f] for f in cfg.export.formats):
        if fmt.extra and runtime_version(fmt.runtime) is None:
            raise EdgekdError(f"{source}: export.formats: {fmt.name} needs {fmt.runtime}: {fmt.install_hint()}")
        if "int8" in fmt.precisions:
            try:
                QUANTIZERS.get(fmt.quantizer).check_installed()
            except EdgekdError as e:
                raise EdgekdError(f"{source}: export.formats: {fmt.name} int8: {e}") from None
    check_teachers(cfg, source)
    check_training(cfg, source)
    cfg._checked, cfg._resolved = cfg.model_dump_json(), False


def check_training(cfg: PipelineConfig, source: str) -> None:
    """Settings that would ship a model nobody trained, refused before any work."""
    if cfg.distill.train.epochs == 0:
        raise EdgekdError(f"{source}: distill.train.epochs = 0 would ship an untrained student; set it to 1 or more")
    if cfg.teacher.train.epochs == 0 and not cfg.teacher.path:
        raise EdgekdError(
            f"{source}: teacher.train.epochs = 0 would distill from an untrained teacher; set it to 1 or more, "
            "or pass --teacher FILE"
        )


def check_teachers(cfg: PipelineConfig, source: str) -> None:
    """Several teachers (teacher.path, then teacher.extra) feed the multi_teacher loss only, with
    one weight each (a teacher trained here, without teacher.path, is one); feature-based losses
    need a teacher with layers to hook."""
    from edgekd.losses import create_loss

    if cfg.teacher.extra and not cfg.teacher.path:
        raise EdgekdError(f"{source}: teacher.extra needs teacher.path, the first teacher; set teacher.path too")
    n = 1 + len(cfg.teacher.extra)
    losses = [("distill", cfg.distill.loss, cfg.distill.params)]
    if cfg.quantize.loss:
        losses.append(("quantize", cfg.quantize.loss, cfg.quantize.params or {}))
    opaque = [p for p in [cfg.teacher.path, *cfg.teacher.extra] if p and Path(p).suffix.lower() in OPAQUE_TEACHERS]
    for key, loss, params in losses:
        weights = params.get("weights") if loss == "multi_teacher" else None
        if n > 1 and loss != "multi_teacher":
            raise EdgekdError(
                f"{source}: {key}: {n} teachers given but loss '{loss}' takes one; "
                'several teachers need loss = "multi_teacher" (or pass one --teacher)'
            )
        if isinstance(weights, list) and len(weights) != n:
            raise EdgekdError(
                f"{source}: {key}: multi_teacher has {len(weights)} weights for {n} teacher(s); "
                "give one per teacher, in the order teacher.path, then teacher.extra"
            )
        if opaque and create_loss(loss, params).uses_teacher_features:
            kind = OPAQUE_TEACHERS[Path(opaque[0]).suffix.lower()]
            raise EdgekdError(
                f"{source}: {key}: loss '{loss}' reads the teacher's layers, but teacher {opaque[0]} is {kind}, "
                "which has none to hook; give a state_dict teacher (.pt) or choose a logit-based loss (kd, dkd, ...)"
            )
    if n > 1 and cfg.distill.generations > 1 and cfg.distill.params.get("weights"):
        raise EdgekdError(
            f"{source}: distill: generations after the first learn from one teacher (the previous student), "
            "so multi_teacher weights do not apply to them; remove weights or set generations = 1"
        )
