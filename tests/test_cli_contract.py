"""What scripts rely on: --version, --json, --set checked like the config file, --dry-run
writing nothing, and every command's bad input as one `error:` line with exit status 2."""

from __future__ import annotations

import json

from edgekd import __version__
from edgekd.formats import FORMATS, artifact_of, artifact_root, format_of
from tests.bad_inputs import bad_input
from tests.helpers import assert_one_line_error, cli, edgekd


def test_version():
    done = edgekd("--version")
    assert done.returncode == 0 and done.stdout == f"edgekd {__version__}\n"


def test_targets_json_lists_every_profile_typed():
    done = cli("targets", "--json")
    assert done.returncode == 0
    targets = {t["name"]: t for t in json.loads(done.stdout)}
    assert {"x86", "arm", "cuda"} <= set(targets) and targets["arm"]["arch"] == "aarch64"
    assert {"activations", "weights"} <= set(targets["arm"]["int8"])


def test_set_overrides_the_config_and_a_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--out", str(out), "--dry-run", "--json",
               "--set", "distill.train.epochs=7", "--set", "student.name=mobilenet_v2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["config"]["distill"]["train"]["epochs"] == 7 and plan["config"]["student"]["name"] == "mobilenet_v2"
    assert [s["action"] for s in plan["stages"] if s["stage"] in ("teacher", "distill", "quantize")] == ["run"] * 3
    assert not out.exists()


@bad_input(
    "settings", "a misspelt or invalid `--set key=value`", "refused like the config file: names --set and the key"
)
def test_set_is_checked_like_the_config_file(tmp_path):
    out = str(tmp_path / "out")
    typo = cli("build", "--target", "x86", "--out", out, "--set", "distill.trian.epochs=2")
    assert_one_line_error(typo, "--set distill.trian.epochs=2", "unknown key 'distill.trian'", "did you mean 'train'")
    bad = cli("build", "--target", "x86", "--out", out, "--set", "distill.train.epochs=ten")
    assert_one_line_error(bad, "--set distill.train.epochs=ten", "valid integer")
    shape = cli("build", "--target", "x86", "--out", out, "--set", "epochs")
    assert_one_line_error(shape, "write key.path=value")
    assert not (tmp_path / "out").exists()


def test_the_format_table_names_every_exported_file(tmp_path):
    (tmp_path / "student_int8_openvino").mkdir()
    (tmp_path / "student_int8_openvino" / "model.xml").write_text("<net/>")
    (tmp_path / "student_fp32.onnx").write_bytes(b"onnx")
    assert format_of(tmp_path / "student_fp32.onnx") is FORMATS["onnx"]
    ir = artifact_of(tmp_path / "student_int8_openvino" / "model.xml")
    assert (ir.format, ir.precision, ir.runtime) == ("openvino", "int8", "openvino")
    assert artifact_root(ir.path) == tmp_path / "student_int8_openvino"
    assert artifact_root(tmp_path / "student_fp32.onnx") == tmp_path / "student_fp32.onnx"


def test_quantization_prints_nothing_on_stdout(capfd):
    # stdout carries results (`edgekd build --json`); NNCF's progress bars must not land there
    import torch

    from edgekd.models import create_model
    from edgekd.quantizers.nncf import insert_fake_quant
    from edgekd.targets import load_target

    model = create_model("mobilenet_v3_small", 2, small_input=True).eval()
    insert_fake_quant(model, load_target("x86").int8, [torch.rand(2, 3, 16, 16) for _ in range(2)])
    assert capfd.readouterr().out == ""


def test_the_readme_formats_table_and_the_help_come_from_the_format_registry():
    from edgekd.cli import OPENS
    from edgekd.formats.table import BEGIN, END, README, markdown

    assert README.read_text().split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n" == markdown(), (
        "README out of date: run python -m edgekd.formats.table"
    )
    assert all(fmt.opens in OPENS for fmt in FORMATS.values())
