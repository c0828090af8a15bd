"""OUT/work: where the training stages (teacher, distill, quantize) keep their results.

Each stage writes into `OUT/work/<stage>-<key>/`, the key a hash of the stage's config and of
everything it consumes (the data's fingerprint, the previous stage's key): a rerun with the same
settings reuses a finished stage, a changed setting reruns only the stages downstream of it, and
`--resume` continues an interrupted one from its last finished epoch. `plan` works all of this
out without writing anything, for `edgekd build --dry-run` and for the build itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgekd.config import PipelineConfig
from edgekd.data.loading import Data
from edgekd.formats import FORMATS
from edgekd.io import sha256
from edgekd.targets import Target
from edgekd.training.teachers import teacher_files


def stage_key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StageRun:
    """One training stage's folder under OUT/work and the file that says it finished."""

    stage: str
    key: str
    folder: Path
    result_name: str

    @property
    def result(self) -> Path:
        return self.folder / self.result_name

    def action(self, resume: bool) -> str:
        """What a build does here: `reuse` the finished result; `resume` an interrupted run
        from its last epoch; `restart` one (without --resume its checkpoints are cleared); `run`."""
        if self.result.is_file():
            return "reuse"
        if any(self.folder.glob("*.ckpt")):
            return "resume" if resume else "restart"
        return "run"

    def open(self, resume: bool) -> Path:
        """The folder, made; a leftover partial run is cleared unless resuming."""
        if self.folder.is_dir() and not resume:
            for partial in self.folder.glob("*.ckpt"):
                partial.unlink(missing_ok=True)  # torchrun: every process clears
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder


@dataclass(frozen=True)
class Plan:
    """The training stages of one build. `teacher` is None when teacher files are given."""

    teacher_key: str  # identifies the teacher (a file's sha256, or the stage's key)
    teacher: StageRun | None
    distill: StageRun
    quantize: dict[str, StageRun]  # one QAT per quantizer backend the formats need; none when disabled
    logits_cache: Path  # the teacher's training-set logits, shared by distill and quantize

    def stages(self) -> list[StageRun]:
        return [run for run in (self.teacher, self.distill, *self.quantize.values()) if run is not None]


def teacher_plan(cfg: PipelineConfig, data: Data, out: Path) -> tuple[str, StageRun | None]:
    files = teacher_files(cfg.teacher)
    if files:
        return (sha256(files[0]) if len(files) == 1 else stage_key(*[sha256(f) for f in files])), None
    key = stage_key(  # without the (empty) extra and the check of given teachers: older keys still match
        cfg.teacher.model_dump(mode="json", exclude={"extra", "check_accuracy"}),
        cfg.data.model_dump(mode="json"),
        data.classes,
        data.fingerprint,
    )
    return key, StageRun("teacher", key, Path(out) / "work" / f"teacher-{key}", "teacher.pt")


def quantize_stage_name(quantizer: str) -> str:
    """The quantize stage's name for a backend: NNCF's keeps the name from before other backends existed."""
    return "quantize" if quantizer == "nncf" else f"quantize-{quantizer}"


def quantizers_for(formats: list[str]) -> list[str]:
    """The QAT backends whose int8 models the formats export, in the formats' order."""
    wanted = [FORMATS[f].quantizer for f in formats if f in FORMATS and "int8" in FORMATS[f].precisions]
    return list(dict.fromkeys(wanted))


def plan(cfg: PipelineConfig, data: Data, target: Target, out: Path, quantizers: list[str] | None = None) -> Plan:
    """`quantizers`: the QAT backends to plan, by default those the config's formats need."""
    out = Path(out)
    teacher_key, teacher = teacher_plan(cfg, data, out)
    data_part = (cfg.data.model_dump(mode="json"), data.fingerprint)
    student = cfg.student.model_dump(mode="json")
    if cfg.student.weights not in ("none", "default"):  # a weights file: its content, not its name
        student["weights"] = sha256(Path(cfg.student.weights))
    distill_key = stage_key(teacher_key, cfg.distill.model_dump(mode="json"), student, *data_part)
    quantize = {}
    if quantizers is None:
        quantizers = quantizers_for(cfg.export.formats) if cfg.quantize.enabled else []
    for quantizer in quantizers:
        # NNCF's key is the one from before other backends existed: its finished stages are reused
        extra = () if quantizer == "nncf" else (quantizer,)
        key = stage_key(distill_key, cfg.quantize.model_dump(mode="json"), target.int8.model_dump(), *extra)
        name = quantize_stage_name(quantizer)
        quantize[quantizer] = StageRun(name, key, out / "work" / f"{name}-{key}", "student_int8_qat.pt")
    return Plan(
        teacher_key,
        teacher,
        StageRun("distill", distill_key, out / "work" / f"distill-{distill_key}", "student_fp32.pt"),
        quantize,
        # keyed by teacher and data alone: distill runs with other losses or students reuse it
        out / "work" / f"teacher-logits-{stage_key(teacher_key, *data_part)}.npy",
    )
