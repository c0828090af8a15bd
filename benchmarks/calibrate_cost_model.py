"""Fits each board's timing model from ARM instruction profiles (edgekd.targets.armtiming) to the board's
published ncnn latencies, measures its error leave-one-out, fp32 and int8 separately, beside
the FLOP model it replaces (edgekd.targets.costmodel, still the fallback without a C compiler), and
writes the tables into docs/cost-model.md and the `[instruction_model]` blocks into targets/.

python benchmarks/calibrate_cost_model.py [--write]

Inputs, all in the repository: benchmarks/calibration/ncnn_boards.json (profiles and published
figures, from benchmarks/profile_ncnn_boards.py) and benchmarks/calibration/xnnpack_rpi4.json
(LiteRT's XNNPACK profiled against XNNPACK's own Raspberry Pi 4 figures, from
benchmarks/profile_xnnpack_rpi4.py: how far a model fitted on ncnn carries over to another
runtime, and the figures the bound is chosen on).
The FLOP model's rows need torchvision (its graphs are exported here).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from edgekd.targets.armtiming import (
    GROUPS,
    NOISY,
    Fit,
    InstructionModel,
    calibrate,
    choose_bound,
    mean_abs,
    transfer_errors,
)

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "benchmarks" / "calibration" / "ncnn_boards.json"
XNNPACK = ROOT / "benchmarks" / "calibration" / "xnnpack_rpi4.json"
DOC = ROOT / "docs" / "cost-model.md"
BEGIN, END = "<!-- calibration:begin -->", "<!-- calibration:end -->"
# the FLOP model's seven torchvision architectures, by ncnn's names for them
FLOP_MODELS = {"squeezenet": "squeezenet1_1", "mobilenet_v2": "mobilenet_v2", "shufflenet_v2": "shufflenet_v2_x1_0",
               "efficientnet_b0": "efficientnet_b0", "googlenet": "googlenet", "resnet18": "resnet18",
               "resnet50": "resnet50"}  # fmt: skip


def flop_model_loo() -> dict[str, float]:
    """The FLOP model's leave-one-out mean |error| per board (its own seven fp32 figures)."""
    import calibrate_flop_model as flops

    with tempfile.TemporaryDirectory() as tmp:
        graphs = {n: flops.graph(n, Path(tmp)) for n in flops.MODELS}
    return {board: flops.loo(board, graphs) for board in flops.NCNN_FP32_MS}


def transfer_table(store: dict, model: InstructionModel) -> tuple[dict[str, float], list[str]]:
    """The Pi 4 model on XNNPACK's own Pi 4 figures (LiteRT's XNNPACK profiled), none of which the fit saw."""
    errors = transfer_errors(store, model)
    rows = [f"| {n} | {store['ms'][n]:g} | {store['ms'][n] * (1 + e):.1f} | {e:+.1%} |" for n, e in errors.items()]
    head = [f"Raspberry Pi 4, {store['runtime']} ({store['source']}), {store['threads']} threads:", "",
            "| model | published ms | estimated ms | error |", "| --- | --- | --- | --- |"]  # fmt: skip
    means = ", ".join(f"{p} {mean_abs(errors, p):.1%}" for p in ("fp32", "int8"))
    summary = (f"Mean |error| {mean_abs(errors):.1%} over {len(errors)} models ({means}): the bands of runtimes "
               "other than ncnn add the one of their precision, on every board.")  # fmt: skip
    return errors, [*head, *rows, "", summary]


