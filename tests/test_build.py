"""One end-to-end `edgekd build` on a tiny configuration, then a rerun that reuses its training stages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import cli, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    # 32 images under emulation: qemu's start and the runtimes' imports take 11 s, each image 0.1 s more
    config = write_config(root / "tiny.toml", {"verify.emulation_images": 32})
    out, rerun = root / "out", root / "rerun"
    command = [sys.executable, "-m", "edgekd", "build", "--target", "arm", "--config", str(config)]
    first = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    # The rerun goes into a copy of the first build's stages (the keys hold no path), so that the
    # first build's report stays for the other tests to read. It stops after the training stages
    # (a rerun that goes on from reused checkpoints: test_resume), and must reuse every one.
    if (out / "work").is_dir():  # else the first build failed, which its test says
        shutil.copytree(out / "work", rerun / "work")
    second = subprocess.run([*command, "--out", str(rerun), "--until", "quantize"], capture_output=True, text=True)
    return out, first, second


def test_build_succeeds_and_prints_the_table(built):
    out, first, _ = built
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"report: {out / 'report.md'}" in first.stdout
    assert "host (measured)" in first.stderr + first.stdout


def test_report_json_has_every_artifact_verified_and_measured_on_host(built):
    out, _, _ = built
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "edgekd.report/1" and report["target"] == "arm"
    names = {a["name"] for a in report["artifacts"]}
    assert names == {"onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8"}
    for artifact in report["artifacts"]:
        check = artifact["verification"]
        assert check["passed"]
        assert (out / "artifacts").exists() and artifact["size_mb"] > 0
        # ARM's figures come from ARM's kernels under qemu (CI installs it), never from this host's
        assert check["method"] == "emulated", (artifact["name"], check["checked_by"])
        assert "aarch64 kernels under qemu" in check["checked_by"] and check["images"] > 0
        assert check["accuracy"] is not None and check["agreement"] >= check["min_agreement"]
    host, arm = report["tables"]
    assert host["target"] == "host" and host["measured"]
    for row in host["rows"]:
        assert row["status"] == "ok", row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["fps"] > 0 and row["peak_rss_mb"] > 0 and row["first_ms"] > 0
    int8_rows = [r for r in host["rows"] if r["precision"] == "int8"]
    assert all(r["executed"].startswith(("int8", "mixed")) for r in int8_rows), int8_rows
    # ARM latency cannot be measured on this x86 host: not run, with the reason; its numerics are ARM's
    assert arm["target"] == "arm" and not arm["measured"]
    for row in arm["rows"]:
        assert row["status"] == "not run" and "aarch64" in row["reason"] and "p50_ms" not in row
        assert row["accuracy"] is not None and row["numerics"].startswith("emulated"), row
    # ...and its latency is each named board's estimate from the artifact's own ARM instructions, with
    # its band, int8 included (the emulated core runs SDOT where the board's has it)
    assert {b["target"] for b in arm["estimates"]} == {"rpi4", "rpi5", "jetson-orin-cpu"}
    for board in arm["estimates"]:
        for row, guess in zip(arm["rows"], board["rows"]):
            if (board["target"], row["artifact"]) == ("rpi4", "openvino-int8"):
                # OpenVINO's aarch64 CPU plugin does not compile this int8 IR for an ARMv8.0 core: said, not guessed
                assert guess["status"] == "not run" and "could not run it on a cortex-a72" in guess["reason"], guess
                continue
            label = f"(estimated from ARM instructions, {board['board']})"
            assert guess["status"] == "ok" and guess["estimate"].endswith(label) and "±" in guess["estimate"], guess
            assert guess["measured"] is False and guess["instructions_m"]["branch"] > 0
            dot = guess["instructions_m"]["dot_i8"]
            assert dot > 0 if row["precision"] == "int8" and board["target"] != "rpi4" else dot == 0, guess
    # the ARM recommendation comes from ARM's figures: ARM accuracy, the boards' estimates
    assert arm["recommended"] in arm["recommended_by_board"].values()
    assert report["snippet"]["target"] == "arm"


def test_report_md_has_a_table_per_target_and_the_environment(built):
    out, _, _ = built
    text = (out / "report.md").read_text()
    assert "| Artifact | Precision | Runtime | Status | Size MB | Accuracy |" in text
    assert "## host:" in text and "## arm:" in text
    assert "Latency on ARM boards, ESTIMATED" in text and "(estimated from ARM instructions, Raspberry Pi 5)" in text
    assert "fastest by ESTIMATED p50 on" in text
    assert "avx2=" in text and "onnxruntime" in text and "openvino" in text
    assert (out / "latency_accuracy_host.png").stat().st_size > 0


def test_rerun_reuses_finished_stages(built):
    _, _, second = built
    assert second.returncode == 0, second.stderr[-3000:]
    assert "teacher: reusing" in second.stderr
    assert "distill" not in second.stderr.split("student ")[0]  # no training bar before the student line
    assert "quantization-aware training" not in second.stderr


def test_dry_run_says_what_a_rerun_reuses_and_a_changed_setting_reruns(built):
    out = built[0]
    config = out.parent / "tiny.toml"
    stamp = (out / "report.json").stat().st_mtime_ns

    def dry_run(*sets: str) -> dict[str, str]:
        done = cli("build", "--target", "arm", "--config", str(config), "--out", str(out), "--dry-run", "--json", *sets)
        assert done.returncode == 0, done.stderr[-3000:]
        plan = json.loads(done.stdout)  # stdout is the JSON alone: progress went to stderr
        return {stage["stage"]: stage["action"] for stage in plan["stages"]}

    assert dry_run() == {"teacher": "reuse", "distill": "reuse", "quantize": "reuse"} | {
        "export": "run", "verify": "run", "bench": "run", "report": "run"
    }  # fmt: skip
    changed = dry_run("--set", "quantize.calibration_samples=16")
    assert (changed["teacher"], changed["distill"], changed["quantize"]) == ("reuse", "reuse", "run")
    assert dry_run("--set", "distill.params.temperature=2.0")["distill"] == "run"
    assert (out / "report.json").stat().st_mtime_ns == stamp, "a dry run wrote to --out"


def test_report_json_and_tables_go_to_stdout(built):
    out = built[0]
    done = subprocess.run(
        [sys.executable, "-m", "edgekd", "report", str(out), "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0 and json.loads(done.stdout) == json.loads((out / "report.json").read_text())
    tables = subprocess.run([sys.executable, "-m", "edgekd", "report", str(out)], capture_output=True, text=True)
    assert "host (measured)" in tables.stdout and "onnx-int8" in tables.stdout
    assert "host (measured)" not in tables.stderr
