"""Latency, throughput, memory and size of every artifact on a target.

Each measurement runs in a fresh process (`python -m edgekd.runtime`), so peak memory is
that artifact's alone and runs do not warm each other's caches. What cannot run here (an
ARM target on an x86 host, a runtime that is not installed) is reported as not run, with
the reason, never as a result.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

from pydantic import BaseModel, ConfigDict, Field

from edgekd import remote
from edgekd.costmodel import (
    RUNTIME_RATIOS,
    CostModel,
    estimate,
    layers,
    outside_calibration,
    why_not_estimated,
)
from edgekd.errors import EdgekdError
from edgekd.formats import FORMATS, Artifact
from edgekd.gpu_bench import bench_gpu
from edgekd.progress import log, progress
from edgekd.remote import SshDevice
from edgekd.runtime import runtime_version
from edgekd.targets import Target, load_target, target_names


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(20, ge=0)
    runs: int = Field(200, ge=1)
    threads: int | None = Field(None, ge=1, description="empty = the target's thread count")
    timeout_s: float = Field(300, gt=0)
    gpu_batch: int = Field(64, ge=2, description="the throughput batch on GPUs (batch 1 is always measured)")


def _not_run(artifact: Artifact, reason: str) -> dict:
    return {"artifact": artifact.name, "runtime": artifact.runtime, "status": "not run", "reason": reason}


def _why_not_here(target: Target, artifact: Artifact) -> str | None:
    if not target.runs_on_host():
        return (
            f"needs an {target.arch} device; this host is {platform.machine()} "
            "(measure on one with --device ssh://user@host)"
        )
    if artifact.runtime not in target.runtimes:
        return f"{artifact.runtime} is not a runtime of target '{target.name}'"
    if runtime_version(artifact.runtime) is None:
        fmt = FORMATS[artifact.format]
        return (
            f"{artifact.runtime} is not installed ({fmt.install_hint() if fmt.extra else f'pip install {fmt.runtime}'})"
        )
    return None


def measure_in_subprocess(
    artifact: Artifact, threads: int, cfg: BenchConfig, runtime: str | None = None, batch: int = 1, options=None
) -> dict:
    command = [sys.executable, "-m", "edgekd.runtime", artifact.path, "--runtime", runtime or artifact.runtime]
    command += ["--threads", str(threads), "--warmup", str(cfg.warmup), "--runs", str(cfg.runs)]
    command += ["--batch", str(batch)] + [f"--option={k}={json.dumps(v)}" for k, v in (options or {}).items()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {cfg.timeout_s:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": last}
    return {"status": "ok"} | json.loads(done.stdout.strip().splitlines()[-1])


def _bench_on_device(cfg: BenchConfig, artifacts: list[Artifact], target: Target, device: SshDevice) -> list[dict]:
    """Each artifact copied to the device and measured there by the device's own runtime."""
    threads = cfg.threads or target.threads
    rows = []
    with remote.Session(device, cfg.timeout_s) as session, progress() as bar:
        arch, installed = session.facts["arch"], session.facts["runtimes"]
        if arch != target.arch:
            raise EdgekdError(
                f"device {device.name} is {arch} but target '{target.name}' is {target.arch}; "
                "pass the --target that matches the device"
            )
        task = bar.add_task(f"bench on {device.name}", total=len(artifacts), status="")
        for artifact in artifacts:
            bar.update(task, status=artifact.name)
            if artifact.runtime not in target.runtimes:
                rows.append(_not_run(artifact, f"{artifact.runtime} is not a runtime of target '{target.name}'"))
            elif not installed.get(artifact.runtime):
                rows.append(_not_run(artifact, f"{artifact.runtime} is not installed on {device.name}"))
            else:
                measured = session.measure(artifact.path, artifact.runtime, threads, cfg.warmup, cfg.runs)
                rows.append({"artifact": artifact.name, "device": device.name} | measured)
            bar.advance(task)
    return rows


