"""The `edgekd` command: a thin layer over the Python API (`edgekd.pipeline`, `edgekd.stages`)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

from edgekd.errors import EdgekdError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)

DataOpt = typer.Option(None, "--data", help="ImageFolder root (train/ + val/ or test/, or one folder to split)")
TeacherOpt = typer.Option(
    None, "--teacher", help="teacher: .pt state_dict, .pt2 or .onnx (default: train one); repeat for several"
)
StudentOpt = typer.Option(None, "--student", help="student architecture, e.g. mobilenet_v2")
ConfigOpt = typer.Option(None, "--config", help="pipeline TOML (default: pipelines/default.toml)")
OutOpt = typer.Option(Path("edgekd-out"), "--out", help="output directory")
TargetOpt = typer.Option("x86", "--target", help="target profile name or .toml file (see `edgekd targets`)")
DeviceOpt = typer.Option(None, "--device", help="measure the target on ssh://user@host[:port][?python=PATH]")


def user_errors(fn):
    """Turns user errors into one line on stderr and exit status 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgekdError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished epochs are checkpointed; rerun with --resume to continue", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _config(config: Optional[Path], data: Optional[Path], teacher: Optional[list[Path]], student: Optional[str]):
    from edgekd.config import load_config
    from edgekd.models import MODELS

    cfg = load_config(config, teachers=teacher)  # the first --teacher is teacher.path, the rest teacher.extra
    if data is not None:
        cfg.data.path = data
    if student is not None:
        MODELS.get(student)  # fail before any work on an unknown name
        cfg.student.name = student
    return cfg


@app.command()
@user_errors
def build(
    target: str = typer.Option(..., "--target", help="target profile name or .toml file (see `edgekd targets`)"),
    data: Optional[Path] = DataOpt,
    teacher: Optional[list[Path]] = TeacherOpt,
    student: Optional[str] = StudentOpt,
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
    resume: bool = typer.Option(False, "--resume", help="continue interrupted training from its last epoch"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    device: Optional[str] = DeviceOpt,
):
    """Distill, quantize, export, verify and benchmark; write OUT/report.md and report.json."""
    from edgekd.pipeline import build as run_build
    from edgekd.progress import console, set_quiet
    from edgekd.remote import parse_device
    from edgekd.stages.report import print_tables
    from edgekd.targets import load_target

    set_quiet(quiet)
    load_target(target)
    if device:
        parse_device(device)
    report = run_build(_config(config, data, teacher, student), target, out, resume=resume, device=device)
    if report:  # under torchrun, rank 0's
        print_tables(report, console)
        typer.echo(f"report: {out / 'report.md'}\nartifacts: {out / 'artifacts'}")


@app.command()
@user_errors
def distill(
    data: Optional[Path] = DataOpt,
    teacher: Optional[list[Path]] = TeacherOpt,
    student: Optional[str] = StudentOpt,
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
    resume: bool = typer.Option(False, "--resume"),
):
    """Distill the teacher into a student; writes a student checkpoint."""
    from edgekd.data import load_data
    from edgekd.pipeline import prepare_teacher, session
    from edgekd.stages.distill import distill as run_distill

    cfg = _config(config, data, teacher, student)
    with session(cfg):
        loaded = load_data(cfg.data)
        teach = prepare_teacher(cfg, loaded, out, resume)
        path = run_distill(cfg.distill, cfg.student, loaded, teach.model, out)
        _say(f"student: {path}")


@app.command()
@user_errors
def quantize(
    student_checkpoint: Path = typer.Argument(..., help="student_fp32.pt written by `edgekd distill`"),
    target: str = TargetOpt,
    data: Optional[Path] = DataOpt,
    teacher: Optional[list[Path]] = TeacherOpt,
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
):
    """Quantization-aware fine-tuning (int8) with the distillation loss; writes a QAT checkpoint."""
    from edgekd.data import load_data
    from edgekd.pipeline import prepare_teacher, session
    from edgekd.stages.quantize import quantize as run_quantize
    from edgekd.targets import load_target

    _exists(student_checkpoint)
    cfg = _config(config, data, teacher, None)
    flavour = load_target(target).int8
    with session(cfg):
        loaded = load_data(cfg.data)
        teach = prepare_teacher(cfg, loaded, out, False)
        loss = (cfg.distill.loss, cfg.distill.params)
        path = run_quantize(cfg.quantize, student_checkpoint, loaded, teach.model, flavour, loss, out)
        _say(f"int8 student: {path}")


@app.command()
@user_errors
def export(
    checkpoints: list[Path] = typer.Argument(..., help="student_fp32.pt and/or student_int8_qat.pt"),
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
):
    """Export checkpoints to ONNX and OpenVINO IR with embedded preprocessing metadata."""
    from edgekd.config import load_config
    from edgekd.stages.distill import load_student
    from edgekd.stages.export import export as run_export
    from edgekd.stages.quantize import load_quantized

    models, preprocessing, int8 = {}, {}, {}
    for path in checkpoints:
        _exists(path)
        quantized = "int8" in path.name
        model, ckpt = load_quantized(path) if quantized else load_student(path)
        models["int8" if quantized else "fp32"], preprocessing = model, ckpt["preprocessing"]
        if quantized:
            int8 = {"calibration": ckpt["calibration"].float().numpy(), "int8": ckpt["int8"]}
    for artifact in run_export(load_config(config).export, models, preprocessing, out, **int8):
        typer.echo(f"{artifact.name}: {artifact.path} ({artifact.size_mb:.2f} MB)")


@app.command()
@user_errors
def bench(
    artifacts: list[Path] = typer.Argument(..., help=".onnx files and/or OpenVINO .xml files"),
    target: str = TargetOpt,
    config: Optional[Path] = ConfigOpt,
    device: Optional[str] = DeviceOpt,
):
    """Benchmark exported artifacts on a target (latency, throughput, memory); exit status 1
    when any of them fails to run."""
    from edgekd.config import load_config
    from edgekd.io import sha256, size_mb
    from edgekd.remote import parse_device
    from edgekd.stages.bench import bench as run_bench
    from edgekd.stages.export import Artifact

    items = []
    for path in artifacts:
        _exists(path)
        fmt, runtime = ("openvino", "openvino") if path.suffix == ".xml" else ("onnx", "onnxruntime")
        precision = "int8" if "int8" in path.name or "int8" in path.parent.name else "fp32"
        name = f"{fmt}-{precision}:{path.stem}"
        items.append(Artifact(name, fmt, precision, runtime, str(path), round(size_mb(path), 3), sha256(path)))
    ssh_device = parse_device(device) if device else None
    rows = run_bench(load_config(config).bench, items, _target(target), ssh_device)
    for row in rows:
        typer.echo(" ".join(f"{k}={v}" for k, v in row.items() if k != "executed"))
    # a broken artifact is a failed command, not a row to overlook: scripts test the exit status
    paths = {item.name: item.path for item in items}
    failed = {paths[row["artifact"]]: row["reason"] for row in rows if row["status"] == "failed"}
    if failed:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in failed.items())
        typer.echo(f"error: {len(failed)} of {len(items)} artifacts failed to benchmark: {reasons}", err=True)
        raise typer.Exit(1)


