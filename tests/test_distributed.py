"""torchrun: `edgekd distill` in 2 CPU processes (gloo), killed with SIGKILL mid-distillation
and resumed. Each process trains on half the images, DDP keeps the weights (the student's and
the FitNet adapters') the same on both, and rank 0 alone writes.

The processes train an edgekd teacher too (DDP as well) and a FitNet loss, whose adapters are
parameters outside the student: `fit` raises if any weight differs between ranks at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from edgekd.training.distributed import state_digest
from tests.helpers import checkpoint, write_config, write_image_folder

pytestmark = pytest.mark.slow

# distillation alone, FitNets (hooks on both models) from a mobilenet_v3_small teacher, every image
SETTINGS = {
    "data.batch_size": 4, "data.max_train_samples": None, "data.max_val_samples": None,
    "teacher": {"arch": "mobilenet_v3_small", "train": {"epochs": 1, "lr": 0.003, "optimizer": "adamw"}},
    "distill.loss": "fitnet",
    "distill.params": {"pairs": [["features.3", "features.3"]], "kd_weight": 0.9, "in_channels": 3, "input_size": 16},
    "distill.train.epochs": 6, "quantize": None, "verify": None, "bench": None,
}  # fmt: skip
EPOCHS = 6
TRAIN_IMAGES = 24  # 3 classes x 10 images, 6 of them split off for validation


def torchrun(root: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    args = ["distill", "--config", str(root / "pipeline.toml"), "--data", str(root / "data")]
    args += ["--out", str(root / "out")]
    env = os.environ | {"COLUMNS": "400"}  # log lines unwrapped
    return subprocess.Popen(
        [*command, "-m", "edgekd", *args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL to torchrun and its workers (which it starts in sessions of their own)."""
    for each in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
        each.kill()
    process.communicate(timeout=60)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    write_image_folder(root / "data", classes=3, per_class=10)
    write_config(root / "pipeline.toml", SETTINGS)
    first = torchrun(root)
    deadline = time.monotonic() + 240
    while not (checkpoints := list((root / "out" / "work").glob("distill-*/distill.ckpt"))):
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no distill.ckpt after 240 s"
        time.sleep(0.02)
    kill_all(first)
    (checkpoint,) = checkpoints  # the build's own distill stage
    assert not (checkpoint.parent / "student_fp32.pt").exists(), "distillation finished before the kill"
    killed_at = torch.load(checkpoint, weights_only=False)["epoch"]
    assert 1 <= killed_at < EPOCHS

    second = torchrun(root, "--resume")
    stdout, stderr = second.communicate(timeout=300)
    return checkpoint.parent, killed_at, subprocess.CompletedProcess(second.args, second.returncode, stdout, stderr)


def test_resume_under_torchrun_continues_after_the_killed_epoch(resumed):
    distilled, killed_at, done = resumed
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher: reusing" in done.stderr
    # printed once: rank 0 speaks for both processes
    assert done.stderr.count(f"resuming after epoch {killed_at}/{EPOCHS}") == 1
    assert torch.load(distilled / "distill.ckpt", weights_only=False)["epoch"] == EPOCHS


def test_each_process_trains_on_half_the_images_and_ends_with_the_saved_weights(resumed):
    distilled, _, done = resumed
    line = next(x for x in done.stderr.splitlines() if x.startswith("distill mobilenet_v3_small (fitnet): 2 proc"))
    half = TRAIN_IMAGES // 2
    assert f"2 processes trained on {half}+{half} of {TRAIN_IMAGES} images per epoch" in line
    digests = re.search(r"weights sha256 per rank: (\w+), (\w+)$", line).groups()
    saved = torch.load(distilled / "student_fp32.pt", weights_only=False)["state_dict"]
    assert digests == (state_digest(saved)[:16],) * 2


def test_rank_0_alone_writes(resumed):
    distilled, _, done = resumed
    out = distilled.parent.parent
    assert done.stdout.count("distill: ") == 1 and checkpoint(done, "distill") == distilled / "student_fp32.pt"
    assert sorted(p.name for p in out.rglob("*.pt")) == ["student_fp32.pt", "teacher.pt"]
    assert not list(out.rglob(".*.tmp-*")), "a temporary file was left behind"
