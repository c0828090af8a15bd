"""A build's specification: each target's kind decided once, the tables it gets, and the config
checked once, and again only when changed after it was checked; `build --until`, `distill` and
`quantize` run the build's own training stages."""

from __future__ import annotations

import json
import platform

import pytest

from edgekd.config import check_names, checked_config, load_config
from edgekd.errors import EdgekdError
from edgekd.spec import build_spec
from edgekd.targets import load_target
from edgekd.targets.kinds import Kind, host_placement, place
from edgekd.targets.remote import parse_device
from tests.helpers import assert_one_line_error, checkpoint, cli

NATIVE = {"x86_64": "x86", "aarch64": "arm"}.get(platform.machine())


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the kinds below are an x86-64 host's")
def test_each_target_has_one_kind_from_here():
    assert place(load_target("x86")).kind is Kind.HOST
    arm = place(load_target("arm"))
    assert arm.kind is Kind.EMULATED_ARM and arm.emulated and not arm.on_host
    assert [b.name for b in arm.boards] == ["jetson-orin-cpu", "rpi4", "rpi5"]  # estimated on every board
    rpi5 = place(load_target("rpi5"))
    assert rpi5.kind is Kind.ESTIMATED_BOARD and [b.name for b in rpi5.boards] == ["rpi5"] and rpi5.emulated
    cuda = place(load_target("cuda"))
    assert cuda.kind is Kind.CUDA and not cuda.emulated and cuda.boards == ()
    board = place(load_target("arm"), parse_device("ssh://pi@board"))
    assert board.kind is Kind.SSH_DEVICE and board.verified_as is Kind.EMULATED_ARM  # verified as its arch
    assert host_placement().target.name == "host"


@pytest.mark.skipif(NATIVE is None, reason="no target profile of this host's architecture to compare")
def test_a_target_of_this_host_gets_one_table_another_two():
    assert [p.target.name for p in build_spec(load_config(), NATIVE).tables] == ["host"]
    other = "arm" if NATIVE == "x86" else "x86"
    assert [p.target.name for p in build_spec(load_config(), other).tables] == ["host", other]


def test_the_config_is_checked_once_unless_changed(monkeypatch):
    cfg = load_config()
    calls = []
    monkeypatch.setattr("edgekd.config.check_names", lambda c, source: calls.append(source) or check_names(c, source))
    checked = checked_config(cfg)
    assert calls == [] and checked is not cfg  # load_config checked it: a copy, not checked again
    assert checked_config(checked) is not checked and calls == []
    cfg.distill.train.epochs = 0  # a Python API user's change after load_config
    with pytest.raises(EdgekdError, match="distill.train.epochs = 0 would ship an untrained student"):
        checked_config(cfg)
    assert calls == ["config"]


def test_the_specification_keeps_its_own_config():
    cfg = load_config()
    spec = build_spec(cfg, "x86")
    cfg.distill.train.epochs = 7
    assert spec.config.distill.train.epochs != 7


def test_build_until_quantize_trains_the_builds_own_stages_which_the_build_then_reuses(tmp_path, tiny_config):
    out = tmp_path / "out"
    trained = cli("build", "--target", "arm", "--until", "quantize", "--config", str(tiny_config), "--out", str(out))
    assert trained.returncode == 0, trained.stderr[-2000:]
    student, qat = checkpoint(trained, "distill"), checkpoint(trained, "quantize")
    assert student.is_file() and qat.is_file() and student.parent.parent == qat.parent.parent == out / "work"
    assert not (out / "artifacts").exists() and not (out / "report.json").exists()  # nothing after training
    # the build plans the same stages: both found finished; no ARM tool was needed to train
    planned = json.loads(cli("build", "--target", "arm", "--config", str(tiny_config), "--out", str(out),
                             "--dry-run", "--json").stdout)  # fmt: skip
    actions = {s["stage"]: (s["action"], s["where"]) for s in planned["stages"]}
    assert actions["distill"] == ("reuse", str(student.parent)) and actions["quantize"] == ("reuse", str(qat.parent))
    # `edgekd distill` is the same stage: reused, not trained again
    written = student.stat().st_mtime_ns
    again = cli("distill", "--config", str(tiny_config), "--out", str(out))
    assert checkpoint(again, "distill") == student and student.stat().st_mtime_ns == written


def test_until_names_a_training_stage(tmp_path, tiny_config):
    done = cli("build", "--target", "x86", "--until", "export", "--config", str(tiny_config), "--out", str(tmp_path))
    assert_one_line_error(done, "--until export: one of distill, quantize")
