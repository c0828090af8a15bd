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

from edgekd import interrupts
from edgekd.config import PipelineConfig
from edgekd.data.loading import Data, load_data
from edgekd.errors import VerificationFailed
from edgekd.io import check_writable, exclusive
from edgekd.progress import log
from edgekd.quantizers import QUANTIZERS
from edgekd.reporting.environment import environment
from edgekd.reporting.schema import ArtifactFacts, DataFacts, Environment, Report, StudentFacts, TeacherFacts
from edgekd.reporting.tables import table_rows
from edgekd.spec import BuildSpec, build_spec
from edgekd.stages.bench import bench, board_estimates
from edgekd.stages.distill import distill
from edgekd.stages.export import Students, export, load_checkpoints
from edgekd.stages.quantize import quantize
from edgekd.stages.report import make_report, make_table, write_report
from edgekd.stages.verify import verify
from edgekd.targets.kinds import Placement
from edgekd.training import compute, distributed
from edgekd.training.loop import accuracy, predict
from edgekd.training.teacher_checks import checked_teachers
from edgekd.training.teachers import given_teachers, load_teacher, load_teachers, train_teacher
from edgekd.workdir import Plan, StageRun, plan, teacher_plan


@dataclass
class Teacher:
    model: nn.Module
    source: str
    key: str  # identifies the teacher for stage keys
    val_accuracy: float


def prepare_teacher(cfg: PipelineConfig, data: Data, out: Path, resume: bool, stages: Plan | None = None) -> Teacher:
    """The given teacher file(s) (several: a `TeacherEnsemble`), or one trained here.
    `cfg`: checked (`load_config`, `checked_config`); `stages`: the build's plan, when made
    already (it hashed the teacher files)."""
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


@contextmanager
def session(cfg: PipelineConfig) -> Iterator[None]:
    """Sets the training device (`[compute]`) and, under torchrun, joins the process group."""
    compute.configure(cfg.compute)
    with distributed.launched(compute.device()):
        yield


def build(
    cfg: PipelineConfig, target_name: str, out: Path, resume: bool = False, device: str | None = None
) -> Report | None:
    """Runs every stage; returns the report (also written to OUT/report.json and report.md).
    `device`: ssh://user@host[:port] where the target's table is measured (see `edgekd.targets.remote`)."""
    return build_from(build_spec(cfg, target_name, device), out, resume)


def build_from(spec: BuildSpec, out: Path, resume: bool = False) -> Report | None:
    """`build` of a specification made already. Under torchrun every process trains; rank 0
    alone goes on to export, verify, bench and report, and the others return None."""
    with _working_in(spec, Path(out)):
        return _build(spec, Path(out), resume)


@dataclass(frozen=True)
class StageAction:
    """What `build` would do in one stage (see `StageRun.action`; export onwards always run)."""

    stage: str
    action: str  # reuse, resume, restart, run, or given (teacher files)
    where: str


def dry_run(spec: BuildSpec, out: Path, resume: bool = False) -> list[StageAction]:
    """The stages `build` would run, reuse or resume, found without writing anything to OUT."""
    cfg = spec.config
    data = load_data(cfg.data)
    stages = plan(cfg, data, spec.target, out)
    given = (
        [] if stages.teacher else [StageAction("teacher", "given", ", ".join(map(str, given_teachers(cfg.teacher))))]
    )
    trained = [StageAction(run.stage, run.action(resume), str(run.folder)) for run in stages.stages()]
    after = [
        StageAction("export", "run", f"{Path(out) / 'artifacts'}: {', '.join(spec.export.formats)}"),
        StageAction("verify", "run", spec.target.name),
        StageAction("bench", "run", ", ".join(p.target.name for p in spec.tables)),
        StageAction("report", "run", str(Path(out) / "report.md")),
    ]
    return given + trained + after


def train(
    spec: BuildSpec, out: Path, resume: bool = False, until: str = "quantize", quantizers: list[str] | None = None
) -> list[StageRun]:
    """`build --until distill|quantize` (and `edgekd distill`, `edgekd quantize`): the build's own
    training stages, up to `until`, in the build's folders under OUT/work (a finished stage
    reused, an interrupted one resumed); returns them (`.result`: the checkpoint), distill first.
    `quantizers`: the QAT backends to train, by default those the config's formats need."""
    with _working_in(spec, Path(out)):
        data, stages, teacher = _prepare(spec, Path(out), resume, quantizers)
        train_student(spec, data, teacher, stages, resume, until)
        return [stages.distill, *(stages.quantize.values() if until == "quantize" else ())]


@contextmanager
def _working_in(spec: BuildSpec, out: Path) -> Iterator[None]:
    """The training device set and OUT held (by rank 0 alone under torchrun) while a build works in it."""
    with session(spec.config), exclusive(out) if distributed.is_main() else nullcontext():
        yield


def _prepare(spec: BuildSpec, out: Path, resume: bool, quantizers: list[str] | None = None):
    """The data, the training stages' plan and the teacher: where every build starts."""
    check_writable(out)
    data = load_data(spec.config.data)
    log(f"data: {len(data.train)} train / {len(data.val)} val images, {len(data.classes)} classes")
    stages = plan(spec.config, data, spec.target, out, quantizers)
    teacher = prepare_teacher(spec.config, data, out, resume, stages)
    log(f"teacher: {teacher.source}, val accuracy {teacher.val_accuracy:.2%}")
    return data, stages, teacher


