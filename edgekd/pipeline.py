"""`build`: the whole pipeline, teacher -> distill -> quantize -> export -> verify -> bench
per target -> report. Where the training stages keep their results, and when they are reused
or resumed, is `edgekd.workdir`'s business."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from edgekd.config import PipelineConfig, check_teachers, check_training, resolve_preprocessing
from edgekd.data.loading import Data, load_data
from edgekd.errors import VerificationFailed
from edgekd.formats import int8_key
from edgekd.io import check_writable, exclusive
from edgekd.progress import log
from edgekd.quantizers import QUANTIZERS
from edgekd.reporting.environment import environment
from edgekd.reporting.tables import table_rows
from edgekd.stages.bench import bench, board_estimates, check_arm_profiles
from edgekd.stages.distill import distill, load_student
from edgekd.stages.export import Int8Inputs, export
from edgekd.stages.quantize import load_quantized, quantize
from edgekd.stages.report import write_report
from edgekd.stages.verify import check_emulation, verify
from edgekd.targets import Target, host_target, load_target
from edgekd.targets.remote import SshDevice, parse_device
from edgekd.training import compute, distributed
from edgekd.training.loop import accuracy, predict
from edgekd.training.teacher_checks import checked_teachers
from edgekd.training.teachers import given_teachers, load_teacher, load_teachers, train_teacher
from edgekd.workdir import Plan, plan, teacher_plan


@dataclass
class Teacher:
    model: nn.Module
    source: str
    key: str  # identifies the teacher for stage keys
    val_accuracy: float


def prepare_teacher(cfg: PipelineConfig, data: Data, out: Path, resume: bool, stages: Plan | None = None) -> Teacher:
    """The given teacher file(s) (several: a `TeacherEnsemble`), or one trained here.
    `stages`: the build's plan, when made already (it hashed the teacher files)."""
    check_teachers(cfg, "config")  # again: the Python API may set teachers after load_config
    key, stage = (stages.teacher_key, stages.teacher) if stages else teacher_plan(cfg, data, out)
    if stage is None:
        given = load_teachers(cfg.teacher, len(data.classes), cfg.data.input_size, data.classes)
        checked = checked_teachers(given, given_teachers(cfg.teacher), data, cfg.teacher.check_accuracy)
        model, logits, labels = checked.model, checked.val_logits, checked.val_labels
        source = ", ".join(str(f) for f in given_teachers(cfg.teacher))
    else:
        folder = stage.open(resume)
        if stage.result.is_file():
            model = load_teacher(cfg.teacher.model_copy(update={"path": stage.result}), len(data.classes),
                                 cfg.data.input_size)  # fmt: skip
            log(f"teacher: reusing {stage.result}")
        else:
            model, _ = train_teacher(cfg.teacher, data, folder / "teacher.ckpt")
            distributed.save(model.state_dict(), stage.result)
        source = f"{cfg.teacher.arch} trained by edgekd ({stage.result})"
        logits, labels = predict(model, data.loader("val"))
    if logits.dim() == 3:  # an ensemble, [images, teachers, classes]: the accuracy of its mean softmax
        logits = logits.softmax(dim=2).mean(dim=1)
    return Teacher(model, source, key, accuracy(logits, labels))


def _host_and(target: Target, on_device: bool = False) -> list[Target]:
    host = host_target()
    return [host] if not on_device and target.runs_on_host() and target.arch == host.arch else [host, target]


@contextmanager
def session(cfg: PipelineConfig) -> Iterator[None]:
    """Sets the training device (`[compute]`) and, under torchrun, joins the process group."""
    compute.configure(cfg.compute)
    with distributed.launched(compute.device()):
        yield


def build(cfg: PipelineConfig, target_name: str, out: Path, resume: bool = False, device: str | None = None) -> dict:
    """Runs every stage; returns the report (also written to OUT/report.json and report.md).
    `device`: ssh://user@host[:port] where the target's table is measured (see `edgekd.targets.remote`).
    Under torchrun every process trains; rank 0 alone goes on to export, verify, bench and
    report, and the others return an empty dict."""
    with session(cfg), exclusive(Path(out)) if distributed.is_main() else nullcontext():
        return _build(cfg, target_name, out, resume, device)


