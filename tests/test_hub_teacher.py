"""`--teacher hf-hub:ORG/NAME`: a timm model from the Hugging Face hub, read from a local hub
cache folder that the test lays out as the hub's client writes it (refs/main -> snapshot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import checkpoint, write_config

pytestmark = pytest.mark.slow
REPO = "edgekd-tests/resnet18-digits"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def seed_hub_cache(cache: Path, repo: str, classes: list[str]) -> Path:
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=len(classes))
    folder = cache / f"models--{repo.replace('/', '--')}"
    save_for_hf(model, str(folder / "snapshots" / REVISION), model_config={"label_names": classes},
                safe_serialization=True)  # fmt: skip
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    return folder


def edgekd(*args: str, cache: Path) -> subprocess.CompletedProcess:
    # a fresh interpreter: the hub client reads its cache folder and offline switch when imported
    env = os.environ | {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, env=env)


def test_a_hub_teacher_is_read_from_the_cache_and_distills(tmp_path):
    digits = [str(i) for i in range(10)]  # the embedded data's class folders
    seed_hub_cache(tmp_path / "hub", REPO, digits)
    config = write_config(tmp_path / "tiny.toml", {"data.max_train_samples": 64})
    result = edgekd("distill", "--config", str(config), "--teacher", f"hf-hub:{REPO}", "--out", str(tmp_path / "out"),
                    cache=tmp_path / "hub")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoint(result, "distill").is_file()


def test_a_hub_teacher_of_other_classes_or_not_cached_is_one_line(tmp_path):
    seed_hub_cache(tmp_path / "hub", REPO, [f"digit {i}" for i in range(10)])
    result = edgekd("distill", "--teacher", f"hf-hub:{REPO}", "--out", str(tmp_path / "out"), cache=tmp_path / "hub")
    assert result.returncode == 2 and "calls class 0 'digit 0'" in result.stderr, result.stderr[-2000:]
    result = edgekd("build", "--target", "x86", "--teacher", "hf-hub:edgekd-tests/absent", "--dry-run",
                    cache=tmp_path / "hub")  # fmt: skip
    assert result.returncode == 2 and "Hugging Face cache" in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1


def test_timm_default_weights_not_in_the_cache_are_one_line(tmp_path):
    result = edgekd("build", "--target", "x86", "--student", "timm:mobilenetv3_small_100", "--student-weights",
                    "default", "--dry-run", cache=tmp_path / "hub")  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Hugging Face cache" in result.stderr and "hf download timm/mobilenetv3_small_100" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
