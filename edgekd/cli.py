"""The `edgekd` command: a thin layer over the Python API (`edgekd.pipeline`, `edgekd.stages`)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgekd import interrupts
from edgekd.errors import EdgekdError
from edgekd.formats import FORMATS

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

DataOpt = typer.Option(None, "--data", help="ImageFolder root (train/ + val/ or test/, or one folder to split)")
TeacherOpt = typer.Option(
    None, "--teacher", help="teacher: .pt state_dict, .pt2 or .onnx (default: train one); repeat for several"
)
StudentOpt = typer.Option(None, "--student", help="student architecture, e.g. mobilenet_v2 or timm:NAME")
WeightsOpt = typer.Option(
    None, "--student-weights", help="where the student starts: none, default (pretrained, cached) or a FILE"
)
ConfigOpt = typer.Option(None, "--config", help="pipeline TOML (default: pipelines/default.toml)")
OutOpt = typer.Option(Path("edgekd-out"), "--out", help="output directory")
TargetOpt = typer.Option("x86", "--target", help="target profile name or .toml file (see `edgekd targets`)")
DeviceOpt = typer.Option(None, "--device", help="measure the target on ssh://user@host[:port][?python=PATH]")
SetOpt = typer.Option(None, "--set", help="override a config key, e.g. --set distill.train.epochs=3 (repeatable)")
ResumeOpt = typer.Option(False, "--resume", help="continue interrupted training from its last epoch")
JsonOpt = typer.Option(False, "--json", help="print JSON on stdout instead of tables")

# what the help says of the formats, from their registry
BACKENDS = " or ".join(
    f"{q} ({', '.join(f.name for f in FORMATS.values() if f.quantizer == q and 'int8' in f.precisions)})"
    for q in dict.fromkeys(f.quantizer for f in FORMATS.values() if "int8" in f.precisions)
)
OPENS = ", ".join(f"{f.title} {f.opens}" if f.folder else f.opens for f in FORMATS.values())
PREDICTS = ", ".join(f"{f.title} {f.opens}" if f.folder else f.opens for f in FORMATS.values() if f.predicts)


def _version(show: bool) -> None:
    if show:
        from edgekd import __version__

        typer.echo(f"edgekd {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
):
    """Distill a teacher into a mobile student, quantize it, export it and measure it on the target.

    Results and tables go to stdout, progress and logs to stderr. Exit status: 0 done; 1 `bench`
    had an artifact that failed to run; 2 bad input or a stop (one `error:` line); 3 an artifact
    failed verification (the report is written); 130 interrupted."""


def _stdout():
    """Tables for stdout: full width when redirected to a file (rich would wrap at 80 columns)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def user_errors(fn):
    """Turns user errors into one line on stderr and their exit status (2; 3 for a failed
    verification), with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with interrupts.watched():
                return fn(*args, **kwargs)
        except EdgekdError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished epochs are checkpointed; rerun with --resume to continue", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _config(
    config: Optional[Path],
    data: Optional[Path],
    teacher: Optional[list[Path]],
    student: Optional[str],
    sets: Optional[list[str]] = None,
    student_weights: Optional[str] = None,
):
    from edgekd.config import checked_config, load_config

    # the first --teacher is teacher.path, the rest teacher.extra
    cfg = load_config(config, teachers=teacher, overrides=sets, data=data)
    if student is not None or student_weights is not None:
        cfg.student.name = student or cfg.student.name
        cfg.student.weights = student_weights or cfg.student.weights
    # checked again only if --student changed it: fail before any work on an unknown name or unfit weights
    return checked_config(cfg, "--student")


@app.command()
@user_errors
def build(
    target: str = typer.Option(..., "--target", help="target profile name or .toml file (see `edgekd targets`)"),
    data: Optional[Path] = DataOpt,
    teacher: Optional[list[Path]] = TeacherOpt,
    student: Optional[str] = StudentOpt,
    student_weights: Optional[str] = WeightsOpt,
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
    resume: bool = ResumeOpt,
    until: Optional[str] = typer.Option(
        None, "--until", help="stop after this training stage (distill or quantize) and print its checkpoints"
    ),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    device: Optional[str] = DeviceOpt,
    sets: Optional[list[str]] = SetOpt,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the resolved config and which stages would run, be reused or resumed"
    ),
    as_json: bool = JsonOpt,
):
    """Distill, quantize, export, verify and benchmark; write OUT/report.md and report.json."""
    from edgekd.pipeline import build_from
    from edgekd.progress import set_quiet
    from edgekd.reporting.text import print_tables
    from edgekd.spec import make_spec
    from edgekd.targets.kinds import placements

    set_quiet(quiet)
    if until not in (None, "distill", "quantize"):
        raise EdgekdError(f"--until {until}: one of distill, quantize (from export on, a build runs whole)")
    placed = placements(target, device)  # a bad --target or --device stops before the config loads
    if until:
        return _train(placed, _config(config, data, teacher, student, sets, student_weights), out, resume, until)
    spec = make_spec(_config(config, data, teacher, student, sets, student_weights), placed)
    if dry_run:
        return _print_plan(spec, target, out, resume, as_json)
    report = build_from(spec, out, resume=resume)
    if not report:  # under torchrun, only rank 0 has one
        return
    if as_json:
        return _print_json(report.to_json())
    print_tables(report, _stdout())
    typer.echo(f"report: {out / 'report.md'}\nartifacts: {out / 'artifacts'}")


def _print_plan(spec, target: str, out: Path, resume: bool, as_json: bool) -> None:
    from dataclasses import asdict

    from edgekd.pipeline import dry_run

    actions = dry_run(spec, out, resume)
    config = spec.config.model_dump(mode="json")
    if as_json:
        return _print_json({"target": target, "out": str(out), "config": config, "stages": list(map(asdict, actions))})
    typer.echo(f"config (resolved):\n{json.dumps(config, indent=2, default=str)}\n\nstages (--target {target}):")
    for each in actions:
        typer.echo(f"  {each.stage:9} {each.action:8} {each.where}")


@app.command()
@user_errors
def distill(
    data: Optional[Path] = DataOpt,
    teacher: Optional[list[Path]] = TeacherOpt,
    student: Optional[str] = StudentOpt,
    student_weights: Optional[str] = WeightsOpt,
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
    resume: bool = ResumeOpt,
    sets: Optional[list[str]] = SetOpt,
):
    """Distill the teacher into a student: `edgekd build --until distill` (any target: the
    distilled student does not depend on one); prints its checkpoint under OUT/work."""
    from edgekd.targets.kinds import host_placement

    cfg = _config(config, data, teacher, student, sets, student_weights)
    _train((host_placement(),) * 2, cfg, out, resume, "distill")


@app.command()
@user_errors
def quantize(
    target: str = TargetOpt,
    quantizer: Optional[str] = typer.Option(
        None, "--quantizer", help=f"QAT backend: {BACKENDS}; default: each one the config's export formats need"
    ),
    data: Optional[Path] = DataOpt,
    teacher: Optional[list[Path]] = TeacherOpt,
    student: Optional[str] = StudentOpt,
    student_weights: Optional[str] = WeightsOpt,
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
    resume: bool = ResumeOpt,
    sets: Optional[list[str]] = SetOpt,
):
    """Quantization-aware fine-tuning (int8) with the distillation loss, in the target's int8
    scheme: `edgekd build --until quantize` (distills first, or reuses the student that an
    `edgekd distill` or build of the same settings left in OUT/work); prints the checkpoints."""
    from edgekd.quantizers import QUANTIZERS
    from edgekd.targets.kinds import placements

    if quantizer is not None:
        QUANTIZERS.get(quantizer).check_installed()  # before the teacher and the data load
    placed = placements(target)
    cfg = _config(config, data, teacher, student, sets, student_weights)
    _train(placed, cfg, out, resume, "quantize", [quantizer] if quantizer else None)


def _train(placed, cfg, out: Path, resume: bool, until: str, quantizers: list[str] | None = None):
    """The build's training stages up to `until` (`edgekd.pipeline.train`) for `placed`, the
    target and this host; prints each one's checkpoint."""
    from edgekd.pipeline import train
    from edgekd.spec import make_spec

    spec = make_spec(cfg, placed, training_only=True)
    for stage in train(spec, out, resume, until, quantizers):
        _say(f"{stage.stage}: {stage.result}")