@dataclass(frozen=True)
class StageAction:
    """What `build` would do in one stage (see `StageRun.action`; export onwards always run)."""

    stage: str
    action: str  # reuse, resume, restart, run, or given (teacher files)
    where: str


def dry_run(cfg: PipelineConfig, target_name: str, out: Path, resume: bool = False) -> list[StageAction]:
    """The stages `build` would run, reuse or resume, found without writing anything to OUT."""
    target, _ = checked_target(cfg, target_name, None)
    data = load_data(cfg.data)
    stages = plan(cfg, data, target, out)
    given = (
        [] if stages.teacher else [StageAction("teacher", "given", ", ".join(map(str, given_teachers(cfg.teacher))))]
    )
    trained = [StageAction(run.stage, run.action(resume), str(run.folder)) for run in stages.stages()]
    targets = ", ".join(t.name for t in _host_and(target))
    after = [
        StageAction("export", "run", f"{Path(out) / 'artifacts'}: {', '.join(export_config(cfg, target).formats)}"),
        StageAction("verify", "run", target.name),
        StageAction("bench", "run", targets),
        StageAction("report", "run", str(Path(out) / "report.md")),
    ]
    return given + trained + after


def _build(cfg: PipelineConfig, target_name: str, out: Path, resume: bool, device: str | None) -> dict:
    target, ssh_device = checked_target(cfg, target_name, device)
    out = Path(out)
    check_writable(out)
    data = load_data(cfg.data)
    log(f"data: {len(data.train)} train / {len(data.val)} val images, {len(data.classes)} classes")
    stages = plan(cfg, data, target, out)
    teacher = prepare_teacher(cfg, data, out, resume, stages)
    log(f"teacher: {teacher.source}, val accuracy {teacher.val_accuracy:.2%}")
    train_student(cfg, data, teacher, target, stages, resume)
    if not distributed.is_main():
        return {}  # training is done; rank 0 exports, verifies, benchmarks and reports

    trained = load_trained(stages, data)
    artifacts = export(
        export_config(cfg, target), trained.models, trained.preprocessing, out / "artifacts", trained.int8
    )
    checks = verify(cfg.verify, artifacts, trained.references, data, target)
    artifact_facts = [a.to_dict() | {"verification": v.to_dict()} for a, v in zip(artifacts, checks)]
    tables = [
        target_table(cfg, artifacts, artifact_facts, each, ssh_device if each is target else None)
        for each in _host_and(target, ssh_device is not None)
    ]
    report = write_report(build_facts(cfg, target, data, teacher, trained, artifact_facts, tables), out)
    fail_on_disagreement(checks, out)
    return report


def checked_target(cfg: PipelineConfig, target_name: str, device: str | None) -> tuple[Target, SshDevice | None]:
    """The target, and the board to measure it on; what cannot work stops here, before training."""
    check_training(cfg, "config")  # again: the Python API may change settings after load_config
    resolve_preprocessing(cfg)
    target = load_target(target_name)
    ssh_device = parse_device(device) if device else None
    if ssh_device is None:
        check_emulation(cfg.verify, target)
        check_arm_profiles(cfg.bench, target)
    else:
        ssh_device.check()
    return target, ssh_device


def train_student(cfg: PipelineConfig, data: Data, teacher: Teacher, target: Target, stages: Plan, resume: bool):
    """Distillation, then quantization-aware training with the distillation loss still on;
    each stage reused when finished, resumed from its checkpoint when interrupted."""
    folder = stages.distill.open(resume)
    if not stages.distill.result.is_file():
        distill(cfg.distill, cfg.student, data, teacher.model, folder, stages.logits_cache)
    for quantizer, stage in stages.quantize.items():
        folder = stage.open(resume)
        if not stage.result.is_file():
            distill_loss = (cfg.distill.loss, cfg.distill.params)
            quantize(cfg.quantize, stages.distill.result, data, teacher.model, target.int8, distill_loss, folder,
                     stages.logits_cache, quantizer)  # fmt: skip


