"""ARM's kernels without an ARM board: artifacts run by the aarch64 builds of onnxruntime,
OpenVINO, LiteRT, ncnn and ExecuTorch (this host's releases, where their aarch64 wheels run) under qemu
user-mode emulation, in an arm64 Python from Debian's archive (`edgekd.emulation.debian`).
Emulation gives numerics (accuracy, top-1 agreement), never latency: qemu's speed says nothing about a board's.

The root file system is built once, on first use, into ~/.cache/edgekd/arm-rootfs-<versions>
(EDGEKD_CACHE moves it), keyed by the runtime releases so that a host upgrade builds a new one.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.emulation import debian
from edgekd.errors import EdgekdError
from edgekd.io import cache_dir, waiting_for

# qemu's model of the Raspberry Pi 5's core: dot-product and fp16 instructions, no SVE, like
# the boards edgekd targets; onnxruntime's and OpenVINO's kernels choose their code paths by it
CPU = "cortex-a76"
CORES = 4


@dataclass(frozen=True)
class CpuModel:
    """What /proc/cpuinfo and MIDR_EL1 say of a core (its features match qemu's model of it)."""

    part: str
    variant: int
    revision: int
    features: str


CPU_MODELS = {
    "cortex-a76": CpuModel("0xd0b", 4, 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                           "asimdrdm lrcpc dcpop asimddp"),
    # the Raspberry Pi 4's core: ARMv8.0, no fp16 arithmetic, no dot product
    "cortex-a72": CpuModel("0xd08", 0, 3, "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
}  # fmt: skip


def qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def releases() -> dict[str, str]:
    """runtime -> the release whose aarch64 build runs under emulation, for the runtimes installed here:
    the host's release, or the session's `arm_release` where the host's has no aarch64 wheel that runs."""
    from edgekd.runtime import RUNTIMES, runtime_version, session_class

    installed = {name: runtime_version(name) for name in RUNTIMES if session_class(name).emulated}
    return {name: session_class(name).arm_release or version for name, version in installed.items() if version}


def wheels() -> list[str]:
    """The aarch64 packages of the runtimes installed here, but those with a site of their own (`runtime_site`)."""
    from edgekd.runtime import session_class

    pins = [f"{session_class(n).package}=={v}" for n, v in releases().items() if not session_class(n).arm_site]
    return ["numpy<2.3", *pins]  # numpy 2.3's aarch64 wheels need a newer qemu than Debian 12's 7.2


def rootfs_dir() -> Path:
    versions = "-".join(w.replace("==", "") for w in wheels()[1:])
    return cache_dir() / f"arm-rootfs-{versions}"


def _pip_download(pins: list[str], dest: Path, resolve: bool) -> list[Path]:
    """aarch64 wheels for Debian's Python, with their dependencies when `resolve`."""
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest)]
    for tag in ("manylinux_2_36", "manylinux_2_35", "manylinux_2_28", "manylinux_2_17", "manylinux2014"):
        pip += ["--platform", f"{tag}_aarch64"]
    pip += [] if resolve else ["--no-deps", "--platform", "any"]
    done = subprocess.run([*pip, "--python-version", debian.PYTHON, *pins], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgekdError(f"building the ARM emulation root file system: pip download failed: {last}")
    wheels = sorted(dest.glob("*.whl"))
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(dest.parent / "site")
    return wheels


def _build_once(root: Path, what: str, fill) -> Path:
    """`fill(work)` builds `work/fs`, which becomes `root`: built in a temporary folder beside it
    and renamed when complete, so a crash leaves no half."""
    if (root / ".complete").is_file():
        return root
    from edgekd.progress import log

    with waiting_for(root.parent / f".{root.name}.lock", what):
        if (root / ".complete").is_file():  # built by the process this one waited for
            return root
        log(f"building {what} for ARM emulation in {root} (once)")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=root.name + ".partial-", dir=root.parent))
        try:
            manifest = fill(work)
            seconds = round(time.monotonic() - started)
            (work / "fs" / ".complete").write_text(json.dumps(manifest | {"seconds": seconds}))
            (work / "fs").rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root


def runtime_site(runtime: str) -> Path:
    """A runtime's aarch64 build with the packages of its `Session.arm_site` (ExecuTorch: the
    torch it links), a folder for PYTHONPATH beside the root file system, built on first use."""
    from edgekd.runtime import runtime_version, session_class

    session = session_class(runtime)
    pins = [f"{session.package}=={session.arm_release or runtime_version(runtime)}", *session.arm_site]
    root = cache_dir() / f"arm-{pins[0].replace('==', '')}-{pins[1].replace('==', '')}"

    def fill(work: Path) -> dict:
        wheels = _pip_download(pins, work / "wheels", resolve=False)
        (work / "site").rename(work / "fs")
        return {"wheels": [w.name for w in wheels]}

    return _build_once(root, f"{session.package}'s aarch64 runtime and its own packages", fill)


