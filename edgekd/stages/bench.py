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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekd import emulation
from edgekd.emulation import profile
from edgekd.errors import EdgekdError
from edgekd.formats import FORMATS, Artifact
from edgekd.progress import log, progress
from edgekd.reporting.schema import BoardEstimates, Row
from edgekd.runtime import runtime_version
from edgekd.targets import Target, armtiming, remote
from edgekd.targets.costmodel import RUNTIME_RATIOS, estimate, layers, outside_calibration, why_not_estimated
from edgekd.targets.gpu_bench import bench_gpu
from edgekd.targets.kinds import Kind, Placement
from edgekd.targets.remote import SshDevice


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(20, ge=0)
    runs: int = Field(200, ge=1)
    threads: int | None = Field(None, ge=1, description="empty = the target's thread count")
    timeout_s: float = Field(300, gt=0)
    gpu_batch: int = Field(64, ge=2, description="the throughput batch on GPUs (batch 1 is always measured)")
    arm_profiles: bool | Literal["auto"] = Field(
        "auto",
        description="boards without hardware here: estimate latency from the ARM instructions each artifact "
        "executes, profiled under qemu (auto = where this host can; false = the FLOP model)",
    )


def _not_run(artifact: Artifact, reason: str) -> Row:
    return Row(artifact=artifact.name, runtime=artifact.runtime, status="not run", reason=reason)


def as_row(measured: dict) -> Row:
    """A measurement as a report row: the kernels' own account of what ran, in words."""
    executed = measured.get("executed")
    if isinstance(executed, dict):  # only where the runtime counts its convolutions
        convs = executed.get("convs")
        ran = f"{executed['precision']} ({executed.get('int8_convs')}/{convs} int8 convs)" if convs else None
        measured = measured | {"executed": ran}
    return Row(**measured)


def _why_not_here(target: Target, artifact: Artifact) -> str | None:
    if artifact.runtime not in target.runtimes:
        return f"{artifact.runtime} is not a runtime of target '{target.name}'"
    if runtime_version(artifact.runtime) is None:
        return f"{artifact.runtime} is not installed ({FORMATS[artifact.format].install_hint()})"
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


def _bench_on_device(cfg: BenchConfig, artifacts: list[Artifact], target: Target, device: SshDevice) -> list[Row]:
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
                rows.append(as_row({"artifact": artifact.name, "device": device.name} | measured))
            bar.advance(task)
    return rows


def _graph_of(artifact: Artifact, artifacts: list[Artifact]) -> str | None:
    """The ONNX graph an artifact runs: its own, or the ONNX file of the same network and
    precision (an OpenVINO IR is converted from the same model)."""
    if artifact.format == "onnx":
        return artifact.path
    twin = next((a for a in artifacts if a.format == "onnx" and a.precision == artifact.precision), None)
    return twin.path if twin else None


# (artifact name, emulated core) -> its profile, or why its runtime could not run it on that core
Profiles = dict[tuple[str, str], profile.Profile | str]


def check_arm_profiles(cfg: BenchConfig, placement: Placement) -> None:
    """Before any training: `arm_profiles = true` where this host cannot profile stops the run."""
    reason = profile.unavailable()
    if cfg.arm_profiles is True and reason and any(b.instruction_model for b in placement.boards):
        raise EdgekdError(f'[bench] arm_profiles = true but {reason}; or set arm_profiles = "auto"')


def arm_profiles(
    artifacts: list[Artifact], boards: list[Target], mode: bool | str, timeout_s: float = 600
) -> tuple[Profiles, str | None]:
    """Each artifact's instruction profile on each core the boards are modelled on, or why there are none."""
    models = [b.instruction_model for b in boards if b.instruction_model]
    if mode is False or not models:
        return {}, "ARM instruction profiles are off ([bench] arm_profiles = false)" if models else None
    reason = profile.unavailable()
    if reason:
        return {}, reason
    runnable = [a for a in artifacts if a.runtime in emulation.releases()]
    cpus = sorted({m.cpu for m in models})
    try:
        profile.prepare(cpus)
        site = ":".join(emulation.sites(a.runtime for a in runnable)) or None
        threads = {cpu: max(m.threads for m in models if m.cpu == cpu) for cpu in cpus}

        def on(cpu: str, bar) -> list:
            jobs = [{"runtime": a.runtime, "path": str(Path(a.path).resolve()), "threads": threads[cpu]}
                    for a in runnable]  # fmt: skip
            return profile.run_profiles(jobs, cpu, site=site, bar=bar, timeout_s=timeout_s)

        with progress() as bar, ThreadPoolExecutor(len(cpus)) as pool:  # one qemu per core model, side by side
            found = dict(zip(cpus, pool.map(lambda cpu: on(cpu, bar), cpus)))
    except (EdgekdError, OSError) as e:
        if mode is True:
            raise EdgekdError(f"ARM instruction profiles: {e}") from None
        return {}, str(e)
    return {(a.name, cpu): found[cpu][i] for cpu in cpus for i, a in enumerate(runnable)}, None