@dataclass
class Trained:
    """The trained students, and the CPU logits their artifacts must match."""

    models: dict[str, nn.Module]  # by `edgekd.formats.model_key`: fp32, int8 (NNCF), int8-xnnpack
    references: dict[str, torch.Tensor]  # the same keys
    preprocessing: dict
    val_accuracy: dict[str, float]  # the same keys
    int8: Int8Inputs | None  # what the int8 export needs


def load_trained(stages: Plan, data: Data) -> Trained:
    student, ckpt = load_student(stages.distill.result)
    log(f"student {ckpt.arch}: fp32 val accuracy {ckpt.val_accuracy:.2%}")
    # on the CPU: CUDA convolutions default to TF32, which the artifacts do not reproduce
    cpu = torch.device("cpu")
    trained = Trained({"fp32": student}, {"fp32": predict(student, data.loader("val"), cpu)[0]},
                      ckpt.preprocessing, {"fp32": ckpt.val_accuracy}, None)  # fmt: skip
    for quantizer, stage in stages.quantize.items():
        key = int8_key(quantizer)
        trained.models[key], qat = load_quantized(stage.result)
        trained.int8 = Int8Inputs.choose(trained.int8, qat)
        trained.references[key] = predict(trained.models[key], data.loader("val"), cpu)[0]
        trained.val_accuracy[key] = qat.val_accuracy
        flavour = qat.int8
        log(f"student int8 ({QUANTIZERS.get(quantizer).title} QAT, {flavour.activations}/{flavour.weights}): "
            f"val accuracy {qat.val_accuracy:.2%}")  # fmt: skip
    return trained


def export_config(cfg: PipelineConfig, target: Target):
    if "torch-cuda" in target.runtimes and "torch" not in cfg.export.formats:  # GPUs also run the PyTorch program
        return cfg.export.model_copy(update={"formats": [*cfg.export.formats, "torch"]})
    return cfg.export


def target_table(cfg: PipelineConfig, artifacts, artifact_facts: list[dict], target: Target, on_device) -> dict:
    rows = table_rows(artifact_facts, bench(cfg.bench, artifacts, target, on_device), on_host=target.runs_on_host())
    return {
        "target": target.name,
        "measured_on": on_device.name if on_device else None,
        "description": target.description,
        "arch": target.arch,
        "measured": any(r.get("measured") for r in rows),  # estimates are not measurements
        "threads": cfg.bench.threads or target.threads,
        "int8": target.int8.model_dump(),
        "rows": rows,
        # a target with no board here (arm): each named board's estimate, labelled as such
        "estimates": [] if on_device else board_estimates(artifacts, target, cfg.bench),
    }


def build_facts(cfg, target: Target, data: Data, teacher: Teacher, trained: Trained, artifact_facts, tables) -> dict:
    return {
        "target": target.name,
        "edgekd_version": _version(),
        "config": cfg.model_dump(mode="json"),
        "environment": environment(),
        "data": {
            "path": str(cfg.data.path or "embedded: scikit-learn digits"),
            "classes": data.classes,
            "train_samples": len(data.train),
            "val_samples": len(data.val),
            "input_size": cfg.data.input_size,
        },
        "teacher": {"source": teacher.source, "val_accuracy": teacher.val_accuracy},
        "student": {
            "arch": cfg.student.name,
            "val_accuracy_fp32": trained.val_accuracy["fp32"],
            # NNCF's, else the first other QAT's; each artifact's own accuracy is in its rows
            "val_accuracy_int8": next((v for k, v in sorted(trained.val_accuracy.items()) if k != "fp32"), None),
            "val_accuracy_int8_by_quantizer": {
                q: trained.val_accuracy[int8_key(q)] for q in QUANTIZERS.names() if int8_key(q) in trained.val_accuracy
            },
        },
        "artifacts": artifact_facts,
        "tables": tables,
    }


def fail_on_disagreement(checks, out: Path) -> None:
    """After the report is written, so that the failing artifact's figures can be read."""
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = failed[0]
        raise VerificationFailed(
            f"artifact {worst.artifact} agrees with its PyTorch model on {worst.agreement:.2%} of validation "
            f"images, below the required {worst.min_agreement:.2%} (report: {out / 'report.md'}); "
            "lower verify.min_agreement_* only if that loss is acceptable"
        )


def _version() -> str:
    from edgekd import __version__

    return __version__