def sites(runtimes) -> list[str]:
    """The folders the guest's PYTHONPATH needs beside the root file system for these runtimes."""
    from edgekd.runtime import session_class

    return [str(runtime_site(r)) for r in dict.fromkeys(runtimes) if session_class(r).arm_site]


def _system_files(fs: Path, cpu: str = CPU) -> None:
    """/proc/cpuinfo and /sys cpu files of a 4-core `cpu`, which qemu's -L prefix serves in
    place of the host's x86 ones (onnxruntime's cpuinfo and OpenVINO's xbyak read them)."""
    model = CPU_MODELS[cpu]
    (fs / "proc").mkdir(exist_ok=True)
    core = f"BogoMIPS\t: 108.00\nFeatures\t: {model.features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    core += f"CPU variant\t: {model.variant:#x}\nCPU part\t: {model.part}\nCPU revision\t: {model.revision}\n\n"
    (fs / "proc" / "cpuinfo").write_text("".join(f"processor\t: {i}\n{core}" for i in range(CORES)))
    cpus = fs / "sys" / "devices" / "system" / "cpu"
    for i in range(CORES):
        regs = cpus / f"cpu{i}" / "regs" / "identification"
        regs.mkdir(parents=True, exist_ok=True)
        midr = (0x41 << 24) | (model.variant << 20) | (0xF << 16) | (int(model.part, 16) << 4) | model.revision
        (regs / "midr_el1").write_text(f"0x{midr:016x}\n")
    for name in ("possible", "present", "online"):
        (cpus / name).write_text(f"0-{CORES - 1}\n")


def cpu_rootfs(root: Path, cpu: str) -> Path:
    """The root file system as a core `cpu` sees it: `root` itself for the default CPU, else a
    sibling of links to `root`'s folders with that core's /proc and /sys (built once)."""
    if cpu == CPU:
        return root
    if cpu not in CPU_MODELS:
        raise EdgekdError(f"no emulated CPU model '{cpu}'; known: {', '.join(CPU_MODELS)}")

    def fill(work: Path) -> dict:
        fs = work / "fs"
        fs.mkdir()
        for entry in root.iterdir():
            if entry.name not in ("proc", "sys", ".complete"):
                (fs / entry.name).symlink_to(entry)
        _system_files(fs, cpu)
        return {"links_to": str(root)}

    return _build_once(root.parent / f"{root.name}-{cpu}", f"the root file system's view of a {cpu}", fill)


def runtime_dir(folder: Path) -> Path:
    """edgekd/runtime (the package shipped to devices) unpacked into `folder`; returns the
    folder to put on the guest's PYTHONPATH."""
    from edgekd.targets.remote import runtime_bundle

    with tarfile.open(fileobj=io.BytesIO(runtime_bundle()), mode="r:gz") as tar:
        tar.extractall(folder / "runtime", filter="data")
    return folder / "runtime"


def build_rootfs(root: Path | None = None) -> Path:
    """The arm64 root file system, built on first use (about 100 MB of downloads); returns it."""

    pins = wheels()

    def fill(work: Path) -> dict:
        fs = work / "fs"
        packages = debian.build(fs)
        downloaded = _pip_download(pins, work / "wheels", resolve=True)
        (fs / "opt").mkdir(exist_ok=True)
        (work / "site").rename(fs / "opt" / "edgekd-site")
        _system_files(fs)
        return {"packages": packages, "wheels": [w.name for w in downloaded]}

    return _build_once(root or rootfs_dir(), "the arm64 root file system", fill)


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

    if qemu() is None:
        raise EdgekdError("ARM emulation needs qemu user mode: apt-get install qemu-user-static")
    root = build_rootfs(root)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        runtime_dir(folder)
        np.save(folder / "images.npy", images.astype(np.float32))
        outputs = [str(folder / f"{i}.npy") for i in range(len(jobs))]
        spec = [[runtime, str(Path(path).resolve()), out, threads] for (runtime, path), out in zip(jobs, outputs)]
        (folder / "jobs.json").write_text(json.dumps(spec))
        site = ":".join(["/opt/edgekd-site", *sites(runtime for runtime, _ in jobs)])
        env = {"PYTHONPATH": f"{folder / 'runtime'}:{site}", "PYTHONHOME": "/usr", "PATH": "/usr/bin:/bin"}
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
