"""ARM instruction profiles and the boards' timing models: real runtimes' aarch64 builds under
real qemu with edgekd's plugin (fetched and compiled on first use; skipped with the reason on a
host that cannot), and the fit reproduced from the profiles stored in the repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.emulation import profile
from edgekd.emulation.profile import Profile
from edgekd.formats import artifact_of
from edgekd.stages.bench import BenchConfig, board_estimates
from edgekd.targets import armtiming, load_target
from edgekd.targets.kinds import place

CALIBRATION = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration"
CHANNELS, SIZE = 32, 32
MACS = 2 * CHANNELS * CHANNELS * 9 * SIZE * SIZE  # two dense 3x3 convolutions, stride 1, padded

needs_profiles = pytest.mark.skipif(profile.unavailable() is not None, reason=str(profile.unavailable()))


def conv_model(path: Path, int8: bool) -> str:
    """Two 3x3 convolutions, 32 -> 32 channels on 32x32: fp32, or QDQ (u8 activations, s8
    per-channel weights) that onnxruntime fuses into integer convolutions."""
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"

    def qdq(name: str, scale: float, zero: np.ndarray) -> str:
        inits.extend([numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_s"),
                      numpy_helper.from_array(zero, f"{name}_z")])  # fmt: skip
        return name

    for i in range(2):
        weight = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)).astype(np.float32) * 0.1
        if int8:
            q = qdq(f"a{i}", 0.05, np.uint8(128))
            nodes += [helper.make_node("QuantizeLinear", [x, f"{q}_s", f"{q}_z"], [f"{q}_q"]),
                      helper.make_node("DequantizeLinear", [f"{q}_q", f"{q}_s", f"{q}_z"], [f"{q}_dq"])]  # fmt: skip
            scales = np.abs(weight).reshape(CHANNELS, -1).max(axis=1) / 127
            w8 = np.round(weight / scales[:, None, None, None]).astype(np.int8)
            inits += [
                numpy_helper.from_array(w8, f"w{i}"),
                numpy_helper.from_array(scales.astype(np.float32), f"w{i}_s"),
                numpy_helper.from_array(np.zeros(CHANNELS, np.int8), f"w{i}_z"),
            ]
            nodes.append(helper.make_node("DequantizeLinear", [f"w{i}", f"w{i}_s", f"w{i}_z"], [f"w{i}_dq"], axis=0))
            conv_in, w = f"{q}_dq", f"w{i}_dq"
        else:
            inits.append(numpy_helper.from_array(weight, f"w{i}"))
            conv_in, w = x, f"w{i}"
        nodes.append(helper.make_node("Conv", [conv_in, w], [f"y{i}"], pads=[1, 1, 1, 1]))
        x = f"y{i}"
    if int8:
        q = qdq("out", 0.05, np.uint8(128))
        nodes += [helper.make_node("QuantizeLinear", [x, f"{q}_s", f"{q}_z"], [f"{q}_q"]),
                  helper.make_node("DequantizeLinear", [f"{q}_q", f"{q}_s", f"{q}_z"], ["y"])]  # fmt: skip
    else:
        nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


@needs_profiles
def test_fp32_convolutions_run_one_vector_fmla_per_four_multiply_adds(tmp_path):
    job = {"runtime": "onnxruntime", "path": conv_model(tmp_path / "fp32.onnx", int8=False), "threads": 1}
    (found,) = profile.run_profiles([job], "cortex-a76")
    assert found.total("fmla_f32") == pytest.approx(MACS / 4, rel=0.10)  # 4 fp32 lanes per 128-bit FMLA
    assert found.total("dot_i8") == 0 and found.total("fmla_f16") == 0


@needs_profiles
def test_int8_runs_dot_products_where_the_core_has_them(tmp_path):
    job = {"runtime": "onnxruntime", "path": conv_model(tmp_path / "int8.onnx", int8=True), "threads": 1}
    (a76,) = profile.run_profiles([job], "cortex-a76")  # ARMv8.2 with dot product: Pi 5, Orin
    (a72,) = profile.run_profiles([job], "cortex-a72")  # ARMv8.0: Pi 4, widening multiplies instead
    assert a76.total("dot_i8") > 0.5 * MACS / 16  # 16 multiply-adds per SDOT/UDOT, plus packing's
    assert a72.total("dot_i8") == 0 and a72.total("mul_int") > 0
    assert a76.total("fmla_f32") < 0.05 * MACS / 4  # the convolutions did not run in float


def stored_models() -> dict:
    return json.loads((CALIBRATION / "ncnn_boards.json").read_text())


def test_an_estimate_from_a_stored_profile_is_its_counts_times_the_boards_ns():
    store = stored_models()
    found = Profile.from_json(store["profiles"]["cortex-a76"]["mobilenet_v2"])
    model = load_target("rpi5").instruction_model
    by_hand = 0.0
    for group, classes in armtiming.GROUPS.items():
        per_thread = [sum(t[c] for c in classes) for t in found.threads]
        work = sum(per_thread) / model.threads if model.aggregate == "mean" else per_thread[0]
        by_hand += work * model.ns_per_instruction[group] / 1e6
    assert armtiming.latency_ms(found, model) == pytest.approx(by_hand)
    # ncnn's own published mobilenet_v2 on the Pi 5 (10.52 ms) within the fit's band
    assert abs(by_hand / 10.52 - 1) < 3 * model.loo_error_fp32


@pytest.mark.parametrize("board", ["rpi4", "rpi5", "jetson-orin-cpu"])
def test_the_boards_timing_models_reproduce_from_the_stored_profiles(board):
    """The figures in targets/*.toml are the fit of benchmarks/calibration/, leave-one-out included."""
    shipped, store = load_target(board).instruction_model, stored_models()
    transfer = json.loads((CALIBRATION / "xnnpack_rpi4.json").read_text())
    bound, _ = armtiming.choose_bound(store, transfer, "rpi4")  # chosen where XNNPACK's figures are
    model, fit, _ = armtiming.calibrate(store, board, bound)
    rpi4, _, _ = armtiming.calibrate(store, "rpi4", bound)
    carried = armtiming.transfer_errors(transfer, rpi4)
    model.transfer_error_fp32 = round(armtiming.mean_abs(carried, "fp32"), 3)
    model.transfer_error_int8 = round(armtiming.mean_abs(carried, "int8"), 3)
    assert model == shipped
    assert len(fit.names) >= 20 and fit.mean_abs() == pytest.approx(np.mean(np.abs(fit.errors())))
    low = armtiming.best_case_ns(model.cpu, model.ghz)  # every group within the bound
    assert np.all(fit.weights >= low * (1 - 1e-6)) and np.all(fit.weights <= low * bound * (1 + 1e-6))


@needs_profiles
def test_arm_boards_are_estimated_from_each_artifacts_instructions(tmp_path):
    artifacts = [artifact_of(conv_model(tmp_path / "student_fp32.onnx", False)),
                 artifact_of(conv_model(tmp_path / "student_int8.onnx", True))]  # fmt: skip
    boards = board_estimates(artifacts, place(load_target("arm")), BenchConfig())
    assert [b.board for b in boards] == ["Jetson AGX Orin CPU", "Raspberry Pi 4", "Raspberry Pi 5"]
    for board in boards:
        fp32, int8 = board.rows
        for row in (fp32, int8):
            assert row.estimate.endswith(f"(estimated from ARM instructions, {board.board})"), row
            assert row.measured is False and "qemu -cpu" in row.estimated_by and 0 < row.band < 1
            assert row.load_instructions_m > 0 and row.profiled_on.startswith("cortex-a7")
        assert int8.p50_ms != fp32.p50_ms  # each from its own profile
        if board.target != "rpi4":  # an ARMv8.2 core: one SDOT does 16 multiply-adds, one FMLA 4
            assert 0 < int8.instructions_m["dot_i8"] < fp32.instructions_m["fmla_f32"] / 3


def test_without_a_compiler_boards_fall_back_to_the_flop_model_and_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "C compiler" in profile.unavailable()
    artifacts = [artifact_of(conv_model(tmp_path / "student_fp32.onnx", False)),
                 artifact_of(conv_model(tmp_path / "student_int8.onnx", True))]  # fmt: skip
    for board in board_estimates(artifacts, place(load_target("arm")), BenchConfig()):
        fp32, int8 = board.rows
        assert fp32.estimate.endswith(f"(estimated from FLOPs, {board.board})")
        assert "ARM instructions not profiled" in fp32.estimated_by and "C compiler" in fp32.estimated_by
        assert int8.status == "not run" and "C compiler" in int8.reason
