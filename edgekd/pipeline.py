"""`build`: the whole pipeline, distill -> quantize -> export -> verify -> bench -> report.

Training stages write into `OUT/work/<stage>-<hash>/`, the hash taken over the stage's config
and its inputs: a rerun with the same settings reuses finished stages, a changed setting
reruns only the stages that depend on it, and `resume=True` continues an interrupted one
from its last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from edgekd import compute, distributed
from edgekd.config import PipelineConfig, check_teachers, check_training
from edgekd.data import Data, load_data
from edgekd.environment import environment
from edgekd.errors import EdgekdError
from edgekd.io import check_writable, exclusive, sha256
from edgekd.progress import log
from edgekd.remote import parse_device
from edgekd.stages.bench import bench, board_estimates
from edgekd.stages.distill import distill, load_student
from edgekd.stages.export import export
from edgekd.stages.quantize import load_quantized, quantize
from edgekd.stages.report import table_rows, write_report
from edgekd.stages.verify import check_emulation, verify
from edgekd.targets import Target, host_target, load_target
from edgekd.teachers import load_teacher, load_teachers, teacher_files, train_teacher
from edgekd.train import accuracy, predict


def stage_key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stage_dir(out: Path, stage: str, key: str, resume: bool) -> Path:
    """The stage's work folder; a leftover partial run is cleared unless resuming."""
    folder = out / "work" / f"{stage}-{key}"
    if folder.is_dir() and not resume:
        for partial in folder.glob("*.ckpt"):
            partial.unlink(missing_ok=True)  # torchrun: every process clears
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Teacher:
    model: nn.Module
    source: str
    key: str  # identifies the teacher for stage keys
    val_accuracy: float


