"""A kill loses nothing and changes nothing: one real build is killed with SIGKILL in the
teacher, mid-epoch in distill, in QAT, during export and during bench, resumed with --resume
each time, and its artifacts come out byte for byte as an uninterrupted build's. And two
builds into one --out: the second stops at once, naming the first; a killed one blocks nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.bad_inputs import bad_input
from tests.helpers import assert_one_line_error, write_config, write_image_folder

pytestmark = pytest.mark.slow

# the tiny pipeline on every image of a small folder, two epochs or more a stage, int8 agreement not held
SETTINGS = {
    "data.batch_size": 8, "data.max_train_samples": None, "data.max_val_samples": None, "teacher.check_accuracy": None,
    "teacher.train.epochs": 2, "distill.train.epochs": 3, "quantize.calibration_samples": 16,
    "quantize.train.epochs": 2, "export.formats": ["onnx", "openvino"], "verify.min_agreement_fp32": 0.9,
    "verify.min_agreement_int8": 0.0, "bench": {"warmup": 1, "runs": 20},
}  # fmt: skip

# (where, what shows the build is there: a file under OUT, or a line on stderr)
KILL_POINTS = [
    ("teacher, after its first epoch", "work/teacher-*/teacher.ckpt"),
    ("distill, mid-epoch", "work/distill-*/distill.ckpt mid-epoch"),
    ("quantization-aware training", "work/quantize-*/quantize.ckpt"),
    ("export", "artifacts/*"),
    ("bench", "stderr:bench on host: "),  # x86 on an x86-64 host: its table is the host's
]


class Build:
    def __init__(self, root: Path, out: Path):
        self.root, self.out = root, out

    def command(self, *extra: str) -> list[str]:
        args = ["build", "--target", "x86", "--config", str(self.root / "kill.toml"), "--data", str(self.root / "data")]
        return [sys.executable, "-m", "edgekd", *args, "--out", str(self.out), *extra]

    def start(self, *extra: str) -> tuple[subprocess.Popen, list[str]]:
        env = os.environ | {"COLUMNS": "400"}
        process = subprocess.Popen(
            self.command(*extra), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
        return process, lines

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*extra), capture_output=True, text=True, timeout=900)

    def kill_at(self, sign: str, *extra: str) -> None:
        """SIGKILL as soon as `sign` shows; for an epoch checkpoint marked mid-epoch, half an
        epoch after its second write (the epoch's length is the time between two writes)."""
        process, lines = self.start(*extra)
        mid_epoch = sign.endswith(" mid-epoch")
        sign = sign.removesuffix(" mid-epoch")
        self._wait(process, lines, lambda: self._shows(sign, lines), sign)
        if mid_epoch:
            (checkpoint,) = self.out.glob(sign)
            first = checkpoint.stat().st_mtime
            self._wait(process, lines, lambda: checkpoint.stat().st_mtime != first, f"a second write of {sign}")
            time.sleep((checkpoint.stat().st_mtime - first) / 2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(60) == -signal.SIGKILL

    @staticmethod
    def _wait(process: subprocess.Popen, lines: list[str], condition, what: str) -> None:
        deadline = time.monotonic() + 300
        while not condition():
            assert process.poll() is None, f"the build ended before {what}: {''.join(lines)[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} after 300 s"
            time.sleep(0.005)

    def _shows(self, sign: str, lines: list[str]) -> bool:
        if sign.startswith("stderr:"):
            return any(sign[len("stderr:") :] in line for line in list(lines))
        return any(self.out.glob(sign))

    def artifacts(self) -> dict[str, str]:
        report = json.loads((self.out / "report.json").read_text())
        return {a["name"]: a["sha256"] for a in report["artifacts"]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    write_image_folder(root / "data", classes=3, per_class=32)
    write_config(root / "kill.toml", SETTINGS)
    return root


@bad_input(
    "runs",
    "SIGKILL at any point (teacher, mid-epoch distill, QAT, export, bench), then --resume",
    "same artifact bytes as an uninterrupted build",
)
def test_a_build_killed_five_times_and_resumed_gives_the_same_bytes(root):
    reference = Build(root, root / "uninterrupted")
    done = reference.run()
    assert done.returncode == 0, done.stderr[-3000:]
    killed = Build(root, root / "killed")
    for n, (_, sign) in enumerate(KILL_POINTS):
        killed.kill_at(sign, *(["--resume"] if n else []))
    assert not (killed.out / "report.json").exists()
    done = killed.run("--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher: reusing" in done.stderr and "distill mobilenet_v3_small" not in done.stderr
    assert killed.artifacts() == reference.artifacts()
    assert len(killed.artifacts()) == 4


@bad_input(
    "runs",
    "a second build into the same --out while one runs",
    'refused at once: "is in use by another edgekd build (pid N)"',
)
def test_a_second_build_into_the_same_out_stops_at_once(root):
    build = Build(root, root / "busy")
    first, lines = build.start()
    try:
        holds_the_lock(build, first, lines)
        started = time.monotonic()
        second = build.run()
        assert_one_line_error(second, f"{build.out} is in use by another edgekd build (pid {first.pid},")
        assert time.monotonic() - started < 30  # at once, not after the first finishes
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(60)
    # the kernel dropped the killed build's lock: a resumed build takes it (the builds resumed
    # after each SIGKILL in the test above go on to finish)
    resumed, lines = build.start("--resume")
    try:
        holds_the_lock(build, resumed, lines)
    finally:
        resumed.send_signal(signal.SIGKILL)
        resumed.wait(60)


def holds_the_lock(build: Build, process: subprocess.Popen, lines: list[str]) -> None:
    """Waits until OUT's lock file names `process` as its holder."""
    lock, deadline = build.out / ".edgekd.lock", time.monotonic() + 120
    while not lock.is_file() or not lock.read_text().startswith(f"pid {process.pid},"):
        assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.05)
