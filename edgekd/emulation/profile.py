"""Instruction profiles of ARM artifacts: the A64 instructions each runtime's aarch64 build
executes per inference, by class and per worker thread, counted under qemu user mode by a TCG
plugin (`insn_profile.c`), with the model's loading and warm-up excluded.

qemu's plugin support needs a dynamically linked qemu (Debian's static `qemu-user-static`
cannot load plugins), so Debian 12's `qemu-user` and its libraries are fetched from Debian's
archive into edgekd's cache once (about 35 MB of downloads) and run with their own loader, the same on any
x86-64 Linux host; the plugin is compiled on first use with the host's C compiler.

The counts are the runtime's true work on the board's instruction set, per precision and per
thread; `edgekd.targets.armtiming` turns them into a board's latency. qemu's own speed is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgekd.emulation import _build_once, build_rootfs, cpu_rootfs, debian
from edgekd.errors import EdgekdError
from edgekd.io import cache_dir

# the plugin's columns, in its order: instruction classes; "wait", blocks holding a spin-wait
# hint (idle polling); "syscall", system calls (a thread pool's futex waits and wakes)
CLASSES = (
    "fmla_f32", "fmla_f16", "dot_i8", "mmla_i8", "mul_int", "simd_other",
    "ldst_simd", "ldst_scalar", "branch", "int_other", "wait", "syscall",
)  # fmt: skip
WORK = CLASSES[:-2]
QEMU_PACKAGE = "qemu-user"  # Debian 12: qemu 7.2, plugin API version 1


@dataclass(frozen=True)
class Profile:
    """Instructions per inference, per class, for each thread that ran any (busiest first), and
    the instructions the runtime executed loading the model (all threads, all classes)."""

    threads: tuple[dict[str, float], ...]
    cpu: str
    load: float = 0.0
    pool: int = 0  # the threads the runtime said it runs with, where it may take fewer than asked; 0: as asked

    def total(self, name: str) -> float:
        return sum(t.get(name, 0.0) for t in self.threads)

    def millions(self) -> dict[str, float]:
        """Instructions per class, all threads, millions per inference (what the report shows;
        system calls are a count, not instructions, and stay out)."""
        return {name: round(self.total(name) / 1e6, 2) for name in CLASSES if name != "syscall"}

    def to_json(self) -> dict:
        threads = [{k: round(v) for k, v in t.items()} for t in self.threads]
        return {"cpu": self.cpu, "threads": threads, "load": round(self.load), "pool": self.pool}

    @classmethod
    def from_json(cls, data: dict) -> Profile:
        return cls(tuple(data["threads"]), data["cpu"], data.get("load", 0.0), data.get("pool", 0))


def unavailable() -> str | None:
    """Why instruction profiles cannot be taken on this host, or None."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"instruction profiles need an x86-64 Linux host for Debian's qemu-user (this is {platform.machine()})"
    if _compiler() is None:
        return "instruction profiles need a C compiler for qemu's plugin (apt-get install gcc, or set CC)"
    return None


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def qemu_dir() -> Path:
    """Debian 12's dynamically linked qemu-user for this x86-64 host, fetched once."""

    def fill(work: Path) -> dict:
        packages = debian.build(work / "fs", [QEMU_PACKAGE], arch="amd64")
        for unused in [*(work / "fs" / "usr" / "bin").glob("qemu-*"), work / "fs" / "usr" / "share"]:
            if unused.name != "qemu-aarch64":  # the package has every target; 10 MB is what is used
                shutil.rmtree(unused) if unused.is_dir() else unused.unlink()
        return {"packages": packages}

    return _build_once(cache_dir() / "qemu-user-bookworm", "Debian 12's qemu-user (for instruction profiles)", fill)


