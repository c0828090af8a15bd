"""Data larger than memory streams from disk: distillation on an image folder bigger than a
memory cap, with the process tree kept under that cap.

The cap is enforced two ways: a memory cgroup (v2 `memory.max`, or v1 `memory.limit_in_bytes`)
where this machine lets the test create one, which makes the kernel kill a run that goes over;
and, always, a watcher that samples the proportional set size (PSS: shared pages split between
the processes sharing them) of the process and its DataLoader workers every 50 ms, kills the
run at the cap, and reports the peak.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from tests.helpers import checkpoint, onnx_teacher, write_config

pytestmark = pytest.mark.slow

MB = 2**20
CAP = 1000 * MB
FOLDER = 1200 * MB
SIDE = 2048  # 12 MB per uncompressed BMP: few files, cheap to write and to decode

# distillation alone from a teacher file with random weights (near chance by design), one worker
SETTINGS = {
    "data": {"input_size": 16, "augment": [], "batch_size": 16, "workers": 1, "val_fraction": 0.25,
             "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "teacher": {"check_accuracy": False}, "distill.params": None, "quantize": None, "verify": None, "bench": None,
}  # fmt: skip


def write_big_folder(root: Path, total: int, classes: int = 3) -> int:
    """Noise BMPs, one base image per class with a per-file stripe; returns the bytes written."""
    rng = np.random.default_rng(0)
    bases = [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(classes)]
    written, index = 0, 0
    while written < total:
        label = index % classes
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image = bases[label].copy()
        image[index % SIDE] = index % 256  # no two files alike
        path = folder / f"{index:04d}.bmp"
        Image.fromarray(image).save(path)
        written += path.stat().st_size
        index += 1
    return written


def tree_pss(process: psutil.Process) -> int:
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class Watcher(threading.Thread):
    """Samples the tree's PSS until the process ends; kills it at the cap."""

    def __init__(self, pid: int, cap: int):
        super().__init__(daemon=True)
        self.process, self.cap, self.peak = psutil.Process(pid), cap, 0

    def run(self) -> None:
        while self.process.is_running() and self.process.status() != psutil.STATUS_ZOMBIE:
            try:
                self.peak = max(self.peak, tree_pss(self.process))
            except psutil.NoSuchProcess:
                return
            if self.peak > self.cap:
                self.process.kill()
                return
            time.sleep(0.05)


@contextmanager
def memory_cgroup(limit: int):
    """A memory cgroup capped at `limit`, or None where this machine allows none."""
    name = f"edgekd-test-{uuid.uuid4().hex[:8]}"
    for folder, limit_file in [(Path("/sys/fs/cgroup") / name, "memory.max"),
                               (Path("/sys/fs/cgroup/memory") / name, "memory.limit_in_bytes")]:  # fmt: skip
        try:
            folder.mkdir()
        except OSError:
            continue
        try:  # a real cgroup comes with its control files; a plain folder (tmpfs) does not
            if not (folder / limit_file).is_file():
                raise OSError
            (folder / limit_file).write_text(str(limit))
        except OSError:
            folder.rmdir()
            continue
        try:
            yield folder
        finally:
            for _ in range(50):  # the cgroup empties once its processes are reaped
                try:
                    folder.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        return
    yield None


@pytest.fixture
def big_folder(tmp_path):
    data = tmp_path / "big"
    assert write_big_folder(data, FOLDER) > CAP
    yield data
    shutil.rmtree(data)  # pytest keeps recent temporary folders: not 1.2 GB of them


def test_distill_streams_a_folder_larger_than_the_memory_cap(tmp_path, big_folder):
    data = big_folder
    config = tmp_path / "scale.toml"
    write_config(config, SETTINGS)
    teacher = onnx_teacher(tmp_path / "teacher.onnx", size=16)  # soft labels without a teacher to train
    command = [sys.executable, "-m", "edgekd", "distill", "--config", str(config), "--data", str(data)]
    command += ["--teacher", str(teacher)]
    with memory_cgroup(CAP) as cgroup:

        def join_cgroup() -> None:
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        process = subprocess.Popen(
            [*command, "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=join_cgroup,
        )
        watcher = Watcher(process.pid, CAP)
        watcher.start()
        stdout, stderr = process.communicate(timeout=600)
        watcher.join()
    print(f"peak PSS {watcher.peak / MB:.0f} MB, cap {CAP / MB:.0f} MB, folder {FOLDER / MB:.0f} MB, cgroup {cgroup}")
    assert watcher.peak <= CAP, f"peak {watcher.peak / MB:.0f} MB over the {CAP / MB:.0f} MB cap"
    assert process.returncode == 0, stderr[-3000:]
    assert checkpoint(subprocess.CompletedProcess(command, 0, stdout, stderr), "distill").is_file()
    assert watcher.peak > 100 * MB  # the watcher saw the run