@app.command(
    help=f"Export checkpoints to the config's formats ({', '.join(FORMATS)}) with embedded preprocessing "
    "metadata; each int8 format takes the QAT checkpoint of its backend."
)
@user_errors
def export(
    checkpoints: list[Path] = typer.Argument(
        ..., help="student_fp32.pt and/or QAT checkpoints (student_int8_qat.pt), one per backend"
    ),
    config: Optional[Path] = ConfigOpt,
    out: Path = OutOpt,
    sets: Optional[list[str]] = SetOpt,
):
    from edgekd.config import load_config
    from edgekd.stages.export import export as run_export
    from edgekd.stages.export import load_checkpoints

    for path in checkpoints:
        _exists(path)
    export_cfg = load_config(config, overrides=sets).export
    trained = load_checkpoints(checkpoints)
    for missing in trained.missing_int8(export_cfg.formats):
        typer.echo(f"note: {missing}", err=True)
    for artifact in run_export(export_cfg, trained.models(), trained.preprocessing, out, trained.int8):
        typer.echo(f"{artifact.name}: {artifact.path} ({artifact.size_mb:.2f} MB)")


@app.command()
@user_errors
def bench(
    artifacts: list[Path] = typer.Argument(..., help=f"exported files: {OPENS}"),
    target: str = TargetOpt,
    config: Optional[Path] = ConfigOpt,
    device: Optional[str] = DeviceOpt,
    as_json: bool = JsonOpt,
):
    """Benchmark exported artifacts on a target (latency, throughput, memory); exit status 1
    when any of them fails to run."""
    from edgekd.config import load_config
    from edgekd.formats import artifact_of
    from edgekd.stages.bench import bench as run_bench
    from edgekd.targets import load_target
    from edgekd.targets.kinds import place
    from edgekd.targets.remote import parse_device

    items = [artifact_of(path) for path in artifacts]
    placement = place(load_target(target), parse_device(device) if device else None)
    rows = run_bench(load_config(config).bench, items, placement)
    measured = [row.model_dump(mode="json", exclude_unset=True) for row in rows]
    if as_json:
        _print_json(measured)
    else:
        for row in measured:
            typer.echo(" ".join(f"{k}={v}" for k, v in row.items() if k != "executed"))
    # a broken artifact is a failed command, not a row to overlook: scripts test the exit status
    paths = {item.name: item.path for item in items}
    failed = {paths[row.artifact]: row.reason for row in rows if row.status == "failed"}
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
    as_json: bool = typer.Option(False, "--json", help="print report.json (a list of two when comparing)"),
):
    """Print the tables of a finished build, or compare two builds side by side (RUN_A RUN_B)."""
    from edgekd.reporting.compare import markdown
    from edgekd.reporting.text import print_tables
    from edgekd.stages.report import load_report

    if len(runs) > 2:
        raise EdgekdError(f"edgekd report takes one run, or two to compare; got {len(runs)}")
    for run in runs:
        _exists(run)
    if as_json:
        reports = [load_report(run).to_json() for run in runs]
        _print_json(reports[0] if len(reports) == 1 else reports)
    elif len(runs) == 1:
        print_tables(load_report(runs[0]), _stdout())
    else:
        typer.echo(markdown(load_report(runs[0]), load_report(runs[1]), str(runs[0]), str(runs[1])))


@app.command()
@user_errors
def predict(
    artifact: Path = typer.Argument(..., help=f"an artifact written by edgekd: {PREDICTS}"),
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
@user_errors
def targets(as_json: bool = JsonOpt):
    """List target profiles."""
    from edgekd.targets import load_target, target_names

    names = target_names()
    if as_json:
        return _print_json([load_target(name).model_dump(mode="json") for name in names])
    width = max(map(len, names))
    for name in names:
        t = load_target(name)
        flavour = f"int8 {t.int8.activations}/{t.int8.weights}{' reduce_range' if t.int8.reduce_range else ''}"
        typer.echo(f"{name:{width}} {t.arch:8} {', '.join(t.runtimes):40} {flavour:24} {t.description}")


def _say(line: str) -> None:
    """A result line on stdout; under torchrun, from rank 0 only."""
    from edgekd.training.distributed import is_main

    if is_main():
        typer.echo(line)


def _exists(path: Path) -> None:
    if not path.exists():
        raise EdgekdError(f"{path} does not exist")


def main() -> None:
    sys.exit(app())
