"""A board's latency from the ARM instructions an artifact executes (`edgekd.emulation.profile`).

Per board, a per-core timing model: nanoseconds per instruction of each class group, applied
per thread and combined over the board's threads, fitted by least squares on relative error to
the board's published latencies of ncnn's benchmark models, profiled the way benchncnn ran them
(benchmarks/profile_ncnn_boards.py, benchmarks/calibrate_cost_model.py). Each group's time is
bounded to between the core's best case (its issue rate for that kind of instruction, at the
board's clock) and `bound` times that: unbounded, the fit charges ncnn's memory stalls to
whichever count correlates with them (a SIMD load at 17 cycles), which holds for ncnn's kernels
and not for another runtime's. `bound` is chosen where a second runtime's published figures
exist (XNNPACK's on the Pi 4). The error is measured leave-one-out, for fp32 and int8 models
separately, and becomes the estimate's band.

The model describes the core, not the runtime: an artifact of any runtime is estimated from its
own profile, so which kernels that runtime picks (fp32 FMLA, SDOT, reference code) is seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgekd.emulation.profile import Profile

# few groups, so that a board's 30-odd published figures determine them
GROUPS = {
    "mac_fp": ("fmla_f32", "fmla_f16"),  # vector multiply-accumulate, either width: same issue rate on A7x cores
    "dot_i8": ("dot_i8", "mmla_i8"),
    "simd": ("simd_other", "mul_int"),
    "ldst_simd": ("ldst_simd",),
    "scalar": ("ldst_scalar", "branch", "int_other"),
}
Aggregate = Literal["mean", "busiest"]
# best-case cycles per instruction of each group, from the cores' issue rates (Arm's software
# optimization guides): the A72 issues one 128-bit FMLA, multiply or load per cycle and three
# instructions in all; the A76 two vector and two load/store pipes, four instructions in all
CORE_CYCLES = {
    "cortex-a72": {"mac_fp": 1.0, "dot_i8": 1.0, "simd": 0.5, "ldst_simd": 1.0, "scalar": 1 / 3},
    "cortex-a76": {"mac_fp": 0.5, "dot_i8": 0.5, "simd": 0.5, "ldst_simd": 0.5, "scalar": 0.25},
}
BOUNDS = (2.0, 3.0, 4.0, 6.0, 8.0)  # the candidates for `bound`


class InstructionModel(BaseModel):
    """One board's timing model, as `[instruction_model]` in its target file."""

    model_config = ConfigDict(extra="forbid")

    board: str = Field(description="the board's name as reports print it")
    cpu: str = Field(description="the emulated core its profiles are taken on (qemu -cpu)")
    threads: int = Field(ge=1, description="threads of the published figures and of the profiles")
    aggregate: Aggregate = Field(description="threads' work combined: their mean, or the busiest thread's")
    ghz: float = Field(gt=0, description="the board's core clock, which turns best-case cycles into ns")
    bound: float = Field(ge=1, description="each group's ns at most this many times the core's best case")
    ns_per_instruction: dict[str, float] = Field(description="per group of edgekd.targets.armtiming.GROUPS, fitted")
    loo_error_fp32: float = Field(ge=0, description="leave-one-out mean |relative error| on fp32 models")
    loo_error_int8: float = Field(ge=0, description="leave-one-out mean |relative error| on int8 models")
    transfer_error_fp32: float = Field(
        ge=0, description="mean |relative error| on another runtime's published fp32 figures (XNNPACK)"
    )
    transfer_error_int8: float = Field(
        ge=0, description="mean |relative error| on another runtime's published int8 figures (XNNPACK)"
    )
    calibration: str = Field(description="what it was fitted to and how well, in words")
    source: str


def host_capped(profile: Profile, threads: int) -> bool:
    """The runtime ran with fewer threads than the board's `threads` because it takes at most the
    CPUs the emulating process may use (OpenVINO says so): on the board it would have them all."""
    return 0 < profile.pool < threads


def features(profile: Profile, aggregate: Aggregate, threads: int) -> np.ndarray:
    """Instructions per group: the work spread over the board's `threads` cores (mean), or the
    busiest thread's; where the host capped the pool (`host_capped`), the busiest thread's work
    is scaled to the board's threads."""
    groups = [[sum(t.get(c, 0.0) for c in classes) for classes in GROUPS.values()] for t in profile.threads]
    per_thread = np.array(groups, dtype=float)
    if aggregate == "mean":
        return per_thread.sum(axis=0) / threads
    busiest = per_thread[np.argmax(per_thread.sum(axis=1))]
    return busiest * profile.pool / threads if host_capped(profile, threads) else busiest


def latency_ms(profile: Profile, model: InstructionModel) -> float:
    weights = np.array([model.ns_per_instruction[g] for g in GROUPS])
    return float(features(profile, model.aggregate, model.threads) @ weights) / 1e6


def band(model: InstructionModel, precision: str, runtime: str) -> float:
    """The estimate's relative error band: the fit's leave-one-out error for the precision and,
    for a runtime other than the one fitted on (ncnn), the error of carrying it over, independent."""
    if precision == "int8":
        loo, carried = model.loo_error_int8, model.transfer_error_int8
    else:
        loo, carried = model.loo_error_fp32, model.transfer_error_fp32
    return math.hypot(loo, 0.0 if runtime == "ncnn" else carried)


def best_case_ns(cpu: str, ghz: float) -> np.ndarray:
    return np.array([CORE_CYCLES[cpu][g] for g in GROUPS]) / ghz