def plugin() -> Path:
    """The plugin, compiled once per source version into the cache."""
    source = resources.files("edgekd.emulation").joinpath("insn_profile.c").read_bytes()
    built = cache_dir() / f"insn_profile-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if built.is_file():
        return built
    reason = unavailable()
    if reason:
        raise EdgekdError(reason)
    built.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=built.parent) as scratch:
        src, out = Path(scratch) / "insn_profile.c", Path(scratch) / "insn_profile.so"
        src.write_bytes(source)
        # no fortified libc calls: the plugin runs inside Debian 12's glibc, maybe older than the host's
        argv = [_compiler(), "-O2", "-shared", "-fPIC", "-U_FORTIFY_SOURCE", "-o", str(out), str(src)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgekdError(f"compiling qemu's instruction-profile plugin failed: {last}")
        out.rename(built)
    return built


def prepare(cpus: list[str]) -> None:
    """Everything profiles need, fetched or built once (before profiles run side by side)."""
    root = build_rootfs()
    for cpu in cpus:
        cpu_rootfs(root, cpu)
    qemu_dir()
    plugin()


def qemu_command(cpu: str, counts: Path) -> list[str]:
    """argv prefix that runs an aarch64 program under the fetched qemu with the plugin loaded."""
    root = qemu_dir()
    loader = next(root.rglob("ld-linux-x86-64.so.2"), None)
    if loader is None:
        raise EdgekdError(f"{root} holds no x86-64 loader: delete the folder and run again to fetch qemu-user anew")
    libraries = ":".join(str(p) for p in (root / "lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu"))
    qemu = root / "usr" / "bin" / "qemu-aarch64"
    return [str(loader), "--library-path", libraries, str(qemu), "-plugin", f"{plugin()},out={counts}", "-cpu", cpu]


def parse(
    text: str, cpu: str, jobs: int, repeats: list[int], failed: dict[int, str], pools: dict[int, int]
) -> list[Profile | str]:
    """The plugin's lines -> one Profile per job (region 2k its inference, per inference; 2k + 1
    its loading), or, for a job the runtime could not run, the reason."""
    threads: list[list[dict[str, float]]] = [[] for _ in range(jobs)]
    load = [0.0] * jobs
    for line in text.splitlines():
        fields = line.split()
        region = int(fields[1])
        counts = dict(zip(CLASSES, map(int, fields[4:])))
        if region % 2:
            load[region // 2] += sum(counts[c] for c in WORK)
        else:
            threads[region // 2].append({c: n / repeats[region // 2] for c, n in counts.items()})
    profiles: list[Profile | str] = []
    for job, found in enumerate(threads):
        if job in failed:
            profiles.append(failed[job])
            continue
        if not found:
            raise EdgekdError(f"the instruction profile of job {job} is empty: the marker did not reach qemu")
        found.sort(key=lambda t: -sum(t[c] for c in WORK))
        profiles.append(Profile(tuple(found), cpu, load[job], pools.get(job, 0)))
    return profiles


def run_profiles(
    jobs: list[dict], cpu: str, site: str | None = None, bar=None, timeout_s: float = 600
) -> list[Profile | str]:
    """Each job (see edgekd.runtime.profile) run under `qemu -cpu cpu` with the plugin; per job a
    Profile, or why its runtime could not run it there. `site` adds folders to the guest's
    PYTHONPATH; `bar`, a rich Progress to report on (one of its own otherwise); `timeout_s`, per job."""
    from edgekd.emulation import runtime_dir
    from edgekd.progress import progress

    rootfs = cpu_rootfs(build_rootfs(), cpu)
    with tempfile.TemporaryDirectory() as scratch, nullcontext(bar) if bar else progress() as shown:
        folder = Path(scratch)
        runtime = runtime_dir(folder)
        (folder / "jobs.json").write_text(json.dumps(jobs))
        counts = folder / "counts.txt"
        python = rootfs / "usr" / "bin" / f"python{debian.PYTHON}"
        argv = [*qemu_command(cpu, counts), "-L", str(rootfs), str(python), "-m", "edgekd.runtime.profile"]
        argv.append(str(folder / "jobs.json"))
        path = f"{runtime}:/opt/edgekd-site" + (f":{site}" if site else "")
        env = {"PYTHONPATH": path, "PYTHONHOME": "/usr", "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"}
        task = shown.add_task(f"profile ARM instructions (qemu -cpu {cpu})", total=len(jobs), status="")
        failed, pools = _run(argv, env, folder / "stderr.txt", lambda: shown.advance(task), timeout_s * len(jobs))
        return parse(counts.read_text(), cpu, len(jobs), [job.get("repeats", 1) for job in jobs], failed, pools)


def _run(argv: list[str], env: dict, stderr: Path, advance, timeout_s: float) -> tuple[dict, dict]:
    """Runs the guest; returns the jobs it could not run, with why, and the thread pools runtimes
    reported. Killed past `timeout_s`."""
    failed: dict[int, str] = {}
    pools: dict[int, int] = {}
    with open(stderr, "w+") as errors:
        try:
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        except OSError as e:
            raise EdgekdError(f"starting qemu for instruction profiles failed: {e}") from None
        timer = threading.Timer(timeout_s, child.kill)
        timer.start()
        try:
            for line in child.stdout:
                if line.startswith(("done ", "failed ")):
                    advance()
                if line.startswith("failed "):
                    _, job, reason = line.rstrip("\n").split(" ", 2)
                    failed[int(job)] = reason
                if line.startswith("pool "):
                    _, job, threads = line.split()
                    pools[int(job)] = int(threads)
            code = child.wait()
        finally:
            timer.cancel()
            child.kill()
        if code != 0:
            errors.seek(0)
            last = (errors.read().strip().splitlines() or ["no output"])[-1]
            why = f"timed out after {timeout_s:.0f} s" if code == -9 else last
            raise EdgekdError(f"profiling ARM instructions under qemu failed: {why}")
    return failed, pools
