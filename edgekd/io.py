"""Atomic writes: every artifact is written to a temporary name beside its target, then renamed,
so a crash or a full disk never leaves a half-written file under the final name."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import resource
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgekd.errors import EdgekdError


def cache_dir() -> Path:
    """edgekd's cache (datasets, image checks, the ARM root file system): $EDGEKD_CACHE or ~/.cache/edgekd."""
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yields a temporary path to write (a file or a folder); renames it to `final` on success."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgekdError(f"cannot create output directory {final.parent}: {_why(e)}") from None
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        raise EdgekdError(f"cannot write {final}: {_why(e)}") from None
    except RuntimeError as e:  # C++ writers (OpenVINO) lose the errno: look at the disk instead
        reason = _full(tmp)
        if reason is None:
            raise
        raise EdgekdError(f"cannot write {final}: {_why(OSError(reason, os.strerror(reason)))}") from e
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


# the fix for each way a write fails; a stage that stopped on a full disk resumes where it was
FIXES = {
    errno.ENOSPC: "free some space, then rerun with --resume",
    errno.EDQUOT: "free some space, then rerun with --resume",
    errno.EFBIG: "the file size limit (ulimit -f) is too small: raise it, then rerun with --resume",
    errno.EROFS: "the output directory is read-only: choose another --out",
    errno.EACCES: "the output directory is not writable: fix its permissions or choose another --out",
    errno.EPERM: "the output directory is not writable: fix its permissions or choose another --out",
}


def _why(error: OSError) -> str:
    fix = FIXES.get(error.errno, "choose another --out")
    return f"{error.strerror or error}; {fix}"


def _full(tmp: Path) -> int | None:
    """The errno a failed write most likely met, judged from the disk and the size limit."""
    try:
        if shutil.disk_usage(tmp.parent).free < 16 * 2**20:  # the writer may have removed its partial file
            return errno.ENOSPC
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and tmp.is_file() and tmp.stat().st_size >= limit:
            return errno.EFBIG
    except OSError:
        return None
    return None


def check_writable(folder: Path) -> None:
    """Fails early, before hours of training, on an output directory that cannot be written."""
    with atomic_path(Path(folder) / ".edgekd-write-check") as tmp:
        tmp.write_bytes(b"")
    (Path(folder) / ".edgekd-write-check").unlink(missing_ok=True)  # torchrun: every process checks


def _lock(path: Path):
    """An open, exclusively locked `path`, or None while another process holds it. The lock
    file is removed on release, so a lock taken on a file just unlinked by its last holder is
    retried on the new file: otherwise two builds could each hold a lock, on different files."""
    while True:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            return None, holder
        try:
            if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                return fh, None
        except FileNotFoundError:
            pass
        fh.close()


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Holds FOLDER/.edgekd.lock while a build writes there: a second build into the same folder
    stops at once, naming the first. The kernel drops the lock when its holder dies, so a
    killed build never leaves it stuck; a build that ends removes the file."""
    check_writable(folder)
    path = Path(folder) / ".edgekd.lock"
    fh, holder = _lock(path)
    if fh is None:
        raise EdgekdError(
            f"{folder} is in use by another edgekd build ({holder or 'another process'}); wait for it to finish, "
            "or choose another --out"
        )
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
    except OSError:
        pass  # a full disk: the lock holds without the holder's name, and the build says what is full
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before the unlock: a waiter then finds the file gone and retries
        fh.close()


@contextmanager
def waiting_for(path: Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on `path` (a file left in place), waiting for another process that
    holds it, saying so: two processes that need the same cache entry build it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from edgekd.progress import log

            log(f"waiting for another edgekd process building {what}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def save_torch(obj, final: Path) -> None:
    import torch  # here: predict, and the snippets' machinery, run without torch installed

    # serialized in memory, then written by Python: torch's own writer hides the errno
    # (ENOSPC, EFBIG) behind a RuntimeError
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())


def save_text(text: str, final: Path) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def save_json(obj, final: Path) -> None:
    save_text(json.dumps(obj, indent=2, default=str) + "\n", final)


def sha256(path: Path) -> str:
    """Checksum of a file, or of every file in a folder in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_mb(path: Path) -> float:
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files) / 2**20
