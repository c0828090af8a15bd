"""ARM without hardware: artifacts run under qemu-aarch64 user-mode emulation, with an arm64
Python from Debian's packages and the aarch64 wheels of numpy and onnxruntime, so that int8
artifacts are checked on ARM's own kernels (accuracy, top-1 agreement). Emulation says
nothing about ARM latency, and edgekd never reports one from it.

The root file system is built once, on first use, into ~/.cache/edgekd/arm-rootfs
(EDGEKD_CACHE moves it): `apt-get download` of the arm64 packages with a private package
list (the system's apt configuration is not touched), `dpkg -x`, `pip download` of the
wheels, plus a /proc/cpuinfo and /sys cpu files describing ARM cores, which onnxruntime's
cpuinfo reads and qemu's -L prefix serves (without them it crashes on the host's x86 ones).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError

PYTHON = "3.11"
PACKAGES = [
    f"python{PYTHON}-minimal",
    f"libpython{PYTHON}-minimal",
    f"libpython{PYTHON}-stdlib",
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
]
WHEELS = ["numpy<2.3", "onnxruntime"]
CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
    "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    "CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
    for i in range(4)
)


def rootfs_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd")) / "arm-rootfs"


def qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgekdError(f"building the ARM emulation root file system: {what} failed: {last}")


def build_rootfs(root: Path | None = None) -> Path:
    """The arm64 root file system, built on first use; returns its folder."""
    root = root or rootfs_dir()
    if (root / ".complete").is_file():
        return root
    if qemu() is None:
        raise EdgekdError("ARM emulation needs qemu user-mode emulation: apt-get install qemu-user-static")
    work = root.with_name(root.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "debs").mkdir()
    apt = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64"]
    apt += ["-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}"]
    _run(["apt-get", *apt, "update"], "apt-get update (arm64 package lists)")
    _run(["apt-get", *apt, "download", *[f"{p}:arm64" for p in PACKAGES]], "apt-get download", cwd=work / "debs")
    fs = work / "fs"
    for deb in sorted((work / "debs").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(fs)], f"dpkg-deb -x {deb.name}")
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels)]
    pip += ["--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64"]
    _run([*pip, "--python-version", PYTHON, *WHEELS], "pip download of the aarch64 wheels")
    site = fs / "opt" / "edgekd-site"
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    (fs / "proc").mkdir(exist_ok=True)
    (fs / "proc" / "cpuinfo").write_text(CPUINFO)
    cpu = fs / "sys" / "devices" / "system" / "cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpu / name).write_text("0-3\n")
    shutil.rmtree(root, ignore_errors=True)
    fs.rename(root)
    shutil.rmtree(work, ignore_errors=True)
    (root / ".complete").write_text("")
    return root


def arm_logits(artifact: str, images: np.ndarray, root: Path | None = None) -> np.ndarray:
    """Logits of `images` from the ONNX artifact, computed by aarch64 onnxruntime under qemu,
    through edgekd/runtime alone (the package shipped to devices)."""
    import io
    import tarfile
    import tempfile

    from edgekd.remote import runtime_bundle

    with tempfile.TemporaryDirectory() as runtime_root:
        with tarfile.open(fileobj=io.BytesIO(runtime_bundle()), mode="r:gz") as tar:
            tar.extractall(runtime_root, filter="data")
        return _run_logits(Path(runtime_root), artifact, images, root)


def _run_logits(runtime_root: Path, artifact: str, images: np.ndarray, root: Path | None) -> np.ndarray:
    root = build_rootfs(root)
    folder = Path(artifact).resolve().parent
    inputs, outputs = folder / ".emulated-in.npy", folder / ".emulated-out.npy"
    np.save(inputs, images.astype(np.float32))
    code = (
        "import sys, numpy as np; from edgekd.runtime import open_session; "
        "s = open_session('onnxruntime', sys.argv[1], 4); x = np.load(sys.argv[2]); "
        "np.save(sys.argv[3], np.concatenate([s.run(x[i:i + 64]) for i in range(0, len(x), 64)]))"
    )
    env = {"PYTHONPATH": f"{runtime_root}:/opt/edgekd-site", "PYTHONHOME": "/usr", "PATH": "/usr/bin:/bin"}
    python = root / "usr" / "bin" / f"python{PYTHON}"
    argv = [qemu(), "-L", str(root), str(python), "-c", code, str(Path(artifact).resolve()), str(inputs), str(outputs)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgekdError(f"running {artifact} under ARM emulation failed: {last}")
        return np.load(outputs)
    finally:
        inputs.unlink(missing_ok=True)
        outputs.unlink(missing_ok=True)