def board_table(fit: Fit, noisy: list[str]) -> list[str]:
    lines = [
        "| model | published ms | fitted ms | leave-one-out ms | leave-one-out error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, name in enumerate(fit.names):
        lines.append(f"| {name} | {fit.measured[i]:g} | {fit.fitted[i]:.2f} | {fit.held_out[i]:.2f} | "
                     f"{fit.errors()[i]:+.1%} |")  # fmt: skip
    if noisy:
        lines.append(f"\nLeft out as noisy (max > {NOISY}x min in the published run): {', '.join(noisy)}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/cost-model.md and targets/*.toml")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP model's rows (needs torchvision)")
    args = parser.parse_args()
    store, xnnpack = json.loads(STORE.read_text()), json.loads(XNNPACK.read_text())
    old = {} if args.no_flops else flop_model_loo()
    bound, scores = choose_bound(store, xnnpack, "rpi4")
    unbounded, unbounded_fit, _ = calibrate(store, "rpi4", 1e9)
    scores["none"] = (unbounded_fit.mean_abs(), mean_abs(transfer_errors(xnnpack, unbounded)))
    choice = ["| bound | ncnn leave-one-out (all) | XNNPACK error | mean of both |", "| --- | --- | --- | --- |"]
    choice += [f"| {b if b == 'none' else f'{b:g}x'}{' (chosen)' if b == bound else ''} | {loo:.1%} | {tr:.1%} | "
               f"{(loo + tr) / 2:.1%} |" for b, (loo, tr) in scores.items()]  # fmt: skip
    models, summary, details = {}, [], []
    for board in store["boards"]:
        model, fit, noisy = calibrate(store, board, bound)
        name = model.board
        models[board] = model
        int8 = {n for n in fit.names if n.endswith("_int8")}
        fp32, seven = set(fit.names) - int8, {n for n in fit.names if n in FLOP_MODELS}
        summary.append(
            f"| {name} | {model.cpu} at {model.ghz:g} GHz | {model.aggregate} | {len(fp32)} + {len(int8)} | "
            f"{fit.mean_abs(fp32):.1%} | {fit.mean_abs(int8):.1%} | {fit.mean_abs(seven):.1%} | "
            f"{f'{old[board]:.1%}' if board in old else '-'} |"
        )
        details += [f"#### {name} ({model.cpu} profiles, {model.aggregate} thread)", "", *board_table(fit, noisy), ""]
        cycles = ", ".join(f"{g} {w * model.ghz:.2f}" for g, w in zip(GROUPS, fit.weights))
        details.append(f"Cycles per instruction (fitted ns x {model.ghz:g} GHz): {cycles}.\n")
    errors, transfer_lines = transfer_table(xnnpack, models["rpi4"])
    for model in models.values():
        model.transfer_error_fp32 = round(mean_abs(errors, "fp32"), 3)
        model.transfer_error_int8 = round(mean_abs(errors, "int8"), 3)
    head = ["| board | profiled as | threads combined | float + int8 models | leave-one-out float | "
            "leave-one-out int8 | the same on the FLOP model's 7 | FLOP model (its 7, fp32) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    text = "\n".join([*head, *summary, "", f"### The bound ({bound:g}x the core's best case), chosen on the Pi 4", "",
                      *choice, "", "### Carried over to another runtime", "", *transfer_lines, "",
                      "### Per board", "", *details])  # fmt: skip
    print(text)
    for board, model in models.items():
        print(f"\n# targets/{board}.toml\n{toml_block(model)}")
    if args.write:
        doc = DOC.read_text()
        DOC.write_text(doc[: doc.index(BEGIN) + len(BEGIN)] + "\n" + text + "\n" + doc[doc.index(END) :])
        for board, model in models.items():
            path = ROOT / "targets" / f"{board}.toml"
            kept = re.split(r"\n\[instruction_model\]", path.read_text())[0].rstrip("\n")
            path.write_text(kept + "\n\n" + toml_block(model))


def toml_block(model: InstructionModel) -> str:
    data = model.model_dump()
    weights = data.pop("ns_per_instruction")
    lines = ["[instruction_model]"] + [f"{k} = {json.dumps(v)}" for k, v in data.items()]
    return (
        "\n".join(lines + ["", "[instruction_model.ns_per_instruction]"] + [f"{k} = {v}" for k, v in weights.items()])
        + "\n"
    )


if __name__ == "__main__":
    main()
