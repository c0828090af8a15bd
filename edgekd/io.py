"""Atomic writes: every artifact is written to a temporary name beside its target, then renamed,
so a crash or a full disk never leaves a half-written file under the final name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from edgekd.errors import EdgekdError


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yields a temporary path to write (a file or a folder); renames it to `final` on success."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgekdError(
            f"cannot create output directory {final.parent}: {e.strerror}; choose another --out"
        ) from None
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        raise EdgekdError(f"cannot write {final}: {e.strerror}; free space or choose another --out") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def save_torch(obj, final: Path) -> None:
    with atomic_path(final) as tmp:
        torch.save(obj, tmp)


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