def prepare_teacher(cfg: PipelineConfig, data: Data, out: Path, resume: bool) -> Teacher:
    """The given teacher file(s) (several: a `TeacherEnsemble`), or one trained here."""
    check_teachers(cfg, "config")  # again: the Python API may set teachers after load_config
    files = teacher_files(cfg.teacher)
    if files:
        model = load_teachers(cfg.teacher, len(data.classes), cfg.data.input_size, data.classes)
        source = ", ".join(str(f) for f in files)
        key = sha256(files[0]) if len(files) == 1 else stage_key(*[sha256(f) for f in files])
    else:
        key = stage_key(  # without the (empty) extra: keys from before it existed still match
            cfg.teacher.model_dump(mode="json", exclude={"extra"}),
            cfg.data.model_dump(mode="json"),
            data.classes,
            data.fingerprint,
        )
        folder = stage_dir(out, "teacher", key, resume)
        final = folder / "teacher.pt"
        if final.is_file():
            model = load_teacher(cfg.teacher.model_copy(update={"path": final}), len(data.classes), cfg.data.input_size)
            log(f"teacher: reusing {final}")
        else:
            model, _ = train_teacher(cfg.teacher, data, folder / "teacher.ckpt")
            distributed.save(model.state_dict(), final)
        source = f"{cfg.teacher.arch} trained by edgekd ({final})"
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
    `device`: ssh://user@host[:port] where the target's table is measured (see `edgekd.remote`).
    Under torchrun every process trains; rank 0 alone goes on to export, verify, bench and
    report, and the others return an empty dict."""
    with session(cfg), exclusive(Path(out)) if distributed.is_main() else nullcontext():
        return _build(cfg, target_name, out, resume, device)


def _build(cfg: PipelineConfig, target_name: str, out: Path, resume: bool, device: str | None) -> dict:
    check_training(cfg, "config")  # again: the Python API may change settings after load_config
    target = load_target(target_name)
    ssh_device = parse_device(device) if device else None
    if ssh_device is None:
        check_emulation(cfg.verify, target)
    if ssh_device:
        ssh_device.check()
    out = Path(out)
    check_writable(out)
    data = load_data(cfg.data)
    log(f"data: {len(data.train)} train / {len(data.val)} val images, {len(data.classes)} classes")
    teacher = prepare_teacher(cfg, data, out, resume)
    log(f"teacher: {teacher.source}, val accuracy {teacher.val_accuracy:.2%}")

    distill_key = stage_key(
        teacher.key,
        cfg.distill.model_dump(mode="json"),
        cfg.student.model_dump(mode="json"),
        cfg.data.model_dump(mode="json"),
        data.fingerprint,
    )
    folder = stage_dir(out, "distill", distill_key, resume)
    student_path = folder / "student_fp32.pt"
    # keyed by teacher and data: distill runs with other losses or students reuse it
    data_key = stage_key(teacher.key, cfg.data.model_dump(mode="json"), data.fingerprint)
    logits_cache = out / "work" / f"teacher-logits-{data_key}.npy"
    if not student_path.is_file():
        distill(cfg.distill, cfg.student, data, teacher.model, folder, logits_cache)
    student, student_ckpt = load_student(student_path)
    log(f"student {cfg.student.name}: fp32 val accuracy {student_ckpt['val_accuracy']:.2%}")

    flavour, qat_path = target.int8, None
    if cfg.quantize.enabled:
        quantize_key = stage_key(distill_key, cfg.quantize.model_dump(mode="json"), flavour.model_dump())
        folder = stage_dir(out, "quantize", quantize_key, resume)
        qat_path = folder / "student_int8_qat.pt"
        if not qat_path.is_file():
            distill_loss = (cfg.distill.loss, cfg.distill.params)
            quantize(cfg.quantize, student_path, data, teacher.model, flavour, distill_loss, folder, logits_cache)
    if not distributed.is_main():
        return {}  # training is done; rank 0 exports, verifies, benchmarks and reports

    # the references the artifacts must match, on the CPU (CUDA convolutions default to TF32)
    models = {"fp32": student}
    references = {"fp32": predict(student, data.loader("val"), torch.device("cpu"))[0]}
    int8_accuracy, calibration = None, None
    if qat_path is not None:
        models["int8"], qat_ckpt = load_quantized(qat_path)
        calibration = qat_ckpt["calibration"].float().numpy()
        references["int8"] = predict(models["int8"], data.loader("val"), torch.device("cpu"))[0]
        int8_accuracy = qat_ckpt["val_accuracy"]
        log(f"student int8 (QAT, {flavour.activations}/{flavour.weights}): val accuracy {int8_accuracy:.2%}")

    export_cfg = cfg.export
    if "torch-cuda" in target.runtimes and "torch" not in export_cfg.formats:  # GPUs also run the PyTorch program
        export_cfg = export_cfg.model_copy(update={"formats": [*export_cfg.formats, "torch"]})
    artifacts = export(
        export_cfg, models, student_ckpt["preprocessing"], out / "artifacts", calibration, flavour.model_dump()
    )
    checks = verify(cfg.verify, artifacts, references, data, target)
    artifact_facts = [a.to_dict() | {"verification": v.to_dict()} for a, v in zip(artifacts, checks)]

    tables = []
    for each in _host_and(target, ssh_device is not None):
        on_device = ssh_device if each is target else None
        rows = table_rows(artifact_facts, bench(cfg.bench, artifacts, each, on_device), on_host=each.runs_on_host())
        tables.append(
            {
                "target": each.name,
                "measured_on": on_device.name if on_device else None,
                "description": each.description,
                "arch": each.arch,
                "measured": any(r.get("measured") for r in rows),  # estimates are not measurements
                "threads": cfg.bench.threads or each.threads,
                "int8": each.int8.model_dump(),
                "rows": rows,
                # a target with no board here (arm): each named board's estimate, labelled as such
                "estimates": [] if on_device else board_estimates(artifacts, each),
            }
        )
    facts = {
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
            "val_accuracy_fp32": student_ckpt["val_accuracy"],
            "val_accuracy_int8": int8_accuracy,
        },
        "artifacts": artifact_facts,
        "tables": tables,
    }
    report = write_report(facts, out)
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = failed[0]
        raise EdgekdError(
            f"artifact {worst.artifact} agrees with its PyTorch model on {worst.agreement:.2%} of validation "
            f"images, below the required {worst.min_agreement:.2%} (report: {out / 'report.md'}); "
            "lower verify.min_agreement_* only if that loss is acceptable"
        )
    return report


def _version() -> str:
    from edgekd import __version__

    return __version__