def fit(x: np.ndarray, ms: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """ns per instruction per group within [low, high]: least squares on relative error (each model weighs the same)."""
    from scipy.optimize import lsq_linear

    return lsq_linear(x / ms[:, None] / 1e6, np.ones(len(ms)), bounds=(low, high)).x


@dataclass(frozen=True)
class Fit:
    names: list[str]
    measured: np.ndarray
    fitted: np.ndarray  # in-sample
    held_out: np.ndarray  # each model estimated by the fit without it
    weights: np.ndarray

    def errors(self) -> np.ndarray:
        """Leave-one-out relative errors, in `names`' order."""
        return self.held_out / self.measured - 1

    def mean_abs(self, names: set[str] | None = None) -> float:
        keep = [i for i, n in enumerate(self.names) if names is None or n in names]
        return float(np.mean(np.abs(self.errors()[keep]))) if keep else float("nan")


def leave_one_out(profiles: dict[str, Profile], ms: dict[str, float], aggregate: Aggregate, threads: int,
                  low: np.ndarray, high: np.ndarray) -> Fit:  # fmt: skip
    names = [n for n in ms if n in profiles]
    x = np.stack([features(profiles[n], aggregate, threads) for n in names])
    y = np.array([ms[n] for n in names])
    weights = fit(x, y, low, high)
    held = np.array([x[i] @ fit(np.delete(x, i, 0), np.delete(y, i), low, high) / 1e6 for i in range(len(names))])
    return Fit(names, y, x @ weights / 1e6, held, weights)


# benchncnn's float models run fp16 arithmetic where the core has it: the "fp32" error of an A76
# fit is that of fp16 FMLA, which issues at fp32's rate (8 lanes instead of 4)
FLOAT_AS = {"cortex-a72": "fp32 arithmetic", "cortex-a76": "fp16 arithmetic, as benchncnn ran them"}
NOISY = 1.5  # a published row whose max exceeds its min by this factor is left out: one slow run moved its avg


def calibrate(store: dict, board: str, bound: float) -> tuple[InstructionModel, Fit, list[str]]:
    """The board's model fitted to `store` (benchmarks/calibration/ncnn_boards.json) within
    `bound`: the thread combination with the lower leave-one-out error; and the fit, and the
    rows left out as noisy."""
    spec = store["boards"][board]
    profiles = {m: Profile.from_json(p) for m, p in store["profiles"].get(spec["cpu"], {}).items()}
    noisy = sorted(m for m, (low, high, _) in spec["ms"].items() if high > NOISY * low)
    ms = {m: avg for m, (_, _, avg) in spec["ms"].items() if m in profiles and m not in noisy}
    low = best_case_ns(spec["cpu"], spec["ghz"])
    fits = {agg: leave_one_out(profiles, ms, agg, store["threads"], low, low * bound) for agg in ("mean", "busiest")}
    aggregate = min(fits, key=lambda a: fits[a].mean_abs())
    fit = fits[aggregate]
    int8 = {n for n in fit.names if n.endswith("_int8")}
    fp32, int8_error = fit.mean_abs(set(fit.names) - int8), fit.mean_abs(int8)
    model = InstructionModel(
        board=spec["name"], cpu=spec["cpu"], threads=store["threads"], aggregate=aggregate, ghz=spec["ghz"],
        bound=bound,
        ns_per_instruction={g: round(float(w), 5) for g, w in zip(GROUPS, fit.weights)},
        loo_error_fp32=round(fp32, 3), loo_error_int8=round(int8_error, 3),
        transfer_error_fp32=0.0, transfer_error_int8=0.0,
        calibration=f"{len(fit.names) - len(int8)} float ({FLOAT_AS[spec['cpu']]}) and {len(int8)} int8 ncnn "
        f"models at {store['threads']} threads, profiled on qemu -cpu {spec['cpu']}: leave-one-out mean |error| "
        f"float {fp32:.1%}, int8 {int8_error:.1%}",
        source=f"{store['source']}, section '{spec['section']}'",
    )  # fmt: skip
    return model, fit, noisy


def choose_bound(store: dict, transfer: dict, board: str) -> tuple[float, dict[float, tuple[float, float]]]:
    """The bound whose fit on `board` has the lowest mean of its leave-one-out error on ncnn and
    its error on another runtime's figures (`transfer`), and both errors for every candidate."""
    scores = {}
    for bound in BOUNDS:
        model, fit, _ = calibrate(store, board, bound)
        scores[bound] = (fit.mean_abs(), mean_abs(transfer_errors(transfer, model)))
    return min(scores, key=lambda b: sum(scores[b])), scores


def mean_abs(errors: dict[str, float], precision: str | None = None) -> float:
    """Mean |error| of the named figures, of one precision (names ending _int8 / _fp32) or all."""
    kept = [abs(e) for n, e in errors.items() if precision is None or n.endswith(f"_{precision}")]
    return float(np.mean(kept)) if kept else 0.0


def transfer_errors(store: dict, model: InstructionModel) -> dict[str, float]:
    """Relative error of `model` on another runtime's published figures (benchmarks/calibration/
    xnnpack_rpi4.json: LiteRT's XNNPACK, profiled), none of which the fit saw."""
    return {
        name: latency_ms(Profile.from_json(store["profiles"][name]), model) / ms - 1
        for name, ms in store["ms"].items()
        if name in store["profiles"]
    }