def _graph_of(artifact: Artifact, artifacts: list[Artifact]) -> str | None:
    """The ONNX graph an artifact runs: its own, or the ONNX file of the same network and
    precision (an OpenVINO IR is converted from the same model)."""
    if artifact.format == "onnx":
        return artifact.path
    twin = next((a for a in artifacts if a.format == "onnx" and a.precision == artifact.precision), None)
    return twin.path if twin else None


def estimate_on(artifacts: list[Artifact], board: CostModel) -> list[dict]:
    """One board's rows from its cost model: p50 and FPS estimated with their error band,
    nothing else claimed; an artifact the model cannot estimate says why."""
    rows = []
    for artifact in artifacts:
        path = _graph_of(artifact, artifacts)
        if path is None:
            rows.append(_not_run(artifact, "the cost model reads ONNX graphs: add onnx to [export] formats"))
            continue
        graph = layers(path)
        reason = why_not_estimated(graph, artifact.runtime)
        if reason:
            rows.append(_not_run(artifact, reason))
            continue
        guess = estimate(graph, board, artifact.runtime)
        ratio = RUNTIME_RATIOS[artifact.runtime]
        rows.append(
            {"artifact": artifact.name, "runtime": artifact.runtime, "status": "ok", "measured": False}
            | {"p50_ms": round(guess.p50_ms, 3), "fps": round(1000 / guess.p50_ms, 1), "band": round(guess.band, 3)}
            | {"estimate": guess.label(), "board": board.board, "threads": board.threads, "batch": 1}
            | {
                "estimated_by": f"ncnn's fp32 latency on {board.board}, a cost model fitted to {board.source}: "
                f"{board.calibration}",
                "scaled_by": f"{artifact.runtime}'s latency = {ratio.ratio:.2f}x ncnn's, the median of "
                f"{len(ratio.pairs)} published pair(s) on {ratio.board} ({ratio.source})",
                "extrapolated": outside_calibration(path),
            }
        )
    return rows


def board_estimates(artifacts: list[Artifact], target: Target) -> list[dict]:
    """For a target without a cost model of its own (`arm`): every board profile of its
    architecture that has one, each with its estimated rows."""
    if target.cost_model is not None or target.runs_on_host():
        return []
    boards = [t for t in map(load_target, target_names()) if t.arch == target.arch and t.cost_model]
    return [
        {"target": b.name, "board": b.cost_model.board, "rows": estimate_on(artifacts, b.cost_model)} for b in boards
    ]


def bench(cfg: BenchConfig, artifacts: list[Artifact], target: Target, device: SshDevice | None = None) -> list[dict]:
    """One row per artifact. With `device`, the target's rows are measured on that device; a
    board with a cost model and no device gets estimated rows, marked `measured: false`."""
    if device is not None:
        return _bench_on_device(cfg, artifacts, target, device)
    if target.cost_model is not None and not target.runs_on_host():
        return estimate_on(artifacts, target.cost_model)
    threads = cfg.threads or target.threads
    if target.arch == "cuda":

        def run(artifact: Artifact, runtime: str, batch: int, options: dict) -> dict:
            return measure_in_subprocess(artifact, threads, cfg, runtime, batch, options)

        return bench_gpu(artifacts, target, cfg.gpu_batch, run)
    rows = []
    with progress() as bar:
        task = bar.add_task(f"bench on {target.name}", total=len(artifacts), status="")
        for artifact in artifacts:
            reason = _why_not_here(target, artifact)
            bar.update(task, status=artifact.name)
            if reason:
                rows.append(_not_run(artifact, reason))
            else:
                rows.append({"artifact": artifact.name} | measure_in_subprocess(artifact, threads, cfg))
            bar.advance(task)
            figure = f"p50 {rows[-1]['p50_ms']:.3f} ms" if rows[-1].get("p50_ms") is not None else rows[-1]["status"]
            log(f"bench on {target.name}: {artifact.name} {figure}")  # a line per artifact in logs without a terminal
    return rows