def _flop_estimate(artifact: Artifact, artifacts: list[Artifact], board: Target, why_not: str | None) -> Row:
    model = board.cost_model
    path = _graph_of(artifact, artifacts)
    if model is None or path is None:
        return _not_run(artifact, why_not or "the FLOP model reads ONNX graphs: add onnx to [export] formats")
    graph = layers(path)
    reason = why_not_estimated(graph, artifact.runtime)
    if reason:
        return _not_run(artifact, reason + (f"; ARM instructions not profiled: {why_not}" if why_not else ""))
    guess = estimate(graph, model, artifact.runtime)
    ratio = RUNTIME_RATIOS[artifact.runtime]
    return Row(
        **{"artifact": artifact.name, "runtime": artifact.runtime, "status": "ok", "measured": False}
        | {"p50_ms": round(guess.p50_ms, 3), "fps": round(1000 / guess.p50_ms, 1), "band": round(guess.band, 3)}
        | {"estimate": guess.label(), "board": model.board, "threads": model.threads, "batch": 1}
        | {
            "estimated_by": f"FLOPs: ncnn's fp32 latency on {model.board}, a cost model fitted to {model.source}: "
            f"{model.calibration}" + (f" (ARM instructions not profiled: {why_not})" if why_not else ""),
            "scaled_by": f"{artifact.runtime}'s latency = {ratio.ratio:.2f}x ncnn's, the median of "
            f"{len(ratio.pairs)} published pair(s) on {ratio.board} ({ratio.source})",
            "extrapolated": outside_calibration(path),
        }
    )


def _instruction_estimate(artifact: Artifact, artifacts: list[Artifact], found: profile.Profile, board: Target):
    model = board.instruction_model
    p50 = armtiming.latency_ms(found, model)
    spread = armtiming.band(model, artifact.precision, artifact.runtime)
    path = _graph_of(artifact, artifacts)
    facts = []
    if artifact.runtime != "ncnn":
        error = model.transfer_error_int8 if artifact.precision == "int8" else model.transfer_error_fp32
        facts.append(
            f"the core's timing, fitted on ncnn, carried over to {artifact.runtime}: mean |error| {error:.0%} on "
            f"XNNPACK's own {artifact.precision} Raspberry Pi 4 figures (docs/cost-model.md)"
        )
    if armtiming.host_capped(found, model.threads):
        facts.append(
            f"{artifact.runtime} ran {found.pool} threads under emulation (at most this host's CPUs): its busiest "
            f"thread's work is spread over the board's {model.threads}"
        )
    return Row(
        **{"artifact": artifact.name, "runtime": artifact.runtime, "status": "ok", "measured": False}
        | {"p50_ms": round(p50, 3), "fps": round(1000 / p50, 1), "band": round(spread, 3), "board": model.board}
        | {"estimate": f"{p50:.1f} ms ±{spread:.0%} (estimated from ARM instructions, {model.board})"}
        | {"threads": model.threads, "batch": 1, "instructions_m": found.millions()}
        | {"load_instructions_m": round(found.load / 1e6, 1), "profiled_on": model.cpu}
        | {
            "estimated_by": f"ARM instructions: each artifact's A64 instructions per inference, profiled by its "
            f"runtime's aarch64 build under qemu -cpu {model.cpu} at {model.threads} threads, times {model.board}'s "
            f"ns per instruction class ({model.aggregate} thread), fitted to {model.source}: {model.calibration}",
            "scaled_by": "; ".join(facts) or None,
            "extrapolated": outside_calibration(path) if path else None,
        }
    )


