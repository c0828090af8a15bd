"""An output directory that cannot be written: a read-only one, and a real full disk (a small
tmpfs). Both need `mount` (root in a sandbox that permits it) and skip otherwise; the
interrupted-build tests in test_resume.py cover a full disk portably (RLIMIT_FSIZE)."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, save_torch
from tests.bad_inputs import bad_input
from tests.helpers import assert_one_line_error, edgekd


def mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def mounted(folder: Path, *args: str):
    folder.mkdir(parents=True, exist_ok=True)
    if not mount(*args, str(folder)):
        pytest.skip("mount is not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextmanager
def read_only(folder: Path):
    with mounted(folder, "--bind", str(folder)):
        if not mount("-o", "remount,bind,ro", str(folder)):
            pytest.skip("remount read-only is not permitted here")
        yield folder


def tmpfs(folder: Path, size: str):
    return mounted(folder, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


@bad_input("runs", "a read-only --out", 'refused before any work: "cannot create output directory"')
def test_read_only_output_directory_fails_before_any_work(tmp_path, image_folder, tiny_config):
    with read_only(tmp_path / "ro") as folder:
        out = folder / "run"
        done = edgekd("build", "--target", "x86", "--config", str(tiny_config), "--data", str(image_folder),
                      "--out", str(out))  # fmt: skip
        assert_one_line_error(done, f"cannot create output directory {out}", "Read-only file system", "--out")


@bad_input(
    "runs", "a disk that fills during training", 'stops: "cannot write FILE: No space left on device"; no partial file'
)
def test_full_disk_during_training_names_the_file_and_leaves_no_partial_file(tmp_path, image_folder, tiny_config):
    with tmpfs(tmp_path / "small", "4m") as out:
        done = edgekd("build", "--target", "x86", "--config", str(tiny_config), "--data", str(image_folder),
                      "--out", str(out))  # fmt: skip
        checkpoint = next(out.glob("work/teacher-*")) / "teacher.ckpt"
        assert_one_line_error(done, f"cannot write {checkpoint}", "No space left on device", "--resume")
        assert [p.name for p in out.rglob("*") if p.is_file()] == []


@bad_input("runs", "a disk that fills while OpenVINO or torch writes", "stops naming the file; no partial file")
def test_full_disk_in_openvino_and_torch_writers(tmp_path):
    with tmpfs(tmp_path / "small", "1m") as out:
        model = ov.convert_model(torch.nn.Linear(1000, 1000), example_input=torch.zeros(1, 1000))
        # OpenVINO's C++ writer raises a RuntimeError without the errno
        with pytest.raises(EdgekdError, match=r"cannot write .*model: No space left on device"):
            with atomic_path(out / "model") as tmp:  # a folder artifact, as OpenVINO IR
                tmp.mkdir()
                ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        with pytest.raises(EdgekdError, match=r"cannot write .*state.pt: No space left on device"):
            save_torch({"weights": np.zeros(2**18)}, out / "state.pt")
        assert list(out.iterdir()) == []