@app.command()
@user_errors
def report(
    runs: list[Path] = typer.Argument(
        ..., help="output directory of `edgekd build` (or its report.json); two to compare"
    ),
):
    """Print the tables of a finished build, or compare two builds side by side (RUN_A RUN_B)."""
    from edgekd.progress import console
    from edgekd.stages.compare import markdown
    from edgekd.stages.report import load_report, print_tables

    if len(runs) > 2:
        raise EdgekdError(f"edgekd report takes one run, or two to compare; got {len(runs)}")
    for run in runs:
        _exists(run)
    if len(runs) == 1:
        print_tables(load_report(runs[0]), console)
    else:
        typer.echo(markdown(load_report(runs[0]), load_report(runs[1]), str(runs[0]), str(runs[1])))


@app.command()
@user_errors
def predict(
    artifact: Path = typer.Argument(..., help="an .onnx file or OpenVINO .xml written by edgekd"),
    images: list[Path] = typer.Argument(..., help="image files (any format PIL reads)"),
    top_k: int = typer.Option(3, "--top-k", min=1, help="classes to print per image"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
):
    """Classify images, preprocessing them from the metadata embedded in the artifact."""
    import json

    from edgekd.predict import PredictConfig
    from edgekd.predict import predict as run_predict

    results = run_predict(PredictConfig(top_k=top_k), artifact, images)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for result in results:
        typer.echo(result["image"])
        for top in result["top"]:
            typer.echo(f"  {top['probability']:7.2%}  {top['class']}")


@app.command()
def targets():
    """List target profiles."""
    from edgekd.targets import load_target, target_names

    names = target_names()
    width = max(map(len, names))
    for name in names:
        t = load_target(name)
        flavour = f"int8 {t.int8.activations}/{t.int8.weights}{' reduce_range' if t.int8.reduce_range else ''}"
        typer.echo(f"{name:{width}} {t.arch:8} {', '.join(t.runtimes):40} {flavour:24} {t.description}")


def _target(name: str):
    from edgekd.targets import load_target

    return load_target(name)


def _say(line: str) -> None:
    """A result line on stdout; under torchrun, from rank 0 only."""
    from edgekd.distributed import is_main

    if is_main():
        typer.echo(line)


def _exists(path: Path) -> None:
    if not path.exists():
        raise EdgekdError(f"{path} does not exist")


def main() -> None:
    sys.exit(app())