def estimate_on(artifacts: list[Artifact], board: Target, profiles: Profiles, why_not: str | None) -> list[Row]:
    """One board's rows: p50 and FPS estimated with their error band, nothing else claimed;
    from the artifact's ARM instructions when profiled, else from the FLOP model, else why not."""
    rows = []
    for artifact in artifacts:
        model = board.instruction_model
        found = profiles.get((artifact.name, model.cpu)) if model else None
        if isinstance(found, str):
            why = f"{artifact.runtime}'s aarch64 build could not run it on a {model.cpu} (qemu): {found}"
            rows.append(_not_run(artifact, why))
        elif found is not None:
            rows.append(_instruction_estimate(artifact, artifacts, found, board))
        else:
            rows.append(_flop_estimate(artifact, artifacts, board, why_not))
    return rows


def board_estimates(artifacts: list[Artifact], placement: Placement, cfg: BenchConfig) -> list[BoardEstimates]:
    """For an ARM target without a model of its own (`arm`): every board of its architecture,
    each with its estimated rows (an estimated board's own rows are its table's)."""
    boards = list(placement.boards) if placement.kind is Kind.EMULATED_ARM else []
    profiles, why_not = arm_profiles(artifacts, boards, cfg.arm_profiles, cfg.timeout_s)
    return [
        BoardEstimates(target=b.name, board=b.latency_model().board, rows=estimate_on(artifacts, b, profiles, why_not))
        for b in boards
    ]


def _measure_each(cfg: BenchConfig, artifacts: list[Artifact], target: Target, why_not) -> list[Row]:
    """Each artifact measured here in its own process, unless `why_not(artifact)` gives a reason."""
    threads = cfg.threads or target.threads
    rows = []
    with progress() as bar:
        task = bar.add_task(f"bench on {target.name}", total=len(artifacts), status="")
        for artifact in artifacts:
            reason = why_not(artifact)
            bar.update(task, status=artifact.name)
            if reason:
                rows.append(_not_run(artifact, reason))
            else:
                rows.append(as_row({"artifact": artifact.name} | measure_in_subprocess(artifact, threads, cfg)))
            bar.advance(task)
            figure = f"p50 {rows[-1].p50_ms:.3f} ms" if rows[-1].p50_ms is not None else rows[-1].status
            log(f"bench on {target.name}: {artifact.name} {figure}")  # a line per artifact in logs without a terminal
    return rows


def _bench_here(cfg: BenchConfig, artifacts: list[Artifact], placement: Placement) -> list[Row]:
    return _measure_each(cfg, artifacts, placement.target, lambda artifact: _why_not_here(placement.target, artifact))


def _bench_elsewhere(cfg: BenchConfig, artifacts: list[Artifact], placement: Placement) -> list[Row]:
    target = placement.target
    reason = (
        f"needs an {target.arch} device; this host is {platform.machine()} "
        "(measure on one with --device ssh://user@host)"
    )
    return _measure_each(cfg, artifacts, target, lambda artifact: reason)


def _bench_estimated(cfg: BenchConfig, artifacts: list[Artifact], placement: Placement) -> list[Row]:
    profiles, why_not = arm_profiles(artifacts, list(placement.boards), cfg.arm_profiles, cfg.timeout_s)
    return estimate_on(artifacts, placement.target, profiles, why_not)


def _bench_device(cfg: BenchConfig, artifacts: list[Artifact], placement: Placement) -> list[Row]:
    return _bench_on_device(cfg, artifacts, placement.target, placement.device)


def _bench_cuda(cfg: BenchConfig, artifacts: list[Artifact], placement: Placement) -> list[Row]:
    threads = cfg.threads or placement.target.threads

    def run(artifact: Artifact, runtime: str, batch: int, options: dict) -> dict:
        return measure_in_subprocess(artifact, threads, cfg, runtime, batch, options)

    return [as_row(row) for row in bench_gpu(artifacts, placement.target, cfg.gpu_batch, run)]


# how each kind of target is benchmarked (`edgekd.targets.kinds`)
BENCH_BY_KIND = {
    Kind.HOST: _bench_here,
    Kind.EMULATED_ARM: _bench_elsewhere,  # its boards' estimates are `board_estimates`
    Kind.ESTIMATED_BOARD: _bench_estimated,
    Kind.SSH_DEVICE: _bench_device,
    Kind.CUDA: _bench_cuda,
    Kind.FOREIGN: _bench_elsewhere,
}


def bench(cfg: BenchConfig, artifacts: list[Artifact], placement: Placement) -> list[Row]:
    """One row per artifact: measured here or on the ssh device, estimated for a board without
    hardware here (`measured: false`), or not run with the reason."""
    return BENCH_BY_KIND[placement.kind](cfg, artifacts, placement)