def _build(spec: BuildSpec, out: Path, resume: bool) -> Report | None:
    cfg = spec.config
    data, stages, teacher = _prepare(spec, out, resume)
    train_student(spec, data, teacher, stages, resume)
    if not distributed.is_main():
        return None  # training is done; rank 0 exports, verifies, benchmarks and reports

    trained = load_trained(stages, data)
    students = trained.students
    artifacts = export(spec.export, students.models(), students.preprocessing, out / "artifacts", students.int8)
    interrupts.check()  # between stages: a Ctrl-C a library swallowed stops the build here
    checks = verify(cfg.verify, artifacts, trained.references, data, spec.placement)
    interrupts.check()
    artifact_facts = [ArtifactFacts(**a.to_dict(), verification=v) for a, v in zip(artifacts, checks)]
    tables = [target_table(cfg, artifacts, artifact_facts, each, out) for each in spec.tables]
    interrupts.check()
    report = make_report(build_facts(cfg, spec.target.name, data, teacher, trained, artifact_facts, tables), out)
    write_report(report, out)
    fail_on_disagreement(checks, out)
    return report


def train_student(spec: BuildSpec, data: Data, teacher: Teacher, stages: Plan, resume: bool, until: str = "quantize"):
    """Distillation, then (unless `until` is "distill") quantization-aware training with the
    distillation loss still on; each stage reused when finished, resumed from its checkpoint
    when interrupted."""
    cfg = spec.config
    folder = stages.distill.open(resume)
    if not stages.distill.result.is_file():
        distill(cfg.distill, cfg.student, data, teacher.model, folder, stages.logits_cache, teacher.val_accuracy)
    for quantizer, stage in stages.quantize.items() if until == "quantize" else ():
        folder = stage.open(resume)
        if not stage.result.is_file():
            distill_loss = (cfg.distill.loss, cfg.distill.params)
            quantize(cfg.quantize, stages.distill.result, data, teacher.model, spec.target.int8, distill_loss, folder,
                     stages.logits_cache, quantizer)  # fmt: skip


@dataclass
class Trained:
    """The trained students, and the CPU logits their artifacts must match, by `student_key`."""

    students: Students
    references: dict[str, torch.Tensor]


def load_trained(stages: Plan, data: Data) -> Trained:
    students = load_checkpoints([stages.distill.result, *(stage.result for stage in stages.quantize.values())])
    # on the CPU: CUDA convolutions default to TF32, which the artifacts do not reproduce
    cpu = torch.device("cpu")
    references = {}
    for key, student in students.by_key.items():
        ckpt = student.checkpoint
        if key == "fp32":
            log(f"student {ckpt.arch}: fp32 val accuracy {ckpt.val_accuracy:.2%}")
        else:
            log(f"student int8 ({QUANTIZERS.get(key).title} QAT, {ckpt.int8.activations}/{ckpt.int8.weights}): "
                f"val accuracy {ckpt.val_accuracy:.2%}")  # fmt: skip
        references[key] = predict(student.model, data.loader("val"), cpu)[0]
    return Trained(students, references)


def target_table(cfg: PipelineConfig, artifacts, artifact_facts: list[ArtifactFacts], placement: Placement, out):
    target, device = placement.target, placement.device
    rows = table_rows(artifact_facts, bench(cfg.bench, artifacts, placement), on_host=placement.on_host)
    # a target with no board here (arm): each named board's estimate, labelled as such
    estimates = board_estimates(artifacts, placement, cfg.bench)
    facts = {"target": target.name, "measured_on": device.name if device else None}
    facts |= {"description": target.description, "arch": target.arch, "threads": cfg.bench.threads or target.threads}
    return make_table(facts | {"int8": target.int8.model_dump()}, rows, estimates, out)


def build_facts(cfg, target: str, data: Data, teacher: Teacher, trained: Trained, artifact_facts, tables) -> dict:
    """What `make_report` takes, each part typed as report.json describes it."""
    accuracy = {key: student.checkpoint.val_accuracy for key, student in trained.students.by_key.items()}
    return {
        "target": target,
        "edgekd_version": _version(),
        "config": cfg.model_dump(mode="json"),
        "environment": Environment(**environment()),
        "data": DataFacts(
            path=str(cfg.data.path or "embedded: scikit-learn digits"),
            classes=data.classes,
            train_samples=len(data.train),
            val_samples=len(data.val),
            input_size=cfg.data.input_size,
        ),
        "teacher": TeacherFacts(source=teacher.source, val_accuracy=teacher.val_accuracy),
        "student": StudentFacts(
            arch=cfg.student.name,
            val_accuracy_fp32=accuracy["fp32"],
            # NNCF's, else the first other QAT's in the backends' order; each artifact's own accuracy is in its rows
            val_accuracy_int8=next((accuracy[q] for q in ("nncf", *QUANTIZERS.names()) if q in accuracy), None),
            val_accuracy_int8_by_quantizer={q: accuracy[q] for q in QUANTIZERS.names() if q in accuracy},
        ),
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
