"""ARM's kernels without an ARM board: artifacts run by the aarch64 builds of onnxruntime,
OpenVINO, LiteRT and ncnn (this host's releases, where they have aarch64 wheels) under qemu
user-mode emulation, in an arm64 Python from Debian's archive (`edgekd.emulation.debian`).
Emulation gives numerics (accuracy, top-1 agreement), never latency: qemu's speed says nothing about a board's.

The root file system is built once, on first use, into ~/.cache/edgekd/arm-rootfs-<versions>
(EDGEKD_CACHE moves it), keyed by the runtime releases so that a host upgrade builds a new one.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from edgekd.emulation import debian
from edgekd.errors import EdgekdError

# qemu's model of the Raspberry Pi 5's core: dot-product and fp16 instructions, no SVE, like
# the boards edgekd targets; onnxruntime's and OpenVINO's kernels choose their code paths by it
CPU = "cortex-a76"
CPU_PART = "0xd0b"
FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
CORES = 4


def qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


# runtime -> its aarch64 package: the host's release, except where that release has no aarch64
# Linux wheel (ai-edge-litert 2.x has none; 1.4.0 is the newest that has). ExecuTorch is not
# here: its aarch64 Python runtime needs aarch64 torch, a root file system ten times the size.
PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai-edge-litert", "ncnn": "ncnn"}
AARCH64_RELEASES = {"litert": "1.4.0"}


def releases() -> dict[str, str]:
    """runtime -> the release whose aarch64 build runs under emulation, for the runtimes installed here."""
    from edgekd.runtime import runtime_version

    installed = {name: runtime_version(name) for name in PACKAGES}
    return {name: AARCH64_RELEASES.get(name, version) for name, version in installed.items() if version}


def wheels() -> list[str]:
    """The aarch64 packages of the runtimes installed here."""
    pins = [f"{PACKAGES[name]}=={version}" for name, version in releases().items()]
    return ["numpy<2.3", *pins]  # numpy 2.3's aarch64 wheels need a newer qemu than Debian 12's 7.2


def rootfs_dir() -> Path:
    cache = Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))
    versions = "-".join(w.replace("==", "") for w in wheels()[1:])
    return cache / f"arm-rootfs-{versions}"


def _system_files(fs: Path) -> None:
    """/proc/cpuinfo and /sys cpu files of a 4-core Cortex-A76, which qemu's -L prefix serves in
    place of the host's x86 ones (onnxruntime's cpuinfo and OpenVINO's xbyak read them)."""
    (fs / "proc").mkdir(exist_ok=True)
    core = f"BogoMIPS\t: 108.00\nFeatures\t: {FEATURES}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    core += f"CPU variant\t: 0x4\nCPU part\t: {CPU_PART}\nCPU revision\t: 1\n\n"
    (fs / "proc" / "cpuinfo").write_text("".join(f"processor\t: {i}\n{core}" for i in range(CORES)))
    cpus = fs / "sys" / "devices" / "system" / "cpu"
    for i in range(CORES):
        regs = cpus / f"cpu{i}" / "regs" / "identification"
        regs.mkdir(parents=True, exist_ok=True)
        (regs / "midr_el1").write_text(f"0x00000000414f{CPU_PART[2:]}1\n")
    for name in ("possible", "present", "online"):
        (cpus / name).write_text(f"0-{CORES - 1}\n")


def build_rootfs(root: Path | None = None) -> Path:
    """The arm64 root file system, built on first use (about 100 MB of downloads); returns it.
    Built in a temporary folder beside it and renamed when complete, so a crash leaves no half."""
    root = root or rootfs_dir()
    if (root / ".complete").is_file():
        return root
    if qemu() is None:
        raise EdgekdError("ARM emulation needs qemu user mode: apt-get install qemu-user-static")
    from edgekd.progress import log

    log(f"building the arm64 root file system for emulation in {root} (once; about a minute)")
    started = time.monotonic()
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=root.name + ".partial-", dir=root.parent))
    try:
        fs = work / "fs"
        packages = debian.build(fs)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
        pip += ["--dest", str(work / "wheels")]
        for tag in ("manylinux_2_36", "manylinux_2_35", "manylinux_2_28", "manylinux_2_17", "manylinux2014"):
            pip += ["--platform", f"{tag}_aarch64"]
        done = subprocess.run([*pip, "--python-version", debian.PYTHON, *wheels()], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgekdError(f"building the ARM emulation root file system: pip download failed: {last}")
        for wheel in sorted((work / "wheels").glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(fs / "opt" / "edgekd-site")
        _system_files(fs)
        manifest = {"packages": packages, "wheels": sorted(p.name for p in (work / "wheels").glob("*.whl"))}
        (fs / ".complete").write_text(json.dumps(manifest | {"seconds": round(time.monotonic() - started)}))
        try:
            fs.rename(root)
        except OSError:  # another build finished first: keep its copy
            if not (root / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def unavailable(mode: str | bool) -> str | None:
    """Why emulation will not run under `[verify] arm_emulation = mode`, or None if it will."""
    if mode is False:
        return "ARM emulation is off ([verify] arm_emulation = false)"
    if qemu() is None:
        if mode is True:
            raise EdgekdError(
                "[verify] arm_emulation = true but qemu user mode is not installed: "
                'apt-get install qemu-user-static, or set arm_emulation = "auto"'
            )
        return "qemu user mode is not installed (apt-get install qemu-user-static)"
    return None


def description(runtime: str) -> str:
    return f"{runtime} {releases()[runtime]} aarch64 kernels under qemu -cpu {CPU} (emulated)"


def arm_logits(
    jobs: list[tuple[str, str]], images: np.ndarray, root: Path | None = None, threads: int = 2
) -> list[np.ndarray]:
    """Logits of `images` for each (runtime, artifact path), computed by that runtime's aarch64
    build under qemu, through edgekd/runtime alone (the package shipped to devices)."""
    from edgekd.progress import progress
    from edgekd.remote import runtime_bundle

    root = build_rootfs(root)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with tarfile.open(fileobj=io.BytesIO(runtime_bundle()), mode="r:gz") as tar:
            tar.extractall(folder / "runtime", filter="data")
        np.save(folder / "images.npy", images.astype(np.float32))
        outputs = [str(folder / f"{i}.npy") for i in range(len(jobs))]
        spec = [[runtime, str(Path(path).resolve()), out, threads] for (runtime, path), out in zip(jobs, outputs)]
        (folder / "jobs.json").write_text(json.dumps(spec))
        env = {"PYTHONPATH": f"{folder / 'runtime'}:/opt/edgekd-site", "PYTHONHOME": "/usr", "PATH": "/usr/bin:/bin"}
        python = root / "usr" / "bin" / f"python{debian.PYTHON}"
        argv = [qemu(), "-cpu", CPU, "-L", str(root), str(python), "-m", "edgekd.runtime.logits"]
        argv += [str(folder / "jobs.json"), str(folder / "images.npy")]
        with progress() as bar:
            task = bar.add_task("verify on ARM kernels (qemu)", total=len(jobs), status="")
            with open(folder / "stderr.txt", "w+") as errors:  # a file: a chatty runtime cannot fill a pipe
                child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
                for line in child.stdout:
                    if line.startswith("done "):
                        bar.advance(task)
                failed = child.wait() != 0
                errors.seek(0)
                error = errors.read()
            if failed:
                last = (error.strip().splitlines() or ["no output"])[-1]
                raise EdgekdError(f"running artifacts under ARM emulation failed: {last}")
        return [np.load(out) for out in outputs]
